"""The seed's whole flow, end to end: submit and orchestrate as a user runs them.

Real CLI subprocesses, real HTTP to the local Discord, real agent processes
(the stand-in openclaw). Each test asserts what a user sees: messages in the
channels, reactions, files under the home, exit codes, stderr.
"""

from __future__ import annotations

import json
import re
import sqlite3

import pytest

from discord_orch.tasks import MAX_TASK_BYTES

CHECK = "✅"


def task_id_from(stdout: str) -> str:
    out = stdout.strip()
    assert re.fullmatch(r"\d{17,20}", out), out
    return out


def result_for(world, task_id):
    found = [m for m in world.results_messages()
             if task_id in m["content"] or (m.get("message_reference") or {}).get("message_id") == task_id]
    return found


def test_submitted_and_human_tasks_each_get_one_result(home, world):
    home.write_config(ALLOWED_USER_IDS=world.alice.id)
    sub = home.cli("submit", "Say hello to the team", "cheap", "low")
    assert sub.returncode == 0, sub.stderr
    submitted = task_id_from(sub.stdout)
    queued = world.ld.get_message(world.task_queue, submitted)["content"]
    assert queued == f"**[Task: {submitted}]** Say hello to the team [model:cheap] [thinking:low]"
    human = world.post(world.alice, "List three prime numbers")["id"]

    run = home.cli("orchestrate")
    assert run.returncode == 0, run.stderr

    for task_id in (submitted, human):
        assert world.ld.reactions(world.task_queue, task_id)[CHECK] == [world.bot.id]
        posts = result_for(world, task_id)
        assert len(posts) == 1, [p["content"] for p in world.results_messages()]
    assert "Say hello to the team" in result_for(world, submitted)[0]["content"]
    assert "List three prime numbers" in result_for(world, human)[0]["content"]
    assert sorted(home.ledger()) == sorted([submitted, human])
    notices = world.notices()
    assert notices.count("🤖") == 2 and submitted in notices and human in notices
    assert home.workers() == []
    runs = home.runs()
    assert sorted(r["task_id"] for r in runs) == sorted([submitted, human])
    cheap = [r for r in runs if r["task_id"] == submitted][0]
    assert "openrouter/stepfun/step-3.5-flash:free" in cheap["argv"]
    assert "claimed task=" in run.stderr and "pass done" in run.stderr


def test_second_pass_does_nothing_with_one_request(home, world):
    home.cli("submit", "first task")
    assert home.cli("orchestrate").returncode == 0
    world.ld.reset_log()
    again = home.cli("orchestrate")
    assert again.returncode == 0, again.stderr
    assert [r.route for r in world.ld.requests] == ["GET /channels/{channel_id}/messages"]
    assert len(world.results_messages()) == 1
    assert "nothing to do" in again.stderr


def test_task_text_reaches_the_agent_intact(home, world):
    text = 'He said "don\'t" \\ back\\slash\nsecond line $HOME `uname` ```fence``` 🎉 [not a tag]'
    home.write_config(KEEP_SUCCESS_HOURS="1")
    sub = home.cli("submit", "--file", "-", input=text)
    assert sub.returncode == 0, sub.stderr
    task_id = task_id_from(sub.stdout)
    assert home.cli("orchestrate").returncode == 0
    [kept] = home.archive()
    task_file = home.path / "archive" / kept / "tasks" / task_id / "TASK.txt"
    assert task_file.read_text(encoding="utf-8") == f"TASK: {text}"


def test_long_result_is_fully_retrievable(home, world):
    task_id = task_id_from(home.cli("submit", "BIGRESULT=6000 please").stdout)
    assert home.cli("orchestrate").returncode == 0
    [post] = result_for(world, task_id)
    assert len(post["content"]) <= 2000
    [att] = post["attachments"]
    assert att["filename"] == "RESULT.txt"
    full = world.ld.attachment_bytes(world.results, post["id"]).decode()
    assert len(full) >= 6000


def test_a_result_too_big_for_one_attachment_keeps_its_workspace_with_the_whole_file(home, world):
    """9,000,000 bytes of RESULT.txt: the post attaches the first 8 MiB (under Discord's 10 MiB)
    and says where the whole file is; removing the workspace would lose the rest."""
    task_id = task_id_from(home.cli("submit", "BIGRESULT=9000000 a very long report").stdout)
    run = home.cli("orchestrate")
    assert run.returncode == 0, run.stderr
    [post] = result_for(world, task_id)
    assert "✅ **DONE**" in post["content"]
    assert "📦 **RESULT.txt** attached: its first 8,388,608 of 9,000,000 bytes." in post["content"]
    [kept] = home.archive()
    assert f"🗂 **Workspace kept:** `{home.path / 'archive' / kept}`" in post["content"]
    assert (home.path / "archive" / kept / "tasks" / task_id / "RESULT.txt").stat().st_size == 9_000_000
    assert len(world.ld.attachment_bytes(world.results, post["id"])) == 8 * 1024 * 1024
    assert home.workers() == []


def test_a_cleaned_record_keeps_the_outcome_but_not_its_texts(home, world):
    """state.db must not grow by a result's size with every task: once posted and cleaned up,
    the record keeps status, exit code and usage, not the 60,000 characters of result text."""
    task_id = task_id_from(home.cli("submit", "BIGRESULT=60000 a long one").stdout)
    assert home.cli("orchestrate").returncode == 0
    conn = sqlite3.connect(str(home.path / ".runtime" / "state.db"))
    try:
        status, outcome = conn.execute("SELECT status, outcome FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
    finally:
        conn.close()
    data = json.loads(outcome)
    assert status == "cleaned" and data["status"] == "ok" and data["exit_code"] == 0
    assert data["usage"]["input_tokens"] == 200
    assert "result_text" not in data and "log_tail" not in data and len(outcome) < 2000
    assert len(world.ld.attachment_bytes(world.results, result_for(world, task_id)[0]["id"])) >= 60000


def test_a_long_history_is_read_in_chunks_and_an_early_task_is_claimed_before_the_rest(home, world):
    """2,500 messages in #task-queue, all but two already handled (a channel the old scripts used):
    the pass reads 1,000 at a time, so the task among the first thousand is claimed (and its agent
    started) before the 11th page is requested, and the one near the end runs too."""
    ids = []
    for i in range(2500):
        if i in (10, 2490):
            ids.append(world.post(world.bot, f"task number {i}")["id"])
        else:
            world.ld.react(world.task_queue, world.post(world.alice, f"an old task {i}")["id"], world.bot.id, CHECK)
    world.ld.reset_log()
    run = home.cli("orchestrate")
    assert run.returncode == 0, run.stderr
    assert [len(result_for(world, t)) for t in ids] == [1, 1]
    pages = [r for r in world.ld.requests
             if r.method == "GET" and r.route == "GET /channels/{channel_id}/messages" and r.channel_id == world.task_queue]
    assert len(pages) >= 26
    conn = sqlite3.connect(str(home.path / ".runtime" / "state.db"))
    try:
        [(claimed_at,)] = conn.execute("SELECT claimed_at FROM tasks WHERE task_id = ?", (ids[0],)).fetchall()
    finally:
        conn.close()
    assert pages[9].time < claimed_at < pages[10].time


def test_long_task_goes_as_attachment_and_runs(home, world):
    text = "Analyse this:\n" + "x" * 5000 + "\nEND"
    home.write_config(KEEP_SUCCESS_HOURS="1")
    sub = home.cli("submit", text, "coder")
    assert sub.returncode == 0, sub.stderr
    task_id = task_id_from(sub.stdout)
    msg = world.ld.get_message(world.task_queue, task_id)
    assert [a["filename"] for a in msg["attachments"]] == ["TASK.txt"]
    assert len(msg["content"]) < 2000
    assert home.cli("orchestrate").returncode == 0
    [kept] = home.archive()
    assert (home.path / "archive" / kept / "tasks" / task_id / "TASK.txt").read_text() == f"TASK: {text}"
    assert len(result_for(world, task_id)) == 1


def test_unknown_alias_in_a_task_is_refused_visibly(home, world):
    home.write_config(ALLOWED_USER_IDS=world.alice.id)
    task = world.post(world.alice, "do it [model:gpt-99] [thinking:low]")["id"]
    assert home.cli("orchestrate").returncode == 0
    [post] = result_for(world, task)
    assert "gpt-99" in post["content"] and "cheap" in post["content"]
    assert home.runs() == []
    assert CHECK not in world.ld.reactions(world.task_queue, task)


def test_submit_rejects_bad_alias_and_level_before_posting(home, world):
    bad_model = home.cli("submit", "task", "gpt-99")
    assert bad_model.returncode == 2
    assert bad_model.stderr.count("\n") == 1 and "gpt-99" in bad_model.stderr and "cheap" in bad_model.stderr
    bad_level = home.cli("submit", "task", "cheap", "extreme")
    assert bad_level.returncode == 2 and "xhigh" in bad_level.stderr
    empty = home.cli("submit", "   ")
    assert empty.returncode == 2 and "empty" in empty.stderr
    assert world.ld.messages(world.task_queue) == []
    assert "Traceback" not in bad_model.stderr + bad_level.stderr + empty.stderr


def test_failed_task_reports_reason_and_keeps_workspace(home, world):
    task_id = task_id_from(home.cli("submit", "FAIL on purpose").stdout)
    assert home.cli("orchestrate").returncode == 0
    [post] = result_for(world, task_id)
    assert "LLM request failed" in post["content"]
    assert home.workers() == []
    assert len(home.archive()) == 1
    log = list((home.path / "archive").glob("*/tasks/*/agent-output.log"))
    assert log


def test_token_never_reaches_the_agent(home, world):
    home.cli("submit", "check my environment")
    assert home.cli("orchestrate").returncode == 0
    [run] = home.runs()
    token = world.bot.token
    assert token not in " ".join(run["argv"])
    assert all(token not in str(v) for v in run["env"].values())


@pytest.mark.slow
def test_150_queued_tasks_are_all_done(home, world):
    home.write_config(MAX_AGENTS="6", ALLOWED_USER_IDS=world.alice.id)
    ids = [world.post(world.alice, f"task number {i}")["id"] for i in range(150)]
    run = home.cli("orchestrate")
    assert run.returncode == 0, run.stderr[-2000:]
    replied = {(m.get("message_reference") or {}).get("message_id") for m in world.results_messages()}
    assert len(world.results_messages()) == 150
    assert replied == set(ids) or all(result_for(world, i) for i in ids)
    assert len(home.runs()) == 150
    assert home.workers() == []


def test_claim_recorded_without_its_ledger_line_is_completed_and_run_once(home, world):
    """A pass killed between committing a claim and appending the ledger line."""
    from discord_orch.state import CLAIMED, Store

    task_id = task_id_from(home.cli("submit", "claimed just before a crash").stdout)
    store = Store(home.path / ".runtime")
    assert store.insert(task_id=task_id, channel_id=world.task_queue, author_id=world.bot.id, status=CLAIMED,
                        description="claimed just before a crash", model_alias="primary",
                        model="openrouter/moonshotai/kimi-k2.5", thinking="medium")
    store.close()
    assert home.ledger() == []
    run = home.cli("orchestrate")
    assert run.returncode == 0, run.stderr
    assert home.ledger() == [task_id]
    assert [r["task_id"] for r in home.runs()] == [task_id]
    assert len(result_for(world, task_id)) == 1


def test_a_task_attachment_over_the_limit_is_refused_with_the_number(home, world):
    home.write_config(ALLOWED_USER_IDS=world.alice.id)
    task = world.post(world.alice, "see the attachment", attachments=[("TASK.txt", b"z" * 1_200_000)])["id"]
    assert home.cli("orchestrate").returncode == 0
    [post] = result_for(world, task)
    assert "1,200,000 bytes" in post["content"] and f"{MAX_TASK_BYTES:,} bytes" in post["content"]
    assert "could not be read" not in post["content"]
    assert home.runs() == []
