"""Issue 4: never lose or duplicate a task or a result.

Every claimed task ends with exactly one result message in #results, whatever
happens to the orchestrator, the agent or Discord, and nothing runs twice unless
the user asks for it (RETRY_INTERRUPTED). Faults are injected through the local
Discord (5xx, dropped connections before and after the request took effect,
outages) and through real signals to real processes (the CLI as a subprocess,
the stand-in agent). No test asserts a wall-clock duration: waits are bounded
only so that a hang fails instead of blocking the suite.
"""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import pytest

from discord_orch.openclaw import AGENT_ID_ENV, TASK_ID_ENV
from discord_orch.sim.fleet import task_statuses
from discord_orch.sim.localdiscord import LocalDiscord, RateLimits

from conftest import make_home, make_world
from helpers_agent import gated, live_processes_marked, pass_adopting

MESSAGES = "POST /channels/{channel_id}/messages"
KILL_SEED = 4_2024
KILL_TRIALS = int(os.environ.get("DISCORD_ORCH_KILL_TRIALS", "15"))   # CI's share; set it higher for a long run
WAIT_CAP_S = 90.0      # a bound so that a hang fails the test; never an assertion on speed


# ---------------------------------------------------------------------------- helpers

def wait_for(cond: Callable[[], object], what: str, cap: float = WAIT_CAP_S, step: float = 0.02):
    end = time.monotonic() + cap
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(step)


def is_result_for(msg: dict, task_id: str) -> bool:
    first_line = msg["content"].split("\n", 1)[0]
    return (f"task `{task_id}`" in first_line
            or (msg.get("message_reference") or {}).get("message_id") == task_id)


def results_for(world, task_id: str) -> List[dict]:
    return [m for m in world.results_messages() if is_result_for(m, task_id)]


def one_result(world, task_id: str) -> dict:
    found = results_for(world, task_id)
    assert len(found) == 1, (task_id, [m["content"][:120] for m in world.results_messages()])
    return found[0]


def post_tasks(world, texts: List[str]) -> List[str]:
    """Tasks as `discord-orch submit` leaves them: posted by our own bot."""
    return [world.post(world.bot, text)["id"] for text in texts]


def records(home) -> Dict[str, str]:
    return task_statuses(home.path)


def run_ids(home) -> List[str]:
    return [r["task_id"] for r in home.runs()]


def kill_marked(key: str, values) -> None:
    for pid in live_processes_marked(key, values):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def finish(proc: subprocess.Popen, cap: float = WAIT_CAP_S):
    try:
        out, err = proc.communicate(timeout=cap)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"the pass did not end within {cap} s; its log:\n{err[-4000:]}") from None
    return proc.returncode, out, err


def sigkill_pass_once_running(home, task: str, runs: int = 1) -> None:
    """Start a pass; SIGKILL it once the agent has started (``runs`` runs so far) and the task's
    record says running."""
    proc = home.popen("orchestrate")
    wait_for(lambda: len(home.runs()) == runs, "the agent to start")
    wait_for(lambda: records(home).get(task) == "running", "the running record")
    proc.kill()
    proc.communicate()


def pass_ok(home) -> str:
    run = home.cli("orchestrate")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    return run.stderr


def settle(home, tasks: List[str], max_passes: int = 4) -> int:
    """Recovery passes until every task's record is closed; returns how many passes ran."""
    for n in range(1, max_passes + 1):
        stderr = pass_ok(home)
        assert "pass skipped" not in stderr, stderr[-2000:]
        recs = records(home)
        if all(recs.get(t) == "cleaned" for t in tasks):
            return n
    raise AssertionError(f"not quiescent after {max_passes} passes: {records(home)}")


def label(msg: dict) -> str:
    """The status word of a result post's header ("DONE", "FAILED", "TIMED OUT", ...)."""
    m = re.search(r"\*\*([A-Z][A-Z ]*)\*\*", msg["content"].split("\n", 1)[0])
    return m.group(1) if m else ""


# ---------------------------------------------------------------------------- Discord faults

def test_results_channel_5xx_and_drops_post_each_result_once(home, world):
    """502/503 answers and connections dropped before and after the post took effect."""
    home.write_config(MAX_AGENTS="3")
    tasks = post_tasks(world, ["first SLEEP=0.3", "second SLEEP=0.3", "third SLEEP=0.3"])
    # Armed in order: each POST /messages (results and notices alike) takes the next fault.
    world.ld.fail("POST", MESSAGES, statuses=[502, 503], count=3)
    world.ld.drop("POST", MESSAGES, count=2)
    world.ld.drop("POST", MESSAGES, count=3, after_processing=True)
    world.ld.fail("POST", MESSAGES, statuses=[503], count=2)
    world.ld.drop("POST", MESSAGES, count=2, after_processing=True)
    passes = settle(home, tasks)
    for t in tasks:
        assert label(one_result(world, t)) == "DONE"
    assert sorted(run_ids(home)) == sorted(tasks)
    # Every fault was met (none left armed), yet nothing doubled.
    assert len(world.results_messages()) == len(tasks)
    assert passes <= 3


def test_outage_for_a_while_delivers_in_same_or_later_pass(home, world):
    tasks = post_tasks(world, ["alpha SLEEP=0.5", "beta SLEEP=0.5"])
    proc = home.popen("orchestrate")
    wait_for(lambda: len(home.runs()) == 2, "both agents to start")
    world.ld.outage_for(2.5)
    rc, _out, err = finish(proc)
    assert rc == 0, err[-3000:]
    settle(home, tasks)
    for t in tasks:
        assert label(one_result(world, t)) == "DONE"
    assert len(world.results_messages()) == 2 and sorted(run_ids(home)) == sorted(tasks)


def test_discord_down_for_the_whole_reporting_phase_defers_to_next_pass(home, world):
    tasks = post_tasks(world, ["one SLEEP=0.5", "two SLEEP=0.5 NORESULT"])
    proc = home.popen("orchestrate")
    wait_for(lambda: len(home.runs()) == 2, "both agents to start")
    world.ld.set_outage(True)
    rc, _out, err = finish(proc)
    assert rc == 0, err[-3000:]
    assert "Traceback" not in err
    assert "left for the next pass" in err and "deferred" in err
    assert world.results_messages() == []
    assert {records(home)[t] for t in tasks} <= {"finished", "reporting"}

    # Still down: the next pass changes nothing and runs nothing again.
    rc2 = home.cli("orchestrate")
    assert rc2.returncode != 0 or "left for the next pass" in rc2.stderr
    assert "Traceback" not in rc2.stderr
    assert world.results_messages() == []

    world.ld.set_outage(False)
    settle(home, tasks)
    assert label(one_result(world, tasks[0])) == "DONE"
    assert label(one_result(world, tasks[1])) == "FAILED"
    assert len(world.results_messages()) == 2
    assert sorted(run_ids(home)) == sorted(tasks)


def test_result_posted_but_unconfirmed_is_not_posted_again_after_nonce_window(home, world):
    """The post took effect but every answer was lost; by the next pass Discord has forgotten
    the nonce: recovery finds the result already in #results instead of posting it twice."""
    [task] = post_tasks(world, ["quiet SLEEP=0.3"])
    proc = home.popen("orchestrate")
    wait_for(lambda: len(home.runs()) == 1, "the agent to start")
    # the claim line (issue 24: the spawn notice now lingers up to 2 s for company, so it is no gate)
    wait_for(lambda: [m for m in world.ld.messages(task) if m["type"] != 21], "the claim line")
    world.ld.drop("POST", MESSAGES, count=20, after_processing=True, where={"channel_id": world.results})
    rc, _out, err = finish(proc)
    assert rc == 0, err[-3000:]
    world.ld.clear_faults()
    assert records(home)[task] == "reporting"
    assert len(results_for(world, task)) == 1      # it did reach Discord
    world.ld.nonce_window = 0.0                     # ... long ago: the nonce no longer protects
    world.ld.reset_log()
    settle(home, [task])
    one_result(world, task)
    posts = [r for r in world.ld.requests if r.route == MESSAGES and r.channel_id == world.results]
    assert posts == []


def test_result_discord_refuses_still_gets_one_short_result(home, world):
    """A 4xx for the post's shape (here: the attachment is over the channel's upload limit) would
    leave the result in the outbox forever: a short post without it is the task's one result."""
    world.ld.max_file_size = 1000
    [task] = post_tasks(world, ["BIGRESULT=6000 please"])
    stderr = pass_ok(home)
    post = one_result(world, task)
    assert label(post) == "DONE" and "could not be posted" in post["content"]
    assert post["attachments"] == [] and "left for the next pass" not in stderr
    [kept] = home.archive()                       # the full result stays retrievable
    assert kept in post["content"]
    assert len((home.path / "archive" / kept / "tasks" / task / "RESULT.txt").read_text()) == 6000
    pass_ok(home)
    assert len(world.results_messages()) == 1 and run_ids(home) == [task]


def test_result_that_cannot_be_formatted_still_gets_one_short_result(home, world):
    """An outbox record the formatter chokes on (written by another version, damaged...)."""
    [task] = post_tasks(world, ["format me SLEEP=0.3"])
    proc = home.popen("orchestrate")
    wait_for(lambda: len(home.runs()) == 1, "the agent to start")
    world.ld.set_outage(True)
    rc, _out, err = finish(proc)
    assert rc == 0 and "left for the next pass" in err, err[-3000:]
    world.ld.set_outage(False)
    conn = sqlite3.connect(str(home.path / ".runtime" / "state.db"))
    with conn:
        conn.execute("UPDATE tasks SET outcome = ? WHERE task_id = ?",
                     ('{"status": "ok", "duration_s": 1, "files": 7, "usage": {"from_the_future": 1}}', task))
    conn.close()
    stderr = pass_ok(home)
    post = one_result(world, task)
    assert label(post) == "DONE" and "could not be formatted" in post["content"]
    assert "Traceback" not in stderr
    assert len(world.results_messages()) == 1 and run_ids(home) == [task]


# ---------------------------------------------------------------------------- overlapping passes

def test_four_passes_at_once_run_each_task_once(home, world):
    home.write_config(MAX_AGENTS="2")
    tasks = post_tasks(world, [f"task {i} SLEEP=0.5" for i in range(6)])
    procs = [home.popen("orchestrate") for _ in range(4)]
    outs = [finish(p) for p in procs]
    for rc, _out, err in outs:
        assert rc == 0, err[-3000:]
        assert "Traceback" not in err
    skipped = sum("pass skipped" in err for _rc, _o, err in outs)
    assert skipped >= 1
    settle(home, tasks)
    assert sorted(run_ids(home)) == sorted(tasks)
    for t in tasks:
        one_result(world, t)
    assert len(world.results_messages()) == 6


# ---------------------------------------------------------------------------- timeouts

def test_hung_agent_and_its_child_are_gone_after_the_timeout(home, world):
    home.write_config(TIMEOUT="1", KILL_GRACE="0.5", MAX_AGENTS="2")
    tasks = post_tasks(world, ["HANG_CHILD please", "HANG_CHILD NOTERM stubborn"])
    stderr = pass_ok(home)
    runs = home.runs()
    assert sorted(r["task_id"] for r in runs) == sorted(tasks)
    agents = [r["agent_id"] for r in runs]
    assert live_processes_marked(AGENT_ID_ENV, agents) == []
    assert live_processes_marked(TASK_ID_ENV, tasks) == []
    for t in tasks:
        post = one_result(world, t)
        assert label(post) == "TIMED OUT"
        assert "timed out after 1 s" in post["content"]
        assert "waiting for the model" in post["content"]   # the log's tail is in the result
    assert "outcome=timed_out" in stderr
    assert len(world.results_messages()) == 2


PARTIAL_AGENT = """#!{python}
import os, sys, time
task_dir = os.environ["OPENCLAW_WORKSPACE_DIR"]
with open(os.path.join(task_dir, "RESULT.txt"), "w") as fh:
    fh.write("partial answer: 42 so far")
sys.stderr.write("[agent] wrote a partial result, now stuck\\n")
sys.stderr.flush()
while True:
    time.sleep(3600)
"""


def test_timed_out_result_shows_what_result_and_log_held(home, world, tmp_path):
    agent = tmp_path / "partial-openclaw"
    agent.write_text(PARTIAL_AGENT.format(python=__import__("sys").executable))
    agent.chmod(0o755)
    home.write_config(OPENCLAW_BIN=str(agent), TIMEOUT="1", KILL_GRACE="0.5")
    [task] = post_tasks(world, ["answer slowly"])
    pass_ok(home)
    post = one_result(world, task)
    assert label(post) == "TIMED OUT" and "timed out after 1 s" in post["content"]
    assert "partial answer: 42 so far" in post["content"]
    assert "wrote a partial result, now stuck" in post["content"]
    assert live_processes_marked(TASK_ID_ENV, [task]) == []


def test_timeout_of_an_adopted_agent_holds_while_discord_is_down(home, world):
    home.write_config(TIMEOUT="2", KILL_GRACE="0.5")
    [task] = post_tasks(world, ["HANG_CHILD forever"])
    sigkill_pass_once_running(home, task)
    world.ld.set_outage(True)
    run = home.cli("orchestrate")                 # adopts it, cannot poll, still enforces the timeout
    assert "Traceback" not in run.stderr
    assert "adopted task=" in run.stderr and "outcome=timed_out" in run.stderr, run.stderr[-3000:]
    assert live_processes_marked(TASK_ID_ENV, [task]) == []
    assert world.results_messages() == []
    world.ld.set_outage(False)
    settle(home, [task])
    assert label(one_result(world, task)) == "TIMED OUT"
    assert run_ids(home) == [task]


# ---------------------------------------------------------------------------- signals to orchestrate

@pytest.mark.parametrize("sig,code,results_down", [(signal.SIGTERM, 143, False), (signal.SIGINT, 130, True),
                                                   (signal.SIGHUP, 129, False)])
def test_stop_signal_kills_agents_records_and_reports_them(home, world, sig, code, results_down):
    home.write_config(MAX_AGENTS="1", KILL_GRACE="0.5")
    # With results down the agent also ignores SIGTERM: the stop needs the SIGKILL after KILL_GRACE.
    slow, later = post_tasks(world, ["long job SLEEP=30" + (" NOTERM" if results_down else ""), "later job"])
    proc = home.popen("orchestrate")
    wait_for(lambda: len(home.runs()) == 1, "the agent to start")
    [run] = home.runs()
    if results_down:
        world.ld.set_outage(True)
    proc.send_signal(sig)
    rc, _out, err = finish(proc)
    assert rc == code, err[-3000:]
    assert "Traceback" not in err
    assert f"stopped by {signal.Signals(sig).name}" in err
    assert live_processes_marked(AGENT_ID_ENV, [run["agent_id"]]) == []
    assert records(home)[slow] in (("finished", "reporting") if results_down else ("cleaned",))
    assert later not in records(home) or records(home)[later] == "claimed"
    if results_down:
        assert "left for the next pass" in err
        world.ld.set_outage(False)
    settle(home, [slow, later])
    post = one_result(world, slow)
    assert label(post) == "KILLED"
    assert "stopped by the orchestrator" in post["content"]
    assert label(one_result(world, later)) == "DONE"
    assert len(world.results_messages()) == 2
    assert sorted(run_ids(home)) == sorted([slow, later])


def test_under_nohup_sighup_is_still_ignored(home, world):
    """A pass started with SIGHUP ignored (nohup) keeps ignoring it and finishes its work."""
    [task] = post_tasks(world, ["SLEEP=1 keep going"])
    proc = subprocess.Popen([sys.executable, "-c", "import signal, subprocess, sys; "
                             "signal.signal(signal.SIGHUP, signal.SIG_IGN); "
                             "sys.exit(subprocess.call([sys.executable, '-m', 'discord_orch', 'orchestrate']))"],
                            cwd=home.path, env=home.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: len(home.runs()) == 1, "the agent to start")
    orch_pids = [int(p) for p in os.listdir("/proc") if p.isdigit() and _is_orchestrate_child(int(p), proc.pid)]
    assert orch_pids
    for pid in orch_pids:
        os.kill(pid, signal.SIGHUP)
    rc, _out, err = finish(proc)
    assert rc == 0, err[-3000:]
    assert label(one_result(world, task)) == "DONE"


def _is_orchestrate_child(pid: int, parent: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmd = fh.read()
    except (OSError, IndexError, ValueError):
        return False
    return ppid == parent and b"discord_orch" in cmd


# ---------------------------------------------------------------------------- recovery paths

def test_agent_that_finished_while_nobody_watched_is_reported_from_its_workspace(home, world):
    [task] = post_tasks(world, ["unwatched SLEEP=1"])
    proc = home.popen("orchestrate")
    wait_for(lambda: len(home.runs()) == 1, "the agent to start")
    proc.kill()
    proc.communicate()
    [run] = home.runs()
    wait_for(lambda: not live_processes_marked(AGENT_ID_ENV, [run["agent_id"]]), "the agent to end")
    settle(home, [task])
    post = one_result(world, task)
    assert label(post) == "DONE" and "unwatched SLEEP=1" in post["content"]
    assert run_ids(home) == [task]


def test_agent_still_running_is_adopted(home, world, tmp_path):
    gated(home, tmp_path)   # the agent runs until the next pass has adopted it
    [task] = post_tasks(world, ["adopt me GATE=1"])
    sigkill_pass_once_running(home, task)
    stderr = pass_adopting(home, task, tmp_path)
    assert "adopted task=" + task in stderr
    assert label(one_result(world, task)) == "DONE"
    assert run_ids(home) == [task]


@pytest.mark.parametrize("retry", [False, True])
def test_agent_dead_without_result_is_interrupted_or_retried(home, world, retry):
    home.write_config(RETRY_INTERRUPTED=str(retry).lower())
    [task] = post_tasks(world, ["doomed SLEEP=30"])
    sigkill_pass_once_running(home, task)
    kill_marked(TASK_ID_ENV, [task])
    wait_for(lambda: not live_processes_marked(TASK_ID_ENV, [task]), "the agent to die")
    if retry:
        # The re-run must not take 30 s: let the retried agent die too, twice, until the cap.
        for _attempt in range(2):
            sigkill_pass_once_running(home, task, runs=len(home.runs()) + 1)
            kill_marked(TASK_ID_ENV, [task])
            wait_for(lambda: not live_processes_marked(TASK_ID_ENV, [task]), "the agent to die")
    settle(home, [task])
    post = one_result(world, task)
    assert label(post) == "INTERRUPTED"
    assert "SLEEP" in post["content"] or "agent-output.log" in post["content"]
    assert run_ids(home) == [task] * (3 if retry else 1)


def test_archived_but_unrecorded_workspace_is_judged_not_rerun(home, world):
    """The pass died between moving a finished agent's workspace to archive/ and recording it:
    recovery must judge the archived copy (here: a failure), not call it interrupted and re-run it."""
    home.write_config(RETRY_INTERRUPTED="true")
    [task] = post_tasks(world, ["slow failure SLEEP=1 NORESULT"])
    sigkill_pass_once_running(home, task)
    [run] = home.runs()
    wait_for(lambda: not live_processes_marked(AGENT_ID_ENV, [run["agent_id"]]), "the agent to end")
    (home.path / "workers" / run["agent_id"]).rename(home.path / "archive" / run["agent_id"])
    settle(home, [task])
    post = one_result(world, task)
    assert label(post) == "FAILED" and "RESULT.txt" in post["content"]
    assert run_ids(home) == [task]
    assert home.archive() == [run["agent_id"]]


def test_children_of_an_agent_that_died_unwatched_are_killed(home, world):
    [task] = post_tasks(world, ["HANG_CHILD orphaned"])
    proc = home.popen("orchestrate")
    wait_for(lambda: records(home).get(task) == "running", "the running record")
    wait_for(lambda: len(home.runs()) == 1, "the agent to start")
    [run] = home.runs()
    wait_for(lambda: len(live_processes_marked(AGENT_ID_ENV, [run["agent_id"]])) == 2, "the agent's child")
    proc.kill()
    proc.communicate()
    os.kill(run["pid"], signal.SIGKILL)           # the leader dies; its child lives on
    wait_for(lambda: len(live_processes_marked(AGENT_ID_ENV, [run["agent_id"]])) == 1, "the leader to die")
    settle(home, [task])
    assert live_processes_marked(AGENT_ID_ENV, [run["agent_id"]]) == []
    assert label(one_result(world, task)) == "INTERRUPTED"
    assert run_ids(home) == [task]


def test_watch_retries_the_outbox_without_a_restart(home, world, monkeypatch):
    """--watch never starts a new pass: results Discord refused are tried again in the loop."""
    import threading

    from discord_orch import orchestrator as orch_mod
    from discord_orch.config import load_settings
    from discord_orch.discord_api import DiscordClient
    from discord_orch.state import Store

    from discord_orch.steps import reporting

    monkeypatch.setattr(reporting, "OUTBOX_RETRY_S", 0.3)
    for key, value in home.env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings(home.path, {})
    store = Store(settings.runtime_dir)
    client = DiscordClient(settings.token.reveal(), base_url=settings.api_base_url)
    orch = orch_mod.Orchestrator(settings, client, store)
    world.ld.fail("POST", MESSAGES, statuses=[503], count=10_000)   # #results (and notices) refuse
    [task] = post_tasks(world, ["watched"])
    worker = threading.Thread(target=orch.run_pass, kwargs={"watch": True}, daemon=True)
    worker.start()
    try:
        wait_for(lambda: records(home).get(task) == "reporting", "a refused post")
        world.ld.clear_faults()
        wait_for(lambda: records(home).get(task) == "cleaned", "the outbox to be posted")
    finally:
        orch.request_stop(signal.SIGTERM)
        worker.join(WAIT_CAP_S)
        client.close()
        store.close()
    assert not worker.is_alive()
    assert label(one_result(world, task)) == "DONE"
    assert len(world.results_messages()) == 1 and run_ids(home) == [task]


@pytest.fixture
def small_fs(tmp_path):
    """A 1 MiB tmpfs (root only; skipped elsewhere) to fill up."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True)
    if made.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(directory: Path) -> Path:
    filler = directory / "filler"
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    return filler


def test_full_disk_is_one_line_and_nothing_half_done(small_fs, world):
    home = make_home(small_fs, world)
    [task] = post_tasks(world, ["after the disk is freed"])
    assert pass_ok(home) and run_ids(home) == [task]          # a working home with a database
    [second] = post_tasks(world, ["while the disk is full"])
    filler = _fill(small_fs)
    run = home.cli("orchestrate")
    assert run.returncode == 5, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "disk is full" in lines[0] and "free some space" in lines[0], run.stderr
    assert run_ids(home) == [task]
    assert world.ld.reactions(world.task_queue, second) == {}
    filler.unlink()
    assert second not in records(home)
    settle(home, [task, second])
    one_result(world, second)
    assert len(world.results_messages()) == 2 and run_ids(home) == [task, second]


@pytest.mark.parametrize("opened", [("stdout",), ("stdout", "stderr")])
def test_pass_killed_while_spawning(home, world, opened):
    """The state a SIGKILL leaves between opening the agent's output files and the spawn: with one
    file missing the agent surely never ran (it runs now, once); with both there and no process it
    may have, so it is reported interrupted rather than risk a second run."""
    from discord_orch.state import Store
    from discord_orch.workspace import create_workspace, new_agent_id

    [task] = post_tasks(world, ["half spawned"])
    store = Store(home.path / ".runtime")
    store.insert(task_id=task, channel_id=world.task_queue, author_id=world.bot.id, status="claimed",
                 description="half spawned", model_alias="primary", model="openrouter/moonshotai/kimi-k2.5",
                 thinking="medium")
    store.append_ledger(task)
    agent_id = new_agent_id(time.time())
    ws = create_workspace(home.path / "workers", agent_id, task, "half spawned", agents_md="# agent\n",
                          tools_md=None, user_openclaw_config=home.path / "no-openclaw.json")
    store.mark_starting(task, agent_id=agent_id, agent_dir=str(ws.agent_dir))
    for name in opened:
        getattr(ws, f"{name}_file").touch()
    store.close()
    settle(home, [task])
    post = one_result(world, task)
    if len(opened) == 1:
        assert label(post) == "DONE" and run_ids(home) == [task]
    else:
        assert label(post) == "INTERRUPTED" and "may not have run" in post["content"]
        assert run_ids(home) == []


# ---------------------------------------------------------------------------- SIGKILL at random moments

TASK_KINDS = ("fast", "slow", "fail", "crash")


def _trial_tasks(rng: random.Random, n: int) -> List[tuple]:
    out = []
    for i in range(n):
        kind = rng.choice(TASK_KINDS)
        text = {"fast": f"fast job {i}", "slow": f"slow job {i} SLEEP={rng.choice([0.5, 1, 1.5, 2])}",
                "fail": f"failing job {i} FAIL", "crash": f"crashing job {i} CRASH"}[kind]
        out.append((kind, text))
    return out


ALLOWED_LABELS = {
    "fast": {"DONE", "INTERRUPTED"},
    "slow": {"DONE", "INTERRUPTED"},
    "fail": {"FAILED", "INTERRUPTED"},
    "crash": {"KILLED", "FAILED", "INTERRUPTED"},
}


def _kill_at_random(rng: random.Random, home, ld) -> str:
    """Start a pass and SIGKILL it after a random number of Discord requests or a random delay."""
    proc = home.popen("orchestrate")
    base = len(ld.requests)
    if rng.random() < 0.5:
        after_n = base + rng.randint(1, 14)
        while proc.poll() is None and len(ld.requests) < after_n:
            time.sleep(0.002)
    else:
        end = time.monotonic() + rng.uniform(0.05, 2.5)
        while proc.poll() is None and time.monotonic() < end:
            time.sleep(0.005)
    killed = proc.poll() is None
    if killed:
        proc.kill()
    proc.communicate()
    return "killed" if killed else "ended first"


def _arm_random_fault(rng: random.Random, ld) -> str:
    kind = rng.choice(["none", "none", "drop-after", "5xx", "drop-before"])
    n = rng.randint(2, 6)
    if kind == "drop-after":
        ld.drop("POST", MESSAGES, count=n, after_processing=True)
    elif kind == "5xx":
        ld.fail("POST", MESSAGES, statuses=[502, 503], count=n)
    elif kind == "drop-before":
        ld.drop("POST", MESSAGES, count=n)
    return kind


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(tmp_path):
    """SIGKILL `orchestrate` at random moments (some trials twice: the recovering pass too), with
    Discord faults and an expired nonce window in some trials; then recover until quiescent."""
    rng = random.Random(KILL_SEED)
    stats: Dict[str, int] = {}

    def count(key: str) -> None:
        stats[key] = stats.get(key, 0) + 1

    for trial in range(KILL_TRIALS):
        with LocalDiscord(rate_limits=RateLimits.off()) as ld:
            world = make_world(ld)
            home = make_home(tmp_path / f"trial{trial}", world, MAX_AGENTS="2")
            home.write_config(POLL_INTERVAL="0.3")
            plan = _trial_tasks(rng, rng.choice([3, 4]))
            tasks = post_tasks(world, [text for _k, text in plan])
            count("fault " + _arm_random_fault(rng, ld))
            count("first pass " + _kill_at_random(rng, home, ld))
            if rng.random() < 0.5:
                ld.clear_faults()
                ld.nonce_window = 0.0      # the next pass comes after Discord forgot the nonces
                count("nonce window expired")
            if rng.random() < 0.3:
                count("recovering pass " + _kill_at_random(rng, home, ld))

            count(f"settled in {settle(home, tasks)} pass(es)")

            ran = run_ids(home)
            assert len(ran) == len(set(ran)), f"trial {trial}: an agent ran twice: {ran}"
            assert set(ran) <= set(tasks)
            for (kind, _text), t in zip(plan, tasks):
                post = one_result(world, t)
                assert label(post) in ALLOWED_LABELS[kind], (trial, kind, post["content"][:300])
                count(f"{kind} {label(post)}")
                if label(post) == "INTERRUPTED":
                    why = re.search(r"\*\*Why:\*\* ([^·\n]*)", post["content"])
                    count(f"  interrupted: {why.group(1).strip()[:70] if why else '?'}"
                          f"{'' if t in ran else ' [never ran]'}")
            assert len(world.results_messages()) == len(tasks)
            agents = [r["agent_id"] for r in home.runs()]
            assert live_processes_marked(AGENT_ID_ENV, agents) == []
            count("trials survived")
            count(f"tasks: {len(tasks)}")
    print(f"\nSIGKILL trials (seed {KILL_SEED}):")
    for key in sorted(stats):
        print(f"  {key}: {stats[key]}")
    assert stats["trials survived"] == KILL_TRIALS
    assert stats.get("first pass killed", 0) >= KILL_TRIALS // 2


# ---------------------------------------------------------------------------- a hung pass

def test_a_pass_that_stands_still_is_ended_by_its_watchdog_and_the_next_recovers(home, world):
    """WATCHDOG=1: the pass's loop stands still (another process holds state.db's write lock when the agent
    ends, and SQLite waits up to 30 s for it), so the watchdog ends the pass with exit 70 and one line; the
    next pass finds the agent's end in its workspace: one run, one result. (A slow Discord no longer stops
    the loop: its requests wait on lanes, tests/test_core_steps.py.)"""
    import sqlite3

    home.write_config(WATCHDOG="1", POLL_INTERVAL="0.3")
    [task] = post_tasks(world, ["SLEEP=1 a task that outlives its pass"])
    proc = home.popen("orchestrate")
    deadline = time.monotonic() + WAIT_CAP_S
    while not run_ids(home) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert run_ids(home) == [task]
    holder = sqlite3.connect(str(home.path / ".runtime" / "state.db"), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")   # the write lock, held until the pass is over
        rc, _out, err = finish(proc)
    finally:
        holder.close()
    assert rc == 70, err[-2000:]
    assert re.match(r"discord-orch: error: the pass has not moved for \d+ s \(WATCHDOG=1\); it looks hung, so it "
                    r"exits and the next pass recovers its tasks \(running agents are adopted, nothing is lost\)$",
                    err.splitlines()[-1]), err[-2000:]
    assert "Traceback" not in err
    assert results_for(world, task) == []
    settle(home, [task])
    assert label(one_result(world, task)) == "DONE"
    assert run_ids(home) == [task]


# ---------------------------------------------------------------------------- the home

def _unwritable(path: Path) -> None:
    """Make a directory unwritable, also for root (whom chmod does not stop)."""
    if os.geteuid() != 0:
        os.chmod(path, 0o555)
        return
    path.rmdir()
    path.symlink_to("/sys")   # sysfs: even root cannot create files there


@pytest.mark.parametrize("how", ["unwritable", "runtime-is-a-file"])
def test_unwritable_home_is_one_line_and_touches_nothing(home, world, how):
    post_tasks(world, ["never runs"])
    runtime = home.path / ".runtime"
    if how == "unwritable":
        _unwritable(runtime)
    else:
        runtime.rmdir()
        runtime.write_text("not a directory\n")
    try:
        run = home.cli("orchestrate")
    finally:
        if how == "unwritable" and os.geteuid() != 0:
            os.chmod(runtime, 0o755)
    assert run.returncode == 5, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("discord-orch: error:"), run.stderr
    assert ".runtime" in lines[0]
    assert "Traceback" not in run.stderr
    assert home.runs() == [] and world.results_messages() == []
    assert world.ld.reactions(world.task_queue, world.ld.messages(world.task_queue)[0]["id"]) == {}


# ---------------------------------------------------------------------------- a task's TASK.txt

ATTACHMENT = "GET /attachments/{channel_id}/{attachment_id}/{filename}"
GET_MESSAGE = "GET /channels/{channel_id}/messages/{message_id}"
PASS_CAP_S = 30.0      # these passes take seconds; the bug they reproduce made them last forever


def waiting_attached_task(world, home) -> str:
    """One agent at a time: a task that sleeps, then a task in TASK.txt that waits for the agent."""
    home.write_config(MAX_AGENTS="1")
    post_tasks(world, ["SLEEP=3 the first task"])
    return world.post(world.bot, "(task text in TASK.txt, 11 characters)",
                      attachments=[("TASK.txt", b"second task")])["id"]


def test_a_task_deleted_while_it_waits_is_dropped_and_the_pass_ends(home, world):
    """Its TASK.txt was downloaded 4 times a second (404) and the pass never ended."""
    second = waiting_attached_task(world, home)
    proc = home.popen("orchestrate")
    wait_for(lambda: len(home.runs()) == 1, "the first agent to start")
    world.ld.delete_message(world.task_queue, second)
    world.ld.reset_log()
    code, _, err = finish(proc, cap=PASS_CAP_S)
    assert code == 0, err[-3000:]
    assert f"task={second}: its message was deleted before its TASK.txt was read; dropped" in err
    assert world.ld.request_count("GET", ATTACHMENT) == 1 and world.ld.request_count("GET", GET_MESSAGE) == 1
    assert results_for(world, second) == [] and len(run_ids(home)) == 1
    world.ld.reset_log()
    pass_ok(home)
    assert world.ld.request_count("GET", ATTACHMENT) == 0


def test_an_expired_attachment_link_is_fetched_again_from_a_fresh_copy_of_the_message(home, world):
    """Discord's CDN links expire (ex=...): the task that waited past it still runs."""
    world.ld.attachment_link_ttl = 1.0
    second = waiting_attached_task(world, home)
    world.ld.reset_log()
    code, _, err = finish(home.popen("orchestrate"), cap=PASS_CAP_S)
    assert code == 0, err[-3000:]
    assert "second task" in one_result(world, second)["content"] and second in run_ids(home)
    assert world.ld.request_count("GET", ATTACHMENT) == 2 and world.ld.request_count("GET", GET_MESSAGE) == 1


@pytest.mark.parametrize("status", [403, 404])
def test_an_attachment_the_cdn_refuses_refuses_the_task_visibly_once(home, world, status):
    home.write_config(ALLOWED_USER_IDS=world.alice.id)
    task = world.post(world.alice, "see attached", attachments=[("TASK.txt", b"a task")])["id"]
    world.ld.fail("GET", ATTACHMENT, statuses=(status,), count=1000)
    world.ld.reset_log()
    code, _, err = finish(home.popen("orchestrate"), cap=PASS_CAP_S)
    assert code == 0, err[-3000:]
    post = one_result(world, task)["content"]
    assert "TASK.txt" in post and f"HTTP {status}" in post
    assert "⛔" in world.ld.reactions(world.task_queue, task) and run_ids(home) == []
    assert world.ld.request_count("GET", ATTACHMENT) == 2 and world.ld.request_count("GET", GET_MESSAGE) == 1
    world.ld.reset_log()
    pass_ok(home)
    assert world.ld.request_count("GET", ATTACHMENT) == 0 and len(results_for(world, task)) == 1


def test_a_cdn_outage_leaves_the_task_for_the_next_pass_and_the_pass_ends(home, world):
    [task] = [world.post(world.bot, "see attached", attachments=[("TASK.txt", b"outage task")])["id"]]
    world.ld.fail("GET", ATTACHMENT, statuses=(503,), count=1000)
    world.ld.reset_log()
    code, _, err = finish(home.popen("orchestrate"), cap=PASS_CAP_S)
    assert code == 0, err[-3000:]
    assert f"task={task}: could not be read" in err and "next pass" in err
    tries = world.ld.request_count("GET", ATTACHMENT)
    assert 1 <= tries <= 4 and results_for(world, task) == []        # one download, with its own retries
    world.ld.clear_faults()
    pass_ok(home)
    assert "outage task" in one_result(world, task)["content"] and run_ids(home) == [task]
