"""Claiming: the backlog decided on the claims lane (claim.py), never on the loop thread.

Tasks of people who may run them are taken first, in order.py's order, while an agent is free:
each takes a slot of MAX_AGENTS (``board.reserved``) until its decision is back, so no more are
claimed than can run. Messages to refuse need no agent: up to REFUSALS_IN_FLIGHT of them wait on
the same lane at a lower priority, behind every task, whatever runs. A decision (``decided``):
claimed → event ``ready``; refused → its post queued behind the results; passed over (its
TASK.txt needs tags this host lacks) → left to others, event ``passed``; another host started
its thread → the rest of the poll read again. One Discord did not answer for is set aside for
the next pass. A 🛑 already on a message (as the poll showed it) is looked at first: a task
stopped before it ran never runs.

The gate ``claim`` (presence: this host's lease is fresh) holds every claim.

A stranger's messages (an author who may not run tasks) get no thread (claim.py): which host
explains the refusal is decided here, from the hosts seen in #worker-pool (one GET, at most every
HOSTS_LOOK_S, on the claims lane): the live host with the smallest name, as for NO HOST.
"""

from __future__ import annotations

import logging
from typing import Optional, Tuple

from ..claim import Decision
from ..controls import STOP, STOP_EMOJI
from ..core.step import Context, Step
from ..errors import DiscordError, StateError, Unauthorized
from ..models import Message

log = logging.getLogger("discord_orch")

REFUSALS_IN_FLIGHT = 4   # refusals queued on the claims lane at once (behind every task)
HOSTS_LOOK_S = 60.0      # the hosts seen are read again after this long (to pick who explains to strangers)
TASK_PRIORITY, REFUSAL_PRIORITY = 0, 1


class Claiming(Step):
    name = "claiming"

    def bind(self, ctx: Context) -> None:
        self.ctx = ctx
        self.intake = ctx.parts.intake
        self._answers: Optional[Tuple[float, bool]] = None   # (when looked, whether this host explains)
        self._wired = False
        ctx.on("decided", self._settled)
        ctx.on("decide", self._decide_now)

    def turn(self, now: float) -> None:
        if self.ctx.stopping or not self.intake.backlog or not self.ctx.allows("claim"):
            return
        board = self.ctx.board
        # a task posted since may go first; ``claim-one``: a budget with room for one task more (steps/budget.py)
        while board.capacity() > 0 and not self.intake.polling and self.ctx.allows("claim-one"):
            msg = self.intake.next_task()
            if msg is None:
                break
            self._submit(msg, task=True)
        while self.ctx.board.refusing < REFUSALS_IN_FLIGHT:
            msg = self.intake.next_refusal()
            if msg is None:
                break
            self._submit(msg, task=False)

    def _decide_now(self, msg: Message) -> None:
        """A message taken out of the backlog to be decided at once (a stop asked for it: it never runs)."""
        self.intake.deciding[msg.id] = msg
        self._submit(msg, task=True)

    def _answers_strangers(self) -> bool:
        """On the claims lane: does this host post the explanation to a stranger? Alone (no presence), yes;
        else when it is the live host with the smallest name. Discord not answering: yes (two explanations
        are better than none)."""
        from ..hosts import read_hosts
        from ..order import HostSeen, answers_here

        s, now = self.ctx.settings, self.ctx.wall()
        if not s.host_silent_after_s:
            return True
        if self._answers is None or now - self._answers[0] >= HOSTS_LOOK_S:
            try:
                seen = read_hosts(self.ctx.client, self.ctx.parts.claims.identity.guild(), s.worker_pool_channel)
            except (Unauthorized, StateError):
                raise
            except DiscordError as exc:
                log.warning("the hosts in #worker-pool could not be read (%s): this host explains refusals", exc)
                return True
            me = HostSeen(s.host_name, frozenset(s.host_tags), now)
            self._answers = (now, answers_here(s.host_name, [me] + list(seen), now=now,
                                               silent_after=s.host_silent_after_s))
        return self._answers[1]

    def _submit(self, msg: Message, *, task: bool) -> None:
        claims, controls, wall = self.ctx.parts.claims, self.ctx.parts.controls, self.ctx.wall
        if not self._wired:
            claims.answers_strangers = self._answers_strangers
            self._wired = True
        if task:
            self.ctx.board.reserved += 1
        else:
            self.ctx.board.refusing += 1

        def decide() -> Tuple[Optional[Decision], Optional[DiscordError]]:
            try:
                if msg.reaction(STOP_EMOJI) is not None:   # the poll's copy: what it shows counts, never its absence
                    controls.check(msg, STOP, wall())
                return claims.decide(msg), None
            except (Unauthorized, StateError):
                raise
            except DiscordError as exc:
                return None, exc

        self.ctx.submit("claims", decide, lambda answer: self._decided(msg, task, *answer),
                        priority=TASK_PRIORITY if task else REFUSAL_PRIORITY)

    def _decided(self, msg: Message, task: bool, decision: Optional[Decision], error: Optional[DiscordError]) -> None:
        if task:
            self.ctx.board.reserved -= 1
        else:
            self.ctx.board.refusing -= 1
        if decision is None:
            log.error("task=%s: could not be read (%s); it stays pending, tried again by the next pass", msg.id, error)
            self.intake.decided(msg, set_aside=True)
            self.ctx.emit("waiting")
            return
        self.intake.decided(msg)
        if decision.record is not None:
            self.ctx.emit("claimed", msg)
        if decision.passed:   # its TASK.txt needs a tag this host lacks: known only now, so looked at now
            self.intake.pass_over(msg, decision.passed)
            self.ctx.emit("passed", [msg])
        if decision.elsewhere:
            self.intake.reread()
        self._settled(decision)
        self.ctx.emit("waiting")

    def _settled(self, decision: Decision) -> None:
        if decision.record is not None:
            self.ctx.stats.claimed += 1
            self.ctx.emit("ready", decision.record)
        elif decision.refused:
            self.ctx.stats.refused += 1
            if decision.post_refusal:
                self.ctx.parts.reporter.queue(decision.task_id)


STEP = Claiming
