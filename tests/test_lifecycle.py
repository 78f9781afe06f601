"""A task's lifecycle is code: named transitions, each checked against the status it leaves.

What a user would see is the record in .runtime/state.db (read here with sqlite3, as
anyone debugging a home would) and the one-line error a bug produces; an impossible
transition must leave the record exactly as it was.
"""

from __future__ import annotations

import json
import sqlite3

import pytest

from discord_orch.errors import TransitionError
from discord_orch.outcome import FAILED, OK, STOPPED, Outcome
from discord_orch.state import (CLAIMED, OUTCOME_TEXT_KEPT, REFUSED, TRANSITIONS, Store, TaskStatus,
                                outcome_from_json)

TASK = "1300000000000000001"
CHANNEL = "1200000000000000001"
AUTHOR = "1100000000000000001"


def row(store: Store, task_id: str = TASK) -> dict:
    """The record as sqlite3 shows it."""
    with sqlite3.connect(store.db_path) as conn:
        conn.row_factory = sqlite3.Row
        found = conn.execute("SELECT * FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
    return dict(found) if found is not None else {}


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / ".runtime")
    yield s
    s.close()


def claimed(store: Store, task_id: str = TASK) -> str:
    assert store.insert(task_id=task_id, channel_id=CHANNEL, author_id=AUTHOR, status=CLAIMED,
                        description="a task", model="m/x", thinking="low")
    return task_id


def walk_to_running(store: Store) -> None:
    claimed(store)
    store.mark_starting(TASK, agent_id="agent-1-abcdef", agent_dir="/w/agent-1-abcdef")
    store.mark_running(TASK, pid=4242, pgid=4242, proc_start=7, started_at=100.0, deadline=220.0)


def test_the_whole_walk_is_written_step_by_step(store):
    claimed(store)
    assert row(store)["status"] == "claimed"
    store.mark_starting(TASK, agent_id="agent-1-abcdef", agent_dir="/w/agent-1-abcdef")
    assert (row(store)["status"], row(store)["agent_id"], row(store)["host"]) == \
        ("starting", "agent-1-abcdef", store.host)
    store.mark_running(TASK, pid=4242, pgid=4242, proc_start=7, started_at=100.0, deadline=220.0)
    assert (row(store)["status"], row(store)["pid"], row(store)["deadline"]) == ("running", 4242, 220.0)
    store.mark_finished(TASK, Outcome(status=OK, duration_s=3.5, result_text="42"), finished_at=104.0,
                        archive_path=None)
    assert row(store)["status"] == "finished" and json.loads(row(store)["outcome"])["result_text"] == "42"
    store.mark_reporting(TASK, nonce=f"r{TASK}")
    store.mark_reporting(TASK, nonce=f"r{TASK}")   # a retry of a post whose fate was unknown
    assert (row(store)["status"], row(store)["nonce"]) == ("reporting", f"r{TASK}")
    store.mark_reported(TASK, message_id="1400000000000000001")
    assert (row(store)["status"], row(store)["result_message_id"]) == ("reported", "1400000000000000001")
    store.mark_cleaned(TASK)
    assert row(store)["status"] == "cleaned"
    assert store.get(TASK).status is TaskStatus.CLEANED


@pytest.mark.parametrize("step", ["running", "finished", "reported", "cleaned", "reporting"])
def test_a_claimed_task_cannot_skip_ahead_and_nothing_is_written(store, step):
    claimed(store)
    before = row(store)
    moves = {
        "running": lambda: store.mark_running(TASK, pid=1, pgid=1, proc_start=1, started_at=1.0, deadline=2.0),
        "finished": lambda: store.mark_finished(TASK, Outcome(status=OK, duration_s=1.0), finished_at=1.0,
                                                archive_path=None),
        "reported": lambda: store.mark_reported(TASK, message_id="1400000000000000001"),
        "cleaned": lambda: store.mark_cleaned(TASK),
        "reporting": lambda: store.mark_reporting(TASK, nonce="r1"),
    }
    with pytest.raises(TransitionError) as caught:
        moves[step]()
    assert str(caught.value) == f"internal error: task {TASK} cannot become {step}: it is claimed"
    assert row(store) == before


def test_a_finished_task_cannot_run_again_nor_be_cleaned_before_its_post(store):
    walk_to_running(store)
    store.mark_finished(TASK, Outcome(status=FAILED, duration_s=1.0), finished_at=1.0, archive_path="/a/x")
    before = row(store)
    for move in (lambda: store.mark_starting(TASK, agent_id="agent-2-abcdef", agent_dir="/w/2"),
                 lambda: store.mark_claimed_again(TASK),
                 lambda: store.mark_cleaned(TASK)):
        with pytest.raises(TransitionError):
            move()
    assert row(store) == before


def test_an_unknown_task_has_no_transition(store):
    with pytest.raises(TransitionError, match="it has no record"):
        store.mark_starting("1300000000000000009", agent_id="agent-1-abcdef", agent_dir="/w")
    assert row(store, "1300000000000000009") == {}


def test_records_start_only_as_claimed_or_refused(store):
    with pytest.raises(TransitionError):
        store.insert(task_id=TASK, channel_id=CHANNEL, author_id=AUTHOR, status=TaskStatus.RUNNING)
    assert row(store) == {}
    assert store.insert(task_id=TASK, channel_id=CHANNEL, author_id=AUTHOR, status=REFUSED, refusal="no")
    assert not store.insert(task_id=TASK, channel_id=CHANNEL, author_id=AUTHOR, status=CLAIMED)  # known
    store.mark_reported(TASK, message_id=None)    # a refusal said once already: no post of its own
    assert row(store)["status"] == "reported"


def test_back_to_claimed_forgets_the_agent_and_counts_the_attempt(store):
    walk_to_running(store)
    store.mark_claimed_again(TASK, attempts=1)
    r = row(store)
    assert (r["status"], r["agent_id"], r["agent_dir"], r["pid"], r["pgid"], r["attempts"]) == \
        ("claimed", None, None, None, None, 1)


def test_every_status_has_its_transitions_and_the_end_has_none():
    assert set(TRANSITIONS) == set(TaskStatus)
    assert TRANSITIONS[TaskStatus.DROPPED] == frozenset()
    assert TRANSITIONS[TaskStatus.CLEANED] == frozenset({CLAIMED})   # only a retry leaves it (controls.py)
    assert TRANSITIONS[TaskStatus.ELSEWHERE] == frozenset({CLAIMED})   # only a takeover leaves it (takeover.py)


def test_the_outcome_is_kept_capped_then_slimmed_once_posted(store):
    walk_to_running(store)
    big = "x" * (OUTCOME_TEXT_KEPT + 5000)
    store.mark_finished(TASK, Outcome(status=OK, duration_s=2.0, result_text=big, summary_text="short",
                                      result_bytes=len(big)), finished_at=5.0, archive_path=None)
    kept = store.get(TASK).finished_outcome
    assert len(kept.result_text) == OUTCOME_TEXT_KEPT and kept.summary_text == "short"
    assert kept.result_bytes == len(big)
    store.mark_reporting(TASK, nonce="r")
    store.mark_reported(TASK, message_id="1400000000000000001")
    store.mark_cleaned(TASK)
    slim = json.loads(row(store)["outcome"])
    assert slim["status"] == "ok" and slim["result_bytes"] == len(big) and "result_text" not in slim
    assert len(row(store)["outcome"]) < 2000
    assert store.get(TASK).outcome_status == "ok"


def test_an_outcome_written_by_another_version_still_reads():
    old = json.dumps({"status": "failed", "duration_s": 1.5, "reason": "boom", "a_field_from_later": 1,
                      "usage": {"input_tokens": 3, "unknown": 9}, "files": ["a.txt"]})
    out = outcome_from_json(old)
    assert (out.status, out.reason, out.usage.input_tokens, out.files) == ("failed", "boom", 3, ("a.txt",))
    assert outcome_from_json(None).status == "interrupted"


# ---------------------------------------------------------------- stop and retry (controls.py)

def stopped(by: str = "alice") -> Outcome:
    return Outcome(status=STOPPED, duration_s=0.0, reason=f"stopped by {by} before it ran", stopped_by=by)


def test_a_claimed_task_stopped_before_it_ran_is_finished_with_who_stopped_it(store):
    claimed(store)
    store.mark_stopped_before_it_ran(TASK, stopped(), finished_at=5.0)
    r = row(store)
    assert (r["status"], r["agent_id"], r["finished_at"]) == ("finished", None, 5.0)
    assert store.get(TASK).finished_outcome.stopped_by == "alice"


def test_only_a_stop_ends_a_claimed_task_before_it_ran_and_only_a_claimed_one(store):
    claimed(store)
    before = row(store)
    with pytest.raises(TransitionError):   # a claimed task cannot skip its run with any other outcome
        store.mark_stopped_before_it_ran(TASK, Outcome(status=OK, duration_s=0.0), finished_at=1.0)
    assert row(store) == before
    other = Store(store.runtime_dir.parent / "other" / ".runtime")
    walk_to_running(other)
    before = row(other)
    with pytest.raises(TransitionError):   # a running one is stopped through its agent (outcome stopped)
        other.mark_stopped_before_it_ran(TASK, stopped(), finished_at=1.0)
    assert row(other) == before


def walk_to_cleaned(store: Store, status: str = FAILED) -> None:
    walk_to_running(store)
    store.mark_finished(TASK, Outcome(status=status, duration_s=1.0, result_text="half"), finished_at=7.0,
                        archive_path="/a/agent-1-abcdef")
    store.mark_reporting(TASK, nonce=f"r{TASK}")
    store.mark_reported(TASK, message_id="1400000000000000001")
    store.mark_cleaned(TASK)


def test_a_retry_takes_a_cleaned_task_back_to_claimed_as_its_next_attempt(store):
    walk_to_cleaned(store)
    assert store.retryable(since=0.0, max_attempts=3)[0].task_id == TASK
    assert store.mark_retry(TASK) == 2
    r = row(store)
    assert (r["status"], r["attempts"], r["agent_id"], r["outcome"], r["nonce"], r["result_message_id"],
            r["archive_path"], r["finished_at"]) == ("claimed", 1, None, None, None, None, None, None)
    assert store.get(TASK).attempt == 2
    assert store.retryable(since=0.0, max_attempts=3) == []   # it is open again: nothing to retry


def test_what_can_be_retried(store):
    walk_to_cleaned(store, OK)
    assert store.retryable(since=0.0, max_attempts=3) == []            # it succeeded
    other = Store(store.runtime_dir.parent / "b" / ".runtime")
    walk_to_cleaned(other)
    assert other.retryable(since=8.0, max_attempts=3) == []            # ended before the window
    assert other.retryable(since=0.0, max_attempts=1) == []            # MAX_ATTEMPTS=1: no second run
    assert [r.task_id for r in other.retryable(since=7.0, max_attempts=2)] == [TASK]


def test_a_retry_never_leaves_an_open_task_and_back_to_claimed_never_leaves_a_cleaned_one(store):
    walk_to_running(store)
    before = row(store)
    with pytest.raises(TransitionError):
        store.mark_retry(TASK)
    assert row(store) == before
    other = Store(store.runtime_dir.parent / "c" / ".runtime")
    walk_to_cleaned(other)
    before = row(other)
    with pytest.raises(TransitionError):
        other.mark_claimed_again(TASK, attempts=1)
    assert row(other) == before
