"""One agent's workspace on disk: create, describe, read what the agent left, remove,
archive, prune.

Layout (all paths absolute)::

    workers/<agent-id>/                 agent_dir: OPENCLAW_STATE_DIR of the agent
        openclaw.json                   overlay config ($include of the user's config)
        AGENTS.md, TOOLS.md             (copies, as the original scripts had them)
        tasks/<task-id>/                task_dir: the agent's OpenClaw workspace and cwd
            AGENTS.md, TOOLS.md         read by openclaw into the system prompt
            TASK.txt                    "TASK: <description>", byte-exact UTF-8
            RESULT.txt, SUMMARY.txt     written by the agent
            agent-output.json           openclaw's --json (stdout)
            agent-output.log            openclaw's log (stderr)

Everything here is created 0600 (files) / 0700 (directories): a workspace may
hold private data. Disk problems surface as :class:`errors.StateError`.

What the agent leaves is read through :func:`open_left` and with a size limit
(RESULT_READ_MAX, ...): only inside its task dir, regular files only, no link followed
(a link to discord-config.env or ~/.ssh/id_* is reported, never read); a FIFO, a device
or a huge file in its place cannot hang or swamp us.

Archive: a failed run's agent dir is moved to ``archive/<agent-id>`` and kept
for ARCHIVE_RETENTION_HOURS; a successful one kept on purpose
(KEEP_SUCCESS_HOURS) is moved there too, with a ``.kept-success`` marker at its
top so :func:`prune_archive` can give it its own, usually shorter, retention.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import random
import re
import shutil
import stat
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Tuple, Union

from .errors import StateError
from .models import INPUTS_DIR, TASK_FILE, is_snowflake

log = logging.getLogger("discord_orch")

PathLike = Union[str, "os.PathLike[str]"]

RESULT_FILE = "RESULT.txt"
SUMMARY_FILE = "SUMMARY.txt"
STDOUT_FILE = "agent-output.json"
STDERR_FILE = "agent-output.log"
AGENTS_FILE = "AGENTS.md"
TOOLS_FILE = "TOOLS.md"
OVERLAY_CONFIG = "openclaw.json"
TASKS_DIR = "tasks"                  # agent_dir/tasks/<task id> is the task dir
TASK_PREFIX = "TASK: "
#: at the top of an archived agent dir whose largest files were removed to keep it under ARCHIVE_MAX_BYTES
ARCHIVE_TRIMMED_FILE = "ARCHIVE-TRIMMED.txt"
ARCHIVE_MAX_BYTES = 100 * 1024 * 1024   # an archived workspace keeps at most this much (logs are capped apart)
#: marker at the top of an archived agent dir: a success kept for KEEP_SUCCESS_HOURS
KEPT_SUCCESS_MARKER = ".kept-success"

#: files of ours in the task dir that files_left() does not report
OWN_FILES = frozenset({AGENTS_FILE, TOOLS_FILE, TASK_FILE, STDOUT_FILE, STDERR_FILE})
#: what we read of what the agent left (each through open_left, never through a link)
LEFT_FILES = (RESULT_FILE, SUMMARY_FILE, STDOUT_FILE, STDERR_FILE)
FILES_LEFT_MAX = 50          # at most this many paths reported
_FILES_LEFT_SCAN_MAX = 5000  # stop walking a huge tree after this many entries

RESULT_READ_MAX = 8 * 1024 * 1024     # bytes of RESULT.txt we read at most
SUMMARY_READ_MAX = 256 * 1024
JSON_TAIL_MAX = 1024 * 1024           # bytes from the end of agent-output.json we parse
LOG_TAIL_BYTES = 64 * 1024
LOG_TAIL_LINES = 20

AGENT_ID_PREFIX = "agent-"   # workspaces' names; never a worker profile's
TASKS_DIR = "tasks"
PROFILE_FILES = (AGENTS_FILE, TOOLS_FILE)

_AGENT_ID_RE = re.compile(r"agent-[0-9]{1,12}-[a-z0-9]{6}")
_WORKER_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
_ID_ALPHABET = string.ascii_lowercase + string.digits

_DIR_MODE = 0o700
_FILE_MODE = 0o600


# ---------------------------------------------------------------- validation

def check_task_id(task_id: object) -> str:
    if not is_snowflake(task_id):
        raise ValueError(f"task id must be a Discord snowflake (17-20 digits), got {task_id!r}")
    return task_id  # type: ignore[return-value]


def is_agent_id(value: object) -> bool:
    return isinstance(value, str) and _AGENT_ID_RE.fullmatch(value) is not None


def check_agent_id(agent_id: object) -> str:
    if not is_agent_id(agent_id):
        raise ValueError(f"agent id must look like agent-<epoch>-<6 [a-z0-9]>, got {agent_id!r}")
    return agent_id  # type: ignore[return-value]


def check_worker_name(worker: object) -> str:
    """A worker type name: ``[A-Za-z0-9_-]{1,32}`` (no dots, no slashes: no traversal)."""
    if not isinstance(worker, str) or _WORKER_RE.fullmatch(worker) is None:
        raise ValueError(f"worker name must match [A-Za-z0-9_-]{{1,32}}, got {worker!r}")
    return worker


def is_workspace_name(worker: str) -> bool:
    """Does ``worker`` carry the workspaces' prefix (any case: a case-insensitive disk, macOS, finds it
    so)? Such a name is never a worker profile: agent ids are public in #worker-pool."""
    return worker.lower().startswith(AGENT_ID_PREFIX)


def new_agent_id(now_epoch: float, rand: Optional[random.Random] = None) -> str:
    """``agent-<epoch seconds>-<6 random [a-z0-9]>``; ``rand`` defaults to a system RNG."""
    rng = rand if rand is not None else random.SystemRandom()
    suffix = "".join(rng.choice(_ID_ALPHABET) for _ in range(6))
    return f"{AGENT_ID_PREFIX}{int(now_epoch)}-{suffix}"


def _abs(path: PathLike) -> Path:
    """Absolute, user-expanded, without touching the disk (no symlink resolution)."""
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path))))


# ---------------------------------------------------------------- Workspace

@dataclass(frozen=True)
class Workspace:
    """Where one agent runs one task. Paths are absolute; nothing here touches the disk."""

    agent_id: str
    task_id: str
    agent_dir: Path
    task_dir: Path

    @classmethod
    def at(cls, workers_dir: PathLike, agent_id: str, task_id: str) -> "Workspace":
        """The workspace paths for (agent_id, task_id) under ``workers_dir``.

        Validates both ids (ValueError) so a stored value can never point outside
        ``workers_dir``; does not create or read anything.
        """
        check_agent_id(agent_id)
        return cls.in_dir(_abs(workers_dir) / agent_id, agent_id, task_id)

    @classmethod
    def in_dir(cls, agent_dir: PathLike, agent_id: str, task_id: str) -> "Workspace":
        """The workspace whose agent dir is ``agent_dir`` (under workers/, or its copy in archive/)."""
        check_task_id(task_id)
        agent_dir = _abs(agent_dir)
        return cls(agent_id=agent_id, task_id=task_id, agent_dir=agent_dir, task_dir=agent_dir / TASKS_DIR / task_id)

    @property
    def task_file(self) -> Path:
        return self.task_dir / TASK_FILE

    @property
    def result_file(self) -> Path:
        """RESULT.txt, the agent's result."""
        return self.task_dir / RESULT_FILE

    @property
    def summary_file(self) -> Path:
        """SUMMARY.txt, the agent's short summary (shown instead of the result's head)."""
        return self.task_dir / SUMMARY_FILE

    @property
    def stdout_file(self) -> Path:
        """openclaw's ``--json`` output."""
        return self.task_dir / STDOUT_FILE

    @property
    def stderr_file(self) -> Path:
        """openclaw's log (stderr), as the original scripts' agent-output.log."""
        return self.task_dir / STDERR_FILE

    @property
    def overlay_config(self) -> Path:
        """The per-agent openclaw.json that includes the user's config."""
        return self.agent_dir / OVERLAY_CONFIG


# ---------------------------------------------------------------- texts

def render_agents_md(*, agent_id: str, task_id: str, task_dir: PathLike, description: str,
                     model: str, thinking: str, template: Optional[str] = None,
                     summary_max: int = 1500) -> str:
    """AGENTS.md for one agent: the built-in text, or ``template`` + the task context.

    Contains only what is passed in (ids, paths, the task, model names): never a secret.
    """
    tdir = os.fspath(_abs(task_dir))
    context = (
        f"## Your task (task {task_id})\n"
        f"\n"
        f"{description}\n"
        f"\n"
        f"The task is also in TASK.txt in {tdir}/.\n"
        f"\n"
        f"## How to deliver\n"
        f"\n"
        f"- Write the FULL result to RESULT.txt in {tdir}/\n"
        f"- Also write SUMMARY.txt (at most {summary_max} characters) in {tdir}/: "
        f"a short summary of the result, shown on Discord; RESULT.txt keeps everything.\n"
        f"- Put any other files you create in {tdir}/ as well.\n"
        f"- Answer in the language of the task.\n"
        f"\n"
        f"Agent: {agent_id} - model: {model} - thinking: {thinking}\n"
    )
    if template is not None:
        body = template.rstrip("\n")
        return f"{body}\n\n---\n\n{context}" if body else context
    head = (
        f"# Agent {agent_id}\n"
        f"\n"
        f"You are a fresh agent started by discord-orch for exactly one task. "
        f"Work only in {tdir}/, complete the task, write the result files, then stop.\n"
        f"\n"
    )
    return head + context


def open_regular(path: PathLike):
    """Open a file of the user's (a worker profile) for reading, only if it is a regular file.

    A FIFO would make a plain open() wait for a writer forever, a device such as /dev/zero
    never ends: O_NONBLOCK makes the open return at once, and whatever is not a regular
    file counts as absent. What an agent left is opened by :func:`open_left` instead.
    """
    return _open_regular_at(os.fspath(path), None, follow=True)


def _open_regular_at(name: str, dir_fd: Optional[int], *, follow: bool):
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    fd = os.open(name, flags, dir_fd=dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise IsADirectoryError(errno.EINVAL, "not a regular file", name)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


class LinkNotFollowed(OSError):
    """Where an agent's file or its task dir should be, there is a link: it is never followed."""

    def __init__(self, rel: str) -> None:
        super().__init__(errno.ELOOP, link_note(rel), rel)
        self.rel = rel


def link_note(rel: str) -> str:
    """What a result post says about a link the agent left where we read: ``RESULT.txt is a link; not followed``."""
    return f"{rel} is a link; not followed"


def _open_dir_at(name: str, dir_fd: Optional[int], rel: str) -> int:
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP or (exc.errno == errno.ENOTDIR and _is_link(name, dir_fd)):
            raise LinkNotFollowed(rel) from exc
        raise


def _is_link(name: str, dir_fd: Optional[int]) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _open_task_dir(ws: "Workspace") -> int:
    """An fd of the task dir, reached from the agent dir one name at a time without following a link:
    the agent owns agent_dir/tasks/<id> and could put a link at any step (LinkNotFollowed)."""
    return _descend(_open_dir_at(os.fspath(ws.agent_dir), None, ws.agent_id), (TASKS_DIR, ws.task_id))


def _descend(fd: int, names: "Tuple[str, ...] | List[str]") -> int:
    """From the directory ``fd`` (closed here) down through ``names``, no link followed; the fd of the last."""
    rel = ""
    try:
        for name in names:
            rel = f"{rel}/{name}" if rel else name
            nxt = _open_dir_at(name, fd, rel)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_left(ws: "Workspace", name: str):
    """Open ``name``, a file the agent may have left in its task dir, for reading: inside the task dir
    only (no link followed on the way), a regular file only, never a link (LinkNotFollowed).

    The agent owns its task dir and can leave anything under these names: a link to the bot's
    config or an SSH key would be posted to #results; a FIFO would hang a plain open(), a device
    never ends (O_NONBLOCK, then anything but a regular file counts as absent).
    """
    dir_fd = _open_task_dir(ws)
    try:
        return _open_regular_at(name, dir_fd, follow=False)
    except OSError as exc:
        if exc.errno == errno.ELOOP or _is_link(name, dir_fd):
            raise LinkNotFollowed(name) from exc
        raise
    finally:
        os.close(dir_fd)


def links_left(ws: "Workspace", names: Tuple[str, ...] = LEFT_FILES) -> Tuple[str, ...]:
    """Which of ``names`` (default: the files we read) the agent left as links, or its task dir
    itself (``tasks/<id>``) when that is a link; relative paths. Nothing is followed."""
    try:
        dir_fd = _open_task_dir(ws)
    except LinkNotFollowed as exc:
        return (exc.rel,)
    except OSError:
        return ()
    try:
        return tuple(name for name in names if _is_link(name, dir_fd))
    finally:
        os.close(dir_fd)


def decode_text(data: bytes) -> str:
    """What the agent wrote, as text: undecodable bytes replaced, NULs removed."""
    return data.decode("utf-8", errors="replace").replace("\x00", "")


def _trim_partial_utf8(data: bytes) -> bytes:
    """Drop a multi-byte UTF-8 sequence cut in half at the end of ``data``."""
    for back in range(1, min(4, len(data)) + 1):
        b = data[-back]
        if b & 0xC0 == 0x80:
            continue
        if b >= 0xC0:
            need = 2 if b < 0xE0 else 3 if b < 0xF0 else 4
            if back < need:
                return data[:-back]
        return data
    return data


def read_head(ws: Workspace, name: str, limit: int) -> Tuple[Optional[str], Optional[int], bool]:
    """(text of the first ``limit`` bytes of the agent's file ``name``, size on disk, truncated);
    (None, None, False) if absent, a link or not a regular file."""
    try:
        with open_left(ws, name) as fh:
            size = os.fstat(fh.fileno()).st_size
            data = fh.read(min(limit, size + 1))  # read(n) preallocates n bytes
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None, None, False
    except OSError:
        return None, None, False
    if size > len(data):
        return decode_text(_trim_partial_utf8(data)), size, True
    return decode_text(data), size, False


def read_tail_bytes(ws: Workspace, name: str, limit: int) -> Tuple[bytes, bool]:
    """The last ``limit`` bytes of the agent's file ``name`` and whether it was longer; b"" if absent,
    a link or not a regular file."""
    try:
        with open_left(ws, name) as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > limit:
                fh.seek(size - limit)
                return fh.read(limit), True
            return fh.read(), False
    except OSError:
        return b"", False


def read_log_tail(ws: Workspace, name: str = STDERR_FILE, lines: int = LOG_TAIL_LINES,
                  max_bytes: int = LOG_TAIL_BYTES) -> str:
    """The last ``lines`` lines of the last ``max_bytes`` bytes of the agent's log."""
    data, cut = read_tail_bytes(ws, name, max_bytes)
    text = decode_text(data)
    parts = text.splitlines()
    if cut and parts:
        parts = parts[1:]  # the first line was cut in the middle
    while parts and not parts[-1].strip():
        parts.pop()
    return "\n".join(parts[-lines:])


def _read_optional_text(path: Path) -> Optional[str]:
    try:
        with open_regular(path) as fh:
            return fh.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except IsADirectoryError:   # also a FIFO or device left under that name
        return None
    except OSError as exc:
        raise StateError(os.fspath(path), exc.strerror or str(exc)) from exc


def is_profile(workers_dir: PathLike, worker: str) -> bool:
    """Is ``workers/<worker>/`` a worker profile (an AGENTS.md or TOOLS.md in it), not a workspace?

    Profiles and live workspaces share workers/, and agent ids are public in #worker-pool: a
    name with the workspaces' prefix, or a directory shaped like a workspace, is never a profile,
    or a task could load another task's prompt as its own."""
    check_worker_name(worker)
    if is_workspace_name(worker):
        return False
    where = _abs(workers_dir) / worker
    if (where / OVERLAY_CONFIG).exists() or (where / TASKS_DIR).is_dir():   # a workspace, whatever its name
        return False
    return any((where / name).is_file() for name in PROFILE_FILES)


def worker_profiles(workers_dir: PathLike) -> List[str]:
    """The names of the worker profiles in ``workers_dir``, sorted."""
    try:
        names = os.listdir(_abs(workers_dir))
    except OSError:   # no workers/ yet: no profiles
        return []
    return sorted(n for n in names if _WORKER_RE.fullmatch(n) and is_profile(workers_dir, n))


def tools_md_for(workers_dir: PathLike, worker: Optional[str]) -> Optional[str]:
    """The TOOLS.md text for a worker type: ``workers/<TYPE>/TOOLS.md`` if it is a profile with one,
    else ``workers/TOOLS.md`` if present, else None. Bad worker names raise ValueError."""
    base = _abs(workers_dir)
    if worker is not None and is_profile(workers_dir, worker):
        text = _read_optional_text(base / worker / TOOLS_FILE)
        if text is not None:
            return text
    return _read_optional_text(base / TOOLS_FILE)


def agents_template_for(workers_dir: PathLike, worker: Optional[str]) -> Optional[str]:
    """``workers/<TYPE>/AGENTS.md`` (a per-worker AGENTS.md template) if it is a profile with one, else None."""
    if worker is None or not is_profile(workers_dir, worker):
        return None
    return _read_optional_text(_abs(workers_dir) / worker / AGENTS_FILE)


def agents_md_for(ws: Workspace, workers_dir: PathLike, *, description: str, model: str, thinking: str,
                  worker: Optional[str], default_template: Optional[PathLike], summary_max: int) -> str:
    """AGENTS.md for this workspace: from ``workers/<TYPE>/AGENTS.md``, else AGENTS_MD_TEMPLATE
    (``default_template``), else the built-in text; always with the task's context."""
    template = agents_template_for(workers_dir, worker)
    if template is None and default_template is not None:
        template = Path(default_template).read_text(encoding="utf-8", errors="replace")
    return render_agents_md(agent_id=ws.agent_id, task_id=ws.task_id, task_dir=ws.task_dir,
                            description=description, model=model, thinking=thinking, template=template,
                            summary_max=summary_max)


def overlay_config_dict(user_openclaw_config: PathLike, task_dir: PathLike) -> dict:
    """The per-agent openclaw.json (NOTES.md recipe): include the user's config, override
    ``agents.defaults`` with ``skipBootstrap`` and the task dir as workspace."""
    defaults = {"skipBootstrap": True, "workspace": os.fspath(_abs(task_dir))}
    user = _abs(user_openclaw_config)
    cfg: dict = {}
    if user.is_file():
        cfg["$include"] = os.fspath(user)
    cfg["agents"] = {"defaults": defaults}
    return cfg


# ---------------------------------------------------------------- create

def _mkdir(path: Path, created: List[Path]) -> None:
    os.mkdir(path, _DIR_MODE)
    created.append(path)
    os.chmod(path, _DIR_MODE)


def _write_new(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, _FILE_MODE)
    try:
        os.fchmod(fd, _FILE_MODE)
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
    finally:
        os.close(fd)


def _encode(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: cannot be UTF-8 at all
        return text.encode("utf-8", errors="replace")


def create_workspace(workers_dir: PathLike, agent_id: str, task_id: str, task_text: str, *,
                     agents_md: str, tools_md: Optional[str],
                     user_openclaw_config: PathLike) -> Workspace:
    """Create the agent dir with AGENTS.md/TOOLS.md (in agent dir and task dir), TASK.txt
    and the overlay openclaw.json. Ids are validated before any path is touched
    (ValueError). On OSError what was created is removed and StateError is raised."""
    check_task_id(task_id)
    check_agent_id(agent_id)
    ws = Workspace.at(workers_dir, agent_id, task_id)
    workers = ws.agent_dir.parent
    created: List[Path] = []
    files = [
        (ws.agent_dir / AGENTS_FILE, _encode(agents_md)),
        (ws.task_dir / AGENTS_FILE, _encode(agents_md)),
    ]
    if tools_md is not None:
        files += [(ws.agent_dir / TOOLS_FILE, _encode(tools_md)),
                  (ws.task_dir / TOOLS_FILE, _encode(tools_md))]
    files.append((ws.task_file, TASK_PREFIX.encode("utf-8") + _encode(task_text)))
    overlay = overlay_config_dict(user_openclaw_config, ws.task_dir)
    files.append((ws.overlay_config,
                  (json.dumps(overlay, indent=2, ensure_ascii=False) + "\n").encode("utf-8")))
    where = ws.agent_dir
    try:
        where = workers
        if not workers.is_dir():
            os.makedirs(workers, _DIR_MODE, exist_ok=True)
        where = ws.agent_dir
        _mkdir(ws.agent_dir, created)
        _mkdir(ws.agent_dir / TASKS_DIR, created)
        _mkdir(ws.task_dir, created)
        for path, data in files:
            where = path
            _write_new(path, data)
    except OSError as exc:
        if created:  # only ever remove what we made ourselves
            shutil.rmtree(created[0], ignore_errors=True)
        problem = exc.strerror or str(exc)
        if exc.errno == errno.EEXIST and not created:
            problem = "agent directory already exists"
        raise StateError(os.fspath(where), problem) from exc
    return ws


TURNS_DIR = "turns"                  # agent_dir/turns/<n>/: what turn n left (0: the task's own run)
FOLLOWUP_PREFIX = "FOLLOW-UP: "      # TASK.txt of a follow-up's turn: the user's next message about the task
#: what a run leaves in the task dir that the next turn must not read as its own
TURN_FILES = (TASK_FILE, RESULT_FILE, SUMMARY_FILE, STDOUT_FILE, STDERR_FILE)


def begin_turn(ws: Workspace, text: str) -> Path:
    """Make the task's workspace ready for its next turn (conversation.py): what the last run left
    (TASK.txt, RESULT.txt, SUMMARY.txt, its logs) moves to ``agent_dir/turns/<n>/``, outside the
    agent's workspace, and TASK.txt becomes the follow-up. The agent's state dir, session and files
    stay. Returns where the last run's files went; StateError when the disk says no."""
    turns = ws.agent_dir / TURNS_DIR
    try:
        os.makedirs(turns, _DIR_MODE, exist_ok=True)
        n = len([p for p in turns.iterdir() if p.name.isdigit()])
        dest = turns / str(n)
        os.mkdir(dest, _DIR_MODE)
        for name in TURN_FILES:
            src = ws.task_dir / name
            if os.path.lexists(src):
                os.replace(src, dest / name)
        _write_new(ws.task_file, FOLLOWUP_PREFIX.encode("utf-8") + _encode(text))
    except OSError as exc:
        raise StateError(os.fspath(ws.task_dir), exc.strerror or str(exc)) from exc
    return dest


# ---------------------------------------------------------------- remove / archive

def _rmtree(path: Path) -> None:
    """rmtree that also copes with read-only directories the agent left behind. A link (the agent
    can put one where its dir was) is removed itself: nothing it points to is changed."""
    if os.path.islink(path):
        os.unlink(path)
        return
    try:
        shutil.rmtree(path)
        return
    except FileNotFoundError:
        if not os.path.lexists(path):
            return
    except OSError:
        pass
    # make every directory writable and searchable by us, then try once more
    try:
        os.chmod(path, stat.S_IRWXU)   # not a link (above)
    except OSError:
        pass
    for _root, dirs, _files, dir_fd in os.fwalk(path):   # follow_symlinks=False: never walks a link
        for name in dirs:
            try:
                os.chmod(name, stat.S_IRWXU, dir_fd=dir_fd)   # fwalk listed it as a dir, not a link
            except OSError:
                pass
    shutil.rmtree(path)


def remove_workspace(ws: Workspace) -> None:
    """Delete the agent dir (missing already is fine). StateError when it cannot be removed."""
    try:
        _rmtree(ws.agent_dir)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StateError(os.fspath(ws.agent_dir), f"cannot remove: {exc.strerror or exc}") from exc


def archive_workspace(ws: Workspace, archive_dir: PathLike, *, success: bool = False) -> Path:
    """Move the whole agent dir (logs, JSON, RESULT.txt...) to ``archive_dir/<agent_id>``.

    The archived dir's mtime is set to now, so retention counts from the archiving.
    ``success`` marks a successful run kept on purpose (``KEPT_SUCCESS_MARKER``), so
    :func:`prune_archive` applies the success retention to it. Returns the new path.
    StateError on failure.
    """
    archive = _abs(archive_dir)
    dest = archive / ws.agent_id
    if os.path.islink(ws.agent_dir):   # the agent put a link where its dir was: not followed, removed later
        raise StateError(os.fspath(ws.agent_dir), link_note(ws.agent_id))
    try:
        os.makedirs(archive, _DIR_MODE, exist_ok=True)
        n = 1
        while os.path.lexists(dest):
            dest = archive / f"{ws.agent_id}.{n}"
            n += 1
        shutil.move(os.fspath(ws.agent_dir), os.fspath(dest))   # a rename, or a copy of links as links
        _cap_archived(dest)
        if success:
            _write_new(dest / KEPT_SUCCESS_MARKER, b"kept after a successful run (KEEP_SUCCESS_HOURS)\n")
        os.utime(dest)
    except OSError as exc:
        raise StateError(os.fspath(ws.agent_dir),
                         f"cannot archive to {dest}: {exc.strerror or exc}") from exc
    return dest


def _cap_archived(dest: Path, limit: int = ARCHIVE_MAX_BYTES) -> None:
    """Remove the largest files of an archived agent dir until it holds at most ``limit`` bytes, and
    list them in ARCHIVE_TRIMMED_FILE. Links are counted as links, never followed."""
    files = _sizes_under(dest)
    total = sum(size for size, _rel in files)
    removed = []
    for size, rel in sorted(files, reverse=True):
        if total <= limit:
            break
        try:
            _unlink_under(dest, rel)
        except OSError:
            continue
        total -= size
        removed.append(f"{rel} ({size:,} bytes)")
    if removed:
        _write_new(dest / ARCHIVE_TRIMMED_FILE,
                   (f"Removed when archived, to keep this workspace under {limit:,} bytes:\n"
                    + "".join(line + "\n" for line in removed)).encode("utf-8", "replace"))


def _sizes_under(top: PathLike) -> List[Tuple[int, str]]:
    """(size, relative path) of every file under the directory ``top``; a link (``top`` included)
    is counted as a link, never walked into (a process the agent left could plant one)."""
    top = os.fspath(top)
    found: List[Tuple[int, str]] = []
    for root, _dirs, names, dir_fd in os.fwalk(top):   # follow_symlinks=False
        for name in names:
            try:
                size = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_size
            except OSError:
                continue
            found.append((size, os.path.relpath(os.path.join(root, name), top)))
    return found


def _unlink_under(top: PathLike, rel: str) -> None:
    """Remove the file ``top/rel``, reached one directory at a time without following a link."""
    *parents, name = rel.split("/")
    dir_fd = _descend(_open_dir_at(os.fspath(top), None, os.path.basename(top)), parents)
    try:
        os.unlink(name, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


def archive_quietly(ws: Workspace, archive_dir: PathLike, *, success: bool = False) -> Optional[str]:
    """Archive ``ws`` if it is still there; its new path, or None (the error is logged: archiving is
    retention, and a task must not lose its result because its workspace could not be moved)."""
    if not ws.agent_dir.exists():
        return None
    try:
        return str(archive_workspace(ws, archive_dir, success=success))
    except (OSError, StateError) as exc:
        log.error("could not archive %s: %s", ws.agent_dir, exc)
        return None


def find_archived(archive_dir: PathLike, agent_id: str, task_id: str) -> Optional[Workspace]:
    """The archived copy of an agent dir (archive/<agent_id>, or <agent_id>.N after a name clash)."""
    root = _abs(archive_dir)
    for agent_dir in [root / agent_id] + sorted(root.glob(f"{agent_id}.[0-9]*"), reverse=True):
        ws = Workspace.in_dir(agent_dir, agent_id, task_id)
        if ws.task_dir.is_dir():
            return ws
    return None


def largest_archives(archive_dir: PathLike, count: int) -> List[Tuple[Path, int]]:
    """The ``count`` largest archived agent dirs (``agent-*``), largest first, with their sizes in
    bytes (files counted without following a link)."""
    archive = _abs(archive_dir)
    sizes: List[Tuple[Path, int]] = []
    try:
        entries = [e for e in os.scandir(archive) if e.name.startswith("agent-") and e.is_dir(follow_symlinks=False)]
    except OSError:
        return []
    for entry in entries:
        sizes.append((Path(entry.path), sum(size for size, _rel in _sizes_under(entry.path))))
    sizes.sort(key=lambda item: -item[1])
    return sizes[:count]


def is_kept_success(archived_dir: PathLike) -> bool:
    """True when an archived agent dir is a success kept on purpose (it has the marker)."""
    return os.path.lexists(os.path.join(os.fspath(archived_dir), KEPT_SUCCESS_MARKER))


def prune_archive(archive_dir: PathLike, older_than_hours: float, now_epoch: float, *,
                  success_hours: Optional[float] = None) -> List[Path]:
    """Remove archived agent dirs (``agent-*`` only) whose mtime is older than their limit:
    ``success_hours`` for successes kept on purpose (see :func:`archive_workspace`), when
    given, else ``older_than_hours`` (failures, timeouts, interrupted runs).
    Returns what was removed; entries that cannot be removed are skipped."""
    archive = _abs(archive_dir)
    limit = now_epoch - older_than_hours * 3600.0
    success_limit = limit if success_hours is None else now_epoch - success_hours * 3600.0
    removed: List[Path] = []
    try:
        entries = sorted(os.scandir(archive), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return removed
    except OSError as exc:
        raise StateError(os.fspath(archive), exc.strerror or str(exc)) from exc
    for entry in entries:
        if not entry.name.startswith("agent-"):
            continue
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue
            mtime = entry.stat(follow_symlinks=False).st_mtime
            if mtime >= (success_limit if is_kept_success(entry.path) else limit):
                continue
            _rmtree(Path(entry.path))
        except OSError:
            continue
        removed.append(Path(entry.path))
    return removed


def _open_subdir(top: int, rel: str) -> int:
    """The task dir's subdirectory ``rel``, opened one name at a time from ``top``, no link followed."""
    return _descend(os.dup(top), rel.split("/"))


def _scan_dir(top: int, rel_dir: str, found: List[str], stack: List[str]) -> int:
    """One directory of files_left(): its files into ``found``, its subdirectories onto ``stack``;
    returns how many entries it had."""
    try:
        dir_fd = _open_subdir(top, rel_dir) if rel_dir else os.dup(top)
    except OSError:
        return 0
    try:
        entries = list(os.scandir(dir_fd))
    except OSError:
        return 0
    finally:
        os.close(dir_fd)
    for entry in entries:
        rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError:
            is_dir = False
        if is_dir:
            if rel_dir or entry.name != INPUTS_DIR:   # the task's own files (inputs.py) are not the agent's
                stack.append(rel)
        elif rel_dir or not (entry.name in OWN_FILES or entry.name.startswith("agent-output.")):
            found.append(rel)
    return len(entries)


def files_left(ws: Workspace, limit: int = FILES_LEFT_MAX) -> Tuple[str, ...]:
    """Files the agent left in the task dir, relative POSIX-style paths, sorted, at most
    ``limit``; our own files (AGENTS.md, TOOLS.md, TASK.txt, agent-output.*) at the top
    level are left out. Symlinks are listed, never followed (nor is a linked task dir or
    subdirectory: each is opened relative to its parent with O_NOFOLLOW)."""
    try:
        top = _open_task_dir(ws)
    except OSError:
        return ()
    found: List[str] = []
    scanned = 0
    stack = [""]
    try:
        while stack and scanned < _FILES_LEFT_SCAN_MAX:
            scanned += _scan_dir(top, stack.pop(), found, stack)
    finally:
        os.close(top)
    found.sort()
    return tuple(found[:max(0, limit)])


DISK_FULL_NAMED = 3   # archived workspaces named, largest first, when the disk is full


def disk_full_advice(settings: Any) -> str:
    """What to remove on a full disk: the largest archived workspaces, by path, in one line."""
    largest = largest_archives(settings.archive_dir, DISK_FULL_NAMED)
    if not largest:
        return f"{settings.archive_dir} holds nothing to remove: free some space"
    names = ", ".join(f"{path} ({size / (1024 * 1024):.1f} MiB)" for path, size in largest)
    return (f"remove {names} to make room (the largest archived workspaces; "
            f"ARCHIVE_RETENTION_HOURS={settings.archive_retention_h:g} removes them later)")
