"""discord-config.env written whole, as `discord-orch init` writes it.

From discord-config.env.example's text, so every comment a hand-edited file has is kept: a
key init sets replaces its line (``KEY=`` or ``#KEY=...``), uncommented; a key the example
lacks is added at the end. The file holds the token, so it is created with mode 600 and
never exists with another mode, even for a moment; it replaces the old file in one rename
(an interrupted init leaves the old file or the new one, never half of one), and the old
one is first copied beside it (``discord-config.env.bak``, or ``.bak-<time>`` when that is
taken), mode 600 too.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Mapping, Optional

from .errors import StateError

EXAMPLE_NAME = "discord-config.env.example"
EXAMPLE = Path(__file__).resolve().with_name(EXAMPLE_NAME)   # in the package: a link to the repository's
_KEY_LINE = re.compile(r"#?\s*([A-Z][A-Z0-9_]*)=")
_PLAIN = re.compile(r"[A-Za-z0-9_.,:/@+=~-]*")                # what python-dotenv reads back unquoted as written
ADDED_HEADER = "\n# --- set by discord-orch init\n"


def example_text() -> str:
    """The example's text; a bare header if this install lacks it (the file is then keys only)."""
    try:
        return EXAMPLE.read_text(encoding="utf-8")
    except OSError:
        return "# discord-orch configuration (see discord-config.env.example in the repository)\n"


def quoted(value: str) -> str:
    """``value`` as python-dotenv reads it back: bare when it can be, else in double quotes."""
    if _PLAIN.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(template: str, values: Mapping[str, str]) -> str:
    """``template`` with each key of ``values`` set on its line (the first that names it), the rest added."""
    left = dict(values)
    out = []
    for line in template.splitlines(keepends=True):
        found = _KEY_LINE.match(line)
        if found and found.group(1) in left:
            key = found.group(1)
            out.append(f"{key}={quoted(left.pop(key))}\n")
        else:
            out.append(line)
    if left:
        if out and not out[-1].endswith("\n"):
            out.append("\n")
        out.append(ADDED_HEADER + "".join(f"{k}={quoted(v)}\n" for k, v in left.items()))
    return "".join(out)


def _write_new(path: Path, data: bytes) -> None:
    """``data`` into a file that must not exist yet, mode 600 from its creation, synced."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def backup_path(path: Path) -> Path:
    """Where the old file's copy goes: ``<name>.bak``, else ``<name>.bak-<time>``."""
    first = path.with_name(path.name + ".bak")
    if not first.exists():
        return first
    return path.with_name(f"{path.name}.bak-{time.strftime('%Y%m%d-%H%M%S')}")


def replace_file(path: Path, text: str) -> Optional[Path]:
    """Write ``text`` to ``path`` (mode 600) in one rename; the old file copied first. Returns the copy's path."""
    backup = None
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if path.exists():
            backup = backup_path(path)
            _write_new(backup, path.read_bytes())
        _write_new(temp, text.encode("utf-8"))
        os.replace(temp, path)
    except OSError as exc:
        raise StateError(str(exc.filename or path), exc.strerror or str(exc)) from None
    finally:
        if temp.exists():       # interrupted (Ctrl-C) or failed before the rename: nothing half-written stays
            temp.unlink()
    _sync_dir(path.parent)
    return backup


def _sync_dir(directory: Path) -> None:
    """The rename on disk, too (a crash right after init keeps the new file)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
