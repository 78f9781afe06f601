"""LocalDiscord: a loopback Discord (HTTP API v10) for tests and ``discord-orch demo``.

A real HTTP server (stdlib ``ThreadingHTTPServer``, HTTP/1.1 keep-alive, bound to
127.0.0.1 on an ephemeral port) that answers the part of Discord's REST API that
discord-orch uses, with Discord's JSON shapes, error codes and rate-limit headers,
so the real client (``requests``) can be exercised without a network or a token.
The world (guilds, users, channels, roles, members) is built through Python calls;
people act through Python calls too (``post_message``, ``react``); the bot acts over
HTTP. Everything is kept in memory behind one lock.

Use::

    with LocalDiscord(rate_limits=RateLimits.off()) as ld:
        gid = ld.create_guild("home")
        bot = ld.create_user("orch-bot", bot=True)          # bot.token for "Authorization: Bot ..."
        cid = ld.create_channel(gid, "task-queue")
        ld.post_message(cid, ld.create_user("alice").id, "a task")
        requests.get(f"{ld.base_url}/channels/{cid}/messages", headers={"Authorization": f"Bot {bot.token}"})

Emulated
    * Routes in :attr:`LocalDiscord.ROUTES` (users/@me, channel, guild member, list /
      create / get / edit / delete message, add / remove own reaction, list reaction
      users), with the v10 shapes of Discord's OpenAPI spec.
    * Bot-token auth (401), per-user channel denial (403 50001 / 50013), the usual
      404 codes (10003, 10004, 10007, 10008), 10014 Unknown Emoji, 50005, 50006,
      50035 with nested field errors, 50109 invalid JSON, 40005 file too large,
      unknown route 404 and wrong method 405.
    * Message create as JSON or multipart (``payload_json`` + ``files[n]``), content
      (2,000 chars for bots) and embed limits, ``allowed_mentions`` (mentions,
      ``mention_everyone``, replied user), replies (type 19, ``message_reference``,
      ``referenced_message``), ``nonce`` + ``enforce_nonce`` idempotency within
      ``nonce_window`` seconds (per author). Attachments get a CDN-like URL (no auth).
    * The MESSAGE_CONTENT intent: when off, messages of other users come back with
      empty content, embeds, attachments and components, except those that mention
      the bot.
    * Rate limits shaped like Discord's: per-route buckets keyed by (bucket, major
      parameter) with a window that starts at the first request, ``X-RateLimit-*``
      headers on every answer of a limited route, 429 bodies and headers (per-route
      ``Scope: user`` and the per-bot global limit with ``X-RateLimit-Global``).
    * Fault injection: injected statuses, dropped connections (before or after the
      request took effect), added latency, whole-API outage.

Not emulated
    The gateway (websocket), permissions beyond explicit ``deny``, threads, DMs,
    webhooks, interactions, pins, stickers, polls, components validation, custom
    emoji registry (any well-formed ``name:id`` is accepted), the invalid-request
    (Cloudflare) limit, ``shared`` rate-limit scopes, ``X-Audit-Log-Reason``. Fetched
    messages do not carry ``nonce`` (Discord does not store it); only the create
    answer echoes it (set ``nonce_in_history = True`` to change that). With
    ``RateLimits.off()`` no rate-limit headers are sent at all.
"""

from __future__ import annotations

import hashlib
import json
import math
import mimetypes
import re
import secrets
import socket
import sys
import threading
import time
import unicodedata
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.message import Message as _EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

__all__ = ["LocalDiscord", "LocalUser", "RateLimits", "RequestRecord", "API_PREFIX", "DISCORD_EPOCH_MS"]

API_PREFIX = "/api/v10"
DISCORD_EPOCH_MS = 1420070400000  # 2015-01-01T00:00:00Z
MAX_REQUEST_BYTES = 64 * 1024 * 1024

Json = Any


# --------------------------------------------------------------------------- config


@dataclass
class RateLimits:
    """Rate-limit settings. Tuples are ``(limit, window seconds)``.

    ``message_create`` and ``reactions`` are per channel (PUT and DELETE of ``@me``
    reactions share one bucket); ``default`` applies per route and major parameter
    to every other route; ``global_per_second`` is per bot (None or 0: no global
    limit). ``enabled=False`` means no 429 and no rate-limit headers.
    """

    enabled: bool = True
    global_per_second: Optional[int] = 50
    message_create: Tuple[int, float] = (5, 5.0)
    reactions: Tuple[int, float] = (1, 0.25)
    default: Tuple[int, float] = (50, 1.0)

    @classmethod
    def off(cls) -> "RateLimits":
        return cls(enabled=False)

    @classmethod
    def discord_defaults(cls) -> "RateLimits":
        return cls()


@dataclass(frozen=True)
class LocalUser:
    id: str
    username: str
    bot: bool = False
    token: Optional[str] = field(default=None, repr=False)


@dataclass(frozen=True)
class RequestRecord:
    """One HTTP request as the server saw it. ``status`` 0 = connection dropped."""

    time: float
    method: str
    path: str
    route: Optional[str]
    status: int
    user_id: Optional[str]
    channel_id: Optional[str]
    bucket: Optional[str]


# --------------------------------------------------------------------------- errors


class _ApiError(Exception):
    def __init__(self, status: int, code: int, message: str, errors: Optional[Mapping[str, Any]] = None,
                 headers: Sequence[Tuple[str, str]] = ()) -> None:
        super().__init__(status, code, message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors
        self.headers = list(headers)

    def body(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors:
            out["errors"] = self.errors
        return out


def _query_limit(query: Mapping[str, List[str]], default: int, errors: Dict[str, Any]) -> int:
    """The ``limit`` query parameter (1-100), recording Discord's field errors when it is off."""
    if "limit" not in query:
        return default
    raw = query["limit"][-1]
    try:
        limit = int(raw)
    except ValueError:
        _merge(errors, _field_error(["limit"], "NUMBER_TYPE_COERCE", f'Value "{raw}" is not int.'))
        return default
    if limit < 1:
        _merge(errors, _field_error(["limit"], "NUMBER_TYPE_MIN", "int value should be greater than or equal to 1."))
    elif limit > 100:
        _merge(errors, _field_error(["limit"], "NUMBER_TYPE_MAX", "int value should be less than or equal to 100."))
    return limit


def _field_error(path: Sequence[Union[str, int]], code: str, message: str) -> Dict[str, Any]:
    node: Dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for key in reversed(list(path)):
        node = {str(key): node}
    return node


def _merge(into: Dict[str, Any], other: Mapping[str, Any]) -> None:
    for k, v in other.items():
        if k in into and isinstance(into[k], dict) and isinstance(v, Mapping) and k != "_errors":
            _merge(into[k], v)
        elif k == "_errors" and k in into:
            into[k].extend(v)
        else:
            into[k] = v


def _invalid_form(errors: Mapping[str, Any]) -> _ApiError:
    return _ApiError(400, 50035, "Invalid Form Body", dict(errors))


def _too_long(path: Sequence[Union[str, int]], n: int) -> Dict[str, Any]:
    return _field_error(path, "BASE_TYPE_MAX_LENGTH", f"Must be {n} or fewer in length.")


_UNKNOWN = {
    "channel": (404, 10003, "Unknown Channel"),
    "guild": (404, 10004, "Unknown Guild"),
    "member": (404, 10007, "Unknown Member"),
    "message": (404, 10008, "Unknown Message"),
    "emoji": (400, 10014, "Unknown Emoji"),
}
_DENY_MESSAGES = {50001: "Missing Access", 50013: "Missing Permissions"}


def _unknown(what: str) -> _ApiError:
    status, code, msg = _UNKNOWN[what]
    return _ApiError(status, code, msg)


# --------------------------------------------------------------------------- routes

# (method, template, handler name, bucket family or None = per-route default)
_ROUTE_DEFS: Tuple[Tuple[str, str, str, Optional[str]], ...] = (
    ("GET", "/users/@me", "_h_get_me", None),
    ("GET", "/channels/{channel_id}", "_h_get_channel", None),
    ("GET", "/channels/{channel_id}/messages", "_h_list_messages", None),
    ("POST", "/channels/{channel_id}/messages", "_h_create_message", "message_create"),
    ("GET", "/channels/{channel_id}/messages/{message_id}", "_h_get_message", None),
    ("PATCH", "/channels/{channel_id}/messages/{message_id}", "_h_edit_message", None),
    ("DELETE", "/channels/{channel_id}/messages/{message_id}", "_h_delete_message", None),
    ("PUT", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me", "_h_add_reaction", "reactions"),
    ("DELETE", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me", "_h_remove_reaction", "reactions"),
    ("GET", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}", "_h_list_reaction_users", None),
    ("GET", "/guilds/{guild_id}/members/{user_id}", "_h_get_member", None),
)
ATTACHMENT_ROUTE = "GET /attachments/{channel_id}/{attachment_id}/{filename}"
_SNOWFLAKE_PARAMS = ("channel_id", "message_id", "guild_id", "user_id")


def _split_template(template: str) -> List[str]:
    return template.strip("/").split("/")


_COMPILED = [(m, t, h, b, _split_template(t)) for (m, t, h, b) in _ROUTE_DEFS]


def _match_route(path: str) -> Tuple[List[Tuple[str, str, str, Optional[str]]], Dict[str, str]]:
    """All (method, template, handler, bucket) whose template fits ``path``, and its params."""
    segs = path.strip("/").split("/") if path.strip("/") else []
    found: List[Tuple[str, str, str, Optional[str]]] = []
    params: Dict[str, str] = {}
    for method, template, handler, bucket, tsegs in _COMPILED:
        if len(tsegs) != len(segs):
            continue
        got: Dict[str, str] = {}
        for t, s in zip(tsegs, segs):
            if t.startswith("{") and t.endswith("}"):
                if not s:
                    break
                got[t[1:-1]] = s
            elif urllib.parse.unquote(s) != t:
                break
        else:
            found.append((method, template, handler, bucket))
            params = got
    return found, params


def _norm_route(route: str) -> Tuple[Optional[str], str]:
    """``"POST /channels/{x}/messages"`` -> ("POST", "/channels/{}/messages")."""
    route = route.strip()
    method: Optional[str] = None
    if " " in route:
        m, route = route.split(None, 1)
        method = m.upper()
    route = route.strip()
    if route.startswith(API_PREFIX):
        route = route[len(API_PREFIX):]
    return method, re.sub(r"\{[^}]*\}", "{}", route).rstrip("/") or "/"


def _bucket_hash(family: str) -> str:
    return hashlib.sha256(("localdiscord-bucket:" + family).encode()).hexdigest()[:32]


# --------------------------------------------------------------------------- emoji

_EMOJI_EXTRA = {0x00A9, 0x00AE, 0x203C, 0x2049, 0x2122, 0x2139, 0x24C2, 0x3030, 0x303D, 0x3297, 0x3299}
_EMOJI_JOINERS = {0x200D, 0xFE0E, 0xFE0F, 0x20E3}
_CUSTOM_EMOJI = re.compile(r"^(?:a:)?([A-Za-z0-9_]{2,32}):([0-9]{1,20})$")


def _is_unicode_emoji(s: str) -> bool:
    if not s or len(s) > 32:
        return False
    keycap = "\u20e3" in s
    seen = False
    for ch in s:
        cp = ord(ch)
        if cp in _EMOJI_JOINERS or 0x1F3FB <= cp <= 0x1F3FF or 0xE0020 <= cp <= 0xE007F:
            continue
        if keycap and ch in "0123456789#*":
            seen = True
            continue
        if (unicodedata.category(ch) == "So" or cp in _EMOJI_EXTRA or 0x1F000 <= cp <= 0x1FAFF):
            seen = True
            continue
        return False
    return seen


def _parse_emoji(text: str) -> Tuple[str, Dict[str, Any]]:
    """Emoji text (already URL-decoded) -> (key, emoji JSON). ValueError if not an emoji."""
    m = _CUSTOM_EMOJI.match(text)
    if m:
        return f"{m.group(1)}:{m.group(2)}", {"id": m.group(2), "name": m.group(1)}
    if _is_unicode_emoji(text):
        return text, {"id": None, "name": text}
    raise ValueError(f"not an emoji: {text!r}")


def _decode_emoji_segment(seg: str) -> str:
    # http.server decodes the request line as latin-1: recover the raw bytes first.
    raw = urllib.parse.unquote_to_bytes(seg.encode("latin-1", "replace"))
    return raw.decode("utf-8")  # strict: undecodable bytes -> UnicodeDecodeError


# --------------------------------------------------------------------------- helpers


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000.0, tz=timezone.utc).isoformat(timespec="microseconds")


def _snowflake_ms(sid: Union[str, int]) -> int:
    return (int(sid) >> 22) + DISCORD_EPOCH_MS


def _is_snowflake(value: Any) -> bool:
    return isinstance(value, str) and value.isdigit() and len(value) <= 20 and (value == "0" or value[0] != "0")


def _safe_filename(name: str) -> str:
    name = name.replace("\\", "/").rsplit("/", 1)[-1].strip() or "unknown"
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:1024]


def _content_type_for(filename: str) -> Optional[str]:
    ctype, _ = mimetypes.guess_type(filename)
    if ctype is None:
        return None
    if ctype.startswith("text/") or ctype in ("application/json", "application/javascript"):
        return ctype + "; charset=utf-8"
    return ctype


def _header_params(value: str, header: str) -> Tuple[str, Dict[str, str]]:
    msg = _EmailMessage()
    msg[header] = value
    params: Dict[str, str] = {}
    for key, val in (msg.get_params(header=header) or [])[1:]:
        if isinstance(val, tuple):
            from email.utils import collapse_rfc2231_value
            val = collapse_rfc2231_value(val)
        params[key.lower()] = str(val)
    main = value.split(";", 1)[0].strip().lower()
    return main, params


def _parse_multipart(body: bytes, boundary: str) -> List[Tuple[Dict[str, str], bytes]]:
    """Parts as (headers lower-cased, data). Raises ValueError on a malformed body."""
    delim = b"--" + boundary.encode("latin-1")
    chunks = body.split(delim)
    if len(chunks) < 2:
        raise ValueError("no multipart boundary in body")
    parts = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        if chunk.startswith(b"\r\n"):
            chunk = chunk[2:]
        elif chunk.startswith(b"\n"):
            chunk = chunk[1:]
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            head, sep, data = chunk.partition(b"\n\n")
            if not sep:
                raise ValueError("multipart part without headers")
        if data.endswith(b"\r\n"):
            data = data[:-2]
        elif data.endswith(b"\n"):
            data = data[:-1]
        headers: Dict[str, str] = {}
        for line in head.decode("utf-8", "surrogateescape").splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        parts.append((headers, data))
    return parts


# --------------------------------------------------------------------------- state


@dataclass
class _Attachment:
    id: str
    filename: str
    data: bytes
    content_type: Optional[str]
    description: Optional[str] = None
    query: str = ""


@dataclass
class _Msg:
    id: str
    channel_id: str
    author_id: str
    content: str = ""
    type: int = 0
    tts: bool = False
    flags: int = 0
    embeds: List[Dict[str, Any]] = field(default_factory=list)
    attachments: List[_Attachment] = field(default_factory=list)
    mention_user_ids: List[str] = field(default_factory=list)
    mention_role_ids: List[str] = field(default_factory=list)
    mention_everyone: bool = False
    allowed_mentions: Optional[Dict[str, Any]] = None
    reference_id: Optional[str] = None
    edited_ms: Optional[int] = None
    nonce: Optional[Union[str, int]] = None
    reactions: Dict[str, List[str]] = field(default_factory=dict)  # key -> user ids in order
    reaction_emoji: Dict[str, Dict[str, Any]] = field(default_factory=dict)


@dataclass
class _Channel:
    id: str
    guild_id: str
    name: str
    type: int = 0
    position: int = 0
    topic: Optional[str] = None
    messages: List[_Msg] = field(default_factory=list)
    by_id: Dict[str, _Msg] = field(default_factory=dict)


@dataclass
class _Guild:
    id: str
    name: str
    roles: Dict[str, str] = field(default_factory=dict)
    members: Dict[str, Tuple[List[str], int]] = field(default_factory=dict)  # user -> (roles, joined ms)


@dataclass
class _Bucket:
    reset_at: float
    remaining: int
    limit: int


@dataclass
class _Fault:
    method: Optional[str]
    route: str
    kind: str  # "fail" | "drop"
    statuses: List[int] = field(default_factory=list)
    remaining: int = 1
    after_processing: bool = False
    body: Optional[Any] = None
    used: int = 0


@dataclass
class _Resp:
    status: int
    body: bytes = b""
    content_type: Optional[str] = "application/json"
    headers: List[Tuple[str, str]] = field(default_factory=list)
    drop: bool = False


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


_REASONS = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
            429: "Too Many Requests", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}


# --------------------------------------------------------------------------- server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # the stdlib's 5 makes bursts of new connections wait for SYN retries

    def __init__(self, addr: Tuple[str, int], ld: "LocalDiscord") -> None:
        self.ld = ld
        self._conns: set = set()
        self._conns_lock = threading.Lock()
        super().__init__(addr, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that was killed mid-request (the reliability tests SIGKILL orchestrate) drops its
        # connection; that is the client's business, not a server error worth a traceback.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)

    def finish_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        super().finish_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def close_all_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "LocalDiscord/1.0"
    sys_version = ""
    server: _Server

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _read_body(self) -> Optional[bytes]:
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            out = bytearray()
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline(65537)
                if len(out) > MAX_REQUEST_BYTES:
                    return None
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST_BYTES:
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        ld = self.server.ld
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        if body is None:
            resp = _Resp(413, _json_bytes({"message": "Request entity too large", "code": 40005}))
            self.close_connection = True
        else:
            resp = ld._handle(self.command, self.path, self.headers, body)
        if ld.latency > 0:
            time.sleep(ld.latency)
        if resp.drop:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        try:
            self.send_response(resp.status)
            for k, v in resp.headers:
                self.send_header(k, v)
            if resp.status not in (204, 304):
                if resp.content_type:
                    self.send_header("Content-Type", resp.content_type)
                self.send_header("Content-Length", str(len(resp.body)))
            # headers and body in one write (no Nagle / delayed-ACK stall between them)
            self._headers_buffer.append(b"\r\n")
            if resp.status not in (204, 304) and self.command != "HEAD":
                self._headers_buffer.append(resp.body)
            self.flush_headers()
        except OSError:
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch


# --------------------------------------------------------------------------- LocalDiscord


class LocalDiscord:
    """The loopback Discord. See the module docstring for what is emulated."""

    ROUTES: Tuple[str, ...] = tuple(f"{m} {t}" for (m, t, _h, _b) in _ROUTE_DEFS)

    def __init__(self, rate_limits: Optional[RateLimits] = None, message_content_intent: bool = True,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.rate_limits: RateLimits = rate_limits if rate_limits is not None else RateLimits.discord_defaults()
        self.message_content_intent = message_content_intent
        self.latency = 0.0
        self.nonce_window = 300.0
        self.nonce_in_history = False
        self.max_content_length = 2000
        self.max_file_size = 10 * 1024 * 1024
        self.max_files = 10
        self._host = host
        self._port = port
        self._lock = threading.RLock()
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None
        self._last_id = 0
        self._counter = 0
        self._users: Dict[str, LocalUser] = {}
        self._tokens: Dict[str, str] = {}
        self._guilds: Dict[str, _Guild] = {}
        self._channels: Dict[str, _Channel] = {}
        self._attachments: Dict[str, Tuple[str, str, _Attachment]] = {}  # att id -> (channel, msg, att)
        self._denied: Dict[Tuple[str, str], int] = {}
        self._nonces: Dict[Tuple[str, str], Tuple[str, str, float]] = {}
        self._buckets: Dict[Tuple[str, str], _Bucket] = {}
        self._global: Dict[str, List[float]] = {}
        self._faults: List[_Fault] = []
        self._records: List[RequestRecord] = []
        self._outage_until: Optional[float] = None  # monotonic; inf = until set_outage(False)

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> "LocalDiscord":
        with self._lock:
            if self._server is not None:
                return self
            self._server = _Server((self._host, self._port), self)
            self._port = self._server.server_address[1]
            self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                            name=f"LocalDiscord:{self._port}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.close_all_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> "LocalDiscord":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        return self._port

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:<port>`` (no API prefix)."""
        return f"http://{self._host}:{self._port}"

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("LocalDiscord is not started: call start() or use it as a context manager")
        return self.origin + API_PREFIX

    # ----------------------------------------------------------------- ids

    def _next_id(self) -> str:
        with self._lock:
            ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
            self._counter = (self._counter + 1) & 0x3FFFFF
            cand = (ms << 22) | self._counter
            if cand <= self._last_id:
                cand = self._last_id + 1
            self._last_id = cand
            return str(cand)

    # ----------------------------------------------------------------- world building

    def create_guild(self, name: str) -> str:
        with self._lock:
            gid = self._next_id()
            self._guilds[gid] = _Guild(gid, name)
            self._guilds[gid].roles[gid] = "@everyone"
            return gid

    def create_user(self, username: str, bot: bool = False) -> LocalUser:
        with self._lock:
            uid = self._next_id()
            token = None
            if bot:
                import base64
                head = base64.urlsafe_b64encode(uid.encode()).decode().rstrip("=")
                token = f"{head}.{secrets.token_urlsafe(5)[:6]}.{secrets.token_urlsafe(30)[:38]}"
                self._tokens[token] = uid
            user = LocalUser(uid, username, bot, token)
            self._users[uid] = user
            return user

    def create_channel(self, guild_id: str, name: str, topic: Optional[str] = None) -> str:
        with self._lock:
            guild = self._guild(guild_id)
            cid = self._next_id()
            position = sum(1 for c in self._channels.values() if c.guild_id == guild.id)
            self._channels[cid] = _Channel(cid, guild.id, name, position=position, topic=topic)
            return cid

    def create_role(self, guild_id: str, name: str) -> str:
        with self._lock:
            guild = self._guild(guild_id)
            rid = self._next_id()
            guild.roles[rid] = name
            return rid

    def add_member(self, guild_id: str, user_id: str, roles: Iterable[str] = ()) -> None:
        with self._lock:
            guild = self._guild(guild_id)
            self._user(user_id)
            roles = [str(r) for r in roles]
            for r in roles:
                if r not in guild.roles or r == guild.id:
                    raise KeyError(f"unknown role {r} in guild {guild_id}")
            joined = guild.members.get(user_id, (None, int(time.time() * 1000)))[1]
            guild.members[user_id] = (list(dict.fromkeys(roles)), joined)

    def remove_member(self, guild_id: str, user_id: str) -> None:
        with self._lock:
            self._guild(guild_id).members.pop(user_id, None)

    def deny(self, channel_id: str, user_id: str, code: int = 50001) -> None:
        """``user_id`` gets 403 ``code`` on every request about this channel (or guild)."""
        if code not in _DENY_MESSAGES:
            raise ValueError(f"deny code must be one of {sorted(_DENY_MESSAGES)}, not {code}")
        with self._lock:
            self._denied[(str(channel_id), str(user_id))] = code

    def allow(self, channel_id: str, user_id: str) -> None:
        with self._lock:
            self._denied.pop((str(channel_id), str(user_id)), None)

    # ----------------------------------------------------------------- acting as a person

    def post_message(self, channel_id: str, author_id: str, content: str = "",
                     attachments: Sequence[Tuple[str, bytes]] = (), reply_to: Optional[str] = None,
                     embeds: Sequence[Mapping[str, Any]] = ()) -> Dict[str, Any]:
        """Post as ``author_id`` (no HTTP, no limits); returns the message JSON."""
        with self._lock:
            ch = self._channel(channel_id)
            self._user(author_id)
            if reply_to is not None and str(reply_to) not in ch.by_id:
                raise KeyError(f"unknown message {reply_to} in channel {channel_id}")
            files = [(_safe_filename(n), bytes(d), None) for n, d in attachments]
            msg = self._create(ch, author_id, content=content, embeds=[dict(e) for e in embeds], files=files,
                               reference_id=None if reply_to is None else str(reply_to),
                               allowed_mentions=None, tts=False, flags=0, nonce=None)
            return self._render(msg, self._default_viewer(), intent=True)

    def edit_message(self, channel_id: str, message_id: str, content: str) -> Dict[str, Any]:
        with self._lock:
            msg = self._message(channel_id, message_id)
            msg.content = content
            msg.edited_ms = int(time.time() * 1000)
            self._compute_mentions(msg)
            return self._render(msg, self._default_viewer(), intent=True)

    def delete_message(self, channel_id: str, message_id: str) -> None:
        with self._lock:
            self._message(channel_id, message_id)
            self._delete(self._channels[str(channel_id)], str(message_id))

    def react(self, channel_id: str, message_id: str, user_id: str, emoji: str) -> None:
        with self._lock:
            msg = self._message(channel_id, message_id)
            self._user(user_id)
            key, ejson = _parse_emoji(emoji)
            self._add_reaction(msg, key, ejson, str(user_id))

    def unreact(self, channel_id: str, message_id: str, user_id: str, emoji: str) -> None:
        with self._lock:
            msg = self._message(channel_id, message_id)
            key, _ = _parse_emoji(emoji)
            self._remove_reaction(msg, key, str(user_id))

    # ----------------------------------------------------------------- inspection

    def messages(self, channel_id: str) -> List[Dict[str, Any]]:
        """Oldest first, as the (first) bot sees them with the content intent."""
        with self._lock:
            ch = self._channel(channel_id)
            viewer = self._default_viewer()
            return [self._render(m, viewer, intent=True) for m in ch.messages]

    def get_message(self, channel_id: str, message_id: str) -> Dict[str, Any]:
        with self._lock:
            return self._render(self._message(channel_id, message_id), self._default_viewer(), intent=True)

    def reactions(self, channel_id: str, message_id: str) -> Dict[str, List[str]]:
        with self._lock:
            return {k: list(v) for k, v in self._message(channel_id, message_id).reactions.items()}

    def attachment_bytes(self, channel_id: str, message_id: str, index: int = 0) -> bytes:
        with self._lock:
            return self._message(channel_id, message_id).attachments[index].data

    def nonce_of(self, channel_id: str, message_id: str) -> Optional[Union[str, int]]:
        """The nonce a message was created with (Discord does not return it on fetch)."""
        with self._lock:
            return self._message(channel_id, message_id).nonce

    @property
    def requests(self) -> List[RequestRecord]:
        with self._lock:
            return list(self._records)

    def request_count(self, method: Optional[str] = None, route: Optional[str] = None) -> int:
        with self._lock:
            return sum(1 for r in self._records if self._record_matches(r, method, route))

    def count_429(self, route: Optional[str] = None) -> int:
        with self._lock:
            return sum(1 for r in self._records if r.status == 429 and self._record_matches(r, None, route))

    def reset_log(self) -> None:
        with self._lock:
            self._records.clear()

    def reset_rate_limits(self) -> None:
        """Forget every bucket and global window (fresh windows on the next request)."""
        with self._lock:
            self._buckets.clear()
            self._global.clear()

    @staticmethod
    def _record_matches(rec: RequestRecord, method: Optional[str], route: Optional[str]) -> bool:
        if method is not None and rec.method != method.upper():
            return False
        if route is None:
            return True
        if rec.route is None:
            return False
        rmethod, rpath = _norm_route(route)
        recm, recpath = _norm_route(rec.route)
        return (rmethod is None or rmethod == recm) and rpath == recpath

    # ----------------------------------------------------------------- fault injection

    def fail(self, method: Optional[str], route: str, statuses: Sequence[int] = (502, 503),
             count: Optional[int] = None, body: Optional[Any] = None) -> None:
        """The next matching requests answer these statuses in order (an int ``count``
        longer than ``statuses`` repeats the last). Nothing takes effect. ``body``
        overrides the JSON body ``{"message": "<status>: <reason>", "code": 0}``."""
        statuses = [int(s) for s in statuses]
        if not statuses:
            raise ValueError("statuses must not be empty")
        n = len(statuses) if count is None else int(count)
        if n <= 0:
            return
        with self._lock:
            self._faults.append(_Fault(method.upper() if method else None, route, "fail", statuses,
                                       remaining=n, body=body))

    def drop(self, method: Optional[str], route: str, count: int = 1, after_processing: bool = False) -> None:
        """Close the connection with no response for the next ``count`` matching
        requests; with ``after_processing`` the request takes effect first."""
        if count <= 0:
            return
        with self._lock:
            self._faults.append(_Fault(method.upper() if method else None, route, "drop", remaining=int(count),
                                       after_processing=after_processing))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def set_outage(self, on: bool) -> None:
        with self._lock:
            self._outage_until = math.inf if on else None

    def outage_for(self, seconds: float) -> None:
        with self._lock:
            self._outage_until = time.monotonic() + float(seconds)

    @property
    def outage(self) -> bool:
        with self._lock:
            return self._outage_until is not None and time.monotonic() < self._outage_until

    def _take_fault(self, method: str, route: Optional[str]) -> Optional[Tuple[_Fault, Optional[int]]]:
        """The first armed fault matching this request, consumed (lock held)."""
        if route is None:
            return None
        _rm, rpath = _norm_route(route)
        for f in self._faults:
            fm, fpath = _norm_route(f.route)
            want = f.method or fm
            if (want is not None and want != method) or fpath != rpath:
                continue
            status = f.statuses[min(f.used, len(f.statuses) - 1)] if f.kind == "fail" else None
            f.used += 1
            f.remaining -= 1
            if f.remaining <= 0:
                self._faults.remove(f)
            return f, status
        return None

    # ----------------------------------------------------------------- lookups (lock held)

    def _guild(self, gid: str) -> _Guild:
        try:
            return self._guilds[str(gid)]
        except KeyError:
            raise KeyError(f"unknown guild {gid}") from None

    def _user(self, uid: str) -> LocalUser:
        try:
            return self._users[str(uid)]
        except KeyError:
            raise KeyError(f"unknown user {uid}") from None

    def _channel(self, cid: str) -> _Channel:
        try:
            return self._channels[str(cid)]
        except KeyError:
            raise KeyError(f"unknown channel {cid}") from None

    def _message(self, cid: str, mid: str) -> _Msg:
        ch = self._channel(cid)
        try:
            return ch.by_id[str(mid)]
        except KeyError:
            raise KeyError(f"unknown message {mid} in channel {cid}") from None

    def _default_viewer(self) -> Optional[str]:
        for u in self._users.values():
            if u.bot:
                return u.id
        return None

    # ----------------------------------------------------------------- message model (lock held)

    def _create(self, ch: _Channel, author_id: str, *, content: str, embeds: List[Dict[str, Any]],
                files: List[Tuple[str, bytes, Optional[str]]], reference_id: Optional[str],
                allowed_mentions: Optional[Dict[str, Any]], tts: bool, flags: int,
                nonce: Optional[Union[str, int]]) -> _Msg:
        mid = self._next_id()
        msg = _Msg(id=mid, channel_id=ch.id, author_id=author_id, content=content or "",
                   type=19 if reference_id else 0, tts=tts, flags=flags, embeds=embeds,
                   allowed_mentions=allowed_mentions, reference_id=reference_id, nonce=nonce)
        msg.attachments = [self._new_attachment(ch.id, mid, n, d, desc) for n, d, desc in files]
        self._compute_mentions(msg)
        ch.messages.append(msg)
        ch.by_id[mid] = msg
        return msg

    def _new_attachment(self, cid: str, mid: str, name: str, data: bytes, description: Optional[str]) -> _Attachment:
        aid = self._next_id()
        now = int(time.time())
        sig = hashlib.sha256(f"{aid}:{now}".encode()).hexdigest()
        att = _Attachment(aid, _safe_filename(name), data, _content_type_for(name), description,
                          query=f"?ex={now + 86400:x}&is={now:x}&hm={sig}&")
        self._attachments[aid] = (cid, mid, att)
        return att

    def _delete(self, ch: _Channel, mid: str) -> None:
        msg = ch.by_id.pop(mid)
        ch.messages.remove(msg)
        for att in msg.attachments:
            self._attachments.pop(att.id, None)

    def _compute_mentions(self, msg: _Msg) -> None:
        am = msg.allowed_mentions
        parse = {"users", "roles", "everyone"} if am is None else set(am.get("parse") or ())
        allowed_users = set() if am is None else {str(u) for u in (am.get("users") or ())}
        allowed_roles = set() if am is None else {str(r) for r in (am.get("roles") or ())}
        content = msg.content or ""
        users: List[str] = []
        for uid in re.findall(r"<@!?([0-9]{1,20})>", content):
            if uid in self._users and ("users" in parse or uid in allowed_users) and uid not in users:
                users.append(uid)
        if msg.reference_id:
            ref = self._channels[msg.channel_id].by_id.get(msg.reference_id)
            replied = True if am is None else bool(am.get("replied_user"))
            if ref is not None and replied and ref.author_id not in users:
                users.append(ref.author_id)
        guild = self._guilds.get(self._channels[msg.channel_id].guild_id)
        roles: List[str] = []
        for rid in re.findall(r"<@&([0-9]{1,20})>", content):
            if guild and rid in guild.roles and ("roles" in parse or rid in allowed_roles) and rid not in roles:
                roles.append(rid)
        msg.mention_user_ids = users
        msg.mention_role_ids = roles
        msg.mention_everyone = bool(re.search(r"@(everyone|here)\b", content)) and "everyone" in parse

    def _add_reaction(self, msg: _Msg, key: str, ejson: Dict[str, Any], user_id: str) -> None:
        users = msg.reactions.setdefault(key, [])
        msg.reaction_emoji.setdefault(key, ejson)
        if user_id not in users:
            users.append(user_id)

    def _remove_reaction(self, msg: _Msg, key: str, user_id: str) -> None:
        users = msg.reactions.get(key)
        if users and user_id in users:
            users.remove(user_id)
        if users is not None and not users:
            del msg.reactions[key]
            msg.reaction_emoji.pop(key, None)

    # ----------------------------------------------------------------- rendering (lock held)

    def _user_json(self, uid: str) -> Dict[str, Any]:
        u = self._users.get(uid)
        if u is None:
            u = LocalUser(uid, "Deleted User", False)
        out: Dict[str, Any] = {
            "id": u.id,
            "username": u.username,
            "avatar": None,
            "discriminator": f"{int(u.id) % 10000:04d}" if u.bot else "0",
            "public_flags": 0,
            "flags": 0,
            "banner": None,
            "accent_color": None,
            "global_name": None if u.bot else u.username,
            "avatar_decoration_data": None,
            "collectibles": None,
            "primary_guild": None,
        }
        if u.bot:
            out["bot"] = True
        return out

    def _attachment_json(self, cid: str, att: _Attachment) -> Dict[str, Any]:
        url = f"{self.origin}/attachments/{cid}/{att.id}/{urllib.parse.quote(att.filename)}{att.query}"
        out: Dict[str, Any] = {"id": att.id, "filename": att.filename, "size": len(att.data), "url": url,
                               "proxy_url": url}
        if att.content_type:
            out["content_type"] = att.content_type
        if att.description:
            out["description"] = att.description
        return out

    def _render(self, msg: _Msg, viewer: Optional[str], intent: Optional[bool] = None, nested: bool = False,
                with_nonce: bool = False) -> Dict[str, Any]:
        intent = self.message_content_intent if intent is None else intent
        visible = intent or viewer is None or msg.author_id == viewer or viewer in msg.mention_user_ids
        ch = self._channels[msg.channel_id]
        out: Dict[str, Any] = {
            "type": msg.type,
            "content": msg.content if visible else "",
            "mentions": [self._user_json(u) for u in msg.mention_user_ids],
            "mention_roles": list(msg.mention_role_ids),
            "attachments": [self._attachment_json(ch.id, a) for a in msg.attachments] if visible else [],
            "embeds": [dict(e) for e in msg.embeds] if visible else [],
            "timestamp": _iso(_snowflake_ms(msg.id)),
            "edited_timestamp": None if msg.edited_ms is None else _iso(msg.edited_ms),
            "flags": msg.flags,
            "components": [],
            "id": msg.id,
            "channel_id": msg.channel_id,
            "author": self._user_json(msg.author_id),
            "pinned": False,
            "mention_everyone": msg.mention_everyone,
            "tts": msg.tts,
        }
        if msg.reactions and not nested:  # BasicMessageResponse (referenced_message) has no reactions
            out["reactions"] = [
                {"emoji": dict(msg.reaction_emoji[k]), "count": len(users),
                 "count_details": {"burst": 0, "normal": len(users)}, "burst_colors": [],
                 "me_burst": False, "me": viewer is not None and viewer in users}
                for k, users in msg.reactions.items()
            ]
        if msg.nonce is not None and (with_nonce or self.nonce_in_history):
            out["nonce"] = msg.nonce
        if msg.reference_id:
            out["message_reference"] = {"type": 0, "channel_id": ch.id, "message_id": msg.reference_id,
                                        "guild_id": ch.guild_id}
            if not nested:
                ref = ch.by_id.get(msg.reference_id)
                out["referenced_message"] = None if ref is None else self._render(ref, viewer, intent, nested=True)
        return out

    def _channel_json(self, ch: _Channel) -> Dict[str, Any]:
        return {
            "id": ch.id, "type": ch.type,
            "last_message_id": ch.messages[-1].id if ch.messages else None,
            "flags": 0, "guild_id": ch.guild_id, "name": ch.name, "parent_id": None,
            "rate_limit_per_user": 0, "topic": ch.topic, "position": ch.position,
            "permission_overwrites": [], "nsfw": False, "last_pin_timestamp": None,
        }

    # ----------------------------------------------------------------- the request pipeline

    def _handle(self, method: str, raw_path: str, headers: Any, body: bytes) -> _Resp:
        """Answer one request (called from a handler thread; never raises)."""
        t0 = time.time()
        with self._lock:
            try:
                resp, rec = self._pipeline(method, raw_path, headers, body)
            except Exception as exc:  # pragma: no cover - a bug here must not kill the connection silently
                resp = _Resp(500, _json_bytes({"message": f"500: Internal Server Error ({exc!r})", "code": 0}))
                rec = dict(route=None, user_id=None, channel_id=None, bucket=None)
            self._records.append(RequestRecord(t0, method, raw_path, rec["route"], 0 if resp.drop else resp.status,
                                               rec["user_id"], rec["channel_id"], rec["bucket"]))
        return resp

    def _pipeline(self, method: str, raw_path: str, headers: Any, body: bytes) -> Tuple[_Resp, Dict[str, Any]]:
        split = urllib.parse.urlsplit(raw_path)
        path = split.path
        rec: Dict[str, Any] = {"route": None, "user_id": None, "channel_id": None, "bucket": None}

        if path.startswith("/attachments/"):
            return self._serve_attachment(method, path, rec)
        if not (path == API_PREFIX or path.startswith(API_PREFIX + "/")):
            return self._error(_ApiError(404, 0, "404: Not Found")), rec

        sub = path[len(API_PREFIX):]
        candidates, params = _match_route(sub)
        token_user = self._auth_user(headers)
        rec["user_id"] = token_user
        rec["channel_id"] = params.get("channel_id")
        chosen = next((c for c in candidates if c[0] == method), None)
        if chosen is not None:
            rec["route"] = f"{method} {chosen[1]}"

        # an outage and injected faults come first: nothing behind them takes effect
        if self._outage_until is not None:
            if time.monotonic() < self._outage_until:
                return _Resp(503, _json_bytes({"message": "Service Unavailable", "code": 0})), rec
            self._outage_until = None
        if not candidates:
            return self._error(_ApiError(404, 0, "404: Not Found")), rec
        if chosen is None:
            allow = ", ".join(sorted({c[0] for c in candidates}))
            return self._error(_ApiError(405, 0, "405: Method Not Allowed", headers=[("Allow", allow)])), rec
        _m, template, handler_name, family = chosen
        route = f"{method} {template}"
        fault = self._take_fault(method, route)
        after_drop = False
        if fault is not None:
            f, status = fault
            if f.kind == "drop" and not f.after_processing:
                return _Resp(0, drop=True), rec
            if f.kind == "drop":
                after_drop = True
            else:
                return self._injected(status or 500, f.body), rec

        resp = self._authorized_pipeline(method, route, template, handler_name, family, params, split.query,
                                         headers, body, token_user, rec)
        if after_drop:
            resp.drop = True
        return resp, rec

    def _authorized_pipeline(self, method: str, route: str, template: str, handler_name: str,
                             family: Optional[str], params: Dict[str, str], query: str, headers: Any,
                             body: bytes, user_id: Optional[str], rec: Dict[str, Any]) -> _Resp:
        if user_id is None:
            return self._error(_ApiError(401, 0, "401: Unauthorized"))
        rl = self.rate_limits
        rl_headers: List[Tuple[str, str]] = []
        if rl.enabled:
            glob = self._check_global(user_id, rl)
            if glob is not None:
                return glob
            major = params.get("channel_id") or params.get("guild_id") or ""
            fam = family or route
            if family == "message_create":
                limit, window = rl.message_create
            elif family == "reactions":
                limit, window = rl.reactions
            else:
                limit, window = rl.default
            bucket_hash = _bucket_hash(fam)
            rec["bucket"] = bucket_hash
            limited, rl_headers = self._take_bucket((bucket_hash, major), int(limit), float(window), bucket_hash)
            if limited is not None:
                return limited
        try:
            for name in _SNOWFLAKE_PARAMS:
                if name in params and not (name == "user_id" and params[name] == "@me"):
                    if not _is_snowflake(params[name]):
                        raise _invalid_form(_field_error(
                            [name], "NUMBER_TYPE_COERCE", f'Value "{urllib.parse.unquote(params[name])}" is not snowflake.'))
            self._check_denied(params, user_id)
            handler = getattr(self, handler_name)
            status, payload = handler(user_id, params, urllib.parse.parse_qs(query, keep_blank_values=True),
                                      headers, body)
            resp = _Resp(status, b"" if payload is None else _json_bytes(payload),
                         content_type=None if payload is None else "application/json")
        except _ApiError as err:
            resp = self._error(err)
        resp.headers.extend(rl_headers)
        return resp

    # rate limits ----------------------------------------------------------

    def _check_global(self, user_id: str, rl: RateLimits) -> Optional[_Resp]:
        per_s = rl.global_per_second
        if not per_s:
            return None
        now = time.monotonic()
        win = self._global.get(user_id)
        if win is None or now >= win[0]:
            win = [now + 1.0, 0.0]
            self._global[user_id] = win
        if win[1] >= per_s:
            retry = max(win[0] - now, 0.001)
            body = {"message": "You are being rate limited.", "retry_after": round(retry, 3), "global": True,
                    "code": 0}
            return _Resp(429, _json_bytes(body), headers=[
                ("Retry-After", str(max(1, math.ceil(retry)))),
                ("X-RateLimit-Global", "true"),
                ("X-RateLimit-Scope", "global"),
            ])
        win[1] += 1
        return None

    def _take_bucket(self, key: Tuple[str, str], limit: int, window: float,
                     bucket_hash: str) -> Tuple[Optional[_Resp], List[Tuple[str, str]]]:
        now = time.monotonic()
        b = self._buckets.get(key)
        if b is None or now >= b.reset_at:
            b = _Bucket(reset_at=now + window, remaining=limit, limit=limit)
            self._buckets[key] = b
        reset_after = max(b.reset_at - now, 0.0)

        def hdrs() -> List[Tuple[str, str]]:
            return [
                ("X-RateLimit-Limit", str(b.limit)),
                ("X-RateLimit-Remaining", str(b.remaining)),
                ("X-RateLimit-Reset", f"{time.time() + reset_after:.3f}"),
                ("X-RateLimit-Reset-After", f"{reset_after:.3f}"),
                ("X-RateLimit-Bucket", bucket_hash),
            ]

        if b.remaining <= 0:
            retry = max(reset_after, 0.001)
            body = {"message": "You are being rate limited.", "retry_after": round(retry, 3), "global": False,
                    "code": 0}
            resp = _Resp(429, _json_bytes(body), headers=hdrs() + [
                ("Retry-After", str(max(1, math.ceil(retry)))),
                ("X-RateLimit-Scope", "user"),
            ])
            return resp, []
        b.remaining -= 1
        return None, hdrs()

    # responses -----------------------------------------------------------

    @staticmethod
    def _error(err: _ApiError) -> _Resp:
        return _Resp(err.status, _json_bytes(err.body()), headers=list(err.headers))

    @staticmethod
    def _injected(status: int, body: Optional[Any]) -> _Resp:
        if body is None:
            if status == 429:
                body = {"message": "You are being rate limited.", "retry_after": 0.05, "global": False, "code": 0}
            else:
                body = {"message": f"{status}: {_REASONS.get(status, 'Error')}", "code": 0}
        headers = [("Retry-After", "1"), ("X-RateLimit-Scope", "user")] if status == 429 else []
        if isinstance(body, (bytes, str)):
            data = body.encode() if isinstance(body, str) else body
            return _Resp(status, data, content_type="text/html", headers=headers)
        return _Resp(status, _json_bytes(body), headers=headers)

    def _serve_attachment(self, method: str, path: str, rec: Dict[str, Any]) -> Tuple[_Resp, Dict[str, Any]]:
        rec["route"] = ATTACHMENT_ROUTE
        parts = path.split("/")
        # ['', 'attachments', channel, attachment, filename]
        if len(parts) == 5:
            rec["channel_id"] = parts[2]
        fault = self._take_fault(method, ATTACHMENT_ROUTE) if len(parts) == 5 else None
        if fault is not None:
            f, status = fault
            if f.kind == "drop":
                return _Resp(0, drop=True), rec
            return self._injected(status or 500, f.body), rec
        if method not in ("GET", "HEAD"):
            return _Resp(405, b"Method Not Allowed", content_type="text/plain", headers=[("Allow", "GET, HEAD")]), rec
        entry = self._attachments.get(parts[3]) if len(parts) == 5 else None
        if entry is None or entry[0] != parts[2]:
            return _Resp(404, b"This content is no longer available.", content_type="text/plain"), rec
        att = entry[2]
        return _Resp(200, att.data, content_type=att.content_type or "application/octet-stream"), rec

    # auth / access --------------------------------------------------------

    def _auth_user(self, headers: Any) -> Optional[str]:
        value = (headers.get("Authorization") or "").strip()
        if not value.startswith("Bot "):
            return None
        uid = self._tokens.get(value[4:].strip())
        if uid is None or not self._users[uid].bot:
            return None
        return uid

    def _check_denied(self, params: Mapping[str, str], user_id: str) -> None:
        ids = []
        cid = params.get("channel_id")
        if cid:
            ids.append(cid)
            ch = self._channels.get(cid)
            if ch is not None:
                ids.append(ch.guild_id)
        if params.get("guild_id"):
            ids.append(params["guild_id"])
        for i in ids:
            code = self._denied.get((i, user_id))
            if code is not None:
                raise _ApiError(403, code, _DENY_MESSAGES[code])

    def _api_channel(self, params: Mapping[str, str]) -> _Channel:
        ch = self._channels.get(params["channel_id"])
        if ch is None:
            raise _unknown("channel")
        return ch

    def _api_message(self, params: Mapping[str, str]) -> Tuple[_Channel, _Msg]:
        ch = self._api_channel(params)
        msg = ch.by_id.get(params["message_id"])
        if msg is None:
            raise _unknown("message")
        return ch, msg

    # body parsing ---------------------------------------------------------

    def _parse_body(self, headers: Any, body: bytes,
                    allow_files: bool = True) -> Tuple[Dict[str, Any], List[Tuple[str, bytes, Optional[int]]]]:
        """JSON or multipart body -> (payload dict, [(filename, data, index)])."""
        ctype, cparams = _header_params(headers.get("Content-Type") or "application/json", "content-type")
        files: List[Tuple[str, bytes, Optional[int]]] = []
        if ctype == "multipart/form-data" and allow_files:
            boundary = cparams.get("boundary")
            if not boundary:
                raise _ApiError(400, 50109, "The request body contains invalid JSON.")
            try:
                parts = _parse_multipart(body, boundary)
            except ValueError:
                raise _ApiError(400, 50109, "The request body contains invalid JSON.") from None
            payload: Any = {}
            for phead, data in parts:
                _disp, dparams = _header_params(phead.get("content-disposition", "form-data"), "content-disposition")
                name = dparams.get("name", "")
                filename = dparams.get("filename")
                if name == "payload_json":
                    payload = self._loads(data)
                elif filename is not None or name.startswith("files[") or name == "file":
                    m = re.match(r"^files\[(\d+)\]$", name)
                    files.append((filename or name, data, int(m.group(1)) if m else None))
                else:
                    payload = payload if isinstance(payload, dict) else {}
                    payload.setdefault(name, data.decode("utf-8", "replace"))
        else:
            payload = self._loads(body) if body.strip() else {}
        if not isinstance(payload, dict):
            raise _invalid_form({"_errors": [{"code": "DICT_TYPE_CONVERT",
                                              "message": "Only dictionaries may be used in a DictType"}]})
        return payload, files

    @staticmethod
    def _loads(data: bytes) -> Any:
        try:
            return json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise _ApiError(400, 50109, "The request body contains invalid JSON.") from None

    def _validate_message_fields(self, payload: Mapping[str, Any], errors: Dict[str, Any]) -> None:
        content = payload.get("content")
        if content is not None:
            if not isinstance(content, str):
                _merge(errors, _field_error(["content"], "BASE_TYPE_STRING", "This field must be a string."))
            elif len(content) > self.max_content_length:
                _merge(errors, _too_long(["content"], self.max_content_length))
        embeds = payload.get("embeds")
        if embeds is not None:
            if not isinstance(embeds, list):
                _merge(errors, _field_error(["embeds"], "BASE_TYPE_LIST", "Must be an array."))
            else:
                self._validate_embeds(embeds, errors)
        am = payload.get("allowed_mentions")
        if am is not None:
            if not isinstance(am, dict):
                _merge(errors, _field_error(["allowed_mentions"], "DICT_TYPE_CONVERT",
                                            "Only dictionaries may be used in a DictType"))
            else:
                parse = am.get("parse") or []
                if not isinstance(parse, list) or any(p not in ("users", "roles", "everyone") for p in parse):
                    _merge(errors, _field_error(["allowed_mentions", "parse"], "BASE_TYPE_CHOICES",
                                                "Value must be one of {'users', 'roles', 'everyone'}."))
                else:
                    for kind in ("users", "roles"):
                        if kind in parse and am.get(kind):
                            _merge(errors, _field_error(
                                ["allowed_mentions"], "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                                f'parse:["{kind}"] and {kind}: [ids...] are mutually exclusive.'))
        flags = payload.get("flags")
        if flags is not None and (not isinstance(flags, int) or isinstance(flags, bool)):
            _merge(errors, _field_error(["flags"], "NUMBER_TYPE_COERCE", f'Value "{flags}" is not int.'))

    def _validate_embeds(self, embeds: List[Any], errors: Dict[str, Any]) -> None:
        if len(embeds) > 10:
            _merge(errors, _too_long(["embeds"], 10))
            return
        total = 0
        for i, e in enumerate(embeds):
            if not isinstance(e, dict):
                _merge(errors, _field_error(["embeds", i], "DICT_TYPE_CONVERT",
                                            "Only dictionaries may be used in a DictType"))
                continue

            def text(*path: Union[str, int], limit: int, src: Mapping[str, Any] = e) -> int:
                value = src.get(path[-1])
                if value is None:
                    return 0
                if not isinstance(value, str):
                    _merge(errors, _field_error(["embeds", i, *path], "BASE_TYPE_STRING", "This field must be a string."))
                    return 0
                if len(value) > limit:
                    _merge(errors, _too_long(["embeds", i, *path], limit))
                return len(value)

            total += text("title", limit=256)
            total += text("description", limit=4096)
            for sub, key, limit in (("footer", "text", 2048), ("author", "name", 256)):
                obj = e.get(sub)
                if isinstance(obj, dict):
                    value = obj.get(key)
                    if isinstance(value, str):
                        total += len(value)
                        if len(value) > limit:
                            _merge(errors, _too_long(["embeds", i, sub, key], limit))
            fields = e.get("fields")
            if fields is not None:
                if not isinstance(fields, list):
                    _merge(errors, _field_error(["embeds", i, "fields"], "BASE_TYPE_LIST", "Must be an array."))
                elif len(fields) > 25:
                    _merge(errors, _too_long(["embeds", i, "fields"], 25))
                else:
                    for j, f in enumerate(fields):
                        if not isinstance(f, dict):
                            continue
                        for key, limit in (("name", 256), ("value", 1024)):
                            value = f.get(key)
                            if value is None or value == "":
                                _merge(errors, _field_error(["embeds", i, "fields", j, key], "BASE_TYPE_REQUIRED",
                                                            "This field is required"))
                            elif isinstance(value, str):
                                total += len(value)
                                if len(value) > limit:
                                    _merge(errors, _too_long(["embeds", i, "fields", j, key], limit))
        if total > 6000:
            _merge(errors, _field_error(["embeds"], "MAX_EMBED_SIZE_EXCEEDED",
                                        "Embed size exceeds maximum size of 6000"))

    @staticmethod
    def _clean_embed(e: Mapping[str, Any]) -> Dict[str, Any]:
        """A request embed (validated) as Discord answers it: nulls dropped, type "rich",
        field ``inline`` defaulted, footer / author only with their required text."""
        out: Dict[str, Any] = {"type": e.get("type") or "rich"}
        for key in ("url", "title", "description", "color", "timestamp"):
            if e.get(key) is not None:
                out[key] = e[key]
        if isinstance(e.get("fields"), list):
            out["fields"] = [{"name": f["name"], "value": f["value"], "inline": bool(f.get("inline"))}
                             for f in e["fields"] if isinstance(f, dict)]
        for key, required in (("footer", "text"), ("author", "name")):
            sub = e.get(key)
            if isinstance(sub, dict) and isinstance(sub.get(required), str):
                out[key] = {k: v for k, v in sub.items() if v is not None and k in (required, "url", "icon_url")}
        for key in ("image", "thumbnail", "video"):
            sub = e.get(key)
            if isinstance(sub, dict) and isinstance(sub.get("url"), str):
                out[key] = {k: v for k, v in sub.items() if v is not None and k in ("url", "width", "height")}
        if isinstance(e.get("provider"), dict):
            out["provider"] = {k: v for k, v in e["provider"].items() if v is not None and k in ("name", "url")}
        return out

    def _build_files(self, payload: Mapping[str, Any], files: List[Tuple[str, bytes, Optional[int]]],
                     errors: Dict[str, Any]) -> List[Tuple[str, bytes, Optional[str]]]:
        meta: Dict[int, Mapping[str, Any]] = {}
        atts = payload.get("attachments")
        if isinstance(atts, list):
            for a in atts:
                if isinstance(a, dict) and str(a.get("id", "")).isdigit():
                    meta[int(a["id"])] = a
        out = []
        for pos, (name, data, idx) in enumerate(files):
            m = meta.get(idx if idx is not None else pos, {})
            fname = m.get("filename") or name
            out.append((str(fname), data, m.get("description")))
        if len(out) > self.max_files:
            _merge(errors, _too_long(["attachments"], self.max_files))
        return out

    # handlers: (user_id, params, query, headers, body) -> (status, json or None) ------------

    def _h_get_me(self, user_id: str, params: Mapping[str, str], query: Mapping[str, List[str]], headers: Any,
                  body: bytes) -> Tuple[int, Any]:
        out = self._user_json(user_id)
        out.update({"mfa_enabled": False, "locale": "en-US", "verified": True, "email": None})
        return 200, out

    def _h_get_channel(self, user_id: str, params: Mapping[str, str], query: Mapping[str, List[str]], headers: Any,
                       body: bytes) -> Tuple[int, Any]:
        return 200, self._channel_json(self._api_channel(params))

    def _h_get_member(self, user_id: str, params: Mapping[str, str], query: Mapping[str, List[str]], headers: Any,
                      body: bytes) -> Tuple[int, Any]:
        guild = self._guilds.get(params["guild_id"])
        if guild is None:
            raise _unknown("guild")
        uid = params["user_id"]
        if uid == "@me":
            uid = user_id
        member = guild.members.get(uid)
        if member is None:
            raise _unknown("member")
        roles, joined = member
        return 200, {
            "avatar": None, "banner": None, "communication_disabled_until": None, "flags": 0,
            "joined_at": _iso(joined), "nick": None, "pending": False, "premium_since": None,
            "roles": list(roles), "user": self._user_json(uid), "mute": False, "deaf": False,
        }

    def _h_list_messages(self, user_id: str, params: Mapping[str, str], query: Mapping[str, List[str]],
                         headers: Any, body: bytes) -> Tuple[int, Any]:
        ch = self._api_channel(params)
        errors: Dict[str, Any] = {}
        limit = _query_limit(query, 50, errors)
        anchors = {}
        for key in ("around", "before", "after"):
            if key in query:
                raw = query[key][-1]
                if not _is_snowflake(raw):
                    _merge(errors, _field_error([key], "NUMBER_TYPE_COERCE", f'Value "{raw}" is not snowflake.'))
                else:
                    anchors[key] = int(raw)
        if len(anchors) > 1:
            for key in anchors:
                _merge(errors, _field_error([key], "BASE_TYPE_BAD_COMBINATION",
                                            "Only one of around, before or after may be given."))
        if errors:
            raise _invalid_form(errors)
        msgs = ch.messages  # ascending ids
        if "after" in anchors:
            picked = [m for m in msgs if int(m.id) > anchors["after"]][:limit]
        elif "before" in anchors:
            older = [m for m in msgs if int(m.id) < anchors["before"]]
            picked = older[-limit:] if limit else []
        elif "around" in anchors:
            a = anchors["around"]
            older = [m for m in msgs if int(m.id) < a]
            newer = [m for m in msgs if int(m.id) >= a]
            n_new = min(len(newer), limit - limit // 2)
            n_old = min(len(older), limit - n_new)
            picked = (older[-n_old:] if n_old else []) + newer[:n_new]
        else:
            picked = msgs[-limit:]
        return 200, [self._render(m, user_id) for m in reversed(picked)]

    def _h_get_message(self, user_id: str, params: Mapping[str, str], query: Mapping[str, List[str]],
                       headers: Any, body: bytes) -> Tuple[int, Any]:
        _ch, msg = self._api_message(params)
        return 200, self._render(msg, user_id)

    def _h_create_message(self, user_id: str, params: Mapping[str, str], query: Mapping[str, List[str]],
                          headers: Any, body: bytes) -> Tuple[int, Any]:
        ch = self._api_channel(params)
        payload, raw_files = self._parse_body(headers, body)
        for name, data, _idx in raw_files:
            if len(data) > self.max_file_size:
                raise _ApiError(413, 40005, "Request entity too large")
        errors: Dict[str, Any] = {}
        self._validate_message_fields(payload, errors)
        nonce = payload.get("nonce")
        if nonce is not None:
            if isinstance(nonce, bool) or not isinstance(nonce, (str, int)):
                _merge(errors, _field_error(["nonce"], "BASE_TYPE_STRING", "This field must be a string or an integer."))
            elif isinstance(nonce, str) and len(nonce) > 25:
                _merge(errors, _too_long(["nonce"], 25))
            elif isinstance(nonce, int) and not (-2 ** 63 <= nonce < 2 ** 63):
                _merge(errors, _field_error(["nonce"], "NUMBER_TYPE_MAX", "Value is out of range."))
        files = self._build_files(payload, raw_files, errors)
        reference_id: Optional[str] = None
        ref = payload.get("message_reference")
        if ref is not None:
            if not isinstance(ref, dict):
                _merge(errors, _field_error(["message_reference"], "DICT_TYPE_CONVERT",
                                            "Only dictionaries may be used in a DictType"))
            else:
                rmid = ref.get("message_id")
                rcid = ref.get("channel_id") or ch.id
                fail_if_missing = ref.get("fail_if_not_exists", True) is not False
                rmid_s = str(rmid) if isinstance(rmid, (str, int)) and not isinstance(rmid, bool) else ""
                if not _is_snowflake(rmid_s):
                    _merge(errors, _field_error(["message_reference", "message_id"], "BASE_TYPE_REQUIRED",
                                                "This field is required"))
                elif str(rcid) != ch.id:
                    _merge(errors, _field_error(["message_reference"], "REPLIES_CANNOT_REFERENCE_OTHER_CHANNEL",
                                                "Cannot reply to a message in a different channel"))
                elif rmid_s in ch.by_id:
                    reference_id = rmid_s
                elif fail_if_missing:
                    _merge(errors, _field_error(["message_reference"], "MESSAGE_REFERENCE_UNKNOWN_MESSAGE",
                                                "Unknown message"))
        if errors:
            raise _invalid_form(errors)
        content = payload.get("content") or ""
        embeds = [self._clean_embed(e) for e in (payload.get("embeds") or [])]
        if not content.strip() and not embeds and not files and not payload.get("sticker_ids") \
                and not payload.get("components") and not payload.get("poll"):
            raise _ApiError(400, 50006, "Cannot send an empty message")
        if nonce is not None and payload.get("enforce_nonce") is True:
            key = (user_id, repr(nonce))
            hit = self._nonces.get(key)
            now = time.monotonic()
            if hit is not None and now - hit[2] <= self.nonce_window:
                old_ch = self._channels.get(hit[0])
                old = old_ch.by_id.get(hit[1]) if old_ch else None
                if old is not None:
                    return 200, self._render(old, user_id, with_nonce=True)
        am = payload.get("allowed_mentions")
        msg = self._create(ch, user_id, content=content, embeds=embeds, files=files, reference_id=reference_id,
                           allowed_mentions=dict(am) if isinstance(am, dict) else None,
                           tts=bool(payload.get("tts")), flags=int(payload.get("flags") or 0) & (4 | 4096),
                           nonce=nonce)
        if nonce is not None and payload.get("enforce_nonce") is True:
            self._nonces[(user_id, repr(nonce))] = (ch.id, msg.id, time.monotonic())
        return 200, self._render(msg, user_id, with_nonce=True)

    def _h_edit_message(self, user_id: str, params: Mapping[str, str], query: Mapping[str, List[str]],
                        headers: Any, body: bytes) -> Tuple[int, Any]:
        ch, msg = self._api_message(params)
        if msg.author_id != user_id:
            raise _ApiError(403, 50005, "Cannot edit a message authored by another user")
        payload, raw_files = self._parse_body(headers, body)
        for _name, data, _idx in raw_files:
            if len(data) > self.max_file_size:
                raise _ApiError(413, 40005, "Request entity too large")
        errors: Dict[str, Any] = {}
        self._validate_message_fields(payload, errors)
        files = self._build_files(payload, raw_files, errors)
        if errors:
            raise _invalid_form(errors)
        content = msg.content if "content" not in payload else (payload.get("content") or "")
        embeds = msg.embeds if "embeds" not in payload else [self._clean_embed(e) for e in payload.get("embeds") or []]
        keep = msg.attachments
        if isinstance(payload.get("attachments"), list):
            ids = {str(a.get("id")) for a in payload["attachments"] if isinstance(a, dict)}
            keep = [a for a in msg.attachments if a.id in ids]
        if not content.strip() and not embeds and not keep and not files:
            raise _ApiError(400, 50006, "Cannot send an empty message")
        for a in msg.attachments:
            if a not in keep:
                self._attachments.pop(a.id, None)
        msg.content = content
        msg.embeds = embeds
        msg.attachments = list(keep) + [self._new_attachment(ch.id, msg.id, n, d, desc) for n, d, desc in files]
        if "flags" in payload and payload["flags"] is not None:
            msg.flags = int(payload["flags"]) & (4 | 4096)
        if "allowed_mentions" in payload:
            am = payload.get("allowed_mentions")
            msg.allowed_mentions = dict(am) if isinstance(am, dict) else None
        msg.edited_ms = int(time.time() * 1000)
        self._compute_mentions(msg)
        return 200, self._render(msg, user_id)

    def _h_delete_message(self, user_id: str, params: Mapping[str, str], query: Mapping[str, List[str]],
                          headers: Any, body: bytes) -> Tuple[int, Any]:
        ch, msg = self._api_message(params)
        self._delete(ch, msg.id)
        return 204, None

    def _api_emoji(self, params: Mapping[str, str]) -> Tuple[str, Dict[str, Any]]:
        try:
            return _parse_emoji(_decode_emoji_segment(params["emoji"]))
        except (ValueError, UnicodeDecodeError):
            raise _unknown("emoji") from None

    def _h_add_reaction(self, user_id: str, params: Mapping[str, str], query: Mapping[str, List[str]],
                        headers: Any, body: bytes) -> Tuple[int, Any]:
        _ch, msg = self._api_message(params)
        key, ejson = self._api_emoji(params)
        self._add_reaction(msg, key, ejson, user_id)
        return 204, None

    def _h_remove_reaction(self, user_id: str, params: Mapping[str, str], query: Mapping[str, List[str]],
                           headers: Any, body: bytes) -> Tuple[int, Any]:
        _ch, msg = self._api_message(params)
        key, _ejson = self._api_emoji(params)
        self._remove_reaction(msg, key, user_id)
        return 204, None

    def _h_list_reaction_users(self, user_id: str, params: Mapping[str, str], query: Mapping[str, List[str]],
                               headers: Any, body: bytes) -> Tuple[int, Any]:
        _ch, msg = self._api_message(params)
        key, _ejson = self._api_emoji(params)
        errors: Dict[str, Any] = {}
        limit = _query_limit(query, 25, errors)
        after = 0
        if "after" in query:
            raw = query["after"][-1]
            if _is_snowflake(raw):
                after = int(raw)
            else:
                _merge(errors, _field_error(["after"], "NUMBER_TYPE_COERCE", f'Value "{raw}" is not snowflake.'))
        if errors:
            raise _invalid_form(errors)
        if query.get("type", ["0"])[-1] == "1":
            return 200, []
        users = sorted((int(u) for u in msg.reactions.get(key, [])))
        users = [u for u in users if u > after][:limit]
        return 200, [self._user_json(str(u)) for u in users]
