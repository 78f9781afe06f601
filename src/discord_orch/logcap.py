"""Caps one agent log: copies a pipe into a file, keeping its head and its tail, and says how
much was cut in between.

An agent in a logging loop must not fill the disk. Its stdout and stderr are pipes into one
small process each (``python logcap.py``, stdin the pipe, stdout the log file opened
read-write): the first HEAD_KEEP bytes stay as written; past HEAD_KEEP + TAIL_KEEP bytes the
file holds the head, a one-line marker (``MARKER``) with the number of bytes cut, and the
last TAIL_KEEP bytes, rewritten at most every FLUSH_S seconds and at the end. The file never
grows past HEAD_KEEP + TAIL_KEEP + the marker. The process runs in its own session (it
outlives an orchestrator that dies, as the agent does) and ends when every writer of the
pipe has closed it. A full disk only loses log text: the pipe is still drained, so the
agent never blocks on it.

Standard library only: it runs as a script (``-I -S``), not as part of the package.
"""

from __future__ import annotations

import os
import re
import select
import sys
import time
from collections import deque
from typing import BinaryIO, Deque, Optional, Tuple

HEAD_KEEP = 1024 * 1024           # bytes kept from the start of a log
TAIL_KEEP = 2 * 1024 * 1024       # bytes kept from its end (holds openclaw's final JSON: JSON_TAIL_MAX)
FLUSH_S = 0.5                     # the tail is written to the file at most this often
READ_CHUNK = 64 * 1024
MARKER = "\n[discord-orch: {cut:,} bytes of this log were cut here; kept the first {head:,} and the last {tail:,}]\n"
MARKER_MAX = 200                  # bytes the marker takes at most
_MARKER_RE = re.compile(rb"\n\[discord-orch: ([0-9,]+) bytes of this log were cut here")


class _Tail:
    """The last TAIL_KEEP bytes seen (a deque of chunks: appending is O(1))."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.chunks: Deque[bytes] = deque()
        self.size = 0

    def add(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        while self.chunks and self.size - len(self.chunks[0]) >= self.keep:
            self.size -= len(self.chunks.popleft())

    def bytes(self) -> bytes:
        data = b"".join(self.chunks)[-self.keep:]
        self.chunks = deque([data])
        self.size = len(data)
        return data


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def cap(src: int, dst: int, head: int = HEAD_KEEP, tail: int = TAIL_KEEP, flush_s: float = FLUSH_S) -> int:
    """Copy ``src`` (a pipe) into ``dst`` (a file open read-write) until EOF, capped; returns the
    bytes cut."""
    total = 0
    ring: Optional[_Tail] = None     # set once the log outgrew head + tail
    last_flush = time.monotonic()
    dirty = False

    def flush() -> int:
        data = ring.bytes()  # type: ignore[union-attr]
        cut = total - head - len(data)
        block = MARKER.format(cut=cut, head=head, tail=len(data)).encode() + data
        try:
            os.pwrite(dst, block, head)
            os.ftruncate(dst, head + len(block))
        except OSError:
            pass   # a full disk: the log loses text, the agent goes on
        return cut

    while True:
        ready, _, _ = select.select([src], [], [], flush_s if dirty else None)
        if ready:
            data = os.read(src, READ_CHUNK)
            if not data:
                break
            if ring is None and total + len(data) <= head + tail:
                try:
                    _write_all(dst, data)
                except OSError:
                    pass
                total += len(data)
                continue
            if ring is None:
                ring = _Tail(tail)
                try:
                    ring.add(os.pread(dst, total - head, head))
                except OSError:
                    pass
            total += len(data)
            ring.add(data)
            dirty = True
        if dirty and time.monotonic() - last_flush >= flush_s:
            flush()
            dirty, last_flush = False, time.monotonic()
    return flush() if ring is not None else 0


def bytes_cut(fh: BinaryIO, head: int = HEAD_KEEP) -> int:
    """How many bytes :func:`cap` cut from the log open as ``fh`` (0: none)."""
    fh.seek(head)
    found = _MARKER_RE.match(fh.read(MARKER_MAX))
    return int(found.group(1).replace(b",", b"")) if found else 0


def command() -> Tuple[str, ...]:
    """The argv that runs the capper (stdin: the pipe, stdout: the log file, read-write)."""
    return (sys.executable, "-I", "-S", os.path.abspath(__file__))


if __name__ == "__main__":
    cap(sys.stdin.fileno(), sys.stdout.fileno())
