"""Issue 11, item 10: an agent's child started as `setsid env -i ...` (no process group, no
marker) must not outlive the agent where the machine gives us a cgroup v2; where it does not
(or AGENT_CGROUP=false), it does outlive it, exactly as the README's Security section says.

Real processes, real cgroups (where usable), the stand-in's ESCAPESID keyword; no mocks."""

from __future__ import annotations

import os
import signal
import time

import pytest

from discord_orch import cgroups as CG
from discord_orch import outcome as O
from discord_orch.openclaw import AGENT_ID_ENV

from conftest import make_home
from helpers_agent import Rig, drive, escapees, kill_escapees, live_processes_marked, wait_for
from test_reliability import one_result, post_tasks, records, settle, label
from test_reliability import wait_for as wait_until

CGROUPS = CG.detect()
needs_cgroup = pytest.mark.skipif(CGROUPS.parent is None,
                                  reason=f"no usable cgroup v2 on this machine: {CGROUPS.reason}")


@pytest.fixture
def rig(tmp_path, monkeypatch):
    monkeypatch.setenv("STANDIN_RUN_LOG", str(tmp_path / "runs.jsonl"))
    return Rig(tmp_path)


def cgroup_dir(agent_id: str):
    return CGROUPS.parent / f"{CG.PREFIX}{agent_id}"


@needs_cgroup
def test_setsid_env_i_child_is_killed_at_the_timeout(rig):
    ws, ra = rig.start("HANG ESCAPESID", rig.config(timeout_s=0.8, kill_grace_s=0.3))
    try:
        assert wait_for(lambda: escapees(ws.agent_id)), "the stand-in never started its escapee"
        assert cgroup_dir(ws.agent_id).is_dir()
        out = drive(ra, limit_s=15)
        assert out.status == O.TIMED_OUT
        assert escapees(ws.agent_id) == []
        assert not cgroup_dir(ws.agent_id).exists()    # removed once empty
    finally:
        kill_escapees(ws.agent_id)


@needs_cgroup
@pytest.mark.parametrize("task", ["ESCAPESID", "ESCAPESID NOTERM"])
def test_setsid_env_i_child_is_killed_after_a_normal_exit(rig, task):
    ws, ra = rig.start(task)
    try:
        out = drive(ra)
        assert out.status == O.OK
        assert escapees(ws.agent_id) == []
        assert not cgroup_dir(ws.agent_id).exists()
    finally:
        kill_escapees(ws.agent_id)


@needs_cgroup
def test_stop_kills_the_setsid_env_i_child(rig):
    ws, ra = rig.start("HANG ESCAPESID", rig.config(kill_grace_s=0.3))
    try:
        assert wait_for(lambda: escapees(ws.agent_id))
        ra.stop(time.time(), "the orchestrator was stopped")
        assert drive(ra, limit_s=15).status == O.KILLED
        assert escapees(ws.agent_id) == []
    finally:
        kill_escapees(ws.agent_id)


def test_without_a_cgroup_a_setsid_env_i_child_outlives_its_agent(rig):
    """The fallback (no cgroup v2 we may write, or AGENT_CGROUP=false): what the README says escapes."""
    ws, ra = rig.start("ESCAPESID", rig.config(cgroup=False))
    try:
        assert drive(ra).status == O.OK
        assert not cgroup_dir(ws.agent_id).exists() if CGROUPS.parent else True
        assert len(escapees(ws.agent_id)) == 1          # it escaped: no group, no marker
        assert live_processes_marked(AGENT_ID_ENV, [ws.agent_id]) == []   # the rest is gone
    finally:
        kill_escapees(ws.agent_id)


def test_the_containment_in_use_is_said_once_in_the_log(home, world):
    post_tasks(world, ["one", "two"])
    run = home.cli("orchestrate")
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [line for line in run.stderr.splitlines() if "containment:" in line]
    assert len(lines) == 1, run.stderr[-3000:]
    if CGROUPS.parent is not None:
        assert "each agent runs in its own cgroup" in lines[0]
    else:
        assert "process group and environment marker only" in lines[0]


def test_agent_cgroup_false_is_said_in_the_log(tmp_path, world):
    home = make_home(tmp_path, world, AGENT_CGROUP="false")
    [task] = post_tasks(world, ["ESCAPESID contained?"])
    run = home.cli("orchestrate")
    try:
        assert run.returncode == 0, run.stderr[-3000:]
        assert "process group and environment marker only (AGENT_CGROUP=false)" in run.stderr
    finally:
        kill_escapees(home.runs()[0]["agent_id"])
    assert label(one_result(world, task)) == "DONE"


@needs_cgroup
def test_a_pass_kills_a_setsid_env_i_child_at_the_timeout(home, world):
    home.write_config(TIMEOUT="1", KILL_GRACE="0.5")
    [task] = post_tasks(world, ["HANG ESCAPESID hostile"])
    run = home.cli("orchestrate")
    agent_id = home.runs()[0]["agent_id"]
    try:
        assert run.returncode == 0, run.stderr[-3000:]
        assert label(one_result(world, task)) == "TIMED OUT"
        assert escapees(agent_id) == []
        assert not cgroup_dir(agent_id).exists()
    finally:
        kill_escapees(agent_id)


@needs_cgroup
def test_the_cgroup_of_an_agent_that_died_unwatched_is_killed_and_removed(home, world):
    """A pass SIGKILLed, then its agent's leader dies: its setsid child lives on in the cgroup;
    the next pass finds the cgroup by name, kills what is in it and removes it."""
    [task] = post_tasks(world, ["HANG ESCAPESID orphaned"])
    proc = home.popen("orchestrate")
    wait_until(lambda: records(home).get(task) == "running", "the running record")
    wait_until(lambda: len(home.runs()) == 1, "the agent to start")
    [run] = home.runs()
    try:
        wait_until(lambda: escapees(run["agent_id"]), "the escapee")
        proc.kill()
        proc.communicate()
        os.kill(run["pid"], signal.SIGKILL)
        wait_until(lambda: not live_processes_marked(AGENT_ID_ENV, [run["agent_id"]]), "the leader to die")
        assert escapees(run["agent_id"]) and cgroup_dir(run["agent_id"]).is_dir()
        settle(home, [task])
        assert escapees(run["agent_id"]) == []
        assert not cgroup_dir(run["agent_id"]).exists()
        assert label(one_result(world, task)) == "INTERRUPTED"
    finally:
        kill_escapees(run["agent_id"])
