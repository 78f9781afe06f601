"""Several hosts on one local world (issue 13): their homes, their orchestrate processes, and an audit
of what people see once they are done. Shared by tests/test_multihost_race.py and bench/multihost.py.

Hosts ``a`` and ``b`` share the world's bot token (told apart by HOST_NAME); ``c`` has a bot of its
own. Each host is driven by a thread that keeps one ``discord-orch orchestrate`` process going: a
``--watch`` (restarted when it dies) or, ``watch=False``, one pass after another, as cron runs them.
``kill`` SIGKILLs a host's current process; its driver starts the next, which recovers.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence

from ..openclaw import AGENT_ID_ENV
from ..state import CLAIMING, ENDED_STATUSES
from .world import STANDIN_BIN_DIR, LocalHome, World

HOST_NAMES = ("a", "b", "c")
RESTART_PAUSE_S = 0.1       # between one process of a host and the next (a pass loop, a restart)
STOP_WAIT_S = 60.0          # SIGTERM, then at most this long for a host's process to exit
THREAD_STARTER_TYPE = 21    # the first message of a thread started from a message
CLAIM_LINE = re.compile(r"Claimed by \*\*([^*]+)\*\*")
OWN_CONFIG_PREFIXES = ("DISCORD_ORCH", "CHIP_", "ORCHESTRATOR_", "OPENCLAW", "ALLOWED_", "ALLOW_", "STATUS_",
                       "MAX_AGENTS", "POLL_INTERVAL", "TIMEOUT", "HOST_NAME", "CLAIM")


def host_name(name: str) -> str:
    return f"host-{name}"


class Host:
    """One home and the driver thread that keeps its orchestrate process going."""

    def __init__(self, name: str, home: LocalHome, run_log: Path, argv: List[str], watch: bool) -> None:
        self.name = name
        self.home = home
        self.run_log = run_log
        self.argv = argv + (["--watch"] if watch else [])
        self.watch = watch
        self.proc: Optional[subprocess.Popen] = None
        self.processes = 0          # started so far
        self.kills = 0
        self.exit_codes: List[int] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._driver: Optional[threading.Thread] = None

    # -- the driver -------------------------------------------------------------------
    def start(self) -> None:
        self._driver = threading.Thread(target=self._drive, name=f"host-{self.name}", daemon=True)
        self._driver.start()

    def _drive(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                if self._stopping.is_set():
                    return
                log = open(self.home.path / f"orchestrate-{self.processes}.log", "w")
                self.proc = subprocess.Popen(self.argv, cwd=self.home.path, env=self.home.env,
                                             stdout=log, stderr=subprocess.STDOUT)
                log.close()
                self.processes += 1
            code = self.proc.wait()
            if code != -signal.SIGKILL:
                self.exit_codes.append(code)
            self._stopping.wait(RESTART_PAUSE_S)

    def kill(self) -> bool:
        """SIGKILL the current process (mid-pass); its driver starts the next. False if none ran."""
        with self._lock:
            proc = self.proc
            if proc is None or proc.poll() is not None:
                return False
            proc.kill()
            self.kills += 1
            return True

    def pause(self, resume: bool = False) -> None:
        """SIGSTOP the current process (a host gone silent: its agents, in sessions of their own, go on);
        ``resume``: SIGCONT it."""
        with self._lock:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGCONT if resume else signal.SIGSTOP)

    def stop(self) -> None:
        """No more processes; a --watch is stopped by SIGTERM (a pass in a loop is let finish)."""
        with self._lock:
            self._stopping.set()
            proc = self.proc
        if proc is not None and proc.poll() is None and self.watch:
            proc.send_signal(signal.SIGTERM)
        if self._driver is not None:
            self._driver.join(STOP_WAIT_S)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
            raise AssertionError(f"host {self.name}: its orchestrate did not end within {STOP_WAIT_S} s")

    # -- what the host holds --------------------------------------------------------------
    def runs(self) -> List[dict]:
        """One entry per agent run (the stand-in's run log)."""
        if not self.run_log.exists():
            return []
        return [json.loads(line) for line in self.run_log.read_text().splitlines() if line.strip()]

    def records(self) -> Dict[str, str]:
        return task_statuses(self.home.path)

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.home.path.glob("orchestrate-*.log")))


def task_statuses(home: Path) -> Dict[str, str]:
    """task id -> status, read from a home's state.db ({} before its first pass made it)."""
    db = home / ".runtime" / "state.db"
    if not db.exists():
        return {}
    conn = sqlite3.connect(str(db), timeout=30)
    try:
        return {row[0]: row[1] for row in conn.execute("SELECT task_id, status FROM tasks")}
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):   # the pass has not created its schema yet
            return {}
        raise
    finally:
        conn.close()


def cli_argv(interval: float) -> List[str]:
    return [sys.executable, "-m", "discord_orch", "orchestrate", "--interval", f"{interval:g}"]


class Fleet:
    """Three hosts on ``world`` (or those of them in ``names``): those in ``own_bots`` (``c``) have a bot of
    their own, the others share the world's."""

    def __init__(self, root: Path, world: World, env: Mapping[str, str], *, watch: Mapping[str, bool],
                 interval: float = 0.3, names: Sequence[str] = HOST_NAMES, own_bots: Sequence[str] = ("c",),
                 **config: object) -> None:
        self.world = world
        tokens = {}
        self.bot_of = {name: world.bot.id for name in HOST_NAMES}
        for name in own_bots:
            bot = world.ld.create_user(f"discord-orch-{name}", bot=True)
            world.ld.add_member(world.guild, bot.id)
            tokens[name], self.bot_of[name] = bot.token, bot.id
        base = {k: v for k, v in env.items() if not k.startswith(OWN_CONFIG_PREFIXES)}
        if env.get("DISCORD_ORCH_STRICT_LOOP"):   # the test suite's strict mode holds for every host too
            base["DISCORD_ORCH_STRICT_LOOP"] = env["DISCORD_ORCH_STRICT_LOOP"]
        # The stand-in's run log lies in the host's dir, which a fenced agent cannot see: hosts run unfenced
        # unless told otherwise (the fence has its own tests: tests/test_sandbox.py)
        config = {"AGENT_SANDBOX": "off", **config}
        self.hosts: Dict[str, Host] = {}
        for name in names:
            run_log = root / name / "agent-runs.jsonl"
            host_env = dict(base, STANDIN_RUN_LOG=str(run_log), PYTHONUNBUFFERED="1",
                            PATH=f"{root / name / STANDIN_BIN_DIR}{os.pathsep}{base.get('PATH', '')}")
            home = LocalHome.build(root / name, world, host_env, HOST_NAME=host_name(name),
                                   ALLOWED_USER_IDS=world.alice.id, **config)
            if name in tokens:
                home.write_config(CHIP_TOKEN=tokens[name])
            self.hosts[name] = Host(name, home, run_log, cli_argv(interval), watch.get(name, True))

    def start(self) -> None:
        for host in self.hosts.values():
            host.start()

    def stop(self) -> None:
        for host in self.hosts.values():
            host.stop()

    def done(self, tasks: List[str]) -> bool:
        """Every task has a result in #results and no host has anything left to do for it."""
        if len(results_by_task(self.world, tasks)) < len(tasks):
            return False
        return all(status in ENDED_STATUSES for host in self.hosts.values() for status in host.records().values())

    def wait_done(self, tasks: List[str], cap_s: float) -> float:
        """Seconds until ``done``; AssertionError (with each host's log tail) after ``cap_s``."""
        t0 = time.monotonic()
        while not self.done(tasks):
            if time.monotonic() - t0 > cap_s:
                tails = "\n".join(f"--- host {h.name}: {h.records()}\n{h.log_text()[-3000:]}"
                                  for h in self.hosts.values())
                raise AssertionError(f"not done after {cap_s} s: {len(results_by_task(self.world, tasks))} of "
                                     f"{len(tasks)} tasks have a result\n{tails}")
            time.sleep(0.05)
        return time.monotonic() - t0


def wait_for(cond: Callable[[], object], what: str, cap: float) -> None:
    """Poll ``cond`` until it holds; AssertionError naming ``what`` after ``cap`` seconds (a bound so
    that a hang fails a test, never an assertion on speed)."""
    end = time.monotonic() + cap
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


# ------------------------------------------------------------------------------ what people see

def is_result_for(msg: dict, task_id: str) -> bool:
    first_line = msg["content"].split("\n", 1)[0]
    return (f"task `{task_id}`" in first_line
            or (msg.get("message_reference") or {}).get("message_id") == task_id)


def results_by_task(world: World, tasks: List[str]) -> Dict[str, List[dict]]:
    """task id -> its result posts in #results (tasks without one are left out)."""
    out: Dict[str, List[dict]] = {}
    for msg in world.results_messages():
        for task in tasks:
            if is_result_for(msg, task):
                out.setdefault(task, []).append(msg)
    return out


def result_label(msg: dict) -> str:
    """The status word of a result post's header ("DONE", "FAILED", "INTERRUPTED", ...)."""
    found = re.search(r"\*\*([A-Z][A-Z ]*)\*\*", msg["content"].split("\n", 1)[0])
    return found.group(1) if found else "?"


def live_processes_marked(key: str, values) -> List[int]:
    """Live (non-zombie) processes whose environment has KEY=<one of values>, read from /proc."""
    markers = {f"{key}={v}".encode() for v in values}
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
            with open(f"/proc/{name}/environ", "rb") as fh:
                env = set(fh.read().split(b"\0"))
        except (OSError, IndexError):
            continue
        if state not in (b"Z", b"X") and env & markers:
            found.append(int(name))
    return found


@dataclass
class Audit:
    """What a finished run left, per task; ``problems`` is empty when each task ran once, on one host,
    with one result, one thread naming that host and at most one claim line in it, by that host."""

    tasks: int = 0
    runs: int = 0
    duplicates: int = 0          # agent runs beyond the first of a task
    never_ran: int = 0
    lost_results: int = 0        # tasks with no result in #results
    extra_results: int = 0       # results beyond the first of a task
    no_claim_line: int = 0       # threads without the winner's claim line (its pass died before posting it)
    labels: Dict[str, int] = field(default_factory=dict)
    ran_on: Dict[str, int] = field(default_factory=dict)   # host -> tasks it ran
    problems: List[str] = field(default_factory=list)


def audit(fleet: Fleet, tasks: List[str]) -> Audit:
    """Read #results, the threads, each host's run log and records, and /proc (call after ``stop``)."""
    world, ld = fleet.world, fleet.world.ld
    out = Audit(tasks=len(tasks))
    ran: Dict[str, List[str]] = {}
    agents: List[str] = []
    for host in fleet.hosts.values():
        for run in host.runs():
            ran.setdefault(run["task_id"], []).append(host.name)
            agents.append(run["agent_id"])
    results = results_by_task(world, tasks)
    by_id = {m["id"]: m for m in ld.messages(world.task_queue)}
    for task in tasks:
        hosts = ran.get(task, [])
        out.runs += len(hosts)
        out.duplicates += max(0, len(hosts) - 1)
        if not hosts:
            out.never_ran += 1
        posts = results.get(task, [])
        if not posts:
            out.lost_results += 1
            out.problems.append(f"task {task}: no result in #results")
        else:
            out.extra_results += len(posts) - 1
            for post in posts:
                out.labels[result_label(post)] = out.labels.get(result_label(post), 0) + 1
        if len(hosts) > 1:
            out.problems.append(f"task {task}: ran {len(hosts)} times, on {hosts}")
        if len(posts) > 1:
            out.problems.append(f"task {task}: {len(posts)} results in #results")
        if not by_id.get(task, {}).get("thread"):
            out.problems.append(f"task {task}: no thread")
            continue
        thread = ld.thread(task)
        owner = next((n for n in HOST_NAMES if thread["name"].endswith(" · " + host_name(n))), None)
        if owner is None or fleet.bot_of[owner] != thread["owner_id"]:
            out.problems.append(f"task {task}: its thread {thread['name']!r} (owner {thread['owner_id']}) "
                                f"names no host whose bot started it")
            continue
        out.ran_on[owner] = out.ran_on.get(owner, 0) + 1
        if hosts and hosts != [owner]:
            out.problems.append(f"task {task}: its thread names {host_name(owner)} but it ran on {hosts}")
        claims = [m for m in ld.messages(task) if m["type"] != THREAD_STARTER_TYPE
                  and CLAIM_LINE.search(m["content"])]
        said = [CLAIM_LINE.search(m["content"]).group(1) for m in claims]  # type: ignore[union-attr]
        if not said:
            out.no_claim_line += 1
        elif said != [host_name(owner)]:
            out.problems.append(f"task {task}: claim lines in its thread: {[m['content'][:60] for m in claims]}")
    for host in fleet.hosts.values():
        for task, status in host.records().items():
            if status == CLAIMING.value or status not in {s.value for s in ENDED_STATUSES}:
                out.problems.append(f"host {host.name}: task {task} left {status}")
        # 143: a --watch stopped by SIGTERM; -15: one stopped while it started, before its handler was set
        if any(code not in (0, 128 + signal.SIGTERM, -signal.SIGTERM) for code in host.exit_codes):
            out.problems.append(f"host {host.name}: exit codes {host.exit_codes}")
        if "Traceback" in host.log_text():
            out.problems.append(f"host {host.name}: a traceback in its log")
    left = live_processes_marked(AGENT_ID_ENV, agents)
    if left:
        out.problems.append(f"agent processes left: {left}")
    return out
