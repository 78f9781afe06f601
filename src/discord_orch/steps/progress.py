"""Live status (progress.py): each task's status message (queued, running on HOST for 1m20s with the
agent's last log line, how it ended), edited on the task lane at most every STATUS_EVERY s and only
when it changed; the stall notice after STALL_AFTER s of silence. Fed by the events ``queued``,
``started``, ``finished`` and ``forget``; held by the gate ``post`` (presence).
"""

from __future__ import annotations

from typing import List

from ..core.lanes import guarded
from ..core.step import Context, Step
from ..outcome import Outcome
from ..progress import StatusBoard, Watched
from ..state import TaskRecord


class ProgressStep(Step):
    name = "progress"

    def bind(self, ctx: Context) -> None:
        self.ctx = ctx
        parts, hub = ctx.parts, ctx.hub
        self.board = StatusBoard(ctx.settings, ctx.client, ctx.store,
                                 submit=lambda job: parts.claims.lane.submit(guarded(job, hub.fatal)),
                                 on_fatal=hub.fatal, root_of=ctx.store.root_of,
                                 turn_number=lambda rec: parts.conversations.turn_number(rec),
                                 clock=ctx.clock, wall=ctx.wall)
        self.board.gate = lambda: ctx.allows("post")
        self.board.buttons = lambda: bool(ctx.apply("buttons", False))   # the Gateway step: whether it answers them
        ctx.on("queued", lambda rec, position, of: self._renders().queued(rec, position, of))
        ctx.on("started", lambda rec: self._renders().running(rec))
        ctx.on("finished", self._finished)
        ctx.on("forget", self.board.forget)

    def _renders(self) -> StatusBoard:
        """The board, able to render a result for the thread (the reporter's, built only once there is work:
        the message's last edit carries the result, and a follow-up's status keeps it under; no copy is
        posted in the thread)."""
        self.board.render_result = self.ctx.parts.reporter.thread_result
        return self.board

    def _finished(self, rec: TaskRecord, outcome: Outcome) -> None:
        self._renders().finished(rec, outcome.status, outcome.duration_s)

    def turn(self, now: float) -> None:
        self.board.tick(self._watched())

    def _watched(self) -> List[Watched]:
        return [Watched(live.record, live.agent.started_at, (str(live.workspace.stdout_file),
                                                             str(live.workspace.stderr_file)))
                for live in self.ctx.board.live.values()]

    def close(self, stopped_by) -> None:   # type: ignore[no-untyped-def]
        self.board.flush()


STEP = ProgressStep
