"""A task is a conversation (issue 14): follow-ups in its thread, its live status, the stall notice.

What a user sees: a follow-up typed into a task's thread is answered there, as a reply, by the
same agent (the same session id and workspace); `stop` / `retry` typed there are commands, not
follow-ups; a follow-up after the window is answered "closed"; one status message per task,
edited from queued to running to done; a stall notice when the agent says nothing; and what an
idle pass costs with and without open conversations.
"""

from __future__ import annotations

import shutil
import signal
import sqlite3
import time
from contextlib import closing
from typing import List

from conftest import make_home
from helpers_agent import gated, pass_adopting, wait_for
from discord_orch.models import snowflake_time
from discord_orch.tasks import POST_MARKER

THREAD_READ = "GET /guilds/{guild_id}/threads/active"
QUEUE_READ = "GET /channels/{channel_id}/messages"


def conversation_home(tmp_path, world, **config):
    base = dict(ALLOWED_USER_IDS=world.alice.id, FOLLOWUP_HOURS="1", STATUS_EVERY="1", STALL_AFTER="30")
    return make_home(tmp_path, world, **{**base, **config})


def run_pass(home):
    result = home.cli("orchestrate")
    assert result.returncode == 0, result.stderr
    return result


def thread(world, task_id) -> List[dict]:
    return world.ld.messages(task_id)


def replies_to(world, task_id, message_id) -> List[dict]:
    """The messages in the task's thread that reply to ``message_id``."""
    return [m for m in thread(world, task_id) if (m.get("message_reference") or {}).get("message_id") == message_id]


def status_of(world, task_id) -> dict:
    """The task's status message: the thread's one message from the bot, its claim line (issue 24: the line
    posted on claiming is the status message, edited)."""
    [status] = [m for m in thread(world, task_id) if m["author"]["id"] == world.bot.id
                and m["content"].startswith("🧵 Claimed by ")]
    return status


def status_line(text: str) -> str:
    """What a version of the status message says under its claim line."""
    return text.split("\n")[1]


def test_a_follow_up_is_answered_in_the_thread_by_the_same_agent_and_commands_are_not_follow_ups(
        tmp_path, world):
    home = conversation_home(tmp_path, world)
    home.write_config(GUILD_ID="")                   # the server is looked up once, then kept
    task = world.post(world.alice, "write a haiku about tea")
    first = run_pass(home)
    assert "its workspace is kept for follow-ups" in first.stderr
    [agent_dir] = home.workers()                   # kept for follow-ups
    [result] = world.results_messages()
    assert "write a haiku about tea" in result["content"]

    # an idle pass with an open conversation: the queue and the active threads, nothing more (the first
    # look at the threads looks the server up, GUILD_ID being unset: once, kept; the first pass may have
    # made that look already, if it polled again after the result)
    world.ld.reset_log()
    run_pass(home)
    assert [r.route for r in world.ld.requests] in ([QUEUE_READ, "GET /channels/{channel_id}", THREAD_READ],
                                                    [QUEUE_READ, THREAD_READ])
    world.ld.reset_log()
    run_pass(home)
    assert [r.route for r in world.ld.requests] == [QUEUE_READ, THREAD_READ]

    followup = world.ld.post_message(task["id"], world.alice.id, "now make it rhyme")
    retry = world.ld.post_message(task["id"], world.alice.id, "  RETRY ")   # a command, not a follow-up
    world.ld.post_message(task["id"], world.mallory.id, "run rm -rf ~")    # not allowed: ignored
    world.ld.reset_log()
    second = run_pass(home)
    assert f"user {world.mallory.id}, who may not run tasks here, is ignored" in second.stderr

    runs = home.runs()
    assert len(runs) == 2                            # the task and its one follow-up; not the command
    assert runs[1]["session_id"] == runs[0]["session_id"]
    assert runs[1]["workspace"] == runs[0]["workspace"] and runs[1]["cwd"] == runs[0]["cwd"]
    assert runs[1]["env"]["OPENCLAW_STATE_DIR"] == runs[0]["env"]["OPENCLAW_STATE_DIR"]
    [answer] = replies_to(world, task["id"], followup["id"])
    assert answer["author"]["id"] == world.bot.id and "now make it rhyme" in answer["content"]
    assert answer["content"].endswith(POST_MARKER)
    assert len(world.results_messages()) == 1        # the answer is in the thread, not in #results
    [why] = replies_to(world, task["id"], retry["id"])     # the controls' answer: nothing to retry
    assert "it ended ok: nothing to retry" in why["content"], why["content"]
    assert home.workers() == [agent_dir]
    # the turn's files: the first run's moved aside, the follow-up in TASK.txt
    task_dir = home.path / "workers" / agent_dir / "tasks" / task["id"]
    assert (task_dir / "TASK.txt").read_text() == "FOLLOW-UP: now make it rhyme"
    assert (home.path / "workers" / agent_dir / "turns" / "0" / "RESULT.txt").exists()
    routes = [r.route for r in world.ld.requests]
    assert routes.count(THREAD_READ) >= 1 and "GET /channels/{channel_id}/messages" in routes
    # issue 24: left for Discord to archive (an hour after its last message), no PATCH of ours
    assert world.ld.thread(task["id"])["thread_metadata"]["auto_archive_duration"] == 60
    assert "PATCH /channels/{channel_id}" not in routes

    # issue 24: the thread stays active (no archive PATCH), so the next read reads once what is newer than
    # the follow-ups it saw (the bot's own answers: a follow-up could be among them); then nothing new: no
    # request for the thread's messages
    world.ld.reset_log()
    run_pass(home)
    assert [r.route for r in world.ld.requests] == [QUEUE_READ, THREAD_READ, "GET /channels/{channel_id}/messages"]
    world.ld.reset_log()
    run_pass(home)
    assert [r.route for r in world.ld.requests] == [QUEUE_READ, THREAD_READ]


def test_a_follow_up_after_the_window_is_answered_closed_and_the_workspace_goes(tmp_path, world):
    window_h = 0.0003                                # 1.08 s
    home = conversation_home(tmp_path, world, FOLLOWUP_HOURS=str(window_h))
    task = world.post(world.alice, "summarise the report")
    run_pass(home)
    assert len(home.workers()) == 1
    time.sleep(window_h * 3600 + 0.2)                # the window is measured in time: nothing to await
    late = world.ld.post_message(task["id"], world.alice.id, "one more thing")
    second = run_pass(home)
    [answer] = replies_to(world, task["id"], late["id"])
    assert "This task is closed" in answer["content"] and "Start a new task" in answer["content"]
    assert len(home.runs()) == 1 and home.workers() == []
    assert "closed" in second.stderr
    assert world.ld.thread(task["id"])["thread_metadata"]["archived"] is False   # issue 24: Discord archives it

    # an idle pass once nothing is open or watched: one request again
    time.sleep(window_h * 3600 + 0.2)
    world.ld.reset_log()
    run_pass(home)
    assert [r.route for r in world.ld.requests] == [QUEUE_READ]


def test_the_status_message_goes_from_queued_to_running_to_done_and_a_silent_agent_gets_a_stall_notice(
        tmp_path, world):
    home = conversation_home(tmp_path, world, MAX_AGENTS="1", STALL_AFTER="1")
    task = world.post(world.alice, "draft the plan SLEEP=2")   # long enough for "running" to be posted before
    run_pass(home)                                             # the end (each post says what is true then)
    status = status_of(world, task["id"])
    first, *edits = world.ld.versions(status["id"])
    assert first.startswith("🧵 Claimed by ") and "starting now" in first
    assert status_line(edits[0]).startswith("▶️ Task: running on ")
    assert status_line(status["content"]).startswith("✅ **DONE** · task `" + task["id"])   # the result, under it
    # a silent task takes the only agent; the follow-up waits behind it
    other = world.post(world.alice, "think quietly SLEEP=3")
    world.ld.post_message(task["id"], world.alice.id, "add a timeline")
    run_pass(home)
    versions = [status_line(v) for v in world.ld.versions(status["id"])[1:]]
    queued = versions.index("⏳ Follow-up 1: queued (position 1 of 1)")
    running = next(i for i, v in enumerate(versions) if v.startswith("▶️ Follow-up 1: running on "))
    done = next(i for i, v in enumerate(versions) if v.startswith("✅ **DONE** · follow-up 1 ran "))
    assert queued < running < done == len(versions) - 1
    assert f"task `{task['id']}`" in status_of(world, task["id"])["content"]   # the task's result stays under it
    stalls = [m for m in thread(world, other["id"]) if "has written nothing for" in m["content"]]
    assert len(stalls) == 1
    other_versions = world.ld.versions(status_of(world, other["id"])["id"])
    assert any("running on" in v and "-# last: " in v for v in other_versions)   # the agent's last log line
    assert any("· ⚠️ silent" in v for v in other_versions)
    assert status_line(other_versions[-1]).startswith("✅ **DONE** · task `")


def test_with_claim_reaction_the_status_is_a_reply_to_the_task_message(tmp_path, world):
    home = conversation_home(tmp_path, world, CLAIM="reaction")
    task = world.post(world.alice, "count the lines")
    run_pass(home)
    replies = [m for m in world.ld.messages(world.task_queue)
               if (m.get("message_reference") or {}).get("message_id") == task["id"]]
    [status] = replies
    assert status["author"]["id"] == world.bot.id and status["content"].startswith("✅ **DONE** · the task ran ")
    assert home.workers() == []                      # no thread, no follow-ups: the workspace goes at once


def test_follow_ups_sent_while_the_task_runs_wait_for_its_result_and_run_one_after_the_other(tmp_path, world):
    home = conversation_home(tmp_path, world)
    task = world.post(world.alice, "plan the move SLEEP=2")
    proc = home.popen("orchestrate")
    assert wait_for(lambda: len(home.runs()) == 1, 30)
    first = world.ld.post_message(task["id"], world.alice.id, "first follow-up")
    second = world.ld.post_message(task["id"], world.alice.id, "second follow-up")
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr

    answers = {(m.get("message_reference") or {}).get("message_id"): m for m in thread(world, task["id"])}
    assert "first follow-up" in answers[first["id"]]["content"]
    assert "second follow-up" in answers[second["id"]]["content"]
    [result] = world.results_messages()
    runs = home.runs()
    assert len(runs) == 3 and len({r["session_id"] for r in runs}) == 1
    # each turn started after the answer before it was out: never two at once, in the order sent
    assert snowflake_time(result["id"]) <= runs[1]["time"] and snowflake_time(answers[first["id"]]["id"]) <= runs[2]["time"]


def test_a_failed_task_takes_no_follow_up_and_says_so(tmp_path, world):
    home = conversation_home(tmp_path, world)
    task = world.post(world.alice, "break FAIL")
    run_pass(home)
    assert home.workers() == [] and len(home.archive()) == 1   # archived at once, as before
    late = world.ld.post_message(task["id"], world.alice.id, "try harder")
    run_pass(home)
    [answer] = replies_to(world, task["id"], late["id"])
    assert "This task is closed" in answer["content"]
    assert len(home.runs()) == 1


def a_follow_up_running(home, world, task_text: str, followup_text: str):
    """A task done, then a follow-up whose turn's agent runs in a pass started here: (task, follow-up, pass)."""
    task = world.post(world.alice, task_text)
    run_pass(home)
    followup = world.ld.post_message(task["id"], world.alice.id, followup_text)
    proc = home.popen("orchestrate")
    assert wait_for(lambda: len(home.runs()) == 2, 30)   # the turn's agent runs
    return task, followup, proc


def test_a_turn_whose_pass_was_killed_is_recovered_and_answered_once(tmp_path, world):
    home = conversation_home(tmp_path, world)
    gated(home, tmp_path)   # the turn's agent runs until the next pass has adopted it
    task, followup, proc = a_follow_up_running(home, world, "list the risks", "and the mitigations GATE=1")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    after = pass_adopting(home, followup["id"], tmp_path)   # adopts the turn's agent, reports its answer
    assert "adopted task=" + followup["id"] in after
    answers = replies_to(world, task["id"], followup["id"])
    assert len(answers) == 1 and "and the mitigations" in answers[0]["content"]
    assert len(home.runs()) == 2 and len(home.workers()) == 1
    run_pass(home)
    assert len(replies_to(world, task["id"], followup["id"])) == 1


def test_a_stop_typed_while_a_follow_up_runs_is_for_that_turn(tmp_path, world):
    home = conversation_home(tmp_path, world)
    task, followup, proc = a_follow_up_running(home, world, "outline the essay", "expand it SLEEP=2")
    world.ld.post_message(task["id"], world.alice.id, "Stop")
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert len(home.runs()) == 2                            # a command, never a turn
    [answer] = replies_to(world, task["id"], followup["id"])   # the stop was for the turn that ran
    assert "STOPPED" in answer["content"] and world.alice.username in answer["content"], answer["content"]
    assert f"task={followup['id']}" in stderr and "stop asked by" in stderr, stderr


def test_a_follow_up_waiting_behind_a_task_that_is_stopped_is_dropped_with_a_word(tmp_path, world):
    """Issue 14: 🛑 on the task message while a follow-up waits behind it: the task stops, the follow-up
    never runs and is answered in the thread (the conversation is closed: a stopped task's workspace is
    archived, like a failed one's)."""
    home = conversation_home(tmp_path, world)
    task = world.post(world.alice, "plan the trip SLEEP=30")
    proc = home.popen("orchestrate", "--interval", "0.3")
    try:
        assert wait_for(lambda: len(home.runs()) == 1, 30)
        followup = world.ld.post_message(task["id"], world.alice.id, "and book the hotel")
        assert wait_for(lambda: turns_recorded(home) == [followup["id"]], 30)   # it waits behind the task
        world.ld.react(world.task_queue, task["id"], world.alice.id, "🛑")
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    [result] = world.results_messages()
    assert "STOPPED" in result["content"] and world.alice.username in result["content"], result["content"]
    assert len(home.runs()) == 1                                   # the follow-up never ran
    [word] = replies_to(world, task["id"], followup["id"])
    assert "This task is closed" in word["content"], word["content"]


def turns_recorded(home) -> List[str]:
    """The follow-ups this home has recorded as turns (state.db's ``turns``)."""
    db = home.path / ".runtime" / "state.db"
    if not db.exists():
        return []
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
        try:
            return [row[0] for row in conn.execute("SELECT turn_id FROM turns ORDER BY turn_id")]
        except sqlite3.OperationalError:   # the table is not made yet
            return []


# -- files in a follow-up (issue 15's files, in the conversation of issue 14) ------------------------------

ATTACHMENT = "GET /attachments/{channel_id}/{attachment_id}/{filename}"


def test_a_follow_up_s_files_reach_the_agent_in_their_own_folder_and_its_message_names_them(tmp_path, world):
    """Someone answers the agent with a screenshot from their phone: the files of a follow-up are fetched,
    byte for byte, into inputs/turn-<n>/ (the task's own inputs/ stays as it was), and the turn's TASK.txt
    names them; a follow-up that is only a file is a turn too."""
    import hashlib

    home = conversation_home(tmp_path, world)
    shot = bytes(range(256)) * 16 + b"\x00\r\n"
    task = world.post(world.alice, "look at my logs", attachments=[("app.log", b"first log")])
    run_pass(home)
    first = world.ld.post_message(task["id"], world.alice.id, "and this one?",
                                  attachments=[("app.log", b"second log"), ("shot.png", shot)])
    run_pass(home)
    only_files = world.ld.post_message(task["id"], world.alice.id, "", attachments=[("notes.txt", b"just a file")])
    run_pass(home)

    runs = home.runs()
    assert len(runs) == 3
    sha = lambda data: hashlib.sha256(data).hexdigest()   # noqa: E731
    assert runs[0]["inputs"] == {"app.log": sha(b"first log")}
    assert runs[1]["inputs"] == {"app.log": sha(b"first log"), "turn-1/app.log": sha(b"second log"),
                                 "turn-1/shot.png": sha(shot)}
    assert runs[2]["inputs"]["turn-2/notes.txt"] == sha(b"just a file")
    [agent_dir] = home.workers()
    task_file = home.path / "workers" / agent_dir / "tasks" / task["id"] / "TASK.txt"
    text = task_file.read_text()
    assert text.startswith("FOLLOW-UP: ") and "inputs/turn-2/notes.txt (11 bytes)" in text, text
    turn1 = (home.path / "workers" / agent_dir / "turns" / "1" / "TASK.txt").read_text()
    assert turn1.startswith("FOLLOW-UP: and this one?") and "inputs/turn-1/shot.png (4,099 bytes)" in turn1, turn1
    assert len(replies_to(world, task["id"], first["id"])) == 1
    assert len(replies_to(world, task["id"], only_files["id"])) == 1
    assert world.ld.request_count("GET", ATTACHMENT) == 4


def test_a_follow_up_over_the_file_limits_is_answered_with_the_reason_and_nothing_is_fetched(tmp_path, world):
    home = conversation_home(tmp_path, world, INPUT_MAX_FILES="2")
    task = world.post(world.alice, "start a report")
    run_pass(home)
    many = world.ld.post_message(task["id"], world.alice.id, "use these",
                                 attachments=[(f"f{i}.txt", b"x") for i in range(3)])
    world.ld.reset_log()
    run_pass(home)
    [answer] = replies_to(world, task["id"], many["id"])
    assert "⛔" in answer["content"] and "3 files are attached; a message may have at most 2" in answer["content"]
    assert "INPUT\\_MAX\\_FILES" in answer["content"] and answer["content"].endswith(POST_MARKER)
    assert len(home.runs()) == 1 and world.ld.request_count("GET", ATTACHMENT) == 0
    run_pass(home)   # read once: answered once
    assert len(replies_to(world, task["id"], many["id"])) == 1


def test_links_an_agent_left_in_inputs_do_not_carry_a_follow_up_s_files_out_of_its_task_dir(tmp_path, world):
    """The agent had the workspace between turns: a link at inputs/turn-1 is replaced by a real folder; a link
    at inputs/ itself ends the turn with the reason. Nothing is written where a link points."""
    home = conversation_home(tmp_path, world)
    outside = tmp_path / "outside"
    outside.mkdir()
    task = world.post(world.alice, "first")
    run_pass(home)
    [agent_dir] = home.workers()
    task_dir = home.path / "workers" / agent_dir / "tasks" / task["id"]
    (task_dir / "inputs").mkdir()
    (task_dir / "inputs" / "turn-1").symlink_to(outside)   # as a hostile agent would leave it
    world.ld.post_message(task["id"], world.alice.id, "read it", attachments=[("a.txt", b"AAA")])
    run_pass(home)
    assert not (task_dir / "inputs" / "turn-1").is_symlink() and list(outside.iterdir()) == []
    assert (task_dir / "inputs" / "turn-1" / "a.txt").read_bytes() == b"AAA"

    shutil.rmtree(task_dir / "inputs")
    (task_dir / "inputs").symlink_to(outside)
    second = world.ld.post_message(task["id"], world.alice.id, "and this", attachments=[("b.txt", b"BBB")])
    run_pass(home)
    assert list(outside.iterdir()) == [] and len(home.runs()) == 2   # the second follow-up's agent never ran
    [answer] = replies_to(world, task["id"], second["id"])
    assert "its files could not be saved" in answer["content"], answer["content"]


# ---------------------------------------------------------------------------- issue 24: no follow-up lost to an archive


def answered(world, task_id: str, message_id: str) -> bool:
    return any(m["author"]["id"] == world.bot.id for m in replies_to(world, task_id, message_id))


def test_a_follow_up_sent_the_instant_the_result_appears_is_answered(tmp_path, world):
    """Was lost: the bot archived the thread right after the result, hiding it from threads/active (where
    the reader looks). Now nothing archives it by hand: the pass that posted the result reads it."""
    home = conversation_home(tmp_path, world)
    task = world.post(world.alice, "a short one SLEEP=0.5")["id"]
    proc = home.popen("orchestrate")
    assert wait_for(lambda: any(task in m["content"] for m in world.results_messages()), 60)
    followup = world.ld.post_message(task, world.alice.id, "and one more thing")
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    if not answered(world, task, followup["id"]):   # posted after that pass's last read: the next pass's
        run_pass(home)
    assert answered(world, task, followup["id"])
    assert not [r for r in world.ld.requests if r.route == "PATCH /channels/{channel_id}"]   # no archive


def test_a_follow_up_in_a_thread_discord_archived_by_itself_is_answered(tmp_path, world):
    home = conversation_home(tmp_path, world)
    task = world.post(world.alice, "summarise the notes")["id"]
    run_pass(home)
    assert world.ld.thread(task)["thread_metadata"]["auto_archive_duration"] == 60
    world.ld.idle_thread(task, minutes=61)           # an hour and more with nothing posted: Discord archived it
    assert world.ld.thread(task)["thread_metadata"]["archived"] is True
    followup = world.ld.post_message(task, world.alice.id, "now in French")   # unarchives it
    assert world.ld.thread(task)["thread_metadata"]["archived"] is False
    from discord_orch.discord_api import DiscordClient

    with DiscordClient(world.bot.token, base_url=world.ld.base_url) as client:   # where the reader looks
        assert task in [t.id for t in client.list_active_threads(world.guild).threads]
    second = run_pass(home)
    assert answered(world, task, followup["id"]), second.stderr
    assert len(home.runs()) == 2


def make_room(home):
    """What a pass does when a thread start meets the server's cap (claim.py): archive finished threads."""
    from discord_orch.claim import Claims
    from discord_orch.config import load_settings
    from discord_orch.discord_api import DiscordClient
    from discord_orch.state import Store

    settings = load_settings(home.path, environ={})
    store = Store(settings.runtime_dir, host=settings.host_name)
    try:
        with DiscordClient(settings.token.reveal(), base_url=settings.api_base_url) as client:
            return Claims(settings, client, store, on_fatal=lambda exc: None, on_done=lambda: None)._make_room()
    finally:
        store.close()


def test_at_the_thread_cap_a_finished_thread_is_archived_unless_a_follow_up_came_meanwhile(tmp_path, world):
    """The PATCH that archives answers with the thread's last_message_id: newer than what the reader saw
    (a follow-up typed just before), the archive is taken back and the follow-up answered; else it stays."""
    home = conversation_home(tmp_path, world)
    quiet, busy = (world.post(world.alice, text)["id"] for text in ("the quiet one", "the busy one"))
    run_pass(home)
    followup = world.ld.post_message(busy, world.alice.id, "wait, one more")   # not read by any pass yet
    world.ld.reset_log()
    assert make_room(home) is True
    assert world.ld.thread(quiet)["thread_metadata"]["archived"] is True
    assert world.ld.thread(busy)["thread_metadata"]["archived"] is False      # taken back
    patches = [r for r in world.ld.requests if r.route == "PATCH /channels/{channel_id}"]
    assert len(patches) == 3   # two archives, one taken back
    run_pass(home)
    assert answered(world, busy, followup["id"])


def test_a_start_at_the_thread_cap_archives_the_oldest_finished_thread_and_claims(tmp_path, world):
    home = conversation_home(tmp_path, world)
    older, newer = (world.post(world.alice, text)["id"] for text in ("first of all", "second of all"))
    run_pass(home)
    world.ld.max_active_threads = 2
    task = world.post(world.alice, "one over the cap")["id"]
    world.ld.reset_log()
    res = run_pass(home)
    assert any(task in m["content"] for m in world.results_messages()), res.stderr
    archived = [r.path.rsplit("/", 1)[1] for r in world.ld.requests if r.route == "PATCH /channels/{channel_id}"]
    finished = sorted((older, newer), key=lambda t: records_finished_at(home, t))
    assert archived == finished   # the oldest finished first (up to ROOM_ARCHIVES at once)
    assert all(world.ld.thread(t)["thread_metadata"]["archived"] for t in (older, newer))
    assert "threads archived to make room" in res.stderr


def records_finished_at(home, task_id: str) -> float:
    with closing(sqlite3.connect(str(home.path / ".runtime" / "state.db"))) as conn:
        return conn.execute("SELECT finished_at FROM tasks WHERE task_id = ?", (task_id,)).fetchone()[0]


def test_the_reader_seeing_the_server_near_the_cap_archives_finished_threads(tmp_path, world, monkeypatch):
    from discord_orch import conversation
    from discord_orch.config import load_settings
    from discord_orch.discord_api import DiscordClient
    from discord_orch.orchestrator import Orchestrator
    from discord_orch.state import Store

    home = conversation_home(tmp_path, world)
    tasks = [world.post(world.alice, text)["id"] for text in ("one thing", "another thing")]
    run_pass(home)
    monkeypatch.setattr(conversation, "NEAR_CAP", 2)   # two active threads: "near" Discord's 1,000 here
    settings = load_settings(home.path, environ={})
    store = Store(settings.runtime_dir, host=settings.host_name)
    try:
        with DiscordClient(settings.token.reveal(), base_url=settings.api_base_url) as client:
            Orchestrator(settings, client, store).run_pass()
    finally:
        store.close()
    assert all(world.ld.thread(t)["thread_metadata"]["archived"] for t in tasks)
