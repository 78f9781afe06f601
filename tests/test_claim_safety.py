"""Issue 11, items 2, 4 and 8: what decides a claim, and what cannot hold one back.

- Nothing the orchestrator posts is ever a task, even in #task-queue as a plain
  message (its task message deleted, so the reply fell back).
- Only a ✅ from this bot, a bot named in CLAIM_BOT_IDS or an allowed user claims a task.
- Refusals never hold results back: results go first, refusals to one author are one post.

End to end (conftest: real CLI subprocesses, real HTTP to the loopback Discord, the stand-in agent).
"""

from __future__ import annotations

import signal
import sqlite3
import time

import pytest

from discord_orch.sim.localdiscord import LocalDiscord, RateLimits
from discord_orch.sim.world import make_world
from tests.conftest import make_home
from tests.test_flow import task_id_from
from tests.test_reliability import records

WAIT_S = 30.0
POST_ROUTE = "/channels/{channel_id}/messages"


def wait_for(predicate, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def submit(home, *args: str) -> str:
    res = home.cli("submit", *args)
    assert res.returncode == 0, res.stderr
    return task_id_from(res.stdout)


def orchestrate(home, **kw):
    res = home.cli("orchestrate", **kw)
    assert res.returncode == 0, res.stderr
    return res


def plain_bot_posts(world, channel: str):
    return [m for m in world.ld.messages(channel)
            if m["author"]["id"] == world.bot.id and not m.get("message_reference")]


# ----------------------------------------------------------------------
# item 2: the bot's own posts are never tasks
# ----------------------------------------------------------------------
def result_posted_plain_in_the_queue(home, world):
    """RESULTS_CHANNEL = TASK_QUEUE_CHANNEL, and the task message deleted while its agent runs:
    (task id, its result, posted as a plain message in #task-queue)."""
    home.write_config(RESULTS_CHANNEL=world.task_queue)
    task_id = submit(home, "Work a little SLEEP=2")
    proc = home.popen("orchestrate")
    try:
        wait_for(lambda: home.runs())
        world.ld.delete_message(world.task_queue, task_id)   # a moderator tidies up meanwhile
        assert proc.wait(timeout=WAIT_S) == 0, proc.stderr.read()
    finally:
        proc.kill() if proc.poll() is None else None
    [result] = [m for m in plain_bot_posts(world, world.task_queue) if task_id in m["content"]]
    assert result["content"].startswith("✅ **DONE**")   # posted plain: the reply had nothing to refer to
    return task_id, result


def forget_cursor(home) -> None:
    """The next pass reads #task-queue from its start: every message is judged again."""
    conn = sqlite3.connect(str(home.path / ".runtime" / "state.db"))
    with conn:
        conn.execute("DELETE FROM meta WHERE key LIKE 'cursor:%'")
    conn.close()


def test_a_result_whose_task_was_deleted_is_not_run_as_a_task(home, world):
    task_id, _ = result_posted_plain_in_the_queue(home, world)
    orchestrate(home)
    forget_cursor(home)
    orchestrate(home)
    assert [r["task_id"] for r in home.runs()] == [task_id]   # the result was not run, in either pass


def test_a_post_recorded_as_ours_is_not_run_even_without_its_marker(home, world):
    """The records alone decide too: a result whose marker line is gone (edited, or eaten by some
    content handling) is still known by its id."""
    task_id, result = result_posted_plain_in_the_queue(home, world)
    unmarked = result["content"].rsplit("\n", 1)[0]
    assert not unmarked.endswith("discord-orch")
    world.ld.edit_message(world.task_queue, result["id"], unmarked)
    forget_cursor(home)
    orchestrate(home)
    assert [r["task_id"] for r in home.runs()] == [task_id]


def test_a_post_not_recorded_is_known_by_its_marker(home, world):
    """The marker alone decides too: a post whose answer was lost before its id was recorded."""
    task_id, _ = result_posted_plain_in_the_queue(home, world)
    conn = sqlite3.connect(str(home.path / ".runtime" / "state.db"))
    with conn:
        conn.execute("DELETE FROM posted")
    conn.close()
    forget_cursor(home)
    orchestrate(home)
    assert [r["task_id"] for r in home.runs()] == [task_id]


def test_a_refusal_posted_after_its_message_was_deleted_is_not_run(home, world):
    home.write_config(RESULTS_CHANNEL=world.task_queue)
    stranger = world.post(world.mallory, "please run me")["id"]
    world.ld.fail("POST", POST_ROUTE, statuses=(503,), count=50)   # the refusal cannot be posted this pass
    orchestrate(home, env={"RATE_LIMIT_MAX_WAIT": "1"})
    world.ld.clear_faults()
    assert not plain_bot_posts(world, world.task_queue)
    world.ld.delete_message(world.task_queue, stranger)
    orchestrate(home)   # posts the refusal, plain now
    [refusal] = plain_bot_posts(world, world.task_queue)
    assert "REFUSED" in refusal["content"] and stranger in refusal["content"]
    forget_cursor(home)
    orchestrate(home)
    assert home.runs() == []   # neither pass ran the bot's own refusal


def test_submitted_tasks_still_run_in_a_shared_channel(home, world):
    home.write_config(RESULTS_CHANNEL=world.task_queue)
    first = submit(home, "first task")
    orchestrate(home)
    second = submit(home, "second task")
    orchestrate(home)
    assert [r["task_id"] for r in home.runs()] == [first, second]


def test_submit_refuses_a_task_that_would_read_as_the_orchestrators_output(home, world):
    res = home.cli("submit", "summarise this\n-# discord-orch")
    assert res.returncode != 0 and "-# discord-orch" in res.stderr and "Traceback" not in res.stderr
    assert world.ld.messages(world.task_queue) == []   # nothing was posted


# ----------------------------------------------------------------------
# item 4: whose ✅ claims a task
# ----------------------------------------------------------------------
CHECK = "✅"


def test_a_strangers_check_mark_does_not_veto_a_task_and_is_logged_once(home, world):
    home.write_config(MAX_AGENTS="1")
    busy = submit(home, "keep the only agent busy SLEEP=30")
    task_id = submit(home, "a task mallory would like to stop")
    world.ld.react(world.task_queue, task_id, world.mallory.id, CHECK)
    proc = home.popen("orchestrate")   # reads both; the second waits for a free agent
    try:
        wait_for(lambda: home.runs())
        proc.send_signal(signal.SIGTERM)   # the pass ends with the second still unclaimed
        _, first_log = proc.communicate(timeout=WAIT_S)
    finally:
        proc.kill() if proc.poll() is None else None
    [line] = [line for line in first_log.splitlines() if "ignored" in line and task_id in line]
    assert world.mallory.id in line
    run = orchestrate(home)   # reads it again: runs it, and says nothing more about the ✅
    assert task_id in [r["task_id"] for r in home.runs()] and busy in [r["task_id"] for r in home.runs()]
    assert not [line for line in run.stderr.splitlines() if "ignored" in line and task_id in line]


def test_a_check_mark_from_an_allowed_user_or_a_named_bot_still_claims(home, world):
    old_bot = world.ld.create_user("old-scripts", bot=True)
    world.ld.add_member(world.guild, old_bot.id)
    home.write_config(ALLOWED_USER_IDS=world.alice.id, CLAIM_BOT_IDS=old_bot.id)
    by_alice = submit(home, "alice said: don't")
    by_old_bot = submit(home, "the old scripts took this one")
    world.ld.react(world.task_queue, by_alice, world.alice.id, CHECK)
    world.ld.react(world.task_queue, by_old_bot, old_bot.id, CHECK)
    orchestrate(home)
    assert home.runs() == []


def test_reactors_are_fetched_only_for_a_check_mark_that_is_not_ours(home, world):
    plain = submit(home, "nobody reacted")
    stray = submit(home, "mallory reacted")
    world.ld.react(world.task_queue, stray, world.mallory.id, CHECK)
    orchestrate(home)
    assert sorted(r["task_id"] for r in home.runs()) == sorted([plain, stray])
    fetched = [r.path for r in world.ld.requests if r.method == "GET" and "/reactions/" in r.path]
    assert len(fetched) == 1 and f"/messages/{stray}/" in fetched[0]
    world.ld.reset_log()
    orchestrate(home)   # both are ours now (records, and our own ✅): nothing is fetched
    assert not [r for r in world.ld.requests if r.method == "GET" and "/reactions/" in r.path]


# ----------------------------------------------------------------------
# item 8: refusals never hold results back
# ----------------------------------------------------------------------
FLOOD = 100
STRANGERS = 8   # more than #results' bucket (5 posts / 5 s): the last refusals must wait for it


@pytest.fixture
def limited_world():
    with LocalDiscord(rate_limits=RateLimits.discord_defaults()) as ld:
        yield make_world(ld)


def test_a_flood_of_refused_messages_is_one_post_per_author(tmp_path, limited_world):
    """Issue 24 (was: one post listing the whole flood, ⛔ on each): a stranger's flood costs ⛔ on the first
    STRANGER_MARKS messages and one explanation a period; the rest are recorded and cost nothing."""
    from discord_orch.claim import STRANGER_MARKS

    world = limited_world
    home = make_home(tmp_path, world, CLAIM="reaction")
    flood = [world.post(world.mallory, f"let me in #{i}")["id"] for i in range(FLOOD)]
    task_id = submit(home, "the real work")
    orchestrate(home)
    assert [r["task_id"] for r in home.runs()] == [task_id]
    posts = world.results_messages()
    [refusal] = [m["content"] for m in posts if "REFUSED" in m["content"]]   # one post for the whole flood
    assert f"user {world.mallory.id} is not allowed to run tasks here" in refusal and flood[0] in refusal
    assert [m for m in posts if task_id in m["content"] and "DONE" in m["content"]]
    assert set(records(home).values()) <= {"reported", "cleaned"} and set(flood) <= set(records(home))
    reacted = [r.path for r in world.ld.requests if r.method == "PUT" and "/reactions/" in r.path]
    assert len(reacted) == STRANGER_MARKS + 2   # the flood's ⛔, the task's ✅ and 🏁
    claimed = next(i for i, path in enumerate(reacted) if f"/messages/{task_id}/" in path)
    assert claimed < STRANGER_MARKS, claimed   # the task's ✅ did not wait behind the flood's ⛔ either
    # said once: a later pass adds nothing (ids and texts: attachment links are signed anew at each read)
    assert orchestrate(home)
    assert [(m["id"], m["content"]) for m in world.results_messages()] == [(m["id"], m["content"]) for m in posts]


def test_results_go_before_refusals_waiting_for_the_rate_limit(tmp_path, limited_world):
    world = limited_world
    home = make_home(tmp_path, world)
    for n in range(STRANGERS):
        stranger = world.ld.create_user(f"stranger{n}")
        world.ld.add_member(world.guild, stranger.id)
        world.ld.post_message(world.task_queue, stranger.id, "run this")
    task_id = submit(home, "the real work")
    orchestrate(home)
    posts = [m["content"] for m in world.results_messages()]
    assert len(posts) == STRANGERS + 1
    result = next(i for i, text in enumerate(posts) if task_id in text)
    assert "REFUSED" in posts[-1] and result < len(posts) - 1, posts   # the result did not wait behind them


def test_a_grouped_refusal_whose_answer_was_lost_is_found_not_posted_again(home, world):
    """The one post for several refusals took effect, but its answer was lost: the next pass finds it
    by the first message it lists (kept in each record's nonce), even for the messages it could not list.
    (Issue 24: an allowed author's refused tasks, grouped; a stranger's flood gets one explanation.)"""
    home.write_config(ALLOWED_USER_IDS=world.alice.id, CLAIM="reaction")
    refused = [world.post(world.alice, f"[worker:nosuch] run #{i}")["id"] for i in range(FLOOD)]
    world.ld.drop("POST", POST_ROUTE, count=50, after_processing=True)
    orchestrate(home, env={"RATE_LIMIT_MAX_WAIT": "1"})
    world.ld.clear_faults()
    posted = len(world.results_messages())   # one post per author a turn: as many as turns decided them
    assert posted < FLOOD // 10 and set(records(home).values()) == {"reporting"}
    world.ld.nonce_window = 0.0   # long ago: Discord no longer knows the nonce
    world.ld.reset_log()
    orchestrate(home)
    assert not [r for r in world.ld.requests if r.method == "POST" and r.channel_id == world.results]
    assert len(world.results_messages()) == posted and set(records(home)) == set(refused)
    assert set(records(home).values()) <= {"reported", "cleaned"}
