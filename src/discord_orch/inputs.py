"""Files attached to a task, fetched into its task dir's ``inputs/`` before the agent starts.

A task message may carry files (a log, a CSV, a screenshot) besides the long-task
``TASK.txt`` (which is the task's text, tasks.py). They reach the agent as
``<task dir>/inputs/<name>``, byte for byte, and AGENTS.md (its prompt) names them.

- **When.** The limits are checked when the task is decided (claim.py): more than
  INPUT_MAX_FILES files, or one whose size Discord states is over INPUT_MAX_MB, refuses
  the task (⛔, the reason in #results) and nothing is fetched. A refused task's files
  are never fetched. A claimed task's attachments are remembered with its record
  (state.db's meta, ``inputs:<task id>``), so a task started by a later pass (recovery)
  fetches the same files; they are fetched when its workspace is made, before the agent
  starts (Orchestrator.prepare).
- **How.** From Discord's CDN without the token (discord_api.download sends it only to
  the API's own address), each file capped at INPUT_MAX_MB while it is read, with the
  client's bounded retries; a signed CDN link that expired (404/403) is replaced by the
  link of a fresh copy of the message, once: the same path the TASK.txt of a long task
  takes (``download_fresh``).
- **All or nothing.** A file that cannot be fetched (gone, larger than it said, Discord
  not answering after the retries) ends the task before its agent starts, with the reason
  in its result; the files fetched so far are removed. The agent never sees a partial set.
- **Names.** Only the last part of Discord's filename, without control characters or
  leading dots, at most NAME_MAX_BYTES of UTF-8; an empty name becomes ``file``; names
  that collide (in any case) are numbered: ``data.csv``, ``data-2.csv``. Files are
  written ``0600`` with O_EXCL and O_NOFOLLOW into a directory discord-orch made.

A follow-up (a later message in the task's thread, conversation.py) may carry files too: the
same limits, checked when it is read (over them: the reason is the answer in the thread, and
no turn); the same fetch, into ``inputs/turn-<n>/`` of the task's workspace, named in that
turn's TASK.txt. The agent has had the workspace since the task ran, so ``inputs/`` is
opened without following a link and ``turn-<n>`` is made anew (whatever is there is removed
first: a killed pass's half, or something the agent put there).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, List, NamedTuple, Optional, Sequence, Tuple

from .errors import AttachmentTooLarge, DiscordError, Forbidden, NotFound, Unauthorized
from .models import INPUTS_DIR, TASK_FILE, Attachment, Message

if TYPE_CHECKING:
    from .discord_api import DiscordClient
    from .state import Store

MIB = 1024 * 1024
NAME_MAX_BYTES = 200               # a file name's most UTF-8 bytes (file systems allow 255)
FALLBACK_NAME = "file"             # a name with nothing left once made safe
INPUTS_META = "inputs:{task}"      # state.db meta: a claimed task's attachments, until they are fetched
_DIR_MODE = 0o700
_FILE_MODE = 0o600
_DIR_OPEN = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
TURN_DIR = "turn-{n}"              # inputs/turn-<n>/: the files of a task's n-th follow-up


class Limits(NamedTuple):
    """INPUT_MAX_MB (as bytes) and INPUT_MAX_FILES."""

    max_bytes: int
    max_files: int

    @classmethod
    def of(cls, settings) -> "Limits":
        return cls(int(settings.input_max_mb * MIB), int(settings.input_max_files))


class Fetched(NamedTuple):
    """What ``fetch_inputs`` left in ``inputs/`` (names, in the message's order), or why nothing."""

    names: Tuple[str, ...] = ()
    problem: str = ""


def input_files(msg: Message) -> Tuple[Attachment, ...]:
    """A message's files that are inputs: all but the TASK.txt that carries a long task's text."""
    return tuple(att for att in msg.attachments if att.filename != TASK_FILE)


def _mib(n: int) -> str:
    return f"{n / MIB:,.2f} MiB" if n < 10 * MIB else f"{n / MIB:,.0f} MiB"


def limit_problem(attachments: Sequence[Attachment], limits: Limits, *, what: str = "a task") -> str:
    """Why these files refuse the task (``what``: or the follow-up), from what Discord says of them (nothing
    is fetched), or ""."""
    if len(attachments) > limits.max_files:
        return (f"{len(attachments)} files are attached; {what} may have at most {limits.max_files} "
                f"(INPUT_MAX_FILES)")
    for att in attachments:
        if att.size > limits.max_bytes:
            return (f"the attached {safe_name(att.filename)} is {_mib(att.size)} ({att.size:,} bytes); a file may "
                    f"be at most {_mib(limits.max_bytes)} (INPUT_MAX_MB)")
    return ""


# ---------------------------------------------------------------- names

def safe_name(name: str) -> str:
    """One file name, safe to create in ``inputs/`` (see the module docstring)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(c for c in base if c.isprintable()).strip().lstrip(".").strip()
    data = base.encode("utf-8", "ignore")
    if len(data) > NAME_MAX_BYTES:
        stem, dot, ext = base.rpartition(".")
        keep = ("." + ext).encode("utf-8", "ignore") if dot and stem and len(ext) <= 16 else b""
        base = (data[:NAME_MAX_BYTES - len(keep)].decode("utf-8", "ignore") + keep.decode("utf-8")).strip()
    return base or FALLBACK_NAME


def safe_names(names: Iterable[str]) -> List[str]:
    """Each name made safe, collisions (in any case: some file systems fold it) numbered from 2."""
    out: List[str] = []
    taken = set()
    for name in names:
        safe = candidate = safe_name(name)
        stem, dot, ext = safe.rpartition(".")
        if not dot or not stem:
            stem, dot, ext = safe, "", ""
        n = 1
        while candidate.lower() in taken:
            n += 1
            candidate = f"{stem}-{n}{dot}{ext}"
        taken.add(candidate.lower())
        out.append(candidate)
    return out


def turn_dir(turn: int) -> str:
    """Where under ``inputs/`` the files of a record go: "" for a task (turn 0), ``turn-<n>`` for its n-th
    follow-up."""
    return TURN_DIR.format(n=turn) if turn else ""


def inputs_rel(subdir: str = "") -> str:
    """The files' directory relative to the task dir: ``inputs``, or ``inputs/<subdir>`` for a follow-up."""
    return f"{INPUTS_DIR}/{subdir}" if subdir else INPUTS_DIR


def prompt_section(task_dir: Path, attachments: Sequence[Attachment], names: Sequence[str], *,
                   subdir: str = "") -> str:
    """The lines AGENTS.md (a task) or the turn's TASK.txt (a follow-up: ``subdir``) gets for its files (empty
    without any)."""
    if not names:
        return ""
    rel = inputs_rel(subdir)
    where = os.fspath(Path(task_dir) / rel)
    lines = [f"- {rel}/{name} ({att.size:,} bytes)" for att, name in zip(attachments, names)]
    given, came = ("this message", "This message") if subdir else ("the task", "The task")
    return (f"\n## Files given with {given}\n\n"
            f"{came} came with {len(names)} file(s), in {where}/ (read them; your results go in the task dir):\n\n"
            + "\n".join(lines) + "\n")


# ---------------------------------------------------------------- remembering a claimed task's files

def remember(store: "Store", task_id: str, attachments: Sequence[Attachment]) -> None:
    """Keep a task's attachments with its record (before it is claimed), for whichever pass starts it."""
    if attachments:
        store.set_meta(INPUTS_META.format(task=task_id), json.dumps([a._asdict() for a in attachments]))


def remembered(store: "Store", task_id: str) -> Tuple[Attachment, ...]:
    """The attachments ``remember`` kept for this task (none: it had no files)."""
    text = store.get_meta(INPUTS_META.format(task=task_id))
    return tuple(Attachment(**a) for a in json.loads(text)) if text else ()


# ---------------------------------------------------------------- fetching

def download_fresh(client: "DiscordClient", channel_id: str, message_id: str, att: Attachment, *,
                   max_bytes: int) -> Tuple[Optional[bytes], str]:
    """An attachment's bytes, or why there are none. A CDN link is signed and expires (then 404 or 403, as
    for a deleted file): the link of a fresh copy of the message is tried, once.

    AttachmentTooLarge past ``max_bytes``; NotFound (Unknown Message) when the message is gone; other
    DiscordErrors when Discord did not answer (after the client's bounded retries)."""
    try:
        return client.download(att.url, max_bytes=max_bytes), ""
    except (NotFound, Forbidden):
        pass
    again = client.get_message(channel_id, message_id).attachments
    fresh = next((a for a in again if a.id == att.id), None) or \
        next((a for a in again if a.filename == att.filename), None)
    if fresh is None:
        return None, f"its {att.filename} was removed from the message before it was read"
    try:
        return client.download(fresh.url, max_bytes=max_bytes), ""
    except (NotFound, Forbidden) as exc:
        return None, f"its {att.filename} could not be downloaded: Discord answered {exc.answer()}"


def _write_new(dir_fd: int, name: str, data: bytes) -> None:
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, _FILE_MODE, dir_fd=dir_fd)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def fetch_inputs(client: "DiscordClient", channel_id: str, message_id: str, attachments: Sequence[Attachment],
                 task_dir: Path, limits: Limits, *, subdir: str = "") -> Fetched:
    """Fetch these attachments of message ``message_id`` into ``task_dir/inputs/`` (a follow-up's: into
    ``inputs/<subdir>/``): all of them, or none and the reason (see the module docstring). Nothing to fetch:
    nothing is made."""
    problem = limit_problem(attachments, limits)
    if problem or not attachments:
        return Fetched(problem=problem)
    names = safe_names(a.filename for a in attachments)
    directory = Path(task_dir) / inputs_rel(subdir)
    dir_fd = -1
    try:
        dir_fd = _new_inputs_dir(Path(task_dir), subdir)
        for att, name in zip(attachments, names):
            data: Optional[bytes] = None
            try:
                data, problem = download_fresh(client, channel_id, message_id, att, max_bytes=limits.max_bytes)
            except AttachmentTooLarge:   # the message understated its size
                problem = (f"the attached {name} is over {_mib(limits.max_bytes)}, the most a file may be "
                           "(INPUT_MAX_MB)")
            except NotFound:
                problem = "its message was deleted before its files were fetched"
            except Unauthorized:
                raise
            except DiscordError as exc:
                problem = f"the attached {name} could not be downloaded: {exc}"
            if data is None or problem:
                shutil.rmtree(directory, ignore_errors=True)   # all or nothing: the agent never sees a part
                return Fetched(problem=problem)
            _write_new(dir_fd, name, data)
    except OSError as exc:
        if dir_fd >= 0:   # ours (a link in its place was never opened, so never removed through)
            shutil.rmtree(directory, ignore_errors=True)
        return Fetched(problem=f"its files could not be saved in {directory}: {exc.strerror or exc}")
    finally:
        if dir_fd >= 0:
            os.close(dir_fd)
    return Fetched(names=tuple(names))


def _new_inputs_dir(task_dir: Path, subdir: str) -> int:
    """A directory made here for the files, opened: ``inputs/`` for a task (new: the workspace is new);
    ``inputs/<subdir>/`` for a follow-up, in an ``inputs/`` that is opened without following a link (the agent
    has had the workspace), whatever is at ``<subdir>`` removed first."""
    top = task_dir / INPUTS_DIR
    if not subdir:
        os.mkdir(top, _DIR_MODE)
        return os.open(top, _DIR_OPEN)
    try:
        os.mkdir(top, _DIR_MODE)
    except FileExistsError:
        pass   # the task's own files are there
    parent = os.open(top, _DIR_OPEN)   # ELOOP / ENOTDIR: a link or a file where inputs/ was
    try:
        try:
            st = os.lstat(subdir, dir_fd=parent)
        except FileNotFoundError:
            st = None
        if st is not None and stat.S_ISDIR(st.st_mode):
            shutil.rmtree(top / subdir)   # a real directory (lstat): rmtree does not follow links inside it
        elif st is not None:
            os.unlink(subdir, dir_fd=parent)   # a link is removed itself
        os.mkdir(subdir, _DIR_MODE, dir_fd=parent)
        return os.open(subdir, _DIR_OPEN, dir_fd=parent)
    finally:
        os.close(parent)


def forget(store: "Store", task_id: str) -> None:
    """The task's files are fetched (or never will be): its attachments need not be kept. A read first: most
    tasks have no files, and a read takes no write lock."""
    key = INPUTS_META.format(task=task_id)
    if store.get_meta(key) is not None:
        store.delete_meta(key)
