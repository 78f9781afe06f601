"""The durable record of every task this home has touched (house rule 2).

Everything lives in ``<home>/.runtime/``:

- ``state.db``: SQLite, one row per task, the single source of truth. Every
  transition is one short transaction, written before and after each step of
  the walk (see docs/design.md), so a kill at any instant leaves a row that
  says exactly how far the task got. WAL mode: the reporting threads and the
  main loop each use their own connection.
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
import json
import os
import socket
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from .errors import StateError

# Statuses, in the order of the walk.
CLAIMED = "claimed"
STARTING = "starting"
RUNNING = "running"
FINISHED = "finished"
REFUSED = "refused"
REPORTING = "reporting"
REPORTED = "reported"
CLEANED = "cleaned"
SKIPPED = "skipped"          # seen, not ours to run (claimed elsewhere); never reported
OPEN_STATUSES = (CLAIMED, STARTING, RUNNING, FINISHED, REFUSED, REPORTING, REPORTED)

LEDGER_NAME = "assigned-tasks.txt"
DB_NAME = "state.db"
LOCK_NAME = "orchestrate.lock"
SQLITE_BUSY_TIMEOUT_MS = 30_000

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
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass
class TaskRecord:
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
    outcome: Optional[str]          # JSON of agent.Outcome
    archive_path: Optional[str]
    nonce: Optional[str]
    result_message_id: Optional[str]
    claim_reacted: int
    status_reacted: Optional[str]
    attempts: int
    claimed_at: float
    updated_at: float

    @property
    def outcome_data(self) -> Dict[str, Any]:
        return json.loads(self.outcome) if self.outcome else {}


_COLUMNS = [f.name for f in fields(TaskRecord)]


def _state_error(path: Path, exc: BaseException) -> StateError:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return StateError(str(path), "the disk is full")
    if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StateError(str(path), "not writable (check the owner and permissions of the home directory)")
    if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc).lower():
        return StateError(str(path), "the disk is full")
    return StateError(str(path), f"{exc.__class__.__name__}: {exc}")


class Store:
    """SQLite-backed task records, the ledger and the home lock."""

    def __init__(self, runtime_dir: Path) -> None:
        self.runtime_dir = Path(runtime_dir)
        self.db_path = self.runtime_dir / DB_NAME
        self.ledger_path = self.runtime_dir / LEDGER_NAME
        self.lock_path = self.runtime_dir / LOCK_NAME
        self.host = socket.gethostname()
        self._local = threading.local()
        self._ledger_lock = threading.Lock()
        self._lock_fd: Optional[int] = None
        try:
            self.runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            conn = self._conn()
            conn.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise _state_error(self.runtime_dir, exc) from None

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
        if self._lock_fd is not None:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            finally:
                os.close(self._lock_fd)
                self._lock_fd = None

    # -- meta (cursor, cached bot id, one-time notices) --------------------
    def get_meta(self, key: str) -> Optional[str]:
        row = self._conn().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row["value"])

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as conn:
            conn.execute("INSERT INTO meta(key, value) VALUES(?, ?) "
                         "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    # -- records ---------------------------------------------------------
    def get(self, task_id: str) -> Optional[TaskRecord]:
        row = self._conn().execute("SELECT * FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
        return None if row is None else TaskRecord(**{c: row[c] for c in _COLUMNS})

    def known_ids(self, task_ids: List[str]) -> set:
        """Which of these ids the database or the ledger already knows."""
        if not task_ids:
            return set()
        found = set()
        conn = self._conn()
        for i in range(0, len(task_ids), 500):
            chunk = task_ids[i:i + 500]
            marks = ",".join("?" * len(chunk))
            found.update(r[0] for r in conn.execute(f"SELECT task_id FROM tasks WHERE task_id IN ({marks})", chunk))
        return found | (set(task_ids) & self.ledger_ids())

    def with_status(self, *statuses: str) -> List[TaskRecord]:
        marks = ",".join("?" * len(statuses))
        rows = self._conn().execute(
            f"SELECT * FROM tasks WHERE status IN ({marks}) ORDER BY task_id", statuses).fetchall()
        return [TaskRecord(**{c: r[c] for c in _COLUMNS}) for r in rows]

    def insert(self, *, task_id: str, channel_id: str, author_id: str, status: str, description: str = "",
               model_alias: str = "", model: str = "", thinking: str = "", worker: Optional[str] = None,
               refusal: Optional[str] = None) -> bool:
        """Create the record. False when the id is already known (someone claimed it first)."""
        now = time.time()
        try:
            with self._tx() as conn:
                conn.execute(
                    "INSERT INTO tasks(task_id, channel_id, author_id, status, description, model_alias, model, "
                    "thinking, worker, refusal, claimed_at, updated_at) VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
                    (task_id, channel_id, author_id, status, description, model_alias, model, thinking,
                     worker, refusal, now, now))
        except StateError as exc:
            if "UNIQUE" in exc.problem:
                return False
            raise
        return True

    def update(self, task_id: str, *, expect: Optional[tuple] = None, **values: Any) -> bool:
        """Set fields in one transaction; with ``expect``, only from one of those statuses."""
        unknown = set(values) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"unknown task fields: {sorted(unknown)}")
        values["updated_at"] = time.time()
        assignments = ", ".join(f"{k} = ?" for k in values)
        params: List[Any] = list(values.values()) + [task_id]
        sql = f"UPDATE tasks SET {assignments} WHERE task_id = ?"
        if expect:
            sql += f" AND status IN ({','.join('?' * len(expect))})"
            params.extend(expect)
        with self._tx() as conn:
            return conn.execute(sql, params).rowcount == 1

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
            "SELECT task_id FROM tasks WHERE status = ? AND refusal IS NULL ORDER BY task_id", (CLAIMED,))]
        if not claimed:
            return 0
        in_ledger = self.ledger_ids()
        missing = [task_id for task_id in claimed if task_id not in in_ledger]
        for task_id in missing:
            self.append_ledger(task_id)
        return len(missing)


def check_writable(path: Path) -> None:
    """Fail early, with one line, when a directory cannot take a file."""
    probe = path / f".write-probe-{os.getpid()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as fh:
            fh.write(b"ok")
            fh.flush()
            os.fsync(fh.fileno())
        os.unlink(probe)
    except OSError as exc:
        raise _state_error(path, exc) from None
