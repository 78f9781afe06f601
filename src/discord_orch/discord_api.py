"""DiscordClient: Discord's HTTP API v10 over ``requests``, with typed results and errors.

This is the edge: JSON becomes :mod:`discord_orch.models` values, error answers
become :mod:`discord_orch.errors` exceptions, and nothing above this module sees
a raw response. Rate limits are obeyed proactively through the pure
:class:`~discord_orch.ratelimit.RateLimiter` (see its module docstring for the
protocol); this module owns the clock, the sleeping and the lock.

Retries are bounded: connection errors, timeouts and 500/502/503/504 are
retried up to ``max_retries`` times with exponential backoff and jitter; a 429
is waited out (``retry_after``, capped by ``max_wait``) and retried at most
:data:`MAX_RATE_LIMIT_RETRIES` times; every other 4xx raises at once.
Message creation always carries a nonce with ``enforce_nonce`` so that a retry
of a create that did reach Discord returns the first message instead of
posting a second one.

After a 401 the client refuses to send anything else: Discord (Cloudflare)
bans clients that keep sending invalid requests.

The bot token is sent per request in the ``Authorization`` header and appears
in no log line, exception or repr.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import random
import re
import socket
import threading
import time
import urllib.parse
from types import MappingProxyType
from typing import Any, Callable, Dict, FrozenSet, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import requests

from . import PROJECT_URL, __version__
from .errors import (
    MISSING_PERMISSIONS,
    UNKNOWN_CHANNEL,
    AttachmentTooLarge,
    BadRequest,
    ConfigError,
    DiscordError,
    DiscordUnavailable,
    Forbidden,
    NotFound,
    RateLimitedTooLong,
    ThreadAlreadyExists,
    TooManyActiveThreads,
    Unauthorized,
)
from .models import (
    API_BASE_URL,
    AUTO_ARCHIVE_MINUTES,
    THREAD_NAME_MAX,
    ActiveThreads,
    Channel,
    FileUpload,
    GatewayBot,
    Guild,
    Member,
    Message,
    User,
)
from .ratelimit import RateLimiter, RateLimitHeaders

__all__ = ["DiscordClient", "ClientStats", "NO_MENTIONS"]

log = logging.getLogger("discord_orch.http")

DEFAULT_MAX_WAIT_S = 60.0
DEFAULT_TIMEOUT = (5.0, 30.0)  # (connect, read) seconds
DEFAULT_MAX_RETRIES = 3        # after the first attempt, for transient failures only
RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})
RETRY_BACKOFF_BASE_S = 0.5     # first backoff; doubles per retry...
RETRY_BACKOFF_CAP_S = 8.0      # ...up to this; the actual sleep is jittered in [d/2, d]
MAX_RATE_LIMIT_RETRIES = 5     # 429s in a row for one call before giving up
FALLBACK_RETRY_AFTER_S = 1.0   # a 429 that says nothing about when to retry
NONCE_MAX_LENGTH = 25          # Discord's limit for a string nonce
MAX_PAGE_SIZE = 100            # Discord's limit for list messages / reaction users
DOWNLOAD_CHUNK_BYTES = 64 * 1024
ERROR_TEXT_MAX = 300           # keep exception messages one readable line

# allowed_mentions that pings nobody; read-only so no caller can change the default.
NO_MENTIONS: Mapping[str, Any] = MappingProxyType({"parse": ()})

_TRANSIENT_EXCEPTIONS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
_ATTACHMENT_ROUTE = "{attachment_url}"


class ClientStats(NamedTuple):
    """Counters since the client was made. ``waited_s`` sums rate-limit waits over all threads."""

    requests: int = 0       # HTTP attempts actually sent (including retries and downloads)
    responses_429: int = 0
    retries: int = 0        # attempts repeated after a transient failure or a 429
    waited_s: float = 0.0
REDACTED = "[token removed]"        # what stands where an outgoing body held the bot token


class DiscordClient:
    """A thread-safe client for the part of Discord's HTTP API discord-orch uses.

    ``clock`` and ``sleep`` are injectable for tests; ``clock`` must be monotonic.
    ``user_agent``, if given, is appended to Discord's required
    ``DiscordBot (url, version)`` form.
    """

    def __init__(self, token: str, base_url: str = API_BASE_URL, *, max_wait: float = DEFAULT_MAX_WAIT_S,
                 timeout: Union[float, Tuple[float, float]] = DEFAULT_TIMEOUT,
                 max_retries: int = DEFAULT_MAX_RETRIES, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, user_agent: Optional[str] = None) -> None:
        token = (token or "").strip()
        if token.startswith("Bot "):
            token = token[len("Bot "):].strip()
        if not token or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in token):
            # Never echo the value: it is a secret, even when malformed.
            raise ConfigError("bot token", "is empty or contains whitespace or control characters")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self._token = token
        # what an agent could put in a post of ours: the token, also as markdown escaping leaves it
        # (a backslash before _ or *) and JSON then (two): never sent in a body, whatever the post
        self._token_in_text = re.compile(r"\\{0,2}".join(re.escape(c) for c in token))
        self._token_in_bytes = re.compile(rb"\\{0,2}".join(re.escape(c.encode()) for c in token))
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._max_retries = int(max_retries)
        self._clock = clock
        self._sleep = sleep
        self._user_agent = f"DiscordBot ({PROJECT_URL}, {__version__})" + (f" {user_agent}" if user_agent else "")
        self._limiter = RateLimiter(max_wait)
        self._lock = threading.Lock()  # guards the limiter, the stats and _unauthorized
        self._unauthorized = False
        self._setup_problem: Optional[DiscordError] = None
        self._stats = ClientStats()
        self._random = random.Random()
        self._session = requests.Session()
        # The environment is read once per client (proxies: once per origin), not by requests
        # on every call: with trust_env it rescans os.environ twice per request for proxies
        # (about a quarter of the client's CPU per call) and reads ~/.netrc, whose entry (even
        # a `default` one) would replace the bot's Authorization header with Basic auth.
        # Proxies (HTTP(S)_PROXY, NO_PROXY) and the CA bundle (REQUESTS_CA_BUNDLE,
        # CURL_CA_BUNDLE) are honoured as before.
        self._session.trust_env = False
        self._session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        self._proxies: Dict[Tuple[str, str], Dict[str, str]] = {}  # (scheme, host:port) -> proxies
        self._forbidden_thread: Optional[int] = None

    # -- lifecycle ------------------------------------------------------

    def __repr__(self) -> str:
        return f"DiscordClient(base_url={self._base_url!r}, max_wait={self._limiter.max_wait})"

    def forbid_thread(self, ident: Optional[int]) -> None:
        """Strict mode (the test suite sets it): a request from this thread raises RuntimeError. The pass's
        loop thread is named here, so a request made there, which would stall every agent's supervision
        for as long as Discord takes, fails every test that reaches it (core/hub.py)."""
        self._forbidden_thread = ident

    def _check_thread(self, method: str, template: str) -> None:
        if self._forbidden_thread is not None and threading.get_ident() == self._forbidden_thread:
            raise RuntimeError(f"{method} {template} sent from the pass's loop thread (strict mode)")

    def close(self) -> None:
        """Close the HTTP session."""
        self._session.close()

    def __enter__(self) -> "DiscordClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def stats(self) -> ClientStats:
        """Requests, retries and 429s so far (a copy)."""
        with self._lock:
            return self._stats

    # -- API ------------------------------------------------------------

    def me(self) -> User:
        """The bot's own user (GET /users/@me)."""
        return self._call("GET", "/users/@me", {}, parse=User.from_json)

    def gateway_bot(self) -> GatewayBot:
        """The Gateway's URL and the sessions left to start today (GET /gateway/bot)."""
        return self._call("GET", "/gateway/bot", {}, parse=GatewayBot.from_json)

    def guild_commands(self, application_id: str, guild_id: str) -> List[str]:
        """The names of the application's commands in a server (GET .../guilds/{id}/commands)."""
        return self._call("GET", "/applications/{application_id}/guilds/{guild_id}/commands",
                          {"application_id": application_id, "guild_id": guild_id},
                          parse=lambda data: [str(c["name"]) for c in data])

    def set_guild_commands(self, application_id: str, guild_id: str, commands: List[Dict[str, Any]]) -> List[str]:
        """Replace the application's commands in a server (guild commands take effect at once); their names."""
        return self._call("PUT", "/applications/{application_id}/guilds/{guild_id}/commands",
                          {"application_id": application_id, "guild_id": guild_id}, json_body=commands,
                          parse=lambda data: [str(c["name"]) for c in data])

    def answer_interaction(self, interaction_id: str, token: str, answer: Dict[str, Any]) -> None:
        """The first answer to an interaction, within Discord's 3 seconds (a second one: 40060; late: 10062)."""
        self._call("POST", "/interactions/{interaction_id}/{interaction_token}/callback",
                   {"interaction_id": interaction_id, "interaction_token": token}, json_body=answer, parse=None)

    def get_channel(self, channel_id: str) -> Channel:
        """A channel or a thread (GET /channels/{id}); a thread's parent, creator, archive state parsed."""
        return self._call("GET", "/channels/{channel_id}", {"channel_id": channel_id}, parse=Channel.from_json)

    def find_thread(self, thread_id: str) -> Optional[Channel]:
        """The thread with this id (a thread started from a message has the message's id), or None
        when there is none: 404 Unknown Channel answers the question, it is no setup problem."""
        try:
            return self._call("GET", "/channels/{channel_id}", {"channel_id": thread_id}, parse=Channel.from_json,
                              answers=_NO_SUCH_CHANNEL)
        except NotFound as exc:
            if exc.code != UNKNOWN_CHANNEL:
                raise
            return None

    def post_in_thread(self, thread_id: str, content: str, *, files: Sequence[FileUpload] = (),
                       nonce: Optional[str] = None,
                       components: Optional[Sequence[Mapping[str, Any]]] = None) -> Optional[Message]:
        """Post in a thread if there is one (None when there is none: 404 Unknown Channel answers
        the question, as for a task claimed before its host started threads)."""
        try:
            return self.create_message(thread_id, content, files=files, nonce=nonce, components=components,
                                       answers=_NO_SUCH_CHANNEL)
        except NotFound as exc:
            if exc.code != UNKNOWN_CHANNEL:
                raise
            return None

    def start_thread(self, channel_id: str, message_id: str, name: str, *,
                     auto_archive_duration: Optional[int] = None) -> Channel:
        """Start the public thread of a message (POST .../messages/{id}/threads); its id is the message's.

        Discord allows one thread per message: a second start raises :class:`ThreadAlreadyExists`
        (``after_retry`` when this call's first attempt had no answer: the thread may be its own);
        :class:`TooManyActiveThreads` at the server's cap. Like every call, a start whose answer
        was lost is retried (bounded), so the caller must look before deciding who won."""
        if not isinstance(name, str) or not 1 <= len(name) <= THREAD_NAME_MAX:
            raise ValueError(f"a thread name must have 1 to {THREAD_NAME_MAX} characters")
        payload: Dict[str, Any] = {"name": name}
        if auto_archive_duration is not None:
            if auto_archive_duration not in AUTO_ARCHIVE_MINUTES:
                raise ValueError(f"auto_archive_duration must be one of {AUTO_ARCHIVE_MINUTES}")
            payload["auto_archive_duration"] = auto_archive_duration
        return self._call("POST", "/channels/{channel_id}/messages/{message_id}/threads",
                          {"channel_id": channel_id, "message_id": message_id}, json_body=payload,
                          parse=Channel.from_json)

    def edit_thread(self, thread_id: str, *, archived: Optional[bool] = None, locked: Optional[bool] = None,
                    name: Optional[str] = None, answers: FrozenSet[Tuple[int, int]] = frozenset()) -> Channel:
        """Change a thread (PATCH /channels/{thread}): archive or unarchive, lock or unlock, rename."""
        payload = {k: v for k, v in (("archived", archived), ("locked", locked), ("name", name)) if v is not None}
        if not payload:
            raise ValueError("nothing to change")
        return self._call("PATCH", "/channels/{channel_id}", {"channel_id": thread_id}, json_body=payload,
                          parse=Channel.from_json, answers=answers)

    def archive_thread(self, thread_id: str, *, lock: bool = False) -> Optional[Channel]:
        """Archive a thread (and lock it: nobody but moderators can post in it again); None when there is
        no such thread (404 Unknown Channel answers the question, as for ``post_in_thread``) or when it is
        another bot's and this one lacks Manage Threads (403 Missing Permissions: a thread taken over)."""
        try:
            return self.edit_thread(thread_id, archived=True, locked=True if lock else None,
                                    answers=_NO_SUCH_CHANNEL | _NOT_THE_THREADS_OWNER)
        except NotFound as exc:
            if exc.code != UNKNOWN_CHANNEL:
                raise
            return None
        except Forbidden as exc:
            if exc.code != MISSING_PERMISSIONS:
                raise
            return None

    def rename_thread(self, thread_id: str, name: str) -> bool:
        """Rename a thread; False when it is another bot's and this one lacks Manage Threads (403)."""
        try:
            self.edit_thread(thread_id, name=name, answers=_NOT_THE_THREADS_OWNER)
            return True
        except Forbidden as exc:
            if exc.code != MISSING_PERMISSIONS:
                raise
            return False

    def list_active_threads(self, guild_id: str) -> ActiveThreads:
        """The server's active threads, each with its last_message_id (GET /guilds/{id}/threads/active)."""
        return self._call("GET", "/guilds/{guild_id}/threads/active", {"guild_id": guild_id},
                          parse=ActiveThreads.from_json)

    def get_guild(self, guild_id: str) -> Guild:
        """A server's owner and roles with their permission bits (GET /guilds/{id})."""
        return self._call("GET", "/guilds/{guild_id}", {"guild_id": guild_id}, parse=Guild.from_json)

    def get_member(self, guild_id: str, user_id: str) -> Member:
        """A member of a server, with their roles (GET /guilds/{id}/members/{user})."""
        return self._call("GET", "/guilds/{guild_id}/members/{user_id}",
                          {"guild_id": guild_id, "user_id": user_id}, parse=Member.from_json)

    def get_message(self, channel_id: str, message_id: str) -> Message:
        return self._call("GET", "/channels/{channel_id}/messages/{message_id}",
                          {"channel_id": channel_id, "message_id": message_id}, parse=Message.from_json)

    def list_messages(self, channel_id: str, *, after: Optional[str] = None, before: Optional[str] = None,
                      around: Optional[str] = None, limit: int = 50) -> List[Message]:
        """One page of messages, in Discord's order (newest first)."""
        anchors = {k: v for k, v in (("after", after), ("before", before), ("around", around)) if v is not None}
        if len(anchors) > 1:
            raise ValueError("give at most one of after, before, around")
        query: Dict[str, str] = {k: str(v) for k, v in anchors.items()}
        query["limit"] = str(_page_size(limit))
        return self._call("GET", "/channels/{channel_id}/messages", {"channel_id": channel_id}, query=query,
                          parse=_list_of(Message.from_json))

    def iter_messages_after(self, channel_id: str, after: str, page_size: int = MAX_PAGE_SIZE) -> Iterator[Message]:
        """Every message after ``after``, OLDEST first, one page request at a time."""
        page_size = _page_size(page_size)
        _check_ids("GET", "/channels/{channel_id}/messages", {"after": after}, channel_id)
        cursor = int(after)
        while True:
            page = self.list_messages(channel_id, after=str(cursor), limit=page_size)
            # Sort rather than trust the order, and never walk backwards.
            fresh = sorted((m for m in page if int(m.id) > cursor), key=lambda m: int(m.id))
            yield from fresh
            if len(page) < page_size or not fresh:
                return
            cursor = int(fresh[-1].id)

    def create_message(self, channel_id: str, content: str = "", *, files: Sequence[FileUpload] = (),
                       reply_to: Optional[str] = None, nonce: Optional[Union[str, int]] = None,
                       allowed_mentions: Optional[Mapping[str, Any]] = NO_MENTIONS,
                       embeds: Optional[Sequence[Mapping[str, Any]]] = None,
                       components: Optional[Sequence[Mapping[str, Any]]] = None,
                       answers: FrozenSet[Tuple[int, int]] = frozenset()) -> Message:
        """Post a message. Always idempotent: a nonce (given or generated) is sent with
        ``enforce_nonce``, so a retried create returns the message the first try made.
        ``answers``: refusals that answer a question rather than say the setup is wrong (see _call)."""
        import secrets   # only to post: not on an idle pass

        cid = str(channel_id)
        _check_ids("POST", "/channels/{channel_id}/messages", {"reply_to": reply_to} if reply_to else {}, cid)
        payload: Dict[str, Any] = {
            "content": content,
            "allowed_mentions": _plain(NO_MENTIONS if allowed_mentions is None else allowed_mentions),
            "nonce": _check_nonce(nonce) if nonce is not None else secrets.token_hex(NONCE_MAX_LENGTH // 2),
            "enforce_nonce": True,
        }
        if embeds is not None:
            payload["embeds"] = _plain(list(embeds))
        if components is not None:
            payload["components"] = _plain(list(components))
        if reply_to is not None:
            payload["message_reference"] = {"message_id": str(reply_to), "channel_id": cid,
                                            "fail_if_not_exists": False}
        if not files:
            return self._call("POST", "/channels/{channel_id}/messages", {"channel_id": cid}, json_body=payload,
                              parse=Message.from_json, answers=answers)
        uploads = list(files)
        if not all(isinstance(f, FileUpload) for f in uploads):
            raise TypeError("files must be FileUpload values")
        payload["attachments"] = [
            {"id": i, "filename": f.filename, **({"description": f.description} if f.description else {})}
            for i, f in enumerate(uploads)
        ]
        form = {"payload_json": json.dumps(payload)}
        parts = [(f"files[{i}]", (f.filename, f.data, "application/octet-stream")) for i, f in enumerate(uploads)]
        return self._call("POST", "/channels/{channel_id}/messages", {"channel_id": cid}, form=form, files=parts,
                          parse=Message.from_json, answers=answers)

    def edit_message(self, channel_id: str, message_id: str, content: Optional[str] = None, *,
                     embeds: Optional[Sequence[Mapping[str, Any]]] = None,
                     components: Optional[Sequence[Mapping[str, Any]]] = None,
                     allowed_mentions: Optional[Mapping[str, Any]] = NO_MENTIONS) -> Message:
        """Edit a message's content, embeds or buttons (PATCH); mentions stay off."""
        payload: Dict[str, Any] = {"allowed_mentions": _plain(NO_MENTIONS if allowed_mentions is None
                                                              else allowed_mentions)}
        if content is not None:
            payload["content"] = content
        if embeds is not None:
            payload["embeds"] = _plain(list(embeds))
        if components is not None:
            payload["components"] = _plain(list(components))
        return self._call("PATCH", "/channels/{channel_id}/messages/{message_id}",
                          {"channel_id": channel_id, "message_id": message_id}, json_body=payload,
                          parse=Message.from_json)

    def delete_message(self, channel_id: str, message_id: str) -> None:
        """Delete one of the bot's own messages (DELETE)."""
        self._call("DELETE", "/channels/{channel_id}/messages/{message_id}",
                   {"channel_id": channel_id, "message_id": message_id}, parse=None)

    def add_reaction(self, channel_id: str, message_id: str, emoji: str) -> None:
        """React with ``emoji`` as the bot (PUT, idempotent)."""
        self._call("PUT", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
                   {"channel_id": channel_id, "message_id": message_id, "emoji": emoji}, parse=None)

    def remove_own_reaction(self, channel_id: str, message_id: str, emoji: str) -> None:
        """Take the bot's ``emoji`` reaction away (DELETE)."""
        self._call("DELETE", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
                   {"channel_id": channel_id, "message_id": message_id, "emoji": emoji}, parse=None)

    def reaction_users(self, channel_id: str, message_id: str, emoji: str, *, after: Optional[str] = None,
                       limit: int = 25) -> List[User]:
        query = {"limit": str(_page_size(limit))}
        if after is not None:
            query["after"] = str(after)
        return self._call("GET", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}",
                          {"channel_id": channel_id, "message_id": message_id, "emoji": emoji}, query=query,
                          parse=_list_of(User.from_json))

    def download(self, url: str, *, max_bytes: int) -> bytes:
        """An attachment's bytes; :class:`AttachmentTooLarge` past ``max_bytes`` (read no further).

        The token is sent only to the API's own origin and path, never to a CDN.
        """
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("attachment URL must be http(s)")
        filename = urllib.parse.unquote(parts.path.rsplit("/", 1)[-1])
        self._check_thread("GET", _ATTACHMENT_ROUTE)
        auth = self._is_api_url(url)
        headers = self._headers(auth=auth)
        failures = 0
        while True:
            if auth:
                self._check_authorized("GET", _ATTACHMENT_ROUTE, None)
            self._count(requests=1)
            try:
                with self._session.get(url, headers=headers, timeout=self._timeout, stream=True,
                                       proxies=self._proxies_for(url)) as resp:
                    status = resp.status_code
                    if status < 400:
                        return _read_capped(resp, max_bytes, filename)
                    body = resp.content[:DOWNLOAD_CHUNK_BYTES]
            except _TRANSIENT_EXCEPTIONS as exc:
                failures += 1
                if failures > self._max_retries:
                    raise DiscordUnavailable("GET", _ATTACHMENT_ROUTE, failures, self._describe(exc)) from None
                self._backoff(failures, "GET " + _ATTACHMENT_ROUTE, self._describe(exc))
                continue
            except requests.RequestException as exc:
                raise DiscordUnavailable("GET", _ATTACHMENT_ROUTE, failures + 1, self._describe(exc)) from None
            log.debug("GET %s -> %d", _ATTACHMENT_ROUTE, status)
            if status in RETRYABLE_STATUSES and failures < self._max_retries:
                failures += 1
                self._backoff(failures, "GET " + _ATTACHMENT_ROUTE, f"HTTP {status}")
                continue
            data, problem = _parse_json(body)
            code, message, errors = _error_fields(data, problem)
            if status >= 500:
                raise DiscordUnavailable("GET", _ATTACHMENT_ROUTE, failures + 1, f"HTTP {status}: {message}",
                                         status=status)
            # A CDN's 401 says nothing about the bot token: report it as refused access.
            cls = _DOWNLOAD_ERROR_CLASSES.get(status, BadRequest)
            raise cls("GET", _ATTACHMENT_ROUTE, status, code, message, errors=errors)

    # -- the request loop ----------------------------------------------

    def _call(self, method: str, template: str, path_params: Mapping[str, str], *,
              query: Optional[Mapping[str, str]] = None, json_body: Any = None,
              form: Optional[Mapping[str, str]] = None, files: Optional[list] = None,
              parse: Optional[Callable[[Any], Any]], answers: FrozenSet[Tuple[int, int]] = frozenset()) -> Any:
        """One request, its retries and waits. ``answers``: (status, code) pairs that answer the
        question this call asks (404 Unknown Channel for "is there a thread?"), so never a setup problem."""
        self._check_thread(method, template)
        url, route_key, major, channel_id = self._route(method, template, path_params, query)
        json_body, form, files = self._scrubbed(json_body, form, files)   # once, not per attempt
        failures = 0   # transient failures (connection errors, 5xx)
        limited = 0    # 429s
        while True:
            self._check_authorized(method, template, channel_id)
            self._wait_for_slot(route_key, major, channel_id)
            consumed = False  # the limiter reservation must be consumed exactly once
            try:
                self._check_authorized(method, template, channel_id)  # another thread may have got a 401
                self._count(requests=1)
                started = self._clock()
                try:
                    resp = self._session.request(method, url, params=query, json=json_body, data=form, files=files,
                                                 headers=self._headers(auth=True), timeout=self._timeout,
                                                 proxies=self._proxies_for(url))
                except _TRANSIENT_EXCEPTIONS as exc:
                    self._release(route_key, major)
                    consumed = True
                    failures += 1
                    last = self._describe(exc)
                    if failures > self._max_retries:
                        raise DiscordUnavailable(method, template, failures, last, channel_id=channel_id) from None
                    self._backoff(failures, route_key, last)
                    continue
                except requests.RequestException as exc:  # not transient: a bad URL, a bad header...
                    raise DiscordUnavailable(method, template, failures + 1, self._describe(exc),
                                             channel_id=channel_id) from None
                status = resp.status_code
                elapsed_ms = (self._clock() - started) * 1000

                if status == 429:
                    consumed = True
                    limited += 1
                    self._on_429(resp, method, template, route_key, major, channel_id, limited)
                    continue

                if status >= 500:
                    self._release(route_key, major)
                    consumed = True
                    log.debug("%s -> %d in %.0f ms", route_key, status, elapsed_ms)
                    failures += 1
                    self._retry_or_raise(resp, failures, method, template, route_key, channel_id)
                    continue

                consumed = True   # by _answered's update of the limiter
                return self._answered(resp, route_key, major, elapsed_ms, (method, template, channel_id),
                                      path_params, answers, parse, failures, limited)
            finally:
                if not consumed:
                    self._release(route_key, major)

    def _answered(self, resp: requests.Response, route_key: str, major: str, elapsed_ms: float,
                  call: Tuple[str, str, Optional[str]], path_params: Mapping[str, str],
                  answers: FrozenSet[Tuple[int, int]], parse: Optional[Callable[[Any], Any]],
                  failures: int, limited: int) -> Any:
        """A response that is neither a 429 nor a 5xx: the limiter learns its headers; then its value, or
        its error raised."""
        method, template, channel_id = call
        status = resp.status_code
        with self._lock:
            rl = self._limiter.update(route_key, major, resp.headers, self._clock())
            if status == 401:
                self._unauthorized = True
        log.debug("%s -> %d in %.0f ms (bucket %s, remaining %s, reset after %s)", route_key, status,
                  elapsed_ms, rl.bucket, rl.remaining, rl.reset_after)
        if status >= 300:
            err = self._error(resp, method, template, channel_id, answers)
            mid = path_params.get("message_id")
            err.message_id = None if mid is None else str(mid)
            err.after_retry = failures > 0
            raise err
        return self._parse(resp, parse, method, template, channel_id, failures + limited + 1)

    def _route(self, method: str, template: str, path_params: Mapping[str, str],
               query: Optional[Mapping[str, str]]) -> Tuple[str, str, str, Optional[str]]:
        """Checked ids in, (url, route key, major parameter, channel id) out; BadRequest before sending."""
        params = {k: str(v) for k, v in path_params.items()}
        channel_id = params.get("channel_id")
        _check_ids(method, template, {k: v for k, v in params.items() if k not in ("emoji", "interaction_token")},
                   channel_id)
        token = params.get("interaction_token")
        if token is not None and not token.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise BadRequest(method, template, None, None, "a malformed interaction token (not sent)")
        _check_ids(method, template, {k: v for k, v in (query or {}).items() if k in _ID_QUERY_KEYS}, channel_id)
        if "emoji" in params and not params["emoji"]:
            raise BadRequest(method, template, None, None, "empty emoji (not sent)", channel_id=channel_id)
        major = params.get("channel_id") or params.get("guild_id") or ""
        path = template.format(**{k: urllib.parse.quote(v, safe=":" if k == "emoji" else "")
                                  for k, v in params.items()})
        return self._base_url + path, f"{method} {template}", major, channel_id

    def _retry_or_raise(self, resp: requests.Response, failures: int, method: str, template: str,
                        route_key: str, channel_id: Optional[str]) -> None:
        """After the ``failures``-th 5xx: back off for a retry (a RETRYABLE_STATUSES status, retries
        left), or raise DiscordUnavailable."""
        status = resp.status_code
        if status in RETRYABLE_STATUSES and failures <= self._max_retries:
            self._backoff(failures, route_key, f"HTTP {status}")
            return
        _code, message, _errors = _error_fields(*_parse_json(resp.content))
        raise DiscordUnavailable(method, template, failures, f"HTTP {status}: {message}",
                                 status=status, channel_id=channel_id)

    def _wait_for_slot(self, route_key: str, major: str, channel_id: Optional[str]) -> None:
        """Block (never while holding the lock) until the limiter reserves a slot."""
        while True:
            with self._lock:
                try:
                    wait = self._limiter.acquire(route_key, major, self._clock())
                except RateLimitedTooLong as exc:
                    exc.channel_id = channel_id
                    raise
                if wait <= 0:
                    return
                self._stats = _bump(self._stats, waited_s=wait)
            log.debug("%s: waiting %.3f s for the rate limit", route_key, wait)
            self._sleep(wait)

    def _on_429(self, resp: requests.Response, method: str, template: str, route_key: str, major: str,
                channel_id: Optional[str], limited: int) -> None:
        rl = RateLimitHeaders.parse(resp.headers)
        data, _problem = _parse_json(resp.content)
        retry_after: Optional[float] = None
        is_global = rl.is_global
        if isinstance(data, dict):
            retry_after = _finite(data.get("retry_after"))
            is_global = is_global or data.get("global") is True
        if retry_after is None:
            retry_after = rl.retry_after if rl.retry_after is not None else FALLBACK_RETRY_AFTER_S
        with self._lock:
            self._stats = _bump(self._stats, responses_429=1)
            try:
                self._limiter.on_429(route_key, major, retry_after, is_global, self._clock(), resp.headers)
            except RateLimitedTooLong as exc:
                exc.channel_id = channel_id
                raise
        log.warning("%s -> 429 (%s, scope %s): retry after %.3f s", route_key, "global" if is_global else "route",
                    rl.scope or "-", retry_after)
        if limited > MAX_RATE_LIMIT_RETRIES:
            raise DiscordUnavailable(method, template, limited, f"still rate limited (429) after {limited - 1} waits",
                                     status=429, channel_id=channel_id)
        self._count(retries=1)

    def _backoff(self, failures: int, route_key: str, reason: str) -> None:
        delay = min(RETRY_BACKOFF_CAP_S, RETRY_BACKOFF_BASE_S * 2 ** (failures - 1))
        delay = self._random.uniform(delay / 2, delay)  # jitter: retries of many clients do not line up
        log.info("%s: %s; retry %d/%d in %.2f s", route_key, reason, failures, self._max_retries, delay)
        self._count(retries=1)
        self._sleep(delay)

    def _release(self, route_key: str, major: str) -> None:
        with self._lock:
            self._limiter.release(route_key, major, self._clock())

    def _scrubbed(self, json_body: Any, form: Optional[Mapping[str, str]],
                  files: Optional[list]) -> Tuple[Any, Optional[Mapping[str, str]], Optional[list]]:
        """The body with the token's value taken out (a post, its attachments, a thread's name)."""
        def text(value: Any) -> Any:
            if isinstance(value, str):
                return self._token_in_text.sub(REDACTED, value)
            if isinstance(value, dict):
                return {k: text(v) for k, v in value.items()}
            if isinstance(value, list):
                return [text(v) for v in value]
            return value
        if files:
            files = [(name, (fname, self._token_in_bytes.sub(REDACTED.encode(), data), ctype))
                     for name, (fname, data, ctype) in files]
        return text(json_body), text(dict(form)) if form else form, files

    def _check_authorized(self, method: str, template: str, channel_id: Optional[str]) -> None:
        with self._lock:
            refused = self._unauthorized
        if refused:
            raise Unauthorized(method, template, 401, None,
                               "an earlier request was rejected, so this client sends nothing more",
                               channel_id=channel_id)

    def _count(self, **deltas: int) -> None:
        with self._lock:
            self._stats = _bump(self._stats, **deltas)

    def _headers(self, *, auth: bool) -> Dict[str, str]:
        headers = {"User-Agent": self._user_agent}
        if auth:
            headers["Authorization"] = f"Bot {self._token}"
        return headers

    def _proxies_for(self, url: str) -> Dict[str, str]:
        """The environment's proxies for this URL's origin (none if NO_PROXY covers it), looked up once."""
        parts = urllib.parse.urlsplit(url)
        key = (parts.scheme, parts.netloc)
        proxies = self._proxies.get(key)
        if proxies is None:  # a race only computes the same value twice
            proxies = self._proxies[key] = requests.utils.get_environ_proxies(url)
        return proxies

    def _is_api_url(self, url: str) -> bool:
        base = urllib.parse.urlsplit(self._base_url)
        got = urllib.parse.urlsplit(url)
        return ((got.scheme, got.netloc) == (base.scheme, base.netloc)
                and (got.path + "/").startswith(base.path.rstrip("/") + "/"))

    def _describe(self, exc: BaseException) -> str:
        """A one-line description of a transport error, with the token scrubbed just in case.

        requests wraps urllib3 which wraps the socket error, and the wrapped text (a
        repr of a connection pool) helps nobody: name the cause a user can act on."""
        host = urllib.parse.urlsplit(self._base_url).netloc or self._base_url
        text = _transport_cause(exc, host) or f"{type(exc).__name__}: {exc}"
        return _clip(text.replace(self._token, "<token>"))

    def _error(self, resp: requests.Response, method: str, template: str, channel_id: Optional[str],
               answers: FrozenSet[Tuple[int, int]] = frozenset()) -> DiscordError:
        code, message, errors = _error_fields(*_parse_json(resp.content))
        cls = _CODE_CLASSES.get((resp.status_code, code)) or _ERROR_CLASSES.get(resp.status_code, BadRequest)
        err = cls(method, template, resp.status_code, code, message, channel_id=channel_id, errors=errors)
        if (resp.status_code, code) in _SETUP_PROBLEMS and (resp.status_code, code) not in answers:
            with self._lock:
                if self._setup_problem is None:
                    self._setup_problem = err
        return err

    @property
    def setup_problem(self) -> Optional[DiscordError]:
        """The first answer that means the setup is wrong (403 Missing Access / Missing
        Permissions, 404 Unknown Channel), even if the caller logged it and carried on."""
        with self._lock:
            return self._setup_problem

    @staticmethod
    def _parse(resp: requests.Response, parse: Optional[Callable[[Any], Any]], method: str, template: str,
               channel_id: Optional[str], attempts: int) -> Any:
        if parse is None:
            return None
        data, problem = _parse_json(resp.content)
        if problem is None:
            try:
                return parse(data)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                problem = f"malformed ({type(exc).__name__}: {_clip(str(exc))})"
        raise DiscordUnavailable(method, template, attempts,
                                 f"Discord answered HTTP {resp.status_code} with a body that is {problem}",
                                 status=resp.status_code, channel_id=channel_id)


# -- helpers ---------------------------------------------------------------

_ERROR_CLASSES = {401: Unauthorized, 403: Forbidden, 404: NotFound}
_CODE_CLASSES = {(400, 160004): ThreadAlreadyExists, (400, 160006): TooManyActiveThreads}  # (status, Discord code)
_SETUP_PROBLEMS = frozenset({(403, 50001), (403, 50013), (404, 10003)})  # (status, Discord code)
_NO_SUCH_CHANNEL = frozenset({(404, UNKNOWN_CHANNEL)})
_NOT_THE_THREADS_OWNER = frozenset({(403, MISSING_PERMISSIONS)})   # editing another's thread needs Manage Threads
_DOWNLOAD_ERROR_CLASSES = {401: Forbidden, 403: Forbidden, 404: NotFound}


def _bump(stats: ClientStats, *, requests: int = 0, responses_429: int = 0, retries: int = 0,
          waited_s: float = 0.0) -> ClientStats:
    return ClientStats(stats.requests + requests, stats.responses_429 + responses_429, stats.retries + retries,
                       stats.waited_s + waited_s)


_ID_QUERY_KEYS = ("after", "before", "around")


def _check_ids(method: str, template: str, ids: Mapping[str, Any], channel_id: Optional[str]) -> None:
    """Refuse, without sending, ids that are not snowflakes: Discord would answer 400 anyway,
    and a path segment like ``..`` must never reach the URL."""
    for name, value in ids.items():
        text = str(value)
        if not (text.isascii() and text.isdigit()):
            raise BadRequest(method, template, None, None, f"{name} {text[:40]!r} is not a snowflake (not sent)",
                             channel_id=channel_id if name != "channel_id" else None)


def _page_size(limit: int) -> int:
    if not 1 <= int(limit) <= MAX_PAGE_SIZE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE_SIZE}")
    return int(limit)


def _check_nonce(nonce: Union[str, int]) -> Union[str, int]:
    if isinstance(nonce, bool) or not isinstance(nonce, (str, int)):
        raise ValueError("nonce must be a string or an integer")
    if isinstance(nonce, str) and not 0 < len(nonce) <= NONCE_MAX_LENGTH:
        raise ValueError(f"a string nonce must have 1 to {NONCE_MAX_LENGTH} characters")
    if isinstance(nonce, int) and not -2 ** 63 <= nonce < 2 ** 63:
        raise ValueError("an integer nonce must fit in 64 bits")
    return nonce


def _plain(value: Any) -> Any:
    """Mappings and sequences as dicts and lists, so json can encode them (and callers' copies stay theirs)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _list_of(parse: Callable[[Any], Any]) -> Callable[[Any], list]:
    def parse_list(data: Any) -> list:
        if not isinstance(data, list):
            raise TypeError(f"expected a JSON array, got {type(data).__name__}")
        return [parse(item) for item in data]
    return parse_list


def _parse_json(body: bytes) -> Tuple[Any, Optional[str]]:
    """(data, None) or (None, what is wrong with the body)."""
    if not body:
        return None, "empty"
    try:
        return json.loads(body), None
    except ValueError:  # includes UnicodeDecodeError
        return None, f"not JSON ({len(body)} bytes)"


def _causes(exc: BaseException, depth: int = 0) -> Iterator[BaseException]:
    """``exc`` and everything it wraps (``__cause__``/``__context__``, urllib3's ``reason``, args)."""
    if depth > 8:
        return
    yield exc
    inner: List[Any] = [exc.__cause__, exc.__context__, getattr(exc, "reason", None), *exc.args]
    for nested in inner:
        if isinstance(nested, BaseException) and nested is not exc:
            yield from _causes(nested, depth + 1)


def _transport_cause(exc: BaseException, host: str) -> Optional[str]:
    """What went wrong on the wire, in words, or None when it is none of the usual causes."""
    causes = list(_causes(exc))
    if any(isinstance(c, requests.exceptions.SSLError) for c in causes):
        return f"TLS error talking to {host} (is the clock right? is a proxy intercepting?)"
    if any(isinstance(c, socket.gaierror) or type(c).__name__ == "NameResolutionError" for c in causes):
        return f"cannot resolve {host} (no network or no DNS)"
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return f"connection refused by {host}"
    if any(isinstance(c, requests.exceptions.ConnectTimeout) for c in causes):
        return f"no connection to {host} in time"
    if any(isinstance(c, (requests.exceptions.ReadTimeout, TimeoutError, socket.timeout)) for c in causes):
        return f"{host} did not answer in time"
    if any(isinstance(c, (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected))
           for c in causes):
        return f"{host} dropped the connection"
    if any(isinstance(c, OSError) and c.strerror for c in causes):
        err = next(c for c in causes if isinstance(c, OSError) and c.strerror)
        return f"cannot reach {host}: {err.strerror}"
    return None


def _error_fields(data: Any, problem: Optional[str]) -> Tuple[Optional[int], str, Mapping[str, Any]]:
    """Discord's error body ``{code, message, errors}`` → (code, message, field errors)."""
    if not isinstance(data, dict):
        return None, f"(the error body is {problem or 'not a JSON object'})", {}
    code = data.get("code")
    code = code if isinstance(code, int) and not isinstance(code, bool) else None
    errors = data.get("errors")
    return code, _clip(str(data.get("message") or "")), errors if isinstance(errors, dict) else {}


def _finite(value: Any) -> Optional[float]:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if 0.0 <= out < float("inf") else None


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= ERROR_TEXT_MAX else text[:ERROR_TEXT_MAX - 1] + "…"


def _read_capped(resp: requests.Response, max_bytes: int, filename: str) -> bytes:
    declared = resp.headers.get("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise AttachmentTooLarge(int(declared), max_bytes, filename=filename)
    buf = bytearray()
    for chunk in resp.iter_content(DOWNLOAD_CHUNK_BYTES):
        buf += chunk
        if len(buf) > max_bytes:
            raise AttachmentTooLarge(None, max_bytes, filename=filename)
    return bytes(buf)
