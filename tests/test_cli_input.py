"""Every bad input gets one clear line, the right exit code, and nothing is posted.

The CLI runs as a subprocess (conftest ``home.cli``) against the loopback
Discord, so these are the exact lines a user sees on stderr. Each case also
checks that no request at all reached Discord when the input was refused
locally, and that nothing was posted to #task-queue.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from discord_orch.settings_spec import SETTINGS, Number
from discord_orch.tasks import MAX_TASK_BYTES

EXIT_USAGE, EXIT_CONFIG, EXIT_DISCORD = 2, 3, 4


def one_error_line(result) -> str:
    """stderr holds exactly one line, the error, and no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("discord-orch: error: "), lines[0]
    return lines[0]


@pytest.fixture
def files(tmp_path):
    d = tmp_path / "inputs"
    d.mkdir()
    (d / "binary.bin").write_bytes(b"\x7fELF\x02\x01\x01\xff\xfe\x00\x00garbage")
    (d / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (d / "nul.txt").write_bytes(b"do this\x00and that")
    (d / "blank.txt").write_text("  \n\t\n", encoding="utf-8")
    (d / "a-directory").mkdir()
    return d


# (argv, exit code, fragments the line must contain). {files} is the inputs directory.
BAD_INPUTS = [
    (["submit"], EXIT_USAGE, ["no task given", "--file"]),
    ([], EXIT_USAGE, ["no command given", "submit", "orchestrate", "discord-orch --help"]),
    (["frobnicate"], EXIT_USAGE, ["No such command 'frobnicate'", "discord-orch --help"]),
    (["submit", "--bogus", "task"], EXIT_USAGE, ["No such option", "--bogus", "discord-orch submit --help"]),
    (["submit", "--file"], EXIT_USAGE, ["'--file' requires an argument", "discord-orch submit --help"]),
    (["submit", "--worker"], EXIT_USAGE, ["'--worker' requires an argument", "discord-orch submit --help"]),
    (["submit", "task", "cheap", "low", "extra"], EXIT_USAGE, ["unexpected extra argument (extra)"]),
    (["submit", "task", "gpt-99"], EXIT_USAGE, ["unknown model 'gpt-99'", "cheap", "provider/model"]),
    (["submit", "task", "a/b c"], EXIT_USAGE, ["unknown model 'a/b c'"]),
    (["submit", "task", "cheap]"], EXIT_USAGE, ["unknown model 'cheap]'"]),
    (["submit", "task", "cheap", "extreme"], EXIT_USAGE, ["unknown thinking level 'extreme'", "xhigh"]),
    (["submit", "task", "--worker", "../etc"], EXIT_USAGE, ["bad worker type '../etc'"]),
    (["submit", "task", "--worker", "a b"], EXIT_USAGE, ["bad worker type 'a b'"]),
    # agent ids are public in #worker-pool; orchestrate never loads a workspace as a profile, so say it now
    (["submit", "task", "--worker", "agent-1700000000-abc123"], EXIT_USAGE,
     ["worker type 'agent-1700000000-abc123'", "agent-", "workspace"]),
    (["submit", "task", "--worker", "AGENT-x"], EXIT_USAGE, ["worker type 'AGENT-x'", "agent-"]),
    (["submit", ""], EXIT_USAGE, ["the task is empty"]),
    (["submit", " \n\t "], EXIT_USAGE, ["the task is empty"]),
    (["submit", "do this", "--file", "{files}/nul.txt"], EXIT_USAGE, ["either as TASK or with --file"]),
    (["submit", "--file", "{files}/blank.txt"], EXIT_USAGE, ["the task is empty"]),
    (["submit", "--file", "{files}/blank.txt", "cheap"], EXIT_USAGE, ["the task is empty"]),
    (["submit", "--file", "{files}/missing.txt"], EXIT_USAGE, ["'--file'", "No such file or directory"]),
    (["submit", "--file", "{files}/a-directory"], EXIT_USAGE, ["'--file'", "Is a directory"]),
    (["submit", "--file", "{files}/binary.bin"], EXIT_USAGE, ["is not UTF-8 text", "0xff"]),
    (["submit", "--file", "{files}/latin1.txt"], EXIT_USAGE, ["is not UTF-8 text", "0xe9"]),
    (["submit", "--file", "{files}/nul.txt"], EXIT_USAGE, ["contains NUL bytes"]),
    (["orchestrate", "--interval", "soon"], EXIT_USAGE, ["'--interval'", "'soon'"]),
    (["orchestrate", "--max-agents", "0"], EXIT_USAGE, ["'--max-agents'", "1<=x<=1000"]),
    (["orchestrate", "--timeout", "-5"], EXIT_USAGE, ["'--timeout'"]),
    (["orchestrate", "--watch", "now"], EXIT_USAGE, ["unexpected extra argument (now)"]),
    (["--home", "{files}/missing-home", "submit", "x"], EXIT_CONFIG, ["is not a directory"]),
    (["--home", "{files}/binary.bin", "submit", "x"], EXIT_USAGE, ["'--home'", "is a file"]),
]


@pytest.mark.parametrize("argv,code,fragments", BAD_INPUTS, ids=[" ".join(c[0]) or "(nothing)" for c in BAD_INPUTS])
def test_bad_command_line_gets_one_line_and_posts_nothing(home, world, files, argv, code, fragments):
    argv = [a.replace("{files}", str(files)) for a in argv]
    world.ld.reset_log()
    result = home.cli(*argv)
    assert result.returncode == code, result.stderr
    line = one_error_line(result)
    for fragment in fragments:
        assert fragment in line, line
    assert result.stdout == ""
    assert world.ld.requests == []
    assert world.ld.messages(world.task_queue) == []


def test_help_and_version_still_work(home):
    for argv in (["--help"], ["submit", "--help"], ["orchestrate", "-h"], ["--version"]):
        result = home.cli(*argv)
        assert result.returncode == 0 and result.stderr == "" and result.stdout, argv


# ----------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------
def config_path(home):
    return home.path / "discord-config.env"


def drop_key(home, key):
    home.config.pop(key)
    home.write_config()


@pytest.mark.parametrize("key,command", [
    ("CHIP_TOKEN", "submit"), ("CHIP_TOKEN", "orchestrate"), ("TASK_QUEUE_CHANNEL", "submit"),
    ("RESULTS_CHANNEL", "orchestrate"), ("WORKER_POOL_CHANNEL", "orchestrate"),
])
def test_missing_key_is_named(home, world, key, command):
    if key == "RESULTS_CHANNEL":   # empty is allowed with CLAIM=thread: results go to each task's thread
        home.write_config(CLAIM="reaction")
    drop_key(home, key)
    world.ld.reset_log()
    result = home.cli(*([command, "a task"] if command == "submit" else [command]))
    assert result.returncode == EXIT_CONFIG
    line = one_error_line(result)
    assert f"config: {key}: not set" in line and "discord-config.env" in line
    assert world.ld.requests == []


@pytest.mark.parametrize("value", ["#task-queue", "123", "12345678901234567890123", "<#1234567890123456789>"])
def test_malformed_channel_id_says_so(home, world, value):
    home.write_config(TASK_QUEUE_CHANNEL=value)
    result = home.cli("submit", "a task")
    assert result.returncode == EXIT_CONFIG
    line = one_error_line(result)
    assert "TASK_QUEUE_CHANNEL" in line and "is not a Discord id" in line and "Copy ID" in line
    assert world.ld.requests == []


def test_malformed_allowed_user_ids_says_so(home, world):
    home.write_config(ALLOWED_USER_IDS=f"{world.alice.id},alice")
    result = home.cli("orchestrate")
    assert result.returncode == EXIT_CONFIG
    line = one_error_line(result)
    assert "ALLOWED_USER_IDS" in line and "'alice' is not a Discord id" in line


def test_notices_in_the_task_queue_are_refused(home, world):
    """The bot's own posts always run: notices posted into #task-queue would become tasks."""
    home.write_config(WORKER_POOL_CHANNEL=world.task_queue)
    result = home.cli("orchestrate")
    assert result.returncode == EXIT_CONFIG
    line = one_error_line(result)
    assert "WORKER_POOL_CHANNEL" in line and "same channel as TASK_QUEUE_CHANNEL" in line
    assert world.ld.requests == []


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_readable_token_file_gets_a_chmod_warning(home, world, mode):
    os.chmod(config_path(home), mode)
    result = home.cli("submit", "a task")
    assert result.returncode == 0, result.stderr
    warning = [line for line in result.stderr.splitlines() if "chmod 600" in line]
    assert len(warning) == 1 and "WARNING" in warning[0] and str(config_path(home)) in warning[0]
    assert world.bot.token not in result.stderr


def test_private_token_file_gets_no_warning(home):
    result = home.cli("submit", "a task")
    assert result.returncode == 0 and result.stderr == ""


@pytest.mark.parametrize("written,suggested", [
    ("ALLOWED_USERS", "ALLOWED_USER_IDS"), ("RESULT_CHANNEL", "RESULTS_CHANNEL"), ("max_agents", "MAX_AGENTS"),
])
def test_unknown_key_gets_a_did_you_mean(home, written, suggested):
    home.write_config(**{written: "1"})
    result = home.cli("submit", "a task")
    assert result.returncode == 0, result.stderr
    assert f"unknown key {written}; did you mean {suggested}?" in result.stderr


@pytest.mark.parametrize("tail,fragments", [
    (b'ALLOWED_USER_IDS="123\nMAX_AGENTS=2\n', ["line {n}", "the ALLOWED_USER_IDS line", "quote"]),
    (b"just some words\n", ["line {n}", "expected KEY=value"]),
    (b"\xff\xfeX=1\n", ["line {n}", "is not UTF-8 text", "0xff"]),
    (b"\x00\x01\x02\x03", ["is not a text file", "NUL"]),
])
def test_broken_config_file_is_a_clear_error(home, world, tail, fragments):
    path = config_path(home)
    written = path.read_bytes()
    path.write_bytes(written + tail)
    fragments = [f.format(n=written.count(b"\n") + 1) for f in fragments]   # the line after the home's own
    world.ld.reset_log()
    result = home.cli("submit", "a task")
    assert result.returncode == EXIT_CONFIG
    line = one_error_line(result)
    assert str(path) in line
    for fragment in fragments:
        assert fragment in line, line
    assert world.ld.requests == []


def test_broken_token_line_never_shows_the_token(home, world):
    path = config_path(home)
    text = path.read_text().replace(f"CHIP_TOKEN={world.bot.token}", f'CHIP_TOKEN="{world.bot.token}')
    path.write_text(text)
    result = home.cli("-v", "submit", "a task")
    assert result.returncode == EXIT_CONFIG
    assert "the CHIP_TOKEN line" in one_error_line(result)
    assert world.bot.token not in result.stderr + result.stdout
    assert world.bot.token[-10:] not in result.stderr + result.stdout


@pytest.mark.parametrize("bad", ["\u201c{t}\u201d", "{t} extra", "{t}\u00e9"])
def test_token_with_impossible_characters_is_a_config_error_without_the_value(home, world, bad):
    home.write_config(CHIP_TOKEN=bad.format(t=world.bot.token))
    result = home.cli("-v", "submit", "a task")
    assert result.returncode == EXIT_CONFIG
    line = one_error_line(result)
    assert "CHIP_TOKEN" in line and "Reset Token" in line
    assert world.bot.token not in result.stderr
    assert world.ld.requests == []


def test_pasted_bot_prefix_and_inline_comment_still_work(home, world):
    home.write_config(CHIP_TOKEN=f"Bot {world.bot.token}  # from the portal")
    result = home.cli("submit", "a task")
    assert result.returncode == 0, result.stderr


def test_windows_bom_and_crlf_config_is_read(home, world):
    path = config_path(home)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    result = home.cli("submit", "a task")
    assert result.returncode == 0, result.stderr
    assert "unknown key" not in result.stderr


def test_the_example_config_reads_cleanly(tmp_path):
    from discord_orch.config import KNOWN_KEYS, read_config_file

    example = Path(__file__).resolve().parents[1] / "discord-config.env.example"
    values, warnings = read_config_file(example)
    assert warnings == []
    assert set(values) <= set(KNOWN_KEYS)
    commented = {line.lstrip("#").split("=", 1)[0] for line in example.read_text().splitlines()
                 if "=" in line and line.lstrip("#")[:1].isupper()}
    assert commented <= set(KNOWN_KEYS), commented - set(KNOWN_KEYS)


# ----------------------------------------------------------------------
# property: whatever is submitted fits in a message, and the text travels intact
# ----------------------------------------------------------------------
class _RecordingClient:
    def __init__(self):
        self.created, self.edited = [], []

    def create_message(self, channel, content, files=()):
        self.created.append((content, files))
        return SimpleNamespace(id="1234567890123456789")

    def edit_message(self, channel, message_id, content):
        self.edited.append(content)


TASKS = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1,
                max_size=4000).filter(lambda t: t.strip())


@settings(max_examples=200, deadline=None)
@given(TASKS, st.sampled_from([None, "cheap", "coder", "openrouter/x/" + "y" * 180]),
       st.sampled_from([None, "off", "xhigh"]), st.sampled_from([None, "w", "x" * 32]))
def test_any_submitted_task_fits_and_travels_intact(text, model, thinking, worker):
    from discord_orch.submit import submit_task, validate_submission
    from discord_orch.tasks import DEFAULT_ALIASES, MESSAGE_LIMIT

    validate_submission(text, model, thinking, worker, DEFAULT_ALIASES)
    client = _RecordingClient()
    submit_task(client, SimpleNamespace(task_queue_channel="1"), text, model, thinking, worker)
    [(content, files)] = client.created
    [final] = client.edited
    assert len(content) <= MESSAGE_LIMIT and len(final) <= MESSAGE_LIMIT
    assert final.startswith("**[Task: 1234567890123456789]** ")
    if files:
        [upload] = files
        assert upload.filename == "TASK.txt" and upload.data == text.encode("utf-8")
    else:
        assert text in final


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_task_file_is_one_line(home, world, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("a task")
    secret.chmod(0)
    result = home.cli("submit", "--file", str(secret))
    assert result.returncode == EXIT_USAGE
    assert "Permission denied" in one_error_line(result)
    assert world.ld.requests == []


def test_everyone_role_in_allowed_role_ids_is_flagged(home, world):
    home.write_config(ALLOWED_ROLE_IDS=world.guild)
    result = home.cli("submit", "a task")
    assert result.returncode == 0, result.stderr
    assert "the @everyone role" in result.stderr and "ALLOW_ANYONE=true" in result.stderr


NUMBER_KEYS = [s.key for s in SETTINGS if isinstance(s.parse, Number)]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400"])
@pytest.mark.parametrize("key", NUMBER_KEYS)
def test_a_number_setting_that_is_not_finite_is_a_config_error(home, world, key, value):
    """TIMEOUT=nan used to crash the pass after its first agent started; ARCHIVE_RETENTION_HOURS=nan
    pruned what was archived a moment ago. Every number is finite, or the key is named (exit 3)."""
    home.write_config(**{key: value})
    world.post(world.bot, "a task that must not run")
    world.ld.reset_log()
    result = home.cli("orchestrate")
    assert result.returncode == EXIT_CONFIG, result.stderr
    line = one_error_line(result)
    assert f"config: {key}: " in line and repr(value) in line
    assert world.ld.requests == [] and home.runs() == []


@pytest.mark.parametrize("key,value", [("TIMEOUT", "1e300"), ("ARCHIVE_RETENTION_HOURS", "1e30"),
                                       ("WATCHDOG", "1e20"), ("POLL_INTERVAL", "1e12")])
def test_a_number_setting_past_its_maximum_is_a_config_error(home, world, key, value):
    home.write_config(**{key: value})
    result = home.cli("orchestrate")
    assert result.returncode == EXIT_CONFIG, result.stderr
    assert f"config: {key}: must be between " in one_error_line(result)


@pytest.mark.parametrize("flag", ["--timeout", "--interval"])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_number_flag_that_is_not_finite_is_a_usage_error(home, world, flag, value):
    world.ld.reset_log()
    result = home.cli("orchestrate", flag, value)
    assert result.returncode == EXIT_USAGE, result.stderr
    line = one_error_line(result)
    assert f"'{flag}'" in line and "finite" in line
    assert world.ld.requests == []


@pytest.mark.parametrize("text,said", [("x" * 1_200_000, "is over 1,048,576 bytes"),
                                       ("é" * 600_000, "is 1,200,000 bytes")], ids=["ascii", "2-byte characters"])
def test_a_task_over_the_limit_is_refused_at_submit_with_the_number(home, world, tmp_path, text, said):
    """`orchestrate` reads at most MAX_TASK_BYTES of TASK.txt: submit refuses more, before any request
    (it used to post 1.2 MB, and the task was then refused as "could not be read")."""
    big = tmp_path / "big.txt"
    big.write_text(text, encoding="utf-8")
    world.ld.reset_log()
    result = home.cli("submit", "--file", str(big))
    assert result.returncode == EXIT_USAGE, result.stderr
    line = one_error_line(result)
    assert said in line and f"at most {MAX_TASK_BYTES:,} bytes" in line
    assert world.ld.requests == []


def test_a_task_at_the_limit_is_posted(home, world, tmp_path):
    exact = tmp_path / "exact.txt"
    exact.write_text("y" * MAX_TASK_BYTES, encoding="utf-8")
    result = home.cli("submit", "--file", str(exact))
    assert result.returncode == 0, result.stderr
    assert world.ld.attachment_bytes(world.task_queue, result.stdout.strip()) == b"y" * MAX_TASK_BYTES
