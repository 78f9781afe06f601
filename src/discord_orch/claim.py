"""Who may submit, which messages are pending, and how a task is claimed.

The claim protocol
------------------
A message in #task-queue is *pending* when all of these hold:

1. it is an ordinary message (type 0 or a reply, 19), not a system message;
2. it carries no ✅ reaction from anyone. This is the seed's rule and it is
   kept on purpose: a task claimed by the original bash scripts, by another
   orchestrator or by a person (who reacted ✅ by hand to say "don't") never
   runs again, so a user can switch from the old scripts safely. The message
   objects returned by ``GET /channels/{id}/messages`` already carry their
   ``reactions`` (emoji, count, me), so this costs no extra request (the old
   scripts spent one GET of the reaction users per message);
3. this home's own records do not know it (``.runtime/state.db`` or the ledger
   ``assigned-tasks.txt``). A claim whose ✅ reaction failed to reach Discord
   is still ours: Discord alone is never the judge (house rule 2).

Claiming is three steps, in this order:

a. INSERT the task's record with status ``claimed`` (SQLite, one
   transaction; the task id is the primary key, so a second INSERT fails);
b. append the id to ``.runtime/assigned-tasks.txt`` (the seed's ledger);
c. PUT the ✅ reaction (done off the main loop, on the task channel's lane).

Races, and why they cannot run a task twice:

- Two passes on one home (cron fires every minute, a pass may last longer):
  only the pass that holds ``.runtime/orchestrate.lock`` polls and claims;
  the others exit at once. Even without the lock, step (a) is atomic: the
  loser's INSERT fails and it skips the task.
- A crash between (a) and (b): the record exists; the next pass appends the
  missing ledger line (``Store.reconcile_ledger``) and recovers the task.
- A crash between (a) and (c): the task is ours with no ✅ on Discord. The
  next pass finds the record (status ``claimed``), runs it and sets the ✅.
  Nobody else can take it meanwhile on this home.
- Several hosts (not supported yet): between one host's check of the
  reactions and its PUT, another host can do the same; Discord's reaction PUT
  is idempotent and does not tell who was first. A multi-host design needs an
  arbiter (e.g. read back the ✅ users after the PUT and let the lowest user
  id win, or a shared database); this module is where it goes.

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
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Optional, Tuple

from .errors import UNKNOWN_MEMBER, ConfigError, Forbidden, NotFound
from .models import TASK_MESSAGE_TYPES, Message, is_snowflake
from .state import CLAIMED, REFUSED, Store

CLAIM_EMOJI = "✅"
ROLE_CACHE_S = 60.0   # how long a member's roles are trusted before they are looked up again
REFUSED_EMOJI = "⛔"

log = logging.getLogger("discord_orch")


def is_pending(msg: Message, known_ids: Iterable[str]) -> bool:
    """The seed's rule (no ✅ from anyone) plus our own records.

    A message whose id is not a snowflake is never pending: the id becomes a
    ledger line and a directory name, and such a message could never run anyway.
    """
    if msg.type not in TASK_MESSAGE_TYPES:
        return False
    if not is_snowflake(msg.id):
        log.error("message id %r from Discord is not a snowflake; ignored", msg.id[:40])
        return False
    claim = msg.reaction(CLAIM_EMOJI)
    if claim is not None and claim.count > 0:
        return False
    return msg.id not in known_ids


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str = ""


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
        author = msg.author.id
        if self.allow_anyone:
            return Verdict(True)
        if author in self.allowed_user_ids:
            return Verdict(True)
        if author == self._bot_user_id():
            return Verdict(True)
        if self.allowed_role_ids and self._member_roles is not None and not msg.author.bot:
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
            if self.allowed_role_ids & set(self._roles_cache[author][0]):
                return Verdict(True)
        return Verdict(False, self._refusal_text(author))

    def _refusal_text(self, author: str) -> str:
        if self.allowed_role_ids:
            how = (f"add {author} to ALLOWED_USER_IDS, or give them one of the roles in ALLOWED_ROLE_IDS, "
                   "in discord-config.env")
        else:
            how = f"add {author} to ALLOWED_USER_IDS (or set ALLOWED_ROLE_IDS) in discord-config.env"
        return f"user {author} is not allowed to run tasks here; {how}"


def claim_task(store: Store, msg: Message, *, description: str, model_alias: str, model: str,
               thinking: str, worker: Optional[str]) -> bool:
    """Steps (a) and (b) of the protocol. False: already known, not ours."""
    if not store.insert(task_id=msg.id, channel_id=msg.channel_id, author_id=msg.author.id, status=CLAIMED,
                        description=description, model_alias=model_alias, model=model, thinking=thinking,
                        worker=worker):
        return False
    store.append_ledger(msg.id)
    return True


def refuse_task(store: Store, msg: Message, *, reason: str, description: str = "") -> bool:
    """Record a refusal (reported once, never run). False: already known."""
    return store.insert(task_id=msg.id, channel_id=msg.channel_id, author_id=msg.author.id, status=REFUSED,
                        description=description, refusal=reason)
