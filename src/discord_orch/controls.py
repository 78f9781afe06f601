"""Stop and retry: what a person asks of a task after submitting it (issue 14).

Two ways to ask, one door
-------------------------
- a reaction on the task message in #task-queue: 🛑 (stop) or 🔁 (retry), looked for here;
- the word ``stop`` or ``retry`` typed in the task's thread: the thread's reader (the
  conversation side) calls :meth:`Controls.request` with the message's author.

A Stop / Retry button on a task's status message (steps/gateway.py) is a third way: the host that
gets the click asks :meth:`Controls.request` when it holds the task, else checks who clicked and
adds the bot's own 🛑 / 🔁 on the task message, which the host that holds it takes like anyone's
(the bot may run tasks), so a click works whichever host's session receives it.

Both end in :meth:`Controls.request`, which takes the request when the person is the task's
author or may run tasks here (``claim.Access``: ALLOWED_USER_IDS, ALLOWED_ROLE_IDS, this
bot, ALLOW_ANYONE). Anyone else's is ignored and logged once. The orchestrator carries the
requests out at its next turn (orchestrator.py ``_carry_out_controls``):

- stop, a task not started yet (in the backlog or claimed and waiting for an agent): it never
  runs; its record goes claimed → finished with outcome ``stopped`` and its result says
  "⏹ STOPPED by <who> before it ran";
- stop, a running task: its agent gets the timeout's sequence (SIGTERM to its group,
  KILL_GRACE, SIGKILL, stragglers and cgroup swept: agent.py ``RunningAgent.stop``); the
  outcome is ``stopped``, the post says "⏹ STOPPED by <who> after 42s" and keeps what the
  agent left (partial RESULT.txt, the log's tail), the task message shows ⏹;
- retry, a task that ended ``failed``, ``timed_out``, ``killed``, ``interrupted`` or ``stopped``,
  its result posted, with an attempt left (MAX_ATTEMPTS, the first run included): the record
  goes cleaned → claimed as attempt 2, 3, ... (state.py ``mark_retry``) and runs again in a fresh
  workspace; each attempt has its own result post (nonce ``r<task>.<attempt>``, reporter.py) with
  "attempt N" in its first line and that attempt's cost. The ledger keeps its one line per task:
  a retry writes none.

What is looked at, and what it costs
------------------------------------
A reaction added to an old message changes nothing the poll (``after=<cursor>``) returns, so
the task messages that can still be stopped or retried are looked at on their own, once per
POLL_INTERVAL: ONE ``GET /channels/{queue}/messages?before=<newest watched id + 1>&limit=100``
returns each of them with its ``reactions`` (emoji, count, me), newest first; a longer span
takes more pages, at most LOOK_PAGES_MAX. Only when a 🛑 or 🔁 count differs from the one seen
last is ``GET .../reactions/{emoji}`` read (one page of 100 users) to learn who. Watched:

- for 🛑: the tasks this pass runs, the claimed ones waiting for an agent, the backlog;
- for 🔁: this host's tasks that ended without success less than RETRY_WINDOW_HOURS ago,
  with an attempt left (state.py ``retryable``, one range read of an index).

With nothing watched, nothing is read: an idle pass stays one request. A pass with anything
watched makes one more request per POLL_INTERVAL (one a pass under cron), plus one per
changed 🛑 / 🔁 count.

A request is honoured once: who was taken (or ignored) is remembered per task and emoji
(state.db's meta), so a 🛑 left on the message does not stop the retry that follows. To ask
again, take the reaction away and add it anew (one look must see it gone), or type the word
in the thread.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import TYPE_CHECKING, Dict, Iterable, List, NamedTuple, Optional, Set, Tuple

from .errors import ConfigError, DiscordError, Unauthorized
from .models import Message, User
from .outcome import RETRYABLE
from .state import CLAIMED, CLAIMING, CLEANED, RUNNING, STARTING, Store

if TYPE_CHECKING:
    from .claim import Access, Identity
    from .config import Settings
    from .discord_api import DiscordClient

log = logging.getLogger("discord_orch")

STOP = "stop"
RETRY = "retry"
KINDS = (STOP, RETRY)
STOP_EMOJI = "🛑"
RETRY_EMOJI = "🔁"
EMOJI_OF = {STOP: STOP_EMOJI, RETRY: RETRY_EMOJI}
LOOK_PAGE = 100          # messages per GET of a look (Discord's most)
LOOK_PAGES_MAX = 3       # a look reads at most this many pages: watched tasks further back are not seen
REACTORS_PAGE = 100      # who reacted: one GET of this many users (more asking at once: the rest next time)
STOPPABLE = (CLAIMING, CLAIMED, STARTING, RUNNING)   # a record in any other status has ended here
SEEN_KEY = "controls:{task}"   # meta: {emoji: {"count": n, "spent": [user ids]}} for the task


class Request(NamedTuple):
    """A person asked to stop or retry a task."""

    kind: str          # STOP or RETRY
    task_id: str
    user: User         # who asked
    when: float        # epoch seconds

    @property
    def who(self) -> str:
        """How posts and the log name the person: their username, else their id."""
        return self.user.username or f"user {self.user.id}"


class Answer(NamedTuple):
    """What :meth:`Controls.request` made of a request: taken, or why not (one line)."""

    taken: bool
    why: str = ""


class Controls:
    """The stop and retry requests of a pass: taken from reactions (``look``) and from the task's thread
    (``request``), carried out by the orchestrator (``take``)."""

    def __init__(self, settings: "Settings", client: "DiscordClient", store: Store, access: "Access",
                 identity: "Identity") -> None:
        self.settings = settings
        self.client = client
        self.store = store
        self.access = access
        self.identity = identity
        self._lock = threading.Lock()    # request() may be called from another thread
        self._requests: Dict[Tuple[str, str], Request] = {}

    # -- the door ------------------------------------------------------------
    def request(self, kind: str, task_id: str, user: User, when: float, *,
                author_id: Optional[str] = None) -> Answer:
        """Ask for a stop or a retry of ``task_id`` as ``user`` at ``when`` (epoch seconds). Taken when the
        user is the task's author (its record's, else ``author_id``: a message not claimed yet) or may
        run tasks here; the orchestrator carries it out at its next turn. A retry is taken only for a
        task that can run again (see the module docstring)."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        rec = self.store.get(task_id)
        author = rec.author_id if rec is not None else author_id
        if not self._may(user, author):
            log.warning("task=%s: %s from %s (%s) ignored: only its author and users allowed to run tasks "
                        "may %s it", task_id, kind, user.username or "?", user.id, kind)
            return Answer(False, f"{user.username or user.id} may not {kind} this task")
        if kind == STOP and rec is not None and rec.status not in STOPPABLE:
            log.info("task=%s: stop asked by %s ignored: it has ended already", task_id, user.username or user.id)
            return Answer(False, "it has ended already")
        if kind == RETRY:
            why = self.why_not_retryable(task_id)
            if why:
                log.info("task=%s: retry asked by %s ignored: %s", task_id, user.username or user.id, why)
                return Answer(False, why)
        with self._lock:
            self._requests.setdefault((kind, task_id), Request(kind, task_id, user, when))
        log.info("task=%s: %s asked by %s (%s)", task_id, kind, user.username or "?", user.id)
        return Answer(True)

    def may(self, user: User, author_id: Optional[str]) -> bool:
        """Whether ``user`` may stop or retry a task by ``author_id`` (its author, or allowed to run tasks)."""
        return self._may(user, author_id)

    def _may(self, user: User, author_id: Optional[str]) -> bool:
        if author_id is not None and user.id == author_id:
            return True
        try:
            return self.access.allows(user)
        except (Unauthorized, ConfigError):
            raise
        except DiscordError as exc:   # roles unknown now: not taken (the person can ask again)
            log.warning("could not check whether %s may stop or retry tasks: %s", user.id, exc)
            return False

    def why_not_retryable(self, task_id: str) -> str:
        """Why the task cannot run again now ("" when it can)."""
        rec = self.store.get(task_id)
        if rec is None or rec.refusal is not None:
            return "it never ran here"
        if rec.outcome and rec.outcome_status not in RETRYABLE:   # also a task open for follow-ups (ok)
            return f"it ended {rec.outcome_status}: nothing to retry"
        if rec.status != CLEANED:
            return "it has not ended yet" if not rec.outcome else "its result is not posted yet"
        if rec.outcome_status not in RETRYABLE:
            return f"it ended {rec.outcome_status or 'without an outcome'}: nothing to retry"
        if rec.attempt >= self.settings.max_attempts:
            return f"it ran {rec.attempt} times already (MAX_ATTEMPTS={self.settings.max_attempts})"
        return ""

    def take(self, kind: str) -> List[Request]:
        """The requests of this kind not carried out yet (they stay until ``done``)."""
        with self._lock:
            return [r for (k, _), r in self._requests.items() if k == kind]

    def pending(self, kind: str, task_id: str) -> Optional[Request]:
        """The request of this kind for this task, if one waits."""
        with self._lock:
            return self._requests.get((kind, task_id))

    def done(self, kind: str, task_id: str) -> None:
        """The request is carried out (or moot): forget it."""
        with self._lock:
            self._requests.pop((kind, task_id), None)

    # -- reactions -----------------------------------------------------------
    def look(self, stoppable: Dict[str, str], retryable: Iterable[str], when: float) -> None:
        """Read the watched task messages (``stoppable``: task id → its author; ``retryable``: ids) and
        take the 🛑 / 🔁 of those allowed to ask. DiscordError when Discord does not answer."""
        watched: Dict[str, List[str]] = {task_id: [STOP] for task_id in stoppable}
        for task_id in retryable:
            watched.setdefault(task_id, []).append(RETRY)
        if not watched:
            return
        oldest = min(int(t) for t in watched)
        before = str(max(int(t) for t in watched) + 1)
        for _page in range(LOOK_PAGES_MAX):
            page = self.client.list_messages(self.settings.task_queue_channel, before=before, limit=LOOK_PAGE)
            for msg in page:
                for kind in watched.get(msg.id, ()):
                    self.check(msg, kind, when, author_id=stoppable.get(msg.id))
            if len(page) < LOOK_PAGE or not page or int(page[-1].id) <= oldest:
                return
            before = page[-1].id
        log.debug("controls: watched tasks more than %d messages back are not looked at this time",
                  LOOK_PAGE * LOOK_PAGES_MAX)

    def check(self, msg: Message, kind: str, when: float, *, author_id: Optional[str] = None) -> None:
        """Take a 🛑 / 🔁 on this message (as a poll or a look returned it) from someone allowed to ask, once.
        Reads who reacted only when the count changed since it was last seen."""
        emoji = EMOJI_OF[kind]
        reaction = msg.reaction(emoji)
        count = 0 if reaction is None else reaction.count
        seen = self._seen(msg.id)
        mine = seen.get(emoji) or {"count": 0, "spent": []}
        if count == mine["count"]:
            return
        users = self.client.reaction_users(msg.channel_id, msg.id, emoji, limit=REACTORS_PAGE) if count > 0 else []
        present = {u.id for u in users}
        spent: Set[str] = set(mine["spent"]) & present   # who took theirs away may ask again
        for user in users:
            if user.id in spent:   # this bot's own: a Stop / Retry button clicked on another host (steps/gateway.py)
                continue
            spent.add(user.id)   # taken or ignored (and logged): once
            if self.pending(kind, msg.id) is None:
                self.request(kind, msg.id, user, when, author_id=author_id or msg.author.id)
        seen[emoji] = {"count": count, "spent": sorted(spent)}
        self.store.set_meta(SEEN_KEY.format(task=msg.id), json.dumps(seen))

    def _seen(self, task_id: str) -> Dict[str, dict]:
        raw = self.store.get_meta(SEEN_KEY.format(task=task_id))
        try:
            value = json.loads(raw) if raw else {}
        except ValueError:
            value = {}
        return value if isinstance(value, dict) else {}
