"""One orchestrator pass (or a watch loop): recover, poll, claim, prepare, run, report, clean up.

The walk of one task (docs/design.md) is a sequence of verbs, each a method
below, each writing the task's record before and after it acts:

    recover  → tasks a dead pass left behind: adopt, report, or mark interrupted
    poll     → new messages in #task-queue after the cursor (one GET when idle; a long history
               is read 1,000 messages a poll, so agents stay supervised while it is read)
    claim    → record + ledger line (+ ✅ on the task lane); or refuse visibly
    prepare  → the agent's workspace
    run      → `openclaw agent` in its own process group, supervised
    finish   → classify the outcome, archive a failed workspace
    report   → one result message in #results (nonce = task id: never twice)
    clean_up → remove (or keep) the workspace

A pass ends when nothing runs, nothing waits to be claimed and every result
is posted or, when Discord would not take it, left in the outbox (records
in ``finished``/``reporting``) for the next pass. Every way a pass ends is
logged.

Exactly one result per claimed task
-----------------------------------
- Outbox: a result that Discord would not take (down, 5xx after the client's
  retries, a rate-limit wait over RATE_LIMIT_MAX_WAIT) stays in state.db and is
  posted by a later pass (``--watch``: every OUTBOX_RETRY_S). The pass still
  exits 0 and logs "N result(s) left for the next pass".
- Every result post carries the nonce ``r<task_id>`` with ``enforce_nonce``, and
  ``reported`` keeps the message id. A record found in ``reporting`` (a post was
  attempted, its fate unknown) is first looked up in #results (a bounded read of
  the messages since the task finished, REPORT_SEARCH_MAX messages) so that a post
  that did land is not repeated after Discord's nonce window has passed.
- A result Discord refuses for its shape (a 4xx such as an attachment over the
  upload limit or a reply it cannot make) or that cannot be formatted is posted
  short instead (status, task, why, where the archived workspace is): a refusal
  must not keep a task in the outbox forever.
- Discord down at the start of a pass: with agents to supervise (adopted or
  recovered) the pass keeps supervising them, timeouts included, and polls later;
  with none it ends with exit code 4.
- Recovery (the start of every pass): an agent still running is adopted and
  supervised; one that ended meanwhile is reported from its workspace (also when
  its workspace had already been archived); one that died without a result is
  reported as interrupted with its log tail (RETRY_INTERRUPTED=true runs it again,
  at most MAX_RETRY_ATTEMPTS times in all).
- One pass per home works at a time (the home lock); the others log
  "pass skipped" and exit 0 at once.
- The home unwritable or the disk full: one line and exit 5 (StateError, also
  from the lanes); each record change is one SQLite transaction, so none is half
  written, and the next pass carries on from the last one that was.

SIGTERM / SIGINT
----------------
The pass stops claiming, terminates every running agent with the timeout's
sequence (SIGTERM to its process group, SIGKILL after KILL_GRACE, stragglers
swept), records each as ``killed`` ("stopped by the orchestrator"), tries for at
most STOP_DRAIN_CAP_S to post their results (what is not posted stays in the
outbox), logs "pass stopped by SIGTERM" and exits 143 (SIGINT: 130). Tasks
claimed but not started stay claimed and run in the next pass. SIGKILL cannot be
handled: the next pass recovers, as above.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

from . import report as reportfmt
from .agent import RunningAgent, outcome_from_workspace
from .claim import CLAIM_EMOJI, REFUSED_EMOJI, Access, claim_task, is_pending, refuse_task
from .config import Settings
from .discord_api import DiscordClient
from .errors import (BadRequest, DiscordError, DiscordUnavailable, Forbidden, NotFound, OrchError, RateLimitedTooLong,
                     StateError, Unauthorized)
from .lanes import Lane, NoticeLane
from .models import Message, snowflake_at
from .openclaw import AgentConfig
from .outcome import INTERRUPTED, OK, TIMED_OUT, Outcome, Usage
from .prices import load_prices
from .procs import ProcessTable, find_agent_processes, kill_leftovers, process_start_ticks
from .state import (CLAIMED, CLEANED, FINISHED, REFUSED, REPORTED, REPORTING, RUNNING, STARTING, Store,
                    TaskRecord)
from .tasks import TASK_ATTACHMENT, parse_task
from .waker import Waker
from .watchdog import Watchdog
from .workspace import (RESULT_READ_MAX, Workspace, agents_template_for, archive_workspace, create_workspace,
                        new_agent_id, prune_archive, read_head, remove_workspace, render_agents_md, tools_md_for)

log = logging.getLogger("discord_orch")

TICK_S = 0.25                    # longest sleep of the main loop between checks
PRUNE_EVERY_S = 3600.0           # --watch: prune archive/ this often (a pass prunes when it ends)
DRAIN_CAP_S = 120.0              # longest wait at the end of a pass for the lanes to finish posting
STOP_DRAIN_CAP_S = 20.0          # the same, after SIGTERM/SIGINT
OUTBOX_RETRY_S = 30.0            # --watch: results Discord did not take are tried again this often
POLL_MAX_MESSAGES = 1000         # one poll reads at most this many (10 pages); more history: poll again at once
REPORT_SEARCH_MAX = 500          # messages of #results read at most to find an unconfirmed post
REPORT_SEARCH_SLACK_S = 600.0    # look this far before the task finished (clock skew with Discord)
MAX_TASK_ATTACHMENT_BYTES = 1024 * 1024
MAX_RETRY_ATTEMPTS = 3           # RETRY_INTERRUPTED re-runs a task at most this many times
OUTCOME_TEXT_KEPT = 64 * 1024    # result text kept in the record; RESULT.txt itself stays in the workspace
OUTCOME_TEXTS = ("result_text", "summary_text", "reply_text", "log_tail", "error_message")  # dropped once cleaned
INTENT_NOTICE_KEY = "notice:message-content-intent"
CURSOR_KEY = "cursor:{channel}"

STATUS_EMOJI = {OK: "🏁", TIMED_OUT: "⏱"}
FAILED_EMOJI = "❌"
RUNNING_EMOJI = "⏳"


@dataclass
class PassStats:
    polled: int = 0
    claimed: int = 0
    refused: int = 0
    started: int = 0
    finished: int = 0
    reported: int = 0
    deferred: int = 0
    adopted: int = 0
    skipped_locked: bool = False
    stopped_by: Optional[int] = None
    fatal: Optional[str] = None


@dataclass
class _Live:
    """A task whose agent this pass supervises."""

    record: TaskRecord
    agent: RunningAgent
    workspace: Workspace


class Orchestrator:
    def __init__(self, settings: Settings, client: DiscordClient, store: Store, *,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.client = client
        self.store = store
        self.clock = clock
        self.wall = wall
        self.stats = PassStats()
        self.agent_config = AgentConfig(
            openclaw_bin=settings.openclaw_bin,
            local=settings.agent_local,
            timeout_s=float(settings.timeout_s or 0),   # per task: see _timeout_for
            kill_grace_s=settings.kill_grace_s,
            user_openclaw_config=settings.openclaw_config,
            extra_pythonpath=settings.extra_pythonpath,
            secret_values=(settings.token.reveal(),) if settings.token else (),
        )
        self._live: Dict[str, _Live] = {}
        self._backlog: List[Message] = []           # pending, not yet decided (no capacity yet)
        self._ready: List[TaskRecord] = []          # claimed (by recovery), waiting for capacity
        self._seen_upto: Optional[str] = None
        self._more_history = False                   # the last poll stopped at POLL_MAX_MESSAGES
        self._wake = Waker()   # not threading.Event: signal handlers call wake() (see waker.py)
        self._stop_signal: Optional[int] = None
        self._fatal: Optional[OrchError] = None
        self._bot_id: Optional[str] = None
        self._guild_id: Optional[str] = settings.guild_id or None
        self._prices = None
        self._last_prune = clock()
        self._lock = threading.Lock()
        self._deferred: set = set()                  # task ids whose result Discord did not take (yet)
        self._last_outbox = clock()
        self.access = Access(bot_user_id=self.bot_user_id, allowed_user_ids=settings.allowed_user_ids,
                             allowed_role_ids=settings.allowed_role_ids, allow_anyone=settings.allow_anyone,
                             member_roles=self._member_roles)
        self._task_lane: Optional[Lane] = None
        self._results_lane: Optional[Lane] = None
        self._notice_lane: Optional[NoticeLane] = None

    # ------------------------------------------------------------------
    # entry points
    # ------------------------------------------------------------------
    def run_pass(self, *, watch: bool = False) -> PassStats:
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

    # ------------------------------------------------------------------
    # the loop
    # ------------------------------------------------------------------
    def _run_locked(self, *, watch: bool) -> PassStats:
        s = self.settings
        if s.allow_anyone:
            log.warning("ALLOW_ANYONE=true: anyone who can post in #task-queue can run an agent on this machine")
        self._start_lanes()
        watchdog = Watchdog(s.watchdog_s).start() if s.watchdog_s > 0 else None
        try:
            self.recover()
            first = True
            last_poll = float("-inf")
            looked_at = -1   # tasks claimed when the pass took its last look (a pass ends: one look, not a loop)
            while True:
                if watchdog is not None:
                    watchdog.beat()
                if self._fatal is not None:
                    break
                now = self.clock()
                stopping = self._stop_signal is not None
                if stopping:
                    self._stop_agents(now)
                elif self._capacity() > 0:
                    self._start_ready()
                    due = first or self._more_history or (now - last_poll >= s.poll_interval)
                    if due and self._capacity() > 0 and not self._backlog:
                        self.poll(first=first)
                        first = False
                        last_poll = self.clock()
                    self._take_backlog()
                self.supervise()
                if watch and self.clock() - self._last_prune >= PRUNE_EVERY_S:
                    self.prune()  # a pass prunes when it ends; --watch never ends, so also hourly
                if watch and not stopping and self.clock() - self._last_outbox >= OUTBOX_RETRY_S:
                    self._retry_outbox()
                if not self._live:
                    if stopping:
                        break
                    if (not watch and not self._ready and not self._backlog and not self._more_history
                            and not self._lanes_busy()):
                        if (self.clock() - last_poll < s.poll_interval or not self.stats.claimed
                                or looked_at == self.stats.claimed):  # a slow or failing poll cannot loop
                            break
                        looked_at = self.stats.claimed
                        continue  # tasks ran: one last look for tasks that came in meanwhile
                if self._more_history and not stopping and self._capacity() > 0 and not self._backlog:
                    continue  # read the rest of a long history without sleeping between chunks
                next_poll = last_poll + s.poll_interval - self.clock()  # wake for the next poll, not a tick later
                self._wake.wait(min(TICK_S, next_poll) if next_poll > 0 else TICK_S)
        finally:
            if watchdog is not None:
                watchdog.beat()   # the drain is capped, and the watchdog still covers it
            self._drain_lanes(STOP_DRAIN_CAP_S if self._stop_signal else DRAIN_CAP_S)
            self.prune()
            if watchdog is not None:
                watchdog.stop()
        self._log_end()
        return self.stats

    def _log_end(self) -> None:
        st = self.stats
        try:  # the records are the truth: also what a lane had no time to try (drain cap) is left
            st.deferred = len(self.store.with_status(FINISHED, REFUSED, REPORTING))
        except StateError:
            st.deferred = len(self._deferred)
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

    def raise_if_fatal(self) -> None:
        if self._fatal is not None:
            raise self._fatal

    def _capacity(self) -> int:
        return self.settings.max_agents - len(self._live)

    # ------------------------------------------------------------------
    # recover
    # ------------------------------------------------------------------
    def recover(self) -> None:
        """Pick up what a pass that is gone left behind (we hold the home lock)."""
        added = self.store.reconcile_ledger()
        if added:
            log.info("recovered %d ledger line(s)", added)
        for rec in self.store.with_status(CLAIMED):
            log.info("recovered task=%s: claimed, not started yet", rec.task_id)
            self._ready.append(rec)
            if not rec.claim_reacted:
                self._react_claimed(rec.task_id)
        outbox = self.store.with_status(FINISHED, REFUSED, REPORTING)  # before _recover_running adds to it
        for rec in self.store.with_status(STARTING, RUNNING):
            self._recover_running(rec)
        for rec in outbox:
            log.info("recovered task=%s: %s, result not posted yet", rec.task_id, rec.status)
            self._queue_report(rec.task_id)
        for rec in self.store.with_status(REPORTED):
            self.clean_up(rec)

    def _recover_running(self, rec: TaskRecord) -> None:
        if not rec.agent_id:  # crashed before its workspace had a name: nothing ran
            self.store.update(rec.task_id, status=CLAIMED)
            self._ready.append(self.store.get(rec.task_id))  # type: ignore[arg-type]
            return
        ws = Workspace.at(self.settings.workers_dir, rec.agent_id, rec.task_id)
        if rec.status == STARTING and not rec.pid and not (ws.stdout_file.exists() and ws.stderr_file.exists()):
            # The pass died before spawning (both output files are opened just before the spawn): it never ran.
            log.info("recovered task=%s: its agent was never started; starting it now", rec.task_id)
            self._archive_quietly(ws)
            self.store.update(rec.task_id, status=CLAIMED, agent_id=None, agent_dir=None)
            self._ready.append(self.store.get(rec.task_id))  # type: ignore[arg-type]
            return
        agent = None
        cfg = self._agent_config_for(rec)
        if rec.pid:
            agent = RunningAgent.adopt(rec.pid, rec.pgid or rec.pid, rec.proc_start, rec.started_at or self.wall(),
                                       cfg, ws, rec.task_id)
        else:  # died between the spawn and recording its pid: find it by the marker in its environment
            for pid in find_agent_processes(rec.agent_id):
                if _group_leader(pid):  # the session leader we spawned, not one of its children
                    agent = RunningAgent.adopt(pid, pid, process_start_ticks(pid), rec.started_at or self.wall(),
                                               cfg, ws, rec.task_id)
                    if agent is not None:
                        self.store.update(rec.task_id, status=RUNNING, pid=pid, pgid=pid,
                                          proc_start=agent.proc_start, started_at=agent.started_at,
                                          deadline=agent.deadline)
                        break
        if agent is not None:
            log.info("adopted task=%s agent=%s pid=%s (its pass is gone; supervising it again)",
                     rec.task_id, rec.agent_id, rec.pid)
            self._live[rec.task_id] = _Live(rec, agent, ws)
            self.stats.adopted += 1
            return
        # The leader is gone; whatever it left behind (children in its group, escapees) must not outlive it.
        for pid in kill_leftovers(rec.agent_id):
            log.warning("task=%s: killed pid %d left behind by its ended agent %s", rec.task_id, pid, rec.agent_id)
        archived = None
        if not ws.agent_dir.exists():
            # The pass died between archiving the workspace and recording it: judge the archived copy.
            archived = self._find_archived(rec.agent_id, rec.task_id)
            if archived is not None:
                ws = archived
        duration = max(0.0, self.wall() - (rec.started_at or self.wall()))
        if rec.status == STARTING and not rec.pid:
            reason = "the orchestrator stopped while starting the agent; no agent process is left (it may not have run)"
        else:
            reason = "the orchestrator stopped while the agent ran, and the agent is gone"
        outcome = outcome_from_workspace(ws, status_hint=INTERRUPTED, duration_s=duration, reason=reason)
        if archived is not None:
            self.finish(rec, ws, outcome, archived=str(archived.agent_dir))
            return
        if (outcome.status == INTERRUPTED and self.settings.retry_interrupted
                and rec.attempts + 1 < MAX_RETRY_ATTEMPTS):
            log.warning("task=%s interrupted; RETRY_INTERRUPTED is on: running it again (attempt %d)",
                        rec.task_id, rec.attempts + 2)
            self._archive_quietly(ws)
            self.store.update(rec.task_id, status=CLAIMED, attempts=rec.attempts + 1, agent_id=None,
                              agent_dir=None, pid=None, pgid=None, proc_start=None)
            self._ready.append(self.store.get(rec.task_id))  # type: ignore[arg-type]
            return
        self.finish(rec, ws, outcome)

    # ------------------------------------------------------------------
    # poll
    # ------------------------------------------------------------------
    def poll(self, *, first: bool = False) -> None:
        """Read #task-queue forward from the cursor; queue what is pending."""
        channel = self.settings.task_queue_channel
        cursor_key = CURSOR_KEY.format(channel=channel)
        after = self._seen_upto or self.store.get_meta(cursor_key) or "0"
        # In chunks: a first pass over a long history (switching from the old scripts) must not stop
        # supervising agents or hold the whole channel in memory while it reads.
        self._more_history = False
        try:
            messages = list(itertools.islice(self.client.iter_messages_after(channel, after), POLL_MAX_MESSAGES))
        except DiscordError as exc:
            transient = isinstance(exc, (DiscordUnavailable, RateLimitedTooLong))
            if isinstance(exc, Unauthorized) or (first and not (transient and self._live)):
                raise
            # Agents are running (adopted, or recovered and started): keep supervising them, so
            # that their timeouts hold while Discord is away; the poll is tried again later.
            log.warning("poll failed, will retry: %s", exc)
            return
        self.stats.polled += 1
        self._more_history = len(messages) == POLL_MAX_MESSAGES
        if messages:
            self._seen_upto = messages[-1].id
            known = self.store.known_ids([m.id for m in messages])
            pending = [m for m in messages if is_pending(m, known) and not self._own_report(m)]
            self._backlog.extend(pending)
            log.debug("poll: %d new message(s), %d pending", len(messages), len(pending))
        self._save_cursor()

    def _own_report(self, msg: Message) -> bool:
        """A result or refusal this bot posted as a reply in #task-queue (RESULTS_CHANNEL may be
        that channel): never a task. ``submit`` posts are never replies, so they still run."""
        if msg.referenced_message_id is None or not msg.author.bot:
            return False
        try:
            return msg.author.id == self.bot_user_id()
        except DiscordError:
            return True  # cannot tell who we are: a bot's reply is not worth the risk of a loop

    def _save_cursor(self) -> None:
        """Everything at or below the cursor is decided: the oldest undecided message stops it."""
        if self._seen_upto is None:
            return
        cursor = self._seen_upto
        if self._backlog:
            cursor = str(int(min(self._backlog, key=lambda m: int(m.id)).id) - 1)
        key = CURSOR_KEY.format(channel=self.settings.task_queue_channel)
        if self.store.get_meta(key) != cursor:
            self.store.set_meta(key, cursor)

    def _take_backlog(self) -> None:
        while self._backlog and self._capacity() > 0 and self._stop_signal is None and self._fatal is None:
            msg = self._backlog.pop(0)
            try:
                self.decide(msg)
            except (Unauthorized, StateError):
                raise
            except DiscordError as exc:
                log.error("task=%s: could not be read (%s); it stays pending", msg.id, exc)
                self._backlog.insert(0, msg)
                break
        self._save_cursor()

    # ------------------------------------------------------------------
    # claim (or refuse)
    # ------------------------------------------------------------------
    def decide(self, msg: Message) -> None:
        verdict = self.access.check(msg)
        if not verdict.allowed:
            self._refuse(msg, verdict.reason)
            return
        if not msg.content.strip() and not msg.attachments and not msg.author.bot:
            self._refuse(msg, "the message arrived empty: the bot cannot read message content. Turn on "
                              "MESSAGE CONTENT INTENT for the bot (Discord Developer Portal → Bot → Privileged "
                              "Gateway Intents)", intent=True)
            return
        attachment_text = self._task_attachment(msg)
        parsed = parse_task(msg.content, self.settings.aliases, attachment_text=attachment_text)
        if parsed.problems:
            self._refuse(msg, "; ".join(parsed.problems), description=parsed.description)
            return
        if not claim_task(self.store, msg, description=parsed.description, model_alias=parsed.model_alias,
                          model=parsed.model or "", thinking=parsed.thinking, worker=parsed.worker):
            log.info("task=%s already claimed; skipped", msg.id)
            return
        self.stats.claimed += 1
        log.info("claimed task=%s model=%s thinking=%s%s", msg.id, parsed.model, parsed.thinking,
                 f" worker={parsed.worker}" if parsed.worker else "")
        self._react_claimed(msg.id)
        rec = self.store.get(msg.id)
        assert rec is not None
        self.start(rec)

    def _task_attachment(self, msg: Message) -> Optional[str]:
        for att in msg.attachments:
            if att.filename == TASK_ATTACHMENT:
                if att.size > MAX_TASK_ATTACHMENT_BYTES:
                    return None
                data = self.client.download(att.url, max_bytes=MAX_TASK_ATTACHMENT_BYTES)
                return data.decode("utf-8", errors="replace").replace("\x00", "")
        return None

    def _refuse(self, msg: Message, reason: str, *, description: str = "", intent: bool = False) -> None:
        if not refuse_task(self.store, msg, reason=reason, description=description):
            return
        self.stats.refused += 1
        said = self.store.get_meta(INTENT_NOTICE_KEY) if intent else None
        if said:  # the explanation is said once, in the log and in #results, not once per message
            log.info("refused task=%s author=%s: arrived empty too (see task %s)", msg.id, msg.author.id, said)
        else:
            log.warning("refused task=%s author=%s: %s", msg.id, msg.author.id, reason)
        self._task_lane_submit(lambda: self._react(msg.id, REFUSED_EMOJI))
        if intent:
            if said:
                # Said once already: mark this one done without another post.
                self.store.update(msg.id, status=REPORTED)
                return
            self.store.set_meta(INTENT_NOTICE_KEY, msg.id)
        self._queue_report(msg.id)

    def _react_claimed(self, task_id: str) -> None:
        def job() -> None:
            if self._react(task_id, CLAIM_EMOJI):
                self.store.update(task_id, claim_reacted=1)
        self._task_lane_submit(job)

    # ------------------------------------------------------------------
    # prepare + run
    # ------------------------------------------------------------------
    def _start_ready(self) -> None:
        while self._ready and self._capacity() > 0 and self._stop_signal is None:
            self.start(self._ready.pop(0))

    def start(self, rec: TaskRecord) -> None:
        """prepare + run, with the record written around each."""
        try:
            ws = self.prepare(rec)
        except StateError:
            raise
        self.run(rec, ws)

    def prepare(self, rec: TaskRecord) -> Workspace:
        s = self.settings
        agent_id = new_agent_id(self.wall())
        template = None
        if s.agents_md_template is not None:
            template = s.agents_md_template.read_text(encoding="utf-8", errors="replace")
        worker_template = agents_template_for(s.workers_dir, rec.worker)
        if worker_template is not None:
            template = worker_template
        ws_probe = Workspace.at(s.workers_dir, agent_id, rec.task_id)
        agents_md = render_agents_md(agent_id=agent_id, task_id=rec.task_id, task_dir=ws_probe.task_dir,
                                     description=rec.description, model=rec.model, thinking=rec.thinking,
                                     template=template, summary_max=s.summary_max)
        self.store.update(rec.task_id, status=STARTING, agent_id=agent_id, agent_dir=str(ws_probe.agent_dir),
                          host=self.store.host)
        ws = create_workspace(s.workers_dir, agent_id, rec.task_id, rec.description, agents_md=agents_md,
                              tools_md=tools_md_for(s.workers_dir, rec.worker),
                              user_openclaw_config=s.openclaw_config)
        return ws

    def _agent_config_for(self, rec: TaskRecord) -> AgentConfig:
        return dataclasses.replace(self.agent_config, timeout_s=self.settings.timeout_for(rec.thinking))

    def run(self, rec: TaskRecord, ws: Workspace) -> None:
        session_id = f"{ws.agent_id}-{rec.task_id}"
        now = self.wall()
        try:
            agent = RunningAgent.start(self._agent_config_for(rec), ws, task_id=rec.task_id,
                                       session_id=session_id, model=rec.model, thinking=rec.thinking, now=now)
        except OrchError as exc:
            log.error("task=%s: agent could not start: %s", rec.task_id, exc)
            self.finish(rec, ws, Outcome(status="failed", duration_s=0.0, reason=f"the agent could not start: {exc}"))
            return
        self.store.update(rec.task_id, status=RUNNING, pid=agent.pid, pgid=agent.pgid,
                          proc_start=agent.proc_start, started_at=agent.started_at, deadline=agent.deadline)
        rec = self.store.get(rec.task_id) or rec
        self._live[rec.task_id] = _Live(rec, agent, ws)
        self.stats.started += 1
        log.info("started task=%s agent=%s pid=%d timeout=%ss", rec.task_id, ws.agent_id, agent.pid,
                 int(self._agent_config_for(rec).timeout_s))
        self._notice(reportfmt.notice_line_spawned(ws.agent_id, rec.task_id, rec.description, worker=rec.worker))
        if self.settings.status_reactions == "full":
            self._task_lane_submit(lambda: self._react(rec.task_id, RUNNING_EMOJI))

    # ------------------------------------------------------------------
    # supervise + finish
    # ------------------------------------------------------------------
    def supervise(self) -> None:
        now = self.wall()
        procs = ProcessTable()  # read only if an agent ended: one /proc walk for all that ended this tick
        for task_id, live in list(self._live.items()):
            if live.agent.poll(now, procs):
                del self._live[task_id]
                self.finish(live.record, live.workspace, live.agent.outcome(self.wall()))

    def _stop_agents(self, now: float) -> None:
        for live in self._live.values():
            live.agent.stop(self.wall(), "the orchestrator was stopped")

    def finish(self, rec: TaskRecord, ws: Workspace, outcome: Outcome, *, archived: Optional[str] = None) -> None:
        archive_path = archived
        # A RESULT.txt larger than one attachment can only be posted in part: its workspace is then
        # kept (with the failures' retention), or removing it would lose the rest of the result.
        too_big = (outcome.result_bytes or 0) > reportfmt.ATTACHMENT_MAX_BYTES
        if archived is None and (outcome.status != OK or too_big or self.settings.keep_success_h > 0):
            archive_path = self._archive_quietly(ws, success=outcome.status == OK and not too_big)
        kept = dataclasses.replace(outcome, result_text=outcome.result_text[:OUTCOME_TEXT_KEPT])
        self.store.update(rec.task_id, status=FINISHED, finished_at=self.wall(),
                          outcome=json.dumps(dataclasses.asdict(kept)), archive_path=archive_path)
        self.stats.finished += 1
        log.info("finished task=%s agent=%s outcome=%s duration=%.1fs%s", rec.task_id, ws.agent_id,
                 outcome.status, outcome.duration_s, f" ({outcome.reason})" if outcome.reason else "")
        self._notice(reportfmt.notice_line_finished(ws.agent_id, rec.task_id, outcome.status, outcome.duration_s))
        self._queue_report(rec.task_id)

    def _find_archived(self, agent_id: str, task_id: str) -> Optional[Workspace]:
        """The archived copy of an agent dir (archive/<agent_id>, or .N after a name clash)."""
        root = Path(self.settings.archive_dir)
        candidates = [root / agent_id] + sorted(root.glob(f"{agent_id}.[0-9]*"), reverse=True)
        for agent_dir in candidates:
            task_dir = agent_dir / "tasks" / task_id
            if task_dir.is_dir():
                return Workspace(agent_id=agent_id, task_id=task_id, agent_dir=agent_dir, task_dir=task_dir)
        return None

    def _archive_quietly(self, ws: Workspace, *, success: bool = False) -> Optional[str]:
        if not ws.agent_dir.exists():
            return None
        try:
            return str(archive_workspace(ws, self.settings.archive_dir, success=success))
        except (OSError, StateError) as exc:
            log.error("could not archive %s: %s", ws.agent_dir, exc)
            return None

    # ------------------------------------------------------------------
    # report
    # ------------------------------------------------------------------
    def _queue_report(self, task_id: str) -> None:
        assert self._results_lane is not None
        self._results_lane.submit(self._guarded(lambda: self.report(task_id)))

    def _retry_outbox(self) -> None:
        """--watch: queue again the results Discord did not take (only when none is queued)."""
        self._last_outbox = self.clock()
        if self._results_lane is None or self._results_lane.busy:
            return
        for rec in self.store.with_status(FINISHED, REFUSED, REPORTING):
            if rec.task_id not in self._live:
                self._queue_report(rec.task_id)

    def report(self, task_id: str) -> None:
        """Post the one result message of a task (runs on the results lane)."""
        rec = self.store.get(task_id)
        if rec is None or rec.status not in (FINISHED, REFUSED, REPORTING):
            return
        nonce = rec.nonce or f"r{task_id}"
        how = ""
        try:
            msg = self._find_posted_result(rec) if rec.status == REPORTING else None
            if msg is not None:
                how = " (found in #results: an earlier attempt had posted it)"
            else:
                try:
                    post = self._render(rec)
                except Exception as exc:  # a bug must not cost the task its result: say so plainly instead
                    log.error("task=%s: the result could not be formatted (%s: %s); posting a short one",
                              task_id, type(exc).__name__, exc)
                    post = self._fallback_post(rec, f"it could not be formatted ({type(exc).__name__})")
                self.store.update(task_id, status=REPORTING, nonce=nonce)
                try:
                    msg = self.client.create_message(self.settings.results_channel, post.content,
                                                     files=post.files, reply_to=post.reply_to, nonce=nonce)
                except BadRequest as exc:
                    # Discord refused this post's shape (a reply it cannot make, an attachment it will not
                    # take...): nothing was created, so a plain post without them, same nonce, is still the one.
                    log.warning("task=%s: Discord refused the result post (%s); posting a short one", task_id, exc)
                    post = self._fallback_post(rec, f"Discord refused it: {exc}")
                    msg = self.client.create_message(self.settings.results_channel, post.content, nonce=nonce)
        except Unauthorized as exc:
            self._set_fatal(exc)
            return
        except (Forbidden, NotFound) as exc:
            self._set_fatal(exc)
            return
        except DiscordError as exc:
            with self._lock:
                self._deferred.add(task_id)
            log.warning("report of task=%s deferred (kept in the outbox for a later try): %s", task_id, exc)
            return
        self.store.update(task_id, status=REPORTED, result_message_id=msg.id)
        with self._lock:
            self._deferred.discard(task_id)
            self.stats.reported += 1
        log.info("reported task=%s agent=%s outcome=%s message=%s%s", task_id, rec.agent_id or "-",
                 "refused" if rec.refusal is not None else rec.outcome_data.get("status", "?"), msg.id, how)
        rec = self.store.get(task_id)
        if rec is not None:
            self._set_status_reaction(rec)
            self.clean_up(rec)

    def _fallback_post(self, rec: TaskRecord, why: str) -> reportfmt.Post:
        """A short, always valid result post: status, task, agent, why the full one is missing, and
        where the workspace is kept (it is archived now, so that cleaning up cannot lose it)."""
        if rec.refusal is not None:
            status = "REFUSED"
        else:
            raw = str(rec.outcome_data.get("status") or "")
            status = reportfmt.STATUS_WORDS.get(raw, raw.replace("_", " ") or "ended").upper()
        where = rec.archive_path
        if rec.agent_id and not where:
            where = self._archive_quietly(Workspace.at(self.settings.workers_dir, rec.agent_id, rec.task_id))
            if where:
                self.store.update(rec.task_id, archive_path=where)
        lines = [f"⚠️ **{reportfmt.escape_inline(status[:20])}** · task `{rec.task_id}` · agent `{rec.agent_id or '-'}`",
                 "The full result could not be posted: " + reportfmt.escape_inline(reportfmt.one_line(why))[:600]]
        if rec.description:
            lines.append("📝 " + reportfmt.escape_inline(reportfmt.one_line(rec.description))[:200])
        if where:
            lines.append("🗂 Workspace kept: " + reportfmt.escape_inline(where)[:300])
        return reportfmt.Post(content="\n".join(lines)[:reportfmt.MESSAGE_LIMIT])

    def _find_posted_result(self, rec: TaskRecord) -> Optional[Message]:
        """Our result for ``rec`` if an earlier attempt did post it (the record says ``reporting``:
        the post may have landed without us hearing back, and Discord forgets nonces after a few
        minutes). Reads #results forward from shortly before the task finished, at most
        REPORT_SEARCH_MAX messages; DiscordError when it cannot look (the post is deferred)."""
        since = (rec.finished_at or rec.claimed_at) - REPORT_SEARCH_SLACK_S
        after = max(int(rec.task_id), snowflake_at(since))
        me = self.bot_user_id()
        for seen, msg in enumerate(self.client.iter_messages_after(self.settings.results_channel, str(after))):
            if seen >= REPORT_SEARCH_MAX:
                log.warning("task=%s: no earlier result among the %d messages of #results read; posting it",
                            rec.task_id, REPORT_SEARCH_MAX)
                return None
            if msg.author.id != me:
                continue
            if msg.referenced_message_id == rec.task_id or rec.task_id in msg.content.split("\n", 1)[0]:
                return msg
        return None

    def _render(self, rec: TaskRecord) -> reportfmt.Post:
        s = self.settings
        if rec.refusal is not None:
            return reportfmt.refusal_post(task_id=rec.task_id, task_channel_id=rec.channel_id,
                                          results_channel_id=s.results_channel, guild_id=self._guild(),
                                          reason=rec.refusal)
        outcome = _outcome_from_json(rec.outcome_data)
        if rec.agent_id:
            if rec.archive_path:  # archive/<agent_id>, or <agent_id>.N after a name clash
                agent_dir = Path(rec.archive_path)
                ws = Workspace(agent_id=rec.agent_id, task_id=rec.task_id, agent_dir=agent_dir,
                               task_dir=agent_dir / "tasks" / rec.task_id)
            else:
                ws = Workspace.at(s.workers_dir, rec.agent_id, rec.task_id)
            full, size, truncated = read_head(ws.result_file, RESULT_READ_MAX)
            if full is not None:
                outcome = dataclasses.replace(outcome, result_text=full, result_bytes=size,
                                              result_truncated=truncated)
        if self._prices is None:
            self._prices = load_prices(s.openclaw_config)
        return reportfmt.result_post(task_id=rec.task_id, task_channel_id=rec.channel_id,
                                     results_channel_id=s.results_channel, guild_id=self._guild(),
                                     agent_id=rec.agent_id or "-", outcome=outcome,
                                     task_description=rec.description, thinking=rec.thinking,
                                     model_requested=rec.model, worker=rec.worker,
                                     archive_path=rec.archive_path, prices=self._prices,
                                     summary_max=s.summary_max)

    def _set_status_reaction(self, rec: TaskRecord) -> None:
        mode = self.settings.status_reactions
        if mode == "off" or rec.refusal is not None:
            return
        status = rec.outcome_data.get("status", "")
        emoji = STATUS_EMOJI.get(status, FAILED_EMOJI)

        def job() -> None:
            if self._react(rec.task_id, emoji):
                self.store.update(rec.task_id, status_reacted=emoji)
            if mode == "full":
                self._react(rec.task_id, RUNNING_EMOJI, remove=True)
        self._task_lane_submit(job)

    # ------------------------------------------------------------------
    # clean up
    # ------------------------------------------------------------------
    def clean_up(self, rec: TaskRecord) -> None:
        if rec.refusal is None and rec.agent_id and not rec.archive_path:
            ws = Workspace.at(self.settings.workers_dir, rec.agent_id, rec.task_id)
            try:
                remove_workspace(ws)
            except (OSError, StateError) as exc:
                log.error("could not remove %s: %s", ws.agent_dir, exc)
                return
        # The post is out: the record keeps the outcome's facts, not its texts (up to 64 KB each),
        # so that .runtime/state.db does not grow by a result's size with every task.
        slim = {k: v for k, v in rec.outcome_data.items() if k not in OUTCOME_TEXTS}
        self.store.update(rec.task_id, status=CLEANED, **({"outcome": json.dumps(slim)} if rec.outcome else {}))
        if rec.agent_id:
            log.info("cleaned task=%s agent=%s%s", rec.task_id, rec.agent_id,
                     f" (kept in {rec.archive_path})" if rec.archive_path else "")

    def prune(self) -> None:
        s = self.settings
        self._last_prune = self.clock()
        try:
            removed = prune_archive(s.archive_dir, s.archive_retention_h, self.wall(),
                                    success_hours=s.keep_success_h)
        except (OSError, StateError) as exc:
            log.error("could not prune %s: %s", s.archive_dir, exc)
            return
        for path in removed:
            log.info("pruned %s (past its retention: ARCHIVE_RETENTION_HOURS=%g, KEEP_SUCCESS_HOURS=%g)",
                     path, s.archive_retention_h, s.keep_success_h)

    # ------------------------------------------------------------------
    # Discord helpers and lanes
    # ------------------------------------------------------------------
    def bot_user_id(self) -> str:
        if self._bot_id is None:
            self._bot_id = self.client.me().id
        return self._bot_id

    def _member_roles(self, user_id: str):
        return self.client.get_member(self._guild(), user_id).roles

    def _guild(self) -> str:
        if self._guild_id is None:
            self._guild_id = self.client.get_channel(self.settings.task_queue_channel).guild_id or "@me"
        return self._guild_id

    def _react(self, task_id: str, emoji: str, *, remove: bool = False) -> bool:
        channel = self.settings.task_queue_channel
        try:
            if remove:
                self.client.remove_own_reaction(channel, task_id, emoji)
            else:
                self.client.add_reaction(channel, task_id, emoji)
            return True
        except Unauthorized as exc:
            self._set_fatal(exc)
        except DiscordError as exc:
            log.warning("task=%s: could not %s %s reaction: %s", task_id, "remove" if remove else "add", emoji, exc)
        return False

    def _notice(self, line: str) -> None:
        if self._notice_lane is not None:
            self._notice_lane.add(line)

    def _send_notices(self, lines: List[str]) -> None:
        for content in reportfmt.batch_notices(lines):
            try:
                self.client.create_message(self.settings.worker_pool_channel, content)
            except Unauthorized as exc:
                self._set_fatal(exc)
                return
            except DiscordError as exc:
                log.warning("worker-pool notice not posted: %s", exc)

    def _set_fatal(self, exc: OrchError) -> None:
        with self._lock:
            if self._fatal is None:
                self._fatal = exc
        self._wake.wake()

    def _task_lane_submit(self, job: Callable[[], None]) -> None:
        assert self._task_lane is not None
        self._task_lane.submit(self._guarded(job))

    def _guarded(self, job: Callable[[], None]) -> Callable[[], None]:
        """A lane job whose StateError (disk full, home unwritable) ends the pass with one line."""
        def run() -> None:
            try:
                job()
            except StateError as exc:
                self._set_fatal(exc)
        return run

    def _start_lanes(self) -> None:
        self._task_lane = Lane("task-queue", on_done=self._wake.wake)
        self._results_lane = Lane("results", on_done=self._wake.wake)
        self._notice_lane = NoticeLane("worker-pool", self._send_notices, on_done=self._wake.wake)

    def _lanes_busy(self) -> bool:
        return any(l is not None and l.busy for l in (self._task_lane, self._results_lane, self._notice_lane))

    def _drain_lanes(self, cap: float) -> None:
        deadline = self.clock() + cap
        for lane in (self._results_lane, self._task_lane, self._notice_lane):
            if lane is None:
                continue
            if not lane.wait_idle(max(0.0, deadline - self.clock())):
                log.warning("lane %s still busy after %.0fs; what it holds is retried next pass", lane.name, cap)
        for lane in (self._results_lane, self._task_lane, self._notice_lane):
            if lane is not None:
                lane.close(timeout=0.1)


def _outcome_from_json(data: dict) -> Outcome:
    if not data:
        return Outcome(status=INTERRUPTED, duration_s=0.0, reason="no outcome was recorded")
    usage_fields = {f.name for f in dataclasses.fields(Usage)}   # a record written by another version
    usage = Usage(**{k: v for k, v in (data.get("usage") or {}).items() if k in usage_fields})
    fields_ = {f.name for f in dataclasses.fields(Outcome)}
    values = {k: v for k, v in data.items() if k in fields_ and k != "usage"}
    if "files" in values:
        values["files"] = tuple(values["files"])
    return Outcome(usage=usage, **values)


def _group_leader(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except OSError:
        return False
