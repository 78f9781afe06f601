"""Issue 13, the race itself: three orchestrators at once on one #task-queue, answers lost after
the request took effect, one host SIGKILLed mid-pass and started again. Every task runs once, on
one host, with one result in #results, one thread naming that host and one claim line in it.

Hosts A and B share one bot token (told apart by HOST_NAME), C has a bot of its own. A and C run
``orchestrate --watch``; B runs one pass after another, as cron does, and one of its passes is
SIGKILLed while its agent runs (its next pass adopts the agent). The longer randomised run of this
is bench/multihost.py.
"""

from __future__ import annotations

import os

from discord_orch.sim.fleet import Fleet, audit, host_name, results_by_task, result_label
from discord_orch.sim.fleet import wait_for as fleet_wait_for

TASKS = 15
START = "/channels/{channel_id}/messages/{message_id}/threads"
MESSAGES = "/channels/{channel_id}/messages"
REACTION = "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me"
WAIT_CAP_S = 90.0   # a bound so that a hang fails the test; never an assertion on speed


def wait_for(cond, what: str, cap: float = WAIT_CAP_S):
    fleet_wait_for(cond, what, cap)


def agent_started(host) -> bool:
    """A task of ``host`` is recorded running and its agent has logged its run."""
    running = {task for task, status in host.records().items() if status == "running"}
    return bool(running & {r["task_id"] for r in host.runs()})


def test_three_hosts_at_once_with_lost_answers_and_a_kill_run_each_task_once(tmp_path, world):
    ld = world.ld
    fleet = Fleet(tmp_path, world, dict(os.environ), watch={"a": True, "b": False, "c": True},
                  MAX_AGENTS=2, TIMEOUT=30, KILL_GRACE=1)
    tasks = [world.post(world.alice, f"job {i} SLEEP={0.4 + 0.1 * (i % 4):g}")["id"] for i in range(TASKS)]
    # Answers lost after the request took effect: thread starts (one of C's own bot among them, and
    # one whose answers are errors), posts (claim lines, results, notices) and ✅ reactions.
    ld.lose_thread_start_answers(count=3)
    ld.lose_thread_start_answers(count=1, user_id=fleet.bot_of["c"])
    ld.fail("POST", START, statuses=(503,), count=2, after_processing=True)
    ld.drop("POST", MESSAGES, count=4, after_processing=True)
    ld.drop("PUT", REACTION, count=2, after_processing=True)
    fleet.start()
    b = fleet.hosts["b"]
    try:
        # Its agent has started (the stand-in logged its run), not only been spawned: a kill between
        # the spawn and the agent's first instruction is the SIGKILL trials' business (bench/multihost.py).
        wait_for(lambda: agent_started(b), "host B to run an agent")
        assert b.kill()
        fleet.wait_done(tasks, WAIT_CAP_S)
    finally:
        fleet.stop()

    seen = audit(fleet, tasks)
    assert seen.problems == []
    assert seen.runs == TASKS and seen.duplicates == 0 and seen.never_ran == 0
    assert seen.lost_results == 0 and seen.extra_results == 0 and seen.labels == {"DONE": TASKS}
    assert b.kills == 1 and b.processes >= 2   # its next pass adopted the agent, or judged it if it had ended
    assert seen.no_claim_line == 0   # what B's killed pass left unsaid, its next pass said
    assert sum(seen.ran_on.values()) == TASKS and len(seen.ran_on) >= 2   # the work was shared
    # what a user sees in #task-queue: each task's thread names the host that ran it; its result
    # in #results (one per task, nothing else there)
    results = results_by_task(world, tasks)
    assert len(world.results_messages()) == TASKS
    for task in tasks:
        runner = next(h for h in fleet.hosts.values() if task in [r["task_id"] for r in h.runs()])
        assert ld.thread(task)["name"].endswith(" · " + host_name(runner.name))
        assert result_label(results[task][0]) == "DONE"
    # the race met every fault: 10 answers dropped, 2 replaced by a 503
    assert sum(1 for r in ld.requests if r.status == 0) == 10
    assert sum(1 for r in ld.requests if r.status == 503) == 2
