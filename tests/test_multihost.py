"""Issue 13: several hosts on one #task-queue, each task run once, Discord's one thread per message
as the arbiter (CLAIM=thread, the default).

End to end: real CLI passes, real HTTP to the loopback Discord, the stand-in agent. Hosts A and B
share one bot token (told apart by HOST_NAME in their threads' names); host C has a bot of its own.
"""

from __future__ import annotations

import signal
import sqlite3
import time
from typing import Dict, List

import pytest

from discord_orch.claim import Claims
from discord_orch.config import load_settings
from discord_orch.discord_api import DiscordClient
from discord_orch.errors import EXIT_CONFIG
from discord_orch.state import Store
from discord_orch.sim.localdiscord import LocalDiscord, RateLimits
from discord_orch.sim.standin_openclaw import gate_path
from discord_orch.sim.world import make_world
from helpers_agent import gated
from tests.conftest import make_home

START_ROUTE = "POST /channels/{channel_id}/messages/{message_id}/threads"
FLOOD = 12   # messages to refuse: more than the thread starts' bucket (10 per 10 s in the local Discord)
WATCH_CAP_S = 20.0   # a bound so that a hang fails the test; never an assertion on speed


@pytest.fixture
def hosts(tmp_path, world):
    """Three homes on one queue: A and B share the bot token, C has its own bot."""
    other_bot = world.ld.create_user("discord-orch-c", bot=True)
    world.ld.add_member(world.guild, other_bot.id)
    allowed = world.alice.id
    homes = {name: make_home(tmp_path / name, world, HOST_NAME=f"host-{name}", ALLOWED_USER_IDS=allowed)
             for name in "abc"}
    homes["c"].write_config(CHIP_TOKEN=other_bot.token)
    return homes


def statuses(home) -> Dict[str, str]:
    conn = sqlite3.connect(str(home.path / ".runtime" / "state.db"))
    try:
        return {task: status for task, status in conn.execute("SELECT task_id, status FROM tasks")}
    finally:
        conn.close()


def results_for(world, task_id: str) -> List[dict]:
    return [m for m in world.results_messages() if task_id in m["content"]]


def thread_messages(world, task_id: str) -> List[dict]:
    """What people see in the task's thread, after the starter line."""
    return [m for m in world.ld.messages(task_id) if m["type"] != 21]


def orchestrate(home):
    res = home.cli("orchestrate")
    assert res.returncode == 0, res.stderr
    return res


def test_the_host_that_starts_the_thread_runs_the_task_and_the_others_leave_it(hosts, world):
    task = world.post(world.alice, "Write a haiku about queues")["id"]
    first = orchestrate(hosts["a"])
    for name in ("b", "c"):
        later = orchestrate(hosts[name])
        assert "pass done: nothing to do" in later.stderr   # the poll shows the thread: no request spent on it
    assert [len(hosts[n].runs()) for n in "abc"] == [1, 0, 0]
    assert len(results_for(world, task)) == 1
    thread = world.ld.thread(task)
    assert thread["name"] == "Write a haiku about queues · host-a" and thread["parent_id"] == world.task_queue
    # issue 24: one message tells the story: the claim line, edited (running, how it ended) to carry the result
    [claimed] = thread_messages(world, task)
    claim_line, shown = claimed["content"].split("\n", 1)
    assert claim_line.startswith("🧵 Claimed by **host-a**")
    [result] = results_for(world, task)
    *body, attached, marker = shown.split("\n")
    assert body == result["content"].split("\n")[:-2]   # the result as in #results, under the claim line
    assert attached.endswith(f"attached to the result in <#{world.results}>.")   # an edit carries no file
    assert world.ld.thread(task)["thread_metadata"]["auto_archive_duration"] == 60   # Discord archives it
    assert "claimed task=" + task in first.stderr
    assert hosts["a"].ledger() == [task] and hosts["b"].ledger() == [] and hosts["c"].ledger() == []
    reactions = world.ld.messages(world.task_queue)[0]["reactions"]
    assert [r["emoji"]["name"] for r in reactions][:1] == ["✅"]


def test_a_host_that_loses_the_start_leaves_the_task_to_the_winner(hosts, world):
    """B read the task before A started its thread (the race the thread settles): B's start is
    answered 160004, B records the task as another host's and runs nothing."""
    task = world.post(world.alice, "Count to three")["id"]
    b = hosts["b"]
    settings = load_settings(b.path, environ={})
    store = Store(settings.runtime_dir, host=settings.host_name)
    with DiscordClient(settings.token.reveal(), base_url=settings.api_base_url) as client:
        [seen] = client.list_messages(world.task_queue, limit=10)   # no thread yet
        assert seen.thread is None
        orchestrate(hosts["a"])                                     # A claims and runs it meanwhile
        claims = Claims(settings, client, store, on_fatal=pytest.fail, on_done=lambda: None)
        lane = claims.start()
        decision = claims.decide(seen)
        lane.close(timeout=5)
    store.close()
    assert decision.record is None and not decision.refused
    assert statuses(b)[task] == "elsewhere"
    assert b.ledger() == [] and b.runs() == [] and len(results_for(world, task)) == 1
    starts = [r for r in world.ld.requests if r.route == START_ROUTE]
    assert [r.status for r in starts] == [201, 400]
    assert orchestrate(b) and b.runs() == []   # and B's next pass leaves it too


def test_an_answer_lost_after_the_thread_was_started_still_runs_the_task_once(hosts, world):
    task = world.post(world.alice, "Answer lost on the way back")["id"]
    world.ld.lose_thread_start_answers(count=1, message_id=task)
    res = orchestrate(hosts["a"])
    assert len(hosts["a"].runs()) == 1 and len(results_for(world, task)) == 1
    assert statuses(hosts["a"])[task] == "cleaned"
    starts = [r for r in world.ld.requests if r.route == START_ROUTE]
    assert len(starts) == 2   # the start, and its retry answered 160004; then a look at the thread
    assert "claimed task=" + task in res.stderr
    # the other hosts see the thread and leave it
    orchestrate(hosts["b"])
    orchestrate(hosts["c"])
    assert hosts["b"].runs() == [] and hosts["c"].runs() == []


def test_a_start_whose_fate_stayed_unknown_is_looked_at_by_the_next_pass(hosts, world):
    """The start took effect but every answer was an error: the record stays ``claiming``; the next
    pass looks at the thread, finds it is its own, and runs the task once."""
    task = world.post(world.alice, "Unknown fate")["id"]
    world.ld.fail("POST", "/channels/{channel_id}/messages/{message_id}/threads", statuses=(503,), count=10,
                  after_processing=True)
    first = hosts["a"].cli("orchestrate")
    assert hosts["a"].runs() == []
    assert statuses(hosts["a"])[task] == "claiming"
    assert "could not be read" in first.stderr or "tried again" in first.stderr
    world.ld.fail("POST", "/channels/{channel_id}/messages/{message_id}/threads", statuses=(503,), count=0)
    orchestrate(hosts["a"])
    assert len(hosts["a"].runs()) == 1 and len(results_for(world, task)) == 1
    orchestrate(hosts["b"])
    assert hosts["b"].runs() == []


def test_a_host_with_another_bot_loses_to_a_thread_it_did_not_start(hosts, world):
    task = world.post(world.alice, "Whose is it")["id"]
    orchestrate(hosts["c"])      # C's own bot starts the thread
    orchestrate(hosts["a"])
    assert len(hosts["c"].runs()) == 1 and hosts["a"].runs() == []
    assert world.ld.thread(task)["name"].endswith(" · host-c")


def test_without_thread_permissions_the_pass_says_which_and_nothing_runs(hosts, world):
    task = world.post(world.alice, "Needs a thread")["id"]
    world.ld.deny_permission(world.task_queue, world.bot.id, "CREATE_PUBLIC_THREADS")
    res = hosts["a"].cli("orchestrate")
    assert res.returncode == EXIT_CONFIG
    [line] = [ln for ln in res.stderr.splitlines() if "error" in ln]
    assert "Create Public Threads" in line and "CLAIM=reaction" in line and "Traceback" not in res.stderr
    assert hosts["a"].runs() == [] and results_for(world, task) == []
    world.ld.allow_permission(world.task_queue, world.bot.id, "CREATE_PUBLIC_THREADS")
    orchestrate(hosts["a"])
    assert len(hosts["a"].runs()) == 1 and len(results_for(world, task)) == 1


def test_claim_reaction_keeps_the_seed_single_host_rule(tmp_path, world):
    home = make_home(tmp_path, world, CLAIM="reaction", ALLOWED_USER_IDS=world.alice.id)
    task = world.post(world.alice, "No thread please")["id"]
    orchestrate(home)
    assert len(home.runs()) == 1 and len(results_for(world, task)) == 1
    assert not any(r.route == START_ROUTE for r in world.ld.requests)
    assert world.ld.messages(world.task_queue)[0].get("thread") is None


def test_a_refusal_is_posted_once_by_the_host_that_won_it(hosts, world):
    """Issue 24 (was: the host that won the stranger's thread posted it): no thread for a stranger; every
    host refuses it; the first adds ⛔ and explains; the others see its ⛔ and add nothing (with presence lines,
    the live host with the smallest name explains, as for NO HOST)."""
    task = world.post(world.mallory, "Let me in")["id"]
    for name in "abc":
        orchestrate(hosts[name])
    refusals = [m for m in world.results_messages() if task in m["content"]]
    assert len(refusals) == 1 and "not allowed" in refusals[0]["content"]
    [msg] = [m for m in world.ld.messages(world.task_queue) if m["id"] == task]
    assert msg.get("thread") is None and [r["emoji"]["name"] for r in msg["reactions"]] == ["⛔"]
    assert all(statuses(hosts[n])[task] in ("reported", "cleaned") for n in "abc")


def test_a_thread_someone_started_by_hand_keeps_hosts_off_the_task(hosts, world):
    task = world.post(world.alice, "Discuss first")["id"]
    world.ld.start_thread(world.task_queue, task, world.alice.id, "let's discuss")
    res = orchestrate(hosts["a"])
    assert hosts["a"].runs() == [] and results_for(world, task) == []
    assert "nothing to do" in res.stderr


def test_an_idle_pass_with_threads_makes_one_request(hosts, world):
    world.post(world.alice, "One and done")
    orchestrate(hosts["a"])
    world.ld.reset_log()
    res = orchestrate(hosts["a"])
    assert "nothing to do" in res.stderr
    assert [r.route for r in world.ld.requests] == ["GET /channels/{channel_id}/messages"]


def test_a_flood_to_refuse_holds_no_task_back_and_is_one_post(tmp_path):
    """The task that may run is claimed first, and the refusals go out as one post per author. Issue 24
    (was: a thread start each, FLOOD + 1): a stranger's message starts no thread."""
    with LocalDiscord(rate_limits=RateLimits.discord_defaults()) as ld:
        world = make_world(ld)
        home = make_home(tmp_path, world, HOST_NAME="host-a", ALLOWED_USER_IDS=world.alice.id)
        flood = [world.post(world.mallory, f"let me in #{i}")["id"] for i in range(FLOOD)]
        task = world.post(world.alice, "the real work")["id"]
        orchestrate(home)
        assert [r["task_id"] for r in home.runs()] == [task]
        starts = [r.path for r in ld.requests if r.route == START_ROUTE]
        assert len(starts) == 1 and f"/messages/{task}/" in starts[0]   # the task's thread only
        [refusal] = [m["content"] for m in world.results_messages() if "REFUSED" in m["content"]]
        assert flood[0] in refusal and "not allowed" in refusal
        assert len(results_for(world, task)) == 1


def test_at_discords_thread_cap_the_task_waits_with_one_line_and_runs_once_there_is_room(hosts, world):
    world.ld.max_active_threads = 1
    world.ld.start_thread(world.task_queue, world.post(world.alice, "someone's discussion")["id"], world.alice.id,
                          "a discussion")
    task = world.post(world.alice, "Wait for room")["id"]
    res = hosts["a"].cli("orchestrate")
    assert hosts["a"].runs() == [] and "Discord's most active threads (1,000)" in res.stderr
    world.ld.max_active_threads = 2
    orchestrate(hosts["a"])
    assert len(hosts["a"].runs()) == 1 and len(results_for(world, task)) == 1


def test_a_watch_looks_again_at_a_start_it_could_not_judge_when_it_began(hosts, world):
    """A pass's start took effect unanswered (``claiming``); the next process is a ``--watch`` whose
    recovery cannot look at the thread (Discord errors past the retries). The thread on the message
    keeps the task out of every poll, so unless the watch looks again once Discord answers, the task
    never runs: no host runs it, nobody sees a result."""
    task = world.post(world.alice, "Judged later")["id"]
    world.ld.fail("POST", "/channels/{channel_id}/messages/{message_id}/threads", statuses=(503,), count=10,
                  after_processing=True)
    hosts["a"].cli("orchestrate")
    assert statuses(hosts["a"])[task] == "claiming"
    world.ld.clear_faults()
    world.ld.fail("GET", "/channels/{channel_id}", statuses=(503,), count=4, where={"channel_id": task})
    watch = hosts["a"].popen("orchestrate", "--watch", "--interval", "0.3")
    try:
        deadline = time.monotonic() + WATCH_CAP_S
        while not results_for(world, task) and time.monotonic() < deadline and watch.poll() is None:
            time.sleep(0.05)
    finally:
        watch.send_signal(signal.SIGTERM)
        _out, err = watch.communicate(timeout=60)
    assert "who has it is not known yet" in err
    assert len(hosts["a"].runs()) == 1 and len(results_for(world, task)) == 1, err[-3000:]
    assert statuses(hosts["a"])[task] == "cleaned"


def test_claim_lines_a_killed_pass_left_unsaid_are_said_once_by_the_next(hosts, world):
    """The claim line goes out on the task lane after the ✅, while the agent already runs. Pass 1 is
    SIGKILLed once both lines have failed: the first never reached Discord, the second did but its
    answers were lost. The next pass adopts both agents; each thread ends with one claim line."""
    home = hosts["a"]
    home.write_config(MAX_AGENTS="2")
    unsaid, unheard = (world.post(world.alice, f"Claim line {n} SLEEP=12")["id"] for n in ("unsaid", "unheard"))
    # failing until pass 1 is killed (it tries each line again past the client's retries)
    world.ld.fail("POST", "/channels/{channel_id}/messages", statuses=(503,), count=100,
                  where={"channel_id": unsaid})
    world.ld.drop("POST", "/channels/{channel_id}/messages", count=100, after_processing=True,
                  where={"channel_id": unheard})
    first = home.popen("orchestrate")
    deadline = time.monotonic() + WATCH_CAP_S
    posts = "POST /channels/{channel_id}/messages"
    # the lane tries unsaid's line in every round first, then unheard's
    while sum(1 for r in world.ld.requests if r.route == posts and r.channel_id == unheard) < 4:
        assert time.monotonic() < deadline and first.poll() is None, "pass 1 did not try both lines"
        time.sleep(0.05)
    first.kill()
    first.communicate()
    assert [claim_lines(world, t) for t in (unsaid, unheard)] == [0, 1]
    world.ld.clear_faults()
    orchestrate(home)
    assert [claim_lines(world, t) for t in (unsaid, unheard)] == [1, 1]
    assert len(home.runs()) == 2 and all(len(results_for(world, t)) == 1 for t in (unsaid, unheard))


def claim_lines(world, task_id: str) -> int:
    return sum(1 for m in thread_messages(world, task_id) if "Claimed by **host-a**" in m["content"])


def test_a_host_whose_poll_went_stale_reads_again_instead_of_starting_taken_threads(hosts, world):
    """B (one agent) polled four tasks and runs the first; meanwhile A takes the other three. When B
    is free, its first start is answered 160004: the rest of its poll is stale too, so it reads the
    queue again (one GET, which shows their threads) instead of spending a start on each."""
    a, b = hosts["a"], hosts["b"]
    b.write_config(MAX_AGENTS="1")
    a.write_config(MAX_AGENTS="3")
    # B's first task runs until A's pass is over (a gate, not a sleep: under load A's pass took longer
    # than B's 4 s task once, and B took one of A's tasks)
    gated(b, b.path)
    tasks = [world.post(world.alice, f"job {n} {'GATE=1' if n == 0 else 'SLEEP=0.2'}")["id"] for n in range(4)]
    b_pass = b.popen("orchestrate")
    deadline = time.monotonic() + WATCH_CAP_S
    while [r["task_id"] for r in b.runs()] != tasks[:1]:
        assert time.monotonic() < deadline and b_pass.poll() is None, "B did not start its first task"
        time.sleep(0.05)
    orchestrate(a)
    assert sorted(r["task_id"] for r in a.runs()) == sorted(tasks[1:])
    gate_path(b.path, "1").touch()
    _out, err = b_pass.communicate(timeout=WATCH_CAP_S)
    assert b_pass.returncode == 0, err
    assert [r["task_id"] for r in b.runs()] == tasks[:1]
    assert all(len(results_for(world, t)) == 1 for t in tasks)
    lost = [r for r in world.ld.requests if r.route == START_ROUTE and r.status == 400]
    assert len(lost) == 1, [r.path for r in lost]
