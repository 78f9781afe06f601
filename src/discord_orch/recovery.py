"""What a pass that is gone left behind, read from the records: a plan the next pass carries out.

Every pass starts here, holding the home lock, so nothing else works on these
records meanwhile. For each record that is not done:

- ``claimed``: not started yet; it runs. It, and a task ``starting``/``running``, gets the ✅ and
  (CLAIM=thread) the claim line in its thread that its pass may have died before saying.
- ``starting``/``running`` with its agent still alive: adopted and supervised
  again (found by the recorded pid and process start time, or, when the pass
  died between the spawn and recording the pid, by the marker in the agent's
  environment).
- ``starting`` before the spawn (its workspace has not both output files): it
  never ran, so it runs now.
- ``starting``/``running`` whose agent is gone: whatever the agent left behind
  (children in its group, escapees with its marker, everything in its cgroup) is killed, and the task is judged from its
  workspace (or the workspace's archived copy, when the pass died between
  archiving it and recording that): its result, else ``interrupted`` with its
  log tail. RETRY_INTERRUPTED=true runs an interrupted task again instead, at
  most MAX_RETRY_ATTEMPTS times in all.
- ``finished``/``refused``/``reporting``: the result is owed (the outbox).
- ``reported``: posted, not cleaned up yet.

Reading the processes and killing an ended agent's leftovers happen here;
every change to a record is the pass's, when it carries out the plan.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, List, Optional, Union

from .agent import RunningAgent, outcome_from_workspace
from .cgroups import kill_leftover_cgroup
from .openclaw import AgentConfig
from .outcome import INTERRUPTED, Outcome
from .procs import find_agent_processes, kill_leftovers, process_start_ticks
from .state import CLAIMED, CLAIMING, OUTBOX_STATUSES, REPORTED, RUNNING, STARTING, Store, TaskRecord
from .workspace import Workspace, find_archived

if TYPE_CHECKING:
    from .config import Settings

log = logging.getLogger("discord_orch")

MAX_RETRY_ATTEMPTS = 3           # RETRY_INTERRUPTED runs a task at most this many times in all


@dataclass
class Restart:
    """Back to ``claimed``: the agent never ran, or runs again. ``archive`` is its old workspace."""

    record: TaskRecord
    archive: Optional[Workspace] = None
    attempts: Optional[int] = None      # the new attempt count, for a retry


@dataclass
class Adoption:
    """An agent still running: supervise it again."""

    record: TaskRecord
    agent: RunningAgent
    workspace: Workspace
    found_by_marker: bool = False       # its pid was never recorded: record it now


@dataclass
class Ended:
    """An agent that ended while no pass watched it: finish the task with this outcome."""

    record: TaskRecord
    workspace: Workspace
    outcome: Outcome
    archived: Optional[str] = None      # the workspace was found in archive/ already


@dataclass
class RecoveryPlan:
    """What to do with each task a dead pass left, in the order the pass does it."""

    ledger_lines_added: int = 0
    claiming: List[TaskRecord] = field(default_factory=list)           # thread started, winner unknown: look
    claimed: List[TaskRecord] = field(default_factory=list)            # to start, in order
    unmarked: List[TaskRecord] = field(default_factory=list)           # ✅ or claim line not known to be out
    was_running: List[Union[Restart, Adoption, Ended]] = field(default_factory=list)
    outbox: List[TaskRecord] = field(default_factory=list)             # results owed
    reported: List[TaskRecord] = field(default_factory=list)           # to clean up


def plan_recovery(store: Store, settings: "Settings", agent_config_for: Callable[[TaskRecord], AgentConfig], *,
                  wall: Callable[[], float] = time.time) -> RecoveryPlan:
    """Read the records (and the processes) and say what to do with each task left open."""
    plan = RecoveryPlan(ledger_lines_added=store.reconcile_ledger())
    plan.claiming = store.with_status(CLAIMING)
    for rec in plan.claiming:
        log.info("recovered task=%s: its thread's start was not answered; looking who has it", rec.task_id)
    for rec in store.with_status(CLAIMED):
        log.info("recovered task=%s: claimed, not started yet", rec.task_id)
        plan.claimed.append(rec)
    plan.outbox = store.with_status(*OUTBOX_STATUSES)   # before the running ones add to it
    running = store.with_status(STARTING, RUNNING)
    # the claim's marks go out on a lane while the agent starts: a pass killed meanwhile left them unsaid
    # a follow-up's turn (conversation.py) has no marks of its own, and runs in its task's workspace
    plan.unmarked = [rec for rec in plan.claimed + running if not rec.claim_reacted and store.root_of(rec.task_id) is None]
    for rec in running:
        plan.was_running.append(_recover_running(rec, settings, agent_config_for(rec), wall,
                                                 turn_of=store.root_of(rec.task_id)))
    for rec in plan.outbox:
        log.info("recovered task=%s: %s, result not posted yet", rec.task_id, rec.status)
    plan.reported = store.with_status(REPORTED)
    return plan


def _recover_running(rec: TaskRecord, settings: "Settings", cfg: AgentConfig,
                     wall: Callable[[], float], *, turn_of: Optional[str] = None) -> Union[Restart, Adoption, Ended]:
    if not rec.agent_id:  # crashed before its workspace had a name: nothing ran
        return Restart(rec)
    ws = Workspace.at(settings.workers_dir, rec.agent_id, turn_of or rec.task_id)
    if turn_of is not None and rec.agent_dir:   # a turn runs where its task's workspace is (archive/ too)
        ws = Workspace.in_dir(rec.agent_dir, rec.agent_id, turn_of)
    if rec.status == STARTING and not rec.pid and not (ws.stdout_file.exists() and ws.stderr_file.exists()):
        # The pass died before spawning (both output files are opened just before the spawn): it never ran.
        log.info("recovered task=%s: its agent was never started; starting it now", rec.task_id)
        return Restart(rec, archive=None if turn_of else ws)
    adopted = _adopt(rec, ws, cfg, wall)
    if adopted is not None:
        log.info("adopted task=%s agent=%s pid=%s (its pass is gone; supervising it again)",
                 rec.task_id, rec.agent_id, rec.pid)
        return adopted
    # The leader is gone; whatever it left behind (children in its group, escapees) must not outlive it.
    for pid in kill_leftovers(rec.agent_id):
        log.warning("task=%s: killed pid %d left behind by its ended agent %s", rec.task_id, pid, rec.agent_id)
    for pid in kill_leftover_cgroup(rec.agent_id):  # found by its name: also what left group and marker
        log.warning("task=%s: killed pid %d left in the cgroup of its ended agent %s", rec.task_id, pid, rec.agent_id)
    if not ws.agent_dir.exists():
        # The pass died between archiving the workspace and recording it: judge the archived copy.
        archived = find_archived(settings.archive_dir, rec.agent_id, rec.task_id)
        if archived is not None:
            return Ended(rec, archived, _judge(rec, archived, wall), archived=str(archived.agent_dir))
    outcome = _judge(rec, ws, wall)
    if outcome.status == INTERRUPTED and settings.retry_interrupted and rec.attempts + 1 < MAX_RETRY_ATTEMPTS:
        log.warning("task=%s interrupted; RETRY_INTERRUPTED is on: running it again (attempt %d)",
                    rec.task_id, rec.attempts + 2)
        return Restart(rec, archive=None if turn_of else ws, attempts=rec.attempts + 1)
    return Ended(rec, ws, outcome)


def _adopt(rec: TaskRecord, ws: Workspace, cfg: AgentConfig, wall: Callable[[], float]) -> Optional[Adoption]:
    """The task's agent if it still runs: by its recorded pid, else by the marker in its environment."""
    started_at = rec.started_at or wall()
    if rec.pid:
        agent = RunningAgent.adopt(rec.pid, rec.pgid or rec.pid, rec.proc_start, started_at, cfg, ws, rec.task_id)
        return Adoption(rec, agent, ws) if agent is not None else None
    # Died between the spawn and recording its pid.
    for pid in find_agent_processes(rec.agent_id or ""):
        if _group_leader(pid):  # the session leader we spawned, not one of its children
            agent = RunningAgent.adopt(pid, pid, process_start_ticks(pid), started_at, cfg, ws, rec.task_id)
            if agent is not None:
                return Adoption(rec, agent, ws, found_by_marker=True)
    return None


def _judge(rec: TaskRecord, ws: Workspace, wall: Callable[[], float]) -> Outcome:
    """The outcome of an agent that ended unwatched, from what it left in its workspace."""
    duration = max(0.0, wall() - (rec.started_at or wall()))
    if rec.status == STARTING and not rec.pid:
        reason = "the orchestrator stopped while starting the agent; no agent process is left (it may not have run)"
    else:
        reason = "the orchestrator stopped while the agent ran, and the agent is gone"
    return outcome_from_workspace(ws, status_hint=INTERRUPTED, duration_s=duration, reason=reason)


def _group_leader(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except OSError:
        return False
