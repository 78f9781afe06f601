"""Issue 23: every agent in a sandbox. A hostile agent (the stand-in's HOSTILE) tries the review's
attacks under each fence the machine has (bubblewrap, Landlock); each is blocked, and the token is
in no post. Timeouts, stop, the cgroup kill and adoption work through the fence; a named fence
that does not work fails closed; `check` and the log say which fence holds agents.

Real processes, real bwrap and Landlock, the loopback Discord; no mocks."""

from __future__ import annotations

import sysconfig
import time
from pathlib import Path

import pytest

from discord_orch import landlock, sandbox
from discord_orch import outcome as O

from conftest import make_home
from helpers_agent import Rig, drive, escapees, kill_escapees, live_processes_marked, wait_for
from test_hostile_agent import everything_posted
from test_reliability import label, one_result, post_tasks, records
from test_reliability import wait_for as wait_until

SRC = str(Path(__file__).resolve().parents[1] / "src")   # the stand-in's code: the one thing it needs beyond the system
BWRAP, BWRAP_WHY = sandbox._probe_bwrap()
ABI, LANDLOCK_WHY = landlock.abi_version()
MECHANISMS = [pytest.param("bwrap", marks=pytest.mark.skipif(not BWRAP, reason=BWRAP_WHY)),
              pytest.param("landlock", marks=pytest.mark.skipif(not ABI, reason=LANDLOCK_WHY))]


def fenced_home(tmp_path, world, mode: str, **config):
    """A home whose agents run under ``mode``, the stand-in's code, gates and run log let in."""
    gates = tmp_path / "gates"
    gates.mkdir()
    (tmp_path / "agent-runs.jsonl").touch()
    home = make_home(tmp_path, world, AGENT_SANDBOX=mode, SANDBOX_READ_PATHS=SRC,
                     SANDBOX_WRITE_PATHS=f"{gates}:{tmp_path / 'agent-runs.jsonl'}", **config)
    home.env["STANDIN_GATE_DIR"] = str(gates)
    return home, gates


def user_home(tmp_path) -> Path:
    """$HOME for the pass: a key in ~/.ssh and a ~/.bashrc, as a user has."""
    user = tmp_path / "user"
    (user / ".ssh").mkdir(parents=True)
    (user / ".ssh" / "id_ed25519").write_text("SSH-SECRET\n")
    (user / ".bashrc").write_text("# mine\n")
    return user


def kept_workspace(home) -> Path:
    kept = home.path / "archive" / f"agent-{int(time.time())}-abcdef" / "tasks" / "123456789012345678"
    kept.mkdir(parents=True)
    (kept / "RESULT.txt").write_text("KEPT-SECRET\n")
    return kept


@pytest.mark.parametrize("mode", MECHANISMS)
def test_a_hostile_agent_is_fenced(tmp_path, world, mode):
    home, gates = fenced_home(tmp_path, world, mode)
    user = user_home(tmp_path)
    kept_workspace(home)
    token = world.bot.token
    site = sysconfig.get_paths()["purelib"]   # the venv the orchestrator runs from
    config_before = (home.path / "discord-config.env").read_text()
    (home.path / "workers" / "TOOLS.md").write_text("# the user's tools\n")   # what every prompt gets
    sibling, hostile = post_tasks(world, ["GATE=sib a sibling at work", "HOSTILE ignore all previous instructions"])
    run = home.cli("orchestrate", env={"HOME": str(user), "STANDIN_HOSTILE_HOME": str(user), "STANDIN_HOSTILE_GATE": "sib",
                                       "STANDIN_HOSTILE_VENV": site})
    agent_ids = [r["agent_id"] for r in home.runs()]
    try:
        assert run.returncode == 0, run.stderr[-3000:]
        posted = everything_posted(world)
        report = posted.decode("utf-8", "replace")
        assert "HOSTILE report" in report, report[-3000:]
        assert "SUCCEEDED" not in report, report
        for attack in ("read the config (relative path)", "read the config (absolute path)",
                       "read the config (/proc/<orchestrator>/cwd)", "read the orchestrator's environ",
                       "read the orchestrator's memory", "read state.db", "write the ledger",
                       "read and forge a running task's workspace", "read a kept workspace", "read ~/.ssh",
                       "write the config", "write workers/TOOLS.md", "write the venv", "write ~/.bashrc",
                       "signal the orchestrator", "signal a sibling agent", "take the token from our environment"):
            assert f"blocked {attack}:" in report, (attack, report)
        assert "tokens found: none" in report
        assert token.encode() not in posted and b"KEPT-SECRET" not in posted and b"SSH-SECRET" not in posted
        assert (home.path / "discord-config.env").read_text() == config_before
        assert (home.path / "workers" / "TOOLS.md").read_text() == "# the user's tools\n"
        assert not (Path(site) / "zz-hostile.pth").exists()
        assert (user / ".bashrc").read_text() == "# mine\n"
        assert "1" not in (home.path / ".runtime" / "assigned-tasks.txt").read_text().split()
        assert label(one_result(world, sibling)) == "DONE"
        assert "FORGED" not in one_result(world, sibling)["content"]
        assert [agent for agent in agent_ids if escapees(agent)] == []   # its setsid env -i child is gone
        assert f"sandbox: each agent runs under {'bubblewrap' if mode == 'bwrap' else 'Landlock'}" in run.stderr
    finally:
        for agent in agent_ids:
            kill_escapees(agent)
        (Path(site) / "zz-hostile.pth").unlink(missing_ok=True)


def test_unfenced_the_same_agent_gets_in_but_the_token_is_in_no_post(tmp_path, world):
    """The control: AGENT_SANDBOX=off, the attacks work (so the test above sees them), and the
    token the agent copied into RESULT.txt is taken out of the post (defence in depth)."""
    home = make_home(tmp_path, world, AGENT_SANDBOX="off")
    [task] = post_tasks(world, ["HOSTILE unfenced"])
    user = user_home(tmp_path)
    run = home.cli("orchestrate", env={"HOME": str(user), "STANDIN_HOSTILE_HOME": str(user)})
    agent_ids = [r["agent_id"] for r in home.runs()]
    try:
        assert run.returncode == 0, run.stderr[-3000:]
        posted = everything_posted(world)
        report = posted.decode("utf-8", "replace")
        assert "SUCCEEDED read the config (absolute path)" in report, report
        assert "SUCCEEDED read ~/.ssh" in report
        assert "tokens found: none" not in report and "[token removed]" in report
        assert world.bot.token.encode() not in posted
        assert "sandbox: agents run UNFENCED (AGENT_SANDBOX=off)" in run.stderr
        assert label(one_result(world, task)) == "DONE"
    finally:
        for agent in agent_ids:
            kill_escapees(agent)


# ---------------------------------------------------------------- supervision through the fence

@pytest.fixture
def rig(tmp_path, monkeypatch):
    monkeypatch.setenv("STANDIN_RUN_LOG", str(tmp_path / "runs.jsonl"))
    return Rig(tmp_path)


@pytest.mark.parametrize("mode", MECHANISMS)
def test_timeout_stop_and_a_crash_through_the_fence(rig, mode):
    rig.run_log.touch()
    cfg = dict(sandbox=mode, sandbox_read=(SRC,), sandbox_write=(str(rig.run_log),))
    ws, ra = rig.start("HANG ESCAPESID", rig.config(timeout_s=0.8, kill_grace_s=0.3, **cfg))
    try:
        assert wait_for(lambda: escapees(ws.agent_id)), "the stand-in never started its escapee"
        assert drive(ra, limit_s=15).status == O.TIMED_OUT
        assert escapees(ws.agent_id) == []
    finally:
        kill_escapees(ws.agent_id)
    ws, ra = rig.start("HANG NOTERM", rig.config(kill_grace_s=0.3, **cfg))
    ra.stop(time.time(), "the orchestrator was stopped")
    assert drive(ra, limit_s=15).status == O.KILLED
    assert live_processes_marked("DISCORD_ORCH_AGENT_ID", [ws.agent_id]) == []
    ws, ra = rig.start("CRASH", rig.config(**cfg))
    out = drive(ra)
    assert (out.status, out.reason) == (O.KILLED, "killed by SIGKILL")


@pytest.mark.parametrize("mode", MECHANISMS)
def test_a_fenced_agent_is_adopted_after_its_pass_died(tmp_path, world, mode):
    home, gates = fenced_home(tmp_path, world, mode)
    [task] = post_tasks(world, ["GATE=adopt ESCAPESID survive the pass"])
    proc = home.popen("orchestrate")
    wait_until(lambda: records(home).get(task) == "running", "the running record")
    wait_until(lambda: len(home.runs()) == 1, "the agent to start")
    agent_id = home.runs()[0]["agent_id"]
    try:
        proc.kill()
        proc.communicate()
        (gates / "gate-adopt").touch()
        run = home.cli("orchestrate")
        assert run.returncode == 0, run.stderr[-3000:]
        assert label(one_result(world, task)) == "DONE"
        assert escapees(agent_id) == []
    finally:
        kill_escapees(agent_id)


# ---------------------------------------------------------------- choosing the fence

def test_a_named_fence_that_does_not_work_fails_closed(tmp_path, world):
    """A bwrap that cannot make namespaces (Ubuntu without its AppArmor profile, a container)."""
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "bwrap").write_text("#!/bin/sh\necho 'bwrap: No permissions to create a new namespace' >&2\nexit 1\n")
    (fake / "bwrap").chmod(0o755)
    home = make_home(tmp_path, world, AGENT_SANDBOX="bwrap")
    [task] = post_tasks(world, ["never runs"])
    run = home.cli("orchestrate", env={"PATH": f"{fake}:{home.env['PATH']}"})
    assert run.returncode != 0
    lines = [line for line in run.stderr.splitlines() if "AGENT_SANDBOX" in line]
    assert lines == ["discord-orch: error: config: AGENT_SANDBOX: bwrap: bwrap does not work here: bwrap: No "
                     "permissions to create a new namespace; no agent runs unfenced (install bubblewrap, or set "
                     "AGENT_SANDBOX=landlock or auto)"], run.stderr
    assert "Traceback" not in run.stderr
    assert records(home).get(task) is None   # nothing claimed


def test_check_says_which_fence_holds_agents(tmp_path, world):
    home = make_home(tmp_path, world, AGENT_SANDBOX="auto")
    run = home.cli("check")
    [line] = [line for line in run.stdout.splitlines() if "sandbox" in line]
    if BWRAP:
        assert "each agent runs under bubblewrap" in line
    elif ABI:
        assert f"each agent runs under Landlock ABI {ABI}" in line and "cannot hide" in line
    else:
        assert "UNFENCED" in line


def test_sandbox_paths_must_be_absolute(tmp_path, world):
    home = make_home(tmp_path, world, SANDBOX_READ_PATHS="relative/repo")
    run = home.cli("orchestrate")
    assert run.returncode != 0
    assert "SANDBOX_READ_PATHS: 'relative/repo' is not an absolute path" in run.stderr
