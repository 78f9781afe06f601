"""Waker: wakes the orchestrator's main loop from lane threads and from signal handlers.

Why not ``threading.Event``: ``Event.set()`` takes the Event's lock, and a
Python signal handler runs in the main thread between two bytecodes, also
while that same thread holds the lock inside ``Event.wait()``. The handler
then waits for its own thread forever. We saw it happen: a pass hung for
good on a SIGCHLD from a finished agent, holding the home's lock, so no
later cron pass could run either. A signal handler must take no lock.

So this is the classic self-pipe: ``wake()`` writes one byte to a
non-blocking pipe (no Python-level lock; a full pipe means a wake is already
pending, so the byte is not needed), ``wait()`` is ``select()`` on the read
end with a timeout, then drains it. ``select`` is retried after a signal
handler returns (PEP 475) and finds the byte the handler wrote.
"""

from __future__ import annotations

import os
import select


class Waker:
    """Wakes the main loop: ``wake()`` from any thread or signal handler, ``wait(timeout)`` in the loop."""

    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe()   # not inherited by agents (PEP 446)
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)

    def wake(self) -> None:
        """Safe from any thread and from a signal handler."""
        try:
            os.write(self._write_fd, b"\0")
        except OSError:   # BlockingIOError: the pipe is full, a wake is pending anyway; EBADF: closed
            pass

    def wait(self, timeout: float) -> bool:
        """Sleep until woken or ``timeout`` seconds passed; True when woken."""
        try:
            ready, _, _ = select.select([self._read_fd], [], [], max(0.0, timeout))
        except (OSError, ValueError):   # closed under us at shutdown
            return False
        if not ready:
            return False
        try:
            while os.read(self._read_fd, 4096):
                pass
        except OSError:   # BlockingIOError: drained
            pass
        return True

    def __del__(self) -> None:
        # Closed only once nothing can call wake(): closing earlier would let a late lane
        # thread write its byte into whatever file reused the descriptor number.
        for fd in (getattr(self, "_read_fd", -1), getattr(self, "_write_fd", -1)):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
