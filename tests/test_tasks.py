"""tasks.py: message text → ParsedTask, the submit header, ids. Pure; fast."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from discord_orch.errors import ConfigError
from discord_orch.models import is_snowflake
from discord_orch.tasks import (DEFAULT_ALIASES, MESSAGE_LIMIT, THINKING_LEVELS, ParsedTask, fits_in_message,
                                fits_inline, format_attached_task_message, format_task_message,
                                parse_aliases, parse_task, resolve_model, tag_problems, valid_models_text)

CHEAP = "openrouter/stepfun/step-3.5-flash:free"
PRIMARY = "openrouter/moonshotai/kimi-k2.5"
CODER = "openrouter/qwen/qwen3-coder-next"
RESEARCH = "openrouter/google/gemini-3-pro-preview"


# ---------------------------------------------------------------- constants
def test_levels_and_default_aliases():
    assert THINKING_LEVELS == ("off", "minimal", "low", "medium", "high", "xhigh")
    assert dict(DEFAULT_ALIASES) == {"cheap": CHEAP, "primary": PRIMARY, "coder": CODER, "research": RESEARCH}
    with pytest.raises(TypeError):
        DEFAULT_ALIASES["cheap"] = "x/y"  # type: ignore[index]


# ---------------------------------------------------------------- parse_task: basics
def test_plain_task_gets_defaults():
    p = parse_task("Summarise README.md")
    assert p == ParsedTask(description="Summarise README.md", model_alias="primary", model=PRIMARY,
                           thinking="medium", worker=None, problems=())
    assert p.ok


def test_seed_form_with_header_and_tags():
    p = parse_task("**[Task: 1234567890123456789]** Summarise README.md [model:cheap] [thinking:low]")
    assert p.description == "Summarise README.md"
    assert (p.model_alias, p.model, p.thinking, p.worker) == ("cheap", CHEAP, "low", None)
    assert p.ok


@pytest.mark.parametrize("alias,full", [("cheap", CHEAP), ("primary", PRIMARY), ("coder", CODER),
                                        ("research", RESEARCH), ("CHEAP", CHEAP)])
def test_aliases_resolve(alias, full):
    p = parse_task(f"do it [model:{alias}]")
    assert p.model == full and p.model_alias == alias and p.ok


def test_full_model_id_passes_through():
    p = parse_task("do it [model:openrouter/meta-llama/llama-3.1-8b-instruct:free]")
    assert p.model == "openrouter/meta-llama/llama-3.1-8b-instruct:free" and p.ok


def test_worker_tag():
    p = parse_task("build it [worker:web_dev-2]")
    assert p.worker == "web_dev-2" and p.ok


def test_keys_case_insensitive_and_blanks_tolerated():
    p = parse_task("do it [ Model : cheap ] [THINKING:HIGH] [\tWorker\t:\tw1\t]")
    assert (p.description, p.model, p.thinking, p.worker) == ("do it", CHEAP, "high", "w1")


def test_last_tag_wins():
    p = parse_task("[model:cheap] do it [thinking:low] [model:coder] [thinking:xhigh]")
    assert (p.description, p.model_alias, p.model, p.thinking) == ("do it", "coder", CODER, "xhigh")


def test_inner_newlines_kept_and_tag_only_lines_dropped():
    p = parse_task("line one\n  indented line\n[model:cheap] [thinking:low]\n\nlast line [worker:w]")
    assert p.description == "line one\n  indented line\n\nlast line"
    assert p.model == CHEAP and p.thinking == "low" and p.worker == "w"


def test_tag_mid_sentence_takes_its_blank_along():
    assert parse_task("use [model:cheap] for this").description == "use for this"
    assert parse_task("[model:cheap] starts here").description == "starts here"


def test_header_only_at_start():
    p = parse_task("see **[Task: 99]** for details")
    assert p.description == "see **[Task: 99]** for details"
    assert parse_task("  **[task:99]**  text").description == "text"


def test_unknown_tags_and_near_misses_stay_text():
    text = "[foo:bar] [model cheap] [model:a]b] (model:cheap) [models:cheap]"
    p = parse_task(text)
    # "[model:a]" is a tag; the rest is text
    assert p.description == "[foo:bar] [model cheap]b] (model:cheap) [models:cheap]"
    assert p.model_alias == "a" and p.model is None


# ---------------------------------------------------------------- code fences
def test_tag_inside_fence_is_text():
    text = "Fix this:\n```python\nprint('[model:cheap]')\n```\n[model:coder]"
    p = parse_task(text)
    assert p.description == "Fix this:\n```python\nprint('[model:cheap]')\n```"
    assert p.model == CODER


def test_inline_fence_protects_too():
    p = parse_task("keep ```[thinking:off]``` literally [thinking:high]")
    assert p.description == "keep ```[thinking:off]``` literally"
    assert p.thinking == "high"


def test_unclosed_fence_protects_nothing():
    # Discord shows an unclosed ``` literally; the tag after it is visible as a tag
    p = parse_task("odd ``` fence [model:cheap]")
    assert p.description == "odd ``` fence" and p.model == CHEAP


def test_fences_pair_left_to_right():
    p = parse_task("```a``` [model:cheap] ```b [model:coder]``` tail")
    assert p.description == "```a``` ```b [model:coder]``` tail"
    assert p.model == CHEAP


# ---------------------------------------------------------------- problems
def test_unknown_model_names_valid_ones():
    p = parse_task("do it [model:gpt-9]")
    assert p.model is None and p.model_alias == "gpt-9"
    assert p.problems == ('unknown model "gpt-9": use cheap, coder, primary, research, or a full '
                          'provider/model id (e.g. openrouter/google/gemini-3-pro-preview)',)
    assert not p.ok


def test_empty_model_tag():
    p = parse_task("do it [model:]")
    assert p.model is None and p.problems[0].startswith("no model: use cheap, coder, primary, research")


def test_unknown_thinking_names_levels_and_keeps_default():
    p = parse_task("do it [thinking:ultra]")
    assert p.thinking == "medium"
    assert p.problems == ('unknown thinking level "ultra": use one of off, minimal, low, medium, high, xhigh',)


@pytest.mark.parametrize("name", ["../etc", "a b", "x" * 33, "a/b", ".", "..", "ü", "a.b"])
def test_bad_worker_names_are_refused(name):
    p = parse_task(f"do it [worker:{name}]")
    assert p.worker is None
    assert len(p.problems) == 1 and p.problems[0].startswith("bad worker name")


def test_empty_description():
    for text in ("", "   ", "[model:cheap]", "**[Task: 12345678901234567]** [model:cheap] [thinking:low]",
                 "\x00\x00", "\n\n[thinking:low]\n"):
        p = parse_task(text)
        assert p.description == ""
        assert p.problems == ("empty task: there is no text besides the tags",), text


def test_all_problems_together_in_order():
    p = parse_task("[model:nope] [thinking:lots] [worker:a/b]")
    kinds = [q.split(" ")[0] for q in p.problems]
    assert kinds == ["unknown", "unknown", "bad", "empty"]


def test_long_bad_value_is_shortened_in_problem():
    p = parse_task("x [model:" + "m" * 500 + "]")
    assert len(p.problems[0]) < 250 and "…" in p.problems[0]


def test_custom_aliases_and_missing_primary():
    aliases = {"fast": "openrouter/x/y"}
    assert parse_task("go [model:fast]", aliases).model == "openrouter/x/y"
    p = parse_task("go", aliases)  # the default alias is not defined here
    assert p.model is None and p.problems[0].startswith('unknown model "primary": use fast, or a full')


def test_tag_problems_for_submit():
    assert tag_problems(model_alias="cheap", thinking="low", worker="w") == ()
    assert len(tag_problems(model_alias="nope", thinking="nope", worker="../x")) == 3


# ---------------------------------------------------------------- hostile text
@pytest.mark.parametrize("text", [
    'quotes " \' and backslashes \\ \\n',
    "emoji 🤖🧪 and RTL \u202e and ZWJ 👩‍💻",
    "nul\x00inside [model:\x00cheap]",
    "```", "``````", "`" * 1001, "[" * 5000, "]" * 5000, "[model:" * 5000,
    "\r\n\r\n[model:cheap]\r\nbody\r\n",
])
def test_hostile_text_parses(text):
    p = parse_task(text)
    assert "\x00" not in p.description and p.description == p.description.strip()


def test_nul_inside_tag_is_dropped_first():
    assert parse_task("x [model:\x00cheap]").model == CHEAP


def test_hundred_thousand_characters_fast():
    texts = ["[model:" + " " * 100_000, "[ " * 50_000, "```" * 33_000 + "[model:cheap]" * 100,
             " " * 100_000 + "x", "a" * 100_000 + " [model:cheap]", "[model:" + "a" * 100_000,
             "**[Task: " + " " * 100_000]
    start = time.monotonic()
    for text in texts:
        parse_task(text)
    assert time.monotonic() - start < 2.0
    assert parse_task("a" * 100_000 + " [model:cheap]").description == "a" * 100_000


# ---------------------------------------------------------------- attached form
def test_attached_form_formats():
    assert format_attached_task_message(12345, task_id="1234567890123456789", model_alias="cheap",
                                        thinking="low") == \
        "**[Task: 1234567890123456789]** (task text in TASK.txt, 12,345 characters) [model:cheap] [thinking:low]"
    assert format_attached_task_message("x") == "(task text in TASK.txt, 1 character)"


def test_attached_form_reads_the_attachment():
    content = format_attached_task_message(5000, task_id="1234567890123456789", model_alias="coder")
    body = "line 1\n" + "y" * 5000 + "\n```\n[model:cheap]\n```"
    p = parse_task(content, attachment_text=body + "\n\n")
    assert p.description == body and p.model == CODER and p.text_in_attachment and p.ok


def test_attached_form_without_attachment_is_a_problem():
    p = parse_task(format_attached_task_message(10, task_id="1234567890123456789"))
    assert p.text_in_attachment and p.description == ""
    assert p.problems == ("the task text is in the attached TASK.txt, which could not be read",)


def test_attachment_tags_count_but_message_tags_win():
    content = format_attached_task_message(10, model_alias="coder")
    p = parse_task(content, attachment_text="do it [model:cheap] [thinking:low]")
    assert p.description == "do it" and p.model == CODER and p.thinking == "low"


def test_attachment_without_placeholder_is_appended():
    p = parse_task("see the file [model:cheap]", attachment_text="the details\x00")
    assert p.description == "see the file\n\nthe details" and p.model == CHEAP
    assert not p.text_in_attachment


# ---------------------------------------------------------------- format_task_message
def test_format_exact():
    assert format_task_message("Do X", task_id="1234567890123456789", model_alias="cheap", thinking="low") == \
        "**[Task: 1234567890123456789]** Do X [model:cheap] [thinking:low]"
    assert format_task_message("Do X") == "Do X"
    assert format_task_message("Do X", worker="w") == "Do X [worker:w]"
    assert format_task_message("Do X", model_alias=" cheap ") == "Do X [model:cheap]"
    assert format_task_message("", task_id="1", model_alias="cheap") == "**[Task: 1]** [model:cheap]"


@pytest.mark.parametrize("kw", [{"model_alias": "a]b"}, {"thinking": "lo\nw"}, {"worker": " "},
                                {"model_alias": ""}, {"model_alias": "a`b"}, {"task_id": "1]"}])
def test_format_refuses_unwritable_values(kw):
    with pytest.raises(ValueError):
        format_task_message("x", **kw)


def test_tag_text_in_description_cannot_round_trip_outside_a_fence():
    # documented: typed outside a fence, it IS a tag
    d = "explain what [model:cheap] does"
    assert parse_task(format_task_message(d, task_id="1")).description == "explain what does"
    fenced = "explain what ```[model:cheap]``` does"
    assert parse_task(format_task_message(fenced, task_id="1")).description == fenced


def test_fits_in_message_boundary():
    assert MESSAGE_LIMIT == 2000
    assert fits_in_message("x" * 2000) and not fits_in_message("x" * 2001)
    assert fits_in_message("🤖" * 2000)  # Discord counts code points


def test_fits_inline_counts_a_20_digit_header_and_tags():
    tags = " [model:cheap] [thinking:low]"
    room = MESSAGE_LIMIT - len("**[Task: 12345678901234567890]** ") - len(tags)
    assert fits_inline("x" * room, model_alias="cheap", thinking="low")
    assert not fits_inline("x" * (room + 1), model_alias="cheap", thinking="low")


# ---------------------------------------------------------------- ids
@pytest.mark.parametrize("value,ok", [
    ("81384788765712384", True),                 # 17 digits (2015)
    ("1234567890123456789", True),
    ("18446744073709551615", True),              # 2**64 - 1
    ("18446744073709551616", False),             # 2**64
    ("99999999999999999999", False),
    ("8138478876571238", False),                 # 16 digits
    ("123456789012345678901", False),            # 21 digits
    ("01234567890123456", False),                # leading zero
    ("0", False), ("", False), (" 1234567890123456789", False), ("1234567890123456789\n", False),
    ("１２３４５６７８９０１２３４５６７８", False),  # fullwidth digits are not ASCII
    ("12345678901234567a", False), ("-1234567890123456789", False), ("../../etc/passwd", False),
    (1234567890123456789, False), (None, False),
])
def test_is_snowflake(value, ok):
    assert is_snowflake(value) is ok


# ---------------------------------------------------------------- aliases and models
def test_parse_aliases():
    assert parse_aliases("") == {}
    assert parse_aliases(" fast = openrouter/x/y , Big=openrouter/a/b:free,\n,") == \
        {"fast": "openrouter/x/y", "big": "openrouter/a/b:free"}


@pytest.mark.parametrize("spec,fragment", [
    ("fast", "is not name=provider/model"),
    ("=openrouter/x/y", "alias name ''"),
    ("fa st=openrouter/x/y", "alias name 'fa st'"),
    ("fast=", "not a full provider/model id"),
    ("fast=gpt4", "not a full provider/model id"),
    ("fast=open router/x", "not a full provider/model id"),
    ("fast=a/b,FAST=c/d", "defined twice"),
])
def test_parse_aliases_errors(spec, fragment):
    with pytest.raises(ConfigError) as info:
        parse_aliases(spec)
    assert info.value.key == "MODEL_ALIASES" and fragment in str(info.value)


@pytest.mark.parametrize("name,expected", [
    ("cheap", CHEAP), (" Coder ", CODER), ("openrouter/x/y", "openrouter/x/y"), ("ollama/llama3:8b", "ollama/llama3:8b"),
    ("a/b.c_d-e:f", "a/b.c_d-e:f"), ("gpt4", None), ("", None), ("a/", None), ("/a", None), ("-x/y", None),
    ("a /b", None), ("a/b c", None), ("a/b;rm", None), ("a/" + "b" * 300, None), (None, None),
])
def test_resolve_model(name, expected):
    assert resolve_model(name, DEFAULT_ALIASES) == expected


def test_valid_models_text():
    assert valid_models_text(DEFAULT_ALIASES) == ("cheap, coder, primary, research, or a full provider/model id "
                                                  "(e.g. openrouter/google/gemini-3-pro-preview)")
    assert valid_models_text({}).startswith("a full provider/model id")


# ---------------------------------------------------------------- properties
ANY_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=400)
TOKENS = st.sampled_from(["a", "b", "Z", " ", "  ", "\n", "\t", "\r\n", "[", "]", ":", "`", "```", "*", "**",
                          "model", "thinking", "worker", "Task", "\\", '"', "'", "🤖", "@everyone", "(", ")",
                          "cheap", "x/y", "-", "_"])
TOKEN_TEXT = st.lists(TOKENS, max_size=40).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.one_of(ANY_TEXT, TOKEN_TEXT), st.one_of(st.none(), ANY_TEXT, TOKEN_TEXT))
def test_any_text_parses(content, attachment):
    p = parse_task(content, DEFAULT_ALIASES, attachment_text=attachment)
    assert "\x00" not in p.description and p.description == p.description.strip()
    assert p.thinking in THINKING_LEVELS
    assert p.worker is None or re.fullmatch(r"[A-Za-z0-9_-]{1,32}", p.worker)
    assert (p.model is None) == any("model" in q for q in p.problems[:1])
    assert all(q and "\n" not in q for q in p.problems)


_LENIENT_TAG = re.compile(r"\[\s*(model|thinking|worker)\s*:[^\]]*\]", re.IGNORECASE)


def _markup_free(d: str) -> bool:
    """An independent (stricter) oracle: no tag-looking text anywhere, no header or placeholder at the start."""
    return not _LENIENT_TAG.search(d) and not d.startswith("**[") and not d.lower().startswith("(task text")


TAG_VALUES = st.fixed_dictionaries({
    "model_alias": st.one_of(st.none(), st.sampled_from(["cheap", "coder", "openrouter/x/y:free", "bogus"])),
    "thinking": st.one_of(st.none(), st.sampled_from(THINKING_LEVELS + ("bogus",))),
    "worker": st.one_of(st.none(), st.sampled_from(["w", "web-1", "a_b"])),
})
TASK_IDS = st.one_of(st.none(), st.from_regex(r"[1-9][0-9]{16,19}", fullmatch=True))


def _check_round_trip(d, task_id, tags):
    p = parse_task(format_task_message(d, task_id=task_id, **tags))
    assert p.description == d
    assert p.model_alias == (tags["model_alias"] or "primary")
    assert p.thinking == (tags["thinking"] if tags["thinking"] not in (None, "bogus") else "medium")
    assert p.worker == tags["worker"]
    # the attached form carries the same description
    a = parse_task(format_attached_task_message(len(d), task_id=task_id, **tags), attachment_text=d)
    assert (a.description, a.model_alias, a.thinking, a.worker) == (p.description, p.model_alias, p.thinking,
                                                                   p.worker)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(st.one_of(TOKEN_TEXT, ANY_TEXT), TASK_IDS, TAG_VALUES)
def test_description_round_trips(raw, task_id, tags):
    d = raw.replace("\x00", "").strip()
    assume(_markup_free(d))
    _check_round_trip(d, task_id, tags)


PLAIN = st.lists(st.sampled_from(["a", " ", "\n", "x y", "🙂", "[", "]", ":", "*"]), max_size=10).map("".join)
FENCED_TAG = st.sampled_from(["[model:cheap]", "[ thinking : low ]", "[worker:../x]", "\n[model:x]\n", "[model:]"])


@settings(max_examples=200, deadline=None)
@given(PLAIN, FENCED_TAG, PLAIN, TASK_IDS, TAG_VALUES)
def test_fenced_tags_round_trip(before, tag, after, task_id, tags):
    d = (before + "```py\n" + tag + "\n```" + after).strip()
    assume(_markup_free(d.replace(tag, "")))
    _check_round_trip(d, task_id, tags)
