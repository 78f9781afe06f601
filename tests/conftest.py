"""Shared fixtures: a local Discord world, a discord-orch home, the CLI as a user runs it.

Everything talks real HTTP to ``LocalDiscord`` on 127.0.0.1; the agent is the
stand-in ``openclaw`` executable (discord_orch.standin_openclaw) named by
OPENCLAW_BIN. The CLI runs as a subprocess, so tests see real exit codes,
stdout and stderr.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from discord_orch.localdiscord import LocalDiscord, RateLimits
from discord_orch.standin_openclaw import write_standin_executable

SHARED = Path(__file__).resolve().parents[2] / "shared"
CLI_TIMEOUT_S = 240


@dataclass
class World:
    """A local Discord with a server, our bot, two humans and the three channels."""

    ld: LocalDiscord
    guild: str
    bot: object
    alice: object
    mallory: object
    task_queue: str
    results: str
    worker_pool: str

    def post(self, author, content: str, **kw) -> dict:
        return self.ld.post_message(self.task_queue, author.id, content, **kw)

    def results_messages(self) -> List[dict]:
        return self.ld.messages(self.results)

    def notices(self) -> str:
        return "\n".join(m["content"] for m in self.ld.messages(self.worker_pool))


def make_world(ld: LocalDiscord) -> World:
    guild = ld.create_guild("home")
    bot = ld.create_user("orch-bot", bot=True)
    alice = ld.create_user("alice")
    mallory = ld.create_user("mallory")
    for user in (bot, alice, mallory):
        ld.add_member(guild, user.id)
    return World(ld, guild, bot, alice, mallory, ld.create_channel(guild, "task-queue"),
                 ld.create_channel(guild, "results"), ld.create_channel(guild, "worker-pool"))


@pytest.fixture
def world():
    with LocalDiscord(rate_limits=RateLimits.off()) as ld:
        yield make_world(ld)


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Home:
    """A discord-orch home directory wired to a World, and the CLI run in it."""

    path: Path
    world: World
    env: Dict[str, str]
    run_log: Path
    config: Dict[str, str] = field(default_factory=dict)

    def write_config(self, **extra: str) -> None:
        self.config.update({k: str(v) for k, v in extra.items()})
        lines = [f"{k}={v}" for k, v in self.config.items()]
        cfg = self.path / "discord-config.env"
        cfg.write_text("\n".join(lines) + "\n", encoding="utf-8")
        os.chmod(cfg, 0o600)

    def cli(self, *args: str, input: Optional[str] = None, env: Optional[Dict[str, str]] = None,
            timeout: float = CLI_TIMEOUT_S) -> CliResult:
        proc = subprocess.run([sys.executable, "-m", "discord_orch", *args], cwd=self.path,
                              env={**self.env, **(env or {})}, input=input, capture_output=True,
                              text=True, timeout=timeout)
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    def popen(self, *args: str, env: Optional[Dict[str, str]] = None) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "discord_orch", *args], cwd=self.path,
                                env={**self.env, **(env or {})}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def runs(self) -> List[dict]:
        """One entry per agent run the stand-in saw."""
        if not self.run_log.exists():
            return []
        return [json.loads(line) for line in self.run_log.read_text().splitlines() if line.strip()]

    def ledger(self) -> List[str]:
        path = self.path / ".runtime" / "assigned-tasks.txt"
        return path.read_text().split() if path.exists() else []

    def workers(self) -> List[str]:
        return sorted(p.name for p in (self.path / "workers").iterdir() if not p.name.startswith("."))

    def archive(self) -> List[str]:
        return sorted(p.name for p in (self.path / "archive").iterdir() if not p.name.startswith("."))


def make_home(tmp_path: Path, world: World, **config: str) -> Home:
    path = tmp_path / "home"
    for sub in ("workers", ".runtime", "archive"):
        (path / sub).mkdir(parents=True)
    bin_dir = tmp_path / "bin"
    openclaw = write_standin_executable(bin_dir)
    run_log = tmp_path / "agent-runs.jsonl"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DISCORD_ORCH", "CHIP_", "ORCHESTRATOR_", "OPENCLAW", "ALLOWED_", "ALLOW_"))}
    env.update(STANDIN_RUN_LOG=str(run_log), PYTHONUNBUFFERED="1",
               PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}")
    home = Home(path, world, env, run_log)
    home.write_config(
        CHIP_TOKEN=world.bot.token,
        GUILD_ID=world.guild,
        TASK_QUEUE_CHANNEL=world.task_queue,
        RESULTS_CHANNEL=world.results,
        WORKER_POOL_CHANNEL=world.worker_pool,
        DISCORD_API_BASE_URL=world.ld.base_url,
        OPENCLAW_BIN=str(openclaw),
        OPENCLAW_CONFIG=str(tmp_path / "no-openclaw.json"),
        POLL_INTERVAL="0.5",
        TIMEOUT="30",
        KILL_GRACE="1",
        **config,
    )
    return home


@pytest.fixture
def home(tmp_path, world) -> Home:
    return make_home(tmp_path, world)
