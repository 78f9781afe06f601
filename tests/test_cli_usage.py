"""The command line as a new user types it (issue 12): options where people put them.

The CLI runs as a subprocess (conftest ``home.cli``) against the loopback Discord;
each case asserts what the user sees: the exit code, stdout/stderr, and the
message that reached #task-queue.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

EXIT_USAGE = 2
SHARED_OPTIONS = ("--home", "-v, --verbose", "-q, --quiet", "--log-file")
COMMANDS = ("submit", "orchestrate", "check", "demo")


@pytest.fixture
def task_file(tmp_path):
    path = tmp_path / "task.txt"
    path.write_text("Summarise the report", encoding="utf-8")
    return path


def posted(world):
    [msg] = world.ld.messages(world.task_queue)
    return msg["content"]


# ---------------------------------------------------------------------------- submit: MODEL and THINKING

@pytest.mark.parametrize("argv", [
    ["submit", "--file", "{file}", "cheap", "low"],
    ["submit", "--file", "{file}", "--model", "cheap", "--thinking", "low"],
    ["submit", "--file", "{file}", "cheap", "--thinking", "low"],
    ["submit", "Summarise the report", "--model", "cheap", "--thinking", "low"],
    ["submit", "Summarise the report", "cheap", "low", "--model", "cheap"],   # the same twice: fine
])
def test_model_and_thinking_with_file_or_options(home, world, task_file, argv):
    result = home.cli(*[a.replace("{file}", str(task_file)) for a in argv])
    assert result.returncode == 0, result.stderr
    content = posted(world)
    assert content == f"**[Task: {result.stdout.strip()}]** Summarise the report [model:cheap] [thinking:low]"


@pytest.mark.parametrize("argv,fragment", [
    (["submit", "a task", "cheap", "--model", "coder"], "MODEL given twice, differently: 'cheap' and --model 'coder'"),
    (["submit", "a task", "cheap", "low", "--thinking", "high"],
     "THINKING given twice, differently: 'low' and --thinking 'high'"),
    (["submit", "--file", "{file}", "cheap", "--model", "coder"], "MODEL given twice"),
    (["submit", "--file", "{file}", "cheap", "low", "high"], "with --file, the arguments are MODEL and THINKING"),
    (["submit", "--model", "gpt-99", "a task"], "unknown model 'gpt-99'"),
    (["submit", "--thinking", "extreme", "a task"], "unknown thinking level 'extreme'"),
])
def test_conflicting_or_bad_model_is_one_usage_line(home, world, task_file, argv, fragment):
    world.ld.reset_log()
    result = home.cli(*[a.replace("{file}", str(task_file)) for a in argv])
    assert result.returncode == EXIT_USAGE
    [line] = result.stderr.splitlines()
    assert line.startswith("discord-orch: error: ") and fragment in line, line
    assert world.ld.requests == [] and world.ld.messages(world.task_queue) == []


# ---------------------------------------------------------------------------- -v -q --log-file --home after the command

def test_verbose_after_the_command(home):
    result = home.cli("orchestrate", "-v")
    assert result.returncode == 0, result.stderr
    assert " DEBUG " in result.stderr and "pass done: nothing to do" in result.stderr


def test_verbose_before_the_command_still_works(home):
    result = home.cli("-v", "orchestrate")
    assert result.returncode == 0 and " DEBUG " in result.stderr


def test_quiet_and_log_file_after_the_command(home, tmp_path):
    log_file = tmp_path / "logs" / "orch.log"
    result = home.cli("orchestrate", "-q", "--log-file", str(log_file))
    assert result.returncode == 0 and result.stderr == ""
    assert "pass done: nothing to do" in log_file.read_text()


def test_home_after_the_command(home, world, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = subprocess.run([sys.executable, "-m", "discord_orch", "submit", "a task", "--home", str(home.path)],
                          cwd=elsewhere, env=home.env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "a task" in posted(world)


def test_home_after_the_command_wins_over_the_one_before(home, world, tmp_path):
    empty = tmp_path / "empty-home"
    empty.mkdir()
    result = home.cli("--home", str(empty), "submit", "a task", "--home", str(home.path))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_lists_the_shared_options(home, command):
    result = home.cli(command, "--help")
    assert result.returncode == 0, result.stderr
    for option in SHARED_OPTIONS:
        assert option in result.stdout, (command, option)
