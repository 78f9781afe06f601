"""Who may submit, which messages are pending, and how a task is claimed.

The claim protocol
------------------
A message in #task-queue is *pending* when all of these hold:

1. it is an ordinary message (type 0 or a reply, 19), not a system message;
2. with CLAIM=thread, it has no thread. Once a thread exists, every message
   object a poll returns carries it (``thread``), so a host sees the tasks
   other hosts took in the poll it makes anyway, at no extra request;
3. it carries no ✅ that counts. The seed's rule (a ✅ from anyone) is kept
   for those who may claim: this bot, the bots in CLAIM_BOT_IDS (the old bash
   scripts' bot, other hosts) and the people allowed to run tasks (who react ✅
   by hand to say "don't"), so a user can switch from the old scripts safely.
   Anyone else's ✅ is ignored (logged once per message, state.db's meta), or
   anyone could veto any task. The message objects returned by
   ``GET /channels/{id}/messages`` carry their ``reactions`` (emoji, count, me):
   the reactors are fetched only for a ✅ that is not this bot's;
4. this home's own records do not know it (``.runtime/state.db`` or the ledger
   ``assigned-tasks.txt``). A claim whose ✅ reaction failed to reach Discord
   is still ours: Discord alone is never the judge (house rule 2);
5. it is not something an orchestrator posted (results, refusals, fallbacks,
   notices), whatever channel it is in and whether or not it is a reply (a
   reply falls back to a plain message when its task was deleted): not a
   message id this home recorded as posted (state.db's ``posted``, written with
   the post's record), not a bot's message ending with the marker line
   ``tasks.POST_MARKER`` (every post carries it, so a post whose answer was lost
   before its id was recorded is still known), not a reply by this bot. A
   ``discord-orch submit`` post, from this bot or another, carries no marker
   (submit refuses a task ending with it), so it still runs.

Pending messages are decided in order.py's order (priority, then a turn per author,
then oldest first), those whose authors may run tasks before the others (intake.py):
a refusal costs a thread's start too, so a flood of messages to refuse holds no task
back. A task needing a tag this host lacks (HOST_TAGS) is left pending for others.

Claiming with CLAIM=thread (the default: several hosts on one queue)
--------------------------------------------------------------------
Discord allows one thread per message, and the thread started from a message
has the message's id. Starting it (``POST /channels/{queue}/messages/{task}/threads``)
is therefore a test-and-set that Discord arbitrates: the host whose start
succeeds runs the task. ``Claims.decide`` → ``settle``:

a. INSERT the record as ``claiming``, with the task as parsed, or with its
   refusal (SQLite, one transaction): the attempt is known before the request
   leaves (house rule 2);
b. start the thread, named ``<the task's first words> · <HOST_NAME>``
   (report.thread_name);
c. 201: this host won. The record becomes ``claimed`` (``refused`` for a
   refusal, which this host alone then posts), then the ledger line, the ✅ and
   a first line in the thread (which host, which model) on the task lane;
d. 400 code 160004, "a thread has already been created": another host won, and
   this one records ``elsewhere`` and never runs the task. Unless the answer
   came to the client's retry of a start whose first answer was lost: that
   first start may have been this host's own. Then it looks (``GET
   /channels/{task}``, the thread): the thread is this host's when this bot is
   its ``owner_id`` and the name ends with this HOST_NAME (hosts sharing one
   bot token differ only by the name);
e. 404 code 10008: the message was deleted meanwhile → ``dropped``. 403: the
   bot may not start threads: one configuration line naming the permissions
   (or CLAIM=reaction), and the pass ends. No answer at all (connection errors,
   5xx after the client's retries, a rate limit longer than RATE_LIMIT_MAX_WAIT):
   the record stays ``claiming``, and the next pass (``--watch``: the set-aside
   retry) looks before it starts again: 404 Unknown Channel means nobody
   started the thread; a thread is judged as in (d).

Races, and why each task runs once, on one host, with one result:

- Two hosts start a task's thread at the same moment: Discord makes one; the
  other host's start is answered 160004 and it records ``elsewhere``. Nothing
  runs before a start has succeeded.
- A host's start takes effect but its answer is lost: its retry is answered
  160004 and it looks; the thread carries its bot and its name, so it is its
  own. Another host that tried in between got 160004 without having started
  anything, and left the task.
- A host is killed after (a): before or after its start reached Discord. The
  next pass finds ``claiming`` and looks first: its own thread → claimed, and
  it runs the task; another's → ``elsewhere``; none → it starts one now. A host
  never starts a thread twice without looking in between.
- A host is killed after (c)'s record, before the ✅ or the first line: the
  record says ``claimed``; recovery runs the task and adds the ✅.
- Two passes on one home: only the holder of ``.runtime/orchestrate.lock``
  claims; and the INSERT is atomic besides.
- Two hosts with one bot token and the same HOST_NAME cannot be told apart:
  after a lost answer both would take the thread for their own. HOST_NAME must
  be unique among the hosts on a queue (the default, the machine's hostname,
  usually is).
- A person starts a thread on a task before any host does: no host can start
  it any more, so nobody runs the task; the log says whose thread it is.
- CLAIM=reaction hosts ignore threads: do not mix the two modes on one queue.
- A host goes silent for good (or stopped, asleep, cut off) with tasks open:
  another host takes them over once it has been silent for HOST_SILENT_AFTER,
  arbitrated by one thread per message again, on the silent host's lease in
  #worker-pool; the silent host, back, renews that lease before it posts or
  claims anything and finds it lost (takeover.py has the protocol). Each task
  still has one result: the taker's.
- The ✅ and the claim line go out on the task lane: each is tried in
  CLAIM_MARK_TRIES rounds (the client's retries within each), the line with the
  nonce ``c<task id>`` so that a round after lost answers returns the line the
  first made; what a pass killed meanwhile left unsaid the next pass says.

After the claim, the task's thread holds one message of this host's: the claim
line, which is the task's status message (progress.py edits it, its last edit
carrying the result; with RESULTS_CHANNEL empty the result is a post of its own
there). The thread is started with the shortest auto-archive (60 minutes), so
Discord archives it at no request; a host that lost a start spreads over the
queue (intake.py). A stranger's message (its author may not run tasks) starts no
thread: nothing runs, so there is nothing to arbitrate (``_stranger``).

Claiming with CLAIM=reaction (one host: the seed's rule)
-------------------------------------------------------
a. INSERT the task's record with status ``claimed`` (SQLite, one
   transaction; the task id is the primary key, so a second INSERT fails);
b. append the id to ``.runtime/assigned-tasks.txt`` (the seed's ledger);
c. PUT the ✅ reaction (done off the main loop, on the task channel's lane,
   which this module owns with every other reaction on a task message).

A crash between (a) and (b): the next pass appends the missing ledger line
(``Store.reconcile_ledger``); between (a) and (c): the task is ours with no ✅
on Discord, the next pass runs it and sets the ✅. Between two hosts there is no
arbiter here: Discord's reaction PUT is idempotent and does not tell who was
first, which is why several hosts need CLAIM=thread.

What was checked, and how
-------------------------
Against ../shared/discord-openapi.json (Discord's OpenAPI spec, v10):
``POST /channels/{channel_id}/messages/{message_id}/threads``
(create_thread_from_message): body ``CreateTextThreadWithMessageRequest``,
``name`` 1-100 characters, ``auto_archive_duration`` 60/1440/4320/10080; 201
with a ``ThreadResponse`` (``owner_id``, ``parent_id``, ``thread_metadata``);
``MessageResponse.thread``; ``GET /channels/{id}`` answering a thread. Against
Discord's developer docs (discord-api-docs: channel.mdx "Start Thread from
Message", topics/threads.mdx, opcodes-and-status-codes.mdx, permissions.mdx):
the thread's id is the message's; one thread per message; 160004 "A thread has
already been created for this message"; 160006 at the server's active-thread
cap; Create Public Threads and Send Messages in Threads. Not documented, so
handled defensively: the thread-start rate limit (reported: 429s with long
``retry_after`` after bursts: the record stays ``claiming``, tried later) and
one project's report of a 500 instead of 160004 after a reconnect (any failed
start means "look before deciding", never "nobody has it"). The local Discord
(sim/localdiscord/threads.py) serves these rules and the conformance test checks
its shapes against the spec.

Who may submit
--------------
Safe by default: only messages posted by this orchestrator's own bot (via
``discord-orch submit``) run, unless ``ALLOWED_USER_IDS`` / ``ALLOWED_ROLE_IDS``
name more people, or ``ALLOW_ANYONE=true`` restores the seed's open behaviour.
Roles are checked through ``GET /guilds/{guild}/members/{user}``, cached for
the pass (at most ROLE_CACHE_S, so that ``--watch``, one long pass, notices a
role taken away). ``--watch`` reads the configuration once: the allowed ids
take effect at its next start.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Callable, Dict, Iterable, List, NamedTuple, Optional, Tuple

from .errors import (UNKNOWN_MEMBER, UNKNOWN_MESSAGE, AttachmentTooLarge, ConfigError, DiscordError,
                     Forbidden, NotFound, ThreadAlreadyExists, TooManyActiveThreads, Unauthorized)
from .inputs import Limits, download_fresh, forget, input_files, limit_problem, remember
from .core.lanes import Lane, guarded
from .models import TASK_MESSAGE_TYPES, Attachment, Channel, Message, User, is_snowflake
from .order import can_run
from .outcome import OK, STOPPED, TIMED_OUT
from .state import CLAIMED, CLAIMING, POSTED_NOTICE, REFUSED, STATUS_MESSAGE_KEY, Store, TaskRecord
from .tasks import MAX_TASK_BYTES, TASK_ATTACHMENT, is_orchestrator_post, parse_task, posted_for

if TYPE_CHECKING:
    from .config import Settings
    from .discord_api import DiscordClient

CLAIM_EMOJI = "✅"
CLAIM_BY_THREAD = "thread"      # CLAIM=thread: the host that starts a task's thread runs it
THREAD_ARCHIVE_MINUTES = 60     # the shortest: Discord archives an idle task thread itself, at no request
CLAIM_LINE_LOOK = 10            # a recovering pass looks for its claim line among a thread's first messages
CLAIM_MARK_TRIES = 2            # rounds of the claim's marks (✅, the thread's line) before the pass gives up on them
ROLE_CACHE_S = 60.0   # how long a member's roles are trusted before they are looked up again
REFUSED_EMOJI = "⛔"
RUNNING_EMOJI = "⏳"
PAUSED_EMOJI = "⏸"    # a task waits for a budget (budget.py): it runs, oldest first, once the budget allows
STATUS_EMOJI = {OK: "🏁", TIMED_OUT: "⏱", STOPPED: "⏹"}   # the final reaction by outcome; any other outcome:
FAILED_EMOJI = "❌"
REFUSED_REACTION_PRIORITY = 1                # ⛔ waits behind ✅ and the final reactions (a flood holds none back)
INTENT_NOTICE_KEY = "notice:message-content-intent"   # meta: the task whose refusal explained the intent
STRAY_CLAIM_KEY = "notice:stray-claim:{message}"      # meta: this message's ignored ✅ was logged
STRANGER_KEY = "stranger:{author}"   # meta: "<period start> <messages refused in it>" for one who may not run tasks
STRANGER_PERIOD_S = 3600.0           # one explanation per stranger per period, from one host
STRANGER_MARKS = 10                  # ⛔ on at most this many of a stranger's messages a period (a flood costs no more)
REACTORS_PAGE = 100                                   # users per GET of a reaction's users (Discord's most)
REACTORS_MAX = 1000                                   # read at most this many ✅ users; more: taken as claimed
INTENT_REASON = ("the message arrived empty: the bot cannot read message content. Turn on MESSAGE CONTENT INTENT "
                 "for the bot (Discord Developer Portal → Bot → Privileged Gateway Intents)")

log = logging.getLogger("discord_orch")


def is_pending(msg: Message, known_ids: Iterable[str],
               claim_counts: Callable[[Message], bool] = lambda msg: True) -> bool:
    """Not in our records, and no ✅ that counts (``claim_counts`` judges one that is not ours).

    A message whose id is not a snowflake is never pending: the id becomes a
    ledger line and a directory name, and such a message could never run anyway.
    """
    if msg.type not in TASK_MESSAGE_TYPES:
        return False
    if not is_snowflake(msg.id):
        log.error("message id %r from Discord is not a snowflake; ignored", msg.id[:40])
        return False
    if msg.id in known_ids:
        return False
    claim = msg.reaction(CLAIM_EMOJI)
    return claim is None or claim.count <= 0 or not (claim.me or claim_counts(msg))


def _task_file(msg: Message) -> Optional[Attachment]:
    return next((att for att in msg.attachments if att.filename == TASK_ATTACHMENT), None)


def _too_large(size: Optional[int]) -> str:
    shown = f"{size:,}" if size is not None else f"over {MAX_TASK_BYTES:,}"
    return f"its {TASK_ATTACHMENT} is {shown} bytes; a task may be at most {MAX_TASK_BYTES:,} bytes"


class Verdict(NamedTuple):
    allowed: bool
    reason: str = ""


def _no_such_profile(worker: str, profiles: List[str]) -> str:
    there = f"the profiles here are {', '.join(profiles)}" if profiles else "there are no profiles here"
    return (f"worker profile {worker!r} does not exist: {there} (a profile is workers/<name>/ with an "
            "AGENTS.md or TOOLS.md; names starting with 'agent-' are workspaces, never profiles)")


def _period(kept: Optional[str], now: float) -> Tuple[float, int]:
    """(the start of a stranger's current period, its messages refused in it) from its meta value."""
    try:
        start, count = (kept or "").split()
        if now - float(start) < STRANGER_PERIOD_S:
            return float(start), int(count)
    except ValueError:
        pass
    return now, 0


class Access:
    """Decides whose tasks may run. ``member_roles`` looks roles up (cached here)."""

    def __init__(self, *, bot_user_id: Callable[[], str], allowed_user_ids: Tuple[str, ...] = (),
                 allowed_role_ids: Tuple[str, ...] = (), allow_anyone: bool = False,
                 member_roles: Optional[Callable[[str], Tuple[str, ...]]] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._bot_user_id = bot_user_id
        self.allowed_user_ids = frozenset(allowed_user_ids)
        self.allowed_role_ids = frozenset(allowed_role_ids)
        self.allow_anyone = allow_anyone
        self._member_roles = member_roles
        self._clock = clock
        # user id -> (roles, when looked up). A pass is short; --watch is one long pass, so
        # entries expire: a role taken away stops counting within ROLE_CACHE_S.
        self._roles_cache: Dict[str, Tuple[Tuple[str, ...], float]] = {}

    def check(self, msg: Message) -> Verdict:
        """May this message's author run a task here? The reason when not (it is posted)."""
        if self.allows(msg.author):
            return Verdict(True)
        return Verdict(False, self._refusal_text(msg.author.id))

    def allows(self, user: User) -> bool:
        """May this user run tasks here (ALLOW_ANYONE, ALLOWED_USER_IDS, this bot, ALLOWED_ROLE_IDS)?"""
        author = user.id
        if self.allow_anyone or author in self.allowed_user_ids or author == self._bot_user_id():
            return True
        if self.allowed_role_ids and self._member_roles is not None and not user.bot:
            now = self._clock()
            cached = self._roles_cache.get(author)
            if cached is None or now - cached[1] >= ROLE_CACHE_S:
                try:
                    self._roles_cache[author] = (tuple(self._member_roles(author)), now)
                except NotFound as exc:
                    if exc.code != UNKNOWN_MEMBER:  # Unknown Guild: a wrong GUILD_ID, not a stranger
                        raise ConfigError("GUILD_ID", f"roles cannot be checked: Discord answered {exc.answer()} "
                                          f"on {exc.method} {exc.route}",
                                          "copy the id of the server #task-queue is in: Developer Mode on, "
                                          "right-click the server → Copy Server ID") from None
                    self._roles_cache[author] = ((), now)  # left the server: no roles
                except Forbidden as exc:
                    # Refusing here would be final and wrong: stop the pass, retry the task next time.
                    raise ConfigError("GUILD_ID", f"roles cannot be checked: Discord answered {exc.answer()} "
                                      f"on {exc.method} {exc.route}",
                                      "it must be the id of the server #task-queue is in, with the bot a member"
                                      ) from None
            return bool(self.allowed_role_ids & set(self._roles_cache[author][0]))
        return False

    def _refusal_text(self, author: str) -> str:
        if self.allowed_role_ids:
            how = (f"add {author} to ALLOWED_USER_IDS, or give them one of the roles in ALLOWED_ROLE_IDS, "
                   "in discord-config.env")
        else:
            how = f"add {author} to ALLOWED_USER_IDS (or set ALLOWED_ROLE_IDS) in discord-config.env"
        return f"user {author} is not allowed to run tasks here; {how}"


GUILD_KEY = "guild-of:{channel}"   # meta: the server of #task-queue (GUILD_ID unset), kept across passes


class Identity:
    """Who the bot is and which server #task-queue is in: each looked up once, when first needed (the
    server kept in ``store`` too: a server does not change, and a cron pass should not ask again)."""

    def __init__(self, client: "DiscordClient", task_queue_channel: str, guild_id: Optional[str],
                 store: Optional[Store] = None) -> None:
        self._client = client
        self._task_queue_channel = task_queue_channel
        self._store = store
        self._bot_id: Optional[str] = None
        self._guild_id = guild_id or None

    def bot_user_id(self) -> str:
        """The bot's user id (GET /users/@me, once)."""
        if self._bot_id is None:
            self._bot_id = self._client.me().id
        return self._bot_id

    def guild(self) -> str:
        """GUILD_ID, or the server of #task-queue ("@me" outside one)."""
        if self._guild_id is None:
            key = GUILD_KEY.format(channel=self._task_queue_channel)
            kept = self._store.get_meta(key) if self._store is not None else None
            if kept is None:
                kept = self._client.get_channel(self._task_queue_channel).guild_id or "@me"
                if self._store is not None:
                    self._store.set_meta(key, kept)
            self._guild_id = kept
        return self._guild_id

    def member_roles(self, user_id: str) -> Tuple[str, ...]:
        """A member's role ids in the server."""
        return self._client.get_member(self.guild(), user_id).roles


class Contest(NamedTuple):
    """Who started a task's thread (CLAIM=thread)."""

    won: bool                 # this host did: the task is its to run (or refuse)
    host: str = ""            # the host that did, as its thread's name says ("" when not looked at)
    gone: bool = False        # the task's message was deleted: nobody will


class Decision(NamedTuple):
    """What ``Claims.decide`` did with a pending message."""

    task_id: str
    record: Optional[TaskRecord] = None   # claimed: the record to start
    refused: bool = False                 # refused: its record is ``refused``
    post_refusal: bool = False            # ... and its refusal is still to be posted
    elsewhere: bool = False               # another host started its thread since the poll that showed it
    passed: Tuple[str, ...] = ()          # not claimed: it needs these tags, and this host lacks some (HOST_TAGS)


class Claims:
    """The whole claim, on both sides: which messages are pending, who may submit, the record and
    the ledger line, and every reaction on a task message (✅ ⛔ ⏳ 🏁 ❌ ⏱) on the task lane."""

    def __init__(self, settings: "Settings", client: "DiscordClient", store: Store, *,
                 on_fatal: Callable[[Exception], None], on_done: Callable[[], None]) -> None:
        self.settings = settings
        self.client = client
        self.store = store
        self.identity = Identity(client, settings.task_queue_channel, settings.guild_id, store)
        self.access = Access(bot_user_id=self.identity.bot_user_id, allowed_user_ids=settings.allowed_user_ids,
                             allowed_role_ids=settings.allowed_role_ids, allow_anyone=settings.allow_anyone,
                             member_roles=self.identity.member_roles)
        self._on_fatal = on_fatal
        self._on_done = on_done
        self.lane: Optional[Lane] = None
        # Whether this host posts the explanation to a stranger (one host of several: the claiming step
        # sets it from the hosts seen); alone, it does.
        self.answers_strangers: Callable[[], bool] = lambda: True

    def start(self) -> Lane:
        """Start the task lane (a thread); the pass drains it when it ends."""
        self.lane = Lane("task-queue", on_done=self._on_done)
        return self.lane

    # -- pending ---------------------------------------------------------
    def pending(self, messages: List[Message]) -> List[Message]:
        """The messages of a poll that are tasks nobody has claimed (see the protocol above)."""
        ids = [m.id for m in messages]
        known = self.store.known_ids(ids) | self.store.posted_ids(ids)
        by_thread = self.settings.claim == CLAIM_BY_THREAD
        return [m for m in messages if not (by_thread and m.thread is not None) and not self._own_post(m)
                and is_pending(m, known, self._claim_counts)]

    def runs_first(self, msg: Message) -> bool:
        """Whether the message's author may run tasks here: decided before the messages to refuse.
        True when Discord cannot tell yet (deciding it will find out)."""
        try:
            return self.access.allows(msg.author)
        except DiscordError:
            return True

    def _claim_counts(self, msg: Message) -> bool:
        """Does a ✅ that is not ours claim the task? Only a CLAIM_BOT_IDS bot's or an allowed user's does
        (one GET of the ✅ users a page); anyone else's is ignored, and logged once per message."""
        stray: List[str] = []
        after: Optional[str] = None
        try:
            while len(stray) < REACTORS_MAX:
                users = self.client.reaction_users(msg.channel_id, msg.id, CLAIM_EMOJI, after=after,
                                                   limit=REACTORS_PAGE)
                for user in users:
                    if user.id in self.settings.claim_bot_ids or self.access.allows(user):
                        return True
                    stray.append(user.id)
                if len(users) < REACTORS_PAGE:
                    break
                after = users[-1].id
            else:
                return True   # a flood of ✅: not worth reading on
        except (Unauthorized, ConfigError):
            raise
        except DiscordError as exc:
            # The seed's reading (a ✅ claims) until Discord says whose it is: nothing runs by mistake.
            log.warning("task=%s: could not read who reacted %s (%s); taken as claimed", msg.id, CLAIM_EMOJI, exc)
            return True
        key = STRAY_CLAIM_KEY.format(message=msg.id)
        if stray and self.store.get_meta(key) is None:
            log.warning("task=%s: %s from %s ignored: only this bot, CLAIM_BOT_IDS and users allowed to run "
                        "tasks can claim one", msg.id, CLAIM_EMOJI, ", ".join(stray))
            self.store.set_meta(key, "logged")
        return False

    def as_posted(self, msg: Message) -> Message:
        """A task this bot posted for someone with ``/task`` is that person's: who may run it, whose turn it
        is (order.py), who may stop it follow them, not the bot. Anyone else's message is as it is."""
        who = posted_for(msg.content) if msg.author.bot else None
        if who is None or msg.author.id != self.identity.bot_user_id():
            return msg
        return msg._replace(author=User(id=who[0], username=who[1]))

    def _own_post(self, msg: Message) -> bool:
        """Something an orchestrator posted (RESULTS_CHANNEL may be #task-queue): never a task.
        ``submit`` posts carry no marker and are never replies, so they still run."""
        if not msg.author.bot:
            return False
        if is_orchestrator_post(msg.content):
            return True
        if msg.referenced_message_id is None:
            return False
        try:
            return msg.author.id == self.identity.bot_user_id()
        except DiscordError:
            return True  # cannot tell who we are: a bot's reply is not worth the risk of a loop

    # -- decide: claim or refuse ----------------------------------------------
    def decide(self, msg: Message) -> Decision:
        """Claim a pending message (record, ledger, ✅) or refuse it (record, ⛔) with the reason; drop it
        when it was deleted before its TASK.txt was read (nobody to answer). With CLAIM=thread, either
        happens only on the host that starts the task's thread (see the protocol above).

        DiscordError when Discord cannot tell (an outage): it stays pending."""
        rec = self.store.get(msg.id)
        if rec is not None and rec.status == CLAIMING:   # a start Discord did not answer, tried again
            return self.settle(rec, attempted=True)
        verdict = self.access.check(msg)
        if not verdict.allowed:
            return self._stranger(msg, verdict.reason)
        if not msg.content.strip() and not msg.attachments and not msg.author.bot:
            return self._refuse(msg, INTENT_REASON)
        try:
            attachment_text, unreadable = self._task_attachment(msg)
        except NotFound as exc:
            if exc.code != UNKNOWN_MESSAGE:
                raise
            log.warning("task=%s: its message was deleted before its TASK.txt was read; dropped", msg.id)
            return Decision(msg.id)
        if unreadable:
            return self._refuse(msg, unreadable)
        parsed = parse_task(msg.content, self.settings.aliases, attachment_text=attachment_text)
        if parsed.problems:
            return self._refuse(msg, "; ".join(parsed.problems), description=parsed.description)
        if not can_run(parsed.needs, self.settings.host_tags):   # named in its TASK.txt (order.py read the rest)
            return Decision(msg.id, passed=parsed.needs)
        if parsed.worker is not None:
            from .workspace import is_profile, worker_profiles   # only when a task names one: never on an idle pass

            if not is_profile(self.settings.workers_dir, parsed.worker):
                return self._refuse(msg, _no_such_profile(parsed.worker, list(worker_profiles(self.settings.workers_dir))),
                                    description=parsed.description)
        files = input_files(msg)   # checked by what Discord says of them; fetched once the task starts
        too_much = limit_problem(files, Limits.of(self.settings))
        if too_much:
            return self._refuse(msg, too_much, description=parsed.description)
        remember(self.store, msg.id, files)
        return self._record(msg, description=parsed.description, model_alias=parsed.model_alias,
                            model=parsed.model or "", thinking=parsed.thinking, worker=parsed.worker)

    def _refuse(self, msg: Message, reason: str, *, description: str = "") -> Decision:
        return self._record(msg, refusal=reason, description=description)

    def _stranger(self, msg: Message, reason: str) -> Decision:
        """A message from someone who may not run tasks: refused here with no thread (nothing runs, so there
        is nothing to arbitrate: every host may refuse it, and ⛔ is idempotent). Per author and
        STRANGER_PERIOD_S: ⛔ on the first STRANGER_MARKS messages, one explanation, posted by the host
        ``answers_strangers`` names (the live host with the smallest name, as for NO HOST); the rest are
        recorded, logged and cost no request. A message another host marked ⛔ first costs none either."""
        if not self.store.insert(task_id=msg.id, channel_id=msg.channel_id, author_id=msg.author.id, status=REFUSED,
                                 refusal=reason):
            return Decision(msg.id)
        key = STRANGER_KEY.format(author=msg.author.id)
        now = time.time()
        start, count = _period(self.store.get_meta(key), now)
        self.store.set_meta(key, f"{start:.0f} {count + 1}")
        # A ⛔ already there (as the poll saw it): another host refused it first, and explains it if anyone
        # does; with no presence to agree by, that is how hosts agree (two at the very same moment may both
        # explain: hosts sharing a bot token then post one, by the post's nonce).
        marked = msg.reaction(REFUSED_EMOJI) is not None
        if count < STRANGER_MARKS and not marked:
            self._submit(lambda: self._react(msg.id, REFUSED_EMOJI), priority=REFUSED_REACTION_PRIORITY)
        told = count > 0 or marked or not self.answers_strangers()
        (log.info if told else log.warning)("refused task=%s author=%s: %s%s", msg.id, msg.author.id, reason,
                                            " (explained once this hour)" if told else "")
        if told:
            self.store.mark_reported(msg.id, message_id=None)   # no post: explained already, or by another host
        return Decision(msg.id, refused=True, post_refusal=not told)

    def _record(self, msg: Message, *, refusal: Optional[str] = None, **task: Optional[str]) -> Decision:
        """Record the task (claimed, or refused with ``refusal``) and carry that out; with CLAIM=thread it
        is recorded ``claiming`` and carried out only once this host has won the task's thread."""
        by_thread = self.settings.claim == CLAIM_BY_THREAD
        status = CLAIMING if by_thread else (CLAIMED if refusal is None else REFUSED)
        if not self.store.insert(task_id=msg.id, channel_id=msg.channel_id, author_id=msg.author.id, status=status,
                                 refusal=refusal, **task):
            if refusal is None:
                log.info("task=%s already claimed; skipped", msg.id)
            return Decision(msg.id)
        rec: TaskRecord = self.store.get(msg.id)   # type: ignore[assignment]
        if by_thread:
            return self.settle(rec, attempted=False)
        return self._claimed(rec) if refusal is None else self._refused(rec)

    def settle(self, rec: TaskRecord, *, attempted: bool) -> Decision:
        """CLAIM=thread: start the thread of a ``claiming`` task, or find out who did; then claim or refuse
        it here (this host won), or leave it to the host that has it. ``attempted``: an earlier start's
        fate is unknown (a pass killed meanwhile, an answer lost): look before starting again.

        DiscordError when Discord cannot tell: the record stays ``claiming``, tried again later."""
        contest = self._contest(rec, attempted=attempted)
        if not contest.won:
            forget(self.store, rec.task_id)   # its files are not this host's to fetch
        if contest.gone:
            self.store.mark_dropped(rec.task_id)
            log.warning("task=%s: its message was deleted before it was claimed; dropped", rec.task_id)
            return Decision(rec.task_id)
        if not contest.won:
            self.store.mark_elsewhere(rec.task_id, host=contest.host)
            log.info("task=%s: %s started its thread first; not run here", rec.task_id,
                     contest.host or "another host")
            return Decision(rec.task_id, elsewhere=True)
        if self.store.mark_won(rec.task_id) == REFUSED:
            return self._refused(self.store.get(rec.task_id))   # type: ignore[arg-type]
        return self._claimed(self.store.get(rec.task_id))   # type: ignore[arg-type]

    def _contest(self, rec: TaskRecord, *, attempted: bool) -> "Contest":
        """Start the task's thread: Discord's one-thread-per-message rule makes exactly one host win."""
        from .report import thread_name   # only when there is a task to claim: never on an idle pass

        if attempted:
            seen = self.client.find_thread(rec.task_id)
            if seen is not None:
                return self._judge(seen)
        name = thread_name(rec.description, self.settings.host_name, rec.task_id)
        try:
            try:
                self.client.start_thread(self.settings.task_queue_channel, rec.task_id, name,
                                         auto_archive_duration=THREAD_ARCHIVE_MINUTES)
            except TooManyActiveThreads:
                if not self._make_room():
                    raise
                log.info("task=%s: threads archived to make room under the server's cap; its thread started "
                         "again", rec.task_id)
                self.client.start_thread(self.settings.task_queue_channel, rec.task_id, name,
                                         auto_archive_duration=THREAD_ARCHIVE_MINUTES)
            return Contest(won=True, host=self.settings.host_name)
        except ThreadAlreadyExists as exc:
            if not exc.after_retry:
                return Contest(won=False)   # a thread this host never tried to start before: another's
            seen = self.client.find_thread(rec.task_id)   # this host's own start may have landed, unanswered
            if seen is None:
                raise
            return self._judge(seen)
        except NotFound as exc:
            if exc.code != UNKNOWN_MESSAGE:
                raise
            return Contest(won=False, gone=True)
        except TooManyActiveThreads:
            log.error("task=%s waits: the server has Discord's most active threads (1,000) and none of them is "
                      "a task this host finished; archive some (Discord archives each task's thread an hour "
                      "after its last message)", rec.task_id)
            raise
        except Forbidden as exc:
            raise ConfigError("CLAIM", f"the bot may not start threads in #task-queue: Discord answered "
                              f"{exc.answer()}", "give the bot Create Public Threads and Send Messages in Threads "
                              "there, or set CLAIM=reaction (one host only)") from None

    def _judge(self, thread: Channel) -> "Contest":
        """Whose is this task's thread? This host's when this bot started it under this host's name
        (hosts sharing one bot token differ only by name)."""
        from .report import thread_host

        host = thread_host(thread.name)
        ours = thread.owner_id == self.identity.bot_user_id() and host == self.settings.host_name
        return Contest(won=ours, host=host or f"user {thread.owner_id}")

    def _claimed(self, rec: TaskRecord) -> Decision:
        """The task is this host's: the ledger line, the log line, ✅ and (CLAIM=thread) a first line in
        its thread."""
        self.store.append_ledger(rec.task_id)
        log.info("claimed task=%s model=%s thinking=%s%s", rec.task_id, rec.model or None, rec.thinking,
                 f" worker={rec.worker}" if rec.worker else "")
        self.mark_claimed(rec)
        return Decision(rec.task_id, record=rec)

    def _refused(self, rec: TaskRecord) -> Decision:
        """The task is refused here (its record holds the reason): the log line, ⛔ and its post queued;
        the missing-intent explanation is said once."""
        reason = rec.refusal or ""
        intent = reason == INTENT_REASON
        said = self.store.get_meta(INTENT_NOTICE_KEY) if intent else None
        if said:  # the explanation is said once, in the log and in #results, not once per message
            log.info("refused task=%s author=%s: arrived empty too (see task %s)", rec.task_id, rec.author_id, said)
        else:
            log.warning("refused task=%s author=%s: %s", rec.task_id, rec.author_id, reason)
        self._submit(lambda: self._react(rec.task_id, REFUSED_EMOJI), priority=REFUSED_REACTION_PRIORITY)
        if intent:
            if said:
                self.store.mark_reported(rec.task_id, message_id=None)   # said once already: no other post
                return Decision(rec.task_id, refused=True)
            self.store.set_meta(INTENT_NOTICE_KEY, rec.task_id)
        return Decision(rec.task_id, refused=True, post_refusal=True)

    def _say_claimed(self, rec: TaskRecord, *, look_first: bool) -> bool:
        """The first line in the task's thread; whether it is there now. ``look_first``: a pass that died
        may have posted it without recording so: look at the thread's first messages before posting."""
        from .report import claim_post, claimed_by

        try:
            if look_first:
                thread = self.client.find_thread(rec.task_id)
                if thread is None or not self._judge(thread).won:
                    return True   # no thread of this host's (claimed before CLAIM=thread): nothing to say there
                head = claimed_by(self.settings.host_name)
                firsts = self.client.list_messages(rec.task_id, after=rec.task_id, limit=CLAIM_LINE_LOOK)
                mine = [m for m in firsts if m.author.id == self.identity.bot_user_id() and m.content.startswith(head)]
                if mine:
                    self._is_status(rec.task_id, mine[0].id)
                    return True
            posted = self.client.create_message(rec.task_id, claim_post(
                host=self.settings.host_name, model=rec.model or None, thinking=rec.thinking, worker=rec.worker),
                nonce=f"c{rec.task_id}")   # one nonce for every try: a try whose answer was lost is not doubled
        except Unauthorized as exc:
            self._on_fatal(exc)
            return False
        except DiscordError as exc:
            log.warning("task=%s: could not post in its thread: %s", rec.task_id, exc)
            return False
        self.store.note_posted(posted.id, POSTED_NOTICE)
        self._is_status(rec.task_id, posted.id)
        return True

    def _is_status(self, task_id: str, message_id: str) -> None:
        """The claim line is the task's status message (progress.py edits it; the thread needs no other),
        unless the status board posted one first (its id is kept: one message either way)."""
        key = STATUS_MESSAGE_KEY.format(task=task_id)
        if self.store.get_meta(key) is None:
            self.store.set_meta(key, message_id)

    def _task_attachment(self, msg: Message) -> Tuple[Optional[str], str]:
        """(the text of the message's TASK.txt, or None without one; why it cannot be read, or "").

        NotFound (Unknown Message) when the message is gone."""
        att = _task_file(msg)
        if att is None:
            return None, ""
        if att.size > MAX_TASK_BYTES:
            return None, _too_large(att.size)
        try:
            data, unreadable = self._download(msg, att)
        except AttachmentTooLarge as exc:   # the message understated its size
            return None, _too_large(exc.size)
        from .workspace import decode_text   # not on an idle pass: only for a TASK.txt

        return (None if data is None else decode_text(data)), unreadable

    task_attachment = _task_attachment   # takeover.py reads a taken task's TASK.txt the same way

    def _download(self, msg: Message, att: Attachment) -> Tuple[Optional[bytes], str]:
        """TASK.txt's bytes, or why there are none (an expired CDN link is fetched again, once: inputs.py)."""
        return download_fresh(self.client, msg.channel_id, msg.id, att, max_bytes=MAX_TASK_BYTES)

    # -- reactions on the task message ------------------------------------------
    def mark_claimed(self, rec: TaskRecord, *, recovered: bool = False) -> None:
        """The claim's marks, on the task lane: the ✅ (the seed's claim marker) and, with CLAIM=thread, the
        first line in its thread; recorded (``claim_reacted``) once Discord has both, so that what a pass
        killed meanwhile left unsaid is said by the next (recovery: ``recovered``)."""
        by_thread = self.settings.claim == CLAIM_BY_THREAD

        def job() -> None:
            # Each call has the client's retries already; a round more covers failures past them (an answer
            # lost four times), else a task that finished in this pass kept no ✅ or line for good (recovery
            # re-marks only tasks still claimed or running). The line's nonce makes a repeat return it.
            reacted = said = False
            for _round in range(CLAIM_MARK_TRIES):
                reacted = reacted or self._react(rec.task_id, CLAIM_EMOJI)
                said = said or not by_thread or self._say_claimed(rec, look_first=recovered)
                if reacted and said:
                    self.store.note_claim_reacted(rec.task_id)
                    return
            log.warning("task=%s: its claim marks failed %d times; the next pass tries again while it runs",
                        rec.task_id, CLAIM_MARK_TRIES)
        self._submit(job)

    def react_paused(self, task_id: str, *, remove: bool = False) -> None:
        """⏸ on a task that waits for a budget; taken away once it is claimed."""
        self._submit(lambda: self._react(task_id, PAUSED_EMOJI, remove=remove))

    def react_running(self, task_id: str) -> None:
        """⏳ while the agent runs (STATUS_REACTIONS=full)."""
        if self.settings.status_reactions == "full":
            self._submit(lambda: self._react(task_id, RUNNING_EMOJI))

    def react_final(self, rec: TaskRecord) -> None:
        """🏁 / ❌ / ⏱ once the result is posted (and ⏳ taken away), as STATUS_REACTIONS says. The task's
        thread is left for Discord to archive (THREAD_ARCHIVE_MINUTES after its last message: no request);
        ``_make_room`` archives by hand only at the server's cap."""
        mode = self.settings.status_reactions
        if mode == "off" or rec.refusal is not None:
            return
        emoji = STATUS_EMOJI.get(rec.outcome_status, FAILED_EMOJI)

        def job() -> None:
            if self._react(rec.task_id, emoji):
                self.store.note_status_reacted(rec.task_id, emoji)
            if mode == "full":
                self._react(rec.task_id, RUNNING_EMOJI, remove=True)
        self._submit(job)

    def react_retry(self, rec: TaskRecord) -> None:
        """A retry starts (controls.py): the last attempt's final reaction is taken away, so the task
        message shows how the newest attempt goes (⏳, then its own final reaction)."""
        if rec.status_reacted:
            emoji = rec.status_reacted
            self._submit(lambda: self._react(rec.task_id, emoji, remove=True))

    def _make_room(self) -> bool:
        """A start met the server's cap of active threads: archive this host's finished threads (room.py)."""
        from .room import make_room   # only at the cap

        return make_room(self.client, self.store, self.settings, self.identity.guild())

    def _submit(self, job: Callable[[], None], priority: int = 0) -> None:
        assert self.lane is not None, "Claims.start() first"
        self.lane.submit(guarded(job, self._on_fatal), priority=priority)

    def _react(self, task_id: str, emoji: str, *, remove: bool = False) -> bool:
        channel = self.settings.task_queue_channel
        try:
            if remove:
                self.client.remove_own_reaction(channel, task_id, emoji)
            else:
                self.client.add_reaction(channel, task_id, emoji)
            return True
        except Unauthorized as exc:
            self._on_fatal(exc)
        except DiscordError as exc:
            log.warning("task=%s: could not %s %s reaction: %s", task_id, "remove" if remove else "add", emoji, exc)
        return False
