"""The openclaw program: finding it, the argv and environment it runs with, what its
exit code and its ``--json`` output mean.

It is looked up on PATH, then where npm, nvm, volta, bun and Homebrew put it (cron's
PATH has none of them); the directory it was found in goes in front of the agent's
PATH, for its ``#!/usr/bin/env node``. The task text is never on the command line,
only in TASK.txt. The agent's environment is ours minus the secrets (by key and by
value), plus OpenClaw's state/config/workspace variables and our markers
(``DISCORD_ORCH_AGENT_ID``, ``DISCORD_ORCH_TASK_ID``) by which its processes are
found again (procs.py). Its ``--json`` stdout is read tolerantly (junk skipped, the
last JSON object wins) into usage, openclaw's error message and its reply.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .errors import AgentError
from .outcome import Usage
from .workspace import Workspace

#: environment keys never passed to the agent
DEFAULT_SECRET_ENV_KEYS = ("CHIP_TOKEN", "ORCHESTRATOR_AGENT_TOKEN", "DISCORD_TOKEN")
#: secret values shorter than this are not used for value matching (they would match PATH...)
MIN_SECRET_VALUE_LEN = 8
AGENT_ID_ENV = "DISCORD_ORCH_AGENT_ID"
TASK_ID_ENV = "DISCORD_ORCH_TASK_ID"
AGENT_MESSAGE = "Complete the task in TASK.txt. Write result to RESULT.txt in {task_dir}/"
EXIT_COMMAND_NOT_FOUND = 127          # what env(1) and shells exit with when a program is missing


@dataclass(frozen=True)
class AgentConfig:
    """How to run agents. ``secret_values`` (e.g. the bot token) are also stripped by value."""

    openclaw_bin: str = "openclaw"
    local: bool = True
    timeout_s: float = 120.0
    kill_grace_s: float = 10.0
    cgroup: bool = True                  # each agent in a cgroup of its own where one can be made (cgroups.py)
    sandbox: str = "auto"                # AGENT_SANDBOX: the fence around it (sandbox.py)
    sandbox_read: Tuple[str, ...] = ()   # SANDBOX_READ_PATHS, SANDBOX_WRITE_PATHS
    sandbox_write: Tuple[str, ...] = ()
    user_openclaw_config: Path = field(
        default_factory=lambda: Path(os.path.expanduser("~/.openclaw/openclaw.json")))
    extra_pythonpath: Optional[str] = None
    secret_env_keys: Tuple[str, ...] = DEFAULT_SECRET_ENV_KEYS
    secret_values: Tuple[str, ...] = field(default=(), repr=False)  # the token: never in a repr


# ---------------------------------------------------------------- command

def _check_arg(name: str, value: str) -> str:
    if not isinstance(value, str) or not value or value.startswith("-") or any(
            ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"{name} must be a non-empty single-line value not starting with '-', "
                         f"got {value!r}")
    return value


def agent_env(cfg: AgentConfig, ws: Workspace,
              base: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """The agent's environment: ``base`` (default os.environ) minus secrets, plus ours."""
    source = os.environ if base is None else base
    secret_keys = set(DEFAULT_SECRET_ENV_KEYS) | set(cfg.secret_env_keys)
    secret_values = [v for v in cfg.secret_values if v and len(v) >= MIN_SECRET_VALUE_LEN]
    env: Dict[str, str] = {}
    for key, value in source.items():
        if key in secret_keys:
            continue
        if any(s in value for s in secret_values):
            continue
        env[key] = value
    user_cfg = Path(os.path.abspath(os.path.expanduser(os.fspath(cfg.user_openclaw_config))))
    env["OPENCLAW_STATE_DIR"] = os.fspath(ws.agent_dir)
    env["OPENCLAW_CONFIG_PATH"] = os.fspath(ws.overlay_config)
    env["OPENCLAW_INCLUDE_ROOTS"] = os.fspath(user_cfg.parent)
    env["OPENCLAW_WORKSPACE_DIR"] = os.fspath(ws.task_dir)
    env[AGENT_ID_ENV] = ws.agent_id
    env[TASK_ID_ENV] = ws.task_id
    env.pop("OPENCLAW_MODEL", None)  # not an openclaw variable (the seed's bug); --model is used
    if cfg.extra_pythonpath:
        old = env.get("PYTHONPATH")
        env["PYTHONPATH"] = cfg.extra_pythonpath + (os.pathsep + old if old else "")
    return env


#: where npm, nvm, volta, bun and Homebrew put a global ``openclaw``: cron's PATH
#: (/usr/bin:/bin) holds none of them, and the later shell scripts looked here too
FALLBACK_BIN_DIRS = ("~/.local/bin", "~/.npm-global/bin", "~/.volta/bin", "~/.bun/bin",
                     "~/.nvm/versions/node/*/bin", "/usr/local/bin", "/opt/homebrew/bin")
#: the PATH cron gives a job (Debian, Ubuntu, cronie)
CRON_PATH = "/usr/bin:/bin"


def _version_key(path: str) -> Tuple[int, ...]:
    """``~/.nvm/versions/node/v24.21.0/bin`` sorts after ``.../v9.1.0/bin``."""
    parts = [part for part in path.split(os.sep) if part[:1] == "v" and part[1:2].isdigit()]
    try:
        return tuple(int(n) for n in parts[-1][1:].split(".")) if parts else ()
    except ValueError:
        return ()


def resolve_openclaw(program: str, path: Optional[str] = None) -> str:
    """Absolute path of the openclaw executable, or AgentError.

    A bare name is looked up on ``path`` (default: our PATH), then in FALLBACK_BIN_DIRS
    (newest Node version first); a path with a slash is used as it is."""
    found = shutil.which(program, path=path) if program else None
    if not found and program and os.sep not in program:
        for pattern in FALLBACK_BIN_DIRS:
            for directory in sorted(glob.glob(os.path.expanduser(pattern)), key=_version_key, reverse=True):
                candidate = os.path.join(directory, program)
                if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                    return os.path.abspath(candidate)
    if not found:
        raise AgentError(program or "openclaw",
                         "not found on PATH nor in ~/.local/bin, ~/.npm-global/bin, ~/.volta/bin, ~/.bun/bin, "
                         "~/.nvm/versions/node/*/bin, /usr/local/bin; install openclaw or set OPENCLAW_BIN "
                         "to its full path")
    return os.path.abspath(found)


def path_for_agent(program: str, path: Optional[str]) -> str:
    """The agent's PATH: ours with the directory of ``program`` in front. npm, nvm and volta
    put ``node`` beside ``openclaw``, whose ``#!/usr/bin/env node`` needs it on PATH."""
    entries = [entry for entry in (path or "").split(os.pathsep) if entry]
    directory = os.path.dirname(program)
    return os.pathsep.join(entries if directory in entries else [directory, *entries])


def _shebang(program: str) -> Tuple[Optional[str], Optional[str]]:
    """What ``program``'s ``#!`` line runs: (an interpreter's path, None), or (None, a name that env finds on
    PATH); (None, None) without one."""
    try:
        with open(program, "rb") as fh:
            first = fh.readline(256)
    except OSError:
        return None, None
    words = first[2:].decode("utf-8", "replace").split() if first.startswith(b"#!") else []
    if not words:
        return None, None
    if os.path.basename(words[0]) != "env":
        return words[0], None
    return None, next((word for word in words[1:] if not word.startswith("-") and "=" not in word), None)


def interpreter(program: str, path: Optional[str]) -> Optional[str]:
    """The program ``program``'s ``#!`` line runs (through env: as found on ``path``), if any."""
    direct, name = _shebang(program)
    return direct or (shutil.which(name, path=path) if name else None)


def missing_interpreter(program: str, path: Optional[str]) -> Optional[str]:
    """The interpreter ``program``'s ``#!`` line names that ``path`` cannot provide, if any."""
    direct, name = _shebang(program)
    if direct:
        return None if os.access(direct, os.X_OK) else direct
    return name if name and shutil.which(name, path=path) is None else None


def build_command(cfg: AgentConfig, ws: Workspace, *, session_id: str, model: str,
                  thinking: str) -> Tuple[List[str], Dict[str, str]]:
    """argv and env for ``openclaw agent`` (no shell; the task text is only in TASK.txt)."""
    _check_arg("session_id", session_id)
    _check_arg("model", model)
    _check_arg("thinking", thinking)
    program = resolve_openclaw(cfg.openclaw_bin)
    argv = [program, "agent"]
    if cfg.local:
        argv.append("--local")
    argv += ["--session-id", session_id,
             "--message", AGENT_MESSAGE.format(task_dir=os.fspath(ws.task_dir)),
             "--model", model,
             "--thinking", thinking,
             "--json"]
    env = agent_env(cfg, ws)
    env["PATH"] = path_for_agent(program, env.get("PATH"))
    return argv, env


# ---------------------------------------------------------------- --json output

def find_last_json_object(text: str) -> Optional[dict]:
    """The last JSON object in ``text`` (the whole text, else one starting a line), or None."""
    text = text.strip()
    if not text:
        return None
    try:
        obj = json.loads(text)
        if isinstance(obj, dict):
            return obj
    except ValueError:
        pass
    decoder = json.JSONDecoder()
    # candidates: '{' at the start of a line, tried from the last one backwards
    starts = []
    pos = text.rfind("{")
    while pos >= 0 and len(starts) < 400:
        if pos == 0 or text[pos - 1] == "\n":
            starts.append(pos)
        pos = text.rfind("{", 0, pos)
    for start in starts:
        try:
            obj, _end = decoder.raw_decode(text, start)
        except ValueError:
            continue
        if isinstance(obj, dict):
            return obj
    return None


def _as_int(value: Any) -> Optional[int]:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _as_float(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _as_str(value: Any) -> Optional[str]:
    return value if isinstance(value, str) and value else None


def _dict(value: Any) -> Dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _error_text(err: Any) -> str:
    if isinstance(err, dict):
        msg = _as_str(err.get("message"))
        if msg:
            return msg
        kind = _as_str(err.get("kind")) or _as_str(err.get("type"))
        return kind or json.dumps(err, ensure_ascii=False)[:500]
    if isinstance(err, str):
        return err
    return "" if err in (None, False) else str(err)


def interpret_json(obj: Optional[dict]) -> Tuple[Usage, str, str]:
    """(usage, error_message, reply_text) from openclaw's parsed ``--json`` object (None: nothing)."""
    if obj is None:
        return Usage(), "", ""
    error_message = ""
    if obj.get("ok") is False or "error" in obj:
        error_message = _error_text(obj.get("error")) or "openclaw reported an error"
    payloads = obj.get("payloads")
    texts: List[str] = []
    payload_error = ""
    if isinstance(payloads, list):
        for p in payloads:
            p = _dict(p)
            text = p.get("text")
            if isinstance(text, str) and text:
                texts.append(text)
                if p.get("isError") and not payload_error:
                    payload_error = text
            elif p.get("isError") and not payload_error:
                payload_error = "openclaw reported an error"
    meta = _dict(obj.get("meta"))
    meta_error = meta.get("error")
    if not error_message and meta_error:
        error_message = _error_text(meta_error)
    if not error_message and payload_error:
        error_message = payload_error
    am = _dict(meta.get("agentMeta"))
    usage_d = _dict(am.get("usage"))
    cost = _as_float(am.get("costUsd"))
    if cost is None:
        cost = _as_float(_dict(usage_d.get("cost")).get("total"))
    usage = Usage(provider=_as_str(am.get("provider")), model=_as_str(am.get("model")),
                  input_tokens=_as_int(usage_d.get("input")),
                  output_tokens=_as_int(usage_d.get("output")), cost_usd=cost)
    return usage, error_message, "\n\n".join(texts)


def parse_openclaw_json(text: str) -> Tuple[Usage, str, str]:
    """(usage, error_message, reply_text) from openclaw's ``--json`` stdout.

    Tolerant: junk before the JSON is skipped (the last JSON object wins); no JSON gives
    ``(Usage(), "", "")``. ``error_message`` is non-empty for ``{"ok":false,"error":...}``,
    ``meta.error`` or a payload with ``isError``. Cost: ``meta.agentMeta.costUsd``, else
    ``usage.cost.total``; 0 is a real value, missing is None.
    """
    return interpret_json(find_last_json_object(text.replace("\x00", "")))

