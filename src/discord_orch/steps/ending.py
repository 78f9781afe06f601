"""The end of a pass: its last log line (how it ended, what it did, the requests it cost) and what
`discord-orch status` shows: `.runtime/last-pass.json` (replaced whole, no sync: an idle pass
writes nothing to state.db) and the tasks waiting (meta ``status:waiting``, written when they
change: event ``waiting``).
"""

from __future__ import annotations

import logging
import signal
from typing import Set

from ..core.step import Context, Step
from ..errors import StateError
from ..state import OUTBOX_STATUSES
from ..status import WaitingNote, note_pass_end

log = logging.getLogger("discord_orch")


class EndingStep(Step):
    name = "ending"

    def bind(self, ctx: Context) -> None:
        self.ctx = ctx
        self._waiting = WaitingNote(ctx.store)
        ctx.on("waiting", self._note_waiting)

    def _note_waiting(self) -> None:
        """The tasks waiting to be claimed, for `discord-orch status` (written only when they change)."""
        intake = self.ctx.parts.intake
        paused: Set[str] = self.ctx.apply("paused", set())
        try:
            self._waiting.note(intake.backlog + intake.set_aside, paused, self.ctx.wall())
        except StateError as exc:   # a full disk: the pass goes on; status shows an older list
            log.warning("could not note the waiting tasks for discord-orch status: %s", exc)

    def ended(self) -> None:
        ctx, st = self.ctx, self.ctx.stats
        if ctx.parts.built("reporter"):
            st.reported = ctx.parts.reporter.reported
        try:  # the records are the truth: also what a lane had no time to try (drain cap) is left
            st.deferred = len(ctx.store.with_status(*OUTBOX_STATUSES))
        except StateError:
            st.deferred = len(ctx.parts.reporter.deferred) if ctx.parts.built("reporter") else 0
        how = self._log(st)
        if ctx.parts.built("intake"):
            self._note_waiting()
        try:
            note_pass_end(ctx.store, ended_at=ctx.wall(), how=how,
                          counts={"claimed": st.claimed, "refused": st.refused, "started": st.started,
                                  "finished": st.finished, "reported": st.reported, "deferred": st.deferred})
        except OSError as exc:
            log.warning("could not note how the pass ended for discord-orch status: %s", exc.strerror or exc)

    def _log(self, st) -> str:   # type: ignore[no-untyped-def]
        """Log how the pass ended; the same in a few words for `discord-orch status`."""
        hub = self.ctx.hub
        left = f"; {st.deferred} result(s) left for the next pass" if st.deferred else ""
        counts = (f"claimed {st.claimed}, refused {st.refused}, started {st.started}, finished {st.finished}, "
                  f"reported {st.reported}, deferred {st.deferred}, adopted {st.adopted}, "
                  f"requests {self.ctx.client.stats.requests}")
        if hub.fatal_error is not None:
            st.fatal = str(hub.fatal_error)
            log.error("pass aborted: %s (%s)%s", hub.fatal_error, counts, left)
            return f"aborted: {st.fatal}"
        if hub.stop_signal is not None:
            st.stopped_by = hub.stop_signal
            name = signal.Signals(hub.stop_signal).name
            log.warning("pass stopped by %s (%s)%s", name, counts, left)
            return f"stopped by {name}"
        if st.deferred:
            log.warning("pass done, %d result(s) left for the next pass (%s)", st.deferred, counts)
            return f"done, {st.deferred} result(s) left for the next pass"
        if not st.claimed and not st.refused and not st.reported:
            log.info("pass done: nothing to do (%s)", counts)
            return "nothing to do"
        log.info("pass done (%s)", counts)
        return "done"


STEP = EndingStep
