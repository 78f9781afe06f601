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
from typing import IO, Mapping, Optional, Sequence, Tuple

from .errors import DiscordError, InputError
from .models import FileUpload
from .tasks import (MAX_TASK_BYTES, POST_MARKER, TASK_ATTACHMENT, THINKING_LEVELS, fits_in_message,
                    format_attached_task_message, format_task_message, is_orchestrator_post, resolve_model,
                    tag_problems, valid_models_text)
from .workspace import AGENT_ID_PREFIX, check_worker_name, is_workspace_name

log = logging.getLogger("discord_orch")



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


def submit_task(client, settings, text: str, model: Optional[str], thinking: Optional[str],
                worker: Optional[str], needs: Sequence[str] = (), priority: Optional[str] = None) -> str:
    """Post the task; returns its id (the message id)."""
    channel = settings.task_queue_channel
    tags = dict(model_alias=model, thinking=thinking, worker=worker, needs=tuple(needs), priority=priority)
    if fits_in_message(format_task_message(text, task_id="0" * 20, **tags)):
        msg = client.create_message(channel, format_task_message(text, **tags))
        final = format_task_message(text, task_id=msg.id, **tags)
    else:
        upload = FileUpload(TASK_ATTACHMENT, text.encode("utf-8"))
        msg = client.create_message(channel, format_attached_task_message(len(text), **tags), files=(upload,))
        final = format_attached_task_message(len(text), task_id=msg.id, **tags)
    try:
        client.edit_message(channel, msg.id, final)
    except DiscordError as exc:  # the task is posted and will run; only the visible header is missing
        log.warning("task %s posted, but adding its header failed: %s", msg.id, exc)
    return msg.id
