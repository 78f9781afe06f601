"""Lanes: one worker thread per Discord channel the orchestrator writes to.

Why: Discord's rate limits, not the machine, bound a pass, and they are per
channel: result posts in #results (5 per 5 s), reactions in #task-queue (4
per second) and notices in #worker-pool are limited independently. Doing
them one after the other in the main loop would add those waits up; a lane
per channel lets each bucket drain at its own pace while the main loop keeps
supervising agents. Within a lane, jobs run in order (a result is posted
before its task's final reaction), those of a lower ``priority`` first (a
result before the refusals queued ahead of it: see reporter.py).

``NoticeLane`` batches: lines submitted while the lane is busy (often: while
the client waits for #worker-pool's bucket) go out together in as few
messages as fit.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from typing import Callable, List, Optional

from ..errors import StateError, TransitionError

log = logging.getLogger("discord_orch")

Job = Callable[[], None]
_STOP = object()
_STOP_PRIORITY = 1 << 30   # after every job queued before close()
NOTICE_LINGER_S = 2.0   # lines arriving this soon after the first go out in one message (issue 24: 0.3 s made 16
                        # posts for 25 tasks, this 5); cut short when the pass ends (``hurry``)


class Lane:
    """A FIFO of jobs run by one daemon thread, started with the first job. Jobs must not raise (they log)."""

    def __init__(self, name: str, on_done: Optional[Callable[[], None]] = None) -> None:
        self.name = name
        self._queue: "queue.PriorityQueue[tuple]" = queue.PriorityQueue()
        self._seq = itertools.count()   # FIFO within a priority; jobs themselves are never compared
        self._pending = 0
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._on_done = on_done
        self._thread: Optional[threading.Thread] = None   # started by the first job: an idle pass starts none

    def submit(self, job: Job, *, priority: int = 0) -> None:
        """Queue a job; it runs after the jobs queued before it with a priority as low or lower."""
        with self._lock:
            self._pending += 1
            self._idle.clear()
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=f"lane-{self.name}", daemon=True)
                self._thread.start()
        self._queue.put((priority, next(self._seq), job))

    @property
    def busy(self) -> bool:
        """A job is queued or running."""
        return not self._idle.is_set()

    def wait_idle(self, timeout: Optional[float]) -> bool:
        return self._idle.wait(timeout)

    def hurry(self) -> None:
        """The pass is ending: cut short any wait by choice (a notice lane's linger)."""

    def close(self, timeout: Optional[float] = None) -> None:
        """Stop the thread after the jobs queued so far (a lane that never had a job has none)."""
        with self._lock:
            thread = self._thread
        if thread is None:
            return
        self._queue.put((_STOP_PRIORITY, next(self._seq), _STOP))
        thread.join(timeout)

    def _work(self) -> None:
        while True:
            _, _, job = self._queue.get()
            if job is _STOP:
                return
            try:
                job()  # type: ignore[operator]
            except Exception:  # a job that raises is a bug; keep the lane alive
                log.exception("internal error in lane %s", self.name)
            finally:
                with self._lock:
                    self._pending -= 1
                    if self._pending == 0:
                        self._idle.set()
                if self._on_done is not None:
                    self._on_done()


class NoticeLane(Lane):
    """A lane that sends buffered lines in batches through ``send(lines)``."""

    def __init__(self, name: str, send: Callable[[List[str]], None],
                 on_done: Optional[Callable[[], None]] = None) -> None:
        super().__init__(name, on_done)
        self._send = send
        self._buffer: List[str] = []
        self._buffer_lock = threading.Lock()
        self._flush_queued = False
        self._hurry = threading.Event()
        self._lingering = False

    @property
    def busy(self) -> bool:
        """A job is queued or running, other than a flush that only lingers for more lines (the pass need not
        wait for it: its end hurries it)."""
        with self._lock:
            only_lingering = self._lingering and self._pending == 1
        return super().busy and not only_lingering

    def hurry(self) -> None:
        self._hurry.set()

    def add(self, line: str) -> None:
        """Queue one line; lines close in time go out in one message."""
        with self._buffer_lock:
            self._buffer.append(line)
            if self._flush_queued:
                return
            self._flush_queued = True
        self.submit(self._flush)

    def _flush(self) -> None:
        # Spawns of one pass come in a burst, finishes in a trickle: a linger puts them in few messages.
        self._lingering = True
        try:
            self._hurry.wait(NOTICE_LINGER_S)
        finally:
            self._lingering = False
        with self._buffer_lock:
            lines, self._buffer = self._buffer, []
            self._flush_queued = False
        if lines:
            self._send(lines)


def guarded(job: Job, on_fatal: Callable[[Exception], None]) -> Job:
    """A lane job whose StateError (disk full, home unwritable) or TransitionError (a bug in the
    walk) ends the pass with one line, instead of being logged and forgotten by the lane."""
    def run() -> None:
        try:
            job()
        except (StateError, TransitionError) as exc:
            on_fatal(exc)
    return run


def drain(lanes: List[Lane], cap: float, clock: Callable[[], float] = time.monotonic) -> None:
    """Wait at most ``cap`` seconds in all for the lanes to finish, then stop their threads."""
    deadline = clock() + cap
    for lane in lanes:
        lane.hurry()
    for lane in lanes:
        if not lane.wait_idle(max(0.0, deadline - clock())):
            log.warning("lane %s still busy after %.0fs; what it holds is retried next pass", lane.name, cap)
    for lane in lanes:
        lane.close(timeout=0.1)
