"""Watchdog: a pass whose main loop stops moving ends itself, so the next pass recovers its tasks.

Why: a pass that hangs (a deadlock, a system call that never returns) holds
the home's lock for good, and every later cron pass only logs that one is
running: nothing is claimed or reported again until someone looks. The main
loop moves at least every TICK_S (0.25 s) and every call it makes is bounded
(HTTP timeouts, capped retries and rate-limit waits, a capped final drain),
so standing still for ``WATCHDOG`` seconds (default 30 min) means it is stuck.

The answer is the one the reliability tests exercise hardest: end the process
as a SIGKILL would. Every task's record is written before and after each step
and agents run in their own sessions, so the next pass adopts running agents,
reports finished ones and posts what was left in the outbox. The watchdog is
a daemon thread that needs nothing the stuck thread may hold: it writes its
one line with ``os.write`` (not logging, whose lock may be held) and leaves
with ``os._exit`` (no cleanup that could block). The kernel releases the
home's flock with the process.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Callable, Optional

from ..errors import EXIT_HUNG

CHECK_EVERY_MAX_S = 10.0


class Watchdog:
    """A thread that ends the process (exit 70) when ``beat()`` has not been called for ``limit_s``."""

    def __init__(self, limit_s: float, *, clock: Callable[[], float] = time.monotonic,
                 on_stuck: Optional[Callable[[str], None]] = None) -> None:
        self.limit_s = limit_s
        self._clock = clock
        self._last = clock()
        self._stopped = threading.Event()
        self._on_stuck = on_stuck or _exit_now
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)

    def start(self) -> "Watchdog":
        """Start watching from now."""
        self._last = self._clock()
        self._thread.start()
        return self

    def beat(self) -> None:
        """The main loop moved (a float assignment: no lock, safe from anywhere)."""
        self._last = self._clock()

    def stop(self) -> None:
        """Stop watching (the pass is ending)."""
        self._stopped.set()

    def _run(self) -> None:
        every = max(0.05, min(self.limit_s / 4, CHECK_EVERY_MAX_S))
        while not self._stopped.wait(every):
            still = self._clock() - self._last
            if still > self.limit_s:
                self._on_stuck(f"discord-orch: error: the pass has not moved for {still:.0f} s (WATCHDOG="
                               f"{self.limit_s:g}); it looks hung, so it exits and the next pass recovers its "
                               f"tasks (running agents are adopted, nothing is lost)\n")
                return


def _exit_now(line: str) -> None:
    try:
        os.write(2, line.encode("utf-8", "replace"))
    except OSError:
        pass
    os._exit(EXIT_HUNG)
