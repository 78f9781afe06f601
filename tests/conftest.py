"""Shared fixtures: a local Discord world, a discord-orch home, the CLI as a user runs it.

Everything talks real HTTP to ``LocalDiscord`` on 127.0.0.1; the agent is the
stand-in ``openclaw`` executable (discord_orch.sim.standin_openclaw) named by
OPENCLAW_BIN. The CLI runs as a subprocess, so tests see real exit codes,
stdout and stderr.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from discord_orch.sim.localdiscord import LocalDiscord, RateLimits
from discord_orch.sim.world import STANDIN_BIN_DIR, LocalHome, World, make_world

SHARED = Path(__file__).resolve().parents[2] / "shared"

# Strict mode for every pass the tests run (in this process or a child): a request to Discord made on
# the pass's loop thread raises, so every test holds the rule that the loop never waits for the network.
os.environ["DISCORD_ORCH_STRICT_LOOP"] = "1"
CLI_TIMEOUT_S = 240


@pytest.fixture
def world():
    with LocalDiscord(rate_limits=RateLimits.off()) as ld:
        yield make_world(ld)


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


class Home(LocalHome):
    """A LocalHome and the CLI run in it; the stand-in logs each agent run to ``run_log``."""

    @property
    def run_log(self) -> Path:
        return Path(self.env["STANDIN_RUN_LOG"])

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


def make_home(tmp_path: Path, world: World, **config: str) -> Home:
    bin_dir = tmp_path / STANDIN_BIN_DIR
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DISCORD_ORCH", "CHIP_", "ORCHESTRATOR_", "OPENCLAW", "ALLOWED_", "ALLOW_"))}
    env.update(STANDIN_RUN_LOG=str(tmp_path / "agent-runs.jsonl"), PYTHONUNBUFFERED="1", DISCORD_ORCH_STRICT_LOOP="1",
               PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}")
    # the stand-in's run log and gates live outside an agent's view: tests of the fence say AGENT_SANDBOX
    config = {"AGENT_SANDBOX": "off", **config}
    return Home.build(tmp_path, world, env, POLL_INTERVAL="0.5", TIMEOUT="30", KILL_GRACE="1", **config)


@pytest.fixture
def home(tmp_path, world) -> Home:
    return make_home(tmp_path, world)


# ---------------------------------------------------------------- the real openclaw (tests/test_real_openclaw.py)

SKIP_REAL_OPENCLAW_ENV = "DISCORD_ORCH_SKIP_REAL_OPENCLAW"
_real_openclaw_skipped: List[str] = []


@pytest.fixture(scope="session")
def real_openclaw() -> Path:
    """The pinned openclaw from scripts/install-openclaw's cache (its ``--where`` step: no network).

    Not installed: the test fails with one line saying so, unless DISCORD_ORCH_SKIP_REAL_OPENCLAW=1,
    which skips it and has the run say so at its end (pytest_terminal_summary below)."""
    from discord_orch.sim import openclaw_install

    found = openclaw_install.installed_openclaw()
    if found is not None:
        return found
    if os.environ.get(SKIP_REAL_OPENCLAW_ENV) == "1":
        _real_openclaw_skipped.append(openclaw_install.not_installed_message())
        pytest.skip(f"{SKIP_REAL_OPENCLAW_ENV}=1 and {openclaw_install.not_installed_message()}")
    pytest.fail(f"the real openclaw is needed: {openclaw_install.not_installed_message()} "
                f"(or set {SKIP_REAL_OPENCLAW_ENV}=1 to skip these tests)", pytrace=False)


def pytest_terminal_summary(terminalreporter) -> None:
    if _real_openclaw_skipped:
        terminalreporter.write_sep("!", f"the REAL openclaw was NOT tested ({SKIP_REAL_OPENCLAW_ENV}=1): "
                                        f"{_real_openclaw_skipped[0]}", red=True, bold=True)
