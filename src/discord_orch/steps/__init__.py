"""The steps of a pass, one per capability, in the order the loop turns them.

Each module defines ``STEP``, a class with the interface of ``core.step.Step``; a line here
lists it with the test of the settings under which it takes part (a step not enabled is
never imported: an idle cron pass loads only what it uses). A step imports no other step:
steps meet in the context (core/step.py). docs/design.md says what each one does.
"""

from __future__ import annotations

from ..core.step import Entry

REGISTRY = [
    Entry("recovery"),       # the first turn: what a pass that is gone left behind
    Entry("gateway", lambda s: s.gateway == "auto"),   # --watch only: live events make the steps below act at once
    Entry("presence", lambda s: s.host_silent_after_s > 0),   # this host's line; silent hosts' tasks taken over
    Entry("running"),        # start what is ready, supervise, finish (the agent's own times)
    Entry("intake"),         # read #task-queue on a lane; the backlog; a task no host can take answered
    Entry("budget", lambda s: s.budget_daily_usd is not None or s.budget_monthly_usd is not None
          or s.task_max_usd is not None),   # hold the backlog while a budget is reached; TASK_MAX_USD's note
    Entry("claiming"),       # decide the backlog on the claims lane: claim (thread, ✅) or refuse
    Entry("conversation", lambda s: s.followup_h > 0 and s.claim == "thread"),   # follow-ups in task threads
    Entry("controls"),       # 🛑 / 🔁 and `stop` / `retry`: looked at on a lane, carried out here
    Entry("progress"),       # each task's live status message
    Entry("reporting"),      # refusals grouped, the outbox tried again
    Entry("prune"),          # archive/ past its retention; the disk full said
    Entry("ending"),         # the pass's last line and what `discord-orch status` shows
]
