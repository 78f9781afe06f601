"""Issue 16: the real openclaw, not only the stand-in, run by ``discord-orch orchestrate``.

The pinned openclaw (scripts/install-openclaw; found through its cache by the ``real_openclaw``
fixture) runs against the local model server (discord_orch.sim.model_server) and the local
Discord, as a user runs it: submit, orchestrate, look at #results and at what the model
server received. These catch what the stand-in cannot: a changed flag, a changed ``--json``,
a config key openclaw no longer reads, the first-run ritual coming back. Each run costs
about 10 s and up to 1 GB of memory (NOTES.md), so they are few: one success, one provider
failure, one timeout.

What openclaw 2026.9.6 was seen to do here (beyond ../shared/openclaw/NOTES.md):
- ``agents.defaults.workspace`` in the overlay openclaw.json does point the agent at the task
  dir (the NOTES had not tried it): AGENTS.md is in the system prompt, RESULT.txt lands there.
- It answers a provider's HTTP 400 at once (exit 1, "LLM request failed: provider rejected
  the request schema or tool payload."); a 500 it retries (8 requests over about 95 s, then
  exit 1, "... request failed (provider internal error, HTTP 500) ..."), so no test uses it.
- It takes 4-11 s (2 CPUs) from start to its first model request; ``meta.durationMs`` counts
  only the turn (about 5 s of a 10-12 s run).
- SIGTERM while it waits on the model: it aborts the request and exits 143 by itself.
- Its stderr log is coloured (ANSI escapes) even into a file; the log tail in a post shows them.
- Its ``exec`` tool gets the agent's environment (the markers; never the token: checked below).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from discord_orch.landlock import abi_version
from discord_orch.sandbox import _probe_bwrap

from conftest import make_home
from helpers_agent import pids_with_marker
from discord_orch.sim import openclaw_install
from discord_orch.sim.model_server import API_KEY, COMPLETION_TOKENS, PROMPT_TOKENS, PROVIDER, ModelServer

INSTALLER = Path(__file__).resolve().parents[1] / "scripts" / "install-openclaw"
UNREACHABLE_REGISTRY = "http://127.0.0.1:9/"   # the discard port: nothing listens there

RUN_TIMEOUT_S = 120   # a run that should end by itself: openclaw's start-up (3-11 s here) has room on a busy machine
TIMEOUT_S = 45        # the hung model's test: well over openclaw's start-up before it calls the model (3-11 s
                     # alone; over 20 s seen with three suites at once on 2 CPUs)
FENCES = [pytest.param("bwrap", marks=pytest.mark.skipif(not _probe_bwrap()[0], reason="no working bwrap")),
          pytest.param("landlock", marks=pytest.mark.skipif(not abi_version()[0], reason="no Landlock"))]
AGENT_RE = re.compile(r"agent `(agent-[0-9a-z-]+)`")


@pytest.fixture
def model_server():
    with ModelServer() as ms:
        yield ms


@pytest.fixture(params=["off", *FENCES])
def real_home(request, tmp_path, world, real_openclaw, model_server):
    """A home running the real openclaw; the user's OpenClaw config has one provider: the model server.
    Each test runs unfenced and under each fence the machine has (bubblewrap, Landlock)."""
    user_config = tmp_path / "user-openclaw" / "openclaw.json"
    user_config.parent.mkdir()
    model_server.openclaw_config(user_config)  # default model local/model-a; tasks here ask for model-b
    home = make_home(tmp_path, world, AGENT_SANDBOX=request.param)
    home.write_config(OPENCLAW_BIN=real_openclaw, OPENCLAW_CONFIG=user_config, TIMEOUT=RUN_TIMEOUT_S)
    return home


def run_one(home, world, *, model: str = f"{PROVIDER}/model-b", env=None):
    """Submit one task, run one pass; its single result post."""
    sub = home.cli("submit", "Name three prime numbers", model, "low")
    assert sub.returncode == 0, sub.stderr
    task_id = sub.stdout.strip()
    run = home.cli("orchestrate", env=env)
    assert run.returncode == 0, run.stderr
    posts = [m["content"] for m in world.results_messages() if task_id in m["content"]]
    assert len(posts) == 1, [m["content"] for m in world.results_messages()]
    return posts[0]


def assert_token_never_reached(model_server, token: str) -> None:
    assert model_server.requests
    for request in model_server.requests:
        assert token.encode() not in request.raw
        assert all(token not in value for value in request.headers.values())


def test_a_task_and_its_follow_up_run_through_the_real_openclaw(real_home, world, model_server):
    """RESULT.txt posted; the task's model in the request; the user's provider and key used;
    our AGENTS.md in the prompt and no first-run ritual; usage from --json in the header; and the
    token, also left in the orchestrator's environment, never in what the model server got, even
    through the agent's own environment (the model has openclaw run `env` first). Then a follow-up
    in the task's thread (issue 14) runs openclaw again with the same state dir and --session-id:
    the model gets the first turn (its messages, tool calls, answer) with the second."""
    model_server.commands = ("env",)
    token = world.bot.token
    real_home.write_config(ALLOWED_USER_IDS=world.alice.id, FOLLOWUP_HOURS=1)
    post = run_one(real_home, world, env={"SOME_COPY_OF_IT": f"prefix-{token}-suffix"})

    assert post.startswith("✅ **DONE**"), post
    assert "```\nRESULT: Name three prime numbers\n```" in post   # the task, read from AGENTS.md in the prompt
    calls = model_server.completions()
    assert len(calls) == 3   # exec env, write RESULT.txt, the final answer
    assert f"{len(calls) * PROMPT_TOKENS:,} in / {len(calls) * COMPLETION_TOKENS:,} out tokens" in post
    assert f"model `{PROVIDER}/model-b`" in post and "(requested)" not in post   # openclaw reported it
    for call in calls:
        assert call.body["model"] == "model-b" and call.body["stream"] is True
        assert call.headers.get("authorization") == f"Bearer {API_KEY}"   # the user's config, $included
        prompt = call.system_prompt()
        assert "You are a fresh agent started by discord-orch" in prompt   # our AGENTS.md
        assert "Bootstrap" not in prompt and "BOOTSTRAP.md" not in prompt
    assert "BOOTSTRAP.md" not in post and "SOUL.md" not in post   # no ritual's files left either
    env_output = [m["content"] for m in calls[1].body["messages"] if m.get("role") == "tool"][0]
    assert "DISCORD_ORCH_AGENT_ID=agent-" in env_output
    assert_token_never_reached(model_server, token)

    [task_id] = [m["id"] for m in world.ld.messages(world.task_queue) if "Name three prime numbers" in m["content"]]
    followup = world.ld.post_message(task_id, world.alice.id, "Now name two more")
    second = real_home.cli("orchestrate", env={"SOME_COPY_OF_IT": f"prefix-{token}-suffix"})
    assert second.returncode == 0, second.stderr
    [answer] = [m for m in world.ld.messages(task_id)
                if (m.get("message_reference") or {}).get("message_id") == followup["id"]]
    assert answer["content"].startswith("✅ **DONE**"), answer["content"]
    history = model_server.completions()[len(calls)].body["messages"]   # the second turn's first request
    assert len([m for m in history if m.get("role") == "user"
                and "Complete the task in TASK.txt" in str(m.get("content"))]) == 2   # the first turn's, this one's
    assert any(m.get("role") == "tool" and "DISCORD_ORCH_AGENT_ID=agent-" in str(m.get("content"))
               for m in history)                                 # the first turn's tool call and its result
    assert any(m.get("role") == "assistant" and "Done. The result is in RESULT.txt." in str(m.get("content"))
               for m in history)                                 # and its answer
    assert len(real_home.workers()) == 1                         # kept for more follow-ups
    assert_token_never_reached(model_server, token)


def test_a_provider_failure_posts_openclaws_own_error(real_home, world, model_server):
    model_server.mode = "400"
    post = run_one(real_home, world)

    assert post.startswith("❌ **FAILED**"), post
    assert "**Why:** openclaw exited with code 1" in post
    assert "**openclaw said:**\n```\nLLM request failed: provider rejected the request schema" in post
    assert len(model_server.completions()) == 1   # a 400 is not retried
    assert_token_never_reached(model_server, world.bot.token)


def test_an_agent_waiting_on_a_hung_model_times_out_and_its_group_is_killed(real_home, world, model_server):
    model_server.mode = "hang"
    real_home.write_config(TIMEOUT=TIMEOUT_S)
    post = run_one(real_home, world)

    assert post.startswith("⏱ **TIMED OUT**"), post
    assert f"timed out after {TIMEOUT_S} s" in post
    assert model_server.completions(), "openclaw never reached the model: the timeout hit its start-up"
    agent_id = AGENT_RE.search(post).group(1)
    assert pids_with_marker(agent_id) == []   # openclaw and all it started are gone
    assert_token_never_reached(model_server, world.bot.token)


# ---------------------------------------------------------------- the installer and the demo (no real openclaw needed)

def installer(cache: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """scripts/install-openclaw with its cache under ``cache`` and npm's registry unreachable."""
    return subprocess.run([sys.executable, str(INSTALLER), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "XDG_CACHE_HOME": str(cache), "npm_config_registry": UNREACHABLE_REGISTRY,
                               **env})


def test_where_says_how_to_install_when_nothing_is_installed(tmp_path):
    where = installer(tmp_path, "--where")
    assert where.returncode == 1 and where.stdout == ""
    assert where.stderr.splitlines() == [
        f"install-openclaw: openclaw {openclaw_install.OPENCLAW_VERSION} is not installed in "
        f"{tmp_path / 'discord-orch' / f'openclaw-{openclaw_install.OPENCLAW_VERSION}'}; "
        "install it with scripts/install-openclaw (from a clone of discord-orch)"]


@pytest.mark.skipif(shutil.which("npm") is None, reason="the installer needs npm")
def test_an_unreachable_registry_is_one_line_and_leaves_no_partial_install(tmp_path):
    root = tmp_path / "discord-orch"
    stale = root / f".openclaw-{openclaw_install.OPENCLAW_VERSION}.tmp-killed"   # a killed install's
    (stale / "node").mkdir(parents=True)
    run = installer(tmp_path)
    assert run.returncode == 1 and run.stdout == ""
    failure = run.stderr.splitlines()[-1]
    assert failure.startswith("install-openclaw: cannot install Node ") and "Traceback" not in run.stderr
    assert f"{UNREACHABLE_REGISTRY} cannot be reached" in failure and "ECONNREFUSED" in failure
    assert sorted(p.name for p in root.iterdir()) == [f".openclaw-{openclaw_install.OPENCLAW_VERSION}.lock"]


def test_a_complete_install_is_reused_without_the_network(tmp_path):
    target = tmp_path / "discord-orch" / f"openclaw-{openclaw_install.OPENCLAW_VERSION}"
    (target / "bin").mkdir(parents=True)
    (target / "bin" / "openclaw").write_text("#!/bin/sh\n")
    (target / "bin" / "openclaw").chmod(0o755)
    (target / ".complete").write_text(openclaw_install.stamp())
    for args in ((), ("--where",)):
        run = installer(tmp_path, *args)
        assert (run.returncode, run.stdout, run.stderr) == (0, f"{target / 'bin' / 'openclaw'}\n", "")
    (target / ".complete").write_text("openclaw 2000.1.1 node 24.0.0\n")   # another version's: not reused
    assert installer(tmp_path, "--where").returncode == 1


def test_demo_real_agent_without_the_install_says_how_to_install_it(tmp_path):
    demo = subprocess.run([sys.executable, "-m", "discord_orch", "demo", "--real-agent"], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path, env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)})
    assert demo.returncode != 0 and "Traceback" not in demo.stderr
    version = openclaw_install.OPENCLAW_VERSION
    assert demo.stderr.splitlines() == [
        f"discord-orch: error: agent 'openclaw': openclaw {version} is not installed in "
        f"{tmp_path / 'discord-orch' / f'openclaw-{version}'}; install it with scripts/install-openclaw "
        "(from a clone of discord-orch); or drop --real-agent to use the stand-in"]


@pytest.mark.parametrize("fence", FENCES)
def test_openclaws_exec_tool_is_fenced_too(tmp_path, world, real_openclaw, model_server, fence):
    """The model has openclaw's exec tool read the config (not there, or refused) and write a file
    in the workspace (kept); the token reaches neither the model nor a post."""
    user_config = tmp_path / "user-openclaw" / "openclaw.json"
    user_config.parent.mkdir()
    model_server.openclaw_config(user_config)
    home = make_home(tmp_path, world, AGENT_SANDBOX=fence)
    home.write_config(OPENCLAW_BIN=real_openclaw, OPENCLAW_CONFIG=user_config, TIMEOUT=RUN_TIMEOUT_S,
                      KEEP_SUCCESS_HOURS=1)
    config = home.path / "discord-config.env"
    model_server.commands = (f"cat {config} ../../../../discord-config.env; echo made > made-by-exec.txt; echo exec-ran",)
    post = run_one(home, world)

    assert post.startswith("✅ **DONE**"), post
    tool_output = [m["content"] for m in model_server.completions()[1].body["messages"] if m.get("role") == "tool"][0]
    assert "exec-ran" in str(tool_output), tool_output
    assert "CHIP_TOKEN" not in str(tool_output) and world.bot.token not in str(tool_output), tool_output
    assert world.bot.token not in post
    [kept] = home.archive()
    assert [p.read_text() for p in (home.path / "archive" / kept).rglob("made-by-exec.txt")] == ["made\n"]
    assert_token_never_reached(model_server, world.bot.token)
