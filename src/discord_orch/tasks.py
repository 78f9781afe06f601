"""Message text → :class:`ParsedTask`, and the submit side's visible header. Pure.

A task is a message in #task-queue. Its text may carry tags::

    **[Task: 1234567890123456789]** Summarise README.md [model:cheap] [thinking:low]

``**[Task: <id>]**`` is the header ``discord-orch submit`` adds (the seed's
visible form); ``[model:X]``, ``[thinking:X]`` and ``[worker:X]`` choose the
model (an alias or a full ``provider/model`` id), the thinking level and a
worker type; ``[needs:X]`` names a tag the host must have (HOST_TAGS; repeatable,
or ``[needs:gpu,repo-x]``: all are required) and ``[priority:X]`` is high, normal
(the default) or low (order.py). Everything else is the task description.

Rules (the contract, tested in tests/test_tasks.py):

* Tag keys are case-insensitive and blanks inside the brackets are tolerated:
  ``[ Model : cheap ]`` is ``[model:cheap]``. A tag value cannot contain
  ``[``, ``]``, a backtick or a line break.
* A tag inside a fenced code block (between a ````` ``` ````` and the next
  ````` ``` `````, the way Discord pairs them) is not a tag: it is task text.
  An unclosed ````` ``` ````` opens no block (Discord shows it literally), so tags
  after it count.
* When a tag is repeated, the LAST one wins; ``[needs:...]`` tags add up instead.
* A tag is removed together with the blanks before it; a line left empty by its
  tags is removed with its line break. The header is recognised only at the very
  start. NUL characters are dropped. The description is trimmed; inner line
  breaks and blanks are kept.
* Invalid values never reach the fields: an unknown model gives ``model=None``,
  an unknown thinking level leaves ``thinking`` at its default, a bad worker name
  gives ``worker=None``; each adds a one-line human message to ``problems``. A
  task with problems must be refused, not run.
* Nothing raises: any ``str`` parses (quotes, backslashes, emoji, NULs, fences,
  100,000 characters: all regular expressions here are linear-time).

Round trip: ``parse_task(format_task_message(d, task_id=..., model_alias=...,
thinking=..., worker=...)).description == d`` for every description ``d`` that
is trimmed (``d == d.strip()``), has no NUL, and has no text of its own that this
module would read as markup: a tag outside code fences, a ``**[Task: …]**``
header at its start, or the attachment placeholder at its start. Such text in a
description cannot survive: ``[model:x]`` typed outside a fence IS a tag, by
design (the seed read tags from anywhere in the message, and a user who types it
means it). Put it in a code fence to keep it literally. The same holds for the
attached form (``format_attached_task_message`` + ``attachment_text``).
"""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

from .errors import ConfigError
from .models import MESSAGE_LIMIT, TASK_FILE as TASK_ATTACHMENT  # TASK_FILE: the file a too-long task travels in

THINKING_LEVELS = ("off", "minimal", "low", "medium", "high", "xhigh")
DEFAULT_ALIASES: Mapping[str, str] = MappingProxyType({
    "cheap": "openrouter/stepfun/step-3.5-flash:free",
    "primary": "openrouter/moonshotai/kimi-k2.5",
    "coder": "openrouter/qwen/qwen3-coder-next",
    "research": "openrouter/google/gemini-3-pro-preview",
})
DEFAULT_MODEL_ALIAS = "primary"
DEFAULT_THINKING = "medium"
# The longest task text, in UTF-8 bytes: what `submit` posts and what a pass reads of a TASK.txt.
MAX_TASK_BYTES = 1024 * 1024
#: The last line of every message discord-orch posts (results, refusals, fallbacks, notices): a bot's
#: message ending with it is an orchestrator's output, never a task (claim.py), whatever channel it
#: is in. Visible on purpose: Discord keeps a message's text as sent but trims blanks at its ends, and
#: invisible characters are not a safe bet; "-# " shows the line as small grey subtext.
POST_MARKER = "-# discord-orch"


_FENCE = "```"
# No blanks before the value (the value is stripped in Python) and no '[' in it:
# both keep the search linear on hostile input such as "[model:" + 100k blanks.
_TAG_RE = re.compile(r"\[[ \t]*(model|thinking|worker|needs|priority)[ \t]*:([^\[\]\r\n`]*)\]", re.IGNORECASE)
_HEADER_RE = re.compile(r"\s*\*\*\[[ \t]*task[ \t]*:([^\[\]\r\n`]*)\]\*\*[ \t]*", re.IGNORECASE)
_PLACEHOLDER_RE = re.compile(r"\(task text in TASK\.txt, [0-9][0-9,]* characters?\)", re.IGNORECASE)
_WORKER_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
HOST_TAG_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")   # a HOST_TAGS tag, and a [needs:...] value (lower-cased)
PRIORITIES = ("high", "normal", "low")
DEFAULT_PRIORITY = "normal"
_ALIAS_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
# provider/model[/...]: starts with a letter or digit (never '-', it goes into argv)
_FULL_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*(?:/[A-Za-z0-9._:-]+)+")
_FULL_ID_MAX = 200
_TAG_VALUE_RE = re.compile(r"[^\[\]\r\n`]+")
_SHOW_MAX = 60                # how much of a bad value a problem message quotes


class ParsedTask(NamedTuple):
    """A task message, read. ``problems`` empty means it may run.

    ``model_alias`` is the model as written (default ``primary``); ``model`` is the
    full ``provider/model`` id it resolves to, or None when it does not resolve.
    ``text_in_attachment`` is True when the message is the attached form
    (``... (task text in TASK.txt, N characters) ...``).
    """

    description: str
    model_alias: str = DEFAULT_MODEL_ALIAS
    model: Optional[str] = None
    thinking: str = DEFAULT_THINKING
    worker: Optional[str] = None
    problems: Tuple[str, ...] = ()
    text_in_attachment: bool = False
    needs: Tuple[str, ...] = ()          # host tags the task requires, lower-case, sorted, each once
    priority: str = DEFAULT_PRIORITY

    @property
    def ok(self) -> bool:
        return not self.problems


# ----------------------------------------------------------------------
# ids, aliases, models
# ----------------------------------------------------------------------
def parse_aliases(spec: str) -> Dict[str, str]:
    """``MODEL_ALIASES="fast=openrouter/x/y,cheap=..."`` → ``{"fast": "openrouter/x/y", ...}``.

    Returns only the entries of ``spec`` (merge with :data:`DEFAULT_ALIASES`
    yourself). Entries are separated by commas or line breaks; blanks around
    names and values and empty entries are ignored. Names are 1-32 letters,
    digits, '-' or '_', case-insensitive (stored lower-case); values are full
    ``provider/model`` ids. Raises ``ConfigError("MODEL_ALIASES", ...)`` on a
    malformed or repeated entry.
    """
    hint = 'e.g. MODEL_ALIASES="fast=openrouter/stepfun/step-3.5-flash:free,big=openrouter/moonshotai/kimi-k2.5"'
    out: Dict[str, str] = {}
    for raw in re.split(r"[,\n]", spec or ""):
        entry = raw.strip()
        if not entry:
            continue
        name, sep, value = entry.partition("=")
        name, value = name.strip(), value.strip()
        if not sep:
            raise ConfigError("MODEL_ALIASES", f"entry {entry!r} is not name=provider/model", hint)
        if not _ALIAS_NAME_RE.fullmatch(name):
            raise ConfigError("MODEL_ALIASES", f"alias name {name!r} in {entry!r} must be 1-32 letters, "
                              "digits, '-' or '_'", hint)
        if not _is_full_id(value):
            raise ConfigError("MODEL_ALIASES", f"alias {name!r} points to {value!r}, which is not a full "
                              "provider/model id", hint)
        key = name.lower()
        if key in out:
            raise ConfigError("MODEL_ALIASES", f"alias {name!r} is defined twice", hint)
        out[key] = value
    return out


def _is_full_id(name: str) -> bool:
    return len(name) <= _FULL_ID_MAX and _FULL_ID_RE.fullmatch(name) is not None


def resolve_model(name: Optional[str], aliases: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """An alias (case-insensitive) → its full id; a full ``provider/model`` id → itself; else None.

    A full id has at least one '/', no blanks, and only letters, digits and
    ``. _ : -`` (e.g. ``openrouter/stepfun/step-3.5-flash:free``).
    """
    if not isinstance(name, str):
        return None
    name = name.strip()
    if not name:
        return None
    table = DEFAULT_ALIASES if aliases is None else aliases
    if name in table:
        return table[name]
    lowered = name.lower()
    for key, value in table.items():
        if key.lower() == lowered:
            return value
    return name if _is_full_id(name) else None


def valid_models_text(aliases: Optional[Mapping[str, str]] = None) -> str:
    """``"cheap, coder, primary, research, or a full provider/model id (e.g. ...)"``."""
    table = DEFAULT_ALIASES if aliases is None else aliases
    example = next(iter(sorted(table.values())), "openrouter/moonshotai/kimi-k2.5")
    full = f"a full provider/model id (e.g. {example})"
    names = sorted(table)
    return f"{', '.join(names)}, or {full}" if names else full


def _show(value: str) -> str:
    value = value if len(value) <= _SHOW_MAX else value[:_SHOW_MAX - 1] + "…"
    return '"' + value + '"'


def tag_problems(*, model_alias: Optional[str] = None, thinking: Optional[str] = None,
                 worker: Optional[str] = None, needs: Sequence[str] = (), priority: Optional[str] = None,
                 aliases: Optional[Mapping[str, str]] = None) -> Tuple[str, ...]:
    """The problems :func:`parse_task` would report for these tag values (None = not given)."""
    return _check(model_alias, thinking, worker, aliases)[3] + _routing(list(needs), priority)[2]


def _routing(needs: List[str], priority: Optional[str]) -> Tuple[Tuple[str, ...], str, Tuple[str, ...]]:
    """([needs:] values → the tags, sorted and each once; [priority:] → its level; the problems)."""
    problems: List[str] = []
    tags = set()
    for value in needs:
        for part in value.split(","):
            tag = part.strip().lower()
            if HOST_TAG_RE.fullmatch(tag):
                tags.add(tag)
            else:
                problems.append(f"bad host tag {_show(part.strip())} in [needs:...]: use 1-32 lower-case letters, "
                                "digits, '-' or '_' (a HOST_TAGS name)")
    level = _word(priority, PRIORITIES, DEFAULT_PRIORITY, "priority", problems)
    return tuple(sorted(tags)), level, tuple(problems)


def _word(value: Optional[str], words: Tuple[str, ...], default: str, what: str, problems: List[str]) -> str:
    """One of ``words`` (any case), ``default`` when not given; an unknown one adds a problem."""
    if value is None:
        return default
    if value.strip().lower() in words:
        return value.strip().lower()
    problems.append(f"unknown {what} {_show(value)}: use one of {', '.join(words)}")
    return default


def read_routing(content: str) -> Tuple[Tuple[str, ...], str]:
    """(needs, priority) of a message's own text, the tags that order and route it before it is claimed
    (order.py); values with problems are left out (the claim refuses the task). Never raises."""
    _rest, tags = _strip_tags(_clean(content))
    needs, priority, _problems = _routing([v for k, v in tags if k == "needs"],
                                          next((v for k, v in reversed(tags) if k == "priority"), None))
    return needs, priority


def _check(model_alias: Optional[str], thinking: Optional[str], worker: Optional[str],
           aliases: Optional[Mapping[str, str]]) -> Tuple[Optional[str], str, Optional[str], Tuple[str, ...]]:
    problems: List[str] = []
    model = resolve_model(DEFAULT_MODEL_ALIAS if model_alias is None else model_alias, aliases)
    if model is None:
        shown = "no model" if model_alias is not None and not model_alias.strip() else \
            f"unknown model {_show(DEFAULT_MODEL_ALIAS if model_alias is None else model_alias)}"
        problems.append(f"{shown}: use {valid_models_text(aliases)}")
    level = _word(thinking, THINKING_LEVELS, DEFAULT_THINKING, "thinking level", problems)
    good_worker = None
    if worker is not None:
        if _WORKER_RE.fullmatch(worker.strip()):
            good_worker = worker.strip()
        else:
            problems.append(f"bad worker name {_show(worker)}: use 1-32 letters, digits, '-' or '_'")
    return model, level, good_worker, tuple(problems)


# ----------------------------------------------------------------------
# parsing
# ----------------------------------------------------------------------
def _clean(text: object) -> str:
    return ("" if text is None else str(text)).replace("\x00", "")


def _fence_spans(text: str) -> List[Tuple[int, int]]:
    """[start, end) of each closed ``` ... ``` block, paired left to right as Discord does."""
    spans = []
    pos = 0
    while True:
        start = text.find(_FENCE, pos)
        if start < 0:
            return spans
        end = text.find(_FENCE, start + len(_FENCE))
        if end < 0:
            return spans  # unclosed: Discord shows it literally; no block
        spans.append((start, end + len(_FENCE)))
        pos = end + len(_FENCE)


def _strip_tags(text: str) -> Tuple[str, List[Tuple[str, str]]]:
    """Remove the tags outside fences; return the rest and the tags (key lower-case, value stripped)."""
    fences = _fence_spans(text)
    n = len(text)
    found: List[Tuple[str, str]] = []
    removals: List[Tuple[int, int, bool]] = []  # [start, end), began at a line start
    fi = 0
    for m in _TAG_RE.finditer(text):
        s, e = m.span()
        while fi < len(fences) and fences[fi][1] <= s:
            fi += 1
        if fi < len(fences) and fences[fi][0] <= s:
            continue  # inside a code block: task text
        found.append((m.group(1).lower(), m.group(2).strip()))
        floor = removals[-1][1] if removals else 0
        ls = s
        while ls > floor and text[ls - 1] in " \t":
            ls -= 1
        at_line_start = ls == 0 or text[ls - 1] == "\n" or bool(
            removals and removals[-1][1] == ls and removals[-1][2])
        if at_line_start:
            while e < n and text[e] in " \t":
                e += 1
            if text.startswith("\r\n", e):
                e += 2
            elif e < n and text[e] == "\n":
                e += 1
        removals.append((ls, e, at_line_start))
    if not removals:
        return text, found
    parts = []
    pos = 0
    for start, end, _ in removals:
        parts.append(text[pos:start])
        pos = end
    parts.append(text[pos:])
    return "".join(parts), found


def parse_task(content: str, aliases: Optional[Mapping[str, str]] = None,
               attachment_text: Optional[str] = None) -> ParsedTask:
    """Read a #task-queue message. Never raises. See the module docstring for the rules.

    ``aliases`` defaults to :data:`DEFAULT_ALIASES`. ``attachment_text`` is the
    text of the message's ``TASK.txt`` attachment, when it has one: in the
    attached form (``**[Task: <id>]** (task text in TASK.txt, N characters)
    [tags]``) it takes the place of the placeholder, so its tags are read too
    and tags after the placeholder in the message win. With an attachment but no
    placeholder, the attachment is appended to the message text after a blank
    line. The attached form without ``attachment_text`` is a problem (the task
    text was not read).
    """
    text = _clean(content)
    header = _HEADER_RE.match(text)
    if header:
        text = text[header.end():]
    placeholder = _PLACEHOLDER_RE.match(text)
    missing_attachment = False
    if placeholder:
        rest = text[placeholder.end():]
        if attachment_text is None:
            text, missing_attachment = rest, True
        else:
            text = _clean(attachment_text).strip() + rest
    elif attachment_text is not None:
        body = text.strip()
        att = _clean(attachment_text).strip()
        text = f"{body}\n\n{att}" if body and att else (body or att)

    rest_text, tags = _strip_tags(text)
    values: Dict[str, str] = {}
    for key, value in tags:
        values[key] = value  # the last one wins
    model, thinking, worker, problems = _check(values.get("model"), values.get("thinking"),
                                               values.get("worker"), aliases)
    needs, priority, routing_problems = _routing([v for k, v in tags if k == "needs"], values.get("priority"))
    problems += routing_problems
    description = "" if missing_attachment else rest_text.strip()
    extra: List[str] = []
    if missing_attachment:
        extra.append(f"the task text is in the attached {TASK_ATTACHMENT}, which could not be read")
    elif not description:
        extra.append("empty task: there is no text besides the tags")
    return ParsedTask(
        description=description,
        model_alias=values.get("model", DEFAULT_MODEL_ALIAS),
        model=model,
        thinking=thinking,
        worker=worker,
        problems=problems + tuple(extra),
        text_in_attachment=bool(placeholder),
        needs=needs,
        priority=priority,
    )


# ----------------------------------------------------------------------
# the submit side
# ----------------------------------------------------------------------
def _tag_text(model_alias: Optional[str], thinking: Optional[str], worker: Optional[str],
              needs: Sequence[str] = (), priority: Optional[str] = None) -> str:
    tags = []
    for key, value in (("model", model_alias), ("thinking", thinking), ("worker", worker),
                       *(("needs", tag) for tag in needs), ("priority", priority)):
        if value is None:
            continue
        value = value.strip() if isinstance(value, str) else value
        if not isinstance(value, str) or not _TAG_VALUE_RE.fullmatch(value):
            raise ValueError(f"{key} {value!r} cannot be written as a [{key}:...] tag "
                             "(check it with tag_problems() first)")
        tags.append(f"[{key}:{value}]")
    return " ".join(tags)


_FOR_RE = re.compile(r"\s*\*\*\[[ \t]*task[ \t]*:[ \t]*for ([^\s\[\]`<>]{1,32}) <@([0-9]{1,20})>[ \t]*\]\*\*",
                     re.IGNORECASE)


def posted_for_header(username: str, user_id: str) -> str:
    """The header of a task the bot posted for someone (``/task``): ``**[Task: for alice <@123>]**``;
    parse_task strips it as any header, :func:`posted_for` reads it."""
    name = re.sub(r"[\s\[\]`<>]", "", username)[:32] or "someone"
    if not str(user_id).isdigit():
        raise ValueError(f"user id {user_id!r} is not a snowflake")
    return f"**[Task: for {name} <@{user_id}>]**"


def posted_for(content: str) -> Optional[Tuple[str, str]]:
    """(user id, username) when the message starts with :func:`posted_for_header`'s header, else None.
    Only the bot's own messages are read so (claim.py): nobody else can speak for a user."""
    m = _FOR_RE.match(content or "")
    return None if m is None else (m.group(2), m.group(1))


def _header(task_id: Optional[str]) -> str:
    if task_id is None:
        return ""
    task_id = str(task_id)
    if not _TAG_VALUE_RE.fullmatch(task_id) or task_id != task_id.strip():
        raise ValueError(f"task id {task_id!r} cannot be written in a header")
    return f"**[Task: {task_id}]**"


def format_task_message(description: str, *, task_id: Optional[str] = None,
                        model_alias: Optional[str] = None, thinking: Optional[str] = None,
                        worker: Optional[str] = None, needs: Sequence[str] = (),
                        priority: Optional[str] = None) -> str:
    """The seed's visible form: ``**[Task: <id>]** <task> [model:<m>] [thinking:<t>] [worker:<w>]``
    (then ``[needs:<tag>]`` for each tag and ``[priority:<p>]``).

    The header only when ``task_id`` is given, each tag only when given. NULs are
    dropped; tag values are trimmed. Raises ValueError for a tag value that cannot
    be written as a tag (empty, ``[``, ``]``, a backtick, a line break): validate first
    (:func:`tag_problems`). See the module docstring for the round trip.
    """
    parts = [_header(task_id), _clean(description), _tag_text(model_alias, thinking, worker, needs, priority)]
    return " ".join(p for p in parts if p)


def format_attached_task_message(length: Union[int, str], *, task_id: Optional[str] = None,
                                 model_alias: Optional[str] = None, thinking: Optional[str] = None,
                                 worker: Optional[str] = None, needs: Sequence[str] = (),
                                 priority: Optional[str] = None) -> str:
    """``**[Task: <id>]** (task text in TASK.txt, N characters) [tags]``, for a task sent as a file.

    ``length`` is the task's length in characters (or the task text itself).
    The text goes in an attachment named :data:`TASK_ATTACHMENT`, UTF-8.
    """
    n = len(length) if isinstance(length, str) else int(length)
    placeholder = f"(task text in {TASK_ATTACHMENT}, {n:,} character{'' if n == 1 else 's'})"
    parts = [_header(task_id), placeholder, _tag_text(model_alias, thinking, worker, needs, priority)]
    return " ".join(p for p in parts if p)


def is_orchestrator_post(content: str) -> bool:
    """Whether this text ends with the line :data:`POST_MARKER` (what discord-orch posts, never a task)."""
    text = content.rstrip()
    return text == POST_MARKER or text.endswith("\n" + POST_MARKER)


def fits_in_message(text: str) -> bool:
    """Whether ``text`` fits in one Discord message (2,000 code points)."""
    return len(text) <= MESSAGE_LIMIT


def fits_inline(description: str, *, model_alias: Optional[str] = None, thinking: Optional[str] = None,
                worker: Optional[str] = None, needs: Sequence[str] = (), priority: Optional[str] = None) -> bool:
    """Whether the task, with its tags and a header for a 20-digit id, fits in one message."""
    return fits_in_message(format_task_message(description, task_id="9" * 20, model_alias=model_alias,
                                               thinking=thinking, worker=worker, needs=needs, priority=priority))
