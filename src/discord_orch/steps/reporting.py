"""Reporting (reporter.py): results are queued on the results lane as tasks finish (running) and
posted there, one per task (nonce: never twice); each turn, the refusals decided so far go in line
behind them, grouped by author; --watch tries the results Discord did not take again every
OUTBOX_RETRY_S (a cron pass leaves them to the next pass).
"""

from __future__ import annotations

from ..core.step import Context, Step

OUTBOX_RETRY_S = 30.0   # --watch: results Discord did not take are tried again this often


class ReportingStep(Step):
    name = "reporting"

    def bind(self, ctx: Context) -> None:
        self.ctx = ctx
        self._last_outbox = ctx.clock()

    def turn(self, now: float) -> None:
        parts = self.ctx.parts
        if not parts.built("reporter"):
            return   # nothing was decided or ran: nothing to post
        if not self.ctx.board.refusing:   # what the backlog held to refuse, grouped by author, behind the results
            parts.reporter.flush_refusals()
        if self.ctx.watch and not self.ctx.stopping and now - self._last_outbox >= OUTBOX_RETRY_S:
            self._last_outbox = now
            parts.reporter.retry_outbox(running=self.ctx.board.live)


STEP = ReportingStep
