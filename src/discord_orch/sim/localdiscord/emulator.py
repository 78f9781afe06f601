"""``LocalDiscord``: the server's lifecycle, the request pipeline and its log, fault injection.

A request goes: outage and injected faults, then auth (401), the global and per-route
rate limits, path ids, access (403), and the route's handler (``messages``,
``reactions``, ``guilds``), all under the store's lock; every request is logged as a
``RequestRecord``. Attachments are served apart, like Discord's CDN, without auth.
"""

from __future__ import annotations

import math
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .apierror import ApiError, field_error, invalid_form
from .faults import Fault, injected_response, take_fault
from .gateway import GatewayRoutes
from .interactions import InteractionRoutes
from .guilds import GuildRoutes
from .messages import MessageRoutes
from .ratelimits import Limiter, RateLimits
from .reactions import ReactionRoutes
from .threads import START_ROUTE, ThreadRoutes
from .routes import (API_PREFIX, ATTACHMENT_ROUTE, NO_BOT_TOKEN, ROUTE_DEFS, SNOWFLAKE_PARAMS, bucket_hash, match_route,
                     norm_route)
from .server import Resp, Server, error_response, json_bytes
from .store import looks_like_snowflake


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


class LocalDiscord(MessageRoutes, ReactionRoutes, GuildRoutes, ThreadRoutes, GatewayRoutes, InteractionRoutes):
    """The loopback Discord. See the package docstring for what is emulated."""

    ROUTES: Tuple[str, ...] = tuple(f"{m} {t}" for (m, t, _h, _b) in ROUTE_DEFS)

    def __init__(self, rate_limits: Optional[RateLimits] = None, message_content_intent: bool = True,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(message_content_intent)
        self.rate_limits: RateLimits = rate_limits if rate_limits is not None else RateLimits.discord_defaults()
        self.latency = 0.0
        self._host = host
        self._port = port
        self._server: Optional[Server] = None
        self._thread: Optional[threading.Thread] = None
        self._limiter = Limiter()
        self._faults: List[Fault] = []
        self._records: List[RequestRecord] = []
        self._outage_until: Optional[float] = None  # monotonic; inf = until set_outage(False)

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> "LocalDiscord":
        """Listen and serve on a background thread (idempotent); returns self."""
        with self._lock:
            if self._server is not None:
                return self
            self._server = Server((self._host, self._port), self)
            self._port = self._server.server_address[1]
            self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                            name=f"LocalDiscord:{self._port}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        self._stop_gateway()
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
        """Whether the server is listening."""
        return self._server is not None

    @property
    def port(self) -> int:
        """The TCP port (ephemeral unless given)."""
        return self._port

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:<port>`` (no API prefix)."""
        return f"http://{self._host}:{self._port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/api/v10``, for DiscordClient's base_url."""
        if self._server is None:
            raise RuntimeError("LocalDiscord is not started: call start() or use it as a context manager")
        return self.origin + API_PREFIX

    # ----------------------------------------------------------------- the request log

    @property
    def requests(self) -> List[RequestRecord]:
        """Every request so far, in order."""
        with self._lock:
            return list(self._records)

    def request_count(self, method: Optional[str] = None, route: Optional[str] = None) -> int:
        """How many requests matched ``method`` and ``route`` (a template; either may be None)."""
        with self._lock:
            return sum(1 for r in self._records if self._record_matches(r, method, route))

    def count_429(self, route: Optional[str] = None) -> int:
        """How many requests (of ``route``) were answered 429."""
        with self._lock:
            return sum(1 for r in self._records if r.status == 429 and self._record_matches(r, None, route))

    def reset_log(self) -> None:
        """Forget the requests so far."""
        with self._lock:
            self._records.clear()

    def reset_rate_limits(self) -> None:
        """Forget every bucket and global window (fresh windows on the next request)."""
        with self._lock:
            self._limiter.reset()

    @staticmethod
    def _record_matches(rec: RequestRecord, method: Optional[str], route: Optional[str]) -> bool:
        if method is not None and rec.method != method.upper():
            return False
        if route is None:
            return True
        if rec.route is None:
            return False
        rmethod, rpath = norm_route(route)
        recm, recpath = norm_route(rec.route)
        return (rmethod is None or rmethod == recm) and rpath == recpath

    # ----------------------------------------------------------------- fault injection

    def fail(self, method: Optional[str], route: str, statuses: Sequence[int] = (502, 503),
             count: Optional[int] = None, body: Optional[Any] = None, after_processing: bool = False,
             where: Optional[Mapping[str, str]] = None) -> None:
        """The next matching requests answer these statuses in order (an int ``count``
        longer than ``statuses`` repeats the last). Nothing takes effect unless
        ``after_processing`` (then the request does, and its answer is replaced). ``body``
        overrides the JSON body ``{"message": "<status>: <reason>", "code": 0}``. ``where``
        narrows the match to path parameters (``{"message_id": ...}``) and ``"user_id"``
        (the bot asking)."""
        statuses = [int(s) for s in statuses]
        if not statuses:
            raise ValueError("statuses must not be empty")
        n = len(statuses) if count is None else int(count)
        if n <= 0:
            return
        with self._lock:
            self._faults.append(Fault(method.upper() if method else None, route, "fail", statuses,
                                      remaining=n, body=body, after_processing=after_processing,
                                      where={k: str(v) for k, v in (where or {}).items()}))

    def drop(self, method: Optional[str], route: str, count: int = 1, after_processing: bool = False,
             where: Optional[Mapping[str, str]] = None) -> None:
        """Close the connection with no response for the next ``count`` matching
        requests; with ``after_processing`` the request takes effect first. ``where``
        as for ``fail``."""
        if count <= 0:
            return
        with self._lock:
            self._faults.append(Fault(method.upper() if method else None, route, "drop", remaining=int(count),
                                      after_processing=after_processing,
                                      where={k: str(v) for k, v in (where or {}).items()}))

    def lose_thread_start_answers(self, count: int = 1, message_id: Optional[str] = None,
                                  user_id: Optional[str] = None) -> None:
        """The next ``count`` thread starts (of ``message_id``, by ``user_id``, if given) take
        effect, then the connection drops: the thread exists, the starter never hears so."""
        where = {k: v for k, v in (("message_id", message_id), ("user_id", user_id)) if v is not None}
        self.drop("POST", START_ROUTE, count=count, after_processing=True, where=where)

    def clear_faults(self) -> None:
        """Disarm every injected fault."""
        with self._lock:
            self._faults.clear()

    def set_outage(self, on: bool) -> None:
        """The whole API answers 503 until ``set_outage(False)``."""
        with self._lock:
            self._outage_until = math.inf if on else None

    def outage_for(self, seconds: float) -> None:
        """The whole API answers 503 for ``seconds``."""
        with self._lock:
            self._outage_until = time.monotonic() + float(seconds)

    @property
    def outage(self) -> bool:
        """Whether an outage is on now."""
        with self._lock:
            return self._outage_until is not None and time.monotonic() < self._outage_until

    # ----------------------------------------------------------------- the request pipeline

    def _handle(self, method: str, raw_path: str, headers: Any, body: bytes) -> Resp:
        """Answer one request (called from a handler thread; never raises)."""
        t0 = time.time()
        with self._lock:
            try:
                resp, rec = self._pipeline(method, raw_path, headers, body)
            except Exception as exc:  # pragma: no cover - a bug here must not kill the connection silently
                resp = Resp(500, json_bytes({"message": f"500: Internal Server Error ({exc!r})", "code": 0}))
                rec = dict(route=None, user_id=None, channel_id=None, bucket=None)
            self._records.append(RequestRecord(t0, method, raw_path, rec["route"], 0 if resp.drop else resp.status,
                                               rec["user_id"], rec["channel_id"], rec["bucket"]))
        return resp

    def _pipeline(self, method: str, raw_path: str, headers: Any, body: bytes) -> Tuple[Resp, Dict[str, Any]]:
        split = urllib.parse.urlsplit(raw_path)
        path = split.path
        rec: Dict[str, Any] = {"route": None, "user_id": None, "channel_id": None, "bucket": None}

        if path.startswith("/attachments/"):
            return self._serve_attachment(method, path, split.query, rec)
        if not (path == API_PREFIX or path.startswith(API_PREFIX + "/")):
            return error_response(ApiError(404, 0, "404: Not Found")), rec

        sub = path[len(API_PREFIX):]
        candidates, params = match_route(sub)
        token_user = self._auth_user(headers)
        rec["user_id"] = token_user
        rec["channel_id"] = params.get("channel_id")
        chosen = next((c for c in candidates if c[0] == method), None)
        if chosen is not None:
            rec["route"] = f"{method} {chosen[1]}"

        # an outage and injected faults come first: nothing behind them takes effect
        if self._outage_until is not None:
            if time.monotonic() < self._outage_until:
                return Resp(503, json_bytes({"message": "Service Unavailable", "code": 0})), rec
            self._outage_until = None
        if not candidates:
            return error_response(ApiError(404, 0, "404: Not Found")), rec
        if chosen is None:
            allow = ", ".join(sorted({c[0] for c in candidates}))
            return error_response(ApiError(405, 0, "405: Method Not Allowed", headers=[("Allow", allow)])), rec
        _m, template, handler_name, family = chosen
        route = f"{method} {template}"
        fault = take_fault(self._faults, method, route, params, token_user)
        if fault is not None and not fault[0].after_processing:
            if fault[0].kind == "drop":
                return Resp(0, drop=True), rec
            return injected_response(fault[1] or 500, fault[0].body), rec

        resp = self._authorized_pipeline(method, route, template, handler_name, family, params, split.query,
                                         headers, body, token_user, rec)
        if fault is not None:   # after processing: what happened stays, the answer is lost or replaced
            if fault[0].kind == "drop":
                resp.drop = True
            else:
                resp = injected_response(fault[1] or 500, fault[0].body)
        return resp, rec

    def _authorized_pipeline(self, method: str, route: str, template: str, handler_name: str,
                             family: Optional[str], params: Dict[str, str], query: str, headers: Any,
                             body: bytes, user_id: Optional[str], rec: Dict[str, Any]) -> Resp:
        if user_id is None:
            if template not in NO_BOT_TOKEN:
                return error_response(ApiError(401, 0, "401: Unauthorized"))
            user_id = ""
        rl = self.rate_limits
        rl_headers: List[Tuple[str, str]] = []
        if rl.enabled:
            glob = self._limiter.check_global(user_id, rl)
            if glob is not None:
                return glob
            major = params.get("channel_id") or params.get("guild_id") or ""
            fam = family or route
            if family == "message_create":
                limit, window = rl.message_create
            elif family == "reactions":
                limit, window = rl.reactions
            elif family == "thread_create":
                limit, window = rl.thread_create
            else:
                limit, window = rl.default
            bucket = bucket_hash(fam)
            rec["bucket"] = bucket
            limited, rl_headers = self._limiter.take_bucket((bucket, major, user_id), int(limit), float(window),
                                                             bucket)   # each bot its own buckets
            if limited is not None:
                return limited
        try:
            for name in SNOWFLAKE_PARAMS:
                if name in params and not (name == "user_id" and params[name] == "@me"):
                    if not looks_like_snowflake(params[name]):
                        shown = urllib.parse.unquote(params[name])
                        raise invalid_form(field_error([name], "NUMBER_TYPE_COERCE",
                                                       f'Value "{shown}" is not snowflake.'))
            self._check_denied(params, user_id)
            self._thread_gate(method, template, params, user_id)
            handler = getattr(self, handler_name)
            status, payload = handler(user_id, params, urllib.parse.parse_qs(query, keep_blank_values=True),
                                      headers, body)
            resp = Resp(status, b"" if payload is None else json_bytes(payload),
                        content_type=None if payload is None else "application/json")
        except ApiError as err:
            resp = error_response(err)
        resp.headers.extend(rl_headers)
        return resp

    def _serve_attachment(self, method: str, path: str, query: str,
                          rec: Dict[str, Any]) -> Tuple[Resp, Dict[str, Any]]:
        rec["route"] = ATTACHMENT_ROUTE
        parts = path.split("/")
        # ['', 'attachments', channel, attachment, filename]
        if len(parts) == 5:
            rec["channel_id"] = parts[2]
        params = {"channel_id": parts[2], "attachment_id": parts[3], "filename": parts[4]} if len(parts) == 5 else {}
        fault = take_fault(self._faults, method, ATTACHMENT_ROUTE, params) if len(parts) == 5 else None
        if fault is not None:
            f, status = fault
            if f.kind == "drop":
                return Resp(0, drop=True), rec
            return injected_response(status or 500, f.body), rec
        if method not in ("GET", "HEAD"):
            return Resp(405, b"Method Not Allowed", content_type="text/plain", headers=[("Allow", "GET, HEAD")]), rec
        entry = self._attachments.get(parts[3]) if len(parts) == 5 else None
        # A deleted file, and a link unsigned, badly signed or expired, get the same answer from Discord's CDN.
        if entry is None or entry[0] != parts[2] or not self.link_valid(parts[3], query):
            return Resp(404, b"This content is no longer available.", content_type="text/plain"), rec
        att = entry[2]
        return Resp(200, att.data, content_type=att.content_type or "application/octet-stream"), rec
