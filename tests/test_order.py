"""Issue 17 (part A): `[needs:tag]` routing, `[priority:...]`, turns between authors, no starvation.

End to end on the local Discord with the real CLI and the stand-in agent; MAX_AGENTS=1, so the order
of the agents' runs (the stand-in's run log) is the order tasks were claimed in. Tests that are about
the order only use CLAIM=reaction (no thread starts, which the local Discord rate-limits as Discord
does); the hosts' tests use threads, the default.
"""

from __future__ import annotations

import os
import signal
import time
from typing import List

from discord_orch.order import HostSeen, answers_here, level, unreachable_needs
from discord_orch.sim.fleet import Fleet, audit
from discord_orch.tasks import format_task_message, parse_task, read_routing
from tests.conftest import make_home

WAIT_CAP_S = 30.0          # a bound so that a hang fails the test; never an assertion on speed
AGE_S = 0.3                # PRIORITY_AGE in the starvation test: a low task counts as high after 0.6 s


def wait_for(cond, what: str, cap: float = WAIT_CAP_S) -> None:
    end = time.monotonic() + cap
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def run_order(home) -> List[str]:
    return [run["task_id"] for run in home.runs()]


def orchestrate(home):
    res = home.cli("orchestrate")
    assert res.returncode == 0, res.stderr
    return res


# ---------------------------------------------------------------- the tags, read (pure)
def test_needs_add_up_and_priority_is_one_level():
    parsed = parse_task("Train it [needs:gpu] [ Needs : repo-x,GPU ] [priority:HIGH]")
    assert parsed.ok and parsed.description == "Train it"
    assert parsed.needs == ("gpu", "repo-x") and parsed.priority == "high"
    assert parse_task("plain").needs == () and parse_task("plain").priority == "normal"
    bad = parse_task("x [priority:urgent] [needs:g p u]")
    assert bad.problems == ('bad host tag "g p u" in [needs:...]: use 1-32 lower-case letters, digits, \'-\' or '
                            "'_' (a HOST_TAGS name)", 'unknown priority "urgent": use one of high, normal, low')
    assert read_routing("```[needs:gpu]``` [priority:low]") == ((), "low")   # a fenced tag is task text
    text = format_task_message("Sum it", task_id="1234567890123456789", needs=("gpu", "repo-x"), priority="low")
    assert text == "**[Task: 1234567890123456789]** Sum it [needs:gpu] [needs:repo-x] [priority:low]"
    assert parse_task(text)[:1] == ("Sum it",) and read_routing(text) == (("gpu", "repo-x"), "low")


def test_a_task_rises_a_level_per_age_and_one_live_host_answers():
    assert [level("low", waited, 10) for waited in (0, 9.9, 10, 25, 1000)] == [0, 0, 1, 2, 2]
    assert level("high", 0, 10) == 2 and level("normal", -5, 10) == 1   # a clock behind the id: no bonus
    now = 1_000.0
    a = HostSeen("host-a", frozenset({"gpu"}), now - 5)
    b = HostSeen("host-b", frozenset({"repo-x"}), now - 500)   # silent for longer than 60 s
    assert unreachable_needs(("gpu",), [a, b], now=now, silent_after=60) == ()
    assert unreachable_needs(("repo-x",), [a, b], now=now, silent_after=60) == ("repo-x",)
    assert unreachable_needs(("repo-x",), [a, b], now=now, silent_after=1000) == ()
    assert unreachable_needs(("gpu", "repo-x"), [a, b], now=now, silent_after=1000) == ("gpu", "repo-x")
    assert unreachable_needs((), [], now=now, silent_after=60) == ()
    assert answers_here("host-a", [a, b], now=now, silent_after=1000)
    assert not answers_here("host-b", [a, b], now=now, silent_after=1000)
    assert answers_here("host-b", [a, b], now=now + 100, silent_after=60)   # host-a went silent


# ---------------------------------------------------------------- the command line
def test_submit_writes_the_needs_and_the_priority(home, world):
    res = home.cli("submit", "Render it", "--needs", "GPU", "--needs", "repo-x,gpu", "--priority", "High")
    assert res.returncode == 0, res.stderr
    [msg] = world.ld.messages(world.task_queue)
    assert msg["content"] == f"**[Task: {res.stdout.strip()}]** Render it [needs:gpu] [needs:repo-x] [priority:high]"
    for args, said in ((["--priority", "urgent"], "unknown --priority \"urgent\": use one of high, normal, low"),
                       (["--needs", "g/pu"], 'bad host tag "g/pu" in --needs')):
        bad = home.cli("submit", "Render it", *args)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr
        [line] = bad.stderr.strip().splitlines()
        assert said in line
    assert len(world.ld.messages(world.task_queue)) == 1   # nothing posted for the bad ones


def test_a_bad_host_tag_is_one_line(home, world):
    home.write_config(HOST_TAGS="gpu, big box")
    res = home.cli("orchestrate")
    assert res.returncode == 3 and "Traceback" not in res.stderr
    assert "HOST_TAGS" in res.stderr and "'big box'" in res.stderr


# ---------------------------------------------------------------- the order on one host
def test_a_high_task_posted_while_ten_normal_ones_wait_runs_next(tmp_path, world):
    home = make_home(tmp_path, world, ALLOWED_USER_IDS=world.alice.id, MAX_AGENTS="1", CLAIM="reaction")
    normal = [world.post(world.alice, f"normal {i}{' SLEEP=1.5' if i == 0 else ''}")["id"] for i in range(10)]
    watch = home.popen("orchestrate", "--watch")
    try:
        wait_for(lambda: run_order(home) == normal[:1], "the first normal task to run")
        high = world.post(world.alice, "urgent [priority:high]")["id"]
        wait_for(lambda: len(run_order(home)) >= 2, "a second run")
    finally:
        watch.send_signal(signal.SIGTERM)
        watch.communicate(timeout=WAIT_CAP_S)
    assert run_order(home)[:2] == [normal[0], high]


def test_two_authors_take_turns_and_a_low_task_that_waited_goes_first(tmp_path, world):
    bob = world.ld.create_user("bob")
    world.ld.add_member(world.guild, bob.id)
    home = make_home(tmp_path, world, ALLOWED_USER_IDS=f"{world.alice.id},{bob.id}", MAX_AGENTS="1",
                     CLAIM="reaction", PRIORITY_AGE=str(AGE_S))
    old_low = world.post(bob, "old and low [priority:low]")["id"]
    time.sleep(2 * AGE_S + 0.1)   # the wait under test: twice PRIORITY_AGE makes it count as high
    alice = [world.post(world.alice, f"alice {i} [priority:high]")["id"] for i in range(3)]
    bobs = [world.post(bob, f"bob {i} [priority:high]")["id"] for i in range(1)]
    new_low = world.post(world.alice, "new and low [priority:low]")["id"]
    orchestrate(home)
    # bob's old low task first (it counts as high and is the oldest); then turns: alice, bob, alice, alice
    assert run_order(home) == [old_low, alice[0], bobs[0], alice[1], alice[2], new_low]
    assert len(world.results_messages()) == 6


# ---------------------------------------------------------------- tags on several hosts
def test_tasks_needing_a_gpu_run_only_on_the_host_with_the_tag(tmp_path, world):
    fleet = Fleet(tmp_path, world, dict(os.environ), watch={"a": True, "b": True}, names=("a", "b"), own_bots=(),
                  MAX_AGENTS=2, TIMEOUT=30, KILL_GRACE=1)
    fleet.hosts["a"].home.write_config(HOST_TAGS="gpu,big-disk")
    gpu = [world.post(world.alice, f"render {i} [needs:gpu] SLEEP=0.2")["id"] for i in range(3)]
    both = world.post(world.alice, "render big [needs:gpu] [needs:big-disk]")["id"]
    plain = [world.post(world.alice, f"plain {i} SLEEP=0.2")["id"] for i in range(3)]
    fleet.start()
    try:
        fleet.wait_done(gpu + [both] + plain, WAIT_CAP_S)
    finally:
        fleet.stop()
    found = audit(fleet, gpu + [both] + plain)
    assert found.problems == [] and found.runs == 7
    assert {run["task_id"] for run in fleet.hosts["b"].runs()} <= set(plain)
    assert set(gpu + [both]) <= {run["task_id"] for run in fleet.hosts["a"].runs()}
    assert "needs gpu; this host has no HOST_TAGS: left to the hosts that have them" in fleet.hosts["b"].log_text()


def test_a_task_needing_a_tag_no_host_has_gets_one_answer_and_stays_claimable(tmp_path, world):
    home = make_home(tmp_path / "a", world, ALLOWED_USER_IDS=world.alice.id, HOST_NAME="host-a", HOST_TAGS="gpu",
                     HOST_SILENT_AFTER="0.3")
    task = world.post(world.alice, "Fold proteins [needs:tpu]")["id"]
    time.sleep(0.4)   # the task has waited HOST_SILENT_AFTER with no host that has a tpu
    first = orchestrate(home)
    orchestrate(home)   # a second pass: no second answer
    [answer] = world.results_messages()
    assert answer["content"].startswith(f"🚫 **NO HOST** · task `{task}`")
    assert "it needs `tpu`, and no host seen in the last" in answer["content"]
    assert "hosts seen: `host-a` (`gpu`)" in answer["content"]
    assert home.runs() == [] and "no host seen has: answered in #results" in first.stderr
    [msg] = [m for m in world.ld.messages(world.task_queue) if m["id"] == task]
    assert not msg.get("thread") and not msg.get("reactions")   # still in the queue, unclaimed
    tpu = make_home(tmp_path / "t", world, ALLOWED_USER_IDS=world.alice.id, HOST_NAME="host-t", HOST_TAGS="tpu")
    orchestrate(tpu)
    assert [run["task_id"] for run in tpu.runs()] == [task]
    assert len(world.results_messages()) == 2 and world.ld.thread(task)["name"].endswith(" · host-t")


def test_a_need_in_task_txt_is_found_at_the_claim_and_the_task_waits_for_the_tag(tmp_path, world):
    """A need read only from an attached TASK.txt is found when the task is claimed: passed over too, and
    the cursor stays before it, so the host finds it again once it has the tag."""
    home = make_home(tmp_path, world, ALLOWED_USER_IDS=world.alice.id, HOST_SILENT_AFTER="0.1")
    task = world.post(world.alice, "see the file", attachments=[("TASK.txt", b"Render [needs:gpu]")])["id"]
    after = world.post(world.alice, "plain")["id"]
    res = orchestrate(home)   # (a pass takes longer to start than HOST_SILENT_AFTER)
    assert run_order(home) == [after] and "needs gpu; this host has no HOST_TAGS" in res.stderr
    assert [m["content"].split("\n")[1] for m in world.results_messages() if "NO HOST" in m["content"]] == [
        "• it needs `gpu`, and no host seen in the last 0.1s has it"]
    home.write_config(HOST_TAGS="gpu")   # given the tag later, the host finds the task again
    orchestrate(home)
    assert run_order(home) == [after, task]
