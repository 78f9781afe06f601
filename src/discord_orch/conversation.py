"""A task is a conversation: its thread read for follow-ups, each run as the next turn of the same agent.

A message from an allowed user in a task's thread (not a bot's, not a system message such as
the thread's starter) is the next *turn* of that task: the same workspace, the same OpenClaw
state dir and the same ``--session-id``, so the agent sees the whole conversation; its answer is
posted in the thread as a reply to the follow-up (reporter.py). A thread message whose whole
text is ``stop`` or ``retry`` (any case, trimmed) is a command, never a turn: it goes to the one
seam ``on_command(kind, task_id, user, when)`` the orchestrator passes in (a ``stop`` while a
follow-up's turn waits or runs names that turn: the task itself has ended).

Reading the threads (cost)
--------------------------
Only a home with open conversations reads anything more than #task-queue: an idle pass
with none makes its one request (``Store.conversations_watched`` is a local read). With
open ones, a read is one ``GET /guilds/{guild}/threads/active`` (each thread's
``last_message_id``) and, per thread of ours with something newer than what was read
(``seen_upto``, state.db), one ``GET`` of its new messages. A task's thread is started
with the shortest auto-archive (an hour: claim.py) and Discord archives it, at no request;
a message posted in an archived thread unarchives it, so it shows among the active threads
again and is read. Archiving by hand (claim.py, only at the server's cap of 1,000) compares
the thread's ``last_message_id`` in the PATCH's answer with ``seen_upto``: a follow-up typed
meanwhile takes the archive back.

A follow-up may carry files (inputs.py): within INPUT_MAX_FILES and INPUT_MAX_MB they are
remembered with its turn and fetched into ``inputs/turn-<n>/`` when it starts, named in its
TASK.txt; over them, the reason is the answer in the thread and there is no turn. A message
that is only files is a turn too.

Turns
-----
Every turn is its own record (state.py: ``claimed`` → ... → ``reported`` → ``cleaned``, the
follow-up's message id as its id, the ``turns`` table linking it to its task), so it is
claimed once, recovered after a crash like a task, and reported once, with its own line of
cost. Turns of one task never run at once: a turn starts only when its task is ``open``
(its result is out) and every earlier turn is cleaned; they start in the order they came.

The window
----------
A task's workspace is kept (its record ``open``) for FOLLOWUP_HOURS after its last answer;
then it goes the usual way (removed, or left to archive/'s retention) and the record is
``cleaned``. Its thread is watched for as long again: a late follow-up gets a short answer
saying the task is closed. FOLLOWUP_HOURS=0 or CLAIM=reaction (no thread): no follow-ups.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Callable, List, Optional, Tuple

from .errors import DiscordError, Unauthorized
from .inputs import Limits, forget, input_files, limit_problem, remember
from .models import TASK_MESSAGE_TYPES, Message, User, snowflake_time
from .room import NEAR_CAP, make_room
from .state import (CLAIMED, CLEANED, DROPPED, OPEN, POSTED_NOTICE, RUNNING, STARTING, STATUS_MESSAGE_KEY, Store,
                    TaskRecord)

if TYPE_CHECKING:
    from .config import Settings
    from .discord_api import DiscordClient

log = logging.getLogger("discord_orch")

IN_PROGRESS = (CLAIMED, STARTING, RUNNING)   # a turn that a stop typed in its thread is for
COMMANDS = ("stop", "retry")        # a thread message that is exactly one of these is a command, not a turn
CLAIM_BY_THREAD = "thread"          # claim.py's CLAIM=thread (follow-ups need the task's thread)
HOUR_S = 3600.0
FILES_ONLY = "(no text: see the files below)"   # a follow-up that is only files: its TASK.txt's text
STRANGER_KEY = "notice:thread-stranger:{user}"   # meta: this user's thread messages were said to be ignored

#: on_command(kind, task_id, user, when): "stop" or "retry" asked in a task's thread (``when``: epoch seconds);
#: returns what to answer in the thread (a reply to the command), or None to say nothing there
OnCommand = Callable[[str, str, User, float], Optional[str]]


def command_of(msg: Message) -> Optional[str]:
    """``stop`` or ``retry`` when that is the whole text of the message (any case, trimmed), else None."""
    text = msg.content.strip().lower()
    return text if text in COMMANDS else None


class Conversations:
    """The follow-ups of this home's tasks: which threads to read, the turns they hold, when a window closes."""

    def __init__(self, settings: "Settings", client: "DiscordClient", store: Store, *,
                 allows: Callable[[User], bool], guild: Callable[[], str],
                 on_command: OnCommand) -> None:
        self.settings = settings
        self.client = client
        self.store = store
        self._allows = allows
        self._guild = guild
        self._on_command = on_command
        self.turns_waiting = True   # a turn may wait to start (looked at until none does)
        self.to_answer: List[Tuple[str, str]] = []   # (task, follow-up) dropped: answered "closed" by say_closed

    @property
    def enabled(self) -> bool:
        """Follow-ups are taken: FOLLOWUP_HOURS > 0, and each task has a thread (CLAIM=thread)."""
        return self.settings.followup_h > 0 and self.settings.claim == CLAIM_BY_THREAD

    @property
    def window_s(self) -> float:
        return self.settings.followup_h * HOUR_S

    # -- the conversation of a task -----------------------------------------------
    def open(self, rec: TaskRecord) -> None:
        """A claimed task (not a turn): its thread is read for follow-ups from its start on."""
        if self.enabled and rec.refusal is None and self.store.root_of(rec.task_id) is None:
            self.store.open_conversation(rec.task_id)

    def keeps_open(self, rec: TaskRecord) -> bool:
        """Whether a task whose result is out keeps its workspace for follow-ups (record ``open``). One
        whose workspace was archived (a failed run, KEEP_SUCCESS_HOURS) takes none: its config names the
        workspace where it was, and archive/ has its own retention. Its thread is watched all the same,
        so that a follow-up there is answered."""
        if not self.enabled or rec.refusal is not None or not rec.agent_id:
            return False
        row = self.store.conversations_watched(float("inf")).get(rec.task_id)
        if row is None or row["closed_at"] is not None:
            return False
        if rec.archive_path:
            self.store.close_conversation(rec.task_id, time.time())
            return False
        return True

    def answered(self, rec: TaskRecord, when: float) -> None:
        """A result or a turn's answer is out: the task's window runs from ``when``."""
        self.store.note_answered(self.store.root_of(rec.task_id) or rec.task_id, when)

    # -- reading the threads --------------------------------------------------------
    def read(self, now: float) -> int:
        """Read the threads of the conversations watched; record their turns, hand on their commands,
        answer late follow-ups. Returns the turns recorded. DiscordError when Discord does not answer
        (read again next time: nothing was marked read)."""
        if not self.enabled:
            return 0
        watched = self.store.conversations_watched(now - self.window_s)
        if not watched:
            return 0   # the idle pass: no request
        active = self.client.list_active_threads(self._guild())   # GUILD_ID, or looked up once and kept (claim.Identity)
        if len(active.threads) >= NEAR_CAP:   # the server nears Discord's cap: room before a start meets it
            make_room(self.client, self.store, self.settings, self._guild(), active)
        recorded = 0
        for thread in active.threads:
            row = watched.get(thread.id)
            if row is None or thread.parent_id != self.settings.task_queue_channel:
                continue
            if not thread.last_message_id or int(thread.last_message_id) <= int(row["seen_upto"]):
                continue
            if thread.message_count == 1 and thread.last_message_id == self.store.get_meta(
                    STATUS_MESSAGE_KEY.format(task=thread.id)):
                self.store.note_seen(thread.id, thread.last_message_id)   # only its claim line: nothing to read
                continue
            last = row["last_answer_at"]
            closes = float("inf") if row["closed_at"] is None and last is None else \
                float(row["closed_at"] or float(last) + self.window_s)
            for msg in self.client.iter_messages_after(thread.id, row["seen_upto"]):
                recorded += self._take(msg, thread.id, closed=snowflake_time(msg.id) >= closes)
                self.store.note_seen(thread.id, msg.id)
        if recorded:
            self.turns_waiting = True
        return recorded

    def _command_target(self, kind: str, task_id: str) -> str:
        """The record a command is for: a ``stop`` while a follow-up's turn waits or runs is for that turn
        (the task itself has ended: its result is out); anything else is for the task."""
        if kind == "stop":
            for turn in self.store.turns_of(task_id):
                if turn.status in IN_PROGRESS:
                    return turn.task_id
        return task_id

    def _take(self, msg: Message, task_id: str, *, closed: bool) -> int:
        """One thread message: a turn (1), a command, a late follow-up answered, or nothing of ours.
        ``closed``: it was sent after the task's window closed (by its id's time, whenever it is read)."""
        if msg.author.bot or msg.type not in TASK_MESSAGE_TYPES:
            return 0   # ours and other bots' posts; the thread's starter and other system messages
        if not self._allows(msg.author):
            key = STRANGER_KEY.format(user=msg.author.id)
            if self.store.get_meta(key) is None:
                log.warning("task=%s: a message in its thread from user %s, who may not run tasks here, is "
                            "ignored (said once per user)", task_id, msg.author.id)
                self.store.set_meta(key, "logged")
            return 0
        kind = command_of(msg)
        if kind is not None:
            reply = self._on_command(kind, self._command_target(kind, task_id), msg.author, snowflake_time(msg.id))
            if reply:
                self._reply(task_id, msg.id, reply, nonce=f"k{msg.id}")
            return 0
        files = input_files(msg)
        if not msg.content.strip() and not files:
            return 0   # nothing to ask (the content intent missing: Discord then shows neither text nor files)
        root = self.store.get(task_id)
        if closed or root is None or root.status == CLEANED:
            self._say_closed(task_id, msg.id)
            return 0
        too_much = limit_problem(files, Limits.of(self.settings), what="a message")
        if too_much:
            from .report import followup_refused_post

            log.warning("task=%s: follow-up %s not run: %s", task_id, msg.id, too_much)
            self._reply(task_id, msg.id, followup_refused_post(reason=too_much), nonce=f"f{msg.id}")
            return 0
        remember(self.store, msg.id, files)   # before its record: whichever pass starts the turn fetches them
        if not self.store.insert(task_id=msg.id, channel_id=msg.channel_id or task_id, author_id=msg.author.id,
                                 status=CLAIMED, description=msg.content if msg.content.strip() else FILES_ONLY,
                                 model_alias=root.model_alias,
                                 model=root.model, thinking=root.thinking, worker=root.worker, turn_of=task_id):
            return 0
        log.info("follow-up task=%s turn=%s author=%s", task_id, msg.id, msg.author.id)
        return 1

    def say_closed(self) -> None:
        """Answer the follow-ups dropped since the last call (a request each: on a lane)."""
        while self.to_answer:
            self._say_closed(*self.to_answer.pop(0))

    def _say_closed(self, task_id: str, message_id: str) -> None:
        from .report import closed_post

        log.info("task=%s: a follow-up came after its window closed; answered so", task_id)
        self._reply(task_id, message_id, closed_post(hours=self.settings.followup_h), nonce=f"c{message_id}")

    def _reply(self, task_id: str, message_id: str, content: str, *, nonce: str) -> bool:
        """Answer a message in the task's thread (``content`` ends with the marker, or gets it); whether
        it went out."""
        from .report import thread_reply

        try:
            msg = self.client.create_message(task_id, thread_reply(content), reply_to=message_id, nonce=nonce)
        except Unauthorized:
            raise
        except DiscordError as exc:
            log.warning("task=%s: the answer to message %s was not posted: %s", task_id, message_id, exc)
            return False
        self.store.note_posted(msg.id, POSTED_NOTICE)
        return True

    # -- turns ------------------------------------------------------------------------
    def turn_number(self, rec: TaskRecord) -> int:
        """1 for a task's first follow-up, 2 for the next...; 0 for a task."""
        root = self.store.root_of(rec.task_id)
        if root is None:
            return 0
        return 1 + [t.task_id for t in self.store.turns_of(root)].index(rec.task_id)

    def startable(self, busy: Callable[[str], bool]) -> List[TaskRecord]:
        """The next turn of each conversation whose task is ``open`` and whose earlier turns are done,
        oldest first; ``busy(task_id)``: a record this pass already holds."""
        if not self.enabled or not self.turns_waiting:
            return []
        found: List[TaskRecord] = []
        waiting = False
        for task_id, row in self.store.conversations_watched(time.time() - self.window_s).items():
            turns = self.store.turns_of(task_id)
            if row["closed_at"] is not None:
                self._drop_waiting(task_id, turns)
                continue
            pending = [t for t in turns if t.status not in (CLEANED, DROPPED)]
            if not pending:
                continue
            waiting = True
            nxt = pending[0]
            root = self.store.get(task_id)
            if nxt.status == CLAIMED and root is not None and root.status == OPEN and not busy(nxt.task_id):
                found.append(nxt)
        self.turns_waiting = waiting
        return sorted(found, key=lambda r: int(r.task_id))

    def _drop_waiting(self, task_id: str, turns: List[TaskRecord]) -> None:
        """The task closed (a failed run's workspace archived) with follow-ups waiting: each is answered
        so, and its record ends ``dropped``."""
        for turn in turns:
            if turn.status == CLAIMED:
                self.store.mark_dropped(turn.task_id)
                forget(self.store, turn.task_id)   # its files will never be fetched
                self.to_answer.append((task_id, turn.task_id))   # answered on a lane: say_closed

    def may_start(self, rec: TaskRecord) -> bool:
        """A claimed record recovery found: a task, or the next turn of an open task."""
        root_id = self.store.root_of(rec.task_id)
        if root_id is None:
            return True
        self.turns_waiting = True
        root = self.store.get(root_id)
        pending = [t for t in self.store.turns_of(root_id) if t.status not in (CLEANED, DROPPED)]
        return root is not None and root.status == OPEN and bool(pending) and pending[0].task_id == rec.task_id

    def workspace_task(self, rec: TaskRecord) -> TaskRecord:
        """The record whose workspace a run uses: the task's own for a turn, else the record itself."""
        root_id = self.store.root_of(rec.task_id)
        root = self.store.get(root_id) if root_id is not None else None
        return root if root is not None else rec

    # -- the window -----------------------------------------------------------------------
    def expired(self, now: float) -> List[TaskRecord]:
        """Open tasks whose window passed with no turn in progress: closed now (their records are returned
        for the clean-up, which removes the workspace and marks them ``cleaned``)."""
        if not self.enabled:
            return []
        done: List[TaskRecord] = []
        for task_id, row in self.store.conversations_watched(float("inf")).items():
            if row["closed_at"] is not None:
                continue
            rec = self.store.get(task_id)
            if rec is None or rec.status == CLEANED:
                self.store.close_conversation(task_id, now)
                continue
            last = row["last_answer_at"]
            if rec.status != OPEN or last is None or now - float(last) < self.window_s:
                continue
            if any(t.status not in (CLEANED, DROPPED) for t in self.store.turns_of(task_id)):
                continue
            self.store.close_conversation(task_id, now)
            log.info("task=%s: no follow-up for %g h; closed", task_id, self.settings.followup_h)
            done.append(rec)
        return done
