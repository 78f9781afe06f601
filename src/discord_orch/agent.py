"""Run one ``openclaw agent`` as a supervised subprocess and classify its end.

House rule 3: the supervisor owns timeouts. The agent runs in its own session and
process group; past the deadline the whole group gets SIGTERM, after ``kill_grace_s``
SIGKILL; once the leader is gone every straggler of the group (and any process that
carries our ``DISCORD_ORCH_AGENT_ID`` marker, e.g. one that escaped with setsid) is
SIGKILLed. Nothing blocks: the orchestrator calls :meth:`RunningAgent.poll` with its
clock (wall-clock epoch seconds, so values survive a restart) until it returns True.

Classification (see :meth:`RunningAgent.outcome`):

=============  ===========================================================================
ok             exit 0, RESULT.txt non-empty, openclaw's JSON reports no error
failed         nonzero exit; or exit 0 without (or with an empty) RESULT.txt; or the JSON
               says ``{"ok":false,"error":...}``, ``payloads[].isError`` or ``meta.error``
timed_out      we signalled it at the deadline ("timed out after N s"); result/log kept
killed         ended by a signal we did not send for a timeout, or stopped by stop()
interrupted    (recovery only) found ended without evidence while no orchestrator watched
=============  ===========================================================================
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from discord_orch.errors import AgentError
from discord_orch.workspace import Workspace, files_left, open_regular

# Outcome statuses (house rule 3).
OK = "ok"
FAILED = "failed"
TIMED_OUT = "timed_out"
KILLED = "killed"            # stopped by a signal we did not send for a timeout (or orchestrator stop)
INTERRUPTED = "interrupted"  # found dead without a result by recovery after an orchestrator crash
STATUSES = (OK, FAILED, TIMED_OUT, KILLED, INTERRUPTED)

#: environment keys never passed to the agent
DEFAULT_SECRET_ENV_KEYS = ("CHIP_TOKEN", "ORCHESTRATOR_AGENT_TOKEN", "DISCORD_TOKEN")
#: secret values shorter than this are not used for value matching (they would match PATH...)
MIN_SECRET_VALUE_LEN = 8
AGENT_ID_ENV = "DISCORD_ORCH_AGENT_ID"
TASK_ID_ENV = "DISCORD_ORCH_TASK_ID"
AGENT_MESSAGE = "Complete the task in TASK.txt. Write result to RESULT.txt in {task_dir}/"

RESULT_READ_MAX = 8 * 1024 * 1024     # bytes of RESULT.txt we read at most
SUMMARY_READ_MAX = 256 * 1024
JSON_TAIL_MAX = 1024 * 1024           # bytes from the end of agent-output.json we parse
LOG_TAIL_BYTES = 64 * 1024
LOG_TAIL_LINES = 20
STRAGGLER_GIVE_UP_S = 5.0             # after the leader exited, stop waiting for unkillable ones
EXIT_COMMAND_NOT_FOUND = 127          # what env(1) and shells exit with when a program is missing
_DEAD_STATES = ("Z", "X", "x")        # /proc/<pid>/stat states of a process that is no more (zombie, dead)


@dataclass(frozen=True)
class Usage:
    """What openclaw's --json said about the run; None = unknown (shown as n/a)."""

    provider: Optional[str] = None
    model: Optional[str] = None
    input_tokens: Optional[int] = None
    output_tokens: Optional[int] = None
    cost_usd: Optional[float] = None


@dataclass(frozen=True)
class Outcome:
    """The classified end of one agent run, everything the report needs."""

    status: str                          # one of STATUSES
    duration_s: float
    exit_code: Optional[int] = None      # None when killed by a signal or unknown (adopted)
    signal: Optional[int] = None         # the signal that ended it, if any
    reason: str = ""                     # one line: why it failed / timed out ("" when ok)
    error_message: str = ""              # openclaw's own error message from its JSON, if any
    result_text: str = ""                # RESULT.txt, decoded with errors="replace", NULs removed
    summary_text: str = ""               # SUMMARY.txt, same decoding
    reply_text: str = ""                 # openclaw's payloads[].text joined (its chat answer)
    log_tail: str = ""                   # last 20 lines of agent-output.log
    files: Tuple[str, ...] = field(default_factory=tuple)  # files left in the task dir (relative)
    usage: Usage = field(default_factory=Usage)
    # --- added by agent.py (optional, at the end) ---
    result_truncated: bool = False       # RESULT.txt was larger than RESULT_READ_MAX: only its head is here
    result_bytes: Optional[int] = None   # size of RESULT.txt on disk (None: no RESULT.txt)


@dataclass(frozen=True)
class AgentConfig:
    """How to run agents. ``secret_values`` (e.g. the bot token) are also stripped by value."""

    openclaw_bin: str = "openclaw"
    local: bool = True
    timeout_s: float = 120.0
    kill_grace_s: float = 10.0
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


def missing_interpreter(program: str, path: Optional[str]) -> Optional[str]:
    """The interpreter ``program``'s ``#!`` line names that ``path`` cannot provide, if any."""
    try:
        with open(program, "rb") as fh:
            first = fh.readline(256)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode("utf-8", "replace").split()
    if not words:
        return None
    if os.path.basename(words[0]) != "env":
        return None if os.access(words[0], os.X_OK) else words[0]
    name = next((word for word in words[1:] if not word.startswith("-") and "=" not in word), None)
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


# ---------------------------------------------------------------- /proc helpers

def _proc_stat_fields(pid: int) -> Optional[List[str]]:
    """Fields of /proc/<pid>/stat after the command name: [state, ppid, pgrp, ...]."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    close = data.rfind(b")")
    if close < 0:
        return None
    return data[close + 2:].decode("ascii", "replace").split()


def process_start_ticks(pid: int) -> Optional[int]:
    """Start time of a process in clock ticks since boot (/proc/<pid>/stat field 22)."""
    fields = _proc_stat_fields(pid)
    try:
        return int(fields[19]) if fields else None
    except (IndexError, ValueError):
        return None


def _proc_state(pid: int) -> Optional[str]:
    fields = _proc_stat_fields(pid)
    return fields[0] if fields else None


def _alive(pid: int) -> bool:
    state = _proc_state(pid)
    return state is not None and state not in _DEAD_STATES


def _agent_id_of(pid: int) -> Optional[str]:
    """The DISCORD_ORCH_AGENT_ID in a process's environment, if any."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    key = AGENT_ID_ENV.encode() + b"="
    at = data.find(b"\0" + key)
    if at >= 0:
        at += 1
    elif data.startswith(key):
        at = 0
    else:
        return None
    end = data.find(b"\0", at)
    return data[at + len(key):end if end >= 0 else len(data)].decode("ascii", "replace")


class ProcessTable:
    """One walk of /proc over our own user's live processes, read on first use.

    Finding an agent's leftovers means looking at every process we own (its group
    members, and anything carrying its marker that escaped the group with setsid).
    Agents that end in the same supervision tick share one walk instead of each
    making its own, which kept the orchestrator's CPU per task growing with the
    number of agents. A snapshot only lives for one tick: a process forked after
    the walk is caught by the group kill or by the next tick's walk.
    """

    def __init__(self) -> None:
        self._live: Optional[Dict[int, int]] = None          # pid -> pgrp
        self._by_agent: Optional[Dict[str, List[int]]] = None

    def _walk(self) -> Dict[int, int]:
        if self._live is None:
            live: Dict[int, int] = {}
            for pid in _own_pids():
                fields = _proc_stat_fields(pid)
                if not fields or fields[0] in _DEAD_STATES:
                    continue
                try:
                    live[pid] = int(fields[2])
                except (IndexError, ValueError):
                    continue
            self._live = live
        return self._live

    def group_members(self, pgid: int) -> List[int]:
        return sorted(pid for pid, pgrp in self._walk().items() if pgrp == pgid)

    def carrying(self, agent_id: str) -> List[int]:
        """Live processes whose environment carries DISCORD_ORCH_AGENT_ID=agent_id."""
        if self._by_agent is None:
            by_agent: Dict[str, List[int]] = {}
            for pid in self._walk():
                found = _agent_id_of(pid)
                if found:
                    by_agent.setdefault(found, []).append(pid)
            self._by_agent = by_agent
        return sorted(self._by_agent.get(agent_id, ()))


def _own_pids() -> List[int]:
    uid = os.getuid()
    me = os.getpid()
    out = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if not name.isdigit():
            continue
        pid = int(name)
        if pid == me:
            continue
        try:
            if os.stat(f"/proc/{name}").st_uid != uid:
                continue
        except OSError:
            continue
        out.append(pid)
    return out


def find_agent_processes(agent_id: str) -> List[int]:
    """Live processes of our user whose environment carries DISCORD_ORCH_AGENT_ID=agent_id."""
    return ProcessTable().carrying(agent_id)


def kill_leftovers(agent_id: str) -> List[int]:
    """SIGKILL every live process carrying this agent's marker (what an unwatched agent left behind)."""
    pids = find_agent_processes(agent_id)
    for pid in pids:
        _kill(pid, signal.SIGKILL)
    return pids


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _signal_name(sig: Optional[int]) -> str:
    if sig is None:
        return "?"
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


# ---------------------------------------------------------------- reading files

def _clean(data: bytes) -> str:
    return data.decode("utf-8", errors="replace").replace("\x00", "")


def _trim_partial_utf8(data: bytes) -> bytes:
    """Drop a multi-byte UTF-8 sequence cut in half at the end of ``data``."""
    for back in range(1, min(4, len(data)) + 1):
        b = data[-back]
        if b & 0xC0 == 0x80:
            continue
        if b >= 0xC0:
            need = 2 if b < 0xE0 else 3 if b < 0xF0 else 4
            if back < need:
                return data[:-back]
        return data
    return data


def read_head(path: Path, limit: int) -> Tuple[Optional[str], Optional[int], bool]:
    """(text of the first ``limit`` bytes, size on disk, truncated); (None, None, False) if absent
    or not a regular file."""
    try:
        with open_regular(path) as fh:
            size = os.fstat(fh.fileno()).st_size
            data = fh.read(min(limit, size + 1))  # read(n) preallocates n bytes
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None, None, False
    except OSError:
        return None, None, False
    if size > len(data):
        return _clean(_trim_partial_utf8(data)), size, True
    return _clean(data), size, False


def _read_tail_bytes(path: Path, limit: int) -> Tuple[bytes, bool]:
    """The last ``limit`` bytes of a file and whether it was longer; b"" if absent or not a regular file."""
    try:
        with open_regular(path) as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > limit:
                fh.seek(size - limit)
                return fh.read(limit), True
            return fh.read(), False
    except OSError:
        return b"", False


def read_log_tail(path: Path, lines: int = LOG_TAIL_LINES, max_bytes: int = LOG_TAIL_BYTES) -> str:
    """The last ``lines`` lines of the last ``max_bytes`` bytes of a log."""
    data, cut = _read_tail_bytes(path, max_bytes)
    text = _clean(data)
    parts = text.splitlines()
    if cut and parts:
        parts = parts[1:]  # the first line was cut in the middle
    while parts and not parts[-1].strip():
        parts.pop()
    return "\n".join(parts[-lines:])


def _find_last_json_object(text: str) -> Optional[dict]:
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


def _interpret(obj: Optional[dict]) -> Tuple[Usage, str, str]:
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
    return _interpret(_find_last_json_object(text.replace("\x00", "")))


@dataclass(frozen=True)
class _Evidence:
    found_json: bool
    usage: Usage
    error_message: str
    reply_text: str
    result_text: Optional[str]
    result_bytes: Optional[int]
    result_truncated: bool
    summary_text: str
    log_tail: str
    files: Tuple[str, ...]


def _gather(ws: Workspace) -> _Evidence:
    data, _cut = _read_tail_bytes(ws.stdout_file, JSON_TAIL_MAX)
    obj = _find_last_json_object(_clean(data))
    usage, error_message, reply = _interpret(obj)
    result, rbytes, truncated = read_head(ws.result_file, RESULT_READ_MAX)
    summary, _s, _t = read_head(ws.summary_file, SUMMARY_READ_MAX)
    return _Evidence(found_json=obj is not None, usage=usage, error_message=error_message,
                     reply_text=reply, result_text=result, result_bytes=rbytes,
                     result_truncated=truncated, summary_text=summary or "",
                     log_tail=read_log_tail(ws.stderr_file), files=files_left(ws))


def _make(ev: _Evidence, status: str, duration_s: float, *, exit_code: Optional[int] = None,
          sig: Optional[int] = None, reason: str = "") -> Outcome:
    return Outcome(status=status, duration_s=max(0.0, float(duration_s)), exit_code=exit_code,
                   signal=sig, reason=reason, error_message=ev.error_message,
                   result_text=ev.result_text or "", summary_text=ev.summary_text,
                   reply_text=ev.reply_text, log_tail=ev.log_tail, files=ev.files,
                   usage=ev.usage, result_truncated=ev.result_truncated,
                   result_bytes=ev.result_bytes)


def _no_result_reason(ev: _Evidence) -> str:
    if ev.result_text is None:
        return "the agent wrote no RESULT.txt"
    return "the agent wrote an empty RESULT.txt"


def _classify_exit(ev: _Evidence, duration_s: float, exit_code: int) -> Outcome:
    if exit_code == EXIT_COMMAND_NOT_FOUND:
        return _make(ev, FAILED, duration_s, exit_code=exit_code,
                     reason=f"openclaw exited with code {exit_code}: a program it needs was not found (its log "
                            f"says which; under cron PATH is only {CRON_PATH}: run discord-orch check)")
    if exit_code != 0:
        return _make(ev, FAILED, duration_s, exit_code=exit_code,
                     reason=f"openclaw exited with code {exit_code}")
    if ev.error_message:
        return _make(ev, FAILED, duration_s, exit_code=0, reason="openclaw reported an error")
    if not (ev.result_text or "").strip():
        return _make(ev, FAILED, duration_s, exit_code=0, reason=_no_result_reason(ev))
    return _make(ev, OK, duration_s, exit_code=0)


def _classify_unknown_exit(ev: _Evidence, duration_s: float, status_hint: str,
                           reason: str) -> Outcome:
    """Exit status unknown (not our child): judge by openclaw's JSON and RESULT.txt."""
    if ev.error_message:
        return _make(ev, FAILED, duration_s, reason="openclaw reported an error")
    if ev.found_json:
        if (ev.result_text or "").strip():
            return _make(ev, OK, duration_s)
        return _make(ev, FAILED, duration_s, reason=_no_result_reason(ev))
    return _make(ev, status_hint, duration_s, reason=reason)


def outcome_from_workspace(ws: Workspace, *, status_hint: str, duration_s: float,
                           reason: str) -> Outcome:
    """Classify an agent that ended while nobody watched (recovery; exit code unknown).

    openclaw's JSON with an error → failed; JSON without error and a non-empty RESULT.txt
    → ok; JSON but no RESULT.txt → failed; no JSON at all (killed, crashed, never
    finished) → ``status_hint`` with ``reason`` (whatever RESULT.txt holds is kept).
    """
    if status_hint not in STATUSES:
        raise ValueError(f"status_hint must be one of {STATUSES}, got {status_hint!r}")
    return _classify_unknown_exit(_gather(ws), duration_s, status_hint, reason)


# ---------------------------------------------------------------- RunningAgent

def _fmt_s(seconds: float) -> str:
    return f"{seconds:g}" if seconds < 100 else f"{seconds:.0f}"


class RunningAgent:
    """One supervised agent run; see the module docstring. Not thread-safe."""

    def __init__(self, *, cfg: AgentConfig, ws: Workspace, task_id: str, pid: int, pgid: int,
                 proc_start_ticks: Optional[int], started_at: float,
                 popen: Optional["subprocess.Popen[bytes]"]) -> None:
        self.cfg = cfg
        self.ws = ws
        self.task_id = task_id
        self.agent_id = ws.agent_id
        self.pid = pid
        self.pgid = pgid
        self.proc_start_ticks = proc_start_ticks
        self.started_at = started_at
        self.deadline = started_at + cfg.timeout_s
        self.adopted = popen is None
        self._popen = popen
        self.term_sent_at: Optional[float] = None   # when SIGTERM went to the group
        self.kill_sent_at: Optional[float] = None   # when SIGKILL went to the group
        self.timed_out = False
        self.stop_reason: Optional[str] = None
        self.leader_exited_at: Optional[float] = None
        self.returncode: Optional[int] = None       # Popen style: -N = signal N
        self.finished_at: Optional[float] = None
        self.stragglers_left: Tuple[int, ...] = ()  # pids that would not die (rare: D state)

    # -- construction --------------------------------------------------------------

    @classmethod
    def start(cls, cfg: AgentConfig, ws: Workspace, *, task_id: str, session_id: str,
              model: str, thinking: str, now: float) -> "RunningAgent":
        """Spawn ``openclaw agent`` in its own session (AgentError when it cannot start)."""
        argv, env = build_command(cfg, ws, session_id=session_id, model=model, thinking=thinking)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        out_fd = err_fd = -1
        try:
            out_fd = os.open(ws.stdout_file, flags, 0o600)
            err_fd = os.open(ws.stderr_file, flags, 0o600)
            popen = subprocess.Popen(argv, cwd=os.fspath(ws.task_dir), env=env,
                                     stdin=subprocess.DEVNULL, stdout=out_fd, stderr=err_fd,
                                     start_new_session=True, close_fds=True)
        except OSError as exc:
            raise AgentError(argv[0], f"cannot start: {exc.strerror or exc}") from exc
        finally:
            for fd in (out_fd, err_fd):
                if fd >= 0:
                    os.close(fd)
        ticks = process_start_ticks(popen.pid)
        return cls(cfg=cfg, ws=ws, task_id=task_id, pid=popen.pid, pgid=popen.pid,
                   proc_start_ticks=ticks, started_at=now, popen=popen)

    @classmethod
    def adopt(cls, pid: int, pgid: int, proc_start_ticks: Optional[int], started_at: float,
              cfg: AgentConfig, ws: Workspace, task_id: str) -> Optional["RunningAgent"]:
        """Supervise an agent started by an earlier orchestrator process.

        Returns None unless ``pid`` is alive, has the recorded start ticks and carries
        ``DISCORD_ORCH_AGENT_ID=<ws.agent_id>`` in its environment.
        """
        if not isinstance(pid, int) or pid <= 1 or not isinstance(pgid, int) or pgid <= 1:
            return None
        if proc_start_ticks is None or process_start_ticks(pid) != proc_start_ticks:
            return None
        if not _alive(pid):
            return None
        if _agent_id_of(pid) != ws.agent_id:
            return None
        return cls(cfg=cfg, ws=ws, task_id=task_id, pid=pid, pgid=pgid,
                   proc_start_ticks=proc_start_ticks, started_at=started_at, popen=None)

    # -- supervision ---------------------------------------------------------------

    @property
    def proc_start(self) -> Optional[int]:
        """Alias of ``proc_start_ticks`` (what the state record stores)."""
        return self.proc_start_ticks

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    def _leader_exited(self) -> bool:
        """True once the leader has ended. Our own child is NOT reaped here (a zombie keeps
        its pid and pgid reserved, so killing the group stays safe until we reap)."""
        if self.leader_exited_at is not None:
            return True
        if self._popen is not None:
            if self._popen.returncode is not None:
                return True
            try:
                info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return True
            return info is not None and info.si_pid == self.pid
        # adopted: not our child; gone, recycled or a zombie all mean "ended"
        if process_start_ticks(self.pid) != self.proc_start_ticks:
            return True
        return not _alive(self.pid)

    def _signal_group(self, sig: int) -> None:
        if self._popen is not None or _alive(self.pid):
            # our child (alive or an unreaped zombie) or a verified live leader: the
            # group id cannot have been recycled
            _killpg(self.pgid, sig)
        else:
            for pid in ProcessTable().group_members(self.pgid):
                _kill(pid, sig)

    def _sweep(self, procs: ProcessTable) -> List[int]:
        """SIGKILL every remaining process of the agent; return those still alive."""
        victims = set(procs.group_members(self.pgid)) | set(procs.carrying(self.agent_id))
        victims.discard(os.getpid())
        if self._popen is not None:
            _killpg(self.pgid, signal.SIGKILL)
        for pid in victims:
            if pid != self.pid:
                _kill(pid, signal.SIGKILL)
        return [pid for pid in victims if pid != self.pid and _alive(pid)]

    def _reap(self) -> None:
        if self._popen is not None and self.returncode is None:
            try:
                self.returncode = self._popen.wait(timeout=5)
            except subprocess.TimeoutExpired:  # pragma: no cover - cannot happen after waitid
                self.returncode = None

    def poll(self, now: float, procs: Optional[ProcessTable] = None) -> bool:
        """Advance supervision; True when the run is over (and all its processes are gone).

        ``procs``: a ProcessTable to share with the other agents polled in the same tick."""
        if self.finished:
            return True
        if not self._leader_exited():
            if self.term_sent_at is None and now >= self.deadline:
                self.timed_out = True
                self.term_sent_at = now
                self._signal_group(signal.SIGTERM)
            elif (self.term_sent_at is not None and self.kill_sent_at is None
                  and now >= self.term_sent_at + self.cfg.kill_grace_s):
                self.kill_sent_at = now
                self._signal_group(signal.SIGKILL)
            return False
        if self.leader_exited_at is None:
            self.leader_exited_at = now
        survivors = self._sweep(procs or ProcessTable())  # while our zombie leader still holds the pgid
        if survivors and now - self.leader_exited_at < STRAGGLER_GIVE_UP_S:
            return False
        self.stragglers_left = tuple(survivors)
        self._reap()
        self.finished_at = now
        return True

    def stop(self, now: float, reason: str) -> None:
        """Begin terminating for an orchestrator shutdown (SIGTERM to the group now, SIGKILL
        after the grace, driven by poll()). The outcome is KILLED, unless the agent had
        already ended by itself or had already been timed out."""
        if self.finished or self.term_sent_at is not None or self._leader_exited():
            return
        self.stop_reason = reason or "stopped"
        self.term_sent_at = now
        self._signal_group(signal.SIGTERM)

    def wait(self, *, clock=time.time, interval: float = 0.05) -> Outcome:
        """Block, polling, until finished (for demos and tests); returns the outcome."""
        while not self.poll(clock()):
            time.sleep(interval)
        return self.outcome(clock())

    def remaining(self, now: float) -> float:
        return self.deadline - now

    # -- classification ------------------------------------------------------------

    def outcome(self, now: float) -> Outcome:
        """The classified outcome; only after poll() returned True."""
        if not self.finished:
            raise RuntimeError("outcome() before the agent finished; call poll() until it is True")
        end = self.leader_exited_at if self.leader_exited_at is not None else now
        duration = end - self.started_at
        ev = _gather(self.ws)
        rc = self.returncode
        exit_code = rc if rc is not None and rc >= 0 else None
        sig = -rc if rc is not None and rc < 0 else None
        if self.timed_out:
            return _make(ev, TIMED_OUT, duration, exit_code=exit_code, sig=sig,
                         reason=f"timed out after {_fmt_s(self.cfg.timeout_s)} s")
        if self.stop_reason is not None:
            return _make(ev, KILLED, duration, exit_code=exit_code, sig=sig,
                         reason=f"stopped by the orchestrator: {self.stop_reason}")
        if sig is not None:
            return _make(ev, KILLED, duration, sig=sig,
                         reason=f"killed by {_signal_name(sig)}")
        if exit_code is not None:
            return _classify_exit(ev, duration, exit_code)
        return _classify_unknown_exit(
            ev, duration, FAILED,
            "the agent ended without openclaw's JSON result (exit status unknown: adopted)")

    def __repr__(self) -> str:
        return (f"RunningAgent(agent_id={self.agent_id!r}, task_id={self.task_id!r}, "
                f"pid={self.pid}, adopted={self.adopted}, finished={self.finished})")
