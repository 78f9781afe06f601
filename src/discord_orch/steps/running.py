"""Running: start what is ready when an agent is free, supervise every agent, finish what ended.

- prepare (``workspace``): ``mark_starting``, then the workspace on disk (a follow-up's turn: its
  task's workspace, the follow-up as TASK.txt); the task's files are fetched on the inputs lane
  (``inputs.fetch_inputs``) and the agent starts when they are in; one that cannot be fetched
  ends the task before its agent starts.
- run (``agent.RunningAgent.start``): ``openclaw agent`` in its own session and cgroup;
  ``mark_running``; the spawn notice; event ``started``.
- supervise: every agent polled each turn with one ProcessTable (timeouts: SIGTERM to the
  group, KILL_GRACE, SIGKILL; stragglers swept). A run's time is the agent's own: its end is
  stamped when SIGCHLD comes (``on sigchld``), not when the loop next looks.
- finish: the outcome classified from what the agent left (bounded readers), passed through
  the ``outcome`` filter (TASK_MAX_USD's note); a failed workspace, or one whose RESULT.txt is
  too large to post whole, archived; ``mark_finished``; the finish notice; event ``finished``;
  the result queued on the results lane.

The gate ``start`` (rec) may keep a task from starting (a stop asked for it: controls).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, NamedTuple, Optional

from ..core.step import Context, Step
from ..errors import OrchError, StateError
from ..outcome import FAILED, OK, Outcome
from ..state import TaskRecord

if TYPE_CHECKING:
    from ..agent import RunningAgent
    from ..workspace import Workspace

log = logging.getLogger("discord_orch")


class Live(NamedTuple):
    """A task whose agent this pass supervises."""

    record: TaskRecord
    agent: "RunningAgent"
    workspace: "Workspace"


class Running(Step):
    name = "running"

    def bind(self, ctx: Context) -> None:
        self.ctx = ctx
        self.board = ctx.board
        ctx.on("ready", self._ready)
        ctx.on("start", self.start)
        ctx.on("adopted", self._adopted)
        ctx.on("ended", self.finish)
        ctx.on("sigchld", self._stamp_exits)

    def turn(self, now: float) -> None:
        if self.ctx.stopping:
            for live in self.board.live.values():
                live.agent.stop(self.ctx.wall(), "the orchestrator was stopped")
        else:
            self._start_ready()
        self.supervise()

    def busy(self) -> bool:
        return bool(self.board.live) or (bool(self.board.ready) and not self.ctx.stopping)

    # -- start ----------------------------------------------------------------
    def _ready(self, rec: TaskRecord) -> None:
        self.board.ready.append(rec)

    def _start_ready(self) -> None:
        board, conversations = self.board, self.ctx.parts.conversations
        while board.ready and board.capacity() > 0 and not self.ctx.stopping:
            rec = board.ready.pop(0)
            if conversations.may_start(rec):
                self.start(rec)
            # else: a follow-up whose turn it is not yet; the conversation step starts it when it is
        for position, rec in enumerate(board.ready, start=1):
            self.ctx.emit("queued", rec, position, len(board.ready))

    def start(self, rec: TaskRecord) -> None:
        """prepare, fetch the task's files (on the inputs lane), run; a task someone stopped meanwhile never
        runs (the ``start`` gate)."""
        if not self.ctx.allows("start", rec):
            return
        ws = self.prepare(rec)
        from ..inputs import remembered

        files = remembered(self.ctx.store, rec.task_id)
        if not files:
            self.run(rec, ws)
            return
        self.board.reserved += 1   # the agent's slot is taken while its files come in
        self.ctx.submit("inputs", lambda: self._fetch(rec, ws, files), lambda problem: self._fetched(rec, ws, problem))

    def _fetch(self, rec: TaskRecord, ws: "Workspace", files: Any) -> str:
        from ..inputs import Limits, fetch_inputs, inputs_rel, turn_dir

        subdir = turn_dir(self.ctx.parts.conversations.turn_number(rec))
        fetched = fetch_inputs(self.ctx.client, rec.channel_id, rec.task_id, files, ws.task_dir,
                               Limits.of(self.ctx.settings), subdir=subdir)
        if not fetched.problem:
            log.info("task=%s: %d file(s) fetched into its %s/", rec.task_id, len(fetched.names), inputs_rel(subdir))
        return fetched.problem

    def _fetched(self, rec: TaskRecord, ws: "Workspace", problem: str) -> None:
        self.board.reserved -= 1
        if problem:
            log.error("task=%s: not run: %s", rec.task_id, problem)
            self.finish(rec, ws, Outcome(status=FAILED, duration_s=0.0,
                                         reason=f"refused before its agent started: {problem}"))
        else:
            self.run(rec, ws)

    def prepare(self, rec: TaskRecord) -> "Workspace":
        """The agent's workspace: AGENTS.md (template, worker type), TOOLS.md, TASK.txt, the config overlay.
        A follow-up's turn gets its task's workspace, with the follow-up as TASK.txt."""
        from ..workspace import Workspace, agents_md_for, begin_turn, create_workspace, new_agent_id, tools_md_for

        s, parts = self.ctx.settings, self.ctx.parts
        task = parts.conversations.workspace_task(rec)
        if task is not rec:
            ws = parts.reporter.workspace_of(task)
            self.ctx.store.mark_starting(rec.task_id, agent_id=ws.agent_id, agent_dir=str(ws.agent_dir))
            begin_turn(ws, rec.description + self._inputs_prompt(rec, ws))
            return ws
        ws = Workspace.at(s.workers_dir, new_agent_id(self.ctx.wall()), rec.task_id)
        agents_md = agents_md_for(ws, s.workers_dir, description=rec.description, model=rec.model,
                                  thinking=rec.thinking, worker=rec.worker, default_template=s.agents_md_template,
                                  summary_max=s.summary_max)
        agents_md += self._inputs_prompt(rec, ws)
        self.ctx.store.mark_starting(rec.task_id, agent_id=ws.agent_id, agent_dir=str(ws.agent_dir))
        return create_workspace(s.workers_dir, ws.agent_id, rec.task_id, rec.description, agents_md=agents_md,
                                tools_md=tools_md_for(s.workers_dir, rec.worker),
                                user_openclaw_config=s.openclaw_config)

    def _inputs_prompt(self, rec: TaskRecord, ws: "Workspace") -> str:
        """The lines naming the files of a task (for AGENTS.md) or of a follow-up (for its TASK.txt); none: ""."""
        from ..inputs import prompt_section, remembered, safe_names, turn_dir

        files = remembered(self.ctx.store, rec.task_id)
        subdir = turn_dir(self.ctx.parts.conversations.turn_number(rec)) if files else ""
        return prompt_section(ws.task_dir, files, safe_names(a.filename for a in files), subdir=subdir)

    def run(self, rec: TaskRecord, ws: "Workspace") -> None:
        """Spawn the agent (its record says ``running`` with its pid) and supervise it from now on."""
        from ..agent import RunningAgent
        from ..report import notice_line_spawned

        ctx = self.ctx
        cfg = ctx.parts.agent_config_for(rec)
        try:   # the session is the task's: a follow-up's turn (ws.task_id is then its task's) continues it
            agent = RunningAgent.start(cfg, ws, task_id=rec.task_id, session_id=f"{ws.agent_id}-{ws.task_id}",
                                       model=rec.model, thinking=rec.thinking, now=ctx.wall())
        except OrchError as exc:
            log.error("task=%s: agent could not start: %s", rec.task_id, exc)
            self.finish(rec, ws, Outcome(status=FAILED, duration_s=0.0, reason=f"the agent could not start: {exc}"))
            return
        self._record_running(rec.task_id, agent)
        rec = ctx.store.get(rec.task_id) or rec
        self.board.live[rec.task_id] = Live(rec, agent, ws)
        ctx.stats.started += 1
        log.info("started task=%s agent=%s pid=%d timeout=%ss", rec.task_id, ws.agent_id, agent.pid,
                 int(cfg.timeout_s))
        ctx.parts.reporter.notice(notice_line_spawned(ws.agent_id, rec.task_id, rec.description, worker=rec.worker))
        ctx.parts.conversations.open(rec)
        ctx.emit("started", rec)
        if ctx.store.root_of(rec.task_id) is None:
            ctx.parts.claims.react_running(rec.task_id)

    def _record_running(self, task_id: str, agent: "RunningAgent") -> None:
        self.ctx.store.mark_running(task_id, pid=agent.pid, pgid=agent.pgid, proc_start=agent.proc_start,
                                    started_at=agent.started_at, deadline=agent.deadline)

    def _adopted(self, rec: TaskRecord, agent: "RunningAgent", ws: "Workspace", found_by_marker: bool) -> None:
        if found_by_marker:
            self._record_running(rec.task_id, agent)
        self.board.live[rec.task_id] = Live(rec, agent, ws)

    # -- supervise + finish -------------------------------------------------------
    def _stamp_exits(self) -> None:
        """SIGCHLD (from the signal handler): the time each ended agent exited, as the kernel told it now."""
        now = self.ctx.wall()
        for live in list(self.board.live.values()):
            live.agent.note_exit(now)

    def supervise(self) -> None:
        """Poll every running agent (timeouts included); finish those that ended."""
        if not self.board.live:
            return
        from ..procs import ProcessTable

        now = self.ctx.wall()
        procs = ProcessTable()  # read only if an agent ended: one /proc walk for all that ended this tick
        for task_id, live in list(self.board.live.items()):
            if live.agent.poll(now, procs):
                del self.board.live[task_id]
                if task_id in self.board.lost:   # another host runs it now: nothing of this run is posted
                    self._let_go(live)
                    continue
                self.finish(live.record, live.workspace, live.agent.outcome(self.ctx.wall()))

    @staticmethod
    def _let_go(live: Live) -> None:
        from ..workspace import remove_workspace

        try:
            remove_workspace(live.workspace)
        except (OSError, StateError) as exc:
            log.error("could not remove %s: %s", live.workspace.agent_dir, exc)

    def finish(self, rec: TaskRecord, ws: "Workspace", outcome: Outcome, archived: Optional[str] = None) -> None:
        """Record the outcome (archiving a workspace that is kept), post a notice, queue the result."""
        from ..inputs import forget
        from ..report import notice_line_finished, posts_whole
        from ..workspace import archive_quietly

        ctx, s = self.ctx, self.ctx.settings
        archive_path = archived
        # A RESULT.txt larger than one attachment can only be posted in part: its workspace is then
        # kept (with the failures' retention), or removing it would lose the rest of the result.
        outcome = ctx.apply("outcome", outcome, rec)
        whole = posts_whole(outcome.result_bytes)
        turn = ctx.store.root_of(rec.task_id) is not None   # its workspace is its task's: left where it is
        if archived is None and not turn and (outcome.status != OK or not whole or s.keep_success_h > 0):
            archive_path = archive_quietly(ws, s.archive_dir, success=outcome.status == OK and whole)
        ctx.store.mark_finished(rec.task_id, outcome, finished_at=ctx.wall(), archive_path=archive_path)
        ctx.stats.finished += 1
        log.info("finished task=%s agent=%s outcome=%s duration=%.1fs%s", rec.task_id, ws.agent_id,
                 outcome.status, outcome.duration_s, f" ({outcome.reason})" if outcome.reason else "")
        ctx.parts.reporter.notice(notice_line_finished(ws.agent_id, rec.task_id, outcome.status, outcome.duration_s))
        ctx.emit("finished", rec, outcome)   # the status message, before the result and its thread archived
        ctx.parts.reporter.queue(rec.task_id)
        forget(ctx.store, rec.task_id)   # kept until now: a pass killed before the agent ran fetches them again


STEP = Running
