"""Issue 11: what a hostile agent leaves in its workspace cannot publish what lies outside it.

End to end as a user runs it: the stand-in agent leaves links (LINKOUT, LINKDIR) and
the pass posts to the loopback Discord; every message and attachment is searched for
the secret.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from discord_orch import logcap
from discord_orch import workspace as W
from tests.test_security import results_for, stored


def everything_posted(world) -> bytes:
    """Every message's text and every attachment's bytes, in every channel."""
    out = []
    for channel in (world.task_queue, world.results, world.worker_pool):
        for msg in stored(world.ld, channel):
            out.append(msg.content.encode())
            out.extend(att.data for att in msg.attachments)
    return b"\n".join(out)


def test_links_out_of_the_workspace_are_reported_never_read(home, world, tmp_path):
    token = world.bot.token
    elsewhere = tmp_path / "elsewhere"   # another dir the agent should not publish through us
    elsewhere.mkdir()
    for name in ("RESULT.txt", "SUMMARY.txt", "agent-output.log", "agent-output.json"):
        (elsewhere / name).write_text(f"SECRET-ELSEWHERE in {name}\n")
    env = {"STANDIN_LINK_FILE": str(home.path / "discord-config.env"), "STANDIN_LINK_DIR": str(elsewhere)}
    linked = home.cli("submit", "LINKOUT publish the config").stdout.strip()
    moved = home.cli("submit", "LINKDIR publish another dir").stdout.strip()

    run = home.cli("orchestrate", env=env)
    assert run.returncode == 0, run.stderr

    posted = everything_posted(world)
    assert token.encode() not in posted and b"SECRET-ELSEWHERE" not in posted
    assert b"CHIP\\_TOKEN" not in posted and b"CHIP_TOKEN" not in posted
    [post] = results_for(world, linked)
    for name in ("RESULT.txt", "SUMMARY.txt", "agent-output.log", "agent-output.json"):
        assert f"{name} is a link; not followed" in post["content"].replace("\\", ""), post["content"]
    assert "FAILED" in post["content"]   # no RESULT.txt was read
    [post] = results_for(world, moved)
    assert f"tasks/{moved} is a link; not followed" in post["content"].replace("\\", ""), post["content"]
    assert "FAILED" in post["content"]
    assert (home.path / "discord-config.env").read_text().count(token) == 1   # the target is untouched
    assert sorted(p.name for p in elsewhere.iterdir()) == ["RESULT.txt", "SUMMARY.txt", "agent-output.json",
                                                         "agent-output.log"]


def test_a_linked_agent_dir_is_neither_archived_through_nor_changed(home, world, tmp_path):
    """The agent puts a link to another dir where its agent dir was: the pass neither reads, trims
    (the archive cap), chmods (the clean-up of read-only dirs) nor deletes anything through it."""
    elsewhere = tmp_path / "elsewhere"
    shared = elsewhere / "shared"
    shared.mkdir(parents=True)
    with open(shared / "big.bin", "wb") as fh:   # sparse, over ARCHIVE_MAX_BYTES
        fh.truncate(W.ARCHIVE_MAX_BYTES + 1024 * 1024)
    task = home.cli("submit", "LINKAGENT publish another dir").stdout.strip()
    (elsewhere / "tasks" / task).mkdir(parents=True)
    (elsewhere / "tasks" / task / "RESULT.txt").write_text("SECRET-ELSEWHERE\n")
    for d in (elsewhere, shared, elsewhere / "tasks", elsewhere / "tasks" / task):
        d.chmod(0o755)
    (shared / "ro").mkdir(mode=0o555)   # a read-only dir makes a failed rmtree chmod its way through
    run = home.cli("orchestrate", env={"STANDIN_LINK_DIR": str(elsewhere)})
    assert run.returncode == 0, run.stderr

    assert b"SECRET-ELSEWHERE" not in everything_posted(world)
    [post] = results_for(world, task)
    assert "is a link; not followed" in post["content"].replace("\\", ""), post["content"]
    assert (shared / "big.bin").stat().st_size == W.ARCHIVE_MAX_BYTES + 1024 * 1024
    assert (elsewhere / "tasks" / task / "RESULT.txt").read_text() == "SECRET-ELSEWHERE\n"
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in (elsewhere, shared, shared / "ro")}
    assert modes == {"elsewhere": "0o755", "shared": "0o755", "ro": "0o555"}
    workers = home.path / "workers"
    left = [p for d in (workers, home.path / "archive") if d.exists() for p in d.iterdir() if p.is_symlink()]
    assert left == [], left   # the link itself was removed, not kept
    assert "is a link; not followed" in run.stderr, run.stderr


def test_a_linked_parent_cannot_redirect_the_readers(tmp_path):
    """``tasks`` (or a subdirectory) made a link: nothing under it is read or listed."""
    ws = W.Workspace.in_dir(tmp_path / "agent-1-abcdef", "agent-1-abcdef", "123456789012345678")
    elsewhere = tmp_path / "elsewhere" / ws.task_id
    (elsewhere / "sub").mkdir(parents=True)
    (elsewhere / "RESULT.txt").write_text("SECRET")
    ws.agent_dir.mkdir()
    (ws.agent_dir / W.TASKS_DIR).symlink_to(elsewhere.parent)
    assert ws.result_file.read_text() == "SECRET"   # a path-based open would follow it
    assert W.read_head(ws, W.RESULT_FILE, 100) == (None, None, False)
    assert W.read_tail_bytes(ws, W.RESULT_FILE, 100) == (b"", False)
    assert W.files_left(ws) == ()
    assert W.links_left(ws) == ("tasks",)

    (ws.agent_dir / W.TASKS_DIR).unlink()
    ws.task_dir.mkdir(parents=True)
    (ws.task_dir / "out").symlink_to(elsewhere)
    (ws.task_dir / "RESULT.txt").write_text("mine")
    assert W.files_left(ws) == ("RESULT.txt", "out")   # the link is listed, not walked into
    assert W.read_head(ws, W.RESULT_FILE, 100) == ("mine", 4, False)
    assert W.links_left(ws) == ()


def test_a_logging_loop_leaves_bounded_logs_and_its_result_is_posted(home, world):
    home.write_config(KEEP_SUCCESS_HOURS="1")   # keep the workspace, to measure its logs
    flood_mib = 300
    task = home.cli("submit", f"LOGFLOOD={flood_mib} talk a lot").stdout.strip()
    started = time.monotonic()
    run = home.cli("orchestrate")
    took = time.monotonic() - started
    assert run.returncode == 0, run.stderr
    [post] = results_for(world, task)
    content = post["content"].replace("\\", "")
    assert "DONE" in content, content
    for name in ("agent-output.log", "agent-output.json"):
        assert f"{name} was cut:" in content, content
    [kept] = home.archive()
    [task_dir] = (home.path / "archive" / kept / "tasks").iterdir()
    cap = logcap.HEAD_KEEP + logcap.TAIL_KEEP + logcap.MARKER_MAX
    for name in ("agent-output.log", "agent-output.json"):
        data = (task_dir / name).read_bytes()
        assert len(data) <= cap, (name, len(data))
        assert b"bytes of this log were cut here" in data
    assert (task_dir / "agent-output.log").read_bytes().endswith(b"[agent] turn finished\n")
    print(f"LOGFLOOD={flood_mib}: {2 * flood_mib} MiB of logs in {took:.1f} s, kept "
          f"{sum((task_dir / n).stat().st_size for n in ('agent-output.log', 'agent-output.json')):,} bytes")


FULL_DISK_MIB = 16
FULL_DISK_SCRIPT = r"""
set -u
truncate -s {size}M "$ROOT/disk.img" && mkfs.ext4 -q -F -m 0 "$ROOT/disk.img" || exit 97
mount -o loop "$ROOT/disk.img" "$ROOT/disk" || exit 97
cp -a "$HOME_DIR/." "$ROOT/disk/" && mount --bind "$ROOT/disk" "$HOME_DIR" || exit 97
cd "$HOME_DIR"
"$PY" -m discord_orch orchestrate 2>"$ROOT/pass1.err" || exit 98
mkdir -p archive/agent-1700000000-filler/tasks
dd if=/dev/zero of=archive/agent-1700000000-filler/tasks/big bs=64k 2>"$ROOT/dd.err"
grep -q "No space left on device" "$ROOT/dd.err" || exit 96
"$PY" -m discord_orch submit "a task on a full disk" >"$ROOT/task-id" || exit 99
"$PY" -m discord_orch orchestrate 2>"$ROOT/pass2.err"
echo $? >"$ROOT/pass2.rc"
"""


def test_a_full_disk_names_the_archive_to_remove_and_still_posts_results(home, world, tmp_path):
    """A real ENOSPC on a real filesystem: the home is copied onto a 16 MiB ext4 image, loop-mounted
    in a private mount namespace (unshare; root only), and bind-mounted over the home; an archived
    workspace fills it to the last block (dd ends with ENOSPC), then a pass runs a task."""
    if os.geteuid() != 0 or not all(shutil.which(p) for p in ("unshare", "mkfs.ext4", "mount")):
        pytest.skip("needs root, unshare(1) and mkfs.ext4 to loop-mount a small ext4 disk")
    (tmp_path / "disk").mkdir()
    script = FULL_DISK_SCRIPT.replace("{size}", str(FULL_DISK_MIB))
    env = {**home.env, "ROOT": str(tmp_path), "HOME_DIR": str(home.path), "PY": sys.executable}
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                          env=env, capture_output=True, text=True, timeout=240)
    if proc.returncode == 97:
        pytest.skip(f"cannot loop-mount an ext4 image here: {proc.stderr.strip()[-300:]}")
    assert proc.returncode == 0, (proc.returncode, proc.stderr, (tmp_path / "pass1.err").read_text())
    err = (tmp_path / "pass2.err").read_text()
    task = (tmp_path / "task-id").read_text().strip()
    filler = home.path / "archive" / "agent-1700000000-filler"
    [line] = [ln for ln in err.splitlines() if "is full" in ln]
    assert f"remove {filler} (" in line and "Traceback" not in err, err
    [post] = results_for(world, task)
    assert "DONE" in post["content"], (post["content"], err)
    assert (tmp_path / "pass2.rc").read_text().strip() == "0", err


def test_what_is_archived_is_capped(tmp_path):
    ws = W.Workspace.at(tmp_path / "workers", "agent-1-abcdef", "123456789012345678")
    ws.task_dir.mkdir(parents=True)
    (ws.task_dir / "RESULT.txt").write_text("kept")
    for name, mib in (("big.bin", 60), ("bigger.bin", 70)):   # sparse: fast, and counted by size
        with open(ws.task_dir / name, "wb") as fh:
            fh.truncate(mib * 1024 * 1024)
    (ws.task_dir / "link").symlink_to("/etc")
    dest = W.archive_workspace(ws, tmp_path / "archive")
    left = sorted(p.name for p in (dest / "tasks" / ws.task_id).iterdir())
    assert left == ["RESULT.txt", "big.bin", "link"]
    note = (dest / W.ARCHIVE_TRIMMED_FILE).read_text()
    assert f"tasks/{ws.task_id}/bigger.bin" in note
    assert (dest / "tasks" / ws.task_id / "link").is_symlink()
