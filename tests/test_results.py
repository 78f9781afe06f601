"""Issue 7, "results people want to read": what a user sees after a pass, and what cron logs.

Against the local Discord through the CLI (``home.cli``), with the stand-in
agent; a few pure checks of prices.py and workspace.py's archive retention at
the end. Nothing here asserts wall-clock times.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import List, Tuple
from urllib.parse import unquote

import pytest

from discord_orch import workspace as W
from discord_orch.prices import load_prices
from tests.test_flow import task_id_from

KIMI = "openrouter/moonshotai/kimi-k2.5"            # the default model ("primary")
CHEAP = "openrouter/stepfun/step-3.5-flash:free"


def submit(home, *args: str) -> str:
    res = home.cli("submit", *args)
    assert res.returncode == 0, res.stderr
    return task_id_from(res.stdout)


def orchestrate(home, *flags: str, **kw):
    res = home.cli(*flags, "orchestrate", **kw)
    assert res.returncode == 0, res.stderr
    return res


def results_for(world, task_id: str, channel: str = "") -> List[dict]:
    msgs = world.ld.messages(channel or world.results)
    return [m for m in msgs if (m.get("message_reference") or {}).get("message_id") == task_id
            or f"task `{task_id}`" in m["content"]]


def the_result(world, task_id: str, channel: str = "") -> dict:
    found = results_for(world, task_id, channel)
    assert len(found) == 1, [m["content"] for m in world.ld.messages(channel or world.results)]
    return found[0]


def run_of(home, task_id: str) -> dict:
    [run] = [r for r in home.runs() if r["task_id"] == task_id]
    return run


def reaction_calls(world, task_id: str) -> List[Tuple[str, str]]:
    """(method, emoji) of every reaction request on the task, in the order Discord got them."""
    out = []
    for r in world.ld.requests:
        if r.route and "reactions" in r.route and f"/messages/{task_id}/" in r.path and 200 <= r.status < 300:
            emoji = unquote(r.path.split("/reactions/", 1)[1].split("/", 1)[0])
            out.append((r.method, emoji))
    return out


def write_openclaw_config(path: Path, providers: dict) -> Path:
    path.write_text(json.dumps({"models": {"mode": "merge", "providers": providers}}, indent=2))
    return path


# ---------------------------------------------------------------- the result message
def test_same_channel_result_is_a_reply_with_every_header_field(home, world):
    home.write_config(RESULTS_CHANNEL=world.task_queue)
    sub = home.cli("submit", "Compute the answer COST=0.0123", "primary", "high")
    task_id = task_id_from(sub.stdout)
    orchestrate(home)
    post = the_result(world, task_id, world.task_queue)
    agent = run_of(home, task_id)["agent_id"]
    assert post["message_reference"]["message_id"] == task_id
    head, facts = post["content"].split("\n")[:2]
    assert head == f"✅ **DONE** · task `{task_id}` · agent `{agent}`"
    assert re.fullmatch(rf"model `{re.escape(KIMI)}` · thinking `high` · \d+(\.\d)?s · 200 in / 20 out tokens · "
                        r"cost \$0\.0123", facts), facts
    # the result posted into #task-queue is not a task: nothing ran twice, a second pass does nothing
    assert len(home.runs()) == 1
    orchestrate(home)
    assert len(home.runs()) == 1 and len(results_for(world, task_id, world.task_queue)) == 1


def test_same_channel_reply_in_process(home, world, monkeypatch):
    """The same, in-process with RESULTS_CHANNEL == TASK_QUEUE_CHANNEL whatever config.py allows."""
    from discord_orch.config import load_settings
    from discord_orch.discord_api import DiscordClient
    from discord_orch.orchestrator import Orchestrator
    from discord_orch.state import Store

    task_id = submit(home, "Compute the answer COST=0.0123", "primary", "high")
    settings = load_settings(home.path, environ={})._replace(results_channel=world.task_queue)
    monkeypatch.setenv("STANDIN_RUN_LOG", str(home.run_log))
    for _ in range(2):  # the second pass must find nothing: our reply is not a task
        store = Store(settings.runtime_dir)
        with DiscordClient(settings.token.reveal(), base_url=settings.api_base_url) as client:
            stats = Orchestrator(settings, client, store).run_pass()
        store.close()
        assert stats.fatal is None
    assert len(home.runs()) == 1
    post = the_result(world, task_id, world.task_queue)
    agent = run_of(home, task_id)["agent_id"]
    assert post["message_reference"]["message_id"] == task_id
    assert post["content"].startswith(f"✅ **DONE** · task `{task_id}` · agent `{agent}`\n"
                                      f"model `{KIMI}` · thinking `high` · ")
    assert " · 200 in / 20 out tokens · cost $0.0123\n" in post["content"]


def test_other_channel_gets_a_jump_link(home, world):
    task_id = submit(home, "Say hi", "cheap", "low")
    orchestrate(home)
    post = the_result(world, task_id)
    assert not post.get("message_reference")
    head = post["content"].split("\n")[0]
    assert head.endswith(f" · https://discord.com/channels/{world.guild}/{world.task_queue}/{task_id}")
    assert f"model `{CHEAP}` · thinking `low` · " in post["content"]


def test_cost_from_the_price_table_and_na_when_unknown(home, world, tmp_path):
    unpriced = submit(home, "no price known", "coder")
    orchestrate(home)
    assert "· 200 in / 20 out tokens · cost n/a" in the_result(world, unpriced)["content"]

    # USD per 1,000 tokens: 200/1000*0.5 + 20/1000*1.5 = 0.13; JSON5 as OpenClaw allows it
    cfg = tmp_path / "openclaw.json"
    cfg.write_text("""// my OpenClaw config
{
  models: {
    providers: {
      openrouter: {
        models: [
          {id: 'stepfun/step-3.5-flash:free', cost: {input: 0.5, output: 1.5,},},  // per 1k tokens
        ],
      },
    },
  },
}
""")
    home.write_config(OPENCLAW_CONFIG=str(cfg))
    priced = submit(home, "priced from the table", "cheap")
    reported = submit(home, "openclaw says COST=0.0042", "cheap")
    orchestrate(home)
    assert f"model `{CHEAP}` · " in the_result(world, priced)["content"]
    assert "· 200 in / 20 out tokens · cost $0.1300 (est.)" in the_result(world, priced)["content"]
    assert "· cost $0.0042\n" in the_result(world, reported)["content"]       # openclaw's own figure wins


def test_summary_shown_and_full_result_attached(home, world):
    home.write_config(SUMMARY_MAX_LENGTH="100")
    task_id = submit(home, "BIGRESULT=3000 " + "please write a long report on everything " * 4)
    orchestrate(home)
    post = the_result(world, task_id)
    content = post["content"]
    assert len(content) <= 2000
    block = content.split("📄 **Summary** (SUMMARY.txt)\n```\n", 1)[1].split("\n```", 1)[0]
    assert block.startswith("Summary: BIGRESULT=3000 please write") and len(block) <= 100 + 2
    assert block.endswith("…")
    assert "📦 Full text in the attached **RESULT.txt** (3,000 characters)." in content
    assert "📎" not in content   # RESULT.txt and SUMMARY.txt are not "files left": shown or attached already
    [att] = post["attachments"]
    assert att["filename"] == "RESULT.txt"
    data = world.ld.attachment_bytes(world.results, post["id"])
    assert len(data) == 3000 and data.startswith(b"B" * 79 + b"\n")


def test_code_blocks_in_agent_text_stay_readable(home, world):
    task_id = submit(home, "show ```python\nprint(1)\n``` and @everyone")
    orchestrate(home)
    content = the_result(world, task_id)["content"]
    pieces = content.split("```")
    assert len(pieces) == 3  # one block (the summary), balanced; the task's fence cannot open one
    outside = pieces[0] + pieces[2]
    assert "@everyone" not in outside and "@\u200beveryone" in outside  # never a ping outside blocks
    assert "print(1)" in pieces[1] and "``" not in pieces[1]


# ---------------------------------------------------------------- status reactions
@pytest.mark.parametrize("mode,expected", [
    ("full", [("PUT", "✅"), ("PUT", "⏳"), ("PUT", "🏁"), ("DELETE", "⏳")]),
    ("final", [("PUT", "✅"), ("PUT", "🏁")]),
    ("off", [("PUT", "✅")]),
])
def test_status_reactions(home, world, mode, expected):
    home.write_config(STATUS_REACTIONS=mode)
    ok = submit(home, "all good")
    bad = submit(home, "FAIL this one")
    orchestrate(home)
    assert reaction_calls(world, ok) == expected
    failed = [(m, "❌" if e == "🏁" else e) for m, e in expected]
    assert reaction_calls(world, bad) == failed
    final = {e for m, e in expected if m == "PUT"} - {e for m, e in expected if m == "DELETE"}
    assert set(world.ld.reactions(world.task_queue, ok)) == final
    assert set(world.ld.reactions(world.task_queue, bad)) == {"❌" if e == "🏁" else e for e in final}


# ---------------------------------------------------------------- failures one can debug
def test_failure_messages_say_why_and_where(home, world):
    home.write_config(TIMEOUT="1")
    fail = submit(home, "FAIL on purpose")
    crash = submit(home, "CRASH on purpose")
    hang = submit(home, "HANG on purpose")
    orchestrate(home)
    archive = home.path / "archive"

    post = the_result(world, fail)["content"]
    assert post.startswith(f"❌ **FAILED** · task `{fail}`")
    assert "\n**Why:** openclaw exited with code 1\n" in post
    assert "**openclaw said:**\n```\nLLM request failed: connection refused by the provider endpoint.\n```" in post
    assert "**agent-output.log** (last 20 lines):\n```\n" in post
    assert "[agent] error: provider request failed (stand-in FAIL)" in post
    kept = re.search(r"🗂 \*\*Workspace kept:\*\* `([^`]+)`", post).group(1)
    assert Path(kept).parent == archive and (Path(kept) / "tasks" / fail / "agent-output.log").is_file()
    assert not W.is_kept_success(kept)

    post = the_result(world, crash)["content"]
    assert post.startswith(f"❌ **KILLED** · task `{crash}`")
    assert "**Why:** killed by SIGKILL" in post and "[agent] about to crash" in post

    post = the_result(world, hang)["content"]
    assert post.startswith(f"⏱ **TIMED OUT** · task `{hang}`")
    assert "**Why:** timed out after 1 s · signal SIGTERM (15)" in post
    assert "(stand-in HANG)" in post
    assert world.ld.reactions(world.task_queue, hang).keys() == {"✅", "⏱"}
    assert len(home.archive()) == 3 and home.workers() == []


# ---------------------------------------------------------------- archive/ retention
def _old_dir(path: Path, hours: float, success: bool = False) -> Path:
    (path / "tasks").mkdir(parents=True)
    if success:
        (path / W.KEPT_SUCCESS_MARKER).write_text("kept\n")
    then = time.time() - hours * 3600
    os.utime(path, (then, then))
    return path


def test_archive_pruned_by_the_pass(home, world):
    home.write_config(ARCHIVE_RETENTION_HOURS="24", KEEP_SUCCESS_HOURS="1")
    archive = home.path / "archive"
    old_failure = _old_dir(archive / "agent-1700000000-aaaaaa", 25)
    young_failure = _old_dir(archive / "agent-1700000000-bbbbbb", 2)
    old_success = _old_dir(archive / "agent-1700000000-cccccc", 2, success=True)
    young_success = _old_dir(archive / "agent-1700000000-dddddd", 0.5, success=True)
    not_ours = _old_dir(archive / "notes", 100)
    res = orchestrate(home)
    assert not old_failure.exists() and not old_success.exists()
    assert young_failure.exists() and young_success.exists() and not_ours.exists()
    assert res.stderr.count("pruned ") == 2

    # a success kept by a run is marked and goes after KEEP_SUCCESS_HOURS; a failure as old stays
    ok = submit(home, "keep me for a while")
    bad = submit(home, "FAIL and keep me")
    orchestrate(home)
    kept = {t: Path(re.search(r"Workspace kept:\*\* `([^`]+)`", the_result(world, t)["content"]).group(1))
            for t in (ok, bad)}
    assert W.is_kept_success(kept[ok]) and not W.is_kept_success(kept[bad])
    assert (kept[ok] / "tasks" / ok / "RESULT.txt").is_file()
    then = time.time() - 2 * 3600
    for path in kept.values():
        os.utime(path, (then, then))
    orchestrate(home)
    assert kept[ok].exists(), "archive/ is read once an hour, not by every pass"
    an_hour_ago(home)
    orchestrate(home)
    assert not kept[ok].exists() and kept[bad].exists()


def an_hour_ago(home) -> None:
    """Move the last prune of archive/ an hour back (what mtimes are to the workspaces)."""
    import sqlite3

    with sqlite3.connect(home.path / ".runtime" / "state.db") as db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'last_prune'", (repr(time.time() - 3601),))


# ---------------------------------------------------------------- the agent's instructions
def test_template_worker_type_and_pythonpath(home, world):
    (home.path / "my-agents.md").write_text("# House rules\nAlways answer in haiku.\n")
    coder = home.path / "workers" / "coder"
    coder.mkdir()
    (coder / "AGENTS.md").write_text("# Coder\nWrite tests first.\n")
    (coder / "TOOLS.md").write_text("# Tools\nUse pytest.\n")
    home.write_config(AGENTS_MD_TEMPLATE="my-agents.md", KEEP_SUCCESS_HOURS="1", EXTRA_PYTHONPATH="/opt/orch-lib")
    plain = submit(home, "Plain task")
    typed = submit(home, "--worker", "coder", "Typed task")
    orchestrate(home)

    def kept_file(task_id: str, name: str) -> str:
        [path] = (home.path / "archive").glob(f"agent-*/tasks/{task_id}/{name}")
        return path.read_text()

    agents = kept_file(plain, "AGENTS.md")
    assert agents.startswith("# House rules\nAlways answer in haiku.\n")
    assert "Plain task" in agents and f"task {plain}" in agents and "RESULT.txt" in agents
    assert not list((home.path / "archive").glob(f"agent-*/tasks/{plain}/TOOLS.md"))

    agents = kept_file(typed, "AGENTS.md")
    assert agents.startswith("# Coder\nWrite tests first.\n") and "House rules" not in agents
    assert "Typed task" in agents and f"task {typed}" in agents
    assert kept_file(typed, "TOOLS.md") == "# Tools\nUse pytest.\n"

    assert f"task `{typed}` · worker `coder`" in world.notices()
    assert "worker `coder`" in the_result(world, typed)["content"]
    for task_id in (plain, typed):
        assert run_of(home, task_id)["env"]["PYTHONPATH"].split(os.pathsep)[0] == "/opt/orch-lib"


# ---------------------------------------------------------------- logs for cron
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d discord-orch\[\d+\] (INFO|WARNING|ERROR|DEBUG) ")


def transitions(text: str, task_id: str) -> List[str]:
    return [line.split(" ", 3)[3] for line in text.splitlines() if f"task={task_id}" in line]


def test_one_log_line_per_transition(home, world):
    ok = submit(home, "log me")
    bad = submit(home, "FAIL log me too")
    res = orchestrate(home)
    for line in res.stderr.splitlines():
        assert LOG_LINE.match(line), line
    for task_id, outcome in ((ok, "ok"), (bad, "failed")):
        agent = run_of(home, task_id)["agent_id"]
        lines = transitions(res.stderr, task_id)
        assert [line.split(" ")[0] for line in lines] == ["claimed", "started", "finished", "reported", "cleaned"]
        assert lines[1].startswith(f"started task={task_id} agent={agent} ")
        assert re.match(rf"finished task={task_id} agent={agent} outcome={outcome} duration=\d+\.\ds", lines[2])
        assert lines[3].startswith(f"reported task={task_id} agent={agent} outcome={outcome} message=")
        assert lines[4].startswith(f"cleaned task={task_id} agent={agent}")
    assert world.bot.token not in res.stderr


def test_quiet_verbose_and_log_file(home, world):
    first = submit(home, "quiet please")
    quiet = orchestrate(home, "-q")
    assert quiet.stdout == "" and quiet.stderr == ""
    assert len(results_for(world, first)) == 1

    submit(home, "tell me everything")
    verbose = orchestrate(home, "-v")
    assert re.search(r"DEBUG (GET|POST|PUT) /channels/\{channel_id\}/messages.* -> 20\d", verbose.stderr), \
        verbose.stderr[-2000:]
    assert world.bot.token not in verbose.stderr

    log_file = home.path / "logs" / "orch.log"
    second = submit(home, "into the file")
    orchestrate(home, "--log-file", str(log_file))
    third = submit(home, "and append")
    orchestrate(home, "--log-file", str(log_file))
    text = log_file.read_text()
    for task_id in (second, third):  # appended across passes
        assert [line.split(" ")[0] for line in transitions(text, task_id)] == \
            ["claimed", "started", "finished", "reported", "cleaned"]
    assert text.count("pass done") == 2 and world.bot.token not in text

    # cron: nothing on stderr (nothing mailed), every line in the file
    fourth = submit(home, "quiet on stderr, loud in the file")
    quiet = orchestrate(home, "-q", "--log-file", str(log_file))
    assert quiet.stdout == "" and quiet.stderr == ""
    assert [line.split(" ")[0] for line in transitions(log_file.read_text(), fourth)] == \
        ["claimed", "started", "finished", "reported", "cleaned"]


# ---------------------------------------------------------------- pure: prices, retention
def test_load_prices_reads_what_openclaw_accepts(tmp_path):
    (tmp_path / "models.json5").write_text("""{
      // prices per 1,000 tokens
      models: {providers: {
        openrouter: {models: [
          {id: "moonshotai/kimi-k2.5", cost: {input: 0.0006, output: '0.0025'}},
          {id: "no-cost"},
          {cost: {input: 1, output: 1}},                       /* no id: skipped */
          {id: "bad", cost: {input: -1, output: 1}},           // negative: skipped
          {id: "openrouter/auto", cost: {input: 0.001, output: 0.002}},
        ]},
        fake: {models: [{id: "fake-model", cost: {input: 0, output: 0}}]},
      }},
    }""")
    main = tmp_path / "openclaw.json"
    main.write_text(json.dumps({"$include": "models.json5",
                                "models": {"providers": {"fake": {"models": [
                                    {"id": "fake-model", "cost": {"input": 0.1, "output": 0.2}}]}}}}))
    prices = load_prices(main)
    assert prices == {KIMI: (0.0006, 0.0025), "fake/fake-model": (0.1, 0.2),
                      "openrouter/openrouter/auto": (0.001, 0.002), "openrouter/auto": (0.001, 0.002)}
    assert load_prices(tmp_path / "missing.json") == {}
    (tmp_path / "broken.json").write_text("{models: ")
    assert load_prices(tmp_path / "broken.json") == {}
    loop = tmp_path / "loop.json"
    loop.write_text(json.dumps({"$include": "loop.json", "models": {}}))
    assert load_prices(loop) == {}


def test_prune_gives_kept_successes_their_own_retention(tmp_path):
    archive = tmp_path / "archive"
    now = time.time()
    ws_ok = W.create_workspace(tmp_path / "workers", "agent-1700000000-aaaaaa", "1" * 18, "t", agents_md="a",
                               tools_md=None, user_openclaw_config=tmp_path / "none.json")
    ws_bad = W.create_workspace(tmp_path / "workers", "agent-1700000000-bbbbbb", "2" * 18, "t", agents_md="a",
                                tools_md=None, user_openclaw_config=tmp_path / "none.json")
    ok = W.archive_workspace(ws_ok, archive, success=True)
    bad = W.archive_workspace(ws_bad, archive)
    assert W.is_kept_success(ok) and not W.is_kept_success(bad)
    assert W.files_left(W.Workspace.at(archive, ws_ok.agent_id, ws_ok.task_id)) == ()
    assert W.prune_archive(archive, 72, now + 2 * 3600, success_hours=1) == [ok]
    assert W.prune_archive(archive, 72, now + 71 * 3600, success_hours=1) == []
    assert W.prune_archive(archive, 72, now + 73 * 3600, success_hours=1) == [bad]


def test_report_lists_only_the_files_it_does_not_show():
    from discord_orch.outcome import FAILED, OK, Outcome, Usage
    from discord_orch.report import result_post

    def content(outcome):
        return result_post(task_id="1" * 18, task_channel_id="2" * 18, results_channel_id="2" * 18,
                           guild_id="3" * 18, agent_id="agent-1700000000-aaaaaa", outcome=outcome,
                           task_description="t", thinking="low", model_requested=KIMI).content

    ok = Outcome(status=OK, duration_s=3, result_text="42", summary_text="it is 42",
                 files=("RESULT.txt", "SUMMARY.txt", "chart.png", "out/RESULT.txt"),
                 usage=Usage(provider="openrouter", model="moonshotai/kimi-k2.5", input_tokens=1, output_tokens=2))
    text = content(ok)
    assert "📎 **Files:** `chart.png`, `out/RESULT.txt`\n" in text
    assert f"model `{KIMI}` · " in text and "(requested)" not in text
    # a run openclaw said nothing about: the model shown is only the one asked for
    bad = Outcome(status=FAILED, duration_s=1, exit_code=1, reason="openclaw exited with code 1")
    text = content(bad)
    assert f"model `{KIMI}` (requested) · " in text
    assert text.endswith("**Why:** openclaw exited with code 1\n-# discord-orch")   # the exit code is not said twice
    text = content(Outcome(status=FAILED, duration_s=1, exit_code=0, reason="the agent wrote no RESULT.txt"))
    assert "**Why:** the agent wrote no RESULT.txt · exit code 0" in text
