"""Helpers for test_agent.py / test_workspace.py: a stand-in openclaw on disk, workspaces,
running an agent to its end with a hard wall-clock bound, and /proc checks."""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from pathlib import Path
from typing import List, Optional

from discord_orch import agent as A
from discord_orch import openclaw as OC
from discord_orch import outcome as O
from discord_orch import workspace as W
from discord_orch.sim.fleet import live_processes_marked  # noqa: F401  (independent of agent.py; tests import it here)
from discord_orch.sim.standin_openclaw import ESCAPEE_ENV, GATE_DIR_ENV, gate_path, write_standin_executable

SHARED = Path(__file__).resolve().parents[2] / "shared"
SAMPLES = SHARED / "openclaw" / "samples"
MODEL = "openrouter/moonshotai/kimi-k2.5"
_task_ids = itertools.count(123456789012345678)


def next_task_id() -> str:
    return str(next(_task_ids))


class Rig:
    """A temp dir with bin/openclaw (the stand-in), workers/, archive/ and a run log."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path
        self.bin_dir = tmp_path / "bin"
        self.openclaw = write_standin_executable(self.bin_dir)
        self.workers = tmp_path / "workers"
        self.archive = tmp_path / "archive"
        self.run_log = tmp_path / "runs.jsonl"
        self.user_config = tmp_path / "user-openclaw" / "openclaw.json"

    def config(self, **kw) -> OC.AgentConfig:
        base = dict(openclaw_bin=str(self.openclaw), timeout_s=20.0, kill_grace_s=0.5,
                    user_openclaw_config=self.user_config, sandbox="off")
        base.update(kw)
        return OC.AgentConfig(**base)

    def workspace(self, task: str, *, task_id: Optional[str] = None,
                  tools_md: Optional[str] = None) -> W.Workspace:
        agent_id = W.new_agent_id(time.time())
        task_id = task_id or next_task_id()
        probe = W.Workspace.at(self.workers, agent_id, task_id)
        md = W.render_agents_md(agent_id=agent_id, task_id=task_id, task_dir=probe.task_dir,
                                description=task, model=MODEL, thinking="low")
        return W.create_workspace(self.workers, agent_id, task_id, task, agents_md=md,
                                  tools_md=tools_md, user_openclaw_config=self.user_config)

    def start(self, task: str, cfg: Optional[OC.AgentConfig] = None, *, thinking: str = "low",
              model: str = MODEL):
        ws = self.workspace(task)
        ra = A.RunningAgent.start(cfg or self.config(), ws, task_id=ws.task_id,
                                  session_id=f"{ws.agent_id}-{ws.task_id}", model=model,
                                  thinking=thinking, now=time.time())
        return ws, ra

    def runs(self) -> List[dict]:
        if not self.run_log.exists():
            return []
        return [json.loads(line) for line in self.run_log.read_text().splitlines() if line]


def drive(ra: A.RunningAgent, limit_s: float = 30.0, interval: float = 0.02) -> O.Outcome:
    """poll() until finished, failing the test if it takes longer than ``limit_s``."""
    end = time.time() + limit_s
    while not ra.poll(time.time()):
        assert time.time() < end, f"agent {ra.agent_id} still not finished after {limit_s}s"
        time.sleep(interval)
    return ra.outcome(time.time())


def pids_with_marker(agent_id: str) -> List[int]:
    """Live processes carrying the agent's DISCORD_ORCH_AGENT_ID marker."""
    return live_processes_marked("DISCORD_ORCH_AGENT_ID", [agent_id])


def wait_for(predicate, limit_s: float = 5.0, interval: float = 0.02) -> bool:
    end = time.time() + limit_s
    while time.time() < end:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def gated(home, gate_dir: Path) -> None:
    """The home's agents find their gates (the stand-in's GATE=<n>) in ``gate_dir``."""
    home.env[GATE_DIR_ENV] = str(gate_dir)


def pass_adopting(home, task_id: str, gate_dir: Path, gate: str = "1", cap_s: float = 60.0) -> str:
    """A pass that adopts the running agent of ``task_id`` (its text says GATE=<gate>), whose gate opens only
    once the pass has said so: the agent cannot end first, as one with a SLEEP did on a loaded machine.
    Returns the pass's stderr; asserts it ended well."""
    proc = home.popen("orchestrate")
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "adopted task=" + task_id in line:
            break
    gate_path(gate_dir, gate).touch()   # also when it never said so: the pass ends, and the caller's assert shows
    _out, rest = proc.communicate(timeout=cap_s)
    stderr = "".join(seen) + rest
    assert proc.returncode == 0 and "Traceback" not in stderr, stderr[-3000:]
    return stderr


def escapees(agent_id: str):
    """The live processes a stand-in agent started in a session of their own (ESCAPE / ESCAPESID)."""
    return live_processes_marked(ESCAPEE_ENV, [agent_id])


def kill_escapees(agent_id: str) -> None:
    for pid in escapees(agent_id):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
