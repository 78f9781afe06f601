"""Issue 13: a host that goes silent (SIGSTOP here: its agents go on) has its open task taken over by
another host, which runs it again; the silent host, once it comes back, finds it lost its lease and
posts nothing. One result per task, from the host that took it over.

Real processes (sim/fleet.py's drivers, each ``orchestrate --watch``), real HTTP to the local Discord,
the stand-in agent. HOST_SILENT_AFTER=3: a presence line each second.
"""

from __future__ import annotations

import os

from discord_orch.sim.fleet import Fleet, results_by_task
from discord_orch.sim.fleet import wait_for as fleet_wait_for

WAIT_CAP_S = 60.0   # a bound so that a hang fails the test; never an assertion on speed


def wait_for(cond, what: str, cap: float = WAIT_CAP_S):
    fleet_wait_for(cond, what, cap)


def test_a_silent_hosts_task_runs_again_on_another_and_the_silent_host_posts_nothing_when_back(tmp_path, world):
    fleet = Fleet(tmp_path, world, dict(os.environ), watch={"a": True, "b": True}, names=["a", "b"],
                  own_bots=[], HOST_SILENT_AFTER=3, MAX_AGENTS=1)
    a, b = fleet.hosts["a"], fleet.hosts["b"]
    task = world.post(world.alice, "A long job SLEEP=2")["id"]
    a.start()
    try:
        wait_for(lambda: a.runs(), "host-a to start the task")
        a.pause()                                       # host-a goes silent; its agent goes on
        b.start()
        wait_for(lambda: b.runs(), "host-b to take the task over")
        wait_for(lambda: results_by_task(world, [task]), "the result")
        a.pause(resume=True)                            # host-a comes back: its agent has ended meanwhile
        wait_for(lambda: a.records().get(task) == "elsewhere", "host-a to see it lost the task")
        assert b.records()[task] in ("reported", "cleaned")
    finally:
        a.pause(resume=True)
        fleet.stop()
    [result] = results_by_task(world, [task])[task]
    assert set(a.exit_codes + b.exit_codes) <= {143}   # stopped by SIGTERM; no pass ended on a problem
    assert f"reported task={task}" in b.log_text() and f"reported task={task}" not in a.log_text()
    assert [len(h.runs()) for h in (a, b)] == [1, 1]
    thread = world.ld.thread(task)
    assert thread["name"] == "A long job SLEEP=2 · host-b"
    msgs = [m["content"] for m in world.ld.messages(task) if m["type"] != 21]
    # issue 24: host-a's claim line was its status message; host-b's is its own (claim line, then the result);
    # host-a, back, edits nothing of a task it lost (Presence.fresh gates its edits)
    assert msgs[0].startswith("🧵 Claimed by **host-a**")
    assert any(m.startswith("🔁 Taken over by **host-b**: **host-a** is silent since <t:") for m in msgs)
    assert sum(1 for m in msgs if f"task `{task}`" in "\n".join(m.split("\n")[:2])) == 1   # the result, once
    assert "taken over by host-b while this host was silent; not posted here" in a.log_text()
    assert "taking its open tasks over" in b.log_text()
