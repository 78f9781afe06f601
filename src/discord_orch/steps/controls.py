"""Stop and retry (controls.py): looked for on the reads lane, carried out on the loop thread.

Once per POLL_INTERVAL, while anything can be stopped or retried, the task messages are looked
at for a 🛑 / 🔁 (one request; none when nothing is watched). Every turn, what was asked there
or in a task's thread (``Controls.request``) is carried out: a task not started yet never runs
(claimed → finished, ``stopped``: the ``start`` gate); a running agent gets the timeout's
sequence and ends ``stopped``; a task still in the backlog is decided at once (event
``decide``), then stopped at its start; a retry puts the task back in line as its next attempt
(event ``ready``).
"""

from __future__ import annotations

import logging
from typing import Dict, List

from ..controls import RETRY, STOP, Request
from ..core.step import Context, Step
from ..errors import DiscordError, Unauthorized
from ..outcome import STOPPED, Outcome
from ..state import TaskRecord

log = logging.getLogger("discord_orch")


class ControlsStep(Step):
    name = "controls"

    def bind(self, ctx: Context) -> None:
        self.ctx = ctx
        self.controls = ctx.parts.controls
        self._last_look = float("-inf")
        self._looking = False
        ctx.gate("start", self._may_start)
        ctx.on("look_now", self._look_now)   # the Gateway saw a 🛑 / 🔁

    def turn(self, now: float) -> None:
        if self.ctx.stopping:
            return
        interval = self.ctx.apply("poll_interval", self.ctx.settings.poll_interval)
        if not self._looking and now - self._last_look >= interval:
            self._look(now)
        for req in self.controls.take(STOP):
            self._stop(req)
        for req in self.controls.take(RETRY):
            self._retry(req)

    def _look(self, now: float) -> None:
        ctx, board = self.ctx, self.ctx.board
        self._last_look = now
        stoppable: Dict[str, str] = {task_id: live.record.author_id for task_id, live in board.live.items()}
        stoppable.update((rec.task_id, rec.author_id) for rec in board.ready)
        stoppable.update((msg.id, msg.author.id) for msg in ctx.parts.intake.backlog)
        retryable: List[str] = []
        if ctx.settings.retry_window_h > 0:
            since = ctx.wall() - ctx.settings.retry_window_h * 3600
            retryable = [rec.task_id for rec in ctx.store.retryable(since=since,
                                                                    max_attempts=ctx.settings.max_attempts)]
        if not stoppable and not retryable:
            return
        self._looking = True
        controls, wall, interval = self.controls, ctx.wall, ctx.settings.poll_interval

        def job() -> None:
            try:
                controls.look(stoppable, retryable, wall())
            except Unauthorized:
                raise
            except DiscordError as exc:
                log.warning("could not look for stop and retry requests (looked again in %gs): %s", interval, exc)

        ctx.submit("reads", job, self._looked)

    def _look_now(self) -> None:
        self._last_look = float("-inf")   # a look in flight: one more once it is back

    def _looked(self, _: None) -> None:
        self._looking = False

    # -- stop ------------------------------------------------------------------
    def _stop(self, req: Request) -> None:
        ctx, task_id = self.ctx, req.task_id
        live = ctx.board.live.get(task_id)
        if live is not None:   # the timeout's sequence; the running step finishes it as stopped
            self.controls.done(STOP, task_id)
            log.warning("task=%s: stopped by %s (%s): its agent %s gets SIGTERM, then SIGKILL after %gs",
                        task_id, req.who, req.user.id, live.workspace.agent_id, ctx.settings.kill_grace_s)
            live.agent.stop(ctx.wall(), f"stopped by {req.who}", by=req.who)
            return
        waiting = next((rec for rec in ctx.board.ready if rec.task_id == task_id), None)
        if waiting is not None:
            ctx.board.ready.remove(waiting)
            self._may_start(waiting)   # it never runs
            return
        intake = ctx.parts.intake
        msg = next((m for m in intake.backlog if m.id == task_id), None)
        if msg is not None:   # decided now (claimed here or not), without waiting for an agent
            intake.backlog.remove(msg)
            ctx.emit("decide", msg)
            return   # the start gate sees the stop once it is claimed; done() there
        if task_id in intake.deciding or any(m.id == task_id for m in intake.set_aside):
            return   # the stop waits for its decision: the start gate then sees it
        log.info("task=%s: stop asked by %s: nothing of it runs or waits here", task_id, req.who)
        self.controls.done(STOP, task_id)

    def _may_start(self, rec: TaskRecord) -> bool:
        """The ``start`` gate: a task someone stopped before it ran ends here (claimed → finished, stopped)."""
        req = self.controls.pending(STOP, rec.task_id)
        if req is None:
            return True
        self.controls.done(STOP, rec.task_id)
        outcome = Outcome(status=STOPPED, duration_s=0.0, reason=f"stopped by {req.who} before it ran",
                          stopped_by=req.who)
        self.ctx.store.mark_stopped_before_it_ran(rec.task_id, outcome, finished_at=self.ctx.wall())
        self.ctx.stats.finished += 1
        log.warning("task=%s: stopped by %s (%s) before it ran", rec.task_id, req.who, req.user.id)
        self.ctx.parts.reporter.queue(rec.task_id)
        from ..inputs import forget

        forget(self.ctx.store, rec.task_id)   # its files will never be fetched
        return False

    # -- retry -----------------------------------------------------------------
    def _retry(self, req: Request) -> None:
        """cleaned → claimed as the next attempt, in line for an agent (a fresh workspace)."""
        ctx = self.ctx
        self.controls.done(RETRY, req.task_id)
        why = self.controls.why_not_retryable(req.task_id)
        rec = ctx.store.get(req.task_id)
        if why or rec is None:   # it cannot run again (any more)
            log.info("task=%s: retry asked by %s not carried out: %s", req.task_id, req.who, why)
            return
        attempt = ctx.store.mark_retry(rec.task_id)
        log.warning("task=%s: retry asked by %s (%s): attempt %d of %d", rec.task_id, req.who, req.user.id,
                    attempt, ctx.settings.max_attempts)
        ctx.parts.claims.react_retry(rec)
        ctx.stats.claimed += 1
        ctx.emit("ready", ctx.store.get(rec.task_id))


STEP = ControlsStep
