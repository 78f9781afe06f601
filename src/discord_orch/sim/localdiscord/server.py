"""The HTTP plumbing of the loopback Discord: a threading HTTP/1.1 server whose handler
passes every request to ``LocalDiscord._handle`` and writes back its ``Resp``."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, List, Optional, Tuple

from .apierror import ApiError

if TYPE_CHECKING:
    from .emulator import LocalDiscord

MAX_REQUEST_BYTES = 64 * 1024 * 1024


@dataclass
class Resp:
    """An answer to write back; ``drop`` closes the connection with none."""

    status: int
    body: bytes = b""
    content_type: Optional[str] = "application/json"
    headers: List[Tuple[str, str]] = field(default_factory=list)
    drop: bool = False


def json_bytes(obj: Any) -> bytes:
    """Compact UTF-8 JSON, as Discord sends it."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def error_response(err: ApiError) -> Resp:
    """Discord's answer to ``err``: its status, JSON body and headers."""
    return Resp(err.status, json_bytes(err.body()), headers=list(err.headers))


class Server(ThreadingHTTPServer):
    """The listening socket; it remembers open connections so ``stop`` can close them."""

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
    server: Server

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
            resp = Resp(413, json_bytes({"message": "Request entity too large", "code": 40005}))
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
