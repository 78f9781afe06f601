"""The durable record of every task this home has touched (house rule 2).

Everything lives in ``<home>/.runtime/``:

- ``state.db``: SQLite, one row per task, the single source of truth. Every
  transition is one short transaction, written before and after each step of
  the walk (see docs/design.md), so a kill at any instant leaves a row that
  says exactly how far the task got. WAL mode: the reporting threads and the
  main loop each use their own connection.

The lifecycle
-------------
A task's status is a :class:`TaskStatus`; it changes only through the named
transitions of :class:`Store` (``mark_starting``, ``mark_running``,
``mark_finished``, ...), each of which checks the status it leaves in the
same transaction that writes the new one (``TRANSITIONS``)::

    claiming → claimed → starting → running → finished → reporting → reported → cleaned
             → refused ───────────────────────────────────┘  (or straight to reported)
             → elsewhere   (another host started the task's thread first: never runs here)
             → dropped     (the message was deleted before the claim was decided)
    starting/running → claimed   (recovery: it never ran, or runs again)
    reported → open → cleaned    (follow-ups: the workspace is kept for FOLLOWUP_HOURS; conversation.py)
    claimed → finished           (a person stopped it before it ran: its outcome says so)
    cleaned → claimed            (a person asked for a retry: attempt ``attempts + 1``; no ledger line)

A follow-up is a *turn*: a record of its own (its message's id, walking claimed → ... →
cleaned like a task) and a row of ``turns`` linking it to its task; ``conversations`` holds,
per task, how far its thread was read, when it was last answered and when it closed.
    claimed … reporting → elsewhere   (another host took it over while this one was silent)
    elsewhere → claimed          (this host took it over from a silent one: takeover.py)

``claiming`` is written before the thread is started (CLAIM=thread, claim.py),
so that a pass killed while Discord held the request knows to look before it
tries again; with CLAIM=reaction a record starts as ``claimed`` or ``refused``.

An impossible transition raises :class:`~discord_orch.errors.TransitionError`
and writes nothing. The agent's outcome is stored as JSON here too
(``mark_finished`` writes it, ``TaskRecord.finished_outcome`` reads it back),
so no other module knows its serialised shape.
- ``state.db``'s ``posted`` table: the id of every message this home posted
  (a result's in the same transaction as its ``reported``; notices after
  their post), so that none is ever read as a task (claim.py).
- ``assigned-tasks.txt``: the seed's ledger, one claimed task id per line,
  appended (O_APPEND + fsync) right after the claim is committed. Ids found
  there that the database does not know (written by the original bash
  scripts) count as claimed by someone else.
- ``orchestrate.lock``: an ``flock`` held for a whole pass, so that at most
  one pass per home does the work (cron starts one every minute; a pass may
  run longer than that).

The bot token is never written here.
"""

from __future__ import annotations

import errno
import fcntl
import enum
import json
import os
import socket
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, FrozenSet, Iterator, List, Mapping, NamedTuple, Optional

from .outcome import INTERRUPTED, RETRYABLE, STOPPED, Outcome, Usage
from .errors import StateError, TransitionError


class TaskStatus(str, enum.Enum):
    """Where a task is in its walk (the values are what state.db stores)."""

    CLAIMING = "claiming"      # its thread's start was sent (CLAIM=thread): the winner is not known yet
    CLAIMED = "claimed"
    STARTING = "starting"      # written before the agent is spawned
    RUNNING = "running"        # with pid, pgid, start time, host
    FINISHED = "finished"      # the outcome is recorded; the result is not posted yet
    REFUSED = "refused"        # never runs; its refusal is posted once
    REPORTING = "reporting"    # a result post was attempted (its nonce is recorded)
    REPORTED = "reported"      # the post is out (its message id is recorded)
    CLEANED = "cleaned"        # the workspace is removed or archived: the end
    ELSEWHERE = "elsewhere"    # another host started its thread first: the end, here
    DROPPED = "dropped"        # deleted before its claim was decided: the end
    OPEN = "open"              # reported; its workspace kept for follow-ups in its thread (conversation.py)

    def __str__(self) -> str:
        return self.value


CLAIMING = TaskStatus.CLAIMING
CLAIMED = TaskStatus.CLAIMED
STARTING = TaskStatus.STARTING
RUNNING = TaskStatus.RUNNING
FINISHED = TaskStatus.FINISHED
REFUSED = TaskStatus.REFUSED
REPORTING = TaskStatus.REPORTING
REPORTED = TaskStatus.REPORTED
CLEANED = TaskStatus.CLEANED
ELSEWHERE = TaskStatus.ELSEWHERE
DROPPED = TaskStatus.DROPPED
OPEN = TaskStatus.OPEN
#: where a task's walk ends on this home: nothing more to do for it here
ENDED_STATUSES = (CLEANED, ELSEWHERE, DROPPED)
#: nothing for recovery to do: the walk ended, or the task only waits for follow-ups (conversation.py)
SETTLED_STATUSES = ENDED_STATUSES + (OPEN,)
#: a result is owed: posted by this pass or, when Discord will not take it, by a later one
OUTBOX_STATUSES = (FINISHED, REFUSED, REPORTING)
FINISHED_HERE = (REPORTED, OPEN, CLEANED)   # a task whose result is out: its thread may be archived

#: status → the statuses it may move to; anything else raises TransitionError
TRANSITIONS: Mapping[TaskStatus, FrozenSet[TaskStatus]] = {
    CLAIMING: frozenset({CLAIMED, REFUSED, ELSEWHERE, DROPPED}),
    # → elsewhere from claimed to reporting: another host took the task over while this one was silent
    CLAIMED: frozenset({STARTING, DROPPED, FINISHED, ELSEWHERE}),   # dropped: a follow-up whose task closed
                                                         # before its turn; finished: stopped before it ran
    STARTING: frozenset({RUNNING, FINISHED, CLAIMED, ELSEWHERE}),
    RUNNING: frozenset({FINISHED, CLAIMED, ELSEWHERE}),
    FINISHED: frozenset({REPORTING, ELSEWHERE}),
    REFUSED: frozenset({REPORTING, REPORTED}),     # reported without a post: a notice said once already
    REPORTING: frozenset({REPORTING, REPORTED, ELSEWHERE}),   # reporting again: a retry of a post whose fate was unknown
    REPORTED: frozenset({CLEANED, OPEN}),          # open: its thread takes follow-ups for FOLLOWUP_HOURS
    OPEN: frozenset({CLEANED}),
    CLEANED: frozenset({CLAIMED}),                 # a retry (controls.py): the next attempt
    ELSEWHERE: frozenset({CLAIMED}),   # this host took the task over from a silent one (takeover.py)
    DROPPED: frozenset(),
}

OUTCOME_TEXT_KEPT = 64 * 1024    # result text kept in the record; RESULT.txt itself stays in the workspace
#: an Outcome's texts (up to 64 KB each): dropped from the record once the task is cleaned
OUTCOME_TEXTS = ("result_text", "summary_text", "reply_text", "log_tail", "error_message")

LEDGER_NAME = "assigned-tasks.txt"
DB_NAME = "state.db"
LOCK_NAME = "orchestrate.lock"
SQLITE_BUSY_TIMEOUT_MS = 30_000
SQL_CHUNK = 500                  # ids per "IN (...)" query (SQLite's limit on parameters is 999)

# Raise with every change to SCHEMA: a home whose state.db has an older user_version runs SCHEMA
# (CREATE ... IF NOT EXISTS) once; an up-to-date one skips it, which is every idle cron pass.
SCHEMA_VERSION = 3
SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY,
    channel_id TEXT NOT NULL,
    author_id TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    model_alias TEXT NOT NULL DEFAULT '',
    model TEXT NOT NULL DEFAULT '',
    thinking TEXT NOT NULL DEFAULT '',
    worker TEXT,
    refusal TEXT,
    agent_id TEXT,
    agent_dir TEXT,
    pid INTEGER,
    pgid INTEGER,
    proc_start INTEGER,
    host TEXT,
    started_at REAL,
    deadline REAL,
    finished_at REAL,
    outcome TEXT,
    archive_path TEXT,
    nonce TEXT,
    result_message_id TEXT,
    claim_reacted INTEGER NOT NULL DEFAULT 0,
    status_reacted TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    claimed_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_status ON tasks(status);
CREATE INDEX IF NOT EXISTS tasks_finished ON tasks(finished_at);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS posted (message_id TEXT PRIMARY KEY, kind TEXT NOT NULL, posted_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS conversations (
    task_id TEXT PRIMARY KEY,
    seen_upto TEXT NOT NULL,
    last_answer_at REAL,
    closed_at REAL
);
CREATE TABLE IF NOT EXISTS turns (turn_id TEXT PRIMARY KEY, task_id TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS turns_task ON turns(task_id);
"""
POSTED_RESULT = "result"     # posted: kinds of the messages this home posted (never tasks, claim.py)
POSTED_NOTICE = "notice"
STATUS_MESSAGE_KEY = "status-message:{task}"   # meta: a task's one status message (its thread's claim line)


class TaskRecord(NamedTuple):
    """One row of state.db: a task's status and what each step recorded (read with ``_from_row``)."""

    task_id: str
    channel_id: str
    author_id: str
    status: str
    description: str
    model_alias: str
    model: str
    thinking: str
    worker: Optional[str]
    refusal: Optional[str]
    agent_id: Optional[str]
    agent_dir: Optional[str]
    pid: Optional[int]
    pgid: Optional[int]
    proc_start: Optional[int]
    host: Optional[str]
    started_at: Optional[float]
    deadline: Optional[float]
    finished_at: Optional[float]
    outcome: Optional[str]          # JSON of an Outcome: read it with finished_outcome
    archive_path: Optional[str]
    nonce: Optional[str]
    result_message_id: Optional[str]
    claim_reacted: int
    status_reacted: Optional[str]
    attempts: int
    claimed_at: float
    updated_at: float

    @classmethod
    def _from_row(cls, row: Mapping[str, Any]) -> "TaskRecord":
        values = {c: row[c] for c in cls._fields}
        values["status"] = TaskStatus(values["status"])
        return cls(**values)

    @property
    def finished_outcome(self) -> Outcome:
        """The agent's outcome as recorded by ``mark_finished`` (interrupted, if none was)."""
        return outcome_from_json(self.outcome)

    @property
    def attempt(self) -> int:
        """Which run of the task this record is about: 1, then 2, 3, ... after each retry."""
        return self.attempts + 1

    @property
    def outcome_status(self) -> str:
        """The recorded outcome's status (ok, failed, ...), or "" before the task finished."""
        return str(json.loads(self.outcome).get("status") or "") if self.outcome else ""


_COLUMNS = list(TaskRecord._fields)


def outcome_to_json(outcome: Outcome) -> str:
    """The record's form of an outcome: its result text capped at OUTCOME_TEXT_KEPT."""
    return json.dumps({**outcome._asdict(), "result_text": outcome.result_text[:OUTCOME_TEXT_KEPT],
                       "usage": outcome.usage._asdict()})


def _without_texts(text: str) -> str:
    """A recorded outcome without its texts, whatever else it holds (a record another version wrote)."""
    return json.dumps({k: v for k, v in json.loads(text).items() if k not in OUTCOME_TEXTS})


def outcome_from_json(text: Optional[str]) -> Outcome:
    """An outcome from its record form; fields another version wrote and this one lacks are ignored."""
    data = json.loads(text) if text else {}
    if not data:
        return Outcome(status=INTERRUPTED, duration_s=0.0, reason="no outcome was recorded")
    usage = Usage(**{k: v for k, v in (data.get("usage") or {}).items() if k in Usage._fields})
    known = Outcome._fields
    values = {k: v for k, v in data.items() if k in known and k != "usage"}
    for key in ("files", "notes"):
        if key in values:
            values[key] = tuple(values[key])
    return Outcome(usage=usage, **values)


def _set(conn: sqlite3.Connection, task_id: str, **values: Any) -> None:
    """UPDATE the task's fields (and updated_at) inside the caller's transaction."""
    values["updated_at"] = time.time()
    conn.execute(f"UPDATE tasks SET {', '.join(f'{k} = ?' for k in values)} WHERE task_id = ?",
                 [*values.values(), task_id])


def _insert_posted(conn: sqlite3.Connection, message_id: str, kind: str) -> None:
    conn.execute("INSERT OR IGNORE INTO posted(message_id, kind, posted_at) VALUES(?, ?, ?)",
                 (message_id, kind, time.time()))


DISK_FULL = "the disk is full"      # a StateError's problem on ENOSPC (cli.py adds what to remove)


def _state_error(path: Path, exc: BaseException) -> StateError:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return StateError(str(path), DISK_FULL)
    if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StateError(str(path), "not writable (check the owner and permissions of the home directory)")
    if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc).lower():
        return StateError(str(path), DISK_FULL)
    return StateError(str(path), f"{exc.__class__.__name__}: {exc}")


RESERVE_NAME = "disk-reserve"       # .runtime/: room kept for the state of a pass on a full disk
RESERVE_BYTES = 4 * 1024 * 1024      # a pass's SQLite writes (WAL) fit in it many times over
ROOM_MIN_BYTES = RESERVE_BYTES       # less free than this: the reserve is given back before writing


class Store:
    """SQLite-backed task records, the ledger and the home lock.

    A full disk must not stop a pass from recording and posting its results: the store keeps
    RESERVE_BYTES in ``.runtime/disk-reserve`` while there is room, and gives it back (and
    says ``disk_full``) before a write finds less than ROOM_MIN_BYTES free."""

    def __init__(self, runtime_dir: Path, *, host: Optional[str] = None) -> None:
        self.runtime_dir = Path(runtime_dir)
        self.db_path = self.runtime_dir / DB_NAME
        self.ledger_path = self.runtime_dir / LEDGER_NAME
        self.lock_path = self.runtime_dir / LOCK_NAME
        self.host = host or socket.gethostname()   # HOST_NAME: recorded with each task this host runs
        self._local = threading.local()
        self._ledger_lock = threading.Lock()
        self._lock_fd: Optional[int] = None
        self.reserve_path = self.runtime_dir / RESERVE_NAME
        self.disk_full = False   # the disk was (nearly) full during this pass: the reserve was used
        try:
            self.runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._keep_room()
            conn = self._conn()
            if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                conn.executescript(SCHEMA + f"PRAGMA user_version = {SCHEMA_VERSION};")
        except (OSError, sqlite3.Error) as exc:
            raise _state_error(self.runtime_dir, exc) from None
        self._make_reserve()

    # -- room on a full disk -------------------------------------------
    def _free_bytes(self) -> Optional[int]:
        try:
            st = os.statvfs(self.runtime_dir)
        except OSError:
            return None
        return st.f_bavail * st.f_frsize

    def _keep_room(self) -> None:
        """Before a write: on a (nearly) full disk, give the reserve back so the write fits."""
        free = self._free_bytes()
        if free is None or free >= ROOM_MIN_BYTES:
            return
        self.disk_full = True
        try:
            os.unlink(self.reserve_path)
        except OSError:
            pass

    def disk_is_full(self) -> bool:
        """True when the disk was (nearly) full at a write of this pass, or is now."""
        self._keep_room()
        return self.disk_full

    def _make_reserve(self) -> None:
        """Set RESERVE_BYTES aside while the disk has room for it twice over."""
        free = self._free_bytes()
        if free is None or free < 2 * RESERVE_BYTES or os.path.lexists(self.reserve_path):
            return
        try:
            fd = os.open(self.reserve_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError:
            return
        try:
            os.posix_fallocate(fd, 0, RESERVE_BYTES)
        except OSError:
            os.unlink(self.reserve_path)
        finally:
            os.close(fd)

    # -- connections ---------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(str(self.db_path), timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
                                   isolation_level=None, check_same_thread=True)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            self._local.conn = conn
            try:
                os.chmod(self.db_path, 0o600)
            except OSError:
                pass
        return conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._keep_room()
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise _state_error(self.db_path, exc) from None

    def close(self) -> None:
        """Close this thread's connection and release the home lock."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        self.release_lock()

    # -- the home lock ---------------------------------------------------
    def try_lock(self) -> Optional[int]:
        """Take the pass lock. Returns None on success, else the pid holding it (0 if unknown)."""
        try:
            fd = os.open(str(self.lock_path), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise _state_error(self.lock_path, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise _state_error(self.lock_path, exc) from None
            try:
                holder = int(os.pread(fd, 32, 0).decode().strip() or 0)
            except (OSError, ValueError):
                holder = 0
            os.close(fd)
            return holder
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd
        return None

    def release_lock(self) -> None:
        """Release the home lock (the next pass may start)."""
        if self._lock_fd is not None:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            finally:
                os.close(self._lock_fd)
                self._lock_fd = None

    # -- meta (cursor, cached bot id, one-time notices) --------------------
    def get_meta(self, key: str) -> Optional[str]:
        """A value of the meta table (cursor, one-time notices), or None."""
        row = self._conn().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row["value"])

    def set_meta(self, key: str, value: str) -> None:
        """Set a value of the meta table."""
        with self._tx() as conn:
            conn.execute("INSERT INTO meta(key, value) VALUES(?, ?) "
                         "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    def delete_meta(self, key: str) -> None:
        """Remove a value of the meta table (nothing when it is not there)."""
        with self._tx() as conn:
            conn.execute("DELETE FROM meta WHERE key = ?", (key,))

    # -- records ---------------------------------------------------------
    def get(self, task_id: str) -> Optional[TaskRecord]:
        """The task's record, or None."""
        row = self._conn().execute("SELECT * FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
        return None if row is None else TaskRecord._from_row(row)

    def known_ids(self, task_ids: List[str]) -> set:
        """Which of these ids the database or the ledger already knows."""
        if not task_ids:
            return set()
        found = set()
        conn = self._conn()
        for i in range(0, len(task_ids), SQL_CHUNK):
            chunk = task_ids[i:i + SQL_CHUNK]
            marks = ",".join("?" * len(chunk))
            found.update(r[0] for r in conn.execute(f"SELECT task_id FROM tasks WHERE task_id IN ({marks})", chunk))
        return found | (set(task_ids) & self.ledger_ids())

    def with_status(self, *statuses: TaskStatus) -> List[TaskRecord]:
        """The records in any of these statuses, oldest task first."""
        marks = ",".join("?" * len(statuses))
        rows = self._conn().execute(
            f"SELECT * FROM tasks WHERE status IN ({marks}) ORDER BY task_id",
            [TaskStatus(s).value for s in statuses]).fetchall()
        return [TaskRecord._from_row(r) for r in rows]

    def has_open_tasks(self) -> bool:
        """Whether any task's walk has not ended here (one indexed lookup: an idle pass asks only this)."""
        marks = ",".join("?" * len(SETTLED_STATUSES))
        return self._conn().execute(f"SELECT 1 FROM tasks WHERE status NOT IN ({marks}) LIMIT 1",
                                    [s.value for s in SETTLED_STATUSES]).fetchone() is not None

    def retryable(self, *, since: float, max_attempts: int) -> List[TaskRecord]:
        """This host's tasks that ended without success at or after ``since``, posted and cleaned, with an
        attempt left (controls.py looks for a 🔁 on them). One range read of the finished_at index."""
        rows = self._conn().execute(
            "SELECT * FROM tasks WHERE finished_at >= ? AND status = ? AND refusal IS NULL AND attempts + 1 < ? "
            "AND (host = ? OR host IS NULL) ORDER BY task_id",
            (since, CLEANED.value, max_attempts, self.host)).fetchall()
        recs = [TaskRecord._from_row(r) for r in rows]
        return [r for r in recs if r.outcome_status in RETRYABLE]

    def insert(self, *, task_id: str, channel_id: str, author_id: str, status: TaskStatus, description: str = "",
               model_alias: str = "", model: str = "", thinking: str = "", worker: Optional[str] = None,
               refusal: Optional[str] = None, turn_of: Optional[str] = None) -> bool:
        """Create the record, ``claiming`` (its thread is about to be started), ``claimed`` or ``refused``
        (a refusal is kept as ``refusal`` from the start). False when the id is already known (someone
        claimed it first). ``turn_of``: the record is a follow-up, a turn of that task (conversation.py),
        linked to it in the same transaction."""
        status = TaskStatus(status)
        if status not in (CLAIMING, CLAIMED, REFUSED):
            raise TransitionError(task_id, None, status.value)
        now = time.time()
        try:
            with self._tx() as conn:
                conn.execute(
                    "INSERT INTO tasks(task_id, channel_id, author_id, status, description, model_alias, model, "
                    "thinking, worker, refusal, claimed_at, updated_at) VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
                    (task_id, channel_id, author_id, status.value, description, model_alias, model, thinking,
                     worker, refusal, now, now))
                if turn_of is not None:
                    conn.execute("INSERT INTO turns(turn_id, task_id) VALUES(?, ?)", (task_id, turn_of))
        except StateError as exc:
            if "UNIQUE" in exc.problem:
                return False
            raise
        return True

    # -- the transitions (see "The lifecycle" above) -------------------------
    def _move(self, task_id: str, to: TaskStatus, *, posted: Optional[str] = None,
              only_from: Optional[FrozenSet[TaskStatus]] = None, **values: Any) -> None:
        """One checked transition: read the status and write the new one in the same transaction.
        ``only_from``: the step is one of several into ``to`` and may leave only these statuses."""
        unknown = set(values) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"unknown task fields: {sorted(unknown)}")
        with self._tx() as conn:
            row = conn.execute("SELECT status FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
            current = TaskStatus(row["status"]) if row is not None else None
            if current is None or to not in TRANSITIONS[current] or (only_from is not None and current not in only_from):
                raise TransitionError(task_id, None if current is None else current.value, to.value)
            _set(conn, task_id, status=to.value, **values)
            if posted:   # the post's id is ours for good in the same transaction (never read as a task)
                _insert_posted(conn, posted, POSTED_RESULT)

    def mark_won(self, task_id: str) -> TaskStatus:
        """claiming → claimed, or refused for a record holding a refusal: this host started the task's
        thread. Returns the new status."""
        rec = self.get(task_id)
        to = REFUSED if rec is not None and rec.refusal is not None else CLAIMED
        self._move(task_id, to, host=self.host)
        return to

    def mark_elsewhere(self, task_id: str, *, host: str) -> None:
        """claiming → elsewhere: ``host`` (another host's name, as its thread says) runs the task."""
        self._move(task_id, ELSEWHERE, host=host)

    def mark_taken_over(self, task_id: str) -> None:
        """elsewhere → claimed: the host that had the task went silent and this one took it over."""
        self._move(task_id, CLAIMED, host=self.host)

    def mark_dropped(self, task_id: str) -> None:
        """claiming → dropped: the message was deleted before the claim was decided; claimed → dropped: a
        follow-up whose task closed before its turn came (conversation.py)."""
        self._move(task_id, DROPPED)

    def mark_starting(self, task_id: str, *, agent_id: str, agent_dir: str) -> None:
        """claimed → starting: the workspace is named, the agent not spawned yet."""
        self._move(task_id, STARTING, agent_id=agent_id, agent_dir=agent_dir, host=self.host)

    def mark_running(self, task_id: str, *, pid: int, pgid: int, proc_start: Optional[int], started_at: float,
                     deadline: Optional[float]) -> None:
        """starting → running: the agent's process, as recovery will look for it."""
        self._move(task_id, RUNNING, pid=pid, pgid=pgid, proc_start=proc_start, started_at=started_at,
                   deadline=deadline)

    def mark_finished(self, task_id: str, outcome: Outcome, *, finished_at: float,
                      archive_path: Optional[str]) -> None:
        """starting/running → finished: the outcome (result text capped) and where the workspace is kept."""
        self._move(task_id, FINISHED, only_from=frozenset({STARTING, RUNNING}), finished_at=finished_at,
                   outcome=outcome_to_json(outcome), archive_path=archive_path)

    def mark_stopped_before_it_ran(self, task_id: str, outcome: Outcome, *, finished_at: float) -> None:
        """claimed → finished: a person stopped the task before an agent took it (``outcome`` says who)."""
        if outcome.status != STOPPED:
            raise TransitionError(task_id, CLAIMED.value, f"{FINISHED.value} ({outcome.status})")
        self._move(task_id, FINISHED, only_from=frozenset({CLAIMED}), finished_at=finished_at,
                   outcome=outcome_to_json(outcome))

    def mark_claimed_again(self, task_id: str, *, attempts: Optional[int] = None) -> None:
        """starting/running → claimed: its agent never ran, or runs again (RETRY_INTERRUPTED)."""
        extra = {} if attempts is None else {"attempts": attempts}
        self._move(task_id, CLAIMED, only_from=frozenset({STARTING, RUNNING}), agent_id=None, agent_dir=None, pid=None, pgid=None, proc_start=None, **extra)

    def mark_retry(self, task_id: str) -> int:
        """cleaned → claimed: the task runs again, as attempt ``attempts + 1`` (counted from 0), in a fresh
        workspace; what the last attempt recorded is cleared (its post in #results stays). The ledger
        keeps its one line for the task: a retry writes none. Returns the new attempt's number (2, 3, ...)."""
        rec = self.get(task_id)
        attempts = (rec.attempts if rec is not None else 0) + 1
        self._move(task_id, CLAIMED, only_from=frozenset({CLEANED}), attempts=attempts, agent_id=None, agent_dir=None, pid=None, pgid=None,
                   proc_start=None, started_at=None, deadline=None, finished_at=None, outcome=None,
                   archive_path=None, nonce=None, result_message_id=None, status_reacted=None)
        return attempts + 1

    def mark_reporting(self, task_id: str, *, nonce: str) -> None:
        """finished/refused/reporting → reporting: written before each attempt to post the result."""
        self._move(task_id, REPORTING, nonce=nonce)

    def mark_reported(self, task_id: str, *, message_id: Optional[str]) -> None:
        """reporting → reported (the post's id); refused → reported (no post: its notice was said already)."""
        self._move(task_id, REPORTED, posted=message_id, result_message_id=message_id)

    def mark_open(self, task_id: str) -> None:
        """reported → open: the result is out; the workspace stays for follow-ups (conversation.py)."""
        self._move(task_id, OPEN)

    def mark_cleaned(self, task_id: str) -> None:
        """reported/open → cleaned: the record keeps the outcome's facts and drops its texts (up to 64 KB each),
        so that state.db does not grow by a result's size with every task."""
        rec = self.get(task_id)
        slim = {"outcome": _without_texts(rec.outcome)} if rec is not None and rec.outcome else {}
        self._move(task_id, CLEANED, **slim)

    # -- facts that are not steps ------------------------------------------
    def _note(self, task_id: str, **values: Any) -> None:
        with self._tx() as conn:
            _set(conn, task_id, **values)

    def note_claim_reacted(self, task_id: str) -> None:
        """The ✅ is on the task message."""
        self._note(task_id, claim_reacted=1)

    def note_status_reacted(self, task_id: str, emoji: str) -> None:
        """The final status reaction is on the task message."""
        self._note(task_id, status_reacted=emoji)

    def note_archived(self, task_id: str, archive_path: str) -> None:
        """The workspace was moved to archive/ (it is kept there, not removed)."""
        self._note(task_id, archive_path=archive_path)

    # -- what this home posted ------------------------------------------------
    def note_posted(self, message_id: str, kind: str) -> None:
        """A message this home posted (a notice, a refusal for several tasks): never a task."""
        with self._tx() as conn:
            _insert_posted(conn, message_id, kind)

    def posted_ids(self, message_ids: List[str]) -> set:
        """Which of these message ids this home posted."""
        found: set = set()
        conn = self._conn()
        for i in range(0, len(message_ids), SQL_CHUNK):
            chunk = message_ids[i:i + SQL_CHUNK]
            marks = ",".join("?" * len(chunk))
            found.update(r[0] for r in conn.execute(
                f"SELECT message_id FROM posted WHERE message_id IN ({marks})", chunk))
        return found

    # -- conversations: a task's thread read for follow-ups (conversation.py) ---------
    def open_conversation(self, task_id: str) -> None:
        """Read this task's thread for follow-ups from its start on (once; again is a no-op)."""
        with self._tx() as conn:
            conn.execute("INSERT OR IGNORE INTO conversations(task_id, seen_upto) VALUES(?, ?)", (task_id, task_id))

    def conversations_watched(self, closed_since: float) -> Dict[str, Dict[str, Any]]:
        """Task id → its conversation row, for those open, or closed after ``closed_since`` (a late follow-up
        is answered "closed" meanwhile). An indexed read: an idle pass with none asks only this."""
        rows = self._conn().execute("SELECT * FROM conversations WHERE closed_at IS NULL OR closed_at > ?",
                                    (closed_since,)).fetchall()
        return {r["task_id"]: dict(r) for r in rows}

    def note_seen(self, task_id: str, message_id: str) -> None:
        """The thread of ``task_id`` is read up to this message (turns recorded, commands handed on)."""
        with self._tx() as conn:
            conn.execute("UPDATE conversations SET seen_upto = ? WHERE task_id = ? AND "
                         "CAST(seen_upto AS INTEGER) < CAST(? AS INTEGER)", (message_id, task_id, message_id))

    def note_answered(self, task_id: str, when: float) -> None:
        """A result or an answer of this conversation is out: its follow-up window runs from now."""
        with self._tx() as conn:
            conn.execute("UPDATE conversations SET last_answer_at = ? WHERE task_id = ?", (when, task_id))

    def close_conversation(self, task_id: str, when: float) -> None:
        """No more follow-ups for this task (its window passed)."""
        with self._tx() as conn:
            conn.execute("UPDATE conversations SET closed_at = ? WHERE task_id = ?", (when, task_id))

    def root_of(self, turn_id: str) -> Optional[str]:
        """The task a follow-up turn belongs to; None for a task (not a turn)."""
        row = self._conn().execute("SELECT task_id FROM turns WHERE turn_id = ?", (turn_id,)).fetchone()
        return None if row is None else str(row["task_id"])

    def turns_of(self, task_id: str) -> List[TaskRecord]:
        """The follow-up turns of a task, oldest first."""
        rows = self._conn().execute(
            "SELECT tasks.* FROM tasks JOIN turns ON turns.turn_id = tasks.task_id WHERE turns.task_id = ? "
            "ORDER BY CAST(tasks.task_id AS INTEGER)", (task_id,)).fetchall()
        return [TaskRecord._from_row(r) for r in rows]

    def finished_since(self, epoch: float) -> List[TaskRecord]:
        """The records of the tasks whose agent finished at or after ``epoch`` (what budgets count)."""
        rows = self._conn().execute("SELECT * FROM tasks WHERE finished_at >= ? ORDER BY finished_at",
                                    (epoch,)).fetchall()
        return [TaskRecord._from_row(r) for r in rows]

    def last_finished(self, count: int) -> List[TaskRecord]:
        """The ``count`` records whose agent finished last, the latest first (``discord-orch status``)."""
        rows = self._conn().execute("SELECT * FROM tasks WHERE finished_at IS NOT NULL "
                                    "ORDER BY finished_at DESC LIMIT ?", (count,)).fetchall()
        return [TaskRecord._from_row(r) for r in rows]

    def counts(self) -> Dict[str, int]:
        rows = self._conn().execute("SELECT status, COUNT(*) AS n FROM tasks GROUP BY status").fetchall()
        return {r["status"]: int(r["n"]) for r in rows}

    # -- the ledger --------------------------------------------------------
    def ledger_ids(self) -> set:
        try:
            with open(self.ledger_path, "r", encoding="utf-8", errors="replace") as fh:
                return {line.strip() for line in fh if line.strip()}
        except FileNotFoundError:
            return set()
        except OSError as exc:
            raise _state_error(self.ledger_path, exc) from None

    def append_ledger(self, task_id: str) -> None:
        """Append a claimed task's id to assigned-tasks.txt (O_APPEND, fsync)."""
        line = f"{task_id}\n".encode()
        with self._ledger_lock:
            try:
                fd = os.open(str(self.ledger_path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, line)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise _state_error(self.ledger_path, exc) from None

    def reconcile_ledger(self) -> int:
        """Append claimed ids the ledger lacks (a crash between commit and append).

        Only a record still in ``claimed`` can lack its line: the append follows the
        INSERT before the task takes any other step. So an ordinary pass reads
        neither the whole table nor the whole ledger here.
        """
        claimed = [r["task_id"] for r in self._conn().execute(
            "SELECT task_id FROM tasks WHERE status = ? AND refusal IS NULL ORDER BY task_id", (CLAIMED.value,))]
        if not claimed:
            return 0
        in_ledger = self.ledger_ids()
        missing = [task_id for task_id in claimed if task_id not in in_ledger]
        for task_id in missing:
            self.append_ledger(task_id)
        return len(missing)


def check_writable(path: Path, *, reserve: Optional[Path] = None) -> None:
    """Fail early, with one line, when a directory cannot take a file. A full disk is no failure
    while ``reserve`` (the store's RESERVE_NAME) exists: the store gives it back and the pass goes on."""
    probe = path / f".write-probe-{os.getpid()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        # No fsync: the write itself meets a read-only, unwritable or full disk (ext4 reserves the
        # block at write time; tests/test_hostile_agent.py fills a real one), and a sync every pass
        # would force a journal commit each minute on the SD cards many homes run from.
        with open(probe, "wb") as fh:
            fh.write(b"ok")
        os.unlink(probe)
    except OSError as exc:
        if exc.errno == errno.ENOSPC and reserve is not None and os.path.lexists(reserve):
            try:
                os.unlink(probe)
            except OSError:
                pass
            return
        raise _state_error(path, exc) from None
