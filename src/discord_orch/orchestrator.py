"""One orchestrator pass (or a watch loop): recover, poll, claim, prepare, run, report, clean up.

The walk of one task (docs/design.md) is a sequence of verbs, each a method
below that delegates to the module owning the work, each writing the task's
record (state.py's checked transitions) before and after it acts:

    recover  → recovery.py reads what a dead pass left; the pass carries out its plan
    poll     → new messages in #task-queue after the cursor (one GET when idle; a long history
               is read 1,000 messages a poll, so agents stay supervised while it is read)
    claim    → claim.py: record + ledger line + ✅, or a visible refusal
    prepare  → workspace.py: the agent's workspace
    run      → agent.py: `openclaw agent` in its own process group, supervised
    finish   → classify the outcome, archive a failed workspace
    report   → reporter.py: one result message in #results (nonce = task id: never twice)
    clean_up → reporter.py, after the post: remove (or keep) the workspace

A pass ends when nothing runs, nothing waits to be claimed and every result
is posted or, when Discord would not take it, left in the outbox (records
in ``finished``/``refused``/``reporting``, see reporter.py) for the next pass.
Every way a pass ends is logged.

- Discord down at the start of a pass: with agents to supervise (adopted or
  recovered) the pass keeps supervising them, timeouts included, and polls later;
  with none it ends with exit code 4.
- One pass per home works at a time (the home lock); the others log
  "pass skipped" and exit 0 at once.
- The home unwritable or the disk full: one line and exit 5 (StateError, also
  from the lanes); each record change is one SQLite transaction, so none is half
  written, and the next pass carries on from the last one that was.

Stop and retry (controls.py)
----------------------------
Once per POLL_INTERVAL, while anything can be stopped or retried, the pass looks at those task
messages for a 🛑 / 🔁 (one request; none when nothing is watched) and, every turn, carries out
what was asked there or in a task's thread (``_carry_out_controls``): a task not started yet
never runs (claimed → finished, ``stopped``); a running agent gets the timeout's sequence and
ends ``stopped``; a retry puts the task back in line as its next attempt.

SIGTERM / SIGINT
----------------
The pass stops claiming, terminates every running agent with the timeout's
sequence (SIGTERM to its process group, SIGKILL after KILL_GRACE, stragglers
swept), records each as ``killed`` ("stopped by the orchestrator"), tries for at
most STOP_DRAIN_CAP_S to post their results (what is not posted stays in the
outbox), logs "pass stopped by SIGTERM" and exits 143 (SIGINT: 130). Tasks
claimed but not started stay claimed and run in the next pass. SIGKILL cannot be
handled: the next pass recovers (recovery.py).
"""

from __future__ import annotations

import functools
import logging
import signal
import threading
import time
from typing import TYPE_CHECKING, Callable, Dict, List, NamedTuple, Optional

from .budget import BudgetGate, Budgets
from .claim import Claims, Decision
from .config import Settings
from .controls import RETRY, STOP, STOP_EMOJI, Controls, Request
from .conversation import Conversations
from .discord_api import DiscordClient
from .errors import DiscordError, OrchError, StateError, Unauthorized
from .hosts import Presence, read_hosts
from .intake import LOOK_AGAIN_PASSED_S, RETRY_SET_ASIDE_S, Intake
from .lanes import Lane, drain, guarded
from .models import Message, User
from .order import HostSeen, Order
from .outcome import FAILED, OK, STOPPED, Outcome
from .progress import StatusBoard, Watched
from .reporter import Reporter
from .state import CLAIMED, FINISHED, OUTBOX_STATUSES, REPORTING, RUNNING, STARTING, Store, TaskRecord
from .status import WaitingNote, note_pass_end
from .takeover import Takeover
from .unreachable import Unreachable
from .waker import Waker
from .watchdog import Watchdog

if TYPE_CHECKING:
    from .agent import RunningAgent
    from .openclaw import AgentConfig
    from .workspace import Workspace

# An idle pass, the one cron runs every minute, loads none of what runs, reports or prepares
# agents (agent, openclaw, procs, recovery, report, workspace): those are imported in the verbs
# that use them, the first time there is something to do (tests/test_idle_pass.py).

log = logging.getLogger("discord_orch")

TICK_S = 0.25                    # longest sleep of the main loop between checks
PRUNE_EVERY_S = 3600.0           # prune archive/ this often (retention is in hours): a pass ending, or --watch
LAST_PRUNE_META = "last_prune"   # meta key: when archive/ was last pruned (epoch seconds)
DISK_FULL_NAMED = 3               # archived workspaces named, largest first, when the disk is full
MIB = 1024 * 1024
DRAIN_CAP_S = 120.0              # longest wait at the end of a pass for the lanes to finish posting
STOP_DRAIN_CAP_S = 20.0          # the same, after SIGTERM/SIGINT
OUTBOX_RETRY_S = 30.0            # --watch: results Discord did not take are tried again this often


class PassStats:
    """What one pass did (its last log line counts these) and how it ended."""

    def __init__(self) -> None:
        self.polled = self.claimed = self.refused = self.started = 0
        self.finished = self.reported = self.deferred = self.adopted = 0
        self.skipped_locked = False
        self.stopped_by: Optional[int] = None
        self.fatal: Optional[str] = None


class _Live(NamedTuple):
    """A task whose agent this pass supervises."""

    record: TaskRecord
    agent: RunningAgent
    workspace: Workspace


def disk_full_advice(settings: Settings) -> str:
    """What to remove on a full disk: the largest archived workspaces, by path, in one line."""
    from .workspace import largest_archives

    largest = largest_archives(settings.archive_dir, DISK_FULL_NAMED)
    if not largest:
        return f"{settings.archive_dir} holds nothing to remove: free some space"
    names = ", ".join(f"{path} ({size / MIB:.1f} MiB)" for path, size in largest)
    return (f"remove {names} to make room (the largest archived workspaces; "
            f"ARCHIVE_RETENTION_HOURS={settings.archive_retention_h:g} removes them later)")


class Orchestrator:
    """One pass over a home: the loop and its verbs (see the module docstring)."""

    def __init__(self, settings: Settings, client: DiscordClient, store: Store, *,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.client = client
        self.store = store
        self.clock = clock
        self.wall = wall
        self.stats = PassStats()
        self._live: Dict[str, _Live] = {}
        self._ready: List[TaskRecord] = []          # claimed (by recovery), waiting for capacity
        self._unsettled: List[TaskRecord] = []      # claiming (by recovery), who has it not known yet
        self._wake = Waker()   # not threading.Event: signal handlers call wake() (see waker.py)
        self._stop_signal: Optional[int] = None
        self._fatal: Optional[OrchError] = None
        self._fatal_lock = threading.Lock()
        self._last_prune = clock()
        self._last_outbox = clock()
        self._last_set_aside = clock()
        self._last_passed_look = clock()
        self._lanes: List[Lane] = []
        self.claims = Claims(settings, client, store, on_fatal=self._set_fatal, on_done=self._wake.wake)
        self.order = Order(settings.host_tags, settings.priority_age_s, wall)
        self.intake = Intake(client, store, self.claims, settings.task_queue_channel, self.order)
        identity = self.claims.identity
        self.conversations = Conversations(settings, client, store, allows=self.claims.access.allows,
                                           guild=identity.guild, on_command=self.on_command)
        self.reporter = Reporter(settings, client, store, identity, on_fatal=self._set_fatal,
                                 on_done=self._wake.wake, after_post=self._after_post,
                                 keeps_open=self.conversations.keeps_open)
        self.status = StatusBoard(settings, client, store, submit=self._submit_task_lane, on_fatal=self._set_fatal,
                                  root_of=store.root_of, turn_number=self.conversations.turn_number,
                                  clock=clock, wall=wall)
        self._waiting_note = WaitingNote(store)   # what `discord-orch status` shows as waiting
        self.budget_gate = BudgetGate(Budgets(settings, store), hold=self.intake.hold, may_run=self.claims.runs_first,
                                      pause=lambda task_id, remove: self.claims.react_paused(task_id, remove=remove),
                                      notice=self.reporter.notice, wall=lambda: self.wall())
        self.unreachable = Unreachable(settings, client, store, self.order, submit=self._on_results_lane,
                                       guild=self.claims.identity.guild, on_fatal=self._set_fatal)
        self.controls = Controls(settings, client, store, self.claims.access, identity)
        self._last_look = float("-inf")   # when the task messages were last looked at for 🛑 / 🔁
        self.presence = Presence(settings, client, store, on_fatal=self._set_fatal, wall=wall)
        self.takeover = Takeover(settings, client, store, self.claims, on_fatal=self._set_fatal, wall=wall)
        if settings.claim == "thread":
            self.presence.after_beat = self.takeover.look
        self.reporter.gate = self.presence.fresh
        self.status.gate = self.presence.fresh
        self._lost: set = set()   # tasks another host took over while this one was silent: no result here
        self._beats_seen = 0
        self._presence_lane = Lane("presence", on_done=self._wake.wake)   # its thread in #worker-pool

    @functools.cached_property
    def agent_config(self) -> AgentConfig:
        """How every agent of this pass is run (the timeout is set per task: _agent_config_for)."""
        from .openclaw import AgentConfig

        s = self.settings
        return AgentConfig(
            openclaw_bin=s.openclaw_bin,
            local=s.agent_local,
            timeout_s=float(s.timeout_s or 0),
            kill_grace_s=s.kill_grace_s,
            cgroup=s.agent_cgroup,
            sandbox=s.agent_sandbox, sandbox_read=s.sandbox_read_paths, sandbox_write=s.sandbox_write_paths,
            user_openclaw_config=s.openclaw_config,
            extra_pythonpath=s.extra_pythonpath,
            secret_values=(s.token.reveal(),) if s.token else (),
        )

    # ------------------------------------------------------------------
    # entry points
    # ------------------------------------------------------------------
    def run_pass(self, *, watch: bool = False) -> PassStats:
        """One pass (or, with ``watch``, one that never ends by itself) under the home lock."""
        holder = self.store.try_lock()
        if holder is not None:
            who = f"pid {holder}" if holder else "another process"
            log.info("pass skipped: another pass (%s) is working on this home", who)
            self.stats.skipped_locked = True
            return self.stats
        try:
            return self._run_locked(watch=watch)
        finally:
            self.store.release_lock()

    def request_stop(self, signum: int) -> None:
        """Called from a signal handler: stop claiming, stop agents, record, exit."""
        if self._stop_signal is None:
            self._stop_signal = signum
        self._wake.wake()

    def wake(self) -> None:
        """Safe from a signal handler (SIGCHLD: an agent ended) and from any thread."""
        self._wake.wake()

    def on_command(self, kind: str, task_id: str, user: User, when: float) -> Optional[str]:
        """``stop`` or ``retry`` typed by an allowed user in a task's thread (conversation.py): the one seam
        between the thread reader and the task's controls (issue 14's stop and retry are wired here).
        Returns what to answer in the thread (None: taken, nothing to say; else why not, in one line)."""
        answer = self.controls.request(kind, task_id, user, when)
        return None if answer.taken else answer.why

    def raise_if_fatal(self) -> None:
        """Raise the error that ended the pass, if one did (cli.py turns it into an exit code)."""
        if self._fatal is not None:
            raise self._fatal

    # ------------------------------------------------------------------
    # the loop
    # ------------------------------------------------------------------
    def _run_locked(self, *, watch: bool) -> PassStats:
        if self.settings.allow_anyone:
            log.warning("ALLOW_ANYONE=true: anyone who can post in #task-queue can run an agent on this machine")
        results, notices = self.reporter.start()
        # Drained in this order: a result post queues its task's final reaction on the task lane.
        self._lanes = [results, self.claims.start(), notices, self._presence_lane]
        watchdog = Watchdog(self.settings.watchdog_s).start() if self.settings.watchdog_s > 0 else None
        try:
            self.recover()
            self._loop(watch, watchdog)
        finally:
            if watchdog is not None:
                watchdog.beat()   # the drain is capped, and the watchdog still covers it
            self.status.flush()
            drain(self._lanes, STOP_DRAIN_CAP_S if self._stop_signal else DRAIN_CAP_S, self.clock)
            if self._prune_due():
                self.prune()
            else:
                self._say_if_disk_full()
            if watchdog is not None:
                watchdog.stop()
        self._log_end()
        return self.stats

    def _loop(self, watch: bool, watchdog: Optional[Watchdog]) -> None:
        s = self.settings
        first = True
        last_poll = float("-inf")
        looked_at = -1   # tasks claimed when the pass took its last look (a pass ends: one look, not a loop)
        while True:
            if watchdog is not None:
                watchdog.beat()
            if self._fatal is not None:
                return
            stopping = self._stop_signal is not None
            if stopping:
                self._stop_agents()
            else:
                self._hosts_moved()
            if not stopping and self._capacity() > 0:
                self._start_ready()
                due = first or self.intake.more_history or (self.clock() - last_poll >= s.poll_interval)
                if due and self._capacity() > 0:   # also with a backlog: a task posted since may go first
                    self.poll(first=first)
                    first = False
                    last_poll = self.clock()
                if self.presence.fresh():   # a host that was silent claims nothing before it renewed its lease
                    self._take_backlog()
                self._start_turns()
            if not stopping:
                self._look_at_controls()
                self._carry_out_controls()
            self.supervise()
            self.status.tick(self._watched())
            if not stopping and self.presence.due() and not self._presence_lane.busy:
                self._presence_lane.submit(guarded(self.presence.beat, self._set_fatal))
            self.reporter.flush_refusals()   # what this turn refused, grouped by author, behind the results
            if watch and self.clock() - self._last_prune >= PRUNE_EVERY_S:
                self.prune()  # a pass prunes when it ends; --watch never ends, so also hourly
            if watch and not stopping and self.clock() - self._last_outbox >= OUTBOX_RETRY_S:
                self._last_outbox = self.clock()
                self.reporter.retry_outbox(running=self._live)
            if watch and self.intake.set_aside and self.clock() - self._last_set_aside >= RETRY_SET_ASIDE_S:
                self._last_set_aside = self.clock()
                self.intake.retry_set_aside()
            if watch and self.intake.passed and self.clock() - self._last_passed_look >= LOOK_AGAIN_PASSED_S:
                self._last_passed_look = self.clock()
                self.intake.reread(passed_too=True)   # taken by another host meanwhile? the cursor moves on
            if not self._live:
                if stopping:
                    return
                # a backlog waits for the next pass when this host may not claim (its presence line failed)
                backlog = self.intake.backlog and self.presence.fresh()
                if not watch and not self._ready and not backlog and not self.intake.more_history \
                        and not any(lane.busy for lane in self._lanes) and not self._turns_startable():
                    if (self.clock() - last_poll < s.poll_interval or not self.stats.claimed
                            or looked_at == self.stats.claimed):  # a slow or failing poll cannot loop
                        return
                    looked_at = self.stats.claimed
                    continue  # tasks ran: one last look for tasks that came in meanwhile
            if self.intake.more_history and not stopping and self._capacity() > 0 and not self.intake.backlog:
                continue  # read the rest of a long history without sleeping between chunks
            next_poll = last_poll + s.poll_interval - self.clock()  # wake for the next poll, not a tick later
            self._wake.wait(min(TICK_S, next_poll) if next_poll > 0 else TICK_S)

    def _log_end(self) -> None:
        st = self.stats
        st.reported = self.reporter.reported
        try:  # the records are the truth: also what a lane had no time to try (drain cap) is left
            st.deferred = len(self.store.with_status(*OUTBOX_STATUSES))
        except StateError:
            st.deferred = len(self.reporter.deferred)
        left = f"; {st.deferred} result(s) left for the next pass" if st.deferred else ""
        counts = (f"claimed {st.claimed}, refused {st.refused}, started {st.started}, finished {st.finished}, "
                  f"reported {st.reported}, deferred {st.deferred}, adopted {st.adopted}, "
                  f"requests {self.client.stats.requests}")
        if self._fatal is not None:
            st.fatal = str(self._fatal)
            log.error("pass aborted: %s (%s)%s", self._fatal, counts, left)
        elif self._stop_signal is not None:
            st.stopped_by = self._stop_signal
            log.warning("pass stopped by %s (%s)%s", signal.Signals(self._stop_signal).name, counts, left)
        elif st.deferred:
            log.warning("pass done, %d result(s) left for the next pass (%s)", st.deferred, counts)
        elif not st.claimed and not st.refused and not st.reported:
            log.info("pass done: nothing to do (%s)", counts)
        else:
            log.info("pass done (%s)", counts)
        self._note_end()

    def _note_end(self) -> None:
        """How this pass ended, and what still waits, for `discord-orch status`."""
        st = self.stats
        if st.fatal is not None:
            how = f"aborted: {st.fatal}"
        elif st.stopped_by is not None:
            how = f"stopped by {signal.Signals(st.stopped_by).name}"
        elif st.deferred:
            how = f"done, {st.deferred} result(s) left for the next pass"
        elif not st.claimed and not st.refused and not st.reported:
            how = "nothing to do"
        else:
            how = "done"
        self._note_waiting()
        try:
            note_pass_end(self.store, ended_at=self.wall(), how=how,
                          counts={"claimed": st.claimed, "refused": st.refused, "started": st.started,
                                  "finished": st.finished, "reported": st.reported, "deferred": st.deferred})
        except OSError as exc:
            log.warning("could not note how the pass ended for discord-orch status: %s", exc.strerror or exc)

    def _capacity(self) -> int:
        return self.settings.max_agents - len(self._live)

    def _set_fatal(self, exc: Exception) -> None:
        """End the pass with this error (from any thread); the loop sees it at its next turn."""
        with self._fatal_lock:
            if self._fatal is None:
                self._fatal = exc  # type: ignore[assignment]
        self._wake.wake()

    # ------------------------------------------------------------------
    # recover
    # ------------------------------------------------------------------
    def recover(self) -> None:
        """Carry out recovery's plan for what a pass that is gone left behind (we hold the home lock)."""
        if not self.store.has_open_tasks():
            return   # every task is cleaned: a pass that is gone left nothing (the idle pass ends here)
        from .recovery import Adoption, Restart, plan_recovery
        from .workspace import archive_quietly

        plan = plan_recovery(self.store, self.settings, self._agent_config_for, wall=self.wall)
        if plan.ledger_lines_added:
            log.info("recovered %d ledger line(s)", plan.ledger_lines_added)
        self._ready.extend(plan.claimed)
        self._settle_claiming(plan.claiming)
        for rec in plan.unmarked:
            self.claims.mark_claimed(rec, recovered=True)
        for item in plan.was_running:
            if isinstance(item, Restart):
                if item.archive is not None:
                    archive_quietly(item.archive, self.settings.archive_dir)
                self.store.mark_claimed_again(item.record.task_id, attempts=item.attempts)
                self._ready.append(self.store.get(item.record.task_id))  # type: ignore[arg-type]
            elif isinstance(item, Adoption):
                if item.found_by_marker:
                    self._record_running(item.record.task_id, item.agent)
                self._live[item.record.task_id] = _Live(item.record, item.agent, item.workspace)
                self.stats.adopted += 1
            else:
                self.finish(item.record, item.workspace, item.outcome, archived=item.archived)
        for rec in plan.outbox:
            self.reporter.queue(rec.task_id)
        for rec in plan.reported:
            self.reporter.clean_up(rec)

    def _settle_claiming(self, records: List[TaskRecord]) -> None:
        """Look who has each task whose thread's start was not answered. Those Discord cannot tell about
        yet are looked at again after the next poll it answers: the thread on the message keeps the task
        out of every poll, and a --watch has no next pass to recover it."""
        self._unsettled = []
        for rec in records:
            try:
                self._settled(self.claims.settle(rec, attempted=True), start=self._ready.append)
            except Unauthorized:
                raise
            except DiscordError as exc:
                log.warning("task=%s: who has it is not known yet (%s); looked at again after the next poll",
                            rec.task_id, exc)
                self._unsettled.append(rec)

    # ------------------------------------------------------------------
    # poll
    # ------------------------------------------------------------------
    def poll(self, *, first: bool = False) -> None:
        """Read #task-queue forward from the cursor; queue what is pending (intake.py); then look again
        at the starts recovery could not judge."""
        if self.intake.poll(first=first, agents_running=bool(self._live)):
            self.stats.polled += 1
            self._note_waiting()
            if self._unsettled:
                self._settle_claiming(self._unsettled)
            if self.intake.passed:
                self.unreachable.check(self.intake.passed.values(), self.hosts_seen)
        self.read_threads()

    def hosts_seen(self) -> Optional[List[HostSeen]]:
        """The hosts this one knows of, for the answer to a task no host can take (unreachable.py): their
        presence threads in #worker-pool (hosts.py; one GET, asked only when a task has waited long enough),
        and this host, seen now. None: Discord did not answer (no answer is given on a guess)."""
        if not self.settings.host_silent_after_s:   # no presence: this host cannot know the others
            return None
        me = HostSeen(self.settings.host_name, frozenset(self.settings.host_tags), self.wall())
        try:
            seen = read_hosts(self.client, self.claims.identity.guild(), self.settings.worker_pool_channel)
        except DiscordError as exc:
            log.warning("the hosts in #worker-pool could not be read (%s): no NO HOST answer this time", exc)
            return None
        return [me] + [h for h in seen if h.name != me.name]

    def _on_results_lane(self, job: Callable[[], None]) -> None:
        assert self.reporter.results_lane is not None, "Reporter.start() first"
        self.reporter.results_lane.submit(guarded(job, self._set_fatal))

    def _note_waiting(self) -> None:
        """The tasks waiting to be claimed, for `discord-orch status` (written only when they change)."""
        try:
            self._waiting_note.note(self.intake.backlog + self.intake.set_aside, self.budget_gate.paused, self.wall())
        except StateError as exc:   # a full disk: the pass goes on; status shows an older list
            log.warning("could not note the waiting tasks for discord-orch status: %s", exc)

    # ------------------------------------------------------------------
    # follow-ups (conversation.py) and the status messages (progress.py)
    # ------------------------------------------------------------------
    def read_threads(self) -> None:
        """Read the threads of open conversations (one request when there are some; none otherwise), then
        close those whose window passed."""
        try:
            self.conversations.read(self.wall())
        except Unauthorized:
            raise
        except DiscordError as exc:
            log.warning("the task threads could not be read, will retry: %s", exc)
        for rec in self.conversations.expired(self.wall()):
            self.reporter.clean_up(rec)

    def _start_turns(self) -> None:
        """Start the follow-ups whose turn it is (their task's result is out, earlier turns done); those
        waiting for a free agent say their place in line."""
        waiting = []
        for rec in self.conversations.startable(busy=lambda task_id: task_id in self._live):
            if self._capacity() > 0 and self._stop_signal is None and self._fatal is None:
                self.stats.claimed += 1
                self.start(rec)
            else:
                waiting.append(rec)
        for position, rec in enumerate(waiting, start=1):
            self.status.queued(rec, position, len(waiting))

    def _turns_startable(self) -> bool:
        return bool(self.conversations.startable(busy=lambda task_id: task_id in self._live))

    def _after_post(self, rec: TaskRecord) -> None:
        """After a result post: the task's final reaction and thread line (claim.py); after a follow-up's
        answer, its thread archived again. Either way the follow-up window runs from now."""
        self.conversations.answered(rec, self.wall())
        if self.store.root_of(rec.task_id) is None:
            self.claims.react_final(rec)
        else:
            self.claims.archive_thread(rec.channel_id)   # the follow-up unarchived it

    def _submit_task_lane(self, job: Callable[[], None]) -> None:
        assert self.claims.lane is not None, "Claims.start() first"
        self.claims.lane.submit(guarded(job, self._set_fatal))

    def _watched(self) -> List[Watched]:
        return [Watched(live.record, live.agent.started_at, (str(live.workspace.stdout_file),
                                                             str(live.workspace.stderr_file)))
                for live in self._live.values()]

    def _take_backlog(self) -> None:
        if self.intake.backlog and self.budget_gate.holds():
            self._note_waiting()   # a budget is reached: the tasks that would run wait, with ⏸ (budget.py)
        waiting = len(self.intake.backlog)
        self.intake.take(lambda: self._capacity() > 0 and self._stop_signal is None and self._fatal is None,
                         self.claim)
        if len(self.intake.backlog) != waiting:
            self._note_waiting()

    # ------------------------------------------------------------------
    # stop and retry (controls.py)
    # ------------------------------------------------------------------
    def _look_at_controls(self) -> None:
        """Once per POLL_INTERVAL: a 🛑 on what can be stopped, a 🔁 on what can run again (no request
        when there is neither)."""
        if self.clock() - self._last_look < self.settings.poll_interval:
            return
        self._last_look = self.clock()
        stoppable = {task_id: live.record.author_id for task_id, live in self._live.items()}
        stoppable.update((rec.task_id, rec.author_id) for rec in self._ready)
        stoppable.update((msg.id, msg.author.id) for msg in self.intake.backlog)
        retryable: List[str] = []
        if self.settings.retry_window_h > 0:
            since = self.wall() - self.settings.retry_window_h * 3600
            retryable = [rec.task_id for rec in self.store.retryable(since=since,
                                                                     max_attempts=self.settings.max_attempts)]
        try:
            self.controls.look(stoppable, retryable, self.wall())
        except Unauthorized:
            raise
        except DiscordError as exc:
            log.warning("could not look for stop and retry requests (looked again in %gs): %s",
                        self.settings.poll_interval, exc)

    def _carry_out_controls(self) -> None:
        """Carry out the stops and retries asked for (by reactions or in a task's thread)."""
        for req in self.controls.take(STOP):
            self._stop_task(req)
        for req in self.controls.take(RETRY):
            self._retry_task(req)

    def _stop_task(self, req: Request) -> None:
        task_id = req.task_id
        live = self._live.get(task_id)
        if live is not None:   # the timeout's sequence; supervise() finishes it as stopped
            self.controls.done(STOP, task_id)
            log.warning("task=%s: stopped by %s (%s): its agent %s gets SIGTERM, then SIGKILL after %gs",
                        task_id, req.who, req.user.id, live.workspace.agent_id, self.settings.kill_grace_s)
            live.agent.stop(self.wall(), f"stopped by {req.who}", by=req.who)
            return
        waiting = next((rec for rec in self._ready if rec.task_id == task_id), None)
        if waiting is not None:
            self._ready.remove(waiting)
            self.start(waiting)   # start() sees the stop: it never runs
            return
        msg = next((m for m in self.intake.backlog if m.id == task_id), None)
        if msg is not None:   # decided now (claimed here or not), without waiting for an agent
            self.intake.backlog.remove(msg)
            try:
                self.claim(msg)
            except (Unauthorized, StateError):
                raise
            except DiscordError as exc:   # as intake.take does: set aside, decided later (the stop waits)
                log.error("task=%s: could not be read (%s); it stays pending", msg.id, exc)
                self.intake.set_aside.append(msg)
                return
            self.intake.save_cursor()
        elif any(m.id == task_id for m in self.intake.set_aside):
            return   # the stop waits for it: decided once Discord answers, start() then sees the stop
        else:
            log.info("task=%s: stop asked by %s: nothing of it runs or waits here", task_id, req.who)
        self.controls.done(STOP, task_id)   # carried out by start(), or nothing (left) to stop

    def _stopped_before_it_ran(self, rec: TaskRecord, req: Request) -> None:
        """claimed → finished, ``stopped``: the task never runs; its result says who stopped it."""
        self.controls.done(STOP, rec.task_id)
        outcome = Outcome(status=STOPPED, duration_s=0.0, reason=f"stopped by {req.who} before it ran",
                          stopped_by=req.who)
        self.store.mark_stopped_before_it_ran(rec.task_id, outcome, finished_at=self.wall())
        self.stats.finished += 1
        log.warning("task=%s: stopped by %s (%s) before it ran", rec.task_id, req.who, req.user.id)
        self.reporter.queue(rec.task_id)
        from .inputs import forget

        forget(self.store, rec.task_id)   # its files will never be fetched

    def _retry_task(self, req: Request) -> None:
        """cleaned → claimed as the next attempt, in line for an agent (a fresh workspace)."""
        self.controls.done(RETRY, req.task_id)
        why = self.controls.why_not_retryable(req.task_id)
        rec = self.store.get(req.task_id)
        if why or rec is None:   # it cannot run again (any more)
            log.info("task=%s: retry asked by %s not carried out: %s", req.task_id, req.who, why)
            return
        attempt = self.store.mark_retry(rec.task_id)
        log.warning("task=%s: retry asked by %s (%s): attempt %d of %d", rec.task_id, req.who, req.user.id,
                    attempt, self.settings.max_attempts)
        self.claims.react_retry(rec)
        self.stats.claimed += 1
        self._ready.append(self.store.get(rec.task_id))  # type: ignore[arg-type]

    # ------------------------------------------------------------------
    # claim (or refuse)
    # ------------------------------------------------------------------
    def claim(self, msg: Message) -> None:
        """Claim a pending message and start it, or refuse it visibly (claim.py decides). A 🛑 already on it
        (as the poll showed it) is looked at first: a task stopped before it ran never runs."""
        if msg.reaction(STOP_EMOJI) is not None:   # the poll's copy: only what it shows counts, never its absence
            self.controls.check(msg, STOP, self.wall())
        decision = self.claims.decide(msg)
        if decision.record is not None:
            self.budget_gate.claimed(msg)
        if decision.passed:   # its TASK.txt needs a tag this host lacks: known only now, so looked at now
            self.intake.pass_over(msg, decision.passed)
            self.unreachable.check([msg], self.hosts_seen)
        if decision.elsewhere:
            self.intake.reread()
        self._settled(decision, start=self.start)

    def _settled(self, decision: Decision, *, start: Callable[[TaskRecord], None]) -> None:
        if decision.record is not None:
            self.stats.claimed += 1
            start(decision.record)
        elif decision.refused:
            self.stats.refused += 1
            if decision.post_refusal:
                self.reporter.queue(decision.task_id)

    # ------------------------------------------------------------------
    # prepare + run
    # ------------------------------------------------------------------
    def _start_ready(self) -> None:
        while self._ready and self._capacity() > 0 and self._stop_signal is None:
            rec = self._ready.pop(0)
            if self.conversations.may_start(rec):
                self.start(rec)
            # else: a follow-up whose turn it is not yet; _start_turns starts it when it is
        for position, rec in enumerate(self._ready, start=1):
            self.status.queued(rec, position, len(self._ready))

    def start(self, rec: TaskRecord) -> None:
        """prepare + run, with the record written around each; a task someone stopped meanwhile never runs;
        one whose files cannot all be fetched ends before its agent starts, with the reason in its result
        (inputs.py)."""
        stop = self.controls.pending(STOP, rec.task_id)
        if stop is not None:
            self._stopped_before_it_ran(rec, stop)
            return
        ws = self.prepare(rec)
        problem = self.fetch_inputs(rec, ws)
        if problem:
            log.error("task=%s: not run: %s", rec.task_id, problem)
            self.finish(rec, ws, Outcome(status=FAILED, duration_s=0.0,
                                         reason=f"refused before its agent started: {problem}"))
            return
        self.run(rec, ws)

    def prepare(self, rec: TaskRecord) -> Workspace:
        """The agent's workspace: AGENTS.md (template, worker type), TOOLS.md, TASK.txt, the config overlay.
        A follow-up's turn gets its task's workspace, with the follow-up as TASK.txt."""
        from .workspace import Workspace, agents_md_for, begin_turn, create_workspace, new_agent_id, tools_md_for

        s = self.settings
        task = self.conversations.workspace_task(rec)
        if task is not rec:
            ws = self.reporter.workspace_of(task)
            self.store.mark_starting(rec.task_id, agent_id=ws.agent_id, agent_dir=str(ws.agent_dir))
            begin_turn(ws, rec.description + self._inputs_prompt(rec, ws))
            return ws
        ws = Workspace.at(s.workers_dir, new_agent_id(self.wall()), rec.task_id)
        agents_md = agents_md_for(ws, s.workers_dir, description=rec.description, model=rec.model,
                                  thinking=rec.thinking, worker=rec.worker, default_template=s.agents_md_template,
                                  summary_max=s.summary_max)
        agents_md += self._inputs_prompt(rec, ws)
        self.store.mark_starting(rec.task_id, agent_id=ws.agent_id, agent_dir=str(ws.agent_dir))
        return create_workspace(s.workers_dir, ws.agent_id, rec.task_id, rec.description, agents_md=agents_md,
                                tools_md=tools_md_for(s.workers_dir, rec.worker),
                                user_openclaw_config=s.openclaw_config)

    def _inputs_prompt(self, rec: TaskRecord, ws: Workspace) -> str:
        """The lines naming the files of a task (for AGENTS.md) or of a follow-up (for its TASK.txt); none: ""."""
        from .inputs import prompt_section, remembered, safe_names, turn_dir

        files = remembered(self.store, rec.task_id)
        return prompt_section(ws.task_dir, files, safe_names(a.filename for a in files),
                              subdir=turn_dir(self.conversations.turn_number(rec)) if files else "")

    def fetch_inputs(self, rec: TaskRecord, ws: Workspace) -> str:
        """The files of a task into its task dir's inputs/ (a follow-up's: inputs/turn-<n>/), all of them; else
        why not (inputs.py)."""
        from .inputs import Limits, fetch_inputs, inputs_rel, remembered, turn_dir

        files = remembered(self.store, rec.task_id)
        if not files:
            return ""
        subdir = turn_dir(self.conversations.turn_number(rec))
        fetched = fetch_inputs(self.client, rec.channel_id, rec.task_id, files, ws.task_dir, Limits.of(self.settings),
                               subdir=subdir)
        if not fetched.problem:
            log.info("task=%s: %d file(s) fetched into its %s/", rec.task_id, len(fetched.names), inputs_rel(subdir))
        return fetched.problem

    def _agent_config_for(self, rec: TaskRecord) -> AgentConfig:
        from dataclasses import replace   # AgentConfig's; only when an agent starts

        return replace(self.agent_config, timeout_s=self.settings.timeout_for(rec.thinking))

    def run(self, rec: TaskRecord, ws: Workspace) -> None:
        """Spawn the agent (its record says ``running`` with its pid) and supervise it from now on."""
        from .agent import RunningAgent
        from .report import notice_line_spawned

        cfg = self._agent_config_for(rec)
        try:   # the session is the task's: a follow-up's turn (ws.task_id is then its task's) continues it
            agent = RunningAgent.start(cfg, ws, task_id=rec.task_id, session_id=f"{ws.agent_id}-{ws.task_id}",
                                       model=rec.model, thinking=rec.thinking, now=self.wall())
        except OrchError as exc:
            log.error("task=%s: agent could not start: %s", rec.task_id, exc)
            self.finish(rec, ws, Outcome(status=FAILED, duration_s=0.0, reason=f"the agent could not start: {exc}"))
            return
        self._record_running(rec.task_id, agent)
        rec = self.store.get(rec.task_id) or rec
        self._live[rec.task_id] = _Live(rec, agent, ws)
        self.stats.started += 1
        log.info("started task=%s agent=%s pid=%d timeout=%ss", rec.task_id, ws.agent_id, agent.pid,
                 int(cfg.timeout_s))
        self.reporter.notice(notice_line_spawned(ws.agent_id, rec.task_id, rec.description, worker=rec.worker))
        self.conversations.open(rec)
        self.status.running(rec)
        if self.store.root_of(rec.task_id) is None:
            self.claims.react_running(rec.task_id)

    def _record_running(self, task_id: str, agent: RunningAgent) -> None:
        self.store.mark_running(task_id, pid=agent.pid, pgid=agent.pgid, proc_start=agent.proc_start,
                                started_at=agent.started_at, deadline=agent.deadline)

    # ------------------------------------------------------------------
    # supervise + finish
    # ------------------------------------------------------------------
    def supervise(self) -> None:
        """Poll every running agent (timeouts included); finish those that ended."""
        if not self._live:
            return
        from .procs import ProcessTable

        now = self.wall()
        procs = ProcessTable()  # read only if an agent ended: one /proc walk for all that ended this tick
        for task_id, live in list(self._live.items()):
            if live.agent.poll(now, procs):
                del self._live[task_id]
                if task_id in self._lost:   # another host runs it now: nothing of this run is posted
                    from .workspace import remove_workspace

                    try:
                        remove_workspace(live.workspace)
                    except (OSError, StateError) as exc:
                        log.error("could not remove %s: %s", live.workspace.agent_dir, exc)
                    continue
                self.finish(live.record, live.workspace, live.agent.outcome(self.wall()))

    def _hosts_moved(self) -> None:
        """What the presence lane found: tasks this host took over (to start), or this host's own open
        tasks taken over by another while it was silent (stopped here, recorded elsewhere, never posted)."""
        while not self.takeover.taken.empty():
            self._ready.append(self.takeover.taken.get())
        taker = self.presence.lost_to   # while set, this host claims and posts nothing (Presence.fresh)
        if taker is not None:
            for rec in self.store.with_status(CLAIMED, STARTING, RUNNING, FINISHED, REPORTING):
                live = self._live.get(rec.task_id)
                if live is not None:
                    live.agent.stop(self.wall(), f"taken over by {taker}")
                    self._lost.add(rec.task_id)
                self.store.mark_elsewhere(rec.task_id, host=taker)
                self.status.forget(rec.task_id)
                log.warning("task=%s: taken over by %s while this host was silent; not posted here", rec.task_id,
                            taker)
            self._ready = []   # all were this host's open tasks, now elsewhere
            self.presence.lost_to = None
        if self.presence.beats != self._beats_seen:   # a line is out: results held while silent may go
            self._beats_seen = self.presence.beats
            if self.reporter.deferred and self.presence.fresh():
                self.reporter.retry_outbox(running=self._live)

    def _stop_agents(self) -> None:
        for live in self._live.values():
            live.agent.stop(self.wall(), "the orchestrator was stopped")

    def finish(self, rec: TaskRecord, ws: Workspace, outcome: Outcome, *, archived: Optional[str] = None) -> None:
        """Record the outcome (archiving a workspace that is kept), post a notice, queue the result."""
        from .report import notice_line_finished, posts_whole
        from .workspace import archive_quietly

        archive_path = archived
        # A RESULT.txt larger than one attachment can only be posted in part: its workspace is then
        # kept (with the failures' retention), or removing it would lose the rest of the result.
        outcome = self._flag_cost(rec, outcome)
        whole = posts_whole(outcome.result_bytes)
        turn = self.store.root_of(rec.task_id) is not None   # its workspace is its task's: left where it is
        if archived is None and not turn and (outcome.status != OK or not whole or self.settings.keep_success_h > 0):
            archive_path = archive_quietly(ws, self.settings.archive_dir, success=outcome.status == OK and whole)
        self.store.mark_finished(rec.task_id, outcome, finished_at=self.wall(), archive_path=archive_path)
        self.stats.finished += 1
        log.info("finished task=%s agent=%s outcome=%s duration=%.1fs%s", rec.task_id, ws.agent_id,
                 outcome.status, outcome.duration_s, f" ({outcome.reason})" if outcome.reason else "")
        self.reporter.notice(notice_line_finished(ws.agent_id, rec.task_id, outcome.status, outcome.duration_s))
        self.status.finished(rec, outcome.status, outcome.duration_s)   # before the result, and its thread archived
        self.reporter.queue(rec.task_id)
        from .inputs import forget

        forget(self.store, rec.task_id)   # kept until now: a pass killed before the agent ran fetches them again

    def _flag_cost(self, rec: TaskRecord, outcome: Outcome) -> Outcome:
        """TASK_MAX_USD: a note in the result of a task whose cost passed it (known only now: budget.py)."""
        from .budget import over_task_max

        note = over_task_max(outcome, rec.model, self.settings, self.budget_gate.budgets)
        return outcome._replace(notes=outcome.notes + (note,)) if note else outcome

    def _prune_due(self) -> bool:
        """Not on every cron pass: archive/ is read once per PRUNE_EVERY_S, whichever pass comes then."""
        try:
            last = self.store.get_meta(LAST_PRUNE_META)
            return last is None or not 0 <= self.wall() - float(last) < PRUNE_EVERY_S
        except (StateError, ValueError):
            return True

    def prune(self) -> None:
        """Remove archived workspaces past their retention; on a full disk, say which to remove."""
        self._last_prune = self.clock()
        self._prune_expired()
        self._say_if_disk_full()

    def _say_if_disk_full(self) -> None:
        if self.store.disk_is_full():
            log.error("the disk holding %s is full: %s", self.settings.runtime_dir, disk_full_advice(self.settings))

    def _prune_expired(self) -> None:
        from .workspace import prune_archive

        s = self.settings
        try:
            removed = prune_archive(s.archive_dir, s.archive_retention_h, self.wall(),
                                    success_hours=s.keep_success_h)
            self.store.set_meta(LAST_PRUNE_META, repr(self.wall()))
        except (OSError, StateError) as exc:
            log.error("could not prune %s: %s", s.archive_dir, exc)
            return
        for path in removed:
            log.info("pruned %s (past its retention: ARCHIVE_RETENTION_HOURS=%g, KEEP_SUCCESS_HOURS=%g)",
                     path, s.archive_retention_h, s.keep_success_h)

