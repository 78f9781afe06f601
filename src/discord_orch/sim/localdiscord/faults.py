"""Fault injection: injected statuses and dropped connections, armed per route."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .routes import norm_route
from .server import Resp, json_bytes

_REASONS = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
            429: "Too Many Requests", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}


@dataclass
class Fault:
    method: Optional[str]
    route: str
    kind: str  # "fail" | "drop"
    statuses: List[int] = field(default_factory=list)
    remaining: int = 1
    after_processing: bool = False
    body: Optional[Any] = None
    used: int = 0
    where: Dict[str, str] = field(default_factory=dict)  # path parameters (and "user_id": who asks) to match


def take_fault(faults: List[Fault], method: str, route: Optional[str], params: Optional[Mapping[str, str]] = None,
               user_id: Optional[str] = None) -> Optional[Tuple[Fault, Optional[int]]]:
    """The first armed fault matching this request, consumed (lock held)."""
    if route is None:
        return None
    _rm, rpath = norm_route(route)
    seen = dict(params or {}, user_id=user_id or "")
    for f in faults:
        fm, fpath = norm_route(f.route)
        want = f.method or fm
        if (want is not None and want != method) or fpath != rpath:
            continue
        if any(seen.get(k) != v for k, v in f.where.items()):
            continue
        status = f.statuses[min(f.used, len(f.statuses) - 1)] if f.kind == "fail" else None
        f.used += 1
        f.remaining -= 1
        if f.remaining <= 0:
            faults.remove(f)
        return f, status
    return None


def injected_response(status: int, body: Optional[Any]) -> Resp:
    """The answer of an injected failure: ``body``, or Discord's usual one for ``status``."""
    if body is None:
        if status == 429:
            body = {"message": "You are being rate limited.", "retry_after": 0.05, "global": False, "code": 0}
        else:
            body = {"message": f"{status}: {_REASONS.get(status, 'Error')}", "code": 0}
    headers = [("Retry-After", "1"), ("X-RateLimit-Scope", "user")] if status == 429 else []
    if isinstance(body, (bytes, str)):
        data = body.encode() if isinstance(body, str) else body
        return Resp(status, data, content_type="text/html", headers=headers)
    return Resp(status, json_bytes(body), headers=headers)
