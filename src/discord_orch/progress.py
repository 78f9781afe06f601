"""A task's live status: one message, edited, never a new one; and a stall notice.

The status message of a task is in its thread (CLAIM=thread: the claim line claim.py posted, so the
thread needs no other message; each text goes under that line) or, with CLAIM=reaction, a reply to
the task message in #task-queue. It says: queued (position n of m), running on HOST for 1m20s
with the last line the agent logged, then how it ended: with #results, the result itself
(reporter.py renders it for the thread when the task finishes; an edit carries no file). A follow-up's turn (conversation.py)
edits the same message. Edits go on the task lane, at most every STATUS_EVERY seconds per
message and only when the text changed, so Discord's limits (5 edits per 5 s a channel) are
never near; the last text of a pass is sent when the pass ends (``flush``). Its id is kept in
state.db (meta ``status:<task id>``), so a later pass, a turn or a recovery edits the same one.
Its edit time is meaningful: while an agent runs it is edited every STATUS_EVERY seconds, so a
message older than that says the run is not being watched (what other hosts could read as a
heartbeat, issue 13).

A stall notice (one message in the same place) is posted when the agent has written nothing
(its stdout and stderr logs have not grown) for STALL_AFTER seconds; once per silence.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Tuple

from .errors import DiscordError, NotFound, Unauthorized
from .core.lanes import guarded
from .models import Message
from .outcome import RETRYABLE
from .state import OPEN, POSTED_NOTICE, REPORTED, STATUS_MESSAGE_KEY, Store, TaskRecord

if TYPE_CHECKING:
    from .config import Settings
    from .discord_api import DiscordClient

log = logging.getLogger("discord_orch")

STATUS_KEY = STATUS_MESSAGE_KEY       # meta: the id of a task's status message (claim.py posts it)
CLAIM_BY_THREAD = "thread"
STALL_CHECK_S = 0.5               # how often the agents' logs are looked at (two stats each) for a stall


class Watched(NamedTuple):
    """A running agent as the status needs it: its record, when it started, its two log files."""

    record: TaskRecord
    started_at: float
    logs: Tuple[str, ...]


class _Board:
    """One status message: what it shows, what it should show, when it was last edited."""

    def __init__(self) -> None:
        self.message_id: Optional[str] = None
        self.shown = ""
        self.wanted = ""
        self.edited_at = float("-inf")
        self.job_queued = False
        self.final = False
        self.nowhere = False   # the task has no thread (claimed before CLAIM=thread): nothing to show
        self.header = ""       # CLAIM=thread: the claim line, first line of every text (claim.py posted it)
        self.result: Optional[TaskRecord] = None   # the finished task whose result the message carries
        self.turn = False      # what it shows is a follow-up's turn (the task's result stays under it)
        self.components: Optional[List[Dict[str, Any]]] = None   # its buttons (None: left as they are)


class _Silence:
    """How long a running agent has written nothing."""

    def __init__(self, now: float) -> None:
        self.size = -1
        self.since = now
        self.noticed = False


class StatusBoard:
    """The status messages of this pass's tasks (keyed by the task: a turn shows on its task's message)."""

    def __init__(self, settings: "Settings", client: "DiscordClient", store: Store, *,
                 submit: Callable[[Callable[[], None]], None], on_fatal: Callable[[Exception], None],
                 root_of: Callable[[str], Optional[str]], turn_number: Callable[[TaskRecord], int],
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.client = client
        self.store = store
        self._submit = submit
        self._on_fatal = on_fatal
        self._root_of = root_of
        self._turn_number = turn_number
        self.clock = clock
        self.wall = wall
        self._boards: Dict[str, _Board] = {}
        self._silences: Dict[str, _Silence] = {}
        self._last_look = float("-inf")
        # The result, rendered for the thread (reporter.py): the status message's last edit carries it, so
        # the thread needs no copy of the #results post. None: the last edit says only how the task ended.
        self.render_result: Optional[Callable[[TaskRecord, int], Optional[str]]] = None
        # hosts.Presence.fresh: a host that was silent edits nothing until it knows its tasks are still its
        # own (another host may have taken them over: then ``forget``)
        self.gate: Callable[[], bool] = lambda: True
        self.buttons: Callable[[], bool] = lambda: False   # Stop / Retry: only where a Gateway session answers

    # -- what a status message should say ----------------------------------------
    def queued(self, rec: TaskRecord, position: int, of: int) -> None:
        from .report import status_queued

        board = self._board(rec)
        self._showing(board, rec)
        if board.final or not board.wanted.startswith("▶"):   # a turn waiting does not hide the run before it
            board.final = False
            self._want(board, status_queued(position, of, turn=self._turn_number(rec)))
            self._button(board, "stop", rec)

    def running(self, rec: TaskRecord) -> None:
        from .report import status_running

        board = self._board(rec)
        self._showing(board, rec)
        board.final = False
        self._silences[rec.task_id] = _Silence(self.clock())
        self._want(board, status_running(host=self.settings.host_name, elapsed_s=0.0, last_line="",
                                         turn=self._turn_number(rec)))
        self._button(board, "stop", rec)

    def finished(self, rec: TaskRecord, outcome_status: str, duration_s: Optional[float]) -> None:
        from .report import status_final

        self._silences.pop(rec.task_id, None)
        board = self._board(rec)
        board.final = True
        self._showing(board, rec)
        if not board.turn and board.header and self.render_result is not None:
            board.result = self.store.get(rec.task_id)   # now, while the record keeps the outcome's texts
        self._want(board, status_final(outcome_status=outcome_status, duration_s=duration_s,
                                       turn=self._turn_number(rec)))
        self._button(board, "retry" if outcome_status in RETRYABLE else "", rec)
        if not board.job_queued and not board.nowhere:   # at once: the thread is archived once the result is out
            self._send(self._root_of(rec.task_id) or rec.task_id, board)

    def _showing(self, board: _Board, rec: TaskRecord) -> None:
        """The message now shows ``rec``: a follow-up's turn keeps the task's result under its status; the
        task itself (a retry) starts afresh."""
        board.turn = self._turn_number(rec) > 0
        if not board.turn:
            board.result = None

    def forget(self, task_id: str) -> None:
        """Another host took the task over: its status message is that host's to tell now."""
        self._boards.pop(self._root_of(task_id) or task_id, None)
        self._silences.pop(task_id, None)

    # -- the loop's turn ------------------------------------------------------------
    def tick(self, running: Iterable[Watched]) -> None:
        """Refresh what running agents' messages should say (elapsed time, last line, stall), then send
        the edits that are due."""
        now = self.clock()
        if now - self._last_look >= STALL_CHECK_S:
            self._last_look = now
            for w in running:
                self._look(w, now)
        for task, board in self._boards.items():
            if board.wanted != board.shown and not board.job_queued and not board.nowhere and \
                    ((board.message_id is None and not board.header) or board.final
                     or now - board.edited_at >= self.settings.status_every_s):
                self._send(task, board)

    def flush(self) -> None:
        """The pass ends: send what each message should say now, whatever the last edit's time."""
        for task, board in self._boards.items():
            if board.wanted != board.shown and not board.job_queued and not board.nowhere:
                self._send(task, board)

    def _look(self, w: Watched, now: float) -> None:
        from .report import status_running

        rec = w.record
        silence = self._silences.setdefault(rec.task_id, _Silence(now))
        size = sum(_size(path) for path in w.logs)
        if size != silence.size:
            silence.size, silence.since, silence.noticed = size, now, False
        stalled = now - silence.since >= self.settings.stall_after_s
        board = self._board(rec)
        if now - board.edited_at < self.settings.status_every_s and not (stalled and not silence.noticed):
            return   # not due: no log read
        last = _last_line(w.logs[-1]) if w.logs else ""
        self._want(board, status_running(host=self.settings.host_name, elapsed_s=self.wall() - w.started_at,
                                         last_line=last, turn=self._turn_number(rec), stalled=stalled))
        if stalled and not silence.noticed:
            silence.noticed = True
            self._stall_notice(rec, now - silence.since, last)

    # -- Discord -------------------------------------------------------------------
    def _board(self, rec: TaskRecord) -> _Board:
        task = self._root_of(rec.task_id) or rec.task_id
        board = self._boards.get(task)
        if board is None:
            board = self._boards[task] = _Board()
            board.message_id = self.store.get_meta(STATUS_KEY.format(task=task))
            if self.settings.claim == CLAIM_BY_THREAD:
                board.header = self._header(task)
                board.edited_at = self.clock()   # the claim line was just posted (or is about to be): a first edit
                root = self.store.get(task) if task != rec.task_id else None
                if root is not None and root.status in (REPORTED, OPEN):   # a turn in a later pass: keep its result
                    board.result = root
        return board

    def _header(self, task: str) -> str:
        from .report import claim_header

        root = self.store.get(task)
        if root is None:
            return ""
        return claim_header(host=self.settings.host_name, model=root.model or None, thinking=root.thinking,
                            worker=root.worker)

    def _text(self, board: _Board) -> str:
        """What the message says: the claim line, then the status; at the end, the result under it."""
        from .report import MARK, MESSAGE_LIMIT, under_header

        if board.result is None or self.render_result is None or not board.header:
            return under_header(board.header, board.wanted)
        status = board.wanted[:-len(MARK)] if board.wanted.endswith(MARK) else board.wanted
        head = board.header if board.final and not board.turn else board.header + "\n" + status
        try:
            rendered = self.render_result(board.result, MESSAGE_LIMIT - len(head) - 1)
        except Exception as exc:   # a formatting bug costs the thread its copy, not the status
            log.error("task=%s: its result could not be formatted for its thread (%s: %s)",
                      board.result.task_id, type(exc).__name__, exc)
            rendered = None
        return head + "\n" + rendered if rendered else under_header(board.header, board.wanted)

    @staticmethod
    def _want(board: _Board, text: str) -> None:
        board.wanted = text

    def _button(self, board: _Board, kind: str, rec: TaskRecord) -> None:
        """The message's one button (``kind``: stop, retry, or none); its id names the task (the door is
        controls.Controls.request, through steps/gateway.py)."""
        if not self.buttons():
            return
        task = self._root_of(rec.task_id) or rec.task_id
        label, style = {"stop": ("Stop", 4), "retry": ("Retry", 1)}.get(kind, ("", 0))
        board.components = [{"type": 1, "components": [{"type": 2, "style": style, "label": label,
                                                        "custom_id": f"{kind}:{task}"}]}] if kind else []

    def _where(self, task: str) -> Tuple[str, Optional[str]]:
        """(channel, reply_to): the task's thread, or a reply to the task message (CLAIM=reaction)."""
        if self.settings.claim == CLAIM_BY_THREAD:
            return task, None
        return self.settings.task_queue_channel, task

    def _post(self, task: str, content: str, *, nonce: Optional[str] = None,
              components: Optional[List[Dict[str, Any]]] = None) -> Optional[Message]:
        """Post where the task's status goes; None when its thread does not exist."""
        channel, reply_to = self._where(task)
        if reply_to is None:
            return self.client.post_in_thread(channel, content, nonce=nonce, components=components)
        return self.client.create_message(channel, content, reply_to=reply_to, nonce=nonce, components=components)

    def _send(self, task: str, board: _Board) -> None:
        board.job_queued = True

        def job() -> None:
            text = board.wanted
            channel, reply_to = self._where(task)
            if board.message_id is None:   # the claim line, posted on this lane since the board was made
                board.message_id = self.store.get_meta(STATUS_KEY.format(task=task))
            if not self.gate():   # not sent: asked again by a later tick (or forgotten)
                board.job_queued = False
                return
            try:
                if board.message_id is not None:
                    try:
                        self.client.edit_message(channel, board.message_id, self._text(board),
                                                 components=board.components)
                    except NotFound:
                        board.message_id = None   # deleted by someone: a new one, once
                if board.message_id is None:
                    msg = self._post(task, self._text(board), nonce=f"s{task}", components=board.components)
                    if msg is None:
                        board.nowhere = True
                        return
                    board.message_id = msg.id
                    self.store.note_posted(msg.id, POSTED_NOTICE)
                    self.store.set_meta(STATUS_KEY.format(task=task), msg.id)
            except Unauthorized as exc:
                self._on_fatal(exc)
            except DiscordError as exc:
                log.warning("task=%s: its status message was not updated: %s", task, exc)
            finally:
                board.shown = text   # shown, or given up: tried again only when it changes
                board.edited_at = self.clock()
                board.job_queued = False
        self._submit(guarded(job, self._on_fatal))

    def _stall_notice(self, rec: TaskRecord, silent_s: float, last: str) -> None:
        from .report import stall_post

        task = self._root_of(rec.task_id) or rec.task_id
        log.warning("task=%s: its agent has written nothing for %.0f s", rec.task_id, silent_s)
        content = stall_post(silent_s=silent_s, last_line=last)

        def job() -> None:
            try:
                msg = self._post(task, content)
                if msg is not None:
                    self.store.note_posted(msg.id, POSTED_NOTICE)
            except Unauthorized as exc:
                self._on_fatal(exc)
            except DiscordError as exc:
                log.warning("task=%s: the stall notice was not posted: %s", rec.task_id, exc)
        self._submit(guarded(job, self._on_fatal))


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


LAST_LINE_READ = 4096   # bytes from the end of the agent's log read for its last line


def _last_line(path: str) -> str:
    """The agent's last non-empty log line (bounded read; never through a link)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return ""
    try:
        size = os.fstat(fd).st_size
        os.lseek(fd, max(0, size - LAST_LINE_READ), os.SEEK_SET)
        data = os.read(fd, LAST_LINE_READ)
    except OSError:
        return ""
    finally:
        os.close(fd)
    for line in reversed(data.decode("utf-8", errors="replace").splitlines()):
        line = _strip_colours(line).strip()
        if line:
            return line
    return ""


def _strip_colours(line: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", line)
