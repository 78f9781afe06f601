"""The one answer for a task that no host can take (issue 17): it needs a tag no host seen lately has.

A host passes over the tasks whose ``[needs:...]`` its HOST_TAGS lack (intake.py). Each poll,
``Unreachable.check`` looks at those: a task that has waited HOST_SILENT_AFTER seconds, when no
host seen within HOST_SILENT_AFTER could take it (``order.unreachable_needs``), gets one post in
#results naming the tags and the hosts seen. The task stays pending: no record, no reaction, no
thread, so a host with the tags that comes later still claims it.

One answer, from one host: among the live hosts, the one with the smallest name answers
(``order.answers_here``; every host reaches the same choice from the same presence), and it records
the answer in state.db's meta, posting with the nonce ``u<task id>`` (a retry cannot post twice).
Before posting it looks at the message once more (one GET): a task deleted, or claimed meanwhile
(its thread), gets no answer.

The hosts seen are an input: the caller (orchestrator.py) passes what it knows of the others
(host presence in #worker-pool, issue 13's other half); without it, this host alone.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable, Iterable, Optional, Sequence

from .errors import DiscordError, NotFound, Unauthorized
from .models import Message, snowflake_time
from .order import HostSeen, Order, answers_here, live, unreachable_needs
from .state import POSTED_NOTICE, Store

if TYPE_CHECKING:
    from .config import Settings
    from .discord_api import DiscordClient

log = logging.getLogger("discord_orch")

ANSWERED_KEY = "unreachable:{task}"    # meta: the task's answer was posted (its message id)
NONCE_PREFIX = "u"                     # + the task id: the answer's nonce


class Unreachable:
    """Answers, once, the passed-over tasks that no live host could take."""

    def __init__(self, settings: "Settings", client: "DiscordClient", store: Store, order: Order, *,
                 submit: Callable[[Callable[[], None]], None], guild: Callable[[], str],
                 on_fatal: Callable[[Exception], None]) -> None:
        self.settings = settings
        self.client = client
        self.store = store
        self.order = order
        self._submit = submit          # a job on the results lane
        self._guild = guild
        self._on_fatal = on_fatal
        self._queued: set = set()      # task ids with an answer job on the lane (this pass)

    def check(self, passed: Iterable[Message], read_hosts: Callable[[], Optional[Sequence[HostSeen]]]) -> None:
        """Queue the answer of each passed-over task that has waited long enough and no live host can take.
        ``read_hosts`` (a request) is called only when a task has waited long enough."""
        now = self.order.wall()
        silent = self.settings.host_silent_after_s
        waited = [msg for msg in passed if msg.id not in self._queued and now - snowflake_time(msg.id) >= silent
                  and self.store.get_meta(ANSWERED_KEY.format(task=msg.id)) is None]
        if not waited:
            return
        hosts_seen = read_hosts()
        if hosts_seen is None or not answers_here(self.settings.host_name, hosts_seen, now=now, silent_after=silent):
            return
        for msg in waited:
            missing = unreachable_needs(self.order.routing(msg)[0], hosts_seen, now=now, silent_after=silent)
            if not missing:
                continue
            self._queued.add(msg.id)
            hosts = [(h.name, sorted(h.tags)) for h in sorted(live(hosts_seen, now, silent), key=lambda h: h.name)]
            self._submit(lambda msg=msg, missing=missing, hosts=hosts: self._answer(msg, missing, hosts))

    def _answer(self, msg: Message, missing: Sequence[str], hosts: Sequence) -> None:
        from .report import unreachable_post

        s = self.settings
        try:
            now = self.client.get_message(msg.channel_id, msg.id)
            if now.thread is not None:
                return   # claimed meanwhile (CLAIM=thread): a host could take it after all
            post = unreachable_post(task_id=msg.id, task_channel_id=msg.channel_id, results_channel_id=s.results_channel or msg.channel_id,
                                    guild_id=self._guild(), missing=missing, hosts=hosts,
                                    silent_after_s=s.host_silent_after_s)
            posted = self.client.create_message(s.results_channel or msg.channel_id, post.content, reply_to=post.reply_to,
                                                nonce=f"{NONCE_PREFIX}{msg.id}")
        except Unauthorized as exc:
            self._on_fatal(exc)
            return
        except NotFound:
            return   # deleted meanwhile: nobody to answer
        except DiscordError as exc:
            log.warning("task=%s: the answer that no host can take it was not posted (%s); tried again at the "
                        "next pass", msg.id, exc)
            self._queued.discard(msg.id)
            return
        self.store.note_posted(posted.id, POSTED_NOTICE)
        self.store.set_meta(ANSWERED_KEY.format(task=msg.id), posted.id)
        log.warning("task=%s needs %s, which no host seen has: answered in #results; it stays in the queue",
                    msg.id, ", ".join(missing))
