"""workspace.py on a real filesystem: layout, contents, modes, validation, archive, prune."""

from __future__ import annotations

import json
import os
import random
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from discord_orch import workspace as W
from discord_orch.errors import StateError

from helpers_agent import next_task_id

TRICKY = 'He said "hi" \\ back\\slash\n\nline 3 \ttab \r\n CRLF 🎉👩‍💻 ``` @everyone $HOME `x` \'q\''


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def make(tmp_path: Path, text: str = "do it", *, tools_md=None, user_config=None,
         task_id=None, agent_id=None):
    agent_id = W.new_agent_id(time.time()) if agent_id is None else agent_id
    task_id = next_task_id() if task_id is None else task_id
    user_config = user_config or tmp_path / "nope" / "openclaw.json"
    return W.create_workspace(tmp_path / "workers", agent_id, task_id, text, agents_md="# A\n",
                              tools_md=tools_md, user_openclaw_config=user_config)


def test_new_agent_id_format_and_rng():
    aid = W.new_agent_id(1795603094.7)
    assert W.is_agent_id(aid) and aid.startswith("agent-1795603094-")
    a = W.new_agent_id(10, random.Random(7))
    b = W.new_agent_id(10, random.Random(7))
    assert a == b and len(a.rsplit("-", 1)[1]) == 6
    assert len({W.new_agent_id(0) for _ in range(50)}) == 50


def test_workspace_at_is_pure_and_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ws = W.Workspace.at("workers", "agent-1-abcdef", "123456789012345678")
    assert ws.agent_dir == tmp_path / "workers" / "agent-1-abcdef"
    assert ws.task_dir == ws.agent_dir / "tasks" / "123456789012345678"
    assert ws.task_dir.is_absolute()
    assert (ws.task_file.name, ws.result_file.name, ws.summary_file.name) == \
        ("TASK.txt", "RESULT.txt", "SUMMARY.txt")
    assert ws.stdout_file == ws.task_dir / "agent-output.json"
    assert ws.stderr_file == ws.task_dir / "agent-output.log"
    assert ws.overlay_config == ws.agent_dir / "openclaw.json"
    assert not (tmp_path / "workers").exists()
    with pytest.raises(ValueError):
        W.Workspace.at("workers", "../etc", "123456789012345678")
    with pytest.raises(ValueError):
        W.Workspace.at("workers", "agent-1-abcdef", "../../x")


def test_layout_contents_and_modes(tmp_path):
    user_cfg = tmp_path / "home" / ".openclaw" / "openclaw.json"
    user_cfg.parent.mkdir(parents=True)
    user_cfg.write_text("{}")
    ws = make(tmp_path, TRICKY, tools_md="# tools\n", user_config=user_cfg)
    assert ws.task_file.read_bytes() == b"TASK: " + TRICKY.encode("utf-8")
    for d in (ws.agent_dir, ws.task_dir):
        assert (d / "AGENTS.md").read_text() == "# A\n"
        assert (d / "TOOLS.md").read_text() == "# tools\n"
    overlay = json.loads(ws.overlay_config.read_text())
    assert overlay == {"$include": str(user_cfg),
                       "agents": {"defaults": {"skipBootstrap": True, "workspace": str(ws.task_dir)}}}
    for root, dirs, files in os.walk(ws.agent_dir):
        assert mode(Path(root)) == 0o700, root
        for f in files:
            assert mode(Path(root) / f) == 0o600, f
    assert W.files_left(ws) == ()


def test_overlay_without_user_config_and_no_tools(tmp_path):
    ws = make(tmp_path, "x", tools_md=None)
    overlay = json.loads(ws.overlay_config.read_text())
    assert overlay == {"agents": {"defaults": {"skipBootstrap": True, "workspace": str(ws.task_dir)}}}
    assert not (ws.agent_dir / "TOOLS.md").exists() and not (ws.task_dir / "TOOLS.md").exists()


@pytest.mark.parametrize("bad", ["", "123", "1" * 16, "1" * 21, "12345678901234567a", " 123456789012345678",
                                 "../../../etc", "123456789012345678/..", "１２３４５６７８９０１２３４５６７８"])
def test_task_id_must_be_snowflake_before_any_path(tmp_path, bad):
    with pytest.raises(ValueError):
        make(tmp_path, task_id=bad)
    assert not (tmp_path / "workers").exists()


@pytest.mark.parametrize("bad", ["..", ".", "../x", "a/b", "a\\b", "x" * 33, "", "é", "a b", "/etc"])
def test_worker_names_refused(tmp_path, bad):
    with pytest.raises(ValueError):
        W.tools_md_for(tmp_path, bad)
    with pytest.raises(ValueError):
        W.agents_template_for(tmp_path, bad)


def test_tools_and_template_lookup(tmp_path):
    workers = tmp_path / "workers"
    (workers / "coder").mkdir(parents=True)
    assert W.tools_md_for(workers, None) is None
    assert W.tools_md_for(workers, "coder") is None
    (workers / "TOOLS.md").write_text("generic")
    assert W.tools_md_for(workers, None) == "generic"
    assert W.tools_md_for(workers, "coder") == "generic"
    assert W.tools_md_for(workers, "other_type-1") == "generic"
    (workers / "coder" / "TOOLS.md").write_text("coder tools")
    assert W.tools_md_for(workers, "coder") == "coder tools"
    assert W.agents_template_for(workers, "coder") is None
    assert W.agents_template_for(workers, None) is None
    (workers / "coder" / "AGENTS.md").write_text("be a coder")
    assert W.agents_template_for(workers, "coder") == "be a coder"


def test_a_workspace_is_never_a_profile(tmp_path):
    """Agent ids are public in #worker-pool: `[worker:<agent id>]` must not load that task's prompt."""
    ws = make(tmp_path, "another task's secret prompt")
    workers = ws.agent_dir.parent
    assert W.agents_template_for(workers, ws.agent_id) is None
    assert W.tools_md_for(workers, ws.agent_id) is None
    disguised = workers / "looks_fine"   # workspace-shaped under another name
    (disguised / W.TASKS_DIR).mkdir(parents=True)
    (disguised / W.OVERLAY_CONFIG).write_text("{}")
    (disguised / "AGENTS.md").write_text("prompt")
    (workers / "coder").mkdir()
    (workers / "coder" / "TOOLS.md").write_text("coder tools")
    (workers / "empty").mkdir()
    assert W.worker_profiles(workers) == ["coder"]
    assert not W.is_profile(workers, "looks_fine") and not W.is_profile(workers, "agent-x")
    assert W.worker_profiles(tmp_path / "none") == []


def test_render_agents_md(tmp_path, monkeypatch):
    monkeypatch.setenv("CHIP_TOKEN", "SECRET-TOKEN-VALUE-123")
    tdir = tmp_path / "w" / "agent-1-abcdef" / "tasks" / "123456789012345678"
    text = W.render_agents_md(agent_id="agent-1-abcdef", task_id="123456789012345678", task_dir=tdir,
                              description="Count to 3", model="openrouter/x", thinking="low",
                              summary_max=777)
    assert "agent-1-abcdef" in text and "Count to 3" in text
    assert f"Write the FULL result to RESULT.txt in {tdir}/" in text
    assert "SUMMARY.txt (at most 777 characters)" in text
    assert "language of the task" in text
    assert "SECRET-TOKEN-VALUE-123" not in text
    custom = W.render_agents_md(agent_id="agent-1-abcdef", task_id="123456789012345678", task_dir=tdir,
                                description="Count to 3", model="m", thinking="off",
                                template="# My house rules\nBe terse.\n")
    assert custom.startswith("# My house rules\nBe terse.\n")
    assert "Count to 3" in custom and f"RESULT.txt in {tdir}/" in custom


def test_files_left(tmp_path):
    ws = make(tmp_path, "x", tools_md="t")
    ws.stdout_file.write_text("{}")
    ws.stderr_file.write_text("log")
    ws.result_file.write_text("r")
    (ws.task_dir / "out").mkdir()
    (ws.task_dir / "out" / "chart.png").write_bytes(b"\x89PNG")
    (ws.task_dir / "out" / "TASK.txt").write_text("nested one is the agent's")
    os.symlink("/etc", ws.task_dir / "link")
    assert W.files_left(ws) == ("RESULT.txt", "link", "out/TASK.txt", "out/chart.png")
    for i in range(80):
        (ws.task_dir / f"f{i:03}").write_text("")
    assert len(W.files_left(ws)) == W.FILES_LEFT_MAX
    assert len(W.files_left(ws, limit=5)) == 5


def test_remove_workspace(tmp_path):
    ws = make(tmp_path)
    ro = ws.task_dir / "readonly"
    ro.mkdir()
    (ro / "f").write_text("x")
    os.chmod(ro, 0o500)
    W.remove_workspace(ws)
    assert not ws.agent_dir.exists()
    W.remove_workspace(ws)  # already gone: fine


def test_archive_and_prune(tmp_path):
    archive = tmp_path / "archive"
    ws1, ws2 = make(tmp_path, "one"), make(tmp_path, "two")
    ws1.stderr_file.write_text("the log\n")
    dest = W.archive_workspace(ws1, archive)
    assert dest == archive / ws1.agent_id and not ws1.agent_dir.exists()
    assert (dest / "tasks" / ws1.task_id / "agent-output.log").read_text() == "the log\n"
    assert mode(archive) == 0o700
    dest2 = W.archive_workspace(ws2, archive)
    (archive / "README").write_text("not ours")
    (archive / "other-dir").mkdir()
    now = time.time()
    os.utime(dest, (now - 30 * 3600, now - 30 * 3600))
    os.utime(archive / "other-dir", (now - 99 * 3600, now - 99 * 3600))
    assert W.prune_archive(archive, 24, now) == [dest]
    assert not dest.exists() and dest2.exists()
    assert (archive / "README").exists() and (archive / "other-dir").exists()
    assert W.prune_archive(archive, 24, now + 25 * 3600) == [dest2]
    assert W.prune_archive(tmp_path / "missing", 24, now) == []


def test_archive_of_missing_dir_is_state_error(tmp_path):
    ws = W.Workspace.at(tmp_path / "workers", "agent-1-abcdef", "123456789012345678")
    with pytest.raises(StateError):
        W.archive_workspace(ws, tmp_path / "archive")


def test_workers_dir_is_a_file_gives_state_error(tmp_path):
    (tmp_path / "workers").write_text("oops")
    with pytest.raises(StateError) as info:
        make(tmp_path)
    assert "workers" in str(info.value)
    assert (tmp_path / "workers").read_text() == "oops"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_workers_dir_gives_state_error(tmp_path):
    workers = tmp_path / "workers"
    workers.mkdir()
    os.chmod(workers, 0o500)
    try:
        with pytest.raises(StateError):
            make(tmp_path)
        assert list(workers.iterdir()) == []
    finally:
        os.chmod(workers, 0o700)


def test_disk_full_midway_removes_half_written_workspace(tmp_path):
    """A file-size limit makes TASK.txt fail with EFBIG after the dirs and AGENTS.md exist."""
    code = r"""
import json, resource, signal, sys
from pathlib import Path
from discord_orch import workspace as W
from discord_orch.errors import StateError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
root = Path(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    W.create_workspace(root / "workers", "agent-1-abcdef", "123456789012345678", "x" * 100000,
                       agents_md="# small", tools_md="small", user_openclaw_config=root / "u.json")
except StateError as exc:
    print(json.dumps({"error": str(exc), "path": exc.path}))
else:
    print(json.dumps({"error": None}))
"""
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["error"] and res["path"].endswith("TASK.txt"), res
    assert (tmp_path / "workers").is_dir()
    assert list((tmp_path / "workers").iterdir()) == []


def test_existing_agent_dir_is_not_removed(tmp_path):
    ws = make(tmp_path, "first", agent_id="agent-5-aaaaaa", task_id="123456789012345678")
    with pytest.raises(StateError) as info:
        make(tmp_path, "second", agent_id="agent-5-aaaaaa", task_id="123456789012345679")
    assert "exists" in str(info.value)
    assert ws.task_file.read_text() == "TASK: first"
