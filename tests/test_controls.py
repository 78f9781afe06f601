"""Stop and retry (issue 14), as people see them: a 🛑 or 🔁 on a task message in #task-queue.

alice may run tasks here (ALLOWED_USER_IDS); mallory may not, so her 🛑 and 🔁 are ignored and logged.
The thread words (`stop`, `retry`) reach the same door, controls.Controls.request, from the thread's
reader (the conversation side); these tests go through the reactions.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from discord_orch.config import load_settings
from discord_orch.discord_api import DiscordClient
from discord_orch.models import User
from discord_orch.orchestrator import Orchestrator
from discord_orch.sim.fleet import live_processes_marked, result_label, results_by_task
from discord_orch.state import Store

from helpers_agent import wait_for as poll_until
from tests.conftest import make_home

WAIT_CAP_S = 60.0
STOP = "🛑"
RETRY = "🔁"
STOPPED = "⏹"
GET_MESSAGES = "GET /channels/{channel_id}/messages"
GET_REACTORS = "GET /channels/{channel_id}/messages/{message_id}/reactions/{emoji}"
GET_ME = "GET /users/@me"   # the bot's own id, once a pass: is the reactor this bot?


def wait_for(cond, what: str):
    """The first true value of ``cond()``, or the test fails naming ``what``."""
    assert poll_until(cond, WAIT_CAP_S), f"gave up waiting for {what}"
    return cond()


def controlled_home(tmp_path: Path, world, **config: str):
    return make_home(tmp_path, world, ALLOWED_USER_IDS=world.alice.id, LOG_FILE="orch.log", **config)


def log_text(home) -> str:
    path = home.path / "orch.log"
    return path.read_text(encoding="utf-8") if path.exists() else ""


def results_for(world, task: str):
    return results_by_task(world, [task]).get(task, [])


def bot_reactions(world, task: str):
    return {emoji for emoji, users in world.ld.reactions(world.task_queue, task).items() if world.bot.id in users}


def react(world, user, task: str, emoji: str) -> None:
    world.ld.react(world.task_queue, task, user.id, emoji)


@pytest.mark.parametrize("claim", ["thread", "reaction"])
def test_a_stop_of_a_queued_and_of_a_running_task_and_a_retry_of_the_stopped_one(tmp_path, world, claim):
    home = controlled_home(tmp_path, world, CLAIM=claim, MAX_AGENTS="1")   # KILL_GRACE=1 (make_home)
    running = world.post(world.alice, "long job PARTIAL HANG_CHILD")["id"]
    queued = world.post(world.alice, "queued job")["id"]
    watch = home.popen("orchestrate", "--watch", "--interval", "0.3")
    try:
        [run] = wait_for(lambda: home.runs(), "the first agent")
        assert run["task_id"] == running
        agent_id = run["session_id"].rsplit("-", 1)[0]
        wait_for(lambda: live_processes_marked("DISCORD_ORCH_AGENT_ID", [agent_id]), "its processes")

        # mallory may not stop anything: ignored, and said in the log
        react(world, world.mallory, running, STOP)
        wait_for(lambda: "stop from mallory" in log_text(home), "mallory's 🛑 looked at")
        assert not results_for(world, running)

        # the queued task never runs: stopped before it ran, while the first still runs
        react(world, world.alice, queued, STOP)
        [post] = wait_for(lambda: results_for(world, queued), "the queued task's result")
        first = post["content"].split("\n", 1)[0]
        assert result_label(post) == "STOPPED" and "by **alice** before it ran" in first, first
        assert [r["task_id"] for r in home.runs()] == [running]
        wait_for(lambda: STOPPED in bot_reactions(world, queued), "⏹ on the queued task")

        # the running one: its whole group goes, what it left is kept
        react(world, world.alice, running, STOP)
        [post] = wait_for(lambda: results_for(world, running), "the running task's result")
        first = post["content"].split("\n", 1)[0]
        assert result_label(post) == "STOPPED" and "by **alice** after" in first, first
        assert "PARTIAL: long job" in post["content"]            # the partial RESULT.txt
        assert "agent-output.log" in post["content"]             # and the log's tail
        assert live_processes_marked("DISCORD_ORCH_AGENT_ID", [agent_id]) == []
        wait_for(lambda: STOPPED in bot_reactions(world, running), "⏹ on the running task")

        # a retry of the stopped queued task: mallory's is ignored, alice's runs it as attempt 2
        react(world, world.mallory, queued, RETRY)
        wait_for(lambda: "retry from mallory" in log_text(home), "mallory's 🔁 looked at")
        react(world, world.alice, queued, RETRY)
        posts = wait_for(lambda: len(results_for(world, queued)) == 2 and results_for(world, queued),
                         "the second attempt's result")
        first = posts[1]["content"].split("\n", 1)[0]
        assert result_label(posts[1]) == "DONE" and f"task `{queued}` · attempt 2 · " in first, first
        assert "cost " in posts[1]["content"]
        assert [r["task_id"] for r in home.runs()] == [running, queued]
        wait_for(lambda: "🏁" in bot_reactions(world, queued) and STOPPED not in bot_reactions(world, queued),
                 "🏁 instead of ⏹ on the retried task")
    finally:
        watch.send_signal(signal.SIGTERM)
        watch.communicate(timeout=60)
    assert home.ledger() == [running, queued]    # one line per claim: a retry writes none
    assert len(results_for(world, running)) == 1


def test_a_retry_under_cron_has_its_own_post_and_attempts_are_capped(tmp_path, world):
    home = controlled_home(tmp_path, world, CLAIM="reaction", MAX_ATTEMPTS="2")
    task = world.post(world.alice, "flaky FAIL")["id"]
    assert home.cli("orchestrate").returncode == 0
    react(world, world.alice, task, RETRY)
    second = home.cli("orchestrate")
    assert second.returncode == 0, second.stderr
    posts = results_for(world, task)
    assert [result_label(p) for p in posts] == ["FAILED", "FAILED"]
    assert " · attempt " not in posts[0]["content"].split("\n", 1)[0]
    assert f"task `{task}` · attempt 2 · " in posts[1]["content"].split("\n", 1)[0]
    assert len(home.runs()) == 2 and home.ledger() == [task]
    # MAX_ATTEMPTS=2: a new 🔁 (taken away and given again) runs nothing more
    world.ld.unreact(world.task_queue, task, world.alice.id, RETRY)
    assert home.cli("orchestrate").returncode == 0
    react(world, world.alice, task, RETRY)
    assert home.cli("orchestrate").returncode == 0
    assert len(home.runs()) == 2 and len(results_for(world, task)) == 2


def test_what_the_look_for_stop_and_retry_costs_a_pass(tmp_path, world):
    """No open task and nothing to retry: one request. A failure in its retry window: one more (the
    look); a 🔁 someone not allowed gave: two more, once (who reacted; the bot's id), then the look alone."""
    home = controlled_home(tmp_path, world, CLAIM="reaction")
    assert home.cli("submit", "an old task").returncode == 0
    assert home.cli("orchestrate").returncode == 0        # ran and posted: nothing to watch
    world.ld.reset_log()
    assert home.cli("orchestrate").returncode == 0
    assert [r.route for r in world.ld.requests] == [GET_MESSAGES]

    task = world.post(world.alice, "a FAIL task")["id"]
    assert home.cli("orchestrate").returncode == 0        # failed: watched for 🔁 for RETRY_WINDOW_HOURS
    world.ld.reset_log()
    assert home.cli("orchestrate").returncode == 0
    assert [r.route for r in world.ld.requests] == [GET_MESSAGES, GET_MESSAGES]
    react(world, world.mallory, task, RETRY)
    world.ld.reset_log()
    assert home.cli("orchestrate").returncode == 0
    assert [r.route for r in world.ld.requests] == [GET_MESSAGES, GET_MESSAGES, GET_REACTORS, GET_ME]
    world.ld.reset_log()
    assert home.cli("orchestrate").returncode == 0
    assert [r.route for r in world.ld.requests] == [GET_MESSAGES, GET_MESSAGES]
    assert len(home.runs()) == 2
    world.ld.reset_log()
    assert home.cli("orchestrate", env={"RETRY_WINDOW_HOURS": "0"}).returncode == 0
    assert [r.route for r in world.ld.requests] == [GET_MESSAGES]


def test_the_door_for_stop_and_retry_typed_in_a_thread_answers_and_a_retry_it_takes_runs(tmp_path, world,
                                                                                        monkeypatch):
    """Controls.request is what the thread's reader calls for `stop` / `retry`: it says why it will not."""
    home = controlled_home(tmp_path, world, CLAIM="reaction")
    done = world.post(world.alice, "done already")["id"]
    broke = world.post(world.alice, "broke FAIL")["id"]
    assert home.cli("orchestrate").returncode == 0
    for key, value in home.env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings(home.path, {})
    orch = Orchestrator(settings, DiscordClient(settings.token.reveal(), base_url=settings.api_base_url),
                        Store(settings.runtime_dir))
    alice, mallory = (User(u.id, u.username) for u in (world.alice, world.mallory))
    now = time.time()
    assert orch.controls.request("retry", broke, mallory, now) == (False, "mallory may not retry this task")
    assert orch.controls.request("stop", broke, alice, now) == (False, "it has ended already")
    assert orch.controls.request("retry", done, alice, now) == (False, "it ended ok: nothing to retry")
    assert orch.controls.request("retry", broke, alice, now).taken
    orch.run_pass()
    posts = results_for(world, broke)
    assert [result_label(p) for p in posts] == ["FAILED", "FAILED"]
    assert f"task `{broke}` · attempt 2 · " in posts[1]["content"].split("\n", 1)[0]
    assert len(results_for(world, done)) == 1 and len(home.runs()) == 3
