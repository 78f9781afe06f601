"""Intake: #task-queue read forward (intake.py), on the reads lane, never on the loop thread.

A poll is due at a pass's start, while a long history is being read (a chunk at a time), and
every POLL_INTERVAL while an agent is free; also once more at the end of a pass whose tasks
ran, for tasks that came in meanwhile. Its answer (what is pending, and whose authors may run
tasks, looked up on the lane) is kept by the loop (``Intake.apply``); event ``polled``.

A passed-over task (needs this host lacks) that has waited HOST_SILENT_AFTER with no live host
able to take it gets one answer in #results (unreachable.py): the hosts seen are read on the
reads lane too. ``--watch`` puts messages set aside back in line every RETRY_SET_ASIDE_S and
reads the passed-over ones again every LOOK_AGAIN_PASSED_S. Event ``poll_now`` (the Gateway saw a
message in #task-queue) makes a poll due at once; filter ``poll_interval`` may stretch the interval.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, List, Optional

from ..core.lanes import guarded
from ..core.step import Context, Step
from ..errors import DiscordError
from ..intake import LOOK_AGAIN_PASSED_S, RETRY_SET_ASIDE_S
from ..models import Message

if TYPE_CHECKING:
    from ..intake import Polled
    from ..order import HostSeen

log = logging.getLogger("discord_orch")

# Polls asked for by events (poll_now): at once, 3 in a row at most, then 2 a second (a flood of messages).
POLL_NOW_BURST = 3.0
POLL_NOW_RATE = 2.0


class IntakeStep(Step):
    name = "intake"

    def bind(self, ctx: Context) -> None:
        self.ctx = ctx
        self.intake = ctx.parts.intake
        self._first = True
        self.intake.polling = False   # a poll is on the reads lane (claiming waits: a task posted since may go first)
        self._last_poll = float("-inf")
        self._looked_at = -1    # tasks claimed when the pass took its last look (a pass ends: one look)
        self._last_set_aside = self._last_passed_look = ctx.clock()
        self._unreachable = None
        self._now = False       # a poll asked for at once (event poll_now: the Gateway saw a task posted)
        self._tokens, self._tokens_at = POLL_NOW_BURST, ctx.clock()
        ctx.on("passed", self._check_unreachable)
        ctx.on("poll_now", self._poll_now)

    def turn(self, now: float) -> None:
        if self.ctx.stopping:
            return
        if not self.intake.polling and self.ctx.board.capacity() > 0 and self._due(now):
            self._poll(now)
        if not self.ctx.watch:
            return
        intake = self.intake
        if intake.set_aside and now - self._last_set_aside >= RETRY_SET_ASIDE_S:
            self._last_set_aside = now
            intake.retry_set_aside()
        if intake.passed and now - self._last_passed_look >= LOOK_AGAIN_PASSED_S:
            self._last_passed_look = now
            intake.reread(passed_too=True)   # taken by another host meanwhile? the cursor moves on

    def _due(self, now: float) -> bool:
        if self.intake.more_history and (self.intake.deciding or self._takeable()):
            return False   # a long history: what one chunk holds is claimed before the next is read
        interval = self.ctx.apply("poll_interval", self.ctx.settings.poll_interval)
        return self._first or self._asked(now) or self.intake.more_history or now - self._last_poll >= interval

    def _asked(self, now: float) -> bool:
        """A poll asked for by an event, within the bucket that bounds a flood of them."""
        self._tokens = min(POLL_NOW_BURST, self._tokens + (now - self._tokens_at) * POLL_NOW_RATE)
        self._tokens_at = now
        return self._now and self._tokens >= 1

    def _poll_now(self) -> None:
        self._now = True   # a poll in flight: one more once it is back (the message may be past its read)

    def _takeable(self) -> bool:
        return bool(self.intake.backlog) and self.ctx.board.capacity() > 0 and self.ctx.allows("claim")

    def _last_look_owed(self) -> bool:
        """Tasks ran since the last look and the last poll is POLL_INTERVAL old: one more look before the end."""
        claimed = self.ctx.stats.claimed
        return bool(claimed) and claimed != self._looked_at and \
            self.ctx.clock() - self._last_poll >= self.ctx.settings.poll_interval

    def busy(self) -> bool:
        if self.ctx.stopping:
            return False
        backlog = bool(self.intake.backlog) and self.ctx.allows("claim")   # a host that may not claim: next pass
        return self.intake.polling or self.intake.more_history or backlog or self._last_look_owed()

    def _poll(self, now: float) -> None:
        first, self._first = self._first, False
        if self._now:
            self._now, self._tokens = False, self._tokens - 1
        self.intake.polling = True
        self._last_poll = now
        self._looked_at = self.ctx.stats.claimed
        running = bool(self.ctx.board.live)
        self.ctx.submit("reads", lambda: self.intake.fetch(first=first, agents_running=running), self._polled)

    def _polled(self, polled: Optional["Polled"]) -> None:
        self.intake.polling = False
        self._last_poll = self.ctx.clock()
        if polled is not None:
            self.intake.apply(polled)
            self.ctx.stats.polled += 1
            self.ctx.emit("waiting")
            if self.intake.passed:
                self._check_unreachable(list(self.intake.passed.values()))
        self.ctx.emit("polled")

    # -- the one answer for a task no host can take -----------------------------------
    def _check_unreachable(self, passed: List[Message]) -> None:
        if self._unreachable is None:
            from ..unreachable import Unreachable

            parts, hub = self.ctx.parts, self.ctx.hub
            results = parts.reporter.results_lane
            self._unreachable = Unreachable(self.ctx.settings, self.ctx.client, self.ctx.store, self.intake.order,
                                            submit=lambda job: results.submit(guarded(job, hub.fatal)),
                                            guild=parts.claims.identity.guild, on_fatal=hub.fatal)
        unreachable = self._unreachable
        self.ctx.submit("reads", lambda: unreachable.check(passed, self._hosts_seen))

    def _hosts_seen(self) -> Optional[List["HostSeen"]]:
        """The hosts this one knows of (their presence threads in #worker-pool: one GET, asked only when a task
        has waited long enough), and this host, seen now. None: Discord did not answer (no answer on a guess)."""
        from ..hosts import read_hosts
        from ..order import HostSeen

        s = self.ctx.settings
        if not s.host_silent_after_s:   # no presence: this host cannot know the others
            return None
        me = HostSeen(s.host_name, frozenset(s.host_tags), self.ctx.wall())
        try:
            seen = read_hosts(self.ctx.client, self.ctx.parts.claims.identity.guild(), s.worker_pool_channel)
        except DiscordError as exc:
            log.warning("the hosts in #worker-pool could not be read (%s): no NO HOST answer this time", exc)
            return None
        return [me] + [h for h in seen if h.name != me.name]


STEP = IntakeStep
