"""Stop and retry (issue 14): how soon a 🛑 ends a running agent under --watch, and what looking costs.

    python bench/controls.py [--trials 5] [--interval 1] [--grace 2] [--claim thread]

Each trial: a task that ignores SIGTERM (``HANG NOTERM``, so the whole KILL_GRACE is spent) runs
under ``orchestrate --watch``; its requests are counted for a few poll intervals while it runs
(the poll, the look for 🛑 / 🔁); then alice reacts 🛑 at a random moment and the time until no
process carries the agent's marker is measured from /proc. The bound promised in the README is
one POLL_INTERVAL + KILL_GRACE (+ a loop tick, 0.25 s). A measurement, not a test (exit 0).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Scratch, bench_env, cli_argv, make_home, wait_until  # noqa: E402

from discord_orch.sim.fleet import live_processes_marked  # noqa: E402
from discord_orch.sim.localdiscord import LocalDiscord, RateLimits  # noqa: E402
from discord_orch.sim.world import make_world  # noqa: E402

MARKER = "DISCORD_ORCH_AGENT_ID"
TICK_S = 0.25            # the orchestrator's loop tick (orchestrator.TICK_S)
WAIT_CAP_S = 60.0
COUNT_INTERVALS = 4      # poll intervals over which a running task's requests are counted


def wait(cond, cap: float = WAIT_CAP_S, step: float = 0.005):
    return wait_until(cond, cap, step)


def trial(root: Path, interval: float, grace: float, claim: str, rng: random.Random, sandbox: str = "auto"):
    with LocalDiscord(rate_limits=RateLimits.off()) as ld:
        world = make_world(ld)
        home = make_home(root, world, bench_env(None), CLAIM=claim, KILL_GRACE=grace, POLL_INTERVAL=interval,
                         AGENT_SANDBOX=sandbox)
        task = world.post(world.alice, "hang on HANG NOTERM")["id"]
        watch = subprocess.Popen(cli_argv("orchestrate", "--watch"), cwd=home.path, env=home.env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            agent = wait(lambda: next((d.name for d in (home.path / "workers").iterdir()
                                       if d.name.startswith("agent-")), None))
            wait(lambda: live_processes_marked(MARKER, [agent]))
            ld.reset_log()
            time.sleep(COUNT_INTERVALS * interval)
            routes = Counter(r.route for r in ld.requests)
            time.sleep(rng.uniform(0, interval))
            ld.react(world.task_queue, task, world.alice.id, "🛑")
            t0 = time.monotonic()
            wait(lambda: not live_processes_marked(MARKER, [agent]))
            latency = time.monotonic() - t0
        finally:
            watch.send_signal(signal.SIGTERM)
            watch.wait(timeout=60)
    return latency, routes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--interval", type=float, default=1.0, help="POLL_INTERVAL")
    ap.add_argument("--grace", type=float, default=2.0, help="KILL_GRACE")
    ap.add_argument("--claim", choices=("thread", "reaction"), default="thread")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sandbox", choices=("auto", "bwrap", "landlock", "off"), default="auto",
                    help="AGENT_SANDBOX (off: the agent that ignores SIGTERM spends the whole KILL_GRACE)")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    latencies = []
    for n in range(args.trials):
        with Scratch(f"controls-{n}-") as root:
            latency, routes = trial(root, args.interval, args.grace, args.claim, rng, args.sandbox)
        latencies.append(latency)
        per_interval = {route: round(count / COUNT_INTERVALS, 2) for route, count in sorted(routes.items())}
        print(f"trial {n + 1}: 🛑 → group gone {latency:.2f} s; requests per POLL_INTERVAL while running: "
              f"{per_interval}")
    bound = args.interval + args.grace + TICK_S
    print(f"POLL_INTERVAL={args.interval:g} KILL_GRACE={args.grace:g} CLAIM={args.claim} "
          f"AGENT_SANDBOX={args.sandbox}: latency median "
          f"{statistics.median(latencies):.2f} s, max {max(latencies):.2f} s (bound {bound:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
