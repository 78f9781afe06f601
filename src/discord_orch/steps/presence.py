"""Presence and takeover (hosts.py, takeover.py), with HOST_SILENT_AFTER > 0.

Every HOST_SILENT_AFTER/3 s, on the presence lane: this host's line in its presence thread in
#worker-pool (after renewing its lease if its last line is older than HOST_SILENT_AFTER/2; until
then the gate ``claim`` and the results and status messages are held), then one GET of the
active threads, and a silent host's open tasks taken over (event ``ready``). When another host
took this one's tasks over while it was silent, they are stopped here, recorded ``elsewhere``,
never posted (``board.lost``; event ``forget``).
"""

from __future__ import annotations

import logging

from ..core.lanes import guarded
from ..core.step import Context, Step
from ..state import CLAIMED, FINISHED, REPORTING, RUNNING, STARTING

log = logging.getLogger("discord_orch")


class PresenceStep(Step):
    name = "presence"

    def bind(self, ctx: Context) -> None:
        from ..hosts import Presence
        from ..takeover import Takeover

        self.ctx = ctx
        s, parts = ctx.settings, ctx.parts
        self.presence = Presence(s, ctx.client, ctx.store, on_fatal=ctx.hub.fatal, wall=ctx.wall)
        self.takeover = Takeover(s, ctx.client, ctx.store, parts.claims, on_fatal=ctx.hub.fatal, wall=ctx.wall)
        if s.claim == "thread":
            self.presence.after_beat = self.takeover.look
        parts.reporter.gate = self.presence.fresh
        ctx.gate("claim", self.presence.fresh)
        ctx.gate("post", self.presence.fresh)
        self._lane = ctx.hub.lane("presence")   # its thread in #worker-pool
        self._beats_seen = 0

    def turn(self, now: float) -> None:
        if self.ctx.stopping:
            return
        self._moved()
        if self.presence.due() and not self._lane.busy:
            self._lane.submit(guarded(self.presence.beat, self.ctx.hub.fatal))

    def _moved(self) -> None:
        """What the presence lane found: tasks this host took over (to start), or this host's own open
        tasks taken over by another while it was silent (stopped here, recorded elsewhere, never posted)."""
        ctx = self.ctx
        while not self.takeover.taken.empty():
            ctx.emit("ready", self.takeover.taken.get())
        taker = self.presence.lost_to   # while set, this host claims and posts nothing (Presence.fresh)
        if taker is not None:
            for rec in ctx.store.with_status(CLAIMED, STARTING, RUNNING, FINISHED, REPORTING):
                live = ctx.board.live.get(rec.task_id)
                if live is not None:
                    live.agent.stop(ctx.wall(), f"taken over by {taker}")
                    ctx.board.lost.add(rec.task_id)
                ctx.store.mark_elsewhere(rec.task_id, host=taker)
                ctx.emit("forget", rec.task_id)
                log.warning("task=%s: taken over by %s while this host was silent; not posted here", rec.task_id,
                            taker)
            ctx.board.ready.clear()   # all were this host's open tasks, now elsewhere
            self.presence.lost_to = None
        if self.presence.beats != self._beats_seen:   # a line is out: results held while silent may go
            self._beats_seen = self.presence.beats
            reporter = ctx.parts.reporter
            if reporter.deferred and self.presence.fresh():
                reporter.retry_outbox(running=ctx.board.live)


STEP = PresenceStep
