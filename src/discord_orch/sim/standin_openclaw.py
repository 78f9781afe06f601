"""A stand-in for the real ``openclaw`` CLI, for tests and ``discord-orch demo``.

``python -m discord_orch.sim.standin_openclaw agent [--local] --session-id ID --message TEXT
--model PROVIDER/MODEL --thinking LEVEL --json``

It accepts the real CLI's flags (../shared/openclaw/NOTES.md), validates them like it
(an unknown thinking level: exit 1 and the error JSON), finds TASK.txt in its workspace
(``agents.defaults.workspace`` of ``$OPENCLAW_CONFIG_PATH``, else
``$OPENCLAW_WORKSPACE_DIR``, else the cwd) and behaves by keywords (whole words) in it:

==============  ==========================================================================
(none)          RESULT.txt ``RESULT: <task text>`` and SUMMARY.txt, ok JSON, exit 0
FAIL            ``{"ok":false,"error":{"type":"cli_error","message":"LLM request failed: ..."}}``, exit 1
HANG            sleeps forever; ``HANG_CHILD`` also starts a child (same group) that sleeps forever
PARTIAL         first writes RESULT.txt ``PARTIAL: <task text>`` (work done so far; with HANG, before it hangs)
NOTERM          ignore SIGTERM (with HANG: only SIGKILL ends it)
CRASH           writes some log, then kills itself with SIGKILL
SLEEP=<s>       sleeps s seconds, then succeeds
GATE=<n>        waits until the file ``$STANDIN_GATE_DIR/gate-<n>`` exists (a test opens it when it is
                ready, instead of guessing a sleep long enough), then succeeds; after GATE_CAP_S it
                fails (exit 1), so a gate never opened shows
NORESULT        exit 0, ok JSON, no RESULT.txt
HUGE            5 MB on stdout (junk lines before the JSON) and on stderr, 200 kB RESULT.txt
BIGRESULT=<n>   RESULT.txt of n characters
BADBYTES        RESULT.txt (and log) with invalid UTF-8 and NUL bytes
COST=<usd>      report ``costUsd`` (and ``usage.cost.total``); otherwise both are absent
LINGER          succeed, leaving a child in the process group that sleeps forever
ESCAPE          succeed, leaving a child in a NEW session (outside the group) sleeping forever
LINKOUT         succeed, then make RESULT.txt, SUMMARY.txt and agent-output.* links to the file
                ``$STANDIN_LINK_FILE`` (a secret outside the workspace)
LOGFLOOD=<mb>   write mb MiB of log lines to stderr and to stdout (before its JSON), then succeed
LINKDIR         succeed, then move the workspace away and leave a link to ``$STANDIN_LINK_DIR`` in its place
LINKAGENT       succeed, then move its agent dir (workers/agent-*) away and leave a link to
                ``$STANDIN_LINK_DIR`` in its place
ESCAPESID       first start a child as ``setsid env -i`` would (new session, empty environment
                but ``STANDIN_ESCAPEE=<agent id>``: no marker), sleeping forever; then go on
HOSTILE         a prompt-injected agent (sim/hostile.py): tries to read the token (relative, absolute,
                /proc paths; the orchestrator's environ and mem), state.db and the ledger, other
                workspaces (running, kept), ~/.ssh; to write the config, workers/TOOLS.md, the venv,
                ~/.bashrc; to signal the orchestrator and a sibling agent; leaves an ESCAPESID child;
                writes each attempt (``SUCCEEDED``/``blocked``) and any token it found into RESULT.txt
==============  ==========================================================================

Usage is always input 200 / output 20; provider/model come from ``--model`` split at
the first ``/``. With ``STANDIN_RUN_LOG`` set, each run appends one JSON line
``{"task_id","session_id","argv","env_keys","env_has","env","cwd","pid"}``.

Standard library, and the workspace's file names from ``discord_orch.workspace``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..workspace import RESULT_FILE, STDERR_FILE, STDOUT_FILE, SUMMARY_FILE, TASK_FILE

THINKING_LEVELS = ("off", "minimal", "low", "medium", "high", "xhigh", "adaptive", "max", "ultra")
DEFAULT_MODEL = "standin/standin-model"
USAGE_INPUT = 200
USAGE_OUTPUT = 20
WATCHED_ENV = ("CHIP_TOKEN", "ORCHESTRATOR_AGENT_TOKEN", "DISCORD_TOKEN", "OPENCLAW_STATE_DIR",
               "OPENCLAW_CONFIG_PATH", "OPENCLAW_INCLUDE_ROOTS", "OPENCLAW_WORKSPACE_DIR",
               "DISCORD_ORCH_AGENT_ID", "DISCORD_ORCH_TASK_ID", "PYTHONPATH", "OPENCLAW_MODEL")

GATE_DIR_ENV = "STANDIN_GATE_DIR"
GATE_CAP_S = 120.0   # a test's own caps are shorter: a forgotten gate fails the test, not the stand-in
GATE_POLL_S = 0.05
ESCAPEE_ENV = "STANDIN_ESCAPEE"   # the one variable an ESCAPESID child keeps: how tests find it
_SLEEPER = "import signal, sys, time\n" \
           "if 'noterm' in sys.argv: signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" \
           "while True: time.sleep(3600)\n"


class UsageError(Exception):
    pass


def _emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _log(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _cli_error(message: str, as_json: bool) -> int:
    if as_json:
        _emit({"ok": False, "error": {"type": "cli_error", "message": message}})
    else:
        _log(f"Error: {message}")
    return 1


def parse_args(argv: List[str]) -> Dict[str, object]:
    """The subset of ``openclaw agent`` that discord-orch uses, parsed strictly."""
    if not argv or argv[0] != "agent":
        raise UsageError(f"unknown command {argv[0]!r}" if argv else "missing command (try 'agent')")
    opts: Dict[str, object] = {"local": False, "json": False, "session_id": None, "message": None,
                               "message_file": None, "model": None, "thinking": None,
                               "timeout": None}
    with_value = {"--session-id": "session_id", "-m": "message", "--message": "message",
                  "--message-file": "message_file", "--model": "model", "--thinking": "thinking",
                  "--timeout": "timeout"}
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "--local":
            opts["local"] = True
        elif arg == "--json":
            opts["json"] = True
        elif arg.split("=", 1)[0] in with_value:
            name, eq, val = arg.partition("=")
            if not eq:
                i += 1
                if i >= len(argv):
                    raise UsageError(f"option '{name}' argument missing")
                val = argv[i]
            opts[with_value[name]] = val
        else:
            raise UsageError(f"unknown option '{arg}'")
        i += 1
    if opts["message"] is None and opts["message_file"] is None:
        raise UsageError("required option '-m, --message <text>' not specified")
    return opts


def _workspace_dir() -> Path:
    cfg_path = os.environ.get("OPENCLAW_CONFIG_PATH")
    if cfg_path:
        try:
            with open(cfg_path, encoding="utf-8") as fh:
                ws = json.load(fh).get("agents", {}).get("defaults", {}).get("workspace")
            if isinstance(ws, str) and ws:
                return Path(ws)
        except (OSError, ValueError, AttributeError):
            pass
    env_ws = os.environ.get("OPENCLAW_WORKSPACE_DIR")
    if env_ws:
        return Path(env_ws)
    return Path.cwd()


def _has(word: str, text: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(word)}(?![A-Za-z0-9_=])", text) is not None


def _value(word: str, text: str) -> Optional[str]:
    m = re.search(rf"(?<![A-Za-z0-9_]){re.escape(word)}=([0-9]+(?:\.[0-9]+)?)", text)
    return m.group(1) if m else None


def _inputs_seen(workspace: Path) -> Dict[str, str]:
    """The files the task and its follow-ups came with (``inputs/``, ``inputs/turn-<n>/``), by path under
    ``inputs/``: their sha256, as the agent reads them."""
    import hashlib

    found: Dict[str, str] = {}
    inputs = workspace / "inputs"
    if inputs.is_dir():
        for path in sorted(inputs.rglob("*")):
            if path.is_file():
                found[path.relative_to(inputs).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _read_or_none(path: Path) -> Optional[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _write_run_log(opts: Dict[str, object], workspace: Path) -> None:
    path = os.environ.get("STANDIN_RUN_LOG")
    if not path:
        return
    env = dict(os.environ)
    record = {
        "task_id": env.get("DISCORD_ORCH_TASK_ID") or workspace.name,
        "agent_id": env.get("DISCORD_ORCH_AGENT_ID"),
        "session_id": opts.get("session_id"),
        "model": opts.get("model"),
        "thinking": opts.get("thinking"),
        "argv": list(sys.argv),
        "env_keys": sorted(env),
        "env_has": {k: k in env for k in WATCHED_ENV},
        "env": env,
        "cwd": os.getcwd(),
        "workspace": str(workspace),
        "pid": os.getpid(),
        "time": time.time(),
        "inputs": _inputs_seen(workspace),
        "agents_md": _read_or_none(workspace / "AGENTS.md"),
    }
    line = (json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8", "replace")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError as exc:   # outside a fenced agent's view (AGENT_SANDBOX): a test that reads it lets it in
        _log(f"[agent] run log not written: {exc}")
        return
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _spawn_sleeper(new_session: bool, noterm: bool, env: Optional[Dict[str, str]] = None) -> None:
    subprocess.Popen([sys.executable, "-c", _SLEEPER] + (["noterm"] if noterm else []),
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=new_session, close_fds=True, env=env)


def _ok_json(opts: Dict[str, object], provider: str, model: str, text: str,
             cost: Optional[float], started: float) -> dict:
    usage: Dict[str, object] = {"input": USAGE_INPUT, "output": USAGE_OUTPUT, "cacheRead": 0,
                                "cacheWrite": 0, "total": USAGE_INPUT + USAGE_OUTPUT}
    agent_meta: Dict[str, object] = {
        "sessionId": opts.get("session_id"),
        "sessionFile": f"agent:main:explicit:{opts.get('session_id')}",
        "provider": provider,
        "model": model,
        "contextTokens": 128000,
        "agentHarnessId": "openclaw",
        "usage": usage,
        "assistantTurns": 2,
    }
    if cost is not None:
        usage["cost"] = {"total": cost}
        agent_meta["costUsd"] = cost
    return {
        "payloads": [{"text": text, "mediaUrl": None}],
        "meta": {
            "durationMs": int((time.time() - started) * 1000),
            "agentMeta": agent_meta,
            "aborted": False,
            "stopReason": "stop",
            "requestShaping": {"thinking": opts.get("thinking")},
            "toolSummary": {"calls": 1, "tools": ["write"], "failures": 0},
            "standin": True,
        },
    }


def gate_path(gate_dir: Path, gate: str) -> Path:
    """The file that opens ``GATE=<gate>`` (tests create it)."""
    return Path(gate_dir) / f"gate-{gate}"


def _wait_for_gate(gate: str) -> None:
    path = gate_path(Path(os.environ.get(GATE_DIR_ENV, ".")), gate)
    _log(f"[agent] waiting for {path.name} (stand-in GATE)")
    deadline = time.monotonic() + GATE_CAP_S
    while not path.exists():
        if time.monotonic() > deadline:
            _log(f"[agent] {path.name} never appeared")
            sys.exit(1)
        time.sleep(GATE_POLL_S)


def _misbehave(task: str) -> None:
    """The keywords that change how the run goes: NOTERM, ESCAPESID, CRASH, HANG(_CHILD), SLEEP=, GATE=, LINGER, ESCAPE."""
    noterm = _has("NOTERM", task)
    if noterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if _has("ESCAPESID", task):  # as `docker run -d`, ssh, sudo or systemd-run leave one: no group, no marker
        _spawn_sleeper(new_session=True, noterm=noterm,
                       env={ESCAPEE_ENV: os.environ.get("DISCORD_ORCH_AGENT_ID", "")})
    if _has("CRASH", task):
        _log("[agent] starting turn (stand-in CRASH)")
        _log("[agent] about to crash")
        sys.stdout.write('{"partial": ')
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    if _has("HANG", task) or _has("HANG_CHILD", task):
        if _has("HANG_CHILD", task):
            _spawn_sleeper(new_session=False, noterm=noterm)
        _log("[agent] waiting for the model (stand-in HANG)")
        while True:
            time.sleep(3600)
    flood = _value("LOGFLOOD", task)
    if flood is not None:
        line = b"[agent] still thinking, still thinking, still thinking " + b"." * 199 + b"\n"  # 256 bytes
        chunk = line * 4096   # 1 MiB
        for _ in range(int(float(flood))):
            sys.stderr.buffer.write(chunk)
            sys.stdout.buffer.write(chunk)
        sys.stderr.buffer.write(b"[agent] LOGFLOOD done\n")
        sys.stderr.flush()
        sys.stdout.flush()
    sleep_s = _value("SLEEP", task)
    if sleep_s is not None:
        time.sleep(float(sleep_s))
    gate = _value("GATE", task)
    if gate is not None:
        _wait_for_gate(gate)
    if _has("LINGER", task):
        _spawn_sleeper(new_session=False, noterm=noterm)
    if _has("ESCAPE", task):
        _spawn_sleeper(new_session=True, noterm=noterm)


def _result_for(task: str) -> Tuple[Optional[bytes], str]:
    """RESULT.txt's bytes (None: no file) and the reply, by HUGE, BIGRESULT=, BADBYTES, NORESULT."""
    reply = f"Done. Wrote the result to {RESULT_FILE}."
    huge = _has("HUGE", task)
    if huge:
        junk = ("x" * 99 + "\n") * 10_000  # 1 MB
        for _ in range(5):
            sys.stdout.write(junk)
            sys.stderr.write(junk.replace("x", "e"))
        sys.stderr.write("[agent] HUGE log done\n")
        sys.stdout.flush()
        sys.stderr.flush()
    result: Optional[bytes] = ("RESULT: " + task).encode("utf-8", errors="replace")
    big = _value("BIGRESULT", task)
    if huge:
        result = (("R" * 99 + "\n") * 2048).encode()  # ~200 kB
    if big is not None:
        n = int(float(big))
        result = (("B" * 79 + "\n") * (n // 80 + 1))[:n].encode()
    if _has("BADBYTES", task):
        result = b"RESULT: bad \xff\xfe bytes \x00 and a NUL\x00 \xc3( end\n"
        sys.stderr.buffer.write(b"[agent] bad log bytes \xff\x00\xfe\n")
        sys.stderr.flush()
    if _has("NORESULT", task):
        result = None
        reply = "I could not finish: no file was written."
    return result, reply


def _plant_links(task: str, workspace: Path) -> None:
    """LINKOUT / LINKDIR: leave links where the orchestrator looks for what the agent left."""
    if _has("LINKOUT", task):
        for name in (RESULT_FILE, SUMMARY_FILE, STDOUT_FILE, STDERR_FILE):
            (workspace / name).unlink()
            (workspace / name).symlink_to(os.environ["STANDIN_LINK_FILE"])
    for keyword, where in (("LINKDIR", workspace), ("LINKAGENT", workspace.parent.parent)):
        if _has(keyword, task):
            where.rename(where.with_name(where.name + ".moved"))
            where.symlink_to(os.environ["STANDIN_LINK_DIR"], target_is_directory=True)


def run(argv: List[str]) -> int:
    started = time.time()
    as_json = "--json" in argv
    try:
        opts = parse_args(argv)
    except UsageError as exc:
        _log(f"error: {exc}")
        return 1
    _log("[plugins] warning: no plugins configured; continuing with the built-in tools (stand-in)")
    _log("[agent] note: embedded agent (--local), gateway not contacted (stand-in)")
    thinking = opts["thinking"]
    if thinking is not None and thinking not in THINKING_LEVELS:
        return _cli_error(f'Invalid thinking level "{thinking}". Use one of: '
                          + ", ".join(THINKING_LEVELS) + ".", as_json)
    state_dir = os.environ.get("OPENCLAW_STATE_DIR")
    if state_dir is not None and not os.path.isabs(state_dir):
        # the real CLI silently ends up with an empty state: no providers, no keys
        return _cli_error("No API key found for provider (empty state: OPENCLAW_STATE_DIR "
                          "is not absolute)", as_json)
    model_full = str(opts["model"] or DEFAULT_MODEL)
    provider, _, model = model_full.partition("/")
    if not model:
        provider, model = "standin", model_full

    workspace = _workspace_dir()
    _write_run_log(opts, workspace)
    try:
        raw = (workspace / TASK_FILE).read_bytes()
    except OSError as exc:
        return _cli_error(f"cannot read {TASK_FILE} in {workspace}: {exc.strerror}", as_json)
    task = raw.decode("utf-8", errors="replace")
    if task.startswith("TASK: "):
        task = task[len("TASK: "):]

    if _has("FAIL", task):
        _log("[agent] error: provider request failed (stand-in FAIL)")
        return _cli_error("LLM request failed: connection refused by the provider endpoint.",
                          as_json)
    if _has("PARTIAL", task):
        (workspace / RESULT_FILE).write_text("PARTIAL: " + task, encoding="utf-8")
    _misbehave(task)
    if _has("HOSTILE", task):
        from .hostile import attack
        _spawn_sleeper(new_session=True, noterm=False, env={ESCAPEE_ENV: os.environ.get("DISCORD_ORCH_AGENT_ID", "")})
        (workspace / RESULT_FILE).write_text(attack(workspace, opts), encoding="utf-8")
        _emit(_ok_json(opts, provider, model, "done", None, started))
        return 0
    cost_s = _value("COST", task)
    cost = float(cost_s) if cost_s is not None else None
    result, reply = _result_for(task)
    if result is not None:
        (workspace / RESULT_FILE).write_bytes(result)
        summary = "Summary: " + task.strip().replace("\n", " ")[:200]
        (workspace / SUMMARY_FILE).write_text(summary, encoding="utf-8")
    _plant_links(task, workspace)
    if opts["json"]:
        _emit(_ok_json(opts, provider, model, reply, cost, started))
    else:
        sys.stdout.write(reply + "\n")
    _log("[agent] turn finished")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    return run(list(sys.argv[1:] if argv is None else argv))


def write_standin_executable(bin_dir: "os.PathLike[str] | str", name: str = "openclaw") -> Path:
    """Write an executable ``bin_dir/name`` that runs this stand-in with this interpreter.

    Put ``bin_dir`` first on PATH, or pass the returned path as OPENCLAW_BIN. The script
    finds the package even when PYTHONPATH is changed (its source dir is baked in).
    """
    bin_path = Path(os.path.abspath(os.fspath(bin_dir)))
    bin_path.mkdir(parents=True, exist_ok=True)
    src_dir = str(Path(__file__).resolve().parents[2])  # src/, above discord_orch/sim/
    body = ("import sys\n"
            f"sys.path.insert(0, {src_dir!r})\n"
            "from discord_orch.sim.standin_openclaw import main\n"
            "sys.exit(main())\n")
    exe = sys.executable
    if exe and len(exe) < 120 and not any(c.isspace() for c in exe):
        script = f"#!{exe}\n" + body
    else:  # a shebang cannot hold this interpreter path: go through /bin/sh
        quoted = "'" + exe.replace("'", "'\\''") + "'"
        code = body.replace("'", "'\\''")
        script = f"#!/bin/sh\nexec {quoted} -c '{code}' \"$@\"\n"
    target = bin_path / name
    tmp = bin_path / f".{name}.tmp{os.getpid()}"
    tmp.write_text(script, encoding="utf-8")
    os.chmod(tmp, 0o755)
    os.replace(tmp, target)
    return target


if __name__ == "__main__":
    sys.exit(main())
