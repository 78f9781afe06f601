"""Outcome → Discord payloads: the result post, the refusal post, #worker-pool notices. Pure.

No I/O and no clock: everything comes in as arguments, a :class:`Post` goes out.

Text safety (every post also goes out with ``allowed_mentions {"parse": []}``,
set by the client; this module makes the text safe on its own):

* Agent text (RESULT/SUMMARY/reply, openclaw's error message, the log tail) is
  shown only inside ````` ``` ````` code blocks. Discord's markdown does NOT honour
  CommonMark's longer fences: a block always ends at the first ````` ``` ````` after
  its opening (a ```````` ```` ```````` fence shows stray backticks and ends just as
  early). So fences are always exactly three backticks and, inside, a
  zero-width space (U+200B) is put between any two adjacent backticks: the text
  can hold no ````` ``` ````` and cannot close the block. Blocks are never empty.
* Any other untrusted text (the task's head, file names, reasons, model names,
  paths) is shown on one line outside the blocks with Discord's markdown
  characters backslash-escaped (``\\ ` * _ ~ | [ ]``), so it can neither open a
  code span or block nor format, spoil or mask a link; and ``@everyone``,
  ``@here`` and ``<@…>`` get a zero-width space after the ``@`` / ``<`` so they
  are never mentions, even without allowed_mentions.
* Short values (ids, model ids, file names, paths) without backticks are shown
  as inline code spans (mentions neutralised there too); with a backtick, as
  escaped text.
* NULs are removed everywhere.

Length: a post's content is at most 2,000 characters, always. The header lines
are never cut; body parts are cut in a fixed order (least useful first), each
down to a floor, before anything is dropped; cuts happen before fencing, so
blocks stay balanced. RESULT.txt is attached whenever the post does not show it
exactly and completely (cut, not shown because SUMMARY.txt was, or altered by the
backtick escaping), so a result of any length stays retrievable.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from . import models
from .models import MESSAGE_LIMIT
from .outcome import FAILED, INTERRUPTED, KILLED, OK, STOPPED, TIMED_OUT, Outcome, Usage, signal_name
from .tasks import POST_MARKER
from .workspace import RESULT_FILE, SUMMARY_FILE

ZWSP = "\u200b"
MARK = "\n" + POST_MARKER   # ends every post: what tells the orchestrator's own posts from tasks
REFUSALS_HEAD = "⛔ **REFUSED** · "   # a refusals_post's first line: "<n> messages from user <id>"
FENCE = "```"
SUMMARY_MAX = 1500
TASK_HEAD_MAX = 200          # characters of the task prompt in a result post
NOTICE_TASK_MAX = 60         # characters of the task in a spawn notice
REASON_MAX = 300
ERROR_MAX = 600
LOG_MAX = 1000
LOG_LINES = 20
FILES_MAX = 10               # names listed at most; "(+N more)" after
FILE_NAME_MAX = 80
ID_MAX = 64                  # agent ids, worker names... as shown
MODEL_MAX = 100
PATH_MAX = 200
NOTES_MAX = 8                # notes on what the run left (links not followed, logs cut), one line each
NOTE_MAX = 200
ATTACHMENT_MAX_BYTES = 8 * 1024 * 1024   # below Discord's 10 MiB upload limit for bots
REPLY_FILE = "REPLY.txt"
#: not listed under "Files": the post shows or attaches them already
SHOWN_FILES = frozenset({RESULT_FILE, SUMMARY_FILE})

# ⛔ is kept for refusals (the task never ran); a run that was killed or interrupted
# failed, and shows ❌ like the task's final reaction does.
STATUS_LABELS = {
    OK: "✅ **DONE**",
    FAILED: "❌ **FAILED**",
    TIMED_OUT: "⏱ **TIMED OUT**",
    KILLED: "❌ **KILLED**",
    INTERRUPTED: "❌ **INTERRUPTED**",
    STOPPED: "⏹ **STOPPED**",
}
STATUS_WORDS = {OK: "done", FAILED: "failed", TIMED_OUT: "timed out", KILLED: "killed",
                INTERRUPTED: "interrupted", STOPPED: "stopped"}
_ATTEMPT = re.compile(r" · attempt ([0-9]{1,3}) · ")   # in a result's first line, from the second attempt on
STOPPER_MAX = 40             # characters of the name of who stopped a task

Prices = Mapping[str, Tuple[float, float]]


@dataclass(frozen=True)
class Post:
    """One message to create. ``reply_to`` is a message id in the same channel."""

    content: str
    files: Tuple[models.FileUpload, ...] = ()
    reply_to: Optional[str] = None
    embeds: tuple = ()


# ----------------------------------------------------------------------
# text safety
# ----------------------------------------------------------------------
_BACKTICK_PAIR = re.compile(r"`(?=`)")
_MARKDOWN = re.compile(r"([\\`*_~|\[\]])")
_MASS_MENTION = re.compile(r"@(everyone|here)", re.IGNORECASE)
_USER_MENTION = re.compile(r"<(?=@)")
_BLANKS = re.compile(r"\s+")
# Terminal colour and cursor codes (CSI ... final byte) and other ESC sequences: openclaw colours its log
# even into a file, and a post would show them as "[31m[diagnostic][39m".
_TERMINAL_CODES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|[@-Z\\-_])")
_LINK_ID = re.compile(r"[0-9]{1,24}|@me")


def _no_nul(text: object) -> str:
    return ("" if text is None else str(text)).replace("\x00", "")


def neutralize_mentions(text: str) -> str:
    """``@everyone``/``@here``/``<@id>``/``<@&id>`` → the same with a zero-width space, never a ping."""
    return _USER_MENTION.sub("<" + ZWSP, _MASS_MENTION.sub("@" + ZWSP + r"\1", text))


def escape_inline(text: str) -> str:
    """Untrusted text for outside code blocks: NULs dropped, markdown escaped, mentions neutralised."""
    return neutralize_mentions(_MARKDOWN.sub(r"\\\1", _no_nul(text)))


def escape_fenced(text: str) -> str:
    """Text for inside a ``` block: NULs dropped, a zero-width space between adjacent backticks."""
    return _BACKTICK_PAIR.sub("`" + ZWSP, _no_nul(text))


def fence(text: str) -> str:
    """A code block around ``text`` (escaped with :func:`escape_fenced`)."""
    return f"{FENCE}\n{escape_fenced(text)}\n{FENCE}"


def one_line(text: str) -> str:
    """All runs of blanks and line breaks → one space; trimmed."""
    return _BLANKS.sub(" ", _no_nul(text)).strip()


def _cut(text: str, n: int) -> str:
    """At most n characters, with "…" as the last one when cut."""
    if len(text) <= n:
        return text
    return text[:max(0, n - 1)].rstrip() + "…" if n > 0 else ""


def _inline(text: str, n: int) -> str:
    """One line of untrusted text, at most n characters of it, escaped."""
    return escape_inline(_cut(one_line(text), n))


def _code(value: object, n: int = ID_MAX) -> str:
    """An inline code span when the value can be one, else escaped text."""
    text = _cut(one_line(_no_nul(value)), n)
    if text and "`" not in text:
        return f"`{neutralize_mentions(text)}`"
    return escape_inline(text) if text else "`-`"


# ----------------------------------------------------------------------
# numbers
# ----------------------------------------------------------------------
def format_duration(seconds: Optional[float]) -> str:
    """``0.3s``, ``4.4s``, ``12s``, ``1m 04s``, ``2h 03m 09s``; "n/a" when unknown or not a sane number.

    Under 10 s a tenth is shown: a quick failure reads "after 0.2s", not "after 0s"."""
    if seconds is None or isinstance(seconds, bool):
        return "n/a"
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        return "n/a"
    if not math.isfinite(value) or value < 0:
        return "n/a"
    if value < 9.95:
        return f"{value:.1f}s"
    total = int(value + 0.5)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def _valid_money(value: object) -> Optional[float]:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def format_cost(cost_usd: Optional[float], *, estimated: bool = False) -> str:
    """``$0.0123`` (4 decimals under $1, 2 from $1), ``$0.00`` for free, "n/a" when unknown.

    ``estimated`` (a cost computed from the price table, not reported by
    openclaw) appends " (est.)".
    """
    cost = _valid_money(cost_usd)
    if cost is None:
        return "n/a"
    if cost == 0:
        text = "$0.00"
    elif cost < 0.0001:
        text = "<$0.0001"
    elif cost < 1:
        text = f"${cost:.4f}"
    else:
        text = f"${cost:,.2f}"
    return f"{text} (est.)" if estimated else text


def model_used(usage: Usage, model_requested: Optional[str] = None) -> Optional[str]:
    """``provider/model`` from openclaw's usage, else the requested model, else None."""
    model = (usage.model or "").strip()
    provider = (usage.provider or "").strip()
    if model:
        return model if not provider or model.startswith(provider + "/") else f"{provider}/{model}"
    return (model_requested or "").strip() or None


def _tokens(value: object) -> Optional[int]:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None


def estimate_cost(usage: Usage, prices: Optional[Prices], model_id: Optional[str]) -> Optional[float]:
    """tokens_in/1000*p_in + tokens_out/1000*p_out from ``prices[model_id]``; None when anything is unknown."""
    if not prices or not model_id:
        return None
    tin, tout = _tokens(usage.input_tokens), _tokens(usage.output_tokens)
    if tin is None or tout is None:
        return None
    price = prices.get(model_id)
    if price is None and usage.model:
        price = prices.get(usage.model)
    if not price or len(price) != 2:
        return None
    pin, pout = _valid_money(price[0]), _valid_money(price[1])
    if pin is None or pout is None:
        return None
    return tin / 1000 * pin + tout / 1000 * pout


def cost_of(usage: Usage, prices: Optional[Prices] = None, model_id: Optional[str] = None
            ) -> Tuple[Optional[float], bool]:
    """(USD, estimated): openclaw's own cost when it gave one, else the price-table estimate; None when
    neither is known (what a result shows and budgets count)."""
    reported = _valid_money(usage.cost_usd)
    if reported is not None:
        return reported, False
    return estimate_cost(usage, prices, model_id), True


def cost_text(usage: Usage, prices: Optional[Prices] = None, model_id: Optional[str] = None) -> str:
    """openclaw's own cost when it gave one, else the price-table estimate, else "n/a"."""
    cost, estimated = cost_of(usage, prices, model_id)
    return format_cost(cost, estimated=estimated and cost is not None)


def _tokens_text(usage: Usage) -> str:
    tin, tout = _tokens(usage.input_tokens), _tokens(usage.output_tokens)
    if tin is None and tout is None:
        return "tokens n/a"
    show = lambda n: "n/a" if n is None else f"{n:,}"  # noqa: E731
    return f"{show(tin)} in / {show(tout)} out tokens"


def exit_text(outcome: Outcome) -> str:
    """``exit code 1`` / ``signal SIGKILL (9)`` / ``exit code unknown``."""
    if outcome.signal is not None:
        name = signal_name(outcome.signal)
        return f"signal {name} ({outcome.signal})" if name else f"signal {outcome.signal}"
    if outcome.exit_code is not None:
        return f"exit code {outcome.exit_code}"
    return "exit code unknown"


def _says_exit(reason: str, outcome: Outcome) -> bool:
    """True when the reason already names the exit code or the signal (no need to repeat it)."""
    if outcome.signal is not None:
        name = signal_name(outcome.signal)
        return bool(name) and re.search(rf"\b{name}\b", reason) is not None
    if outcome.exit_code is not None:
        return re.search(rf"\bcode {outcome.exit_code}\b", reason) is not None
    return False


# ----------------------------------------------------------------------
# where the post goes
# ----------------------------------------------------------------------
def jump_link(guild_id: Optional[str], channel_id: str, message_id: str) -> str:
    """``https://discord.com/channels/<guild>/<channel>/<message>`` (``@me`` without a guild)."""
    return f"https://discord.com/channels/{guild_id or '@me'}/{channel_id}/{message_id}"


def _placement(task_id: str, task_channel_id: Optional[str], results_channel_id: Optional[str],
               guild_id: Optional[str]) -> Tuple[Optional[str], str]:
    """(reply_to, " · <link>"): a reply in the same channel, else a jump link in the header."""
    if task_channel_id and str(task_channel_id) == str(results_channel_id):
        return str(task_id), ""
    ids = [str(guild_id or "@me"), str(task_channel_id or ""), str(task_id or "")]
    if not all(_LINK_ID.fullmatch(i) for i in ids):
        return None, ""  # not ids: no link rather than a broken or unsafe one
    return None, " · " + jump_link(*ids)


# ----------------------------------------------------------------------
# fitting a post into 2,000 characters
# ----------------------------------------------------------------------
def _head_block(text: str, cap: int) -> Tuple[str, bool]:
    """Escaped head of text in at most cap characters (+ a "…" line when cut); (shown, cut)."""
    escaped = escape_fenced(text)
    if len(escaped) <= cap:
        return escaped, False
    head = escaped[:max(0, cap)]
    return (head.rstrip("\n") + "\n…") if head.strip() else "…", True


def _tail_block(text: str, cap: int) -> str:
    """Escaped end of text in at most cap characters, starting at a line when possible."""
    escaped = escape_fenced(text)
    if len(escaped) <= cap:
        return escaped
    tail = escaped[len(escaped) - max(0, cap):]
    newline = tail.find("\n")
    if 0 <= newline < min(len(tail) - 1, 120):
        tail = tail[newline + 1:]
    return "…\n" + tail if tail.strip() else "…"


def _fit(build: Callable[[Dict[str, int]], str], caps: Dict[str, int], floors: Dict[str, int],
         order: Sequence[str], limit: int) -> str:
    """Shrink caps (in ``order``, each down to its floor) until ``build(caps)`` fits ``limit``."""
    content = build(caps)
    while len(content) > limit:
        over = len(content) - limit
        for name in order:
            if caps[name] > floors[name]:
                step = 1 if name == "files" else over
                caps[name] = max(floors[name], caps[name] - step)
                break
        else:
            return content  # the caller's fallback handles it
        content = build(caps)
    return content


def _marked(content: str, limit: int) -> str:
    """The post's text, cut to leave room for the marker line, then the marker: every post carries it."""
    return content[:max(0, limit - len(MARK))] + MARK


def _log_tail(text: str, lines: int = LOG_LINES) -> str:
    kept = _TERMINAL_CODES.sub("", _no_nul(text)).rstrip("\n").splitlines()[-lines:]
    return "\n".join(kept)


def _attachment(name: str, text: str, task_id: str, max_bytes: int) -> Tuple[models.FileUpload, int, int]:
    """(upload, bytes attached, bytes in all); cut at a UTF-8 boundary when over max_bytes."""
    data = text.encode("utf-8", "replace")
    total = len(data)
    if total > max_bytes:
        data = data[:max_bytes].decode("utf-8", "ignore").encode("utf-8")
    upload = models.FileUpload(name, data, f"{name} of task {task_id}")
    return upload, len(data), total


# ----------------------------------------------------------------------
# posts
# ----------------------------------------------------------------------
def stopped_label(outcome: Outcome, ran: bool) -> str:
    """``⏹ **STOPPED** by **alice** after 42s`` (or ``before it ran``): who stopped the task, and when."""
    who = escape_inline(one_line(outcome.stopped_by)[:STOPPER_MAX]) or "someone"   # cut before escaping
    when = f"after {format_duration(outcome.duration_s)}" if ran else "before it ran"
    return f"{STATUS_LABELS[STOPPED]} by **{who}** {when}"


def attempt_text(attempt: int) -> str:
    """`` · attempt 2`` in a result's first line (nothing for the first attempt: most tasks have one)."""
    return f" · attempt {int(attempt)}" if attempt > 1 else ""


def attempt_of(content: str) -> int:
    """Which attempt a result post (its first line) is about: 1 when it names none."""
    found = _ATTEMPT.search(content.split("\n", 1)[0])
    return int(found.group(1)) if found else 1


def _result_header(task_id: str, agent_id: str, link: str, outcome: Outcome, model_requested: Optional[str],
                   thinking: Optional[str], worker: Optional[str], prices: Optional[Prices],
                   attempt: int = 1) -> str:
    """The two header lines of a result post (never cut): status (who stopped it, and when), ids, the
    attempt, link; model, thinking, time, cost (this attempt's)."""
    status = outcome.status
    label = STATUS_LABELS.get(status, "❔ **" + escape_inline(one_line(str(status)).upper()[:20]) + "**")
    if status == STOPPED:
        label = stopped_label(outcome, ran=agent_id != "-")
    header = f"{label} · task {_code(task_id, 24)}{attempt_text(attempt)} · agent {_code(agent_id)}{link}"
    used = model_used(outcome.usage, model_requested)
    facts = [f"model {_code(used, MODEL_MAX) if used else 'n/a'}"]
    requested = (model_requested or "").strip()
    reported = bool((outcome.usage.model or "").strip())
    if used and requested and used != requested:
        facts[0] += f" (asked for {_code(requested, MODEL_MAX)})"
    elif used and not reported:
        facts[0] += " (requested)"  # openclaw did not say which model ran
    facts.append(f"thinking {_code(thinking, 20) if thinking else 'n/a'}")
    if worker:
        facts.append(f"worker {_code(worker, 32)}")
    facts.append(format_duration(outcome.duration_s))
    facts.append(_tokens_text(outcome.usage))
    facts.append("cost " + cost_text(outcome.usage, prices, used))
    return header + "\n" + " · ".join(facts)


def _shown_and_attachable(outcome: Outcome) -> Tuple[str, str, str, str]:
    """What the result block shows (label, text) and what could be attached (file name, text):
    SUMMARY.txt, else RESULT.txt, else the agent's reply; RESULT.txt, else the reply."""
    result = _no_nul(outcome.result_text)
    summary = _no_nul(outcome.summary_text).strip()
    reply = _no_nul(outcome.reply_text)
    if summary:
        block_label, block_text = "📄 **Summary** (SUMMARY.txt)", summary
    elif result.strip():
        block_label, block_text = "📄 **Result** (RESULT.txt)", result.strip()
    elif reply.strip():
        block_label, block_text = "💬 **Agent reply** (no RESULT.txt)", reply.strip()
    else:
        block_label, block_text = "", ""
    if result.strip():
        return block_label, block_text, RESULT_FILE, result
    if reply.strip() and not summary:
        return block_label, block_text, REPLY_FILE, reply
    return block_label, block_text, "", ""


def _failure_lines(reason: str, error: str, outcome: Outcome, caps: Dict[str, int]) -> List[str]:
    """Why a run failed (with its exit code or signal) and what openclaw said, within their caps."""
    why = _inline(reason, caps["reason"])
    lines = [f"**Why:** {why}" + ("" if _says_exit(reason, outcome) else f" · {exit_text(outcome)}")]
    if error:
        shown, _ = _head_block(error, caps["error"])
        lines.append("**openclaw said:**\n" + f"{FENCE}\n{shown}\n{FENCE}")
    return lines


def _trailer_lines(log_tail: str, files: List[str], archive_path: Optional[str], caps: Dict[str, int]) -> List[str]:
    """The log's last lines (a failed run), the files left and where the workspace was kept."""
    lines = []
    if log_tail.strip():
        lines.append(f"**agent-output.log** (last {LOG_LINES} lines):\n"
                     f"{FENCE}\n{_tail_block(log_tail, caps['log'])}\n{FENCE}")
    if files and caps["files"] > 0:
        names = ", ".join(_code(f, FILE_NAME_MAX) for f in files[:caps["files"]])
        more = len(files) - caps["files"]
        lines.append(f"📎 **Files:** {names}" + (f" (+{more} more)" if more > 0 else ""))
    if archive_path:
        lines.append(f"🗂 **Workspace kept:** {_code(archive_path, caps['path'])}")
    return lines


def _attachment_line(name: str, text: str, attached: int, on_disk: int, elsewhere: Optional[str] = None) -> str:
    if elsewhere:   # a task thread's status message: an edit carries no file; the #results post has it
        return f"📦 Full text in **{name}** ({on_disk:,} bytes), attached to the result in <#{elsewhere}>."
    if attached < on_disk:
        return f"📦 **{name}** attached: its first {attached:,} of {on_disk:,} bytes."
    return f"📦 Full text in the attached **{name}** ({len(text):,} characters)."


class _ResultBody:
    """The text of a result post for given caps (``_fit`` tries caps until it fits); whether it attaches
    the whole result, and the upload, in ``state``."""

    def __init__(self, *, header: str, description: str, failed: bool, reason: str, error: str, outcome: Outcome,
                 notes: List[str], block: Tuple[str, str], attach: Tuple[str, str], result: Tuple[bool, Any],
                 trailer: Tuple[str, List[str], Optional[str]], task_id: str, attachment_max_bytes: int,
                 attached_in: Optional[str] = None) -> None:
        self.attached_in = attached_in
        self.header, self.description, self.failed, self.reason, self.error = header, description, failed, reason, error
        self.outcome, self.notes, self.task_id, self.max_bytes = outcome, notes, task_id, attachment_max_bytes
        (self.block_label, self.block_text), (self.attach_name, self.attach_text) = block, attach
        (self.result_truncated, self.result_bytes), self.trailer = result, trailer
        self.state: Dict[str, object] = {}

    def attached_bytes(self) -> Tuple[int, int]:
        state = self.state
        if "upload" not in state:  # encode once, however often build() runs
            state["upload"], state["attached"], state["total"] = _attachment(
                self.attach_name, self.attach_text, self.task_id, self.max_bytes)
        return state["attached"], state["total"]  # type: ignore[return-value]

    def build(self, c: Dict[str, int]) -> str:
        lines = [self.header]
        if self.description:
            lines.append("📝 " + _inline(self.description, c["task"]))
        if self.failed:
            lines.extend(_failure_lines(self.reason, self.error, self.outcome, c))
        lines.extend("⚠️ " + _inline(note, NOTE_MAX) for note in self.notes)
        shown_all = False
        if self.block_text and c["result"] > 0:
            shown, cut = _head_block(self.block_text, c["result"])
            lines.append(f"{self.block_label}\n{FENCE}\n{shown}\n{FENCE}")
            shown_all = not cut and shown == self.block_text
        elif not self.block_text and not self.failed:
            lines.append("⚠️ The agent wrote no RESULT.txt and gave no reply.")
        lines.extend(_trailer_lines(*self.trailer, c))
        # Attach unless the post shows the attachable text exactly and completely.
        shows_it = shown_all and self.attach_text.strip() == self.block_text and not self.result_truncated
        self.state["attach"] = bool(self.attach_text) and not shows_it
        if self.state["attach"]:
            attached, total = self.attached_bytes()
            whole_on_disk = self.result_truncated and self.attach_name == RESULT_FILE and self.result_bytes
            on_disk = self.result_bytes if whole_on_disk else total
            lines.append(_attachment_line(self.attach_name, self.attach_text, attached, on_disk, self.attached_in))
        return "\n".join(lines)


def result_post(*, task_id: str, task_channel_id: Optional[str], results_channel_id: Optional[str],
                guild_id: Optional[str], agent_id: str, outcome: Outcome, task_description: str,
                thinking: Optional[str], model_requested: Optional[str], worker: Optional[str] = None,
                archive_path: Optional[str] = None, prices: Optional[Prices] = None,
                summary_max: int = SUMMARY_MAX, limit: int = MESSAGE_LIMIT,
                attachment_max_bytes: int = ATTACHMENT_MAX_BYTES, attempt: int = 1,
                attached_in: Optional[str] = None) -> Post:
    """The #results post for one finished run. See the module docstring for the safety rules.
    ``attached_in``: the text for a task thread's status message (an edit, no file): the file is named as
    attached to the post in that channel (#results), and the Post has none.

    Header (never cut): status, task id, agent id, and a jump link to the task
    when #results is another channel (else the post replies to the task); then
    model used, thinking, duration, tokens, cost. Body: the task's head, then
    for a failed run the reason with the exit code or signal and openclaw's
    error; SUMMARY.txt, else RESULT.txt's head, else the agent's reply; for a
    failed run the last lines of agent-output.log; the files left; where the
    workspace was kept; a note on the attachment.
    """
    status = outcome.status
    failed = status != OK
    reply_to, link = _placement(task_id, task_channel_id, results_channel_id, guild_id)
    header = _result_header(task_id, agent_id, link, outcome, model_requested, thinking, worker, prices, attempt)
    block_label, block_text, attach_name, attach_text = _shown_and_attachable(outcome)
    result_truncated = bool(getattr(outcome, "result_truncated", False))
    result_bytes = getattr(outcome, "result_bytes", None)

    description = one_line(task_description)
    reason = one_line(outcome.reason) or f"{STATUS_WORDS.get(status, 'ended')}, no reason recorded"
    error = _no_nul(outcome.error_message).strip()
    log_tail = _log_tail(outcome.log_tail) if failed else ""
    files = [one_line(f) for f in outcome.files if one_line(f) and one_line(f) not in SHOWN_FILES]
    notes = [one_line(n) for n in outcome.notes if one_line(n) and one_line(n) != reason][:NOTES_MAX]
    summary_cap = max(0, int(summary_max))

    caps = {"task": TASK_HEAD_MAX, "reason": REASON_MAX, "error": ERROR_MAX,
            "result": summary_cap, "log": LOG_MAX, "files": FILES_MAX, "path": PATH_MAX}
    floors = {"task": 40, "reason": 80, "error": 100, "result": 0, "log": 200, "files": 0, "path": 60}
    body = _ResultBody(header=header, description=description, failed=failed, reason=reason, error=error,
                       outcome=outcome, notes=notes, block=(block_label, block_text),
                       attach=(attach_name, attach_text), result=(result_truncated, result_bytes),
                       trailer=(log_tail, files, archive_path), task_id=task_id,
                       attachment_max_bytes=attachment_max_bytes, attached_in=attached_in)
    build, state = body.build, body.state
    order = (("files", "result", "task", "log", "error", "path", "reason") if failed
             else ("files", "task", "result", "log", "error", "path", "reason"))
    content = _fit(build, caps, floors, order, limit - len(MARK))
    if len(content) > limit - len(MARK):  # not reachable with the caps above; kept as a hard guarantee
        content = header
    content = _marked(content, limit)
    files_out = (state["upload"],) if state.get("attach") and not attached_in else ()
    return Post(content=content, files=files_out, reply_to=reply_to)  # type: ignore[arg-type]


def refusal_post(*, task_id: str, task_channel_id: Optional[str], results_channel_id: Optional[str],
                 guild_id: Optional[str], reason: Union[str, Sequence[str]], task_description: str = "",
                 limit: int = MESSAGE_LIMIT) -> Post:
    """⛔ refused: the task will not run, and why (one bullet per line or per item of ``reason``).

    The reason names what is wrong, e.g. ``unknown model "x": use cheap, ...`` or
    ``user 123 is not allowed ...; add the id to ALLOWED_USER_IDS or ...``.
    """
    reply_to, link = _placement(task_id, task_channel_id, results_channel_id, guild_id)
    header = f"⛔ **REFUSED** · task {_code(task_id, 24)}{link}"
    items = [reason] if isinstance(reason, str) else list(reason)
    lines = [one_line(line) for item in items for line in _no_nul(item).splitlines() if one_line(line)]
    lines = lines or ["no reason recorded"]
    description = one_line(task_description)
    caps = {"task": TASK_HEAD_MAX, "reason": 1500}
    floors = {"task": 0, "reason": 100}

    def build(c: Dict[str, int]) -> str:
        out = [header]
        budget = c["reason"]
        for line in lines:
            if budget <= 0:
                out.append("• …")
                break
            out.append("• " + _inline(line, budget))
            budget -= len(line) + 3
        if description and c["task"] > 0:
            out.append("📝 " + _inline(description, c["task"]))
        return "\n".join(out)

    content = _fit(build, caps, floors, ("task", "reason"), limit - len(MARK))
    if len(content) > limit - len(MARK):
        content = header
    return Post(content=_marked(content, limit), reply_to=reply_to)


def refusals_post(*, refused: Sequence[Tuple[str, str]], author_id: str, task_channel_id: Optional[str],
                  results_channel_id: Optional[str], guild_id: Optional[str], limit: int = MESSAGE_LIMIT) -> Post:
    """One post for the refused messages of one author, ``(task id, reason)`` in order: a bullet per reason
    listing its messages, as many as fit ("… and N more" for the rest), so a flood of refused messages
    costs one post. The first message gets the reply (same channel) or the link."""
    reply_to, link = _placement(refused[0][0], task_channel_id, results_channel_id, guild_id)
    by_reason: Dict[str, List[str]] = {}
    for task_id, reason in refused:
        by_reason.setdefault(one_line(reason) or "no reason recorded", []).append(task_id)
    total = len(refused)
    content = f"{REFUSALS_HEAD}{total} message{'' if total == 1 else 's'} from user {_code(author_id, 24)}{link}"
    room = limit - len(MARK) - len(_more_line(total))
    shown = 0
    for reason, ids in by_reason.items():
        line, listed = "\n• " + _inline(reason, REASON_MAX) + ":", 0
        for task_id in ids:
            longer = line + (", " if listed else " ") + _code(task_id, 24)
            if len(content) + len(longer) > room:
                break
            line, listed = longer, listed + 1
        if listed:
            content, shown = content + line, shown + listed
    if shown < total:
        content += _more_line(total - shown)
    return Post(content=_marked(content, limit), reply_to=reply_to)


def _more_line(n: int) -> str:
    return f"\n• … and {n} more, not listed"


def is_refusals_post_of(content: str, first_id: str) -> bool:
    """Whether ``content`` is a :func:`refusals_post` listing ``first_id`` (the look-up of a grouped
    refusal whose answer was lost: its records keep the first id in their nonce)."""
    head = content.split("\n", 1)[0]
    return head.startswith(REFUSALS_HEAD) and " from user " in head and f"`{first_id}`" in content


def fallback_post(*, task_id: str, agent_id: Optional[str], status: Optional[str], outcome_status: str,
                  why: str, description: str = "", kept_at: Optional[str] = None, attempt: int = 1) -> Post:
    """A short, always valid result post for when the full one could not be formatted or posted:
    status (``status``, else the words for ``outcome_status``), task, agent, why, where the workspace is kept."""
    if status is None:
        status = STATUS_WORDS.get(outcome_status, outcome_status.replace("_", " ") or "ended").upper()
    lines = [f"⚠️ **{escape_inline(status[:20])}** · task `{task_id}`{attempt_text(attempt)} · agent `{agent_id or '-'}`",
             "The full result could not be posted: " + escape_inline(one_line(why))[:600]]
    if description:
        lines.append("📝 " + escape_inline(one_line(description))[:200])
    if kept_at:
        lines.append("🗂 Workspace kept: " + escape_inline(kept_at)[:300])
    return Post(content=_marked("\n".join(lines), MESSAGE_LIMIT))


def posts_whole(result_bytes: Optional[int]) -> bool:
    """Whether a RESULT.txt of this size fits in one post's attachment. A larger one is posted in part,
    so its workspace must be kept (archived) for the rest."""
    return (result_bytes or 0) <= ATTACHMENT_MAX_BYTES


# ----------------------------------------------------------------------
# a task's thread (CLAIM=thread, claim.py)
# ----------------------------------------------------------------------
THREAD_HOST_SEPARATOR = " · "   # "<the task's head> · <host>": the host is what tells the hosts apart


def thread_name(description: str, host: str, task_id: str) -> str:
    """The name a host gives the thread it starts on a task: the task's first words and the host's
    name (HOST_NAME), within Discord's 100 characters. A host whose start was answered by nobody
    tells its own thread from another host's by this name (claim.py)."""
    suffix = THREAD_HOST_SEPARATOR + host
    return _cut(one_line(description) or f"task {task_id}", models.THREAD_NAME_MAX - len(suffix)) + suffix


def thread_host(name: str) -> str:
    """The host named at the end of a task thread's name, or "" when the name has none."""
    return name.rsplit(THREAD_HOST_SEPARATOR, 1)[1] if THREAD_HOST_SEPARATOR in name else ""


def claimed_by(host: str) -> str:
    """How the claim line of ``host`` begins (a recovering pass looks for it before saying it again)."""
    return f"🧵 Claimed by **{escape_inline(host)}**"


def claim_header(*, host: str, model: Optional[str], thinking: str, worker: Optional[str]) -> str:
    """The first line of a task thread's one message: which host runs it, with which model (no marker)."""
    parts = [claimed_by(host), f"model {_code(model or '-', 80)}",
             f"thinking {_code(thinking or '-', 20)}"]
    if worker:
        parts.append(f"worker {_code(worker, 32)}")
    return " · ".join(parts)


def claim_post(*, host: str, model: Optional[str], thinking: str, worker: Optional[str]) -> str:
    """The message posted in a task's thread as it is claimed: the claim line; it is then the task's
    status message (progress.py edits it: running, how it ended and the result)."""
    return _marked(claim_header(host=host, model=model, thinking=thinking, worker=worker) + " · starting now",
                   MESSAGE_LIMIT)


def under_header(header: str, text: str) -> str:
    """A status text (ending with the marker) under the thread's claim line, within the limit."""
    if not header:
        return text
    return _marked(header + "\n" + text[:-len(MARK)] if text.endswith(MARK) else header + "\n" + text,
                   MESSAGE_LIMIT)


# ----------------------------------------------------------------------
# #worker-pool notices
# ----------------------------------------------------------------------
def notice_line_spawned(agent_id: str, task_id: str, description: str, worker: Optional[str] = None) -> str:
    """``🤖 **AGENT SPAWNED** `agent-…` · task `…` · <first 60 characters of the task, one line>``."""
    parts = [f"🤖 **AGENT SPAWNED** {_code(agent_id)}", f"task {_code(task_id, 24)}"]
    if worker:
        parts.append(f"worker {_code(worker, 32)}")
    head = _inline(description, NOTICE_TASK_MAX)
    if head:
        parts.append(head)
    return " · ".join(parts)


notice_lines_spawned = notice_line_spawned  # the name the brief used


def notice_line_finished(agent_id: str, task_id: str, status: str, duration_s: Optional[float]) -> str:
    """``✅ Agent `agent-…` finished task `…`: done in 1m 04s`` (icon and word by status)."""
    icon = STATUS_LABELS.get(status, "❔").split(" ")[0]
    word = STATUS_WORDS.get(status) or escape_inline(one_line(str(status)))[:20] or "ended"
    return (f"{icon} Agent {_code(agent_id)} finished task {_code(task_id, 24)}: "
            f"{word} after {format_duration(duration_s)}")


def _cut_line(line: str, limit: int) -> str:
    """Cut to limit characters without leaving an inline code span or an escape open."""
    if len(line) <= limit:
        return line
    cut = line[:max(0, limit - 2)]
    trailing = len(cut) - len(cut.rstrip("\\"))
    if trailing % 2:
        cut = cut[:-1]
    if len(re.findall(r"(?<!\\)`", cut)) % 2:
        cut += "`"
    return cut + "…"


def batch_notices(lines: Sequence[str], limit: int = MESSAGE_LIMIT) -> List[str]:
    """Pack lines, in order, into as few messages as fit (each ≤ limit with its marker; an over-long
    line is cut)."""
    out: List[str] = []
    limit -= len(MARK)
    current = ""
    for raw in lines:
        line = _cut_line(_no_nul(raw).strip("\n"), limit)
        if not line:
            continue
        if current and len(current) + 1 + len(line) <= limit:
            current += "\n" + line
        else:
            if current:
                out.append(current)
            current = line
    if current:
        out.append(current)
    return [message + MARK for message in out]


# ----------------------------------------------------------------------
# a task's conversation: its status message, the stall notice, a late follow-up (progress.py, conversation.py)
# ----------------------------------------------------------------------
STATUS_LAST_LINE_MAX = 160   # characters of the agent's last log line shown in the status message


def status_queued(position: int, of: int, *, turn: int = 0) -> str:
    """The status message while a task (or its follow-up ``turn``) waits for a free agent."""
    what = f"Follow-up {turn}" if turn else "Task"
    return _marked(f"⏳ {what}: queued (position {position} of {of})", MESSAGE_LIMIT)


def status_running(*, host: str, elapsed_s: float, last_line: str, turn: int = 0, stalled: bool = False) -> str:
    """The status message while the agent runs: where, for how long, the last line it logged."""
    what = f"Follow-up {turn}" if turn else "Task"
    line = f"▶️ {what}: running on **{escape_inline(host)}** for {format_duration(elapsed_s)}"
    if stalled:
        line += " · ⚠️ silent"
    last = one_line(last_line)
    if last:
        line += "\n-# last: " + _inline(last, STATUS_LAST_LINE_MAX)
    return _marked(line, MESSAGE_LIMIT)


def status_final(*, outcome_status: str, duration_s: Optional[float], turn: int = 0) -> str:
    """The status message once the result (or the follow-up's answer) is out."""
    what = f"follow-up {turn}" if turn else "the task"
    label = STATUS_LABELS.get(outcome_status, "❔ **ENDED**")
    return _marked(f"{label} · {what} ran {format_duration(duration_s)}", MESSAGE_LIMIT)


def stall_post(*, silent_s: float, last_line: str) -> str:
    """The notice in a task's thread when its agent has written nothing for STALL_AFTER seconds."""
    text = f"⚠️ The agent has written nothing for {format_duration(silent_s)}; it still runs (its timeout holds)."
    last = one_line(last_line)
    if last:
        text += "\n-# last: " + _inline(last, STATUS_LAST_LINE_MAX)
    return _marked(text, MESSAGE_LIMIT)


def thread_reply(text: str) -> str:
    """A short answer in a task's thread (a command's, a late follow-up's): mentions defused, within the
    limit, the marker line at its end (once)."""
    if text.endswith(MARK):
        return text
    return _marked(neutralize_mentions(_no_nul(text)), MESSAGE_LIMIT)


def followup_refused_post(*, reason: str) -> str:
    """The answer to a follow-up that will not run (its files are over the limits), and why."""
    return _marked(f"⛔ Not run: {escape_inline(one_line(reason))}. Send it again within the limits.", MESSAGE_LIMIT)


def closed_post(*, hours: float) -> str:
    """The answer to a follow-up that came after the task's follow-up window (FOLLOWUP_HOURS)."""
    return _marked(f"🔒 This task is closed: follow-ups are taken for {hours:g} h after its last answer, while "
                   "its workspace is kept (a failed run's is archived at once). Start a new task in #task-queue.",
                   MESSAGE_LIMIT)


HOSTS_SHOWN = 20   # hosts named in an unreachable answer; more are counted


def unreachable_post(*, task_id: str, task_channel_id: Optional[str], results_channel_id: Optional[str],
                     guild_id: Optional[str], missing: Sequence[str], hosts: Sequence[Tuple[str, Sequence[str]]],
                     silent_after_s: float) -> Post:
    """🚫 no host can take this task: the tags it needs that no host seen lately has, and the hosts seen
    with their tags. The task stays in the queue: a host with the tags will still run it."""
    reply_to, link = _placement(task_id, task_channel_id, results_channel_id, guild_id)
    tags = ", ".join(_code(tag, 40) for tag in missing)
    seen = [f"{_code(name, 40)} ({', '.join(_code(t, 40) for t in host_tags) or 'no tags'})"
            for name, host_tags in hosts[:HOSTS_SHOWN]]
    if len(hosts) > HOSTS_SHOWN:
        seen.append(f"{len(hosts) - HOSTS_SHOWN} more")
    lines = [f"🚫 **NO HOST** · task {_code(task_id, 24)}{link}",
             f"• it needs {tags}, and no host seen in the last {format_duration(silent_after_s)} has "
             f"{'it' if len(missing) == 1 else 'them all'}",
             f"• hosts seen: {', '.join(seen) or 'none'}",
             "• it stays in the queue: a host with HOST_TAGS naming "
             f"{'it' if len(missing) == 1 else 'them'} will run it"]
    return Post(content=_marked("\n".join(lines), MESSAGE_LIMIT), reply_to=reply_to)
