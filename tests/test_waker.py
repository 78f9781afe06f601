"""The main loop's Waker: woken from threads and from signal handlers, never deadlocked.

A pass once hung for good: the SIGCHLD handler called threading.Event.set(), whose lock
the interrupted main thread already held inside Event.wait(). The stress test below
fires a signal every 0.1 ms at a loop of zero-timeout waits, in a child process so that
a hang is a failed assertion, not a hung test run. (With threading.Event in place of
Waker it failed 3 runs of 3: handlers nested and blocked until a RecursionError.)
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from discord_orch.core.waker import Waker

SRC = Path(__file__).resolve().parents[1] / "src"

STRESS = """
import signal, sys, time
sys.path.insert(0, {src!r})
from discord_orch.core.waker import Waker
waker = Waker()
signal.signal(signal.SIGALRM, lambda signum, frame: waker.wake())
signal.setitimer(signal.ITIMER_REAL, 0.0001, 0.0001)
end, woken, waits = time.monotonic() + 1.0, 0, 0
while time.monotonic() < end:
    woken += waker.wait(0)
    waits += 1
signal.setitimer(signal.ITIMER_REAL, 0, 0)
print(f"survived {{waits}} waits, woken {{woken}}")
"""


def test_waking_from_a_signal_handler_in_a_tight_wait_loop_never_deadlocks():
    run = subprocess.run([sys.executable, "-c", STRESS.format(src=str(SRC))], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.startswith("survived ") and " woken 0" not in run.stdout


def test_wait_returns_on_wake_from_a_thread_and_times_out_otherwise():
    waker = Waker()
    assert waker.wait(0.01) is False
    threading.Timer(0.05, waker.wake).start()
    assert waker.wait(10) is True
    for _ in range(100_000):      # far more than a pipe holds: extra wakes are dropped, not blocking
        waker.wake()
    assert waker.wait(0) is True and waker.wait(0) is False   # one wait drains them all
