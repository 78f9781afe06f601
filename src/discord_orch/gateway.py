"""A Gateway session: Discord's websocket, held on a thread of its own, for ``orchestrate --watch``.

The protocol, as Discord documents it (discord-api-docs, docs/events/gateway.mdx; the local
Gateway in sim/localdiscord/gateway.py follows the same text): connect to the URL that
``GET /gateway/bot`` gives, with ``?v=10&encoding=json``; HELLO (op 10) gives
``heartbeat_interval``: the first heartbeat (op 1, the last sequence number) after interval x a
random jitter in [0, 1), then one every interval, each ACKed (op 11). A heartbeat sent while
the last one is still unACKed means a zombie connection: close it with a code other than
1000/1001 and resume. IDENTIFY (op 2: token, intents, properties) → READY (``session_id``,
``resume_gateway_url``). After a dropped socket, a resumable close code, op 7 (reconnect) or
op 9 ``true``: connect to ``resume_gateway_url`` and RESUME (op 6: token, session_id, seq); the
missed events come in order, then RESUMED. Op 9 ``false`` (or close 4007 / 4009): wait 1-5 s and
IDENTIFY anew on the first URL. Close codes 4004 (the token), 4010-4014 (shards, version,
intents) are fatal: one line, and the pass goes on polling.

IDENTIFY is rationed: Discord allows 1,000 a day per token across every session (past it the
token is reset), and hosts on one queue may share a token. The caller gives the session the
identifies it may still spend today (``budget``, counted in state.db by the step); once spent, the
session ends and says so. RESUMEs are free.

Nothing here touches the pass's state: every event, and every change of the session (up,
down, fatal, out of identifies), goes to ``deliver(kind, value)``, which the step points at the
hub's inbox (``call_soon``), so the loop thread sees them in order. The token is held only to be
sent in IDENTIFY / RESUME; no log line carries it.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from typing import Any, Callable, Dict, Optional

from .errors import Unauthorized

log = logging.getLogger("discord_orch")
# websockets logs every frame at DEBUG, IDENTIFY's token among them: its logger never goes below WARNING,
# whatever -v sets on discord_orch.
_WS_LOG = logging.getLogger("discord_orch.websocket")
_WS_LOG.setLevel(logging.WARNING)

GUILDS, GUILD_MESSAGES, GUILD_MESSAGE_REACTIONS, MESSAGE_CONTENT = 1 << 0, 1 << 9, 1 << 10, 1 << 15
INTENTS = GUILDS | GUILD_MESSAGES | GUILD_MESSAGE_REACTIONS | MESSAGE_CONTENT
QUERY = "?v=10&encoding=json"
FATAL_CLOSES = {
    4004: "the Gateway refused the bot token (close 4004): check it with `discord-orch check`",
    4010: "the Gateway refused the shard (close 4010)",
    4011: "the Gateway asks for sharding (close 4011), which discord-orch does not do",
    4012: "the Gateway refused API version 10 (close 4012)",
    4013: "the Gateway refused the intents (close 4013)",
    4014: "the Gateway refused the intents (close 4014): turn on Message Content Intent in the Developer Portal "
          "(your application → Bot → Privileged Gateway Intents)",
}
NEW_SESSION_CLOSES = (4007, 4009)   # invalid seq, session timed out: identify anew
BACKOFF_MAX_S = 60.0
HELLO_TIMEOUT_S = 10.0

# what deliver() is called with
EVENT, UP, DOWN, FATAL, IDENTIFIED, EXHAUSTED = "event", "up", "down", "fatal", "identified", "exhausted"


def available() -> bool:
    """Whether the websocket library (the ``live`` extra: websockets >= 13, for its sync client) can be used."""
    try:
        import websockets.sync.client  # noqa: F401 - an older or broken websockets lacks it
    except ImportError:
        return False
    return True


class _Closed(Exception):
    """This connection is over; ``resume``: whether the session may be resumed."""

    def __init__(self, why: str, resume: bool = True) -> None:
        super().__init__(why)
        self.resume = resume


class _Fatal(Exception):
    pass


class GatewaySession:
    """One Gateway session on its own thread (see the module docstring)."""

    def __init__(self, *, token: str, locate: Callable[[], str], deliver: Callable[[str, Any], None],
                 budget: int, intents: int = INTENTS) -> None:
        self._token = token
        self._locate = locate          # GET /gateway/bot's URL (a request, on this session's thread)
        self._deliver = deliver
        self._budget = budget
        self._intents = intents
        self._stop = threading.Event()
        self._ws: Any = None
        self._url: Optional[str] = None
        self._session_id: Optional[str] = None
        self._resume_url: Optional[str] = None
        self._seq: Optional[int] = None
        self._was_up = False
        self._thread = threading.Thread(target=self._run, name="gateway", daemon=True)

    def __repr__(self) -> str:   # never the token
        return f"GatewaySession(session={self._session_id!r}, seq={self._seq!r})"

    def start(self) -> "GatewaySession":
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close with 1000 (the session ends; the bot shows offline) and wait for the thread."""
        self._stop.set()
        ws = self._ws
        if ws is not None:
            try:
                ws.close(1000, "shutting down")
            except Exception:   # noqa: BLE001 - closing a socket that is going anyway
                pass
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -- the session's thread ----------------------------------------------------------
    def _run(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            self._was_up = False
            try:
                if self._session_id is None and not self._spend_identify():
                    self._deliver(EXHAUSTED, None)
                    return
                self._connection()
            except _Fatal as exc:
                self._deliver(FATAL, str(exc))
                return
            except _Closed as exc:
                if not exc.resume:
                    self._session_id = None
                self._deliver(DOWN, str(exc))
            except Exception as exc:   # noqa: BLE001 - a network error, a refused connection, a bad frame
                self._deliver(DOWN, f"{type(exc).__name__}: {exc}")
            if self._was_up:   # it worked until now: resume (or identify) at once
                backoff = 1.0
                continue
            if self._stop.wait(backoff * (0.5 + random.random() / 2)):
                return
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    def _spend_identify(self) -> bool:
        if self._budget <= 0:
            return False
        self._budget -= 1
        return True

    def _connection(self) -> None:
        """One websocket connection, from HELLO to its end (raises _Closed, _Fatal or a network error)."""
        from websockets.exceptions import ConnectionClosed
        from websockets.sync.client import connect

        resuming = self._session_id is not None and self._resume_url is not None
        if not resuming and self._url is None:
            try:
                self._url = self._locate().rstrip("/") + "/"
            except Unauthorized as exc:
                raise _Fatal(f"the Gateway's URL could not be read: {exc}") from None
        url = (self._resume_url.rstrip("/") + "/" if resuming else self._url) + QUERY   # type: ignore[union-attr]
        with connect(url, open_timeout=HELLO_TIMEOUT_S, close_timeout=2, max_size=2 ** 23, logger=_WS_LOG) as ws:
            self._ws = ws
            try:
                hello = json.loads(ws.recv(timeout=HELLO_TIMEOUT_S))
                if hello.get("op") != 10:
                    raise _Closed(f"expected HELLO, got op {hello.get('op')}")
                beat = _Heart(ws, hello["d"]["heartbeat_interval"] / 1000, lambda: self._seq)
                beat.start()
                try:
                    self._send(ws, self._resume_frame() if resuming else self._identify_frame())
                    if not resuming:
                        self._deliver(IDENTIFIED, None)
                    while True:
                        self._frame(ws, json.loads(ws.recv()), beat)
                finally:
                    beat.stop()
            except ConnectionClosed as exc:
                raise self._closed(exc) from None
            finally:
                self._ws = None

    def _closed(self, exc: Any) -> Exception:
        if self._stop.is_set():
            return _Closed("stopped")
        code = exc.rcvd.code if exc.rcvd is not None else None
        if code in FATAL_CLOSES:
            return _Fatal(FATAL_CLOSES[code])
        if code in NEW_SESSION_CLOSES:
            return _Closed(f"closed with {code}: a new session", resume=False)
        sent = exc.sent.code if exc.sent is not None else None
        if sent is not None and sent >= 4000:
            return _Closed(exc.sent.reason or f"closed ({sent})")
        return _Closed(f"the connection dropped ({code or 'no close code'})")

    def _frame(self, ws: Any, frame: Dict[str, Any], beat: "_Heart") -> None:
        op = frame.get("op")
        if op == 0:
            self._seq = frame.get("s", self._seq)
            kind, data = frame.get("t"), frame.get("d")
            if kind == "READY":
                self._session_id, self._resume_url = data["session_id"], data["resume_gateway_url"]
                self._was_up = True
                self._deliver(UP, "READY")
            elif kind == "RESUMED":
                self._was_up = True
                self._deliver(UP, "RESUMED")
            else:
                self._deliver(EVENT, (kind, data))
        elif op == 11:
            beat.acked()
        elif op == 1:
            beat.now()
        elif op == 7:
            ws.close(4000, "op 7: reconnecting")
        elif op == 9:
            if not frame.get("d"):
                self._session_id, self._seq = None, None
                self._stop.wait(1 + 4 * random.random())   # Discord: 1-5 s before identifying anew
            ws.close(4000, "op 9: invalid session")

    def _identify_frame(self) -> Dict[str, Any]:
        return {"op": 2, "d": {"token": self._token, "intents": self._intents,
                               "properties": {"os": "linux", "browser": "discord-orch", "device": "discord-orch"}}}

    def _resume_frame(self) -> Dict[str, Any]:
        return {"op": 6, "d": {"token": self._token, "session_id": self._session_id, "seq": self._seq}}

    @staticmethod
    def _send(ws: Any, frame: Dict[str, Any]) -> None:
        ws.send(json.dumps(frame))


class _Heart:
    """The heartbeat of one connection: jitter, then every interval; an unACKed beat closes it (zombie)."""

    def __init__(self, ws: Any, interval_s: float, seq: Callable[[], Optional[int]]) -> None:
        self._ws, self._interval, self._seq = ws, interval_s, seq
        self._acked = True
        self._wake = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gateway-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._wake.set()

    def acked(self) -> None:
        self._acked = True

    def now(self) -> None:
        """Discord asked for a heartbeat (op 1): send one without waiting for the interval."""
        self._wake.set()

    def _run(self) -> None:
        wait = self._interval * random.random()
        while True:
            self._wake.wait(wait)
            self._wake.clear()
            if self._done.is_set():
                return
            if not self._acked:
                log.info("the Gateway did not ACK a heartbeat: reconnecting to resume")
                self._close(4000, "heartbeat not acknowledged")
                return
            self._acked = False
            try:
                self._ws.send(json.dumps({"op": 1, "d": self._seq()}))
            except Exception:   # noqa: BLE001 - the connection is going: its reader sees it
                return
            wait = self._interval

    def _close(self, code: int, reason: str) -> None:
        try:
            self._ws.close(code, reason)
        except Exception:   # noqa: BLE001
            pass
