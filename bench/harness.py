"""Shared pieces of the benchmarks: a local Discord world, a home, and the CLI run as a user runs it.

The world and the home come from ``discord_orch.sim.world``, as in tests/conftest.py (no pytest here):
everything is real HTTP to ``LocalDiscord`` on 127.0.0.1 and real agent processes
(the stand-in ``openclaw``). ``run_cli`` starts ``discord-orch`` as a subprocess and
measures the orchestrate process itself, not its agents:

* CPU: utime+stime from ``/proc/<pid>/stat`` read after the process has exited but
  before it is reaped (``waitid(WNOWAIT)``), so nothing it did is missed and the
  agents it reaped (``cutime``/``cstime``) are not counted. (``os.wait4`` would add
  the reaped agents' time: Linux reports self + reaped children there.)
* memory: ``VmHWM`` from ``/proc/<pid>/status`` (its own peak RSS), sampled while
  it runs; the peak is monotonic, so the last sample is the peak up to ~20 ms
  before exit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from discord_orch.sim.world import LocalHome, World, make_world

CLK_TCK = os.sysconf("SC_CLK_TCK")
SAMPLE_S = 0.02
CLAIM = "✅"


def bench_env(pycache: Optional[Path]) -> Dict[str, str]:
    """The environment a user's shell would give: none of our config keys.

    With ``pycache`` the interpreter may write and use bytecode there (as after a
    normal ``pip install``, which byte-compiles); otherwise every run recompiles.
    """
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DISCORD_ORCH", "CHIP_", "ORCHESTRATOR_", "OPENCLAW", "ALLOWED_", "ALLOW_",
                                "STATUS_", "MAX_AGENTS", "POLL_INTERVAL", "TIMEOUT"))}
    if pycache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def make_home(root: Path, world: World, env: Dict[str, str], **config: object) -> LocalHome:
    """A home as the benchmarks run it: alice may submit, agents get 120 s (``config`` adds keys)."""
    return LocalHome.build(root, world, env, ALLOWED_USER_IDS=world.alice.id, TIMEOUT=120, **config)


def cli_argv(*args: str) -> List[str]:
    """``discord-orch ARGS`` through the installed console script (as cron runs it), else ``-m``."""
    script = Path(sys.executable).parent / "discord-orch"
    if script.is_file() and os.access(script, os.X_OK):
        return [sys.executable, str(script), *args]
    return [sys.executable, "-m", "discord_orch", *args]


@dataclass
class ProcStats:
    returncode: int
    wall_s: float
    cpu_s: Optional[float]        # utime + stime of the process itself (its threads, not its children)
    children_cpu_s: Optional[float]
    peak_rss_kb: Optional[int]    # VmHWM
    max_children: int             # most child processes (agents) seen at once
    stderr: str
    started_at: float             # time.time() just before the spawn
    ended_at: float


def _read_stat(pid: int):
    with open(f"/proc/{pid}/stat", "rb") as fh:
        data = fh.read().decode()
    rest = data[data.rindex(")") + 2:].split()
    # rest[0] is field 3 (state); utime/stime/cutime/cstime are fields 14..17
    return int(rest[11]), int(rest[12]), int(rest[13]), int(rest[14])


def _count_children(pid: int) -> Optional[int]:
    """Live children of ``pid`` (all its threads), or None if the kernel does not say."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as fh:
                total += len(fh.read().split())
    except OSError:
        return None
    return total


def _read_hwm(pid: int) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class Measured:
    """A running CLI process whose own CPU time and peak RSS are measured."""

    def __init__(self, argv: Sequence[str], *, cwd: Path, env: Dict[str, str]) -> None:
        self._errfile = tempfile.TemporaryFile()
        self.started_at = time.time()
        self._t0 = time.perf_counter()
        self.proc = subprocess.Popen(list(argv), cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                                     stderr=self._errfile)
        self.pid = self.proc.pid
        self._hwm: Optional[int] = None
        self.max_children = 0
        self._done = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        while not self._done.is_set():
            hwm = _read_hwm(self.pid)
            if hwm is not None:
                self._hwm = max(self._hwm or 0, hwm)
            children = _count_children(self.pid)
            if children is not None:
                self.max_children = max(self.max_children, children)
            self._done.wait(SAMPLE_S)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> ProcStats:
        # Wait for the exit WITHOUT reaping, so /proc/<pid>/stat still holds its final times.
        killer = threading.Timer(timeout, self.proc.kill)
        killer.start()
        try:
            while True:
                try:
                    os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
                    break
                except InterruptedError:  # pragma: no cover - PEP 475 retries, but be explicit
                    continue
        finally:
            killer.cancel()
        wall = time.perf_counter() - self._t0
        ended = time.time()
        self._done.set()
        self._sampler.join()
        try:
            ut, st, cut, cst = _read_stat(self.pid)
            cpu, ccpu = (ut + st) / CLK_TCK, (cut + cst) / CLK_TCK
        except (OSError, ValueError, IndexError):
            cpu = ccpu = None
        rc = self.proc.wait()
        self._errfile.seek(0)
        err = self._errfile.read().decode("utf-8", "replace")
        self._errfile.close()
        return ProcStats(rc, wall, cpu, ccpu, self._hwm, self.max_children, err, self.started_at, ended)


def run_cli(home: LocalHome, *args: str, timeout: float = 600.0) -> ProcStats:
    return Measured(cli_argv(*args), cwd=home.path, env=home.env).wait(timeout)


def popen_cli(home: LocalHome, *args: str) -> Measured:
    return Measured(cli_argv(*args), cwd=home.path, env=home.env)


def timed_python(code: str, env: Dict[str, str], cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


_RTT_CODE = r'''
import sys, time
from discord_orch.discord_api import DiscordClient
token, base, channel, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
with DiscordClient(token, base_url=base) as client:
    client.list_messages(channel, limit=1)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        client.list_messages(channel, limit=1)
        times.append(time.perf_counter() - t0)
times.sort()
print(times[len(times) // 2])
'''


def request_rtt(world: World, env: Dict[str, str], n: int = 20) -> float:
    """Median round trip of one GET through DiscordClient from another process (as the orchestrator sends it)."""
    out = subprocess.run([sys.executable, "-c", _RTT_CODE, world.bot.token, world.ld.base_url, world.task_queue,
                          str(n)], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


class Scratch:
    """A temporary directory removed at exit (kept with keep=True)."""

    def __init__(self, prefix: str, keep: bool = False) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=prefix))
        self.keep = keep

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc: object) -> None:
        if not self.keep:
            shutil.rmtree(self.path, ignore_errors=True)


__all__ = ["World", "LocalHome", "make_world", "make_home", "bench_env", "run_cli", "popen_cli", "Measured",
           "ProcStats", "timed_python", "request_rtt", "loadavg", "Scratch", "CLAIM", "cli_argv"]


def wait_until(cond: Callable[[], object], cap: float = 60.0, step: float = 0.005) -> object:
    """Poll ``cond`` every ``step`` s until it returns something true (returned); give up after ``cap`` s."""
    end = time.monotonic() + cap
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(step)
    raise SystemExit("gave up waiting")
