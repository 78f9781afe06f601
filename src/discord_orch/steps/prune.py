"""Pruning: archived workspaces past their retention removed (ARCHIVE_RETENTION_HOURS, KEEP_SUCCESS_HOURS),
not on every cron pass: archive/ is read once per PRUNE_EVERY_S, by whichever pass ends then, and hourly
under --watch; on a full disk, the largest archived workspaces named.
"""

from __future__ import annotations

import logging

from ..core.step import Context, Step
from ..errors import StateError

log = logging.getLogger("discord_orch")

PRUNE_EVERY_S = 3600.0           # prune archive/ this often (retention is in hours)
LAST_PRUNE_META = "last_prune"   # meta key: when archive/ was last pruned (epoch seconds)


class PruneStep(Step):
    name = "prune"

    def bind(self, ctx: Context) -> None:
        self.ctx = ctx
        self._last_prune = ctx.clock()

    def turn(self, now: float) -> None:
        if self.ctx.watch and now - self._last_prune >= PRUNE_EVERY_S:
            self.prune()   # a pass prunes when it ends; --watch never ends, so also hourly

    def ended(self) -> None:
        if self._due():
            self.prune()
        else:
            self._say_if_disk_full()

    def _due(self) -> bool:
        try:
            last = self.ctx.store.get_meta(LAST_PRUNE_META)
            return last is None or not 0 <= self.ctx.wall() - float(last) < PRUNE_EVERY_S
        except (StateError, ValueError):
            return True

    def prune(self) -> None:
        """Remove archived workspaces past their retention; on a full disk, say which to remove."""
        from ..workspace import prune_archive

        self._last_prune = self.ctx.clock()
        s = self.ctx.settings
        try:
            removed = prune_archive(s.archive_dir, s.archive_retention_h, self.ctx.wall(),
                                    success_hours=s.keep_success_h)
            self.ctx.store.set_meta(LAST_PRUNE_META, repr(self.ctx.wall()))
        except (OSError, StateError) as exc:
            log.error("could not prune %s: %s", s.archive_dir, exc)
        else:
            for path in removed:
                log.info("pruned %s (past its retention: ARCHIVE_RETENTION_HOURS=%g, KEEP_SUCCESS_HOURS=%g)",
                         path, s.archive_retention_h, s.keep_success_h)
        self._say_if_disk_full()

    def _say_if_disk_full(self) -> None:
        if self.ctx.store.disk_is_full():
            from ..workspace import disk_full_advice

            log.error("the disk holding %s is full: %s", self.ctx.settings.runtime_dir,
                      disk_full_advice(self.ctx.settings))


STEP = PruneStep
