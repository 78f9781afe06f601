"""Several hosts on one queue (issue 13): randomised kill trials, and the speed-up of three hosts.

    python bench/multihost.py --trials 200 --seed 7     # the trials (~4 s each)
    python bench/multihost.py --speedup                 # 60 tasks of 1 s: 1 host vs 3 (~2 minutes)
    python bench/multihost.py --trials 20 --speedup     # both
    python bench/multihost.py --speedup --task-seconds 5 --case 0   # longer tasks, the issue's setup only

Trials: three hosts (A and B share one bot token, C has its own bot; each runs ``--watch`` or pass
after pass, chosen at random) on 6-12 queued tasks (quick, sleeping, failing, crashing), with
answers lost after the request took effect (thread starts, posts, ✅), 5xx after a start, and 1-2
SIGKILLs of random hosts at random moments (each host's driver starts it again, and it recovers).
Each trial ends when every task has a result and no host has anything left to do; then it counts
what people would see: duplicate runs, lost or extra results, threads naming the wrong host,
records left ``claiming``, agents left running (sim/fleet.py's audit). No rate limits here: the
trials are about the arbiter, not the pace.

Speed-up: 60 tasks of SLEEP=1, MAX_AGENTS=2, ``RateLimits.discord_defaults()``, every host
``--watch --interval 1``: the makespan (first request to the last result in #results) with host A
alone vs A, B and C, and the requests per task by route.

Like bench/run.py it prints figures ``name: value (target ...) PASS|MISS`` and notes ``# ...``;
the exit status is 0 even when a target is missed.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Scratch, bench_env, loadavg  # noqa: E402

from discord_orch.sim.fleet import HOST_NAMES, Fleet, audit, result_label, results_by_task  # noqa: E402
from discord_orch.sim.localdiscord import LocalDiscord, RateLimits  # noqa: E402
from discord_orch.sim.world import make_world  # noqa: E402

START = "/channels/{channel_id}/messages/{message_id}/threads"
MESSAGES = "/channels/{channel_id}/messages"
REACTION = "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me"
TRIAL_CAP_S = 150.0      # a trial not done by then is a failure (a set-aside start is retried after 60 s)
SPEEDUP_TARGET = 2.7
SPEEDUP_TASKS = 60
SPEEDUP_SLEEP_S = 1
SPEEDUP_CAP_S = 600.0

KINDS = ("quick", "sleep", "sleep", "fail", "crash")
ALLOWED_LABELS = {"quick": {"DONE", "INTERRUPTED"}, "sleep": {"DONE", "INTERRUPTED"},
                  "fail": {"FAILED", "INTERRUPTED"}, "crash": {"KILLED", "FAILED", "INTERRUPTED"}}


def _task_text(rng: random.Random, kind: str, i: int) -> str:
    return {"quick": f"quick job {i}", "sleep": f"sleeping job {i} SLEEP={rng.choice([0.3, 0.6, 1, 1.5])}",
            "fail": f"failing job {i} FAIL", "crash": f"crashing job {i} CRASH"}[kind]


def _arm_faults(rng: random.Random, ld: LocalDiscord, fleet: Fleet, stats: collections.Counter) -> None:
    """Answers lost after the request took effect, in random numbers (and sometimes past the retries)."""
    n = rng.randint(0, 4)
    ld.lose_thread_start_answers(count=n)
    stats["lost start answers armed"] += n
    if rng.random() < 0.3:
        ld.lose_thread_start_answers(count=1, user_id=fleet.bot_of["c"])
        stats["lost start answers armed"] += 1
    if rng.random() < 0.3:
        n = rng.choice([1, 2, 4])     # 4: past the client's 3 retries, the start's fate stays unknown
        ld.fail("POST", START, statuses=(503,), count=n, after_processing=True)
        stats["5xx after a start armed"] += n
    n = rng.randint(0, 5)
    ld.drop("POST", MESSAGES, count=n, after_processing=True)
    stats["lost post answers armed"] += n
    n = rng.randint(0, 3)
    ld.drop("PUT", REACTION, count=n, after_processing=True)
    stats["lost reaction answers armed"] += n


def _kill_at_random(rng: random.Random, fleet: Fleet, stats: collections.Counter) -> None:
    for _ in range(rng.choice([1, 1, 2])):
        time.sleep(rng.uniform(0.05, 2.5))
        victim = fleet.hosts[rng.choice(HOST_NAMES)]
        stats["kills" if victim.kill() else "kills missed (between processes)"] += 1


def trial(rng: random.Random, root: Path, env: Dict[str, str], stats: collections.Counter) -> List[str]:
    """One trial; returns its problems (empty: survived)."""
    with LocalDiscord(rate_limits=RateLimits.off()) as ld:
        world = make_world(ld)
        watch = {name: rng.random() < 0.5 for name in HOST_NAMES}
        fleet = Fleet(root, world, env, watch=watch, MAX_AGENTS=rng.choice([1, 2, 3]), TIMEOUT=30, KILL_GRACE=1)
        plan = [rng.choice(KINDS) for _ in range(rng.randint(6, 12))]
        tasks = [world.post(world.alice, _task_text(rng, kind, i))["id"] for i, kind in enumerate(plan)]
        _arm_faults(rng, ld, fleet, stats)
        fleet.start()
        try:
            _kill_at_random(rng, fleet, stats)
            took = fleet.wait_done(tasks, TRIAL_CAP_S)
        except AssertionError as exc:
            fleet.stop()
            return [str(exc)[:3000]]
        fleet.stop()
        seen = audit(fleet, tasks)
        problems = list(seen.problems)
        results = results_by_task(world, tasks)
        for kind, task in zip(plan, tasks):
            for post in results.get(task, []):
                label = result_label(post)
                stats[f"label {kind} {label}"] += 1
                if label not in ALLOWED_LABELS[kind]:
                    problems.append(f"task {task} ({kind}): {label}")
        stats["tasks"] += len(tasks)
        stats["agent runs"] += seen.runs
        stats["duplicate runs"] += seen.duplicates
        stats["tasks never run (interrupted before the spawn)"] += seen.never_ran
        stats["lost results"] += seen.lost_results
        stats["extra results"] += seen.extra_results
        stats["threads without a claim line"] += seen.no_claim_line
        stats["hosts' processes (passes and watches)"] += sum(h.processes for h in fleet.hosts.values())
        stats[f"done in {_bucket(took)}"] += 1
        stats["160004 answers"] += sum(1 for r in ld.requests if r.route == "POST " + START and r.status == 400)
        stats["thread looks (GET /channels/{task})"] += sum(
            1 for r in ld.requests if r.route == "GET /channels/{channel_id}" and r.channel_id in tasks)
        stats["lost answers hit"] += sum(1 for r in ld.requests if r.status == 0)
        for name, n in seen.ran_on.items():
            stats[f"tasks run on host {name}"] += n
        return problems


def _bucket(seconds: float) -> str:
    for edge in (5, 10, 20, 40, 80):
        if seconds < edge:
            return f"< {edge:>2} s"
    return ">= 80 s"


def run_trials(n: int, seed: int, keep: bool) -> bool:
    rng = random.Random(seed)
    stats: collections.Counter = collections.Counter()
    failed: List[str] = []
    t0 = time.monotonic()
    print(f"## {n} trials, seed {seed}   [load {loadavg()}]", flush=True)
    with Scratch("discord-orch-multihost-", keep=keep) as root:
        env = bench_env(None)
        for i in range(n):
            problems = trial(rng, root / f"t{i}", env, stats)
            stats["trials"] += 1
            if problems:
                failed.append(f"trial {i}: " + "; ".join(problems))
                print(f"# trial {i} FAILED: {'; '.join(problems)[:2000]}", flush=True)
            elif (i + 1) % 10 == 0:
                print(f"# {i + 1} trials, {time.monotonic() - t0:.0f} s", flush=True)
    stats["trials survived"] = stats["trials"] - len(failed)
    for key in sorted(stats):
        print(f"  {key}: {stats[key]}")
    ok = not failed
    print(f"multihost.trials: {stats['trials survived']}/{n} survived, {stats['duplicate runs']} duplicate runs, "
          f"{stats['lost results']} lost results, {stats['extra results']} extra results "
          f"(target all, 0, 0, 0) {'PASS' if ok else 'MISS'}; {time.monotonic() - t0:.0f} s", flush=True)
    return ok


# ---------------------------------------------------------------------------- the speed-up

def _routes(ld: LocalDiscord, tasks: List[str], world) -> Dict[str, int]:
    names = {world.task_queue: "#task-queue", world.results: "#results", world.worker_pool: "#worker-pool"}
    out: Dict[str, int] = collections.Counter()
    for rec in ld.requests:
        route = rec.route or rec.path
        where = names.get(rec.channel_id or "", "a thread" if rec.channel_id in tasks else "")
        out[f"{route}{' in ' + where if where and route.endswith('/messages') else ''}"] += 1
    return dict(out)


def speedup_run(names: List[str], own_bots: List[str], root: Path, env: Dict[str, str], rl: RateLimits,
                task_s: float = SPEEDUP_SLEEP_S) -> dict:
    with LocalDiscord(rate_limits=rl) as ld:
        world = make_world(ld)
        fleet = Fleet(root, world, env, watch={n: True for n in names}, names=names, own_bots=own_bots,
                      interval=1.0, MAX_AGENTS=2, TIMEOUT=120)
        tasks = [world.post(world.alice, f"benchmark job {i} SLEEP={task_s:g}")["id"]
                 for i in range(SPEEDUP_TASKS)]
        ld.reset_log()
        fleet.start()
        try:
            fleet.wait_done(tasks, SPEEDUP_CAP_S)
        finally:
            fleet.stop()
        last_result = max(r.time for r in ld.requests if r.route == "POST " + MESSAGES
                          and r.channel_id == world.results and r.status == 200)
        first = min(r.time for r in ld.requests)
        seen = audit(fleet, tasks)
        return {"makespan": last_result - first, "requests": len(ld.requests), "routes": _routes(ld, tasks, world),
                "429": ld.count_429(), "problems": seen.problems, "ran_on": seen.ran_on,
                "starts": sum(1 for r in ld.requests if r.route == "POST " + START),
                "lost_starts": sum(1 for r in ld.requests if r.route == "POST " + START and r.status == 400)}


# (name, rate limits, the 3 hosts' own bots)
SPEEDUP_CASES = (
    ("Discord's limits; A+B share a bot, C has its own (the issue's setup)", "defaults", ["c"]),
    ("Discord's limits; each host its own bot", "defaults", ["b", "c"]),
    ("no rate limits (the arbiter's own cost)", "off", ["c"]),
)


def run_speedup(keep: bool, task_s: float = SPEEDUP_SLEEP_S, cases: Optional[List[int]] = None) -> None:
    rl = RateLimits.discord_defaults()
    print(f"\n## speed-up: {SPEEDUP_TASKS} tasks of SLEEP={task_s:g}, MAX_AGENTS=2, --watch --interval 1; "
          f"RateLimits.discord_defaults(): message create {rl.message_create}, reactions {rl.reactions}, "
          f"thread create {rl.thread_create} (undocumented by Discord: the emulator's guess), global "
          f"{rl.global_per_second}/s; every bucket per bot and channel   [load {loadavg()}]", flush=True)
    with Scratch("discord-orch-speedup-", keep=keep) as root, Scratch("discord-orch-speedup-pyc-") as pyc:
        env = bench_env(pyc)
        for n, (case, limits, own_bots) in enumerate(SPEEDUP_CASES):
            if cases and n not in cases:
                continue
            limits_now = rl if limits == "defaults" else RateLimits.off()
            runs = {}
            print(f"# {case}", flush=True)
            for label, names in (("1 host", ["a"]), ("3 hosts", list(HOST_NAMES))):
                runs[label] = r = speedup_run(names, own_bots, root / f"{n}-{label.replace(' ', '-')}", env,
                                              limits_now, task_s)
                print(f"#   {label}: makespan {r['makespan']:.1f} s (first request to the last result posted), "
                      f"{r['requests']} requests = {r['requests'] / SPEEDUP_TASKS:.2f} per task, {r['429']} answered "
                      f"429, thread starts {r['starts']} ({r['lost_starts']} lost to another host: 160004), "
                      f"tasks per host {r['ran_on']}" + (f"; PROBLEMS: {r['problems'][:5]}" if r["problems"] else ""),
                      flush=True)
                per_task = ", ".join(f"{k} {v / SPEEDUP_TASKS:.2f}" for k, v in
                                     sorted(r["routes"].items(), key=lambda kv: -kv[1]))
                print(f"#   {label}: per task by route: {per_task}", flush=True)
            ratio = runs["1 host"]["makespan"] / runs["3 hosts"]["makespan"]
            ideal = SPEEDUP_TASKS * task_s / 2
            print(f"multihost.speedup[{case}]: {ratio:.2f}x ({runs['1 host']['makespan']:.1f} s / "
                  f"{runs['3 hosts']['makespan']:.1f} s; the agents alone: {ideal:.0f} s / {ideal / 3:.0f} s) "
                  f"(target >= {SPEEDUP_TARGET}x, ideal 3x) {'PASS' if ratio >= SPEEDUP_TARGET else 'MISS'}",
                  flush=True)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=0, help="randomised kill trials to run")
    ap.add_argument("--seed", type=int, default=13, help="the trials' random seed")
    ap.add_argument("--speedup", action="store_true", help="measure 1 host vs 3 hosts")
    ap.add_argument("--task-seconds", type=float, default=SPEEDUP_SLEEP_S, help="each speed-up task sleeps this long")
    ap.add_argument("--case", type=int, action="append", help="speed-up case to run (0, 1, 2; default: all)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary homes")
    args = ap.parse_args(argv)
    if not args.trials and not args.speedup:
        ap.error("say --trials N and/or --speedup")
    print(f"# discord-orch multihost bench: {os.cpu_count()} CPUs, load {loadavg()}, Python {sys.version.split()[0]}",
          flush=True)
    if args.trials:
        run_trials(args.trials, args.seed, args.keep)
    if args.speedup:
        run_speedup(args.keep, args.task_seconds, args.case)
    return 0


if __name__ == "__main__":
    sys.exit(main())
