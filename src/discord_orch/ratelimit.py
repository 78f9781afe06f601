"""Pure rate-limit bookkeeping for Discord's HTTP API.

Nothing in this module does I/O, reads a clock or sleeps: every method takes
``now`` (seconds on a monotonic clock) and returns a decision, usually how long
the caller should wait. The HTTP client (``discord_api.py``) owns the clock,
the sleeping and the one lock it holds around every call into a
:class:`RateLimiter`; the limiter itself is not thread-safe.

The protocol
============

Every Discord response may carry these headers (case-insensitive):

``X-RateLimit-Limit``
    how many requests the bucket allows per window.
``X-RateLimit-Remaining``
    how many are left in the current window *after* this request.
``X-RateLimit-Reset``
    epoch seconds at which the window resets. It needs a wall clock agreeing
    with Discord's, so we ignore it and use...
``X-RateLimit-Reset-After``
    ...seconds (millisecond precision) from now until the reset. Relative, so
    it works with a monotonic ``now``: ``reset_at = now + reset_after``.
``X-RateLimit-Bucket``
    an opaque hash naming the limit. Several routes may share one hash
    (e.g. edit and delete of a message). The hash does NOT include the major
    parameter: ``POST /channels/1/messages`` and ``POST /channels/2/messages``
    have the same hash but separate limits. A real bucket is therefore
    ``(hash, major)``, the major parameter being the channel id or guild id.
``X-RateLimit-Scope`` (on a 429)
    ``user`` (this bot's limit), ``global`` (all requests of this bot) or
    ``shared`` (a per-resource limit shared with others; it does not count
    against the bot's invalid-request allowance).
``X-RateLimit-Global`` (on a 429)
    ``true`` when the global limit was hit.

A 429 has a JSON body ``{"message": ..., "retry_after": <float seconds>,
"global": <bool>, "code"?: <int>}`` and a ``Retry-After`` header (whole
seconds). ``retry_after`` is authoritative: it can be longer than
Reset-After (Discord has undocumented per-field sub-limits). A global 429
means *every* request of the bot must pause, not just the route's.

Discovering buckets
===================

Before the first response of a route we do not know its hash, so we key its
bucket by ``(route template, major)``, e.g.
``("POST /channels/{channel_id}/messages", "123")``. We do not know its limit
either, so such a bucket lets exactly ONE request through at a time: the
response of that request tells us the hash, limit, remaining and reset, and
from then on the route maps to ``(hash, major)``. A response without an
``X-RateLimit-Bucket`` header means the route has no per-route limit (only the
global one applies); a later response that does name a bucket corrects that.
The same one-at-a-time rule applies to a known hash under a new major
parameter (a channel we have not posted to yet).

The race between threads, and reservations
==========================================

Several threads share one client. If each one read ``remaining`` and sent
while it was positive, two threads could both see ``remaining == 1`` and both
send, and the second gets a 429. So :meth:`RateLimiter.acquire` does not just
answer "may I?": when it answers 0 (go) it RESERVES a slot (``in_flight += 1``,
which lowers ``remaining``) in the same locked call. Every reservation is later
consumed by exactly one of :meth:`~RateLimiter.update` (a response came
back), :meth:`~RateLimiter.on_429` (it was rate limited) or
:meth:`~RateLimiter.release` (no usable response: connection error or 5xx).

Responses may come back in any order and from either side of a window reset,
so the bookkeeping stays on the safe side:

* within a window the server's Remaining only falls, so we keep the LOWEST
  value it reported (its latest count, whatever order the answers arrive in)
  and take ``remaining = lowest - requests still in flight``, since the server
  may not have counted those yet. Answers from stragglers give the slots back;
  a request that got no answer at all keeps its slot used (it may have counted);
* a window's reset time only ever moves later, never earlier: a late response
  from the previous window (reporting a reset that has already passed) must
  not make us reopen the current window early;
* when a window resets we start it with ``limit - in_flight`` slots, because
  requests sent just before the reset may land in the new window; a late answer
  from the old window can only lower the count, never raise it.

Discord's window starts at the first request it counts, so a batch sent
right at a reset can sit closer than one period to the tail of the previous
batch. To keep to "at most ``limit`` in ANY ``period``" (and to be safe if a
bucket slides rather than resets), each bucket also keeps our last ``limit``
send times and spaces a new send at least one period (the longest Reset-After
seen) after the send ``limit`` places before it. At full load this costs
nothing: each batch repeats the previous batch's spacing.

A small :data:`SAFETY_MARGIN_S` is added to every reset and ``retry_after``:
Reset-After is rounded to milliseconds and our clock is not the server's.

Optionally a :class:`GlobalLimiter` caps the bot at Discord's 50 requests per
second proactively, so the global 429 (which pauses everything) is never hit
in the first place.

Caps: a wait longer than ``max_wait`` is never returned; :class:`RateLimitedTooLong`
is raised instead, so no caller waits without a bound.
"""

from __future__ import annotations

from collections import deque
from typing import Deque, Dict, Mapping, NamedTuple, Optional, Tuple

from .errors import RateLimitedTooLong

# Added to every reset and retry_after: Reset-After is rounded to the
# millisecond and the server's clock is not ours. The response's travel time
# already puts our reset after the server's, so this only has to cover
# rounding; keeping it small keeps a 1-per-0.25 s bucket near its real rate.
SAFETY_MARGIN_S = 0.005

# How long to wait when the answer depends on a response still in flight
# (a bucket being discovered, or every slot the server left is reserved).
IN_FLIGHT_POLL_S = 0.01

# When a response names a bucket but gives no Reset-After, assume this window.
# Discord always sends Reset-After; this only keeps a broken server from
# making us wait forever or not at all.
UNKNOWN_RESET_AFTER_S = 1.0

# Discord's documented global limit for bots.
DISCORD_GLOBAL_PER_SECOND = 50
GLOBAL_WINDOW_S = 1.0

# Forget idle, expired buckets once there are more than this many.
PRUNE_THRESHOLD = 1024

# Key of a bucket whose hash is not known yet: (prefix + route template, major).
_DISCOVERY_PREFIX = "route:"
# Marks a route known to have no per-route limit.
_NO_BUCKET = ""

BucketKey = Tuple[str, str]


class RateLimitHeaders(NamedTuple):
    """The rate-limit headers of one response, parsed; absent or malformed → None."""

    limit: Optional[int] = None
    remaining: Optional[int] = None
    reset_after: Optional[float] = None
    bucket: Optional[str] = None
    scope: Optional[str] = None
    is_global: bool = False
    retry_after: Optional[float] = None  # the Retry-After header (whole seconds)

    @classmethod
    def parse(cls, headers: Mapping[str, str]) -> "RateLimitHeaders":
        """The X-RateLimit-* headers of one response (missing or malformed ones are None)."""
        low = {str(k).lower(): str(v).strip() for k, v in headers.items()}
        return cls(
            limit=_int(low.get("x-ratelimit-limit")),
            remaining=_int(low.get("x-ratelimit-remaining")),
            reset_after=_float(low.get("x-ratelimit-reset-after")),
            bucket=low.get("x-ratelimit-bucket") or None,
            scope=low.get("x-ratelimit-scope") or None,
            is_global=(low.get("x-ratelimit-global", "").lower() == "true"
                       or low.get("x-ratelimit-scope", "").lower() == "global"),
            retry_after=_float(low.get("retry-after")),
        )


def _int(value: Optional[str]) -> Optional[int]:
    try:
        return None if value is None else int(float(value))
    except ValueError:
        return None


def _float(value: Optional[str]) -> Optional[float]:
    try:
        out = None if value is None else float(value)
    except ValueError:
        return None
    # "nan"/"inf" parse as floats but would poison every comparison.
    return out if out is not None and 0.0 <= out < float("inf") else None


class _Bucket:
    """What is known of one (bucket, channel): its limit, what is in flight, when it resets."""

    __slots__ = ("limit", "floor", "reset_at", "in_flight", "period", "sent")

    def __init__(self) -> None:
        self.limit: Optional[int] = None       # None: not discovered for this key yet
        # The lowest X-RateLimit-Remaining the server reported in this window
        # (``limit`` in a fresh window). Remaining only falls within a window,
        # so the lowest value is the server's latest count whatever order the
        # responses arrive in.
        self.floor = 0
        self.reset_at: Optional[float] = None  # None: window start not known
        self.in_flight = 0                     # reservations not consumed yet
        self.period = 0.0                      # longest Reset-After seen ≈ window length
        self.sent: Deque[float] = deque()      # our last ``limit`` reservation times

    @property
    def remaining(self) -> int:
        """Free slots: each unanswered request may still be uncounted by the server."""
        return self.floor - self.in_flight

    def roll(self, now: float) -> None:
        """Open a new window if the current one is over."""
        if self.reset_at is not None and now >= self.reset_at:
            self.reset_at = None
            # Requests still in flight may land in the new window: remaining
            # subtracts them.
            self.floor = self.limit if self.limit is not None else 0

    def blocked_until(self) -> Optional[float]:
        """When the window (or a 429) ends, if the server left no slot before then. Call roll() first."""
        if self.reset_at is not None and (self.limit is None or self.floor <= 0):
            return self.reset_at
        return None

    def busy(self) -> bool:
        """No slot now, but an answer in flight may free one: poll, do not wait for the reset."""
        if self.limit is None:
            return self.in_flight > 0  # discovering: one request at a time
        return self.remaining <= 0     # every slot the server has left is reserved

    def spacing_wait(self, now: float) -> float:
        """Seconds until ``limit`` sends fit in any ``period`` of our own send times."""
        if self.limit is None or not self.period or len(self.sent) < self.limit:
            return 0.0
        return self.sent[-self.limit] + self.period + SAFETY_MARGIN_S - now

    def reserve(self, now: float) -> None:
        self.in_flight += 1
        self.sent.append(now)
        while len(self.sent) > max(self.limit or 1, 1):
            self.sent.popleft()

    def unreserve(self, now: float, *, answered: bool) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        if answered or self.limit is None:
            return
        # No answer: the server may have counted it (a connection dropped
        # after processing), so its slot stays used.
        self.floor = max(0, self.floor - 1)
        if self.in_flight == 0 and self.reset_at is None and self.floor <= 0:
            # A fresh window whose requests all failed without an answer: we
            # will not learn its reset from them, so assume a whole period.
            self.reset_at = now + (self.period or UNKNOWN_RESET_AFTER_S) + SAFETY_MARGIN_S

    def learn(self, rl: RateLimitHeaders, now: float) -> None:
        """Fold one response's headers in (the reservation is consumed by the caller)."""
        if rl.limit is None or rl.remaining is None:
            return
        reset_after = rl.reset_after if rl.reset_after is not None else UNKNOWN_RESET_AFTER_S
        reset_at = now + reset_after + SAFETY_MARGIN_S
        self.floor = rl.remaining if self.limit is None else min(self.floor, rl.remaining)
        self.limit = rl.limit
        self.period = max(self.period, reset_after)
        # Only later, never earlier: see "The race between threads" above.
        self.reset_at = reset_at if self.reset_at is None else max(self.reset_at, reset_at)

    def block(self, until: float) -> None:
        """A 429: nothing more until ``until``."""
        self.floor = 0
        self.reset_at = until if self.reset_at is None else max(self.reset_at, until)

    def idle(self, now: float) -> bool:
        return self.in_flight == 0 and (self.reset_at is None or now >= self.reset_at)


class GlobalLimiter:
    """A proactive sliding-window cap on all requests (Discord: 50 per second)."""

    def __init__(self, per_second: int = DISCORD_GLOBAL_PER_SECOND, window: float = GLOBAL_WINDOW_S) -> None:
        if per_second < 1 or window <= 0:
            raise ValueError("GlobalLimiter needs per_second >= 1 and window > 0")
        self.per_second = per_second
        self.window = window
        self._sent: Deque[float] = deque()

    def wait(self, now: float) -> float:
        # The server's window starts when our first request ARRIVES, so a send
        # expires a little after one window of our own clock.
        """Seconds to wait before the next request may be sent (0: now)."""
        span = self.window + SAFETY_MARGIN_S
        while self._sent and self._sent[0] + span <= now:
            self._sent.popleft()
        if len(self._sent) < self.per_second:
            return 0.0
        return self._sent[0] + span - now

    def record(self, now: float) -> None:
        """Count a request sent at ``now``."""
        self._sent.append(now)


class RateLimiter:
    """Per-bucket, global-pause and optional global-cap bookkeeping.

    ``route_key`` is ``"METHOD /template"`` (``"POST /channels/{channel_id}/messages"``);
    ``major`` is the route's major parameter value (channel or guild id, or "").

    Protocol for one request: call :meth:`acquire` until it returns 0 (sleep
    the returned seconds in between, outside any lock); then exactly one of
    :meth:`update` (any response but a 429 or 5xx), :meth:`on_429`, or
    :meth:`release` (no usable response).
    """

    def __init__(self, max_wait: float = 60.0, *, global_per_second: Optional[int] = DISCORD_GLOBAL_PER_SECOND) -> None:
        if max_wait < 0:
            raise ValueError("max_wait must be >= 0")
        self.max_wait = float(max_wait)
        self.global_limiter = GlobalLimiter(global_per_second) if global_per_second else None
        self.global_until = 0.0  # a global 429 pauses everything until then
        self._buckets: Dict[BucketKey, _Bucket] = {}
        self._route_hash: Dict[str, str] = {}  # route_key -> hash, or _NO_BUCKET

    # -- public API -----------------------------------------------------

    def acquire(self, route_key: str, major: str, now: float) -> float:
        """Seconds to wait before sending; 0 means go, and a slot is now reserved.

        Raises :class:`RateLimitedTooLong` instead of returning a wait above
        ``max_wait``.
        """
        if len(self._buckets) > PRUNE_THRESHOLD:
            self.prune(now)
        global_wait = self.global_until - now
        if global_wait > 0:
            self._check_cap(route_key, global_wait, is_global=True)
            return global_wait
        bucket = self._bucket_for(route_key, major, create=True)
        if bucket is not None:
            bucket.roll(now)
            until = bucket.blocked_until()
            if until is not None:
                self._check_cap(route_key, until - now, is_global=False)
                return until - now
            if bucket.busy():
                # Not a rate-limit wait (the request timeout bounds it), so no cap.
                return IN_FLIGHT_POLL_S
            spacing = bucket.spacing_wait(now)
            if spacing > 0:
                self._check_cap(route_key, spacing, is_global=False)
                return spacing
        cap_wait = self.global_limiter.wait(now) if self.global_limiter else 0.0
        if cap_wait > 0:
            return cap_wait
        if bucket is not None:
            bucket.reserve(now)
        if self.global_limiter:
            self.global_limiter.record(now)
        return 0.0

    def update(self, route_key: str, major: str, headers: Mapping[str, str], now: float) -> RateLimitHeaders:
        """A response arrived: consume the reservation and learn from its headers."""
        rl = RateLimitHeaders.parse(headers)
        reserved = self._consume(route_key, major, now, answered=True)
        self._learn(route_key, major, rl, now, reserved)
        return rl

    def on_429(self, route_key: str, major: str, retry_after: float, is_global: bool, now: float,
               headers: Optional[Mapping[str, str]] = None) -> float:
        """A 429 arrived: consume the reservation, block, return the wait before retrying.

        A global 429 pauses every route; any other blocks this route's bucket.
        Raises :class:`RateLimitedTooLong` when ``retry_after`` exceeds ``max_wait``.
        """
        retry_after = max(0.0, float(retry_after))
        rl = RateLimitHeaders.parse(headers or {})
        reserved = self._consume(route_key, major, now, answered=True)  # a 429 is not counted
        until = now + retry_after + SAFETY_MARGIN_S
        if is_global:
            self.global_until = max(self.global_until, until)
        else:
            if rl.bucket is not None:
                self._learn(route_key, major, rl, now, reserved)
            elif self._route_hash.get(route_key) == _NO_BUCKET:
                # We thought the route had no limit of its own: rediscover it.
                del self._route_hash[route_key]
            bucket = self._bucket_for(route_key, major, create=True)
            assert bucket is not None
            bucket.block(until)
        self._check_cap(route_key, retry_after, is_global=is_global)
        return retry_after + SAFETY_MARGIN_S

    def release(self, route_key: str, major: str, now: float) -> None:
        """No usable response (connection error, 5xx): give the reservation back.

        The slot itself is not returned: the server may have counted the request.
        """
        self._consume(route_key, major, now, answered=False)

    def prune(self, now: float) -> None:
        """Forget buckets with nothing in flight whose window is over."""
        for key in [k for k, b in self._buckets.items() if b.idle(now)]:
            del self._buckets[key]

    def bucket_hash(self, route_key: str) -> Optional[str]:
        """The learned X-RateLimit-Bucket of a route ("" if it has none), for logs and tests."""
        return self._route_hash.get(route_key)

    def snapshot(self, route_key: str, major: str) -> Optional[Tuple[Optional[int], int, Optional[float], int]]:
        """(limit, remaining, reset_at, in_flight) of the bucket a request would use now."""
        bucket = self._bucket_for(route_key, major, create=False)
        if bucket is None:
            return None
        return bucket.limit, bucket.remaining, bucket.reset_at, bucket.in_flight

    # -- internals ------------------------------------------------------

    def _key_for(self, route_key: str, major: str) -> Optional[BucketKey]:
        discovery = (_DISCOVERY_PREFIX + route_key, major)
        pending = self._buckets.get(discovery)
        # A discovery request still in flight owns its key even if another
        # major parameter has taught us the hash meanwhile.
        if pending is not None and (pending.in_flight or route_key not in self._route_hash):
            return discovery
        known = self._route_hash.get(route_key)
        if known is None:
            return discovery
        if known == _NO_BUCKET:
            return None
        return (known, major)

    def _bucket_for(self, route_key: str, major: str, *, create: bool) -> Optional[_Bucket]:
        key = self._key_for(route_key, major)
        if key is None:
            return None
        bucket = self._buckets.get(key)
        if bucket is None and create:
            bucket = self._buckets[key] = _Bucket()
        return bucket

    def _consume(self, route_key: str, major: str, now: float, *, answered: bool) -> Optional[BucketKey]:
        """End one reservation; return the key it was held on (None if none)."""
        key = self._key_for(route_key, major)
        bucket = self._buckets.get(key) if key is not None else None
        if bucket is None:
            return None
        bucket.unreserve(now, answered=answered)
        return key

    def _learn(self, route_key: str, major: str, rl: RateLimitHeaders, now: float,
               reserved: Optional[BucketKey]) -> None:
        if rl.bucket is None:
            if route_key not in self._route_hash and rl.limit is None:
                self._route_hash[route_key] = _NO_BUCKET
                self._drop_discovery(route_key, major)
            return
        self._route_hash[route_key] = rl.bucket
        key = (rl.bucket, major)
        discovery = self._buckets.get((_DISCOVERY_PREFIX + route_key, major))
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket()
            if discovery is not None:
                # Carry over the discovery request's send time and any block
                # a 429 set during discovery.
                bucket.reset_at = discovery.reset_at
                bucket.sent.extend(discovery.sent)
        bucket.learn(rl, now)
        if reserved is not None and reserved[0].startswith(_DISCOVERY_PREFIX):
            self._drop_discovery(route_key, major)

    def _drop_discovery(self, route_key: str, major: str) -> None:
        key = (_DISCOVERY_PREFIX + route_key, major)
        bucket = self._buckets.get(key)
        if bucket is not None and bucket.in_flight == 0:
            del self._buckets[key]

    def _check_cap(self, route_key: str, wait: float, *, is_global: bool) -> None:
        if wait > self.max_wait:
            method, _, route = route_key.partition(" ")
            raise RateLimitedTooLong(method, route, wait, self.max_wait, is_global=is_global)
