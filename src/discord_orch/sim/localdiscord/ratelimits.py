"""Rate limits shaped like Discord's: the settings and the buckets a LocalDiscord keeps."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from .server import Resp, json_bytes


@dataclass
class RateLimits:
    """Rate-limit settings. Tuples are ``(limit, window seconds)``. Every bucket is a bot's own:
    Discord applies per-route limits to each bot by its token (docs, rate-limits topic); two
    hosts sharing one token share its buckets.

    ``message_create`` and ``reactions`` are per channel (PUT and DELETE of ``@me``
    reactions share one bucket); ``thread_create`` (starting a thread from a message)
    is per parent channel, and its default is a guess: Discord does not document it
    (see ``threads.py``); ``default`` applies per route and major parameter
    to every other route; ``global_per_second`` is per bot (None or 0: no global
    limit), counted over fixed windows of ``global_window_s`` (Discord's second; tests of the
    count itself widen it, so that a loaded machine cannot spread 51 requests over two windows).
    ``enabled=False`` means no 429 and no rate-limit headers.
    """

    enabled: bool = True
    global_per_second: Optional[int] = 50
    global_window_s: float = 1.0
    message_create: Tuple[int, float] = (5, 5.0)
    reactions: Tuple[int, float] = (1, 0.25)
    thread_create: Tuple[int, float] = (10, 10.0)
    default: Tuple[int, float] = (50, 1.0)

    @classmethod
    def off(cls) -> "RateLimits":
        """No limits and no rate-limit headers."""
        return cls(enabled=False)

    @classmethod
    def discord_defaults(cls) -> "RateLimits":
        """Discord's documented limits for a bot."""
        return cls()


@dataclass
class _Bucket:
    reset_at: float
    remaining: int
    limit: int


class Limiter:
    """Per-bot global windows and per-(bucket, major parameter) buckets; the caller holds the lock."""

    def __init__(self) -> None:
        self._buckets: Dict[Tuple[str, str, str], _Bucket] = {}
        self._global: Dict[str, List[float]] = {}

    def reset(self) -> None:
        """Forget every bucket and global window."""
        self._buckets.clear()
        self._global.clear()

    def check_global(self, user_id: str, rl: RateLimits) -> Optional[Resp]:
        """The 429 of the per-bot global limit, or None (and the request is counted)."""
        per_s = rl.global_per_second
        if not per_s:
            return None
        now = time.monotonic()
        win = self._global.get(user_id)
        if win is None or now >= win[0]:
            win = [now + rl.global_window_s, 0.0]
            self._global[user_id] = win
        if win[1] >= per_s:
            retry = max(win[0] - now, 0.001)
            body = {"message": "You are being rate limited.", "retry_after": round(retry, 3), "global": True,
                    "code": 0}
            return Resp(429, json_bytes(body), headers=[
                ("Retry-After", str(max(1, math.ceil(retry)))),
                ("X-RateLimit-Global", "true"),
                ("X-RateLimit-Scope", "global"),
            ])
        win[1] += 1
        return None

    def take_bucket(self, key: Tuple[str, str, str], limit: int, window: float,
                    bucket_hash: str) -> Tuple[Optional[Resp], List[Tuple[str, str]]]:
        """A 429 if the bucket ``key`` is empty, else None and the X-RateLimit headers (one taken)."""
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
            resp = Resp(429, json_bytes(body), headers=hdrs() + [
                ("Retry-After", str(max(1, math.ceil(retry)))),
                ("X-RateLimit-Scope", "user"),
            ])
            return resp, []
        b.remaining -= 1
        return None, hdrs()
