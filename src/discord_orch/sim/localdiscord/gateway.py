"""The loopback Discord's Gateway: a websocket that pushes what the REST side does as events.

``LocalDiscord.gateway`` starts it on first use (a ``websockets.sync.server`` on 127.0.0.1, its
own thread; a connection a thread); ``GET /gateway/bot`` answers its ``ws://`` URL. Every message
created (over HTTP or by a person in Python), every reaction added and every thread started is
dispatched to each session that may see it, with the session's next sequence number.

Verified (Discord's docs, github.com/discord/discord-api-docs, docs/events/gateway.mdx and
gateway-events.mdx, docs/topics/opcodes-and-status-codes.mdx, read 2026-12-04; and
../shared/DISCORD-NOTES.md)
    * Opcodes: 0 dispatch (with ``s`` and ``t``), 1 heartbeat (either way), 2 identify,
      6 resume, 7 reconnect, 9 invalid session (``d``: resumable), 10 hello
      (``heartbeat_interval`` ms), 11 heartbeat ACK.
    * HELLO first; IDENTIFY (token, intents, properties) → READY (``session_id``,
      ``resume_gateway_url``, ``user``, ``guilds`` unavailable, ``application``), a dispatch with a
      sequence number. RESUME (token, session_id, seq) replays the events after ``seq`` in order,
      then RESUMED. A session that cannot be resumed: op 9 ``false``. A close with 1000 / 1001
      invalidates the session; a dropped TCP connection or another code keeps it resumable.
    * Heartbeats are ACKed (op 11); a client that stops sending them is disconnected and must resume.
    * Close codes: 4001 unknown opcode, 4002 decode error, 4003 not authenticated, 4004
      authentication failed, 4005 already authenticated, 4008 rate limited (over 120 sends per
      60 s per connection), 4012 invalid API version, 4013 invalid intents, 4014 disallowed
      (privileged, not enabled) intents.
    * Intents: GUILDS 1<<0 (THREAD_CREATE), GUILD_MESSAGES 1<<9 (MESSAGE_CREATE in guilds),
      GUILD_MESSAGE_REACTIONS 1<<10 (MESSAGE_REACTION_ADD), MESSAGE_CONTENT 1<<15 (privileged:
      without it ``content``, ``embeds``, ``attachments`` and ``components`` are empty, except the
      bot's own messages and those that mention it); GUILD_MEMBERS 1<<1 and GUILD_PRESENCES 1<<8
      are privileged too.
    * 1,000 IDENTIFYs per token per 24 h (RESUMEs do not count); past it every session ends and
      the token is reset (here: the token stops working, sessions closed with 4004).
    * MESSAGE_REACTION_ADD carries user_id, channel_id, message_id, guild_id, emoji,
      message_author_id, burst, type; MESSAGE_CREATE is a message with ``guild_id``; THREAD_CREATE
      a channel with ``newly_created``.

Not verified (the emulator's choice)
    * The close code for a client that stopped heartbeating (the docs say only that the connection
      is closed and the client must resume): 4000 here, after 1.5 intervals without one.
    * Replay holds the last ``REPLAY_MAX`` events of a session; older: op 9 ``false``.
    * No GUILD_CREATE after READY, no presence, no sharding, no compression, no etf, no interactions.

Test levers: ``drop()`` (every socket cut, no close frame), ``reconnect()`` (op 7), ``invalidate(
resumable)`` (op 9), ``acks = False`` (heartbeats go unanswered: a zombie), ``identifies`` / ``resumes``.
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Tuple

from .store import Channel, Store

GUILDS, GUILD_MEMBERS, GUILD_PRESENCES = 1 << 0, 1 << 1, 1 << 8
GUILD_MESSAGES, GUILD_MESSAGE_REACTIONS, MESSAGE_CONTENT = 1 << 9, 1 << 10, 1 << 15
KNOWN_INTENTS = (1 << 26) - 1
IDENTIFY_LIMIT = 1000
REPLAY_MAX = 1000
SEND_LIMIT = 120   # per connection per 60 s


class _Session:
    def __init__(self, bot_id: str, token: str, intents: int) -> None:
        self.id = secrets.token_hex(16)
        self.bot_id, self.token, self.intents = bot_id, token, intents
        self.seq = 0
        self.replay: Deque[Dict[str, Any]] = deque(maxlen=REPLAY_MAX)
        self.conn: Any = None

    def payload(self, event: str, data: Any) -> Dict[str, Any]:
        self.seq += 1
        frame = {"op": 0, "t": event, "s": self.seq, "d": data}
        self.replay.append(frame)
        return frame


class LocalGateway:
    """The websocket side of a LocalDiscord (``store``: its world and its lock)."""

    def __init__(self, store: Store, host: str = "127.0.0.1") -> None:
        from websockets.sync.server import serve

        self.store = store
        self.heartbeat_interval_ms = 41250
        self.acks = True
        self.identifies: List[str] = []   # the bot id of each IDENTIFY that got a READY
        self.resumes = 0
        self.sessions: Dict[str, _Session] = {}
        self._identified_at: Dict[str, Deque[float]] = {}
        self._server = serve(self._handle, host, 0)
        self.port = self._server.socket.getsockname()[1]
        self.url = f"ws://{host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"LocalGateway:{self.port}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.drop()
        self._server.shutdown()
        self._thread.join(timeout=5)

    # -- test levers -----------------------------------------------------------------
    def drop(self) -> None:
        """Cut every connection's TCP stream without a close frame (the sessions stay resumable)."""
        with self.store._lock:
            conns = [s.conn for s in self.sessions.values() if s.conn is not None]
        for conn in conns:
            try:
                conn.socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def reconnect(self) -> None:
        """Op 7 to every connection: reconnect and resume."""
        self._to_all({"op": 7, "d": None})

    def invalidate(self, resumable: bool) -> None:
        """Op 9 to every connection; not resumable: the sessions are gone."""
        with self.store._lock:
            self._to_all({"op": 9, "d": resumable})
            if not resumable:
                self.sessions.clear()

    def connected(self) -> int:
        with self.store._lock:
            return sum(1 for s in self.sessions.values() if s.conn is not None)

    def _to_all(self, frame: Dict[str, Any]) -> None:
        with self.store._lock:
            for s in self.sessions.values():
                if s.conn is not None:
                    _send(s.conn, frame)

    # -- events from the REST side (the store's lock held) ----------------------------
    def dispatch(self, event: str, ch: Channel, render: Callable[[str, bool], Dict[str, Any]]) -> None:
        """``render(bot id, content intent)``: the event's ``d`` as that bot sees it."""
        need = {"MESSAGE_CREATE": GUILD_MESSAGES, "MESSAGE_REACTION_ADD": GUILD_MESSAGE_REACTIONS,
                "THREAD_CREATE": GUILDS}[event]
        guild = self.store._guilds.get(ch.guild_id)
        for s in list(self.sessions.values()):
            if not s.intents & need or guild is None or s.bot_id not in guild.members:
                continue
            if not self.store._has(ch, s.bot_id, "VIEW_CHANNEL"):
                continue
            frame = s.payload(event, render(s.bot_id, bool(s.intents & MESSAGE_CONTENT)))
            if s.conn is not None:
                _send(s.conn, frame)

    def dispatch_one(self, bot_id: str, event: str, data: Dict[str, Any]) -> bool:
        """An event for one session of the bot (as Discord gives an interaction to one); False: none is up."""
        with self.store._lock:
            live = [s for s in self.sessions.values() if s.bot_id == bot_id and s.conn is not None]
            if not live:
                return False
            session = live[len(self.store._interactions()) % len(live)]   # type: ignore[attr-defined]
            _send(session.conn, session.payload(event, data))
            return True

    # -- one connection (its own thread) ----------------------------------------------
    def _handle(self, conn: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        query = (conn.request.path.split("?", 1) + [""])[1]
        params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        if params.get("v") != "10" or params.get("encoding", "json") != "json":
            conn.close(4012, "Invalid API version")
            return
        _send(conn, {"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
        state: Dict[str, Any] = {"session": None, "beat": time.monotonic(), "sends": deque()}
        try:
            while self._serve_one(conn, state):
                pass
        except ConnectionClosed as exc:
            if exc.rcvd is not None and exc.rcvd.code in (1000, 1001):
                self._forget(state["session"])
        finally:
            with self.store._lock:
                session = state["session"]
                if session is not None and session.conn is conn:
                    session.conn = None

    def _serve_one(self, conn: Any, state: Dict[str, Any]) -> bool:
        """Read and answer one frame; False once the connection is closed."""
        timeout = state["beat"] + self.heartbeat_interval_ms * 1.5 / 1000 - time.monotonic()
        try:
            raw = conn.recv(timeout=max(0.0, timeout))
        except TimeoutError:
            conn.close(4000, "heartbeat timed out")
            return False
        sends: Deque[float] = state["sends"]
        now = time.monotonic()
        sends.append(now)
        while sends and sends[0] < now - 60:
            sends.popleft()
        if len(sends) > SEND_LIMIT:
            conn.close(4008, "Rate limited.")
            return False
        try:
            frame = json.loads(raw)
            op, d = frame["op"], frame.get("d")
        except (ValueError, TypeError, KeyError):
            conn.close(4002, "Error while decoding payload.")
            return False
        if op == 1:
            state["beat"] = now
            if self.acks:
                _send(conn, {"op": 11})
            return True
        if op in (2, 6) and state["session"] is not None:
            conn.close(4005, "Already authenticated.")
            return False
        if op == 2:
            return self._identify(conn, state, d if isinstance(d, dict) else {})
        if op == 6:
            return self._resume(conn, state, d if isinstance(d, dict) else {})
        if op in (3, 4, 8):
            return True   # presence, voice, members: accepted, not emulated
        if state["session"] is None:
            conn.close(4003, "Not authenticated.")
            return False
        conn.close(4001, "Unknown opcode.")
        return False

    def _identify(self, conn: Any, state: Dict[str, Any], d: Mapping[str, Any]) -> bool:
        store = self.store
        with store._lock:
            token = str(d.get("token") or "")
            token = token[4:] if token.startswith("Bot ") else token
            bot_id = store._tokens.get(token)
            if bot_id is None or not store._users[bot_id].bot:
                conn.close(4004, "Authentication failed.")
                return False
            intents = d.get("intents")
            if not isinstance(intents, int) or intents < 0 or intents & ~KNOWN_INTENTS:
                conn.close(4013, "Invalid intent(s).")
                return False
            privileged = GUILD_MEMBERS | GUILD_PRESENCES | (0 if store.message_content_intent else MESSAGE_CONTENT)
            if intents & privileged:
                conn.close(4014, "Disallowed intent(s).")
                return False
            if self._over_daily_limit(bot_id, token):
                return False
            session = _Session(bot_id, token, intents)
            self.sessions[session.id] = session
            session.conn = conn
            state["session"] = session
            self.identifies.append(bot_id)
            guilds = [{"id": g.id, "unavailable": True} for g in store._guilds.values() if bot_id in g.members]
            ready = {"v": 10, "user": store._user_json(bot_id), "guilds": guilds, "session_id": session.id,
                     "resume_gateway_url": self.url, "application": {"id": bot_id, "flags": 0}}
            _send(conn, session.payload("READY", ready))
        return True

    def _over_daily_limit(self, bot_id: str, token: str) -> bool:
        """Past IDENTIFY_LIMIT in 24 h: the token is reset and every session of this bot ends."""
        times = self._identified_at.setdefault(bot_id, deque())
        now = time.time()
        while times and times[0] < now - 86400:
            times.popleft()
        times.append(now)
        if len(times) <= IDENTIFY_LIMIT:
            return False
        self.store._tokens.pop(token, None)
        for s in [s for s in self.sessions.values() if s.bot_id == bot_id]:
            self.sessions.pop(s.id, None)
            if s.conn is not None:
                threading.Thread(target=s.conn.close, args=(4004, "Authentication failed."), daemon=True).start()
        return True

    def _resume(self, conn: Any, state: Dict[str, Any], d: Mapping[str, Any]) -> bool:
        with self.store._lock:
            session = self.sessions.get(str(d.get("session_id")))
            seq = d.get("seq")
            token = str(d.get("token") or "")
            token = token[4:] if token.startswith("Bot ") else token
            if session is not None and token != session.token:
                conn.close(4004, "Authentication failed.")
                return False
            oldest = session.replay[0]["s"] if session is not None and session.replay else 1
            if session is None or not isinstance(seq, int) or seq > session.seq or seq < oldest - 1:
                _send(conn, {"op": 9, "d": False})
                return True   # the client closes and identifies anew
            if session.conn is not None and session.conn is not conn:
                threading.Thread(target=session.conn.close, args=(4000, "resumed elsewhere"), daemon=True).start()
            session.conn = conn
            state["session"] = session
            self.resumes += 1
            for frame in list(session.replay):
                if frame["s"] > seq:
                    _send(conn, frame)
            _send(conn, session.payload("RESUMED", None))
        return True

    def _forget(self, session: Optional[_Session]) -> None:
        if session is not None:
            with self.store._lock:
                self.sessions.pop(session.id, None)


def _send(conn: Any, frame: Dict[str, Any]) -> None:
    from websockets.exceptions import ConnectionClosed

    try:
        conn.send(json.dumps(frame))
    except (ConnectionClosed, OSError, RuntimeError):
        pass   # the connection is going: its handler sees it and the session waits for a resume


class GatewayRoutes(Store):
    """The REST side's part: ``GET /gateway/bot`` and the events its changes dispatch."""

    _gateway: Optional[LocalGateway] = None

    @property
    def gateway(self) -> LocalGateway:
        """The Gateway, started on first use (an emulator nobody connects to runs no websocket server)."""
        with self._lock:
            if self._gateway is None:
                self._gateway = LocalGateway(self)
            return self._gateway

    def _stop_gateway(self) -> None:
        with self._lock:
            gateway, self._gateway = self._gateway, None
        if gateway is not None:
            gateway.stop()

    def _h_get_gateway_bot(self, user_id: str, params: Mapping[str, str], query: Mapping[str, List[str]],
                           headers: Any, body: bytes) -> Tuple[int, Any]:
        gateway = self.gateway
        times = gateway._identified_at.get(user_id, deque())
        cutoff = time.time() - 86400
        used = sum(1 for t in times if t >= cutoff)
        reset_after = int((times[0] - cutoff) * 1000) if used else 0
        return 200, {"url": gateway.url, "shards": 1,
                     "session_start_limit": {"total": IDENTIFY_LIMIT, "remaining": max(0, IDENTIFY_LIMIT - used),
                                             "reset_after": reset_after, "max_concurrency": 1}}

    def _gateway_event(self, event: str, ch: Channel, render: Callable[[str, bool], Dict[str, Any]]) -> None:
        if self._gateway is not None:
            self._gateway.dispatch(event, ch, render)
