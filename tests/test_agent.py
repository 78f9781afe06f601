"""agent.py (with openclaw.py and procs.py) with real processes (the stand-in openclaw), real
signals and /proc; no mocks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc

import pytest

from discord_orch import agent as A
from discord_orch import logcap
from discord_orch import openclaw as OC
from discord_orch import outcome as O
from discord_orch import procs as P
from discord_orch import workspace as W
from discord_orch.errors import AgentError

from helpers_agent import MODEL, SAMPLES, Rig, drive, pids_with_marker, wait_for

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GhIjKl.s3cr3t-b0t-t0k3n-v4lue_xyz"


@pytest.fixture
def rig(tmp_path, monkeypatch):
    monkeypatch.setenv("STANDIN_RUN_LOG", str(tmp_path / "runs.jsonl"))
    return Rig(tmp_path)


# ---------------------------------------------------------------- command and env

def test_build_command_argv_and_env(rig, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/old/pp")
    monkeypatch.setenv("OPENCLAW_MODEL", "stale")
    cfg = rig.config(extra_pythonpath="/extra/lib")
    ws = rig.workspace("task text stays in TASK.txt only")
    argv, env = OC.build_command(cfg, ws, session_id="s-1", model=MODEL, thinking="high")
    msg = f"Complete the task in TASK.txt. Write result to RESULT.txt in {ws.task_dir}/"
    assert argv == [str(rig.openclaw), "agent", "--local", "--session-id", "s-1", "--message", msg,
                    "--model", MODEL, "--thinking", "high", "--json"]
    assert not any("task text" in a for a in argv)
    assert env["OPENCLAW_STATE_DIR"] == str(ws.agent_dir) and os.path.isabs(env["OPENCLAW_STATE_DIR"])
    assert env["OPENCLAW_CONFIG_PATH"] == str(ws.overlay_config)
    assert env["OPENCLAW_INCLUDE_ROOTS"] == str(rig.user_config.parent)
    assert env["OPENCLAW_WORKSPACE_DIR"] == str(ws.task_dir)
    assert env["DISCORD_ORCH_AGENT_ID"] == ws.agent_id and env["DISCORD_ORCH_TASK_ID"] == ws.task_id
    assert env["PYTHONPATH"] == "/extra/lib" + os.pathsep + "/old/pp"
    assert "OPENCLAW_MODEL" not in env
    argv2, _ = OC.build_command(rig.config(local=False), ws, session_id="s", model="m", thinking="off")
    assert "--local" not in argv2


def test_build_command_finds_openclaw_on_path_or_fails(rig, monkeypatch):
    monkeypatch.setenv("PATH", f"{rig.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    ws = rig.workspace("x")
    argv, _ = OC.build_command(rig.config(openclaw_bin="openclaw"), ws, session_id="s", model="m",
                              thinking="off")
    assert argv[0] == str(rig.openclaw)
    with pytest.raises(AgentError) as info:
        OC.build_command(rig.config(openclaw_bin="no-such-openclaw-xyz"), ws, session_id="s",
                        model="m", thinking="off")
    assert "not found on PATH" in str(info.value) and "OPENCLAW_BIN" in str(info.value)
    with pytest.raises(ValueError):
        OC.build_command(rig.config(), ws, session_id="s", model="--evil", thinking="off")


def test_the_agent_gets_openclaws_directory_first_on_path(rig, monkeypatch):
    """npm, nvm and volta put node beside openclaw; its #!/usr/bin/env node needs it on PATH."""
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    ws = rig.workspace("x")
    _, env = OC.build_command(rig.config(), ws, session_id="s", model="m", thinking="off")
    assert env["PATH"] == f"{rig.bin_dir}:/usr/bin:/bin"
    monkeypatch.setenv("PATH", f"/usr/bin:{rig.bin_dir}:/bin")
    _, env = OC.build_command(rig.config(), ws, session_id="s", model="m", thinking="off")
    assert env["PATH"] == f"/usr/bin:{rig.bin_dir}:/bin"   # already there: PATH unchanged


def test_a_missing_interpreter_fails_with_exit_127_and_says_so(rig, tmp_path):
    program = tmp_path / "oc" / "openclaw"
    program.parent.mkdir()
    program.write_text("#!/usr/bin/env no-such-node-xyz\n")
    program.chmod(0o755)
    ws, ra = rig.start("hello", rig.config(openclaw_bin=str(program)))
    out = drive(ra)
    assert (out.status, out.exit_code) == (O.FAILED, 127)
    assert out.reason == ("openclaw exited with code 127: a program it needs was not found (its log says which; "
                          "under cron PATH is only /usr/bin:/bin: run discord-orch check)")
    assert "no-such-node-xyz" in out.log_tail


@pytest.mark.timeout(60)   # the failure this guards against is a hang
def test_fifos_and_devices_left_by_the_agent_are_not_read(rig, tmp_path):
    """A FIFO named RESULT.txt would block a plain open() forever (a hung pass, again in every
    recovery); /dev/zero as SUMMARY.txt never ends; a FIFO in place of its log too. All count as absent."""
    program = tmp_path / "oc" / "openclaw"
    program.parent.mkdir()
    program.write_text("#!/bin/sh\nmkfifo RESULT.txt\nln -s /dev/zero SUMMARY.txt\n"
                       "rm -f agent-output.log && mkfifo agent-output.log\necho '{\"payloads\":[],\"meta\":{}}'\n")
    program.chmod(0o755)
    ws, ra = rig.start("hello", rig.config(openclaw_bin=str(program)))
    out = drive(ra, limit_s=20)
    assert (out.status, out.exit_code) == (O.FAILED, 0)
    assert out.result_text == "" and out.summary_text == "" and out.log_tail == ""
    assert W.read_head(ws, W.RESULT_FILE, 100) == (None, None, False)


def test_secrets_never_reach_the_agent(rig, monkeypatch):
    monkeypatch.setenv("CHIP_TOKEN", TOKEN)
    monkeypatch.setenv("ORCHESTRATOR_AGENT_TOKEN", TOKEN)
    monkeypatch.setenv("DISCORD_TOKEN", "another-secret-value")
    monkeypatch.setenv("MY_BOT_AUTH", f"Bot {TOKEN}")
    monkeypatch.setenv("HARMLESS_VAR", "kept")
    ws, ra = rig.start("hello", rig.config(secret_values=(TOKEN, "")))
    out = drive(ra)
    assert out.status == O.OK
    raw = rig.run_log.read_text()
    assert TOKEN not in raw and "another-secret-value" not in raw
    run = rig.runs()[-1]
    assert not run["env_has"]["CHIP_TOKEN"] and not run["env_has"]["ORCHESTRATOR_AGENT_TOKEN"]
    assert "MY_BOT_AUTH" not in run["env"] and run["env"]["HARMLESS_VAR"] == "kept"
    assert run["env"]["OPENCLAW_STATE_DIR"] == str(ws.agent_dir)
    assert TOKEN not in " ".join(run["argv"])


# ---------------------------------------------------------------- classification by real runs

def test_success_is_ok_with_usage_and_files(rig, monkeypatch):
    monkeypatch.setenv("PATH", f"{rig.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    task = 'Say "hi"\nsecond line 🎉'
    ws, ra = rig.start(task, rig.config(openclaw_bin="openclaw"))
    assert ra.pgid == ra.pid and ra.proc_start_ticks == P.process_start_ticks(ra.pid)
    assert ra.deadline == pytest.approx(ra.started_at + 20.0)
    out = drive(ra)
    assert out.status == O.OK and out.exit_code == 0 and out.signal is None and out.reason == ""
    assert out.result_text == "RESULT: " + task
    assert out.summary_text.startswith("Summary: Say")
    assert out.reply_text == "Done. Wrote the result to RESULT.txt."
    assert out.usage == O.Usage(provider="openrouter", model="moonshotai/kimi-k2.5",
                                input_tokens=200, output_tokens=20, cost_usd=None)
    assert out.files == ("RESULT.txt", "SUMMARY.txt")
    assert "warning" in out.log_tail and 0 <= out.duration_s < 10
    assert out.result_bytes == len(("RESULT: " + task).encode()) and not out.result_truncated
    run = rig.runs()[-1]
    assert run["cwd"] == str(ws.task_dir) and run["pid"] == ra.pid
    assert run["session_id"] == f"{ws.agent_id}-{ws.task_id}" and run["task_id"] == ws.task_id


def test_cost_from_json(rig):
    _, ra = rig.start("priced COST=0.0125")
    assert drive(ra).usage.cost_usd == pytest.approx(0.0125)
    _, ra = rig.start("free COST=0")
    assert drive(ra).usage.cost_usd == 0.0


def test_fail_is_failed_with_openclaw_message(rig):
    _, ra = rig.start("please FAIL")
    out = drive(ra)
    assert out.status == O.FAILED and out.exit_code == 1
    assert out.error_message.startswith("LLM request failed:")
    assert "exited with code 1" in out.reason


def test_bad_thinking_level_is_failed_like_the_real_cli(rig):
    _, ra = rig.start("x", thinking="bogus")
    out = drive(ra)
    assert out.status == O.FAILED and "Invalid thinking level" in out.error_message


def test_noresult_is_failed_and_keeps_the_reply(rig):
    _, ra = rig.start("NORESULT")
    out = drive(ra)
    assert out.status == O.FAILED and out.exit_code == 0
    assert out.reason == "the agent wrote no RESULT.txt"
    assert out.reply_text.startswith("I could not finish")
    assert out.usage.input_tokens == 200


def test_crash_is_killed_by_sigkill(rig):
    _, ra = rig.start("CRASH now")
    out = drive(ra)
    assert out.status == O.KILLED and out.signal == signal.SIGKILL and out.exit_code is None
    assert "SIGKILL" in out.reason and "about to crash" in out.log_tail


@pytest.mark.parametrize("task", ["HANG", "HANG_CHILD"])
def test_hang_times_out_and_leaves_no_process(rig, task):
    ws, ra = rig.start(task, rig.config(timeout_s=0.8, kill_grace_s=0.5))
    if task == "HANG_CHILD":
        assert wait_for(lambda: len(pids_with_marker(ws.agent_id)) >= 2)
    out = drive(ra, limit_s=10)
    assert out.status == O.TIMED_OUT and out.reason == "timed out after 0.8 s"
    assert out.signal == signal.SIGTERM
    assert 0.7 <= out.duration_s < 3
    assert "stand-in HANG" in out.log_tail
    assert pids_with_marker(ws.agent_id) == [] and P.find_agent_processes(ws.agent_id) == []


def test_sigterm_ignored_gets_sigkill_after_grace(rig):
    ws, ra = rig.start("HANG_CHILD NOTERM", rig.config(timeout_s=0.5, kill_grace_s=0.6))
    assert wait_for(lambda: len(pids_with_marker(ws.agent_id)) >= 2)
    out = drive(ra, limit_s=10)
    assert out.status == O.TIMED_OUT and out.signal == signal.SIGKILL
    assert ra.kill_sent_at is not None and ra.kill_sent_at - ra.term_sent_at >= 0.6
    assert out.duration_s >= 1.1
    assert pids_with_marker(ws.agent_id) == []


@pytest.mark.parametrize("task", ["LINGER", "ESCAPE"])
def test_stragglers_after_a_normal_exit_are_killed(rig, task):
    ws, ra = rig.start(task)
    out = drive(ra)
    assert out.status == O.OK
    assert pids_with_marker(ws.agent_id) == []


def test_agents_ending_in_one_tick_share_one_process_walk_and_leave_nothing(rig):
    """The orchestrator polls every agent of a tick with one ProcessTable: a leftover in the
    group of one and a setsid escapee of another are both found through the same walk."""
    started = [rig.start(task) for task in ("LINGER", "ESCAPE", "quick")]
    assert wait_for(lambda: all(ra._leader_exited() for _, ra in started))
    assert wait_for(lambda: all(pids_with_marker(ws.agent_id) for ws, _ in started[:2]))
    end = time.time() + 30
    pending = [ra for _, ra in started]
    while pending:
        assert time.time() < end, "agents still not finished after 30 s"
        procs = P.ProcessTable()
        pending = [ra for ra in pending if not ra.poll(time.time(), procs)]
        time.sleep(0.02)
    assert [ra.outcome(time.time()).status for _, ra in started] == [O.OK, O.OK, O.OK]
    assert [pids_with_marker(ws.agent_id) for ws, _ in started] == [[], [], []]


def test_stop_is_killed(rig):
    ws, ra = rig.start("HANG_CHILD", rig.config(kill_grace_s=0.5))
    assert wait_for(lambda: len(pids_with_marker(ws.agent_id)) >= 2)
    ra.stop(time.time(), "the orchestrator was stopped")
    out = drive(ra, limit_s=10)
    assert out.status == O.KILLED and out.signal == signal.SIGTERM
    assert out.reason == "stopped by the orchestrator: the orchestrator was stopped"
    assert pids_with_marker(ws.agent_id) == []


def test_stop_after_a_natural_end_keeps_the_natural_outcome(rig):
    _, ra = rig.start("quick")
    assert wait_for(lambda: ra._leader_exited())
    ra.stop(time.time(), "shutdown")
    assert drive(ra).status == O.OK


def test_outcome_before_finish_raises(rig):
    _, ra = rig.start("SLEEP=0.3")
    with pytest.raises(RuntimeError):
        ra.outcome(time.time())
    assert drive(ra).status == O.OK


def test_huge_output_is_read_bounded(rig):
    ws, ra = rig.start("HUGE")
    assert wait_for(lambda: ra._leader_exited(), limit_s=20)
    cap = logcap.HEAD_KEEP + logcap.TAIL_KEEP + logcap.MARKER_MAX   # 5 MB each written, capped (issue 11)
    assert all(3_000_000 < f.stat().st_size <= cap for f in (ws.stdout_file, ws.stderr_file))
    tracemalloc.start()
    try:
        out = drive(ra)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.status == O.OK and out.usage.input_tokens == 200
    lines = out.log_tail.splitlines()
    assert len(lines) == 20 and lines[-1] == "[agent] turn finished"
    assert lines[-2] == "[agent] HUGE log done" and lines[0] == "e" * 99
    assert len(out.result_text) > 190_000
    assert peak < 8_000_000, peak


def test_enormous_sparse_files_are_capped(rig):
    ws = rig.workspace("x")
    gib = 1 << 30
    with open(ws.result_file, "wb") as fh:
        fh.write("é".encode() * 10)
        fh.truncate(gib)
    with open(ws.stderr_file, "wb") as fh:
        fh.truncate(gib)
        fh.seek(gib)
        fh.write(b"".join(b"line %d\n" % i for i in range(100)))
    with open(ws.stdout_file, "wb") as fh:
        fh.truncate(gib)
        fh.seek(gib)
        fh.write(b'\n{"payloads":[{"text":"done"}],"meta":{"agentMeta":{"usage":{"input":1,"output":2}}}}\n')
    tracemalloc.start()
    try:
        t0 = time.time()
        out = A.outcome_from_workspace(ws, status_hint=O.INTERRUPTED, duration_s=1, reason="r")
        elapsed = time.time() - t0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.status == O.OK and out.result_truncated and out.result_bytes == gib
    assert out.result_text == "é" * 10 and out.usage.output_tokens == 2
    assert out.log_tail.splitlines() == [f"line {i}" for i in range(80, 100)]
    assert peak < 60_000_000, peak
    assert elapsed < 10


def test_bigresult_and_utf8_cut(rig):
    _, ra = rig.start("BIGRESULT=12345")
    out = drive(ra)
    assert out.status == O.OK and len(out.result_text) == 12345


def test_badbytes_no_crash_no_nul(rig):
    _, ra = rig.start("BADBYTES")
    out = drive(ra)
    assert out.status == O.OK
    assert "\x00" not in out.result_text and "\ufffd" in out.result_text
    assert "\x00" not in out.log_tail and "bad log bytes" in out.log_tail


def test_empty_result_is_failed(rig):
    ws = rig.workspace("x")
    ws.stdout_file.write_text('{"payloads":[],"meta":{}}')
    ws.result_file.write_text("  \n")
    # exit status unknown -> judged by the JSON and RESULT.txt
    out = A.outcome_from_workspace(ws, status_hint=O.INTERRUPTED, duration_s=2, reason="r")
    assert out.status == O.FAILED and out.reason == "the agent wrote an empty RESULT.txt"


def test_start_failure_is_agent_error(rig):
    bad = rig.bin_dir / "not-exec"
    bad.write_text("no shebang, garbage")
    os.chmod(bad, 0o755)
    ws = rig.workspace("x")
    with pytest.raises(AgentError):
        A.RunningAgent.start(rig.config(openclaw_bin=str(bad)), ws, task_id=ws.task_id,
                             session_id="s", model="m", thinking="off", now=time.time())


# ---------------------------------------------------------------- adoption (recovery)

_STARTER = r"""
import json, os, sys, time
from pathlib import Path
from discord_orch import agent as A
from discord_orch import openclaw as OC
from discord_orch import workspace as W
workers, agent_id, task_id, openclaw, task = sys.argv[1:6]
ws = W.create_workspace(workers, agent_id, task_id, task, agents_md="# a", tools_md=None,
                        user_openclaw_config=Path(workers) / "none.json")
cfg = OC.AgentConfig(openclaw_bin=openclaw, timeout_s=60, sandbox="off")   # as Rig: the stand-in runs from src/
ra = A.RunningAgent.start(cfg, ws, task_id=task_id, session_id="s", model="p/m", thinking="low",
                          now=time.time())
print(json.dumps({"pid": ra.pid, "pgid": ra.pgid, "ticks": ra.proc_start_ticks,
                  "started_at": ra.started_at}), flush=True)
os._exit(0)
"""


def start_elsewhere(rig, task, agent_id, task_id):
    out = subprocess.run([sys.executable, "-c", _STARTER, str(rig.workers), agent_id, task_id,
                          str(rig.openclaw), task], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_adopt_supervises_the_timeout_of_a_foreign_agent(rig):
    ws = W.Workspace.at(rig.workers, W.new_agent_id(time.time()), "223456789012345678")
    info = start_elsewhere(rig, "HANG_CHILD", ws.agent_id, ws.task_id)
    assert wait_for(lambda: len(pids_with_marker(ws.agent_id)) >= 2)
    cfg = rig.config(timeout_s=1.0, kill_grace_s=0.5)
    # identity checks: wrong start ticks / wrong agent id / a dead pid are refused
    assert A.RunningAgent.adopt(info["pid"], info["pgid"], info["ticks"] + 1, info["started_at"],
                                cfg, ws, ws.task_id) is None
    other = W.Workspace.at(rig.workers, "agent-1-zzzzzz", ws.task_id)
    assert A.RunningAgent.adopt(info["pid"], info["pgid"], info["ticks"], info["started_at"],
                                cfg, other, ws.task_id) is None
    assert A.RunningAgent.adopt(os.getpid(), os.getpgid(0), P.process_start_ticks(os.getpid()),
                                time.time(), cfg, ws, ws.task_id) is None
    ra = A.RunningAgent.adopt(info["pid"], info["pgid"], info["ticks"], info["started_at"],
                              cfg, ws, ws.task_id)
    assert ra is not None and ra.adopted and ra.deadline == info["started_at"] + 1.0
    out = drive(ra, limit_s=10)
    assert out.status == O.TIMED_OUT and out.exit_code is None and out.signal is None
    assert pids_with_marker(ws.agent_id) == []


def test_adopted_agent_that_finishes_is_classified_from_its_files(rig):
    ws = W.Workspace.at(rig.workers, W.new_agent_id(time.time()), "323456789012345678")
    info = start_elsewhere(rig, "SLEEP=0.6 done", ws.agent_id, ws.task_id)
    ra = A.RunningAgent.adopt(info["pid"], info["pgid"], info["ticks"], info["started_at"],
                              rig.config(), ws, ws.task_id)
    assert ra is not None
    out = drive(ra)
    assert out.status == O.OK and out.exit_code is None
    assert out.result_text == "RESULT: SLEEP=0.6 done" and out.usage.model == "m"
    # gone now: adopting again gives None
    assert A.RunningAgent.adopt(info["pid"], info["pgid"], info["ticks"], info["started_at"],
                                rig.config(), ws, ws.task_id) is None


def test_adopted_agent_that_crashes_is_failed_without_json(rig):
    ws = W.Workspace.at(rig.workers, W.new_agent_id(time.time()), "423456789012345678")
    info = start_elsewhere(rig, "SLEEP=0.5 CRASH", ws.agent_id, ws.task_id)
    ra = A.RunningAgent.adopt(info["pid"], info["pgid"], info["ticks"], info["started_at"],
                              rig.config(), ws, ws.task_id)
    if ra is None:  # it may already have crashed on a slow machine
        pytest.skip("agent ended before adoption")
    out = drive(ra)
    assert out.status == O.FAILED and "exit status unknown" in out.reason


def test_find_agent_processes(rig):
    ws, ra = rig.start("HANG_CHILD", rig.config(timeout_s=0.3, kill_grace_s=0.3))
    assert wait_for(lambda: len(P.find_agent_processes(ws.agent_id)) == 2)
    assert ra.pid in P.find_agent_processes(ws.agent_id)
    assert P.find_agent_processes("agent-1-nobody") == []
    drive(ra)
    assert P.find_agent_processes(ws.agent_id) == []


# ---------------------------------------------------------------- outcome_from_workspace

def test_outcome_from_workspace(rig):
    ws = rig.workspace("x")
    out = A.outcome_from_workspace(ws, status_hint=O.INTERRUPTED, duration_s=3.0,
                                   reason="the orchestrator stopped")
    assert out.status == O.INTERRUPTED and out.reason == "the orchestrator stopped"
    ws.result_file.write_text("partial")
    out = A.outcome_from_workspace(ws, status_hint=O.INTERRUPTED, duration_s=3.0, reason="r")
    assert out.status == O.INTERRUPTED and out.result_text == "partial"
    ws.stdout_file.write_text('{"ok": false, "error": {"type": "cli_error", "message": "boom"}}')
    out = A.outcome_from_workspace(ws, status_hint=O.INTERRUPTED, duration_s=3.0, reason="r")
    assert out.status == O.FAILED and out.error_message == "boom"
    with pytest.raises(ValueError):
        A.outcome_from_workspace(ws, status_hint="weird", duration_s=0, reason="")


# ---------------------------------------------------------------- parse_openclaw_json

EXPECTED_SAMPLES = {
    "agent-local-json-ok.json": (O.Usage("fake", "fake-model", 200, 20, 0.0), "",
                                 "Done. Wrote 42 to RESULT.txt."),
    "agent-local-json-http400.json": (O.Usage(), "LLM request failed: provider rejected the request "
                                                 "schema or tool payload.", ""),
    "agent-local-json-server-down.json": (O.Usage(), "LLM request failed: connection refused by the "
                                                     "provider endpoint.", ""),
}


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="../shared/openclaw/samples not present")
@pytest.mark.parametrize("name", sorted(p.name for p in SAMPLES.glob("*.json")) if SAMPLES.is_dir() else [])
def test_parse_samples(name):
    text = (SAMPLES / name).read_text(encoding="utf-8")
    usage, error, reply = OC.parse_openclaw_json(text)
    if name in EXPECTED_SAMPLES:
        assert (usage, error, reply) == EXPECTED_SAMPLES[name]
    elif name == "agent-local-json-http500.json":
        assert usage == O.Usage() and "HTTP 500" in error and reply == ""
    elif name == "agent-local-json-timeout-slow-model.json":
        assert usage == O.Usage("fake", "fake-model", None, None, None)
        assert error.startswith("Request timed out before a response was generated")
        assert reply == error
    else:  # request bodies / config: not openclaw output, must not look like an error
        assert error == "" and isinstance(usage, O.Usage)
    # the same with junk lines before it (the last JSON object wins)
    assert OC.parse_openclaw_json("warn: x\n{not json}\n" + text + "\n") == (usage, error, reply)


def test_parse_tolerance():
    assert OC.parse_openclaw_json("") == (O.Usage(), "", "")
    assert OC.parse_openclaw_json("no json at all\n{broken") == (O.Usage(), "", "")
    two = '{"payloads":[{"text":"first"}]}\nnoise\n{"payloads":[{"text":"second"}]}\n'
    assert OC.parse_openclaw_json(two)[2] == "second"
    u, e, r = OC.parse_openclaw_json(json.dumps({"payloads": [{"text": "a"}, {"text": "b"}],
                                                "meta": {"agentMeta": {"usage": {
                                                    "input": 5, "output": True,
                                                    "cost": {"total": 0.5}}}}}))
    assert (u.input_tokens, u.output_tokens, u.cost_usd, r) == (5, None, 0.5, "a\n\nb")
    u, _, _ = OC.parse_openclaw_json('{"meta":{"agentMeta":{"costUsd":0,"usage":{"cost":{"total":9}}}}}')
    assert u.cost_usd == 0.0
    _, e, _ = OC.parse_openclaw_json('{"payloads":[{"text":"oops","isError":true}]}')
    assert e == "oops"
    _, e, _ = OC.parse_openclaw_json('{"ok":false}')
    assert e == "openclaw reported an error"
    _, e, _ = OC.parse_openclaw_json('{"ok":false,"error":"plain string"}')
    assert e == "plain string"
    assert OC.parse_openclaw_json("[1,2,3]") == (O.Usage(), "", "")


def test_log_tail_reader(tmp_path):
    ws = W.Workspace.in_dir(tmp_path / "agent-1-abcdef", "agent-1-abcdef", "123456789012345678")
    ws.task_dir.mkdir(parents=True)
    p = ws.stderr_file
    p.write_bytes(b"a\nb\n\n\n")
    assert W.read_log_tail(ws) == "a\nb"
    assert W.read_log_tail(ws, "missing") == ""
    p.write_bytes(b"x" * 70_000 + b"\nlast\n")
    assert W.read_log_tail(ws) == "last"
