"""Soak: `orchestrate --watch` under chaos, then count results (issue 4's promise, long-running).

    python bench/soak_watch.py [--seconds 75] [--seed 5]

For ``--seconds``, tasks of every kind arrive at random (fast, slow, failing, crashing,
hanging past TIMEOUT, bad bytes, long results) while Discord has outages, 502/503 bursts
and dropped connections (before and after it processed the post), and the watch process
is SIGKILLed and restarted twice. Then the faults stop, it drains, and gets SIGTERM.
Prints one line per figure; the promise is: every task exactly one result, no agent run
twice. A measurement, not a test (exit 0 either way); the tests hold the same promise
for single passes (tests/test_reliability.py).
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Scratch, bench_env, cli_argv, make_home  # noqa: E402

from discord_orch.sim.localdiscord import LocalDiscord, RateLimits  # noqa: E402
from discord_orch.sim.world import make_world  # noqa: E402

KINDS = ("fast", "SLEEP=1 slow", "SLEEP=2 slower", "FAIL x", "CRASH x", "HANG x", "BADBYTES x", "BIGRESULT=5000 x")
MESSAGES = "/channels/{channel_id}/messages"
KILLS = 2
DRAIN_CAP_S = 120.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=75.0, help="how long the chaos lasts")
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    with Scratch("discord-orch-soak-") as root, LocalDiscord(rate_limits=RateLimits.discord_defaults()) as ld:
        world = make_world(ld)
        env = dict(bench_env(None), STANDIN_RUN_LOG=str(root / "runs.jsonl"))
        home = make_home(root, world, env, MAX_AGENTS=3, KILL_GRACE=0.5, POLL_INTERVAL=0.5)
        home.write_config(TIMEOUT=4)   # HANG tasks time out within the soak
        log = open(root / "watch.log", "a")

        def start() -> subprocess.Popen:
            return subprocess.Popen(cli_argv("orchestrate", "--watch"), cwd=home.path, env=home.env,
                                    stdout=subprocess.DEVNULL, stderr=log)

        proc, tasks, kills, faults = start(), [], 0, {"outage": 0, "5xx": 0, "drop": 0}
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            r = rng.random()
            if r < 0.25:
                tasks.append(world.post(world.bot, f"{rng.choice(KINDS)} soak task {len(tasks)}")["id"])
            elif r < 0.30:
                faults["outage"] += 1
                ld.set_outage(True)
                time.sleep(rng.uniform(0.5, 4))
                ld.set_outage(False)
            elif r < 0.35:
                faults["5xx"] += 1
                ld.fail("POST", MESSAGES, statuses=[502, 503], count=rng.randint(1, 5))
            elif r < 0.38:
                faults["drop"] += 1
                ld.drop("POST", MESSAGES, count=rng.randint(1, 3), after_processing=rng.random() < 0.5)
            elif r < 0.40 and kills < KILLS:
                proc.kill()
                proc.wait()
                kills += 1
                proc = start()
            time.sleep(rng.uniform(0.05, 0.6))
        ld.clear_faults()
        ld.set_outage(False)

        def results(task: str) -> int:
            return sum(1 for m in ld.messages(world.results) if f"task `{task}`" in m["content"].split("\n", 1)[0])

        drained = time.monotonic() + DRAIN_CAP_S
        while time.monotonic() < drained and not all(results(t) for t in tasks):
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
        counts: Dict[str, int] = {t: results(t) for t in tasks}
        runs: List[str] = ([json.loads(line)["task_id"] for line in open(root / "runs.jsonl")]
                           if (root / "runs.jsonl").exists() else [])
        print(f"soak: {args.seconds:g} s of chaos, seed {args.seed}, {len(tasks)} tasks, {kills} SIGKILLs, "
              f"faults {faults}, final SIGTERM -> exit {rc}")
        print(f"results lost: {sum(1 for c in counts.values() if c == 0)} (target 0)")
        print(f"results duplicated: {sum(1 for c in counts.values() if c > 1)} (target 0)")
        print(f"agents run twice: {len({t for t in runs if runs.count(t) > 1})} (target 0; {len(runs)} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
