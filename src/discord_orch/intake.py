"""#task-queue, read forward: the cursor, the chunks, and the messages not decided yet.

A poll reads the messages after the cursor (``GET /channels/{id}/messages?after=``,
oldest first, 100 a page): one request when nothing is new. A long history (a
channel the old scripts used) is read POLL_MAX_MESSAGES at a time, so that the
pass keeps supervising its agents, timeouts included, between chunks.

The cursor (state.db's meta, per channel) only moves over decided messages: it
stops before the oldest pending message that waits for a free agent, so a pass
that ends or dies with a backlog reads it again next time, and the records
(claim.py) make sure nothing is claimed twice.

A message that could not be decided because Discord did not answer (its TASK.txt
or its author's roles, after the client's own bounded retries) is set aside: this
pass goes on without it and ends, the cursor stays before it, and the next pass
tries it again (``--watch``: every RETRY_SET_ASIDE_S). No message is tried again
at the pace of the loop.

Which pending message is decided next, and which this host leaves to others (its
HOST_TAGS lack a task's ``[needs:...]``: *passed over*), is order.py's. A passed-over
message stays undecided here: the cursor stops before it too, so that it stays
claimable by this host if its HOST_TAGS change, and is looked at again by each pass
(the one answer for a task no host can take, unreachable.py). ``--watch`` reads them
again every LOOK_AGAIN_PASSED_S (``reread(passed_too=True)``): once another host has
taken them, their threads show it and the cursor moves on.

Several hosts (CLAIM=thread) read the same queue, and each took the oldest pending
task: they raced for it, and all but one lost the start (a request and a slot of the
thread-start rate limit each, then a reread). A host that has lost a start therefore
knows it is not alone and spreads: for the rest of the pass it takes, among the
SPREAD_WINDOW oldest pending tasks, the one that comes first by a hash of its
HOST_NAME and the task's id (``spread_pick``), so that hosts mostly pick different
tasks without knowing of each other. A host alone never loses a start and keeps
taking the oldest first.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from typing import TYPE_CHECKING, Callable, Dict, List, NamedTuple, Optional, Sequence, Set, Tuple

from .errors import DiscordError, DiscordUnavailable, RateLimitedTooLong, StateError, Unauthorized
from .models import Message
from .order import Order
from .state import Store

if TYPE_CHECKING:
    from .claim import Claims
    from .discord_api import DiscordClient

log = logging.getLogger("discord_orch")

POLL_MAX_MESSAGES = 1000         # one poll reads at most this many (10 pages); more history: poll again at once
RETRY_SET_ASIDE_S = 60.0         # --watch: messages set aside (Discord did not answer) are tried again this often
LOOK_AGAIN_PASSED_S = 60.0       # --watch: messages passed over (needs this host lacks) are read again this often
CURSOR_KEY = "cursor:{channel}"
SPREAD_WINDOW = 8                # after a start lost to another host: pick among this many of the oldest tasks


def spread_pick(host: str, candidates: Sequence[Message]) -> int:
    """The index of the candidate this host takes first when hosts spread over the queue: the one whose
    hash with the host's name is lowest. Stable for a host, unrelated between hosts (blake2b)."""
    def rank(i: int) -> bytes:
        return hashlib.blake2b(f"{host}\n{candidates[i].id}".encode(), digest_size=8).digest()
    return min(range(len(candidates)), key=rank)


class Polled(NamedTuple):
    """What one poll read (oldest first), which of it is pending, and whose authors may run tasks."""

    messages: List[Message]
    pending: List[Message]
    runs_first: Dict[str, bool]


class Intake:
    """The pending messages of #task-queue, read in order from a saved cursor."""

    def __init__(self, client: "DiscordClient", store: Store, claims: "Claims", channel: str, order: Order) -> None:
        self.client = client
        self.store = store
        self.claims = claims
        self.channel = channel
        self.order = order
        self.backlog: List[Message] = []     # pending, not yet decided (no capacity yet)
        self.passed: Dict[str, Message] = {}   # pending, needing a tag this host lacks (by id): left to others
        self._said_passed: Set[str] = set()    # ids whose passing over was logged (once a pass)
        self.set_aside: List[Message] = []   # pending, Discord did not answer when they were decided
        self.more_history = False            # the last poll stopped at POLL_MAX_MESSAGES (or reread): poll again
        self.spread = False                  # a start was lost to another host: spread over the queue
        self._seen_upto: Optional[str] = None
        self.polling = False                 # a poll is out (steps/intake.py): what it brings may go first
        self.deciding: Dict[str, Message] = {}   # taken from the backlog, their decision not back yet (a lane)
        self._runs_first: Dict[str, bool] = {}   # message id → its author may run tasks (looked up by fetch)

    def fetch(self, *, first: bool, agents_running: bool) -> Optional["Polled"]:
        """Read what is new after the cursor and which of it is pending (on a lane: this asks Discord, and who
        may run each task is looked up here too, so the loop never does); None when Discord did not answer
        and the pass goes on (agents to supervise, or not the first poll). Raises otherwise."""
        after = self._seen_upto or self.store.get_meta(CURSOR_KEY.format(channel=self.channel)) or "0"
        try:
            messages = [self.claims.as_posted(m) for m in itertools.islice(
                self.client.iter_messages_after(self.channel, after), POLL_MAX_MESSAGES)]
            pending = self.claims.pending(messages) if messages else []
        except DiscordError as exc:
            transient = isinstance(exc, (DiscordUnavailable, RateLimitedTooLong))
            if isinstance(exc, Unauthorized) or (first and not (transient and agents_running)):
                raise
            # Agents are running (adopted, or recovered and started): keep supervising them, so
            # that their timeouts hold while Discord is away; the poll is tried again later.
            log.warning("poll failed, will retry: %s", exc)
            return None
        return Polled(messages, pending, {m.id: self.claims.runs_first(m) for m in pending})

    def apply(self, polled: "Polled") -> None:
        """Keep what a poll found pending (on the loop thread: no request)."""
        messages, pending = polled.messages, polled.pending
        self.more_history = len(messages) == POLL_MAX_MESSAGES
        self._runs_first.update(polled.runs_first)
        if messages:
            self._seen_upto = messages[-1].id
            aside = {m.id for m in self.set_aside} | set(self.deciding)   # a reread may show them again
            pending = [m for m in pending if m.id not in aside]
            for gone in {m.id for m in messages} & set(self.passed) - {m.id for m in pending}:
                del self.passed[gone]   # another host took it (a reread shows its thread)
            for msg in pending:
                if self.order.runnable(msg):
                    self.backlog.append(msg)
                else:
                    self.pass_over(msg)
            log.debug("poll: %d new message(s), %d pending", len(messages), len(pending))
        self.save_cursor()

    def runs_first(self, msg: Message) -> bool:
        """Whether the message's author may run tasks here, as the poll that read it found (True when it
        could not tell: deciding it will find out)."""
        return self._runs_first.get(msg.id, True)

    def next_task(self) -> Optional[Message]:
        """The next pending message whose author may run tasks, in order.py's order, taken from the backlog
        (None: none waits). Spread (a start was lost: not alone): among the first SPREAD_WINDOW of the top
        priority level, the one this host's hash picks."""
        runs = [msg for msg in self.backlog if self.runs_first(msg)]
        if not runs:
            return None
        if self.spread:
            window = self.order.top(runs, SPREAD_WINDOW)
            chosen = window[spread_pick(self.claims.settings.host_name, window)]
            self.order.served(chosen.author.id)
        else:
            chosen = self.order.pick(runs)
        return self._deciding(chosen)

    def next_refusal(self) -> Optional[Message]:
        """The oldest pending message whose author may not run tasks, taken from the backlog (None: none).
        Refusals are decided behind tasks (with CLAIM=thread each costs a thread's start), so a flood of them
        holds no task back."""
        chosen = next((msg for msg in self.backlog if not self.runs_first(msg)), None)
        return None if chosen is None else self._deciding(chosen)

    def _deciding(self, msg: Message) -> Message:
        self.backlog.remove(msg)
        self.deciding[msg.id] = msg   # still undecided: the cursor stays before it until its answer is back
        return msg

    def decided(self, msg: Message, *, set_aside: bool = False) -> None:
        """A decision is back (``set_aside``: Discord did not answer; the next pass tries it again)."""
        self.deciding.pop(msg.id, None)
        if set_aside:
            self.set_aside.append(msg)
        self.save_cursor()

    def pass_over(self, msg: Message, needs: Optional[Tuple[str, ...]] = None) -> None:
        """Leave a task to the hosts with the tags it needs (``needs``: as its TASK.txt says, claim.py)."""
        if needs is not None:
            self.order.learn(msg, needs)
        if msg.id not in self._said_passed:
            self._said_passed.add(msg.id)
            log.info("task=%s needs %s; this host has %s: left to the hosts that have them", msg.id,
                     ", ".join(self.order.routing(msg)[0]), ", ".join(sorted(self.order.host_tags)) or "no HOST_TAGS")
        self.passed[msg.id] = msg

    def reread(self, *, passed_too: bool = False) -> None:
        """Another host took a task the last poll showed as pending, so the rest of that poll may be taken
        too: forget it and read it again at once, from its oldest message. The poll shows each message's
        thread at no cost; starting the thread of a task already taken costs a request (and a thread-start
        rate-limit slot) per task, which kept a host behind the others for the whole queue; after one, this
        host spreads (the module docstring). ``passed_too``: the messages passed over as well (--watch,
        every LOOK_AGAIN_PASSED_S: no lost start, no spreading)."""
        if not passed_too:
            self.spread = True
        undecided = self.backlog + (list(self.passed.values()) if passed_too else [])
        if not undecided:
            return
        self._seen_upto = str(min(int(m.id) for m in undecided) - 1)
        self.backlog = []
        if passed_too:
            self.passed = {}
        self.more_history = True   # the loop polls again at once

    def hold(self, which: Callable[[Message], bool]) -> List[Message]:
        """Keep the backlog's messages ``which`` picks for later (a budget is reached, budget.py) and return
        them: like messages set aside, they keep the cursor before them, the pass can end, and --watch looks
        again every RETRY_SET_ASIDE_S."""
        held = [m for m in self.backlog if which(m)]
        if held:
            ids = {m.id for m in held}
            self.backlog = [m for m in self.backlog if m.id not in ids]
            self.set_aside.extend(held)
        return held

    def retry_set_aside(self) -> None:
        """Put the messages set aside back in line (``--watch``, which never reaches a next pass)."""
        self.backlog[:0] = self.set_aside
        self.set_aside = []

    def save_cursor(self) -> None:
        """Everything at or below the cursor is decided: the oldest undecided message stops it."""
        if self._seen_upto is None:
            return
        cursor = self._seen_upto
        undecided = self.backlog + self.set_aside + list(self.passed.values()) + list(self.deciding.values())
        if undecided:
            cursor = str(min(int(m.id) for m in undecided) - 1)
        key = CURSOR_KEY.format(channel=self.channel)
        if self.store.get_meta(key) != cursor:
            self.store.set_meta(key, cursor)
