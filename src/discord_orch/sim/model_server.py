"""A local OpenAI-compatible model server that drives the real openclaw through one task.

``POST /v1/chat/completions`` as openclaw 2026.9.6 sends it (../shared/openclaw/samples/
request-*.json): ``stream: true`` with ``stream_options.include_usage``, its tools (the file
tool is ``write {path, content}``), a long system prompt holding the workspace's AGENTS.md.
It answers the first request of a turn with a tool call that writes RESULT.txt (after one
``exec`` call for each of ``commands``, if any: the step is the number of ``role: "tool"``
messages since the turn's user message), then with a final text; each answer
carries usage (``prompt_tokens``/``completion_tokens``), as server-sent events when asked to
stream, else one JSON object. RESULT.txt says ``RESULT: <the task>``, the task read from the
"## Your task" section of AGENTS.md in the system prompt (so a result proves that AGENTS.md
reached the prompt), and it is written to the absolute task dir named in the user message.

``mode`` makes it fail instead: ``"500"`` / ``"400"`` (an OpenAI-style error body), ``"hang"``
(the request is read and never answered, until the server stops). Every request is logged
(``requests``: method, path, headers, raw body, parsed body) for tests to look at.

Used by tests/test_real_openclaw.py and ``discord-orch demo --real-agent``; ``openclaw_config``
writes an OpenClaw config whose one provider is this server (no API key of anyone's).
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

PROVIDER = "local"
MODELS = ("model-a", "model-b")
API_KEY = "sk-local-model-server"   # openclaw wants one; this server checks nothing
PROMPT_TOKENS = 1000                # usage reported for each answer
COMPLETION_TOKENS = 50
MODES = ("ok", "500", "400", "hang")
#: openclaw wraps its own context in a user message like this; it is not the turn's user message
INTERNAL_CONTEXT = "<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>"
_TASK_RE = re.compile(r"^## Your task \(task \d+\)\n\n(.*?)\n\nThe task is also in TASK\.txt", re.S | re.M)
_TASK_DIR_RE = re.compile(r"Write result to RESULT\.txt in (/\S*?)/?(?:\s|$)")
MAX_BODY_BYTES = 16 * 1024 * 1024


@dataclass
class Request:
    """One request the server got."""

    method: str
    path: str
    headers: Dict[str, str]          # names lower-cased
    raw: bytes
    body: Any = None

    def system_prompt(self) -> str:
        return "\n".join(_text(m.get("content")) for m in _messages(self.body) if m.get("role") == "system")

    def user_texts(self) -> List[str]:
        return [_text(m.get("content")) for m in _messages(self.body) if m.get("role") == "user"]


@dataclass
class ModelServer:
    """``with ModelServer() as ms:`` serves on 127.0.0.1 (``ms.base_url`` ends in ``/v1``)."""

    mode: str = "ok"
    #: shell commands the model runs through openclaw's ``exec`` tool before it writes RESULT.txt
    commands: Tuple[str, ...] = ()
    requests: List[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> "ModelServer":
        server = self

        class Handler(_Handler):
            model_server = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="model-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # hung answers end now
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "ModelServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def completions(self) -> List[Request]:
        """The chat-completion requests, oldest first."""
        with self._lock:
            return [r for r in self.requests if r.path.rstrip("/").endswith("/chat/completions")]

    def openclaw_config(self, path: Path, models: Sequence[str] = MODELS) -> Path:
        """Write an OpenClaw config whose provider ``local`` is this server; ``models[0]`` is the default."""
        entries = [{"id": m, "name": m, "reasoning": True, "input": ["text"],
                    "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0},
                    "contextWindow": 128000, "maxTokens": 4096} for m in models]
        config = {
            "agents": {"defaults": {"model": {"primary": f"{PROVIDER}/{models[0]}"}}},
            # "api": "openai-completions", a baseUrl ending in /v1, an apiKey and "reasoning": true
            # (for --thinking other than off) are what openclaw needs of a provider (NOTES.md)
            "models": {"mode": "merge", "providers": {PROVIDER: {
                "baseUrl": self.base_url, "apiKey": API_KEY, "api": "openai-completions", "models": entries}}},
        }
        path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        return path

    # ------------------------------------------------------------ answers
    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def _wait_forever(self) -> None:
        self._stopping.wait()

    def answer(self, body: Any) -> Tuple[int, Dict[str, Any]]:
        """(status, error body) for a failing mode, else (200, the completion as a dict of parts)."""
        if self.mode == "500":
            return 500, {"error": {"message": "local model server: internal error (mode 500)",
                                   "type": "server_error", "code": None}}
        if self.mode == "400":
            return 400, {"error": {"message": "local model server: bad request (mode 400)",
                                   "type": "invalid_request_error", "code": None}}
        messages = _messages(body)
        step = _tool_results_since_user(messages)
        if step < len(self.commands):
            call = {"name": "exec", "arguments": {"command": self.commands[step]}}
        elif step == len(self.commands):
            call = {"name": "write", "arguments": _write_result(messages)}
        else:
            return 200, {"content": "Done. The result is in RESULT.txt.", "tool_calls": None, "finish_reason": "stop"}
        tool_call = {"id": f"call_{step}", "type": "function",
                     "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])}}
        return 200, {"content": None, "tool_calls": [tool_call], "finish_reason": "tool_calls"}


# ------------------------------------------------------------ message helpers

def _messages(body: Any) -> List[dict]:
    messages = body.get("messages") if isinstance(body, dict) else None
    return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []


def _text(content: Any) -> str:
    """A message's text: a string, or the text parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _is_turn_user(message: dict) -> bool:
    return message.get("role") == "user" and not _text(message.get("content")).lstrip().startswith(INTERNAL_CONTEXT)


def _last_user_text(messages: List[dict]) -> str:
    users = [m for m in messages if _is_turn_user(m)]
    return _text(users[-1].get("content")) if users else ""


def _tool_results_since_user(messages: List[dict]) -> int:
    """How many tool results came since the turn's (last real) user message: the turn's step."""
    last_user = max((i for i, m in enumerate(messages) if _is_turn_user(m)), default=-1)
    return sum(1 for m in messages[last_user + 1:] if m.get("role") == "tool")


def _write_result(messages: List[dict]) -> Dict[str, str]:
    """``write``'s arguments: RESULT.txt in the task dir the user message names, saying the task."""
    match = _TASK_DIR_RE.search(_last_user_text(messages))
    target = f"{match.group(1)}/RESULT.txt" if match else "RESULT.txt"
    system = "\n".join(_text(m.get("content")) for m in messages if m.get("role") == "system")
    task = _TASK_RE.search(system)
    content = f"RESULT: {task.group(1).strip()}\n" if task else "RESULT: (no task found in the prompt)\n"
    return {"path": target, "content": content}


# ------------------------------------------------------------ HTTP

class _Handler(BaseHTTPRequestHandler):
    model_server: ModelServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass  # the request log is ``requests``; no noise on stderr

    def do_GET(self) -> None:
        self.model_server._record(Request("GET", self.path, {k.lower(): v for k, v in self.headers.items()}, b""))
        if self.path.rstrip("/").endswith("/models"):
            self._json(200, {"object": "list", "data": [{"id": m, "object": "model", "owned_by": PROVIDER}
                                                         for m in MODELS]})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(min(length, MAX_BODY_BYTES))
        try:
            body = json.loads(raw.decode("utf-8"))
        except ValueError:
            body = None
        ms = self.model_server
        ms._record(Request("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, raw, body))
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        if ms.mode == "hang":
            ms._wait_forever()
            self.close_connection = True
            return
        status, answer = ms.answer(body)
        if status != 200:
            self._json(status, answer)
            return
        model = body.get("model", "") if isinstance(body, dict) else ""
        if isinstance(body, dict) and body.get("stream"):
            self._stream(model, answer, include_usage=bool((body.get("stream_options") or {}).get("include_usage")))
        else:
            self._json(200, _completion(model, answer))

    def _json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, model: str, answer: Dict[str, Any], include_usage: bool) -> None:
        """Server-sent events: the role and content or tool call, the finish reason, the usage, [DONE]."""
        base = {"id": "chatcmpl-local", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
        delta: Dict[str, Any] = {"role": "assistant"}
        if answer["tool_calls"]:
            delta["tool_calls"] = [dict(call, index=i) for i, call in enumerate(answer["tool_calls"])]
        else:
            delta["content"] = answer["content"]
        chunks = [dict(base, choices=[{"index": 0, "delta": delta, "finish_reason": None}]),
                  dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": answer["finish_reason"]}])]
        if include_usage:
            chunks.append(dict(base, choices=[], usage=_usage()))
        data = b"".join(b"data: " + json.dumps(c).encode("utf-8") + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _usage() -> Dict[str, int]:
    return {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS}


def _completion(model: str, answer: Dict[str, Any]) -> Dict[str, Any]:
    message: Dict[str, Any] = {"role": "assistant", "content": answer["content"]}
    if answer["tool_calls"]:
        message["tool_calls"] = answer["tool_calls"]
    return {"id": "chatcmpl-local", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": answer["finish_reason"]}],
            "usage": _usage()}
