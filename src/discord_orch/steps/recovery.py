"""Recovery: in its first turn, the pass carries out recovery.py's plan for what a pass that is
gone left behind (it holds the home lock): claimed tasks are queued to start, live agents
adopted, ended ones judged, owed results queued, reported ones cleaned.

A ``claiming`` task (CLAIM=thread: its thread's start was not answered) is looked at on the
claims lane (``Claims.settle``): its own → claimed, another host's → elsewhere, none → started
again. Those Discord cannot tell about yet are looked at again after the next poll it answers:
the thread on the message keeps the task out of every poll, and --watch has no next pass.
"""

from __future__ import annotations

import logging
from typing import List, Optional, Tuple

from ..core.step import Context, Step
from ..errors import DiscordError, Unauthorized
from ..state import TaskRecord

log = logging.getLogger("discord_orch")


class Recovery(Step):
    name = "recovery"

    def bind(self, ctx: Context) -> None:
        self.ctx = ctx
        self._done = False
        self._unsettled: List[TaskRecord] = []
        self._settling = False
        ctx.on("polled", self._after_poll)
        ctx.gate("slow_polls", lambda: not self._unsettled)   # they are settled again after each poll

    def turn(self, now: float) -> None:
        if self._done:
            return
        self._done = True
        if self.ctx.store.has_open_tasks():   # else a pass that is gone left nothing (the idle pass)
            self._recover()

    def _recover(self) -> None:
        from ..recovery import Adoption, Restart, plan_recovery
        from ..workspace import archive_quietly

        ctx, parts = self.ctx, self.ctx.parts
        plan = plan_recovery(ctx.store, ctx.settings, parts.agent_config_for, wall=ctx.wall)
        if plan.ledger_lines_added:
            log.info("recovered %d ledger line(s)", plan.ledger_lines_added)
        for rec in plan.claimed:
            ctx.emit("ready", rec)
        self._settle(plan.claiming)
        for rec in plan.unmarked:
            parts.claims.mark_claimed(rec, recovered=True)
        for item in plan.was_running:
            if isinstance(item, Restart):
                if item.archive is not None:
                    archive_quietly(item.archive, ctx.settings.archive_dir)
                ctx.store.mark_claimed_again(item.record.task_id, attempts=item.attempts)
                ctx.emit("ready", ctx.store.get(item.record.task_id))
            elif isinstance(item, Adoption):
                ctx.emit("adopted", item.record, item.agent, item.workspace, item.found_by_marker)
                ctx.stats.adopted += 1
            else:
                ctx.emit("ended", item.record, item.workspace, item.outcome, item.archived)
        for rec in plan.outbox:
            parts.reporter.queue(rec.task_id)
        for rec in plan.reported:
            parts.reporter.clean_up(rec)

    def _settle(self, records: List[TaskRecord]) -> None:
        if not records:
            return
        claims = self.ctx.parts.claims
        self._settling = True

        def job() -> List[Tuple[TaskRecord, Optional[object]]]:
            answers: List[Tuple[TaskRecord, Optional[object]]] = []
            for rec in records:
                try:
                    answers.append((rec, claims.settle(rec, attempted=True)))
                except Unauthorized:
                    raise
                except DiscordError as exc:
                    log.warning("task=%s: who has it is not known yet (%s); looked at again after the next poll",
                                rec.task_id, exc)
                    answers.append((rec, None))
            return answers

        self.ctx.submit("claims", job, self._settled)

    def _settled(self, answers: List[Tuple[TaskRecord, Optional[object]]]) -> None:
        self._settling = False
        for rec, decision in answers:
            if decision is None:
                self._unsettled.append(rec)
            else:
                self.ctx.emit("decided", decision)

    def _after_poll(self) -> None:
        if self._unsettled and not self._settling:
            records, self._unsettled = self._unsettled, []
            self._settle(records)


STEP = Recovery
