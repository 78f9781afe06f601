"""Files attached to a task reach its agent in inputs/ (issue 15): `submit --attach`, a person's upload,
the limits (a refusal with the reason, nothing fetched), all or nothing, safe names."""

from __future__ import annotations

import hashlib
import os

from discord_orch.inputs import safe_names
from tests.test_results import orchestrate, results_for, run_of, submit, the_result

ATTACHMENT = "GET /attachments/{channel_id}/{attachment_id}/{filename}"
BINARY = bytes(range(256)) * 64 + os.urandom(4096) + b"\x00\r\n\x1a"   # every byte value, NULs, CR LF, ^Z
REFUSED = "⛔"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_two_files_one_binary_reach_the_agent_byte_for_byte_and_are_named_in_its_prompt(home, world, tmp_path):
    csv = tmp_path / "data.csv"
    csv.write_bytes("name,n\nÅsa,1\n".encode("utf-8"))
    blob = tmp_path / "shot.png"
    blob.write_bytes(BINARY)
    task = submit(home, "Summarise the attached files", "--attach", str(csv), "--attach", str(blob))
    queued = world.ld.get_message(world.task_queue, task)
    assert [a["filename"] for a in queued["attachments"]] == ["data.csv", "shot.png"]
    assert queued["content"].startswith(f"**[Task: {task}]** Summarise the attached files")

    orchestrate(home)
    run = run_of(home, task)
    assert run["inputs"] == {"data.csv": sha(csv.read_bytes()), "shot.png": sha(BINARY)}
    assert "inputs/data.csv (" in run["agents_md"] and f"inputs/shot.png ({len(BINARY):,} bytes)" in run["agents_md"]
    post = the_result(world, task)["content"]
    assert post.startswith("✅ **DONE**") and "inputs/" not in post   # the task's files are not listed as the agent's
    assert world.ld.request_count("GET", ATTACHMENT) == 2


def test_an_oversized_file_refuses_the_task_with_the_reason_and_nothing_is_fetched(home, world):
    home.write_config(ALLOWED_USER_IDS=world.alice.id, INPUT_MAX_MB="0.01")   # 10,485 bytes
    task = world.post(world.alice, "look at this log", attachments=[("small.txt", b"ok"),
                                                                     ("big.log", b"x" * 20_000)])["id"]
    world.ld.reset_log()
    orchestrate(home)
    post = the_result(world, task)["content"]
    assert "the attached big.log is 0.02 MiB (20,000 bytes); a file may be at most 0.01 MiB (INPUT\\_MAX\\_MB)" in post  # Markdown-escaped
    assert REFUSED in world.ld.reactions(world.task_queue, task)
    assert home.runs() == [] and world.ld.request_count("GET", ATTACHMENT) == 0


def test_too_many_files_refuse_the_task(home, world):
    home.write_config(ALLOWED_USER_IDS=world.alice.id, INPUT_MAX_FILES="2")
    task = world.post(world.alice, "three files", attachments=[(f"f{i}.txt", b"x") for i in range(3)])["id"]
    orchestrate(home)
    assert "3 files are attached; a task may have at most 2 (INPUT\\_MAX\\_FILES)" in the_result(world, task)["content"]
    assert home.runs() == []


def test_a_refused_task_s_files_are_never_fetched(home, world):
    """mallory may not run tasks: her files are not downloaded at all."""
    task = world.post(world.mallory, "run this", attachments=[("payload.bin", BINARY)])["id"]
    world.ld.reset_log()
    orchestrate(home)
    assert REFUSED in world.ld.reactions(world.task_queue, task)
    assert world.ld.request_count("GET", ATTACHMENT) == 0 and home.runs() == []


def test_a_file_that_cannot_be_fetched_ends_the_task_before_its_agent_with_the_reason(home, world):
    """All or nothing: the CDN refuses the second file (its fresh link too), so the agent never starts on the
    first alone."""
    home.write_config(ALLOWED_USER_IDS=world.alice.id)
    task = world.post(world.alice, "two files", attachments=[("a.txt", b"first"), ("b.txt", b"second")])["id"]
    world.ld.fail("GET", ATTACHMENT, statuses=(404,), count=1000, where={"filename": "b.txt"})
    orchestrate(home)
    post = the_result(world, task)["content"]
    assert "refused before its agent started: its b.txt could not be downloaded: Discord answered HTTP 404" in post
    assert home.runs() == []
    assert results_for(world, task) and home.workers() == []


def test_names_are_made_safe_and_collisions_numbered():
    assert safe_names(["../../etc/passwd", "C:\\x\\report.csv", ".bashrc", "...", "a\x00b\n.txt",
                       "Data.csv", "data.csv", "data.csv", ""]) == \
        ["passwd", "report.csv", "bashrc", "file", "ab.txt", "Data.csv", "data-2.csv", "data-3.csv", "file-2"]
    long = safe_names(["é" * 300 + ".tar.gz"])[0]
    assert len(long.encode()) <= 200 and long.endswith(".gz")


def test_submit_attach_refuses_bad_files_in_one_line_before_posting(home, world, tmp_path):
    named = tmp_path / "TASK.txt"
    named.write_text("x")
    res = home.cli("submit", "a task", "--attach", str(named))
    assert res.returncode != 0 and res.stderr.count("\n") == 1 and "a file named TASK.txt" in res.stderr
    many = []
    for i in range(11):
        many += ["--attach", str(named.with_name(f"f{i}.txt"))]
        named.with_name(f"f{i}.txt").write_text("x")
    res = home.cli("submit", "a task", *many)
    assert res.returncode != 0 and "11 files given with --attach; Discord takes at most 10" in res.stderr
    res = home.cli("submit", "a task", "--attach", str(tmp_path / "missing.csv"))
    assert res.returncode == 2 and "does not exist" in res.stderr and "Traceback" not in res.stderr
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (10 * 1024 * 1024 + 1))                      # over Discord's upload limit
    res = home.cli("submit", "a task", "--attach", str(big))
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "Discord refused the files as too large (HTTP 413, code 40005" in res.stderr and "big.bin, is 10.0 MiB" \
        in res.stderr
    assert world.ld.messages(world.task_queue) == []
