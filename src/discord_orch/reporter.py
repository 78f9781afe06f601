"""The results side of a pass: one result post per task, the outbox, notices, and the clean-up.

The reporter owns the #results lane and the #worker-pool notice lane. Posting
runs on the results lane, never in the main loop (Discord's rate limits, not the
machine, bound a pass), in the order tasks finished.

Exactly one result per claimed task
-----------------------------------
- Outbox: a result that Discord would not take (down, 5xx after the client's
  retries, a rate-limit wait over RATE_LIMIT_MAX_WAIT) stays in state.db (records
  in ``finished``/``refused``/``reporting``) and is posted by a later pass
  (``--watch``: every OUTBOX_RETRY_S, see orchestrator.py).
- Every result post carries the nonce ``r<task_id>`` (from a retry's second attempt on,
  ``r<task_id>.<attempt>``: Discord would hand back the first attempt's post for the
  same nonce within its window) with ``enforce_nonce``, and
  ``reported`` keeps the message id. A record found in ``reporting`` (a post was
  attempted, its fate unknown) is first looked up in #results (a bounded read of
  the messages since the task finished, REPORT_SEARCH_MAX messages) so that a post
  that did land is not repeated after Discord's nonce window has passed.
- A result Discord refuses for its shape (a 4xx such as an attachment over the
  upload limit or a reply it cannot make) or that cannot be formatted is posted
  short instead (status, task, why, where the archived workspace is): a refusal
  must not keep a task in the outbox forever.
- Refusals wait behind results: they go on the results lane at REFUSALS_PRIORITY,
  so a result queued while a flood of refusals waits for #results' rate limit
  is posted first. The refusals queued until the lane gets to them are posted
  one post per author (``report.refusals_post``: as many of the messages
  listed as fit, "… and N more"; the pass queues those of a turn of its loop
  together, ``flush_refusals``): a hundred refused messages from one person
  cost one post, not a hundred. Such a post's nonce is ``g<first task id>``;
  each of its records keeps it, so a look-up finds the post by that id.
- Once posted: the final status reaction (claim.py), then the clean-up: the
  workspace is removed (unless it was archived) and the record slimmed to
  ``cleaned``.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Callable, Collection, Dict, List, Optional, Tuple

from .errors import BadRequest, DiscordError, Forbidden, NotFound, StateError, Unauthorized
from .core.lanes import Lane, NoticeLane, guarded
from .models import Message, snowflake_at
from .state import OUTBOX_STATUSES, OUTCOME_TEXT_KEPT, POSTED_NOTICE, REFUSED, REPORTED, REPORTING, Store, TaskRecord
from .tasks import is_orchestrator_post

if TYPE_CHECKING:
    from .report import Post
    from .workspace import Workspace
    from .claim import Identity
    from .config import Settings
    from .discord_api import DiscordClient

log = logging.getLogger("discord_orch")

REPORT_SEARCH_MAX = 500          # messages of #results read at most to find an unconfirmed post
REPORT_SEARCH_SLACK_S = 600.0    # look this far before the task finished (clock skew with Discord)
GROUP_NONCE = "g"                # + the first task id: the nonce of one post for several refusals


def result_nonce(task_id: str, attempt: int) -> str:
    """The nonce of an attempt's result post: ``r<task id>``, ``r<task id>.2``, ... (25 characters at most:
    MAX_ATTEMPTS is capped for that)."""
    return f"r{task_id}" if attempt <= 1 else f"r{task_id}.{attempt}"


REFUSALS_PRIORITY = 1            # on the results lane: after every result queued before the refusal is posted


class Reporter:
    """Posts results and notices, keeps what Discord would not take, and cleans up after a post."""

    def __init__(self, settings: "Settings", client: "DiscordClient", store: Store, identity: "Identity", *,
                 on_fatal: Callable[[Exception], None], on_done: Callable[[], None],
                 after_post: Callable[[TaskRecord], None],
                 keeps_open: Callable[[TaskRecord], bool] = lambda rec: False) -> None:
        self.settings = settings
        self.client = client
        self.store = store
        self.identity = identity
        self._on_fatal = on_fatal
        self._on_done = on_done
        self._after_post = after_post
        self._keeps_open = keeps_open   # a task whose thread takes follow-ups keeps its workspace (conversation.py)
        self._prices = None
        self._lock = threading.Lock()
        self.reported = 0                  # results posted by this pass
        self.deferred: set = set()         # task ids whose result Discord did not take (yet)
        self._refusals: List[str] = []     # refused task ids waiting to be grouped by author (under _lock)
        self._refusals_queued = False      # a job to group them is on the lane
        self.results_lane: Optional[Lane] = None
        self.notice_lane: Optional[NoticeLane] = None
        self.gate: Callable[[], bool] = lambda: True   # False: hold results (this host was silent: takeover.py)

    def start(self) -> Tuple[Lane, NoticeLane]:
        """Start the results and notice lanes (threads); the pass drains them when it ends."""
        self.results_lane = Lane("results", on_done=self._on_done)
        self.notice_lane = NoticeLane("worker-pool", self._send_notices, on_done=self._on_done)
        return self.results_lane, self.notice_lane

    # -- the outbox ------------------------------------------------------------
    def queue(self, task_id: str) -> None:
        """Post this task's result on the results lane (now, or after the results before it); a refusal
        waits behind the results and is grouped with its author's other refusals."""
        assert self.results_lane is not None, "Reporter.start() first"
        rec = self.store.get(task_id)
        if rec is None or rec.refusal is None:
            self.results_lane.submit(guarded(lambda: self.report(task_id), self._on_fatal))
            return
        with self._lock:
            self._refusals.append(task_id)

    def flush_refusals(self) -> None:
        """Queue the refusals decided so far (the pass calls this once a turn: what one poll refused is
        grouped whole, not in the pieces the lane happened to see)."""
        with self._lock:
            if not self._refusals or self._refusals_queued:
                return
            self._refusals_queued = True
        self._submit_refusal(self._group_refusals)

    def _group_refusals(self) -> None:
        """The refusals queued so far, grouped by author: each group's posts are jobs of their own, so a
        result queued meanwhile still goes first."""
        with self._lock:
            task_ids, self._refusals = self._refusals, []
            self._refusals_queued = False
        by_author: Dict[str, List[TaskRecord]] = {}
        for task_id in task_ids:
            rec = self.store.get(task_id)
            if rec is None or rec.status not in OUTBOX_STATUSES:
                continue
            if rec.status != REFUSED:   # an earlier attempt's fate is unknown: looked up, then posted alone
                self._submit_refusal(lambda t=task_id: self.report(t))
                continue
            by_author.setdefault(rec.author_id, []).append(rec)
        from .report import refusals_post

        for author, recs in by_author.items():
            if len(recs) == 1 or not self.settings.results_channel:   # thread only: each in its own thread
                self._submit_refusal(lambda t=recs[0].task_id: self.report(t))
                continue
            post = refusals_post(refused=[(r.task_id, r.refusal or "") for r in recs], author_id=author,
                                 task_channel_id=recs[0].channel_id,
                                 results_channel_id=self.settings.results_channel,
                                 guild_id=self.identity.guild())
            ids = tuple(r.task_id for r in recs)
            self._submit_refusal(lambda ids=ids, post=post: self._post_refusals(ids, post))

    def _submit_refusal(self, job: Callable[[], None]) -> None:
        assert self.results_lane is not None
        self.results_lane.submit(guarded(job, self._on_fatal), priority=REFUSALS_PRIORITY)

    def _post_refusals(self, task_ids: Tuple[str, ...], post: Post) -> None:
        """One post for several refused messages of one author; each record goes reporting → reported."""
        recs = [rec for rec in map(self.store.get, task_ids) if rec is not None and rec.status == REFUSED]
        if len(recs) < len(task_ids):   # another pass or job moved one meanwhile: each on its own
            for rec in recs:
                self.report(rec.task_id)
            return
        nonce = GROUP_NONCE + task_ids[0]
        for rec in recs:
            self.store.mark_reporting(rec.task_id, nonce=nonce)
        try:
            msg = self.client.create_message(self.settings.results_channel, post.content, reply_to=post.reply_to,
                                             nonce=nonce)
        except (Unauthorized, Forbidden, NotFound) as exc:
            self._on_fatal(exc)
            return
        except DiscordError as exc:   # left in the outbox: a later try posts each on its own (looked up first)
            with self._lock:
                self.deferred.update(task_ids)
            log.warning("refusals of %d tasks (task=%s and its author's others) deferred (kept in the outbox "
                        "for a later try): %s", len(task_ids), task_ids[0], exc)
            return
        for rec in recs:
            self._reported(rec, msg, "")

    def retry_outbox(self, running: Collection[str]) -> None:
        """--watch: queue again the results Discord did not take (only when none is queued)."""
        if self.results_lane is None or self.results_lane.busy:
            return
        for rec in self.store.with_status(*OUTBOX_STATUSES):
            if rec.task_id not in running:
                self.queue(rec.task_id)

    # -- one post --------------------------------------------------------------
    def report(self, task_id: str) -> None:
        """Post the one result message of a task (runs on the results lane)."""
        rec = self.store.get(task_id)
        if rec is None or rec.status not in OUTBOX_STATUSES:
            return
        if not self.gate():
            with self._lock:
                self.deferred.add(task_id)
            log.info("task=%s: result held until this host has renewed its lease (it was silent)", task_id)
            return
        how = ""
        try:
            msg = self._find_posted_result(rec) if rec.status == REPORTING else None
            if msg is not None:
                how = " (found in #results: an earlier attempt had posted it)"
            else:
                msg = self._post(rec)
        except (Unauthorized, Forbidden, NotFound) as exc:
            self._on_fatal(exc)
            return
        except DiscordError as exc:
            with self._lock:
                self.deferred.add(task_id)
            log.warning("report of task=%s deferred (kept in the outbox for a later try): %s", task_id, exc)
            return
        self._reported(rec, msg, how)

    def _reported(self, rec: TaskRecord, msg: Message, how: str) -> None:
        """The post is out: record it, then the final reaction and the clean-up."""
        task_id = rec.task_id
        self.store.mark_reported(task_id, message_id=msg.id)
        with self._lock:
            self.deferred.discard(task_id)
            self.reported += 1
        log.info("reported task=%s agent=%s outcome=%s message=%s%s", task_id, rec.agent_id or "-",
                 "refused" if rec.refusal is not None else (rec.outcome_status or "?"), msg.id, how)
        rec = self.store.get(task_id)
        if rec is not None:
            self._after_post(rec)
            self.clean_up(rec)

    def _is_turn(self, rec: TaskRecord) -> bool:
        """Is ``rec`` a follow-up's turn (conversation.py) rather than a task?"""
        return self.store.root_of(rec.task_id) is not None

    def _results_in(self, rec: TaskRecord) -> str:
        """Where a record's result goes: #results, or, with RESULTS_CHANNEL empty, the task's own thread;
        a follow-up's turn: its task's thread (a reply to the follow-up)."""
        if self._is_turn(rec):
            return rec.channel_id
        return self.settings.results_channel or rec.task_id

    def thread_result(self, rec: TaskRecord, limit: int) -> Optional[str]:
        """The result as the last edit of the task thread's status message shows it (progress.py), within
        ``limit``: whole when it fits, else its head and a pointer to the file on the #results post (an
        edit carries no file). None when the thread gets no result of its own this way (RESULTS_CHANNEL
        empty: the result is posted in the thread; a refusal; another host's task)."""
        from .claim import CLAIM_BY_THREAD

        s = self.settings
        if not s.results_channel or s.claim != CLAIM_BY_THREAD or rec.refusal is not None or not rec.agent_id \
                or self._is_turn(rec):
            return None
        return self._render(rec, rec.task_id, limit=limit, attached_in=s.results_channel).content

    def _post(self, rec: TaskRecord) -> Message:
        """The result post, recorded as ``reporting`` (with its nonce) before it is sent."""
        nonce = result_nonce(rec.task_id, rec.attempt)   # a refusal whose group post failed: its own nonce
        channel = self._results_in(rec)
        try:
            post = self._render(rec, channel)
        except Exception as exc:  # a bug must not cost the task its result: say so plainly instead
            log.error("task=%s: the result could not be formatted (%s: %s); posting a short one",
                      rec.task_id, type(exc).__name__, exc)
            post = self._fallback_post(rec, f"it could not be formatted ({type(exc).__name__})")
        self.store.mark_reporting(rec.task_id, nonce=nonce)
        try:
            return self._send(rec, channel, post, nonce)
        except BadRequest as exc:
            # Discord refused this post's shape (a reply it cannot make, an attachment it will not
            # take...): nothing was created, so a plain post without them, same nonce, is still the one.
            log.warning("task=%s: Discord refused the result post (%s); posting a short one", rec.task_id, exc)
            post = self._fallback_post(rec, f"Discord refused it: {exc}")
            return self._send(rec, channel, post, nonce)

    def _send(self, rec: TaskRecord, channel: str, post: Post, nonce: str) -> Message:
        if channel == self.settings.results_channel or self._is_turn(rec):   # a turn's: a reply in its thread
            return self.client.create_message(channel, post.content, files=post.files, reply_to=post.reply_to,
                                              nonce=nonce)
        posted = self.client.post_in_thread(channel, post.content, files=post.files, nonce=nonce)
        if posted is not None:
            return posted
        # Thread only, and the task has no thread (claimed before threads): a reply to it in #task-queue.
        post = self._render(rec, rec.channel_id)
        return self.client.create_message(rec.channel_id, post.content, files=post.files, reply_to=post.reply_to,
                                          nonce=nonce)

    # report, prices and workspace are imported by the methods that post: an idle pass, which
    # posts nothing, never loads them (tests/test_idle_pass.py).
    def _render(self, rec: TaskRecord, channel: str, *, limit: Optional[int] = None,
                attached_in: Optional[str] = None) -> Post:
        """The result post for ``channel`` (#results, the task's thread, or #task-queue as a reply)."""
        from . import report as reportfmt
        from .prices import load_prices
        from .workspace import RESULT_FILE, RESULT_READ_MAX, read_head

        s = self.settings
        if rec.refusal is not None:
            return reportfmt.refusal_post(task_id=rec.task_id, task_channel_id=rec.channel_id,
                                          results_channel_id=channel, guild_id=self.identity.guild(),
                                          reason=rec.refusal)
        outcome = rec.finished_outcome
        if rec.agent_id and len(outcome.result_text) >= OUTCOME_TEXT_KEPT:
            # The record keeps the first OUTCOME_TEXT_KEPT characters: read the rest from RESULT.txt.
            full, size, truncated = read_head(self.workspace_of(rec), RESULT_FILE, RESULT_READ_MAX)
            if full is not None:
                outcome = outcome._replace(result_text=full, result_bytes=size,
                                              result_truncated=truncated)
        if self._prices is None:
            self._prices = load_prices(s.openclaw_config)
        return reportfmt.result_post(task_id=rec.task_id, task_channel_id=rec.channel_id,
                                     results_channel_id=channel, guild_id=self.identity.guild(),
                                     agent_id=rec.agent_id or "-", outcome=outcome,
                                     task_description=rec.description, thinking=rec.thinking,
                                     model_requested=rec.model, worker=rec.worker,
                                     archive_path=rec.archive_path, prices=self._prices,
                                     summary_max=s.summary_max, attempt=rec.attempt, attached_in=attached_in,
                                     **({"limit": limit} if limit is not None else {}))

    def _fallback_post(self, rec: TaskRecord, why: str) -> Post:
        """A short, always valid result post: status, task, agent, why the full one is missing, and
        where the workspace is kept (it is archived now, so that cleaning up cannot lose it)."""
        from . import report as reportfmt
        from .workspace import archive_quietly

        where = rec.archive_path
        if rec.agent_id and not where and self.store.root_of(rec.task_id) is None:   # a turn's is its task's
            where = archive_quietly(self.workspace_of(rec), self.settings.archive_dir)
            if where:
                self.store.note_archived(rec.task_id, where)
        status = "REFUSED" if rec.refusal is not None else None
        return reportfmt.fallback_post(task_id=rec.task_id, agent_id=rec.agent_id, status=status,
                                       outcome_status=rec.outcome_status, why=why,
                                       description=rec.description, kept_at=where, attempt=rec.attempt)

    def _find_posted_result(self, rec: TaskRecord) -> Optional[Message]:
        """Our result for ``rec`` if an earlier attempt did post it (the record says ``reporting``:
        the post may have landed without us hearing back, and Discord forgets nonces after a few
        minutes). Reads #results forward from shortly before the task finished, at most
        REPORT_SEARCH_MAX messages; DiscordError when it cannot look (the post is deferred)."""
        from .report import attempt_of, is_refusals_post_of   # only when looking up a lost post

        since = (rec.finished_at or rec.claimed_at) - REPORT_SEARCH_SLACK_S
        after = max(int(rec.task_id), snowflake_at(since))
        me = self.identity.bot_user_id()
        grouped_with = rec.nonce[len(GROUP_NONCE):] if rec.refusal is not None and rec.nonce \
            and rec.nonce.startswith(GROUP_NONCE) else None   # its refusal went out in one post with others
        for seen, msg in enumerate(self.client.iter_messages_after(self._results_in(rec), str(after))):
            if seen >= REPORT_SEARCH_MAX:
                log.warning("task=%s: no earlier result among the %d messages of #results read; posting it",
                            rec.task_id, REPORT_SEARCH_MAX)
                return None
            if msg.author.id != me or not is_orchestrator_post(msg.content):
                continue   # not our output (a task submitted by this bot is not a result)
            if (msg.referenced_message_id == rec.task_id or rec.task_id in msg.content.split("\n", 1)[0]) \
                    and attempt_of(msg.content) == rec.attempt:   # an earlier attempt's post is not this one
                return msg
            if grouped_with and is_refusals_post_of(msg.content, grouped_with):
                return msg
        return None

    # -- after the post ----------------------------------------------------------
    def workspace_of(self, rec: TaskRecord) -> Workspace:
        """Where the task's workspace is: its copy in archive/ once archived, else under workers/."""
        from .workspace import Workspace

        assert rec.agent_id, "a task that never had a workspace"
        root = self.store.root_of(rec.task_id)
        if root is not None and rec.agent_dir:   # a follow-up's turn runs in its task's workspace
            return Workspace.in_dir(rec.agent_dir, rec.agent_id, root)
        if rec.archive_path:   # archive/<agent_id>, or <agent_id>.N after a name clash
            return Workspace.in_dir(rec.archive_path, rec.agent_id, rec.task_id)
        return Workspace.at(self.settings.workers_dir, rec.agent_id, rec.task_id)

    def clean_up(self, rec: TaskRecord) -> None:
        """Remove the workspace of a reported task (unless it is archived) and close its record; a task
        whose thread takes follow-ups keeps it (``open``) until its window closes (conversation.py), and
        a follow-up's turn leaves it to its task."""
        if rec.status == REPORTED and self._keeps_open(rec):
            self.store.mark_open(rec.task_id)
            log.info("reported task=%s: its workspace is kept for follow-ups", rec.task_id)
            return
        turn = self.store.root_of(rec.task_id) is not None
        if rec.refusal is None and rec.agent_id and not rec.archive_path and not turn:
            from .workspace import remove_workspace

            ws = self.workspace_of(rec)
            try:
                remove_workspace(ws)
            except (OSError, StateError) as exc:
                log.error("could not remove %s: %s", ws.agent_dir, exc)
                return
        self.store.mark_cleaned(rec.task_id)
        if rec.agent_id:
            log.info("cleaned task=%s agent=%s%s", rec.task_id, rec.agent_id,
                     f" (kept in {rec.archive_path})" if rec.archive_path else "")

    # -- notices in #worker-pool ------------------------------------------------
    def notice(self, line: str) -> None:
        """A spawn/finish line for #worker-pool (lines close in time share one message)."""
        if self.notice_lane is not None:
            self.notice_lane.add(line)

    def _send_notices(self, lines: List[str]) -> None:
        from .report import batch_notices

        for content in batch_notices(lines):
            try:
                msg = self.client.create_message(self.settings.worker_pool_channel, content)
                self.store.note_posted(msg.id, POSTED_NOTICE)
            except (Unauthorized, StateError) as exc:
                self._on_fatal(exc)
                return
            except DiscordError as exc:
                log.warning("worker-pool notice not posted: %s", exc)
