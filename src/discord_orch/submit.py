"""`discord-orch submit`: validate a task, post it to #task-queue, show its id.

The seed's visible form is kept: the message ends up as
``**[Task: <id>]** <task> [model:<m>] [thinking:<t>]``. The id is the
message's own id, which exists only after the post, so the message is posted
with its tags first and edited to add the header (as the seed did). The
orchestrator strips the header, so a pass that reads the message between the
two requests sees the same task. A task too long for one message is posted
as a short message with the full text attached as ``TASK.txt``.

Every create carries a nonce with ``enforce_nonce`` (discord_api.py), so a
retried post cannot create the task twice.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import IO, List, Mapping, Optional, Sequence, Tuple

from .errors import BadRequest, DiscordError, InputError
from .models import FileUpload
from .tasks import (MAX_TASK_BYTES, POST_MARKER, TASK_ATTACHMENT, THINKING_LEVELS, fits_in_message,
                    format_attached_task_message, format_task_message, is_orchestrator_post, resolve_model,
                    tag_problems, valid_models_text)
from .workspace import AGENT_ID_PREFIX, check_worker_name, is_workspace_name

log = logging.getLogger("discord_orch")

MESSAGE_FILES_MAX = 10   # files Discord takes in one message
TOO_LARGE = 40005        # Discord's "Request entity too large" (HTTP 413): a file over the server's upload limit
MIB = 1024 * 1024


def read_task_text(task: Optional[str], task_file: Optional[IO[str]]) -> str:
    """The task's text from TASK or --file, checked (InputError: empty, too long, not UTF-8)."""
    where = ""
    if task_file is not None:
        name = getattr(task_file, "name", "-")
        where = f" in {name}"
        try:
            # A character is at least one byte: one more than the limit is enough to tell it is too long.
            text = task_file.read(MAX_TASK_BYTES + 1)
        except UnicodeDecodeError as exc:
            raise InputError(f"the task in {name} is not UTF-8 text (it has the byte "
                             f"0x{exc.object[exc.start]:02x}); save it as UTF-8") from None
        except OSError as exc:
            raise InputError(f"cannot read the task from {name}: {exc.strerror or exc}") from None
        if "\x00" in text:
            raise InputError(f"the task in {name} contains NUL bytes: is it a binary file?")
    elif task is not None:
        text = task
    else:
        raise InputError('no task given: discord-orch submit "Your task here" [MODEL] [THINKING] '
                         "(or --file PATH, --file - for standard input)")
    if not text.strip():
        raise InputError("the task is empty")
    size = len(text.encode("utf-8"))
    if size > MAX_TASK_BYTES:
        shown = f"over {MAX_TASK_BYTES:,}" if len(text) > MAX_TASK_BYTES else f"{size:,}"   # a file read in part
        raise InputError(f"the task{where} is {shown} bytes of UTF-8 text; a task may be at most "
                         f"{MAX_TASK_BYTES:,} bytes (what orchestrate reads of its TASK.txt)")
    return text


def validate_submission(text: str, model: Optional[str], thinking: Optional[str], worker: Optional[str],
                        aliases: Mapping[str, str], needs: Sequence[str] = (),
                        priority: Optional[str] = None) -> Tuple[str, ...]:
    """Check everything before anything is posted; the --needs tags as they will be written (lower-case,
    each once, ``--needs gpu,repo-x`` split)."""
    if is_orchestrator_post(text):   # it would read as discord-orch's own output, which never runs
        raise InputError(f"the task ends with the line {POST_MARKER!r}, which marks discord-orch's own posts "
                         "(they never run): remove that line")
    if model is not None and resolve_model(model, aliases) is None:
        raise InputError(f"unknown model {model!r}: use {valid_models_text(aliases)}")
    if thinking is not None and thinking not in THINKING_LEVELS:
        raise InputError(f"unknown thinking level {thinking!r}: use one of {', '.join(THINKING_LEVELS)}")
    if worker is not None:
        try:
            check_worker_name(worker)
        except ValueError:
            raise InputError(f"bad worker type {worker!r}: 1-32 letters, digits, '-' or '_'") from None
        if is_workspace_name(worker):
            raise InputError(f"worker type {worker!r} starts with {AGENT_ID_PREFIX!r}, the prefix of the agents' "
                             "workspaces, which never load as a worker profile: name a profile in workers/")
    routing = tag_problems(needs=needs, priority=priority)
    if routing:
        raise InputError(routing[0].replace("[needs:...]", "--needs").replace("unknown priority", "unknown --priority"))
    return tuple(dict.fromkeys(tag.strip().lower() for value in needs for tag in value.split(",")))


def read_attachments(paths: Sequence[Path], max_files: int = MESSAGE_FILES_MAX) -> List[FileUpload]:
    """``--attach`` files, read whole (InputError: too many, not a readable file, named like the task's file)."""
    if len(paths) > max_files:
        raise InputError(f"{len(paths)} files given with --attach; Discord takes at most {max_files} in one "
                         "message (a long task's TASK.txt counts too)")
    uploads = []
    for path in paths:
        if path.name == TASK_ATTACHMENT:   # it would be read as the task's text
            raise InputError(f"--attach {path}: a file named {TASK_ATTACHMENT} carries a long task's text; "
                             "rename it")
        try:
            with open(path, "rb") as fh:
                uploads.append(FileUpload(path.name, fh.read()))
        except OSError as exc:
            raise InputError(f"--attach {path}: {exc.strerror or exc}") from None
    return uploads


def submit_task(client, settings, text: str, model: Optional[str], thinking: Optional[str],
                worker: Optional[str], attachments: Sequence[FileUpload] = (), needs: Sequence[str] = (),
                priority: Optional[str] = None) -> str:
    """Post the task (with ``attachments``: the files it comes with); returns its id (the message id)."""
    tags = dict(model_alias=model, thinking=thinking, worker=worker, needs=tuple(needs), priority=priority)
    try:
        return _post_task(client, settings, text, tags=tags, files=tuple(attachments))
    except BadRequest as exc:
        if exc.status != 413 and exc.code != TOO_LARGE or not attachments:
            raise
        largest = max(attachments, key=lambda f: len(f.data))
        raise InputError(f"Discord refused the files as too large ({exc.answer()}): a bot may upload at most "
                         f"10 MiB a file to a server without boosts (more with boosts); the largest, "
                         f"{largest.filename}, is {len(largest.data) / MIB:,.1f} MiB") from None


def _post_task(client, settings, text: str, *, tags: Mapping[str, object], files: Tuple[FileUpload, ...]) -> str:
    channel = settings.task_queue_channel
    if fits_in_message(format_task_message(text, task_id="0" * 20, **tags)):
        msg = client.create_message(channel, format_task_message(text, **tags), files=files)
        final = format_task_message(text, task_id=msg.id, **tags)
    else:
        if len(files) >= MESSAGE_FILES_MAX:
            raise InputError(f"this task is too long for one message and travels as {TASK_ATTACHMENT}, so at "
                             f"most {MESSAGE_FILES_MAX - 1} files can go with it")
        upload = FileUpload(TASK_ATTACHMENT, text.encode("utf-8"))
        msg = client.create_message(channel, format_attached_task_message(len(text), **tags),
                                    files=(upload,) + files)
        final = format_attached_task_message(len(text), task_id=msg.id, **tags)
    try:
        client.edit_message(channel, msg.id, final)
    except DiscordError as exc:  # the task is posted and will run; only the visible header is missing
        log.warning("task %s posted, but adding its header failed: %s", msg.id, exc)
    return msg.id
