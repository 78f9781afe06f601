"""The hub: the loop of one pass, which never waits for the network.

The loop thread owns the pass's state (the board, the backlog, the steps' own). Each
turn it drains the inbox, runs the timers that are due, then gives every step its
``turn(now)`` in the registry's order, and sleeps until woken (a lane's answer, a
SIGCHLD, a signal) or TICK_S passes. Everything that talks to Discord or downloads a
file runs on a lane (lanes.py: a thread per channel or kind of work); ``submit`` runs a
job there and hands its value back through the inbox (``call_soon``), so a rate-limit
wait or a retry holds that lane only, while agents stay supervised, timeouts and stops
stay on time, and the presence beat and the watchdog stay fed.

A pass ends when no step is busy, no job is in flight and no lane has work (``--watch``:
only when stopped). On SIGTERM / SIGINT it ends once the steps that must finish (running
agents being stopped) are done; on a fatal error (``fatal``, from any thread) at once.
Either way the lanes are then drained for at most DRAIN_CAP_S (STOP_DRAIN_CAP_S after a
signal): what they could not send stays in the records for the next pass.

Strict mode (``forbid``, set by the test suite through DISCORD_ORCH_STRICT_LOOP=1): the
client refuses any request made on the loop thread, so every test holds this rule.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..errors import InternalError, OrchError
from .lanes import Lane, drain
from .waker import Waker
from .watchdog import Watchdog

log = logging.getLogger("discord_orch")

TICK_S = 0.25            # longest sleep of the loop between turns
DRAIN_CAP_S = 120.0      # longest wait at the end of a pass for the lanes to finish posting
STOP_DRAIN_CAP_S = 20.0  # the same, after SIGTERM/SIGINT
_FAILED = object()       # a job that raised: its ``done`` is not called


class Hub:
    """The inbox, timers and lanes of one pass, and the loop that drives the steps."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, watchdog_s: float = 0.0) -> None:
        self.clock = clock
        self.watchdog_s = watchdog_s
        self.stop_signal: Optional[int] = None
        self.fatal_error: Optional[OrchError] = None
        self._fatal_lock = threading.Lock()
        self._waker = Waker()   # not threading.Event: signal handlers call wake() (see waker.py)
        self._inbox: "queue.SimpleQueue[Tuple[Callable[..., Any], tuple]]" = queue.SimpleQueue()
        self._timers: List[Tuple[float, int, Callable[[], Any]]] = []
        self._seq = itertools.count()
        self._lanes: Dict[str, Lane] = {}
        self._in_flight = 0   # jobs submitted whose answer the loop has not taken yet (loop thread only)
        self.loop_thread: Optional[int] = None

    # -- from any thread ------------------------------------------------------
    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop thread at its next turn."""
        self._inbox.put((fn, args))
        self._waker.wake()

    def wake(self) -> None:
        """Safe from a signal handler and from any thread."""
        self._waker.wake()

    def fatal(self, exc: BaseException) -> None:
        """End the pass with this error (the first one wins); the loop sees it at its next turn."""
        if not isinstance(exc, OrchError):
            exc = InternalError(f"internal error: {type(exc).__name__}: {exc}")
        with self._fatal_lock:
            if self.fatal_error is None:
                self.fatal_error = exc
        self._waker.wake()

    def request_stop(self, signum: int) -> None:
        """From a signal handler: stop claiming, stop the agents, end."""
        if self.stop_signal is None:
            self.stop_signal = signum
        self._waker.wake()

    # -- lanes ----------------------------------------------------------------
    def lane(self, name: str) -> Lane:
        """The lane of this name, made the first time it is asked for (its thread starts with its first job)."""
        if name not in self._lanes:
            self._lanes[name] = Lane(name, on_done=self.wake)
        return self._lanes[name]

    def adopt(self, lane: Lane) -> Lane:
        """A lane made by a part (the results lane, the task lane): drained with the others at the end."""
        self._lanes[lane.name] = lane
        return lane

    def lanes(self) -> List[Lane]:
        return list(self._lanes.values())

    def submit(self, lane: str, job: Callable[[], Any], done: Optional[Callable[[Any], None]] = None, *,
               priority: int = 0) -> None:
        """Run ``job`` on a lane; its value goes to ``done`` on the loop thread. A job that raises ends
        the pass (``fatal``): a job catches what it can answer itself (Discord's errors, mostly)."""
        self._in_flight += 1

        def run() -> None:
            value: Any = _FAILED
            try:
                value = job()
            except Exception as exc:   # noqa: BLE001 - every error reaches the loop, none is lost in a thread
                if not isinstance(exc, OrchError):
                    log.exception("internal error in a job on lane %s", lane)
                self.fatal(exc)
            finally:
                self.call_soon(self._landed, done, value)

        self.lane(lane).submit(run, priority=priority)

    def _landed(self, done: Optional[Callable[[Any], None]], value: Any) -> None:
        self._in_flight -= 1
        if done is not None and value is not _FAILED:
            done(value)

    # -- timers (loop thread) -------------------------------------------------
    def call_later(self, delay: float, fn: Callable[[], Any]) -> None:
        heapq.heappush(self._timers, (self.clock() + delay, next(self._seq), fn))

    def _run_due(self) -> Optional[float]:
        """Run the timers that are due; the seconds until the next one (None: none)."""
        while self._timers and self._timers[0][0] <= self.clock():
            heapq.heappop(self._timers)[2]()
        return self._timers[0][0] - self.clock() if self._timers else None

    def _drain_inbox(self) -> None:
        while True:
            try:
                fn, args = self._inbox.get_nowait()
            except queue.Empty:
                return
            fn(*args)

    # -- the loop -------------------------------------------------------------
    def run(self, steps: List[Any], ctx: Any) -> None:
        """Bind the steps, turn them until the pass ends, close them, drain the lanes."""
        self.loop_thread = threading.get_ident()
        for step in steps:
            step.bind(ctx)
        watchdog = Watchdog(self.watchdog_s).start() if self.watchdog_s > 0 else None
        try:
            self._loop(steps, ctx, watchdog)
        except Exception as exc:   # noqa: BLE001 - one way to end: the pass's last line says it, cli.py exits
            if not isinstance(exc, OrchError):
                log.debug("internal error in the loop", exc_info=True)
            self.fatal(exc)
        finally:
            if watchdog is not None:
                watchdog.beat()   # the drain is capped, and the watchdog still covers it
            for step in steps:
                step.close(self.stop_signal)
            drain(self.lanes(), STOP_DRAIN_CAP_S if self.stop_signal else DRAIN_CAP_S, self.clock)
            self._discard_inbox()
            for step in steps:
                step.ended()
            if watchdog is not None:
                watchdog.stop()

    def _loop(self, steps: List[Any], ctx: Any, watchdog: Optional[Watchdog]) -> None:
        while True:
            if watchdog is not None:
                watchdog.beat()
            self._drain_inbox()
            if self.fatal_error is not None:
                return
            next_timer = self._run_due()
            now = self.clock()
            for step in steps:
                step.turn(now)
                if self.fatal_error is not None:
                    return
            if self._ended(steps, ctx.watch):
                return
            self._waker.wait(TICK_S if next_timer is None else max(0.0, min(TICK_S, next_timer)))

    def _ended(self, steps: List[Any], watch: bool) -> bool:
        if self.stop_signal is not None:
            # Stopping: once the agents are stopped. A job still out (a claim waiting for a rate limit)
            # is not waited for here: the drain gives it STOP_DRAIN_CAP_S, and its record is the next
            # pass's to carry on from.
            return not any(step.busy() for step in steps)
        if self._in_flight or not self._inbox.empty():
            return False
        if watch or any(lane.busy for lane in self._lanes.values()):
            return False
        return not any(step.busy() for step in steps)

    def _discard_inbox(self) -> None:
        """Answers that came back after the end are not acted on: the records hold what they did, and
        the next pass carries on from there."""
        while not self._inbox.empty():
            self._inbox.get_nowait()
