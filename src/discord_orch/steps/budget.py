"""Budgets (budget.py): before the claims of a turn, while a daily or monthly budget is reached, the
backlog's tasks that would run are held with ⏸ and one notice per budget and period (the messages to
refuse stay: they cost nothing); a task that waited with ⏸ loses it when claimed (event ``claimed``).
After a run, TASK_MAX_USD's note is added to the result of a task that passed it (filter ``outcome``).
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
        ctx.filter("outcome", self._flag_cost)
        ctx.filter("paused", self._paused)

    def turn(self, now: float) -> None:
        ctx = self.ctx
        if ctx.stopping or not ctx.parts.intake.backlog or not ctx.allows("claim"):
            return
        if self.gate.holds():
            ctx.emit("waiting")   # the tasks that would run wait, with ⏸

    def _flag_cost(self, outcome: Outcome, rec: TaskRecord) -> Outcome:
        """TASK_MAX_USD: a note in the result of a task whose cost passed it (known only now)."""
        note = over_task_max(outcome, rec.model, self.ctx.settings, self.budgets)
        return outcome._replace(notes=outcome.notes + (note,)) if note else outcome

    def _paused(self, paused: Set[str]) -> Set[str]:
        return paused | self.gate.paused


STEP = BudgetStep
