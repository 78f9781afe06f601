"""Budgets (budget.py): before the claims of a turn, while a daily or monthly budget is reached, the
backlog's tasks that would run are held with ⏸ and one notice per budget and period (the messages to
refuse stay: they cost nothing); a task that waited with ⏸ loses it when claimed (event ``claimed``).
After a run, TASK_MAX_USD's note is added to the result of a task that passed it (filter ``outcome``).
The tasks claimed and not finished (``board``: live, ready, reserved) count at their expected cost, and
the gate ``claim-one`` asks again before each claim (issue 24: tasks started together cannot overrun a
budget by MAX_AGENTS tasks' cost).
"""

from __future__ import annotations

from typing import Set

from ..budget import BudgetGate, Budgets, over_task_max
from ..core.step import Context, Step
from ..outcome import Outcome
from ..state import TaskRecord


class BudgetStep(Step):
    name = "budget"

    def bind(self, ctx: Context) -> None:
        self.ctx = ctx
        parts = ctx.parts
        self.budgets = Budgets(ctx.settings, ctx.store)
        self.gate = BudgetGate(self.budgets, hold=parts.intake.hold, may_run=parts.intake.runs_first,
                               pause=lambda task_id, remove: parts.claims.react_paused(task_id, remove=remove),
                               notice=lambda line: parts.reporter.notice(line), wall=lambda: ctx.wall())
        ctx.on("claimed", self.gate.claimed)
        ctx.on("finished", lambda rec, outcome: self.budgets.learned())
        ctx.gate("claim-one", self._room)
        ctx.filter("outcome", self._flag_cost)
        ctx.filter("paused", self._paused)

    def turn(self, now: float) -> None:
        ctx = self.ctx
        if ctx.stopping or not ctx.parts.intake.backlog or not ctx.allows("claim") or ctx.board.capacity() <= 0:
            return   # no claim now (a running task's expected cost must not hold what may run once it ends)
        if self.gate.holds(self._committed()):
            ctx.emit("waiting")   # the tasks that would run wait, with ⏸

    def _committed(self) -> float:
        """The expected cost of the tasks this pass claimed that have not finished (a claim in flight: any
        model's)."""
        if not self.budgets.enabled:
            return 0.0
        board, expected = self.ctx.board, self.budgets.expected
        recs = [live.record for live in board.live.values()] + list(board.ready)
        return sum(expected(rec.model or "") for rec in recs) + board.reserved * expected(None)

    def _room(self) -> bool:
        """Before each claim: do the spend and what runs (at its expected cost) leave the budgets unreached?"""
        if not self.budgets.enabled:
            return True
        return not self.gate.holds(self._committed())

    def _flag_cost(self, outcome: Outcome, rec: TaskRecord) -> Outcome:
        """TASK_MAX_USD: a note in the result of a task whose cost passed it (known only now)."""
        note = over_task_max(outcome, rec.model, self.ctx.settings, self.budgets)
        return outcome._replace(notes=outcome.notes + (note,)) if note else outcome

    def _paused(self, paused: Set[str]) -> Set[str]:
        return paused | self.gate.paused


STEP = BudgetStep
