"""discord-orch benchmarks: throughput at Discord's rate limits, measured (issue 6).

    python bench/run.py            # the full run (~5 minutes)
    python bench/run.py --quick    # smaller numbers (~1.5 minutes)
    python bench/run.py --only idle,watch

Everything runs against LocalDiscord with ``RateLimits.discord_defaults()`` (message
create 5 per 5 s per channel, reactions 1 per 0.25 s per channel, 50 requests/s
global), real HTTP, ``discord-orch orchestrate`` as a subprocess (the installed
console script, as cron runs it) and the instant stand-in agent. Each figure is one
line ``name: value (target ...) PASS|MISS``; lines starting with ``#`` are context
(floors, bounds, breakdowns, machine load). It is a measurement, not a test: the
exit status is 0 even when a target is missed.

Bytecode: this sandbox sets PYTHONDONTWRITEBYTECODE, which makes every process
recompile every module. The subprocesses here run with a private
PYTHONPYCACHEPREFIX instead (warmed first), as after a normal ``pip install``,
which byte-compiles; both sides of every startup comparison run the same way.
"""

from __future__ import annotations

import argparse
import collections
import math
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (CLAIM, LocalHome, Scratch, World, bench_env, loadavg, make_home,  # noqa: E402
                     cli_argv, make_world, popen_cli, request_rtt, run_cli, timed_python)

from discord_orch.sim.localdiscord import LocalDiscord, RateLimits  # noqa: E402

LIST = "GET /channels/{channel_id}/messages"
CREATE = "POST /channels/{channel_id}/messages"
EDIT = "PATCH /channels/{channel_id}/messages/{message_id}"   # a status message's edits (progress.py)
THREAD_START = "POST /channels/{channel_id}/messages/{message_id}/threads"
PER_TASK_TARGET = 5   # issue 24: a thread start, ✅, the thread's one message, the #results post, 🏁 (+ its edits)
REQUESTS_TASKS = 25   # short tasks queued at once, at the defaults
REACT_ROUTES = ("PUT /channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
                "DELETE /channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me")
CLAIM_PATH = "/reactions/%E2%9C%85/"   # ✅ as it appears, URL-encoded, in the request path
LIST_LIMIT = 100                       # the page an idle pass asks for (intake.py)
IDLE_TARGET = 1.25                     # an idle pass vs python + requests + one GET (issue 12)


@dataclass(frozen=True)
class Sizes:
    idle_messages: int
    idle_runs: int
    burst_tasks: int
    agents: int
    agent_sleep_s: float
    watch_tasks: int


FULL = Sizes(idle_messages=10_000, idle_runs=25, burst_tasks=100, agents=50, agent_sleep_s=5.0, watch_tasks=10)
QUICK = Sizes(idle_messages=2_000, idle_runs=11, burst_tasks=20, agents=20, agent_sleep_s=2.0, watch_tasks=5)


# ---------------------------------------------------------------------------- output


class Report:
    def __init__(self) -> None:
        self.missed: List[str] = []
        self.t0 = time.monotonic()

    def figure(self, name: str, value: str, target: str, ok: bool) -> None:
        print(f"{name}: {value} (target {target}) {'PASS' if ok else 'MISS'}", flush=True)
        if not ok:
            self.missed.append(name)

    def note(self, text: str) -> None:
        print(f"# {text}", flush=True)

    def section(self, title: str) -> None:
        print(f"\n## {title}   [load {loadavg()}, t+{time.monotonic() - self.t0:.0f} s]", flush=True)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _median(values: List[float]) -> float:
    return statistics.median(values)


# ---------------------------------------------------------------------------- worlds


class Bench:
    """One LocalDiscord world with one home, torn down afterwards."""

    def __init__(self, pycache: Path, keep: bool, **config: object) -> None:
        self.scratch = Scratch("discord-orch-bench-", keep=keep)
        self.ld = LocalDiscord(rate_limits=RateLimits.discord_defaults())
        self.pycache = pycache
        self.config = config

    def __enter__(self) -> "Bench":
        root = self.scratch.__enter__()
        self.ld.start()
        self.world: World = make_world(self.ld)
        self.env = bench_env(self.pycache)
        self.home: LocalHome = make_home(root, self.world, self.env, **self.config)
        return self

    def __exit__(self, *exc: object) -> None:
        self.ld.stop()
        self.scratch.__exit__(*exc)


def _results_per_task(world: World, task_ids: List[str]) -> Dict[str, int]:
    counts = {t: 0 for t in task_ids}
    for msg in world.ld.messages(world.results):
        text = msg.get("content") or ""
        ref = (msg.get("message_reference") or {}).get("message_id")
        for t in task_ids:
            if t in text or ref == t:
                counts[t] += 1
    return counts


def _route_counts(ld: LocalDiscord, world: World) -> Dict[str, int]:
    out: Dict[str, int] = collections.Counter()
    names = {world.task_queue: "#task-queue", world.results: "#results", world.worker_pool: "#worker-pool"}
    for rec in ld.requests:
        if rec.route in REACT_ROUTES:
            kind = "✅" if CLAIM_PATH in rec.path else ("final" if rec.method == "PUT" else "remove")
            out[f"reaction {kind}"] += 1
        elif rec.route == CREATE:
            out[f"post {names.get(rec.channel_id or '', 'in a task thread')}"] += 1
        elif rec.route == LIST:
            out["poll GET"] += 1
        else:
            out[rec.route or rec.path] += 1
    return dict(out)


# ---------------------------------------------------------------------------- 1. idle pass


def bench_idle(rep: Report, sizes: Sizes, pycache: Path, keep: bool) -> Dict[str, float]:
    rep.section(f"1. idle pass ({sizes.idle_messages:,} handled messages in #task-queue)")
    with Bench(pycache, keep) as b:
        w, ld = b.world, b.ld
        for i in range(sizes.idle_messages):
            mid = w.post(w.alice, f"an old task {i}")["id"]
            ld.react(w.task_queue, mid, w.bot.id, CLAIM)
        first = run_cli(b.home, "orchestrate")
        rep.note(f"first pass (moves the cursor over them): rc {first.returncode}, {len(ld.requests)} requests, "
                 f"{first.wall_s:.2f} s")
        # The floor: the least any Python program can do for one pass, start, import requests, one GET.
        last = ld.messages(w.task_queue)[-1]["id"]   # after the newest message: an empty list, as the pass gets
        url = f"{ld.base_url}/channels/{w.task_queue}/messages?after={last}&limit={LIST_LIMIT}"
        floor_code = (f"import requests; requests.get({url!r}, "
                      f"headers={{'Authorization': 'Bot ' + {w.bot.token!r}}}, timeout=30)")
        timed_python(floor_code, b.env, b.home.path)           # warm the bytecode cache
        walls, cpus, floors, reqs, bare = [], [], [], [], []
        for _ in range(sizes.idle_runs):  # interleaved, so load changes hit both sides alike
            ld.reset_log()
            st = run_cli(b.home, "orchestrate")
            if st.returncode != 0:
                rep.note(f"idle pass failed (rc {st.returncode}): {st.stderr.strip()[-300:]}")
            reqs.append(len(ld.requests))
            walls.append(st.wall_s)
            cpus.append(st.cpu_s or 0.0)
            floors.append(timed_python(floor_code, b.env, b.home.path))
            bare.append(timed_python("pass", b.env, b.home.path))
        floor_i = _instructions([sys.executable, "-c", floor_code], b.env, b.home.path)
        pass_i = _instructions(cli_argv("orchestrate"), b.home.env, b.home.path)
        deps_i = _instructions([sys.executable, "-c", FIXED_DEPENDENCIES], b.env, b.home.path)
    wall, floor, nothing = _median(walls), _median(floors), _median(bare)
    rep.figure("idle.requests", f"{max(reqs)} per pass (each of {len(reqs)} passes: {sorted(set(reqs))})",
               "exactly 1", all(r == 1 for r in reqs))
    ratio = wall / floor
    rep.figure("idle.wall_vs_floor", f"{ratio:.2f}x (orchestrate {_ms(wall)} / `python -c 'import requests; "
               f"requests.get(#task-queue)'` {_ms(floor)}, medians of {len(walls)}, side by side)",
               f"<= {IDLE_TARGET:.2f}x", ratio <= IDLE_TARGET)
    rep.note(f"the interpreter with site takes {_ms(nothing)} of both; the pass beyond the floor (its own "
             f"modules, click, settings, the cursor, exit): {_ms(wall - floor)}; CPU of an idle pass "
             f"{_ms(_median(cpus))}")
    if floor_i and pass_i and deps_i:
        rep.figure("idle.instructions_vs_floor", f"{pass_i / floor_i:.3f}x ({pass_i / 1e6:.0f} M / {floor_i / 1e6:.0f} M "
                   f"instructions, callgrind: the same whatever the machine's load)",
                   f"<= {IDLE_TARGET:.2f}x", pass_i / floor_i <= IDLE_TARGET)
        rep.note(f"of which `{FIXED_DEPENDENCIES}` alone (the dependencies the user fixed, and SQLite): "
                 f"{deps_i / floor_i:.3f}x")
    else:
        rep.note("valgrind not found: no instruction counts (apt install valgrind)")
    return {"idle_cpu_s": _median(cpus)}


FIXED_DEPENDENCIES = "import requests, click, dotenv, sqlite3"


def _instructions(argv: List[str], env: Dict[str, str], cwd: Path) -> Optional[int]:
    """Instructions a command executes (valgrind's callgrind): a count that does not depend on the load."""
    if shutil.which("valgrind") is None:
        return None
    run = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv],
                         cwd=cwd, env=env, capture_output=True, text=True)
    found = re.search(r"Collected : (\d+)", run.stderr)
    return int(found.group(1)) if found else None


# ---------------------------------------------------------------------------- 2+3. a burst of tasks


def _floor(n_tasks: int, final_reactions: bool) -> Dict[str, float]:
    limit, window = RateLimits.discord_defaults().message_create
    r_limit, r_window = RateLimits.discord_defaults().reactions
    results = (math.ceil(n_tasks / limit) - 1) * window
    reactions_n = n_tasks * (2 if final_reactions else 1)
    reactions = (math.ceil(reactions_n / r_limit) - 1) * r_window
    return {"results": results, "reactions": reactions, "reactions_n": reactions_n}


def bench_burst(rep: Report, sizes: Sizes, pycache: Path, keep: bool, mode: str,
                idle_cpu_s: Optional[float]) -> None:
    n = sizes.burst_tasks
    rep.section(f"2+3. {n} tasks queued at once, MAX_AGENTS={n}, STATUS_REACTIONS={mode}")
    with Bench(pycache, keep, MAX_AGENTS=n, STATUS_REACTIONS=mode) as b:
        w, ld = b.world, b.ld
        ids = [w.post(w.alice, f"benchmark task {i}")["id"] for i in range(n)]
        ld.reset_log()
        st = run_cli(b.home, "orchestrate", timeout=900)
        per_task = _results_per_task(w, ids)
        n429 = ld.count_429()
        total = len(ld.requests)
        routes = _route_counts(ld, w)
        leftovers = b.home.workers()
        claimed = sum(1 for t in ids if CLAIM in ld.reactions(w.task_queue, t))
    tag = f"[{mode}]"
    if st.returncode != 0:
        rep.note(f"orchestrate rc {st.returncode}: {st.stderr.strip()[-400:]}")
    done = sum(1 for c in per_task.values() if c == 1)
    rep.figure(f"burst.done{tag}", f"{done}/{n} tasks with exactly one result "
               f"(0 results: {sum(1 for c in per_task.values() if c == 0)}, >1: "
               f"{sum(1 for c in per_task.values() if c > 1)}; ✅ on {claimed}; workspaces left {len(leftovers)})",
               f"{n}/{n}", done == n and st.returncode == 0)
    rep.figure(f"burst.429s{tag}", str(n429), "0", n429 == 0)
    fl = _floor(n, mode != "off")
    floor = max(fl["results"], fl["reactions"])
    ratio = st.wall_s / floor if floor else float("inf")
    rep.figure(f"burst.makespan{tag}", f"{st.wall_s:.1f} s = {ratio:.3f}x the floor {floor:.1f} s", "<= 1.25x floor",
               ratio <= 1.25)
    rep.note(f"floor: {n} result posts in #results at 5 per 5 s -> (ceil({n}/5)-1)*5 = {fl['results']:.1f} s; "
             f"#task-queue reactions {fl['reactions_n']:.0f} at 4/s -> {fl['reactions']:.2f} s; makespan is the "
             f"orchestrate process from spawn to exit (startup, agents and the last reactions included)")
    _requests_figure(rep, f"burst.requests_per_task{tag}", total, n, routes, edits=routes.get(EDIT, 0),
                     per_task=PER_TASK_TARGET if mode != "off" else PER_TASK_TARGET - 1)
    cpu = st.cpu_s or 0.0
    rep.note(f"orchestrate process: CPU {cpu:.2f} s = {cpu / n * 1000:.1f} ms/task"
             + (f" (startup {idle_cpu_s * 1000:.0f} ms of it; marginal "
                f"{(cpu - idle_cpu_s) / n * 1000:.1f} ms/task)" if idle_cpu_s is not None else "")
             + f", peak RSS {(st.peak_rss_kb or 0) / 1024:.1f} MB, agents at once up to {st.max_children}")


SHARED = ("poll GET", "post #worker-pool", "GET /guilds/{guild_id}/threads/active", "GET /users/@me",
          "GET /channels/{channel_id}", "GET /guilds/{guild_id}/members/{user_id}")   # not any one task's


def _requests_figure(rep: Report, name: str, total: int, n: int, routes: Dict[str, int], *, edits: int,
                     per_task: int) -> None:
    """Requests per task against issue 24's target: ``per_task`` (a thread start, ✅, the thread's one
    message, the #results post, 🏁) plus the status edits the tasks' length needed. Two figures: what the
    tasks cost themselves, and everything (the polls and #worker-pool notices the tasks share too)."""
    shared = sum(v for k, v in routes.items() if k in SHARED)
    own, ept = (total - shared) / n, edits / n
    target = per_task + ept
    rep.figure(name, f"{own:.2f} a task's own ({total - shared} requests / {n} tasks; of them status edits "
               f"{ept:.2f} a task)", f"<= {per_task} + the status edits = {target:.2f}", own <= target + 1e-9)
    base, _, tag = name.partition("[")
    rep.figure(base + "_all" + ("[" + tag if tag else ""), f"{total / n:.2f} all in ({total} requests / {n} tasks: {shared / n:.2f} a task "
               f"shared: polls, notices, reads)", f"<= {target:.2f}", total / n <= target + 1e-9)
    rep.note("requests: " + ", ".join(f"{k} {v}" for k, v in sorted(routes.items(), key=lambda kv: -kv[1])))


def bench_requests(rep: Report, pycache: Path, keep: bool) -> None:
    """Issue 24: what a task costs in requests at the defaults (MAX_AGENTS, STATUS_REACTIONS, FOLLOWUP_HOURS...),
    25 short tasks queued at once."""
    n = REQUESTS_TASKS
    rep.section(f"7. requests per task at the defaults: {n} short tasks queued at once")
    with Bench(pycache, keep) as b:
        w, ld = b.world, b.ld
        ids = [w.post(w.alice, f"short task {i}")["id"] for i in range(n)]
        ld.reset_log()
        st = run_cli(b.home, "orchestrate", timeout=900)
        done = sum(1 for c in _results_per_task(w, ids).values() if c == 1)
        routes = _route_counts(ld, w)
        total, n429 = len(ld.requests), ld.count_429()
        threads = [m for t in ids for m in ld.messages(t) if m["type"] != 21]
    if st.returncode != 0 or done != n:
        rep.note(f"orchestrate rc {st.returncode}, {done}/{n} tasks with one result: {st.stderr.strip()[-300:]}")
    rep.figure("requests.429s", str(n429), "0", n429 == 0)
    _requests_figure(rep, "requests.per_task", total, n, routes, edits=routes.get(EDIT, 0), per_task=PER_TASK_TARGET)
    rep.note(f"messages in the {n} task threads: {len(threads)} (one each: the claim line, edited to the result); "
             f"each request's purpose: thread start = the claim (Discord's one thread per message arbitrates hosts), "
             f"✅ = the seed's claim mark, post in a task thread = the claim line (the status message), PATCH "
             f"…/messages/… = its edits (running, how it ended with the result), post #results = the result, "
             f"reaction final = 🏁, poll GET = #task-queue read, post #worker-pool = spawn/finish notices (batched), "
             f"threads/active = the follow-up reader's look")


# ---------------------------------------------------------------------------- 4. memory and CPU


def bench_agents(rep: Report, sizes: Sizes, pycache: Path, keep: bool, idle_cpu_s: Optional[float]) -> None:
    n, sleep = sizes.agents, sizes.agent_sleep_s
    rep.section(f"4. orchestrator memory and CPU with {n} running agents (SLEEP={sleep:g}, MAX_AGENTS={n})")
    with Bench(pycache, keep, MAX_AGENTS=n) as b:
        w = b.world
        ids = [w.post(w.alice, f"SLEEP={sleep:g} benchmark task {i}")["id"] for i in range(n)]
        st = run_cli(b.home, "orchestrate", timeout=900)
        done = sum(1 for c in _results_per_task(w, ids).values() if c == 1)
    if st.returncode != 0 or done != n:
        rep.note(f"orchestrate rc {st.returncode}, {done}/{n} tasks with one result: {st.stderr.strip()[-300:]}")
    rep.note(f"agents running at once: up to {st.max_children} (of {n}); pass {st.wall_s:.1f} s; "
             f"agents' own CPU (not counted) {st.children_cpu_s or 0:.2f} s")
    rss_mb = (st.peak_rss_kb or 0) / 1024
    rep.figure("agents.peak_rss", f"{rss_mb:.1f} MB (VmHWM of the orchestrate process)", "<= 50 MB",
               st.peak_rss_kb is not None and rss_mb <= 50)
    cpu = st.cpu_s
    if cpu is None:
        rep.figure("agents.cpu_per_task", "unknown (no /proc/<pid>/stat)", "<= 5 ms", False)
        return
    rep.figure("agents.cpu_per_task", f"{cpu / n * 1000:.1f} ms ({cpu:.2f} s utime+stime / {n} tasks)", "<= 5 ms",
               cpu / n <= 0.005)
    if idle_cpu_s is not None:
        rep.note(f"of which process startup and exit (an idle pass: {idle_cpu_s * 1000:.0f} ms) is "
                 f"{idle_cpu_s / n * 1000:.1f} ms/task; marginal {(cpu - idle_cpu_s) / n * 1000:.1f} ms/task")


# ---------------------------------------------------------------------------- 5. polling latency (--watch)


def _claim_times(ld: LocalDiscord) -> Dict[str, float]:
    out: Dict[str, float] = {}
    for rec in ld.requests:
        if rec.method == "PUT" and rec.route in REACT_ROUTES and CLAIM_PATH in rec.path:
            mid = rec.path.split("/messages/")[1].split("/")[0]
            out.setdefault(mid, rec.time)
    return out


def _wait_for(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def bench_watch(rep: Report, sizes: Sizes, pycache: Path, keep: bool, interval: float = 1.0) -> None:
    n = sizes.watch_tasks
    rep.section(f"5. polling latency: orchestrate --watch --interval {interval:g}, {n} tasks at random moments")
    rnd = random.Random()  # unseeded: a fixed seed would put the posts at the same phase of the polls every run
    with Bench(pycache, keep) as b:
        w, ld = b.world, b.ld
        rtt = request_rtt(w, b.env)
        time.sleep(1.1)  # let the RTT probe's requests leave the global window
        ld.reset_log()
        proc = popen_cli(b.home, "orchestrate", "--watch", "--interval", f"{interval:g}")
        _wait_for(lambda: ld.request_count(route=LIST) >= 1, 15)
        posted: Dict[str, float] = {}
        for i in range(n):
            time.sleep(rnd.uniform(0.2, 2 * interval))
            t = time.time()
            posted[w.post(w.alice, f"watched task {i}")["id"]] = t
        # The worst case by construction: a task posted just after a poll has been answered.
        worst: Dict[str, float] = {}
        for i in range(3):
            seen = ld.request_count(route=LIST)
            _wait_for(lambda: ld.request_count(route=LIST) > seen, 5 * interval)
            t = time.time()
            worst[w.post(w.alice, f"watched task, posted right after a poll {i}")["id"]] = t
            time.sleep(rnd.uniform(0.1, interval))
        _wait_for(lambda: len(_claim_times(ld).keys() & (posted.keys() | worst.keys())) == len(posted) + len(worst),
                  10 * interval + 10)
        _wait_for(lambda: len(ld.messages(w.results)) >= len(posted) + len(worst), 30)
        gets = [r.time for r in ld.requests if r.route == LIST]
        sent = time.monotonic()
        proc.signal(signal.SIGTERM)
        st = proc.wait(60)
        stop_s = time.monotonic() - sent
        claims = _claim_times(ld)
    lat = [claims[m] - t for m, t in posted.items() if m in claims]
    worst_lat = [claims[m] - t for m, t in worst.items() if m in claims]
    target = interval + rtt
    if len(lat) != len(posted):
        rep.note(f"{len(posted) - len(lat)} task(s) never got their ✅")
    gaps = [b2 - a for a, b2 in zip(gets, gets[1:])]
    rep.note(f"one request's round trip (DiscordClient GET from another process, median): {rtt * 1000:.1f} ms; "
             f"gaps between polls: min {min(gaps):.3f} s, max {max(gaps):.3f} s" if gaps else
             f"one request's round trip: {rtt * 1000:.1f} ms")
    if lat:
        rep.figure("watch.latency_max", f"{max(lat):.3f} s over {len(lat)} tasks (post -> ✅ reaching Discord)",
                   f"<= {target:.3f} s = interval + one round trip", max(lat) <= target)
        rep.figure("watch.latency_mean", f"{statistics.mean(lat):.3f} s", f"<= {target:.3f} s",
                   statistics.mean(lat) <= target)
    else:
        rep.figure("watch.latency_max", "no task was claimed", f"<= {target:.3f} s", False)
    if worst_lat:
        rep.note(f"worst case by construction (posted just after a poll was answered, {len(worst_lat)} tasks): "
                 f"max {max(worst_lat):.3f} s = interval + {(max(worst_lat) - interval) * 1000:.0f} ms "
                 f"(the next poll's round trip, recording the claim, the ✅ request)")
    rep.figure("watch.sigterm", f"exit {st.returncode}, {stop_s * 1000:.0f} ms after SIGTERM", "exit 143",
               st.returncode == 143)


# ---------------------------------------------------------------------------- the client bench


def bench_client_script(rep: Report, quick: bool) -> None:
    script = Path(__file__).resolve().parent / "bench_client.py"
    rep.section("client bench (bench/bench_client.py)")
    if not script.exists():
        rep.note("bench/bench_client.py is not in this checkout: skipped")
        return
    # 25 creates (a 20 s floor) keep the whole run near 5 minutes (its own default, 50, takes 45 s);
    # --quick runs 10 (5 s).
    argv = [sys.executable, str(script), "-n", "10" if quick else "25"]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        rep.note("bench/bench_client.py did not finish within 600 s")
        return
    for line in out.stdout.splitlines():
        if line.strip():
            print(line, flush=True)
            if re.search(r"\bMISS\b", line):
                rep.missed.append("bench_client " + " ".join(line.split()[:2]))
    if out.returncode != 0:
        rep.note(f"bench/bench_client.py exited {out.returncode}: {out.stderr.strip()[-300:]}")


# ---------------------------------------------------------------------------- 6. a flood of refusals


def _run_of(home: LocalHome, task_id: str) -> tuple:
    """(started_at, duration_s) of a task's run, as its record keeps them."""
    import json
    import sqlite3

    conn = sqlite3.connect(str(home.path / ".runtime" / "state.db"))
    try:
        started_at, outcome = conn.execute("SELECT started_at, outcome FROM tasks WHERE task_id = ?",
                                           (task_id,)).fetchone()
    finally:
        conn.close()
    return float(started_at), float(json.loads(outcome)["duration_s"])


def bench_flood(rep: Report, sizes: Sizes, pycache: Path, keep: bool, strangers: int = 30) -> None:
    """Issue 22: 30 messages from someone not allowed, then one task (issue 24: a stranger starts no thread)."""
    rep.section(f"6. {strangers} messages from a stranger, then 1 allowed task (SLEEP=0.1), Discord's limits")
    with Bench(pycache, keep) as b:   # alice may run tasks (harness.make_home), mallory may not
        w, ld = b.world, b.ld
        for i in range(strangers):
            w.post(w.mallory, f"let me in {i}")
        task = w.post(w.alice, "a quick one SLEEP=0.1")["id"]
        ld.reset_log()
        st = run_cli(b.home, "orchestrate", timeout=600)
        started_at, duration = _run_of(b.home, task)
        reqs = list(ld.requests)
        posts = [r.time for r in reqs if r.route == CREATE and r.channel_id == w.results and r.status == 200]
        result = next((m for m in ld.messages(w.results) if f"task `{task}`" in m["content"]), None)
    if st.returncode != 0 or result is None or not posts:
        rep.note(f"orchestrate rc {st.returncode}: {st.stderr.strip()[-400:]}")
        return
    from discord_orch.models import snowflake_time

    posted = snowflake_time(result["id"])   # the result's own post (the stranger's explanation may go first)
    after_exit = posted - (started_at + duration)
    rep.figure("flood.result_after_agent_exit", f"{after_exit:.2f} s (the result's post in #results)", "<= 2 s",
               after_exit <= 2.0)
    rep.figure("flood.shown_duration", f"{duration:.2f} s (the agent slept 0.1 s)", "< 2 s", duration < 2.0)
    starts = sum(1 for r in reqs if r.route == THREAD_START)
    rep.figure("flood.thread_starts", f"{starts} (the task's; a stranger's message starts none)", "1", starts == 1)
    rep.note(f"the pass took {st.wall_s:.1f} s in all ({len(reqs)} requests: the stranger's ⛔ on at most 10, one "
             f"explanation); the result went out {posted - st.started_at:.1f} s after the pass started")


# ---------------------------------------------------------------------------- main


SECTIONS = ("idle", "burst", "agents", "watch", "client", "flood", "requests")


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller numbers (about 1.5 minutes)")
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    ap.add_argument("--keep", action="store_true", help="keep the temporary homes")
    args = ap.parse_args(argv)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = only - set(SECTIONS)
    if unknown:
        ap.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    sizes = QUICK if args.quick else FULL
    rep = Report()
    rep.note(f"discord-orch bench{' --quick' if args.quick else ''}: {os.cpu_count()} CPUs, load {loadavg()}, "
             f"Python {sys.version.split()[0]}, LocalDiscord with RateLimits.discord_defaults()")
    with Scratch("discord-orch-bench-pyc-") as pycache:
        idle_cpu: Optional[float] = None
        if "idle" in only:
            idle_cpu = bench_idle(rep, sizes, pycache, args.keep)["idle_cpu_s"]
        if "burst" in only:
            bench_burst(rep, sizes, pycache, args.keep, "final", idle_cpu)
            bench_burst(rep, sizes, pycache, args.keep, "off", idle_cpu)
        if "agents" in only:
            bench_agents(rep, sizes, pycache, args.keep, idle_cpu)
        if "watch" in only:
            bench_watch(rep, sizes, pycache, args.keep)
        if "client" in only:
            bench_client_script(rep, args.quick)
        if "flood" in only:
            bench_flood(rep, sizes, pycache, args.keep)
        if "requests" in only:
            bench_requests(rep, pycache, args.keep)
    print(f"\n# {len(rep.missed)} target(s) missed{': ' + ', '.join(rep.missed) if rep.missed else ''}; "
          f"{time.monotonic() - rep.t0:.0f} s; load {loadavg()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
