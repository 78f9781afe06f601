"""report.py: outcome → Discord payloads. Pure; fast."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from discord_orch.outcome import FAILED, INTERRUPTED, KILLED, OK, STATUSES, STOPPED, TIMED_OUT, Outcome, Usage
from discord_orch.report import (MARK, MESSAGE_LIMIT, ZWSP, Post, attempt_of, batch_notices, cost_text, escape_fenced,
                                 escape_inline, estimate_cost, format_cost, format_duration, is_refusals_post_of,
                                 jump_link, model_used, neutralize_mentions, notice_line_finished,
                                 notice_line_spawned, notice_lines_spawned, refusal_post, refusals_post,
                                 result_post)

TASK = "1310000000000000001"
QUEUE = "1300000000000000001"
RESULTS = "1300000000000000002"
GUILD = "1290000000000000000"
AGENT = "agent-1764067200-a1b2c3"
KIMI = "openrouter/moonshotai/kimi-k2.5"
LINK = f"https://discord.com/channels/{GUILD}/{QUEUE}/{TASK}"
USAGE = Usage(provider="openrouter", model="moonshotai/kimi-k2.5", input_tokens=12345, output_tokens=678,
              cost_usd=0.0123)


def post(outcome: Outcome, **kw) -> Post:
    args = dict(task_id=TASK, task_channel_id=QUEUE, results_channel_id=RESULTS, guild_id=GUILD, agent_id=AGENT,
                outcome=outcome, task_description="Summarise README.md", thinking="medium", model_requested=KIMI)
    args.update(kw)
    return result_post(**args)


def ok(**kw) -> Outcome:
    base = dict(status=OK, duration_s=64.2, result_text="The answer is 42.\n", usage=USAGE)
    base.update(kw)
    return Outcome(**base)


def failed(**kw) -> Outcome:
    base = dict(status=FAILED, duration_s=92.0, exit_code=1, reason="openclaw exited with code 1",
                error_message="LLM request failed: HTTP 500", log_tail="boot\nretrying\ngave up")
    base.update(kw)
    return Outcome(**base)


def _spans_closed(line: str) -> bool:
    """Read left to right as Discord does: a backslash escapes the next character; ` opens a span that must close."""
    i = 0
    while i < len(line):
        if line[i] == "\\":
            i += 2
        elif line[i] == "`":
            end = line.find("`", i + 1)
            if end < 0:
                return False
            i = end + 1
        else:
            i += 1
    return True


def assert_safe(content: str) -> None:
    """≤ 2000; ``` blocks balanced, own lines, never empty, no `` inside; nothing that pings or opens a span outside."""
    assert len(content) <= MESSAGE_LIMIT
    assert "\x00" not in content
    pieces = content.split("```")
    assert len(pieces) % 2 == 1, "unbalanced code blocks"
    for i, piece in enumerate(pieces):
        if i % 2:
            assert piece.startswith("\n") and piece.endswith("\n") and piece.strip(), repr(piece)
            assert "``" not in piece
        else:
            if i > 0:
                assert piece == "" or piece.startswith("\n"), repr(piece)
            if i < len(pieces) - 1:
                assert piece.endswith("\n"), repr(piece)
            assert "``" not in piece
            assert not re.search(r"@(everyone|here)", piece, re.IGNORECASE), piece
            assert not re.search(r"<@[!&]?[0-9]", piece), piece
            for line in piece.split("\n"):
                assert _spans_closed(line), line


# ---------------------------------------------------------------- numbers
@pytest.mark.parametrize("seconds,text", [
    (0, "0.0s"), (0.26, "0.3s"), (4.4, "4.4s"), (9.94, "9.9s"), (9.96, "10s"), (59.4, "59s"), (59.6, "1m 00s"), (64, "1m 04s"), (64.2, "1m 04s"), (600, "10m 00s"),
    (3725, "1h 02m 05s"), (90061, "25h 01m 01s"), (None, "n/a"), (-1, "n/a"), (math.nan, "n/a"),
    (math.inf, "n/a"), ("x", "n/a"),
])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize("cost,text", [
    (None, "n/a"), (0, "$0.00"), (0.0123, "$0.0123"), (0.012345, "$0.0123"), (0.00001, "<$0.0001"),
    (1.5, "$1.50"), (1234.5, "$1,234.50"), (math.nan, "n/a"), (-0.01, "n/a"), (math.inf, "n/a"), ("x", "n/a"),
])
def test_format_cost(cost, text):
    assert format_cost(cost) == text


def test_format_cost_estimated():
    assert format_cost(0.0123, estimated=True) == "$0.0123 (est.)"
    assert format_cost(None, estimated=True) == "n/a"


def test_estimate_cost_from_prices():
    usage = Usage(provider="openrouter", model="moonshotai/kimi-k2.5", input_tokens=12345, output_tokens=678)
    prices = {KIMI: (0.0006, 0.0025)}
    assert estimate_cost(usage, prices, KIMI) == pytest.approx(12.345 * 0.0006 + 0.678 * 0.0025)
    assert cost_text(usage, prices, KIMI) == "$0.0091 (est.)"
    assert estimate_cost(Usage(input_tokens=10), prices, KIMI) is None          # output tokens unknown
    assert estimate_cost(usage, {"other/model": (1, 1)}, KIMI) is None           # no price
    assert estimate_cost(usage, {KIMI: (math.nan, 1)}, KIMI) is None             # nonsense price
    assert cost_text(usage, None, KIMI) == "n/a"
    assert cost_text(Usage(cost_usd=0.5, input_tokens=1, output_tokens=1), prices, KIMI) == "$0.5000"


def test_model_used():
    assert model_used(USAGE, "x/y") == KIMI
    assert model_used(Usage(provider="openrouter", model=KIMI), None) == KIMI   # prefix not doubled
    assert model_used(Usage(model="a/b"), None) == "a/b"
    assert model_used(Usage(), "x/y") == "x/y"
    assert model_used(Usage(), None) is None


# ---------------------------------------------------------------- text safety
def test_escape_helpers():
    assert escape_fenced("a```b``c`\x00") == f"a`{ZWSP}`{ZWSP}`b`{ZWSP}`c`"
    assert escape_inline("*bold* _u_ `code` ||x|| [t](u) \\ ~~s~~") == \
        "\\*bold\\* \\_u\\_ \\`code\\` \\|\\|x\\|\\| \\[t\\](u) \\\\ \\~\\~s\\~\\~"
    assert neutralize_mentions("@everyone @HERE <@123> <@!4> <@&5> <#6>") == \
        f"@{ZWSP}everyone @{ZWSP}HERE <{ZWSP}@123> <{ZWSP}@!4> <{ZWSP}@&5> <#6>"


def test_jump_link():
    assert jump_link(GUILD, QUEUE, TASK) == LINK
    assert jump_link(None, QUEUE, TASK) == f"https://discord.com/channels/@me/{QUEUE}/{TASK}"


# ---------------------------------------------------------------- result post: header
def test_success_post_exact():
    p = post(ok(summary_text="It is 42.", files=("RESULT.txt", "SUMMARY.txt")))
    assert p.content == (
        f"✅ **DONE** · task `{TASK}` · agent `{AGENT}` · {LINK}\n"
        f"model `{KIMI}` · thinking `medium` · 1m 04s · 12,345 in / 678 out tokens · cost $0.0123\n"
        "📝 Summarise README.md\n"
        "📄 **Summary** (SUMMARY.txt)\n```\nIt is 42.\n```\n"
        "📦 Full text in the attached **RESULT.txt** (18 characters).\n"
        "-# discord-orch")   # every post ends with the marker line: the orchestrator's own, never a task
    assert p.reply_to is None and p.embeds == ()
    assert [(f.filename, f.data) for f in p.files] == [("RESULT.txt", b"The answer is 42.\n")]


def test_same_channel_replies_instead_of_linking():
    p = post(ok(), task_channel_id=RESULTS)
    assert p.reply_to == TASK
    assert p.content.split("\n")[0] == f"✅ **DONE** · task `{TASK}` · agent `{AGENT}`"
    assert "https://" not in p.content


def test_no_link_from_junk_ids():
    p = post(ok(), task_channel_id="../x")
    assert "https://" not in p.content and p.reply_to is None


def test_failure_post_exact():
    p = post(failed(), archive_path="archive/agent-1764067200-a1b2c3", thinking="low",
             model_requested="openrouter/stepfun/step-3.5-flash:free", task_channel_id=RESULTS)
    assert p.content == (
        f"❌ **FAILED** · task `{TASK}` · agent `{AGENT}`\n"
        "model `openrouter/stepfun/step-3.5-flash:free` (requested) · thinking `low` · 1m 32s · tokens n/a"
        " · cost n/a\n"
        "📝 Summarise README.md\n"
        "**Why:** openclaw exited with code 1\n"
        "**openclaw said:**\n```\nLLM request failed: HTTP 500\n```\n"
        "**agent-output.log** (last 20 lines):\n```\nboot\nretrying\ngave up\n```\n"
        "🗂 **Workspace kept:** `archive/agent-1764067200-a1b2c3`" + MARK)
    assert p.files == () and p.reply_to == TASK


@pytest.mark.parametrize("status,label", [(OK, "✅ **DONE**"), (FAILED, "❌ **FAILED**"),
                                          (TIMED_OUT, "⏱ **TIMED OUT**"), (KILLED, "❌ **KILLED**"),
                                          (INTERRUPTED, "❌ **INTERRUPTED**"), ("odd*", "❔ **ODD\\***")])
def test_status_labels(status, label):
    assert post(ok(status=status)).content.startswith(f"{label} · task `{TASK}`")


def test_signal_name_and_unknown_exit():
    p = post(failed(status=TIMED_OUT, exit_code=None, signal=9, reason="timed out after 120 s"))
    assert "**Why:** timed out after 120 s · signal SIGKILL (9)" in p.content
    assert "· exit code unknown" in post(failed(exit_code=None)).content
    assert "signal 200" in post(failed(signal=200)).content


def test_model_fallback_and_asked_for():
    p = post(ok(usage=Usage(provider="openrouter", model="qwen/qwen3-coder-next")))
    assert f"model `openrouter/qwen/qwen3-coder-next` (asked for `{KIMI}`)" in p.content
    p = post(ok(usage=Usage()))
    assert f"model `{KIMI}` (requested) · thinking `medium` · 1m 04s · tokens n/a · cost n/a" in p.content
    p = post(ok(usage=Usage(input_tokens=5)), model_requested=None)
    assert "model n/a" in p.content and "5 in / n/a out tokens" in p.content


def test_cost_from_prices_marked_estimated():
    usage = Usage(provider="openrouter", model="moonshotai/kimi-k2.5", input_tokens=1000, output_tokens=1000)
    p = post(ok(usage=usage), prices={KIMI: (0.001, 0.002)})
    assert "· cost $0.0030 (est.)" in p.content
    assert "· cost n/a" in post(ok(usage=usage), prices={}).content


def test_worker_shown():
    assert "· worker `web` ·" in post(ok(), worker="web").content


# ---------------------------------------------------------------- result post: body and attachment
def test_short_result_shown_whole_without_attachment():
    p = post(ok(result_text="x" * 1500 + "\n"))
    assert "📄 **Result** (RESULT.txt)\n```\n" + "x" * 1500 + "\n```" in p.content
    assert p.files == ()
    assert_safe(p.content)


def test_cut_result_is_attached_and_fences_balanced():
    p = post(ok(result_text="y" * 1501))
    assert "```\n" + "y" * 1500 + "\n…\n```" in p.content
    assert p.files[0].filename == "RESULT.txt" and p.files[0].data == b"y" * 1501
    assert "📦 Full text in the attached **RESULT.txt** (1,501 characters)." in p.content
    assert_safe(p.content)


def test_six_thousand_char_result_fully_in_attachment():
    result = "".join(f"line {i:05d} ü🤖\n" for i in range(500))[:6000]
    assert len(result) == 6000
    p = post(ok(result_text=result))
    assert len(p.content) <= MESSAGE_LIMIT
    assert p.files[0].data.decode("utf-8") == result
    assert_safe(p.content)


def test_summary_max_respected():
    p = post(ok(summary_text="s" * 900), summary_max=100)
    assert "```\n" + "s" * 100 + "\n…\n```" in p.content


def test_summary_preferred_and_result_attached():
    p = post(ok(summary_text="short", result_text="long result"))
    assert "📄 **Summary** (SUMMARY.txt)\n```\nshort\n```" in p.content
    assert "long result" not in p.content and p.files[0].data == b"long result"


def test_reply_used_when_no_result():
    p = post(ok(result_text="", reply_text="I did it."))
    assert "💬 **Agent reply** (no RESULT.txt)\n```\nI did it.\n```" in p.content and p.files == ()
    p = post(ok(result_text="", reply_text="r" * 3000))
    assert p.files[0].filename == "REPLY.txt" and p.files[0].data == b"r" * 3000


def test_nothing_to_show():
    p = post(ok(result_text="", reply_text=""))
    assert "⚠️ The agent wrote no RESULT.txt and gave no reply." in p.content and p.files == ()
    assert "⚠️" not in post(failed()).content


def test_files_list_capped():
    names = tuple(f"out/file{i}.txt" for i in range(25)) + ("we`ird.txt",)
    p = post(ok(files=names))
    assert "📎 **Files:** `out/file0.txt`, " in p.content and "`out/file9.txt` (+16 more)" in p.content


def test_backticks_in_result_are_escaped_and_trigger_attachment():
    p = post(ok(result_text="```\n@everyone <@123> ``` ````"))
    assert f"`{ZWSP}`{ZWSP}`\n@everyone <@123> `{ZWSP}`{ZWSP}` `{ZWSP}`{ZWSP}`{ZWSP}`" in p.content
    assert p.files[0].data == "```\n@everyone <@123> ``` ````".encode()  # what you copy is exact
    assert_safe(p.content)


def test_untrusted_text_outside_blocks_is_neutralised():
    p = post(failed(reason="bad @everyone ```x", files=("@here.txt",)),
             task_description="ping @everyone and <@123456789012345678>\n```\ncode",
             archive_path="archive/@here")
    assert_safe(p.content)
    assert f"📝 ping @{ZWSP}everyone and <{ZWSP}@123456789012345678> \\`\\`\\` code" in p.content
    assert f"**Why:** bad @{ZWSP}everyone \\`\\`\\`x · exit code 1" in p.content


def test_nul_stripped():
    p = post(ok(result_text="a\x00b", summary_text="", reply_text=""), task_description="t\x00ask")
    assert "\x00" not in p.content and "```\nab\n```" in p.content and "📝 task" in p.content


def test_task_head_cut_to_about_200():
    p = post(ok(), task_description="word " * 200)
    line = next(line for line in p.content.split("\n") if line.startswith("📝 "))
    assert len(line) == 2 + 200 and line.endswith("…")


def test_log_tail_keeps_last_twenty_lines():
    log = "\n".join(f"log line {i}" for i in range(50))
    p = post(failed(log_tail=log))
    block = p.content.split("**agent-output.log** (last 20 lines):\n```\n")[1].split("\n```")[0]
    assert block.split("\n") == [f"log line {i}" for i in range(30, 50)]


def test_log_tail_shows_no_terminal_colour_codes():
    """openclaw colours its log even into a file: the post shows the words, not "[31m" (found with the
    real openclaw, issue 16)."""
    log = "\x1b[31m[diagnostic]\x1b[39m lane task error\n\x1b[1m\x1b[33mwarn\x1b[0m: retrying\x1b[2K"
    p = post(failed(log_tail=log))
    block = p.content.split("**agent-output.log** (last 20 lines):\n```\n")[1].split("\n```")[0]
    assert block.split("\n") == ["[diagnostic] lane task error", "warn: retrying"]
    assert "\x1b" not in p.content


def test_everything_huge_still_fits_and_keeps_failure_essentials():
    o = failed(reason="r" * 5000, error_message="E" * 5000, log_tail="\n".join("L" * 300 for _ in range(20)),
               result_text="R" * 50_000, summary_text="S" * 5000, files=tuple("f" * 200 for _ in range(100)))
    p = post(o, task_description="T" * 5000, archive_path="/very/long/" + "p" * 500, agent_id="a" * 500,
             worker="w" * 500, model_requested="m/" + "m" * 500, thinking="t" * 100)
    assert_safe(p.content)
    lines = p.content.split("\n")
    assert lines[0].startswith("❌ **FAILED** · task `1310000000000000001` · agent `aaaa")
    assert lines[1].startswith("model `m/mmm")
    for marker in ("📝 TTT", "**Why:** rrr", "· exit code 1", "**openclaw said:**\n```\nEEE",
                   "**agent-output.log** (last 20 lines):\n```\n…\nLLL", "🗂 **Workspace kept:** `/very/long/",
                   "📦 Full text in the attached **RESULT.txt** (50,000 characters)."):
        assert marker in p.content, marker
    assert p.files[0].data == b"R" * 50_000


def test_agent_read_only_part_of_result():
    o = ok(result_text="head", result_truncated=True, result_bytes=20_000_000)
    p = post(o)
    assert "📦 **RESULT.txt** attached: its first 4 of 20,000,000 bytes." in p.content
    assert p.files[0].data == b"head"


def test_attachment_capped_at_discord_size():
    p = post(ok(result_text="é" * 100), attachment_max_bytes=51, summary_max=10)
    assert p.files[0].data == "é".encode() * 25
    assert "📦 **RESULT.txt** attached: its first 50 of 200 bytes." in p.content


# ---------------------------------------------------------------- refusal
def test_refusal_exact():
    p = refusal_post(task_id=TASK, task_channel_id=QUEUE, results_channel_id=RESULTS, guild_id=GUILD,
                     reason='unknown model "gpt-9": use cheap, coder, primary, research, or a full provider/model id')
    assert p.content == (f"⛔ **REFUSED** · task `{TASK}` · {LINK}\n"
                         '• unknown model "gpt-9": use cheap, coder, primary, research, or a full provider/model id' + MARK)
    assert p.reply_to is None and p.files == ()


def test_refusal_not_allowed_reply_and_bullets():
    reason = ("user 222222222222222222 is not allowed to run tasks here; add the id to ALLOWED_USER_IDS, "
              "or give them a role listed in ALLOWED_ROLE_IDS")
    p = refusal_post(task_id=TASK, task_channel_id=RESULTS, results_channel_id=RESULTS, guild_id=GUILD,
                     reason=[reason, "second\nthird @everyone"], task_description="do *it*")
    assert p.reply_to == TASK
    assert p.content == (f"⛔ **REFUSED** · task `{TASK}`\n• {reason.replace('_', chr(92) + '_')}\n• second\n"
                         f"• third @{ZWSP}everyone\n📝 do \\*it\\*" + MARK)


def test_refusal_long_reason_fits():
    p = refusal_post(task_id=TASK, task_channel_id=QUEUE, results_channel_id=RESULTS, guild_id=GUILD,
                     reason="\n".join("x" * 400 for _ in range(20)), task_description="d" * 5000)
    assert_safe(p.content)
    assert p.content.startswith(f"⛔ **REFUSED** · task `{TASK}` · {LINK}\n• xxx")


def test_refusals_of_one_author_exact():
    later = "1310000000000000002"
    p = refusals_post(refused=[(TASK, "not allowed"), (later, "not allowed")], author_id="222222222222222222",
                      task_channel_id=QUEUE, results_channel_id=RESULTS, guild_id=GUILD)
    assert p.content == (f"⛔ **REFUSED** · 2 messages from user `222222222222222222` · {LINK}\n"
                         f"• not allowed: `{TASK}`, `{later}`" + MARK)
    assert p.reply_to is None and is_refusals_post_of(p.content, TASK)
    assert not is_refusals_post_of(refusal_post(task_id=TASK, task_channel_id=QUEUE, results_channel_id=RESULTS,
                                                guild_id=GUILD, reason="not allowed").content, TASK)


def test_a_flood_of_refusals_is_one_post_listing_what_fits():
    ids = [str(1310000000000000000 + i) for i in range(1000)]
    refused = [(i, "not allowed" if n % 3 else "x" * 400 + " @everyone") for n, i in enumerate(ids)]
    p = refusals_post(refused=refused, author_id="222222222222222222", task_channel_id=RESULTS,
                      results_channel_id=RESULTS, guild_id=GUILD)
    assert_safe(p.content)
    assert p.reply_to == ids[0] and p.content.startswith("⛔ **REFUSED** · 1000 messages from user")
    listed = sum(f"`{i}`" in p.content for i in ids)
    assert 50 < listed < 1000 and f"• … and {1000 - listed} more, not listed" + MARK in p.content


# ---------------------------------------------------------------- notices
def test_spawn_notice_exact_and_one_line():
    line = notice_line_spawned(AGENT, TASK, "Fix the *login* bug\nthen write tests for everything in the module",
                               worker="web")
    assert line == (f"🤖 **AGENT SPAWNED** `{AGENT}` · task `{TASK}` · worker `web` · "
                    "Fix the \\*login\\* bug then write tests for everything in the…")
    assert "\n" not in line
    assert notice_lines_spawned is notice_line_spawned
    assert notice_line_spawned(AGENT, TASK, "") == f"🤖 **AGENT SPAWNED** `{AGENT}` · task `{TASK}`"


def test_finished_notice_exact():
    assert notice_line_finished(AGENT, TASK, OK, 64) == f"✅ Agent `{AGENT}` finished task `{TASK}`: done after 1m 04s"
    assert notice_line_finished(AGENT, TASK, TIMED_OUT, 120.4).startswith("⏱ Agent")
    assert notice_line_finished(AGENT, TASK, "weird", None).endswith(": weird after n/a")


def test_batch_notices_packs_and_cuts():
    lines = ["a" * 900, "b" * 900, "c" * 900, "d" * 5000, "", "e"]
    out = batch_notices(lines)
    assert out[0] == "a" * 900 + "\n" + "b" * 900 + MARK
    assert out[1] == "c" * 900 + MARK
    assert out[2] == "d" * (1998 - len(MARK)) + "…" + MARK
    assert out[3] == "e" + MARK
    assert all(len(m) <= 2000 for m in out)
    assert batch_notices([]) == []
    assert batch_notices(["x" * 10] * 3, limit=21 + len(MARK)) == ["x" * 10 + "\n" + "x" * 10 + MARK, "x" * 10 + MARK]


def test_batch_notices_cut_keeps_spans_closed():
    out = batch_notices(["`" + "x" * 3000 + "`"])
    assert out[0].endswith("`…" + MARK) and len(out[0]) <= 2000


# ---------------------------------------------------------------- properties
NASTY = st.sampled_from(["```", "`", "``", "````", "@everyone", "@here", "<@123456789012345678>", "<@&1>",
                         "\n", "\r\n", "x", " ", "\\", "*", "_", "\x00", "🤖", "|", "~", "[", "](http://x)",
                         "é", "\t", "```py\n"])
NASTY_TEXT = st.one_of(
    st.lists(NASTY, max_size=60).map("".join),
    st.text(max_size=300),
    st.builds(lambda a, n, b: a + "z" * n + b, st.lists(NASTY, max_size=10).map("".join),
              st.integers(0, 8000), st.lists(NASTY, max_size=10).map("".join)),
)
USAGES = st.builds(Usage, provider=st.one_of(st.none(), st.text(max_size=20)),
                   model=st.one_of(st.none(), st.text(max_size=150)),
                   input_tokens=st.one_of(st.none(), st.integers(-5, 10**9)),
                   output_tokens=st.one_of(st.none(), st.integers(-5, 10**9)),
                   cost_usd=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)))
OUTCOMES = st.builds(
    Outcome, status=st.sampled_from(STATUSES + ("weird",)),
    duration_s=st.floats(allow_nan=True, allow_infinity=True),
    exit_code=st.one_of(st.none(), st.integers(-300, 300)), signal=st.one_of(st.none(), st.integers(0, 70)),
    reason=NASTY_TEXT, error_message=NASTY_TEXT, result_text=NASTY_TEXT, summary_text=NASTY_TEXT,
    reply_text=NASTY_TEXT, log_tail=NASTY_TEXT, files=st.lists(NASTY_TEXT, max_size=15).map(tuple), usage=USAGES,
    stopped_by=NASTY_TEXT)
IDS = st.one_of(st.from_regex(r"[1-9][0-9]{16,19}", fullmatch=True), st.text(max_size=40))


@settings(max_examples=150, deadline=None)
@given(OUTCOMES, IDS, IDS, NASTY_TEXT, st.one_of(st.none(), NASTY_TEXT), st.one_of(st.none(), NASTY_TEXT),
       st.booleans(), st.integers(0, 3000))
def test_any_result_post_is_safe_and_fits(outcome, task_id, agent_id, description, worker, archive, same,
                                          summary_max):
    p = result_post(task_id=task_id, task_channel_id=RESULTS if same else QUEUE, results_channel_id=RESULTS,
                    guild_id=GUILD, agent_id=agent_id, outcome=outcome, task_description=description,
                    thinking="medium", model_requested=KIMI, worker=worker, archive_path=archive,
                    prices={KIMI: (0.001, 0.002)}, summary_max=summary_max)
    assert_safe(p.content)
    head = p.content.split(" · ")[0]
    assert head in {"✅ **DONE**", "❌ **FAILED**", "⏱ **TIMED OUT**", "❌ **KILLED**", "❌ **INTERRUPTED**",
                    "❔ **WEIRD**"} or (outcome.status == STOPPED and head.startswith("⏹ **STOPPED** by **"))
    result = outcome.result_text.replace("\x00", "")
    if result.strip():
        if p.files:
            assert p.files[0].filename == "RESULT.txt" and p.files[0].data == result.encode("utf-8", "replace")
        else:  # not attached: then shown exactly and completely
            assert f"```\n{result.strip()}\n```" in p.content
    for f in p.files:
        assert f.filename in ("RESULT.txt", "REPLY.txt")


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(["```", "@everyone", "@here", "<@1234567890123456789>", "\n", "a", "`"]),
                min_size=1, max_size=400).map("".join), st.sampled_from(STATUSES))
def test_result_with_fences_and_mentions_never_pings(result, status):
    p = post(ok(status=status, result_text=result, reply_text=result, error_message=result, log_tail=result,
                reason=result), task_description=result, archive_path=result)
    assert_safe(p.content)


@settings(max_examples=100, deadline=None)
@given(IDS, NASTY_TEXT, st.lists(NASTY_TEXT, max_size=5))
def test_any_refusal_is_safe_and_fits(task_id, description, reasons):
    p = refusal_post(task_id=task_id, task_channel_id=QUEUE, results_channel_id=RESULTS, guild_id=GUILD,
                     reason=reasons, task_description=description)
    assert_safe(p.content)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.builds(notice_line_spawned, IDS, IDS, NASTY_TEXT, st.one_of(st.none(), NASTY_TEXT)),
                max_size=40))
def test_notices_pack_safely(lines):
    out = batch_notices(lines)
    assert all("\n" not in line for line in lines)
    assert all(message.endswith(MARK) for message in out)
    assert [line for message in out for line in message[:-len(MARK)].split("\n")] == lines
    for message in out:
        assert_safe(message)


# ---------------------------------------------------------------- stop and retry (issue 14)

def test_a_stopped_run_says_who_stopped_it_and_when_and_keeps_what_it_left():
    outcome = Outcome(status=STOPPED, duration_s=42.0, signal=15, reason="stopped by alice",
                      result_text="PARTIAL: half done", log_tail="[agent] working\n[agent] still working",
                      stopped_by="alice")
    p = result_post(task_id=TASK, task_channel_id=QUEUE, results_channel_id=RESULTS, guild_id=GUILD,
                    agent_id="agent-1-abc", outcome=outcome, task_description="a long job", thinking="low",
                    model_requested=KIMI)
    first = p.content.split("\n", 1)[0]
    assert first.startswith("⏹ **STOPPED** by **alice** after 42s · task ")
    assert "PARTIAL: half done" in p.content and "[agent] still working" in p.content


def test_a_task_stopped_before_it_ran_says_so_and_a_retry_names_its_attempt():
    outcome = Outcome(status=STOPPED, duration_s=0.0, reason="stopped by alice before it ran", stopped_by="alice")
    p = result_post(task_id=TASK, task_channel_id=QUEUE, results_channel_id=RESULTS, guild_id=GUILD,
                    agent_id="-", outcome=outcome, task_description="a job", thinking="low",
                    model_requested=KIMI, attempt=3)
    first = p.content.split("\n", 1)[0]
    assert first.startswith(f"⏹ **STOPPED** by **alice** before it ran · task `{TASK}` · attempt 3 · agent ")
    assert attempt_of(p.content) == 3
    ok = result_post(task_id=TASK, task_channel_id=QUEUE, results_channel_id=RESULTS, guild_id=GUILD,
                     agent_id="agent-1-abc", outcome=Outcome(status=OK, duration_s=1.0, result_text="x"),
                     task_description="a job", thinking="low", model_requested=KIMI)
    assert " · attempt " not in ok.content.split("\n", 1)[0] and attempt_of(ok.content) == 1
