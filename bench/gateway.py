"""Live events (issue 25): `orchestrate --watch` with the Gateway against polling, on the local Discord.

    python bench/gateway.py [--tasks 20] [--stops 3] [--idle 610] [--interval 5]

* post → ✅: alice posts a task, the time until the bot's ✅ is on it (read from the local
  Discord's store every millisecond); one task at a time (the next once the last is answered),
  so it is the pick-up alone, not a wait for a free agent. GATEWAY=auto, then GATEWAY=off with
  POLL_INTERVAL=--interval (fewer tasks: its median is about half the interval).
* 🛑, then the Stop button → the agent's process group gone (a task that ignores SIGTERM), with the
  Gateway; the bound is KILL_GRACE + 0.3 s.
* requests in an idle hour: a watch with the Gateway up and nothing to do (HOST_SILENT_AFTER=0:
  no presence line, whose cost is its own), counted for --idle seconds and scaled to an hour.

A measurement, not a test (exit 0). Targets (issue 25): post → ✅ max <= 0.3 s; 🛑 <= KILL_GRACE +
0.3 s; <= 20 requests an idle hour.
"""

from __future__ import annotations

import argparse
import random
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import CLAIM, Scratch, bench_env, cli_argv, make_home, wait_until  # noqa: E402

from discord_orch.sim.fleet import live_processes_marked  # noqa: E402
from discord_orch.sim.localdiscord import LocalDiscord, RateLimits  # noqa: E402
from discord_orch.sim.world import make_world  # noqa: E402

MARKER = "DISCORD_ORCH_AGENT_ID"
WAIT_CAP_S = 60.0


def wait(cond, cap: float = WAIT_CAP_S, step: float = 0.001):
    return wait_until(cond, cap, step)


class Watch:
    """A local Discord, a home and its `orchestrate --watch`, up (the Gateway connected, or a first poll)."""

    def __init__(self, root: Path, gateway: str, interval: float, **config: object) -> None:
        self.ld = LocalDiscord(rate_limits=RateLimits.off()).start()
        self.world = make_world(self.ld)
        self.gw = self.ld.gateway
        self.home = make_home(root, self.world, bench_env(None), GATEWAY=gateway, POLL_INTERVAL=interval, **config)
        self.proc = subprocess.Popen(cli_argv("orchestrate", "--watch"), cwd=self.home.path, env=self.home.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if gateway == "auto":
            wait(lambda: self.gw.connected())
        wait(lambda: self.ld.request_count("GET", "/channels/{channel_id}/messages"))

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        self.ld.stop()

    def claimed(self, task: str) -> bool:
        return self.world.bot.id in self.ld.reactions(self.world.task_queue, task).get(CLAIM, [])

    def answered(self, n: int) -> bool:
        return len(self.ld.messages(self.world.results)) >= n


def pickup(root: Path, gateway: str, interval: float, tasks: int, rng: random.Random) -> List[float]:
    watch = Watch(root, gateway, interval)
    try:
        out = []
        for n in range(tasks):
            time.sleep(rng.uniform(0.05, 0.5))
            task = watch.world.post(watch.world.alice, f"bench task {n}")["id"]
            t0 = time.monotonic()
            wait(lambda: watch.claimed(task))
            out.append(time.monotonic() - t0)
            wait(lambda: watch.answered(n + 1))
        return out
    finally:
        watch.close()


def stop_button(watch: Watch, task: str) -> Optional[str]:
    """The status message (in the task's thread) once it carries its Stop button."""
    try:
        messages = watch.ld.messages(task)
    except KeyError:
        return None
    return next((m["id"] for m in messages for row in m.get("components") or []
                 for b in row["components"] if b.get("custom_id") == f"stop:{task}"), None)


def stop_latency(root: Path, grace: float, rng: random.Random, button: bool) -> float:
    watch = Watch(root, "auto", 5.0, KILL_GRACE=grace)
    try:
        task = watch.world.post(watch.world.alice, "hang on HANG NOTERM")["id"]
        agent = wait(lambda: next((d.name for d in (watch.home.path / "workers").iterdir()
                                   if d.name.startswith("agent-")), None), step=0.005)
        wait(lambda: live_processes_marked(MARKER, [agent]), step=0.005)
        message = wait(lambda: stop_button(watch, task), step=0.005) if button else None
        time.sleep(rng.uniform(0.1, 1.0))
        if message is not None:
            watch.ld.interact_button(watch.world.bot.id, watch.world.alice.id, task, message, f"stop:{task}")
        else:
            watch.ld.react(watch.world.task_queue, task, watch.world.alice.id, "🛑")
        t0 = time.monotonic()
        wait(lambda: not live_processes_marked(MARKER, [agent]), step=0.005)
        return time.monotonic() - t0
    finally:
        watch.close()


def idle(root: Path, seconds: float) -> Dict[str, float]:
    watch = Watch(root, "auto", 5.0, HOST_SILENT_AFTER=0)
    try:
        time.sleep(2)   # the first poll's answers and the start's reads are in
        watch.ld.reset_log()
        time.sleep(seconds)
        routes = Counter(r.route for r in watch.ld.requests)
    finally:
        watch.close()
    return {route: count * 3600 / seconds for route, count in sorted(routes.items())}


def summary(name: str, values: List[float]) -> str:
    return f"{name}: p50 {statistics.median(values):.3f} s, max {max(values):.3f} s over {len(values)}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=20)
    ap.add_argument("--polled-tasks", type=int, default=6)
    ap.add_argument("--interval", type=float, default=5.0, help="POLL_INTERVAL of the polling run")
    ap.add_argument("--stops", type=int, default=3)
    ap.add_argument("--grace", type=float, default=2.0, help="KILL_GRACE")
    ap.add_argument("--idle", type=float, default=610.0, help="seconds of an idle watch counted (0: skip)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    with Scratch("gateway-live-") as root:
        live = pickup(root, "auto", args.interval, args.tasks, rng)
    print(summary("post → ✅ with the Gateway", live), "(target max <= 0.3 s)")
    if args.polled_tasks > 0:
        with Scratch("gateway-polled-") as root:
            polled = pickup(root, "off", args.interval, args.polled_tasks, rng)
        print(summary(f"post → ✅ polling every {args.interval:g} s (GATEWAY=off)", polled))
    for how, button in (("🛑", False), ("the Stop button", True)):
        stops = []
        for n in range(args.stops):
            with Scratch(f"gateway-stop-{n}-") as root:
                stops.append(stop_latency(root, args.grace, rng, button))
        if stops:
            print(summary(f"{how} → agent group gone with the Gateway, KILL_GRACE={args.grace:g}", stops),
                  f"(target <= {args.grace + 0.3:.1f} s)")
    if args.idle > 0:
        with Scratch("gateway-idle-") as root:
            per_hour = idle(root, args.idle)
        print(f"requests an idle hour with the Gateway up, HOST_SILENT_AFTER=0 (counted over {args.idle:g} s): "
              f"{sum(per_hour.values()):.1f} (target <= 20): "
              + ", ".join(f"{route} {n:.1f}" for route, n in per_hour.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
