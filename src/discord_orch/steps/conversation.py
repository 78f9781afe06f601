"""Follow-ups: a task is a conversation (conversation.py). After each poll the threads of open
conversations are read on the reads lane (one GET of the server's active threads while some are
open, none otherwise); each allowed user's follow-up is a turn (its own record, linked to its
task), started here once its task is ``open`` and earlier turns are done (event ``start``), or
queued with its place in line. Windows past FOLLOWUP_HOURS close and their workspaces go; turns
left waiting by a closed task are answered "closed" on the reads lane.
"""

from __future__ import annotations

import logging

from ..core.step import Context, Step
from ..errors import DiscordError, Unauthorized

log = logging.getLogger("discord_orch")


class ConversationStep(Step):
    name = "conversation"

    def bind(self, ctx: Context) -> None:
        self.ctx = ctx
        self.conversations = ctx.parts.conversations
        self._reading = False
        self._again = False
        ctx.on("polled", self._read)
        ctx.on("read_threads", self._read_soon)   # the Gateway saw a message in a task's thread

    def _read_soon(self) -> None:
        if self._reading:
            self._again = True   # the read in flight may have passed it: one more once it is back
        else:
            self._read()

    def _read(self) -> None:
        if self._reading:
            return
        self._reading = True
        conversations, wall = self.conversations, self.ctx.wall

        def job() -> None:
            try:
                conversations.read(wall())
            except Unauthorized:
                raise
            except DiscordError as exc:
                log.warning("the task threads could not be read, will retry: %s", exc)

        self.ctx.submit("reads", job, self._read_done)

    def _read_done(self, _: None) -> None:
        self._reading = False
        for rec in self.conversations.expired(self.ctx.wall()):
            self.ctx.parts.reporter.clean_up(rec)
        if self._again:
            self._again = False
            self._read()

    def turn(self, now: float) -> None:
        if self.ctx.stopping or self._reading:
            return
        ctx, waiting = self.ctx, []
        for rec in self._startable():
            if ctx.board.capacity() > 0:
                ctx.stats.claimed += 1
                ctx.emit("start", rec)
            else:
                waiting.append(rec)
        for position, rec in enumerate(waiting, start=1):
            ctx.emit("queued", rec, position, len(waiting))
        if self.conversations.to_answer:
            self.ctx.submit("reads", self.conversations.say_closed)

    def _startable(self):   # type: ignore[no-untyped-def]
        live = self.ctx.board.live
        return self.conversations.startable(busy=lambda task_id: task_id in live)

    def busy(self) -> bool:
        return not self.ctx.stopping and (self._reading or bool(self._startable()))


STEP = ConversationStep
