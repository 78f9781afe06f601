"""The rate limiter is pure: these tests drive it with made-up `now` values."""

from __future__ import annotations

import pytest

from discord_orch.errors import RateLimitedTooLong
from discord_orch.ratelimit import (
    IN_FLIGHT_POLL_S,
    SAFETY_MARGIN_S,
    GlobalLimiter,
    RateLimiter,
    RateLimitHeaders,
)

CREATE = "POST /channels/{channel_id}/messages"
REACT = "PUT /channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me"
EDIT = "PATCH /channels/{channel_id}/messages/{message_id}"


def hdrs(limit=5, remaining=4, reset_after=5.0, bucket="abc", **extra):
    out = {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining),
           "X-RateLimit-Reset-After": str(reset_after), "X-RateLimit-Bucket": bucket}
    out.update(extra)
    return out


def limiter(max_wait=60.0, **kw) -> RateLimiter:
    kw.setdefault("global_per_second", None)
    return RateLimiter(max_wait, **kw)


def discover(rl: RateLimiter, route=CREATE, major="1", now=0.0, **h) -> None:
    assert rl.acquire(route, major, now) == 0
    rl.update(route, major, hdrs(**h), now)


# -- headers ---------------------------------------------------------------

def test_headers_parse_case_insensitively_and_ignore_garbage():
    rl = RateLimitHeaders.parse({"x-ratelimit-limit": "5", "X-RATELIMIT-REMAINING": "0",
                                 "X-RateLimit-Reset-After": "1.234", "X-RateLimit-Bucket": "h",
                                 "X-RateLimit-Scope": "shared", "Retry-After": "nan"})
    assert (rl.limit, rl.remaining, rl.reset_after, rl.bucket, rl.scope) == (5, 0, 1.234, "h", "shared")
    assert rl.retry_after is None and not rl.is_global
    assert RateLimitHeaders.parse({"X-RateLimit-Global": "true"}).is_global
    assert RateLimitHeaders.parse({"X-RateLimit-Scope": "global"}).is_global
    assert RateLimitHeaders.parse({"X-RateLimit-Limit": "five"}).limit is None


# -- discovery -------------------------------------------------------------

def test_unknown_route_lets_one_request_through_at_a_time():
    rl = limiter()
    assert rl.acquire(CREATE, "1", 0.0) == 0
    # Limit unknown while the first is in flight: the others wait for its answer.
    assert rl.acquire(CREATE, "1", 0.001) == IN_FLIGHT_POLL_S
    rl.update(CREATE, "1", hdrs(remaining=4), 0.01)
    assert rl.bucket_hash(CREATE) == "abc"
    for _ in range(4):
        assert rl.acquire(CREATE, "1", 0.02) == 0
    assert rl.snapshot(CREATE, "1") == (5, 0, pytest.approx(5.01 + SAFETY_MARGIN_S), 4)


def test_route_without_bucket_header_is_only_globally_limited():
    rl = limiter()
    assert rl.acquire("GET /users/@me", "", 0.0) == 0
    rl.update("GET /users/@me", "", {}, 0.01)
    assert rl.bucket_hash("GET /users/@me") == ""
    assert all(rl.acquire("GET /users/@me", "", 0.02) == 0 for _ in range(100))


def test_release_of_a_discovery_request_lets_the_next_one_discover():
    rl = limiter()
    assert rl.acquire(CREATE, "1", 0.0) == 0
    rl.release(CREATE, "1", 0.5)  # connection error: no answer
    assert rl.acquire(CREATE, "1", 0.5) == 0


def test_shared_hash_keeps_separate_limits_per_major_parameter():
    rl = limiter()
    discover(rl, major="1", remaining=0, reset_after=5.0)
    assert rl.acquire(CREATE, "1", 0.1) == pytest.approx(4.9 + SAFETY_MARGIN_S)
    # Another channel: same hash, its own (not yet known) limit.
    assert rl.acquire(CREATE, "2", 0.1) == 0
    assert rl.acquire(CREATE, "2", 0.1) == IN_FLIGHT_POLL_S
    rl.update(CREATE, "2", hdrs(remaining=4), 0.2)
    assert rl.acquire(CREATE, "2", 0.2) == 0


def test_routes_sharing_a_hash_share_the_bucket():
    rl = limiter()
    discover(rl, route=EDIT, major="1", limit=2, remaining=1, bucket="shared")
    discover(rl, route="DELETE /channels/{channel_id}/messages/{message_id}", major="1",
             limit=2, remaining=0, bucket="shared", now=0.1)
    # The DELETE used the last slot of the bucket the PATCH also lives in.
    assert rl.acquire(EDIT, "1", 0.2) > 4


def test_discovery_in_flight_keeps_its_key_when_another_major_teaches_the_hash():
    rl = limiter()
    assert rl.acquire(CREATE, "1", 0.0) == 0
    assert rl.acquire(CREATE, "2", 0.0) == 0
    rl.update(CREATE, "2", hdrs(remaining=4), 0.01)
    # Channel 1's first request is still being discovered.
    assert rl.acquire(CREATE, "1", 0.02) == IN_FLIGHT_POLL_S
    rl.update(CREATE, "1", hdrs(remaining=4), 0.03)
    assert rl.snapshot(CREATE, "1")[:2] == (5, 4)
    assert rl.acquire(CREATE, "1", 0.04) == 0


# -- reservations and resets -----------------------------------------------

def test_reservations_stop_concurrent_callers_from_over_sending():
    rl = limiter()
    discover(rl, remaining=4)
    # Four callers reserve before any of their responses are back; a fifth
    # waits for their answers, not for the reset (they might free a slot).
    assert [rl.acquire(CREATE, "1", 0.1) for _ in range(4)] == [0, 0, 0, 0]
    assert rl.acquire(CREATE, "1", 0.1) == IN_FLIGHT_POLL_S
    rl.update(CREATE, "1", hdrs(remaining=3), 0.2)
    assert rl.acquire(CREATE, "1", 0.2) == IN_FLIGHT_POLL_S
    for r in (2, 1, 0):
        rl.update(CREATE, "1", hdrs(remaining=r), 0.2)
    # The server says none is left: now wait for the reset.
    assert rl.acquire(CREATE, "1", 0.2) == pytest.approx(5.0 + SAFETY_MARGIN_S)


def test_answers_out_of_server_order_give_slots_back_once_all_are_in():
    rl = limiter()
    discover(rl, remaining=4)                           # server: 1 counted
    assert [rl.acquire(CREATE, "1", 0.1) for _ in range(3)] == [0, 0, 0]
    # The server counted them A (R=3), B (R=2), C (R=1); B's answer arrives first.
    rl.update(CREATE, "1", hdrs(remaining=2), 0.11)
    assert rl.snapshot(CREATE, "1")[1] == 0             # A and C might be uncounted: 2 - 2
    rl.update(CREATE, "1", hdrs(remaining=3), 0.12)     # A: a stale, higher count changes nothing...
    assert rl.snapshot(CREATE, "1")[1] == 1             # ...but A is no longer in flight
    rl.update(CREATE, "1", hdrs(remaining=1), 0.13)
    assert rl.snapshot(CREATE, "1")[1] == 1             # exactly the server's count
    assert rl.acquire(CREATE, "1", 0.14) == 0
    assert rl.acquire(CREATE, "1", 0.14) == IN_FLIGHT_POLL_S
    rl.update(CREATE, "1", hdrs(remaining=0), 0.15)
    assert rl.acquire(CREATE, "1", 0.15) > 4


def test_a_request_without_answer_keeps_its_slot_used():
    rl = limiter()
    discover(rl, remaining=2)
    assert rl.acquire(CREATE, "1", 0.1) == 0
    rl.release(CREATE, "1", 0.2)                        # dropped: maybe counted
    assert rl.snapshot(CREATE, "1")[1] == 1


def test_wait_until_reset_then_a_fresh_window():
    rl = limiter()
    discover(rl, remaining=0, reset_after=5.0)
    assert rl.acquire(CREATE, "1", 2.0) == pytest.approx(3.0 + SAFETY_MARGIN_S)
    t = 5.0 + SAFETY_MARGIN_S
    assert [rl.acquire(CREATE, "1", t) for _ in range(5)] == [0] * 5
    # Every slot of the new window is reserved and no answer told us its reset yet.
    assert rl.acquire(CREATE, "1", t) == IN_FLIGHT_POLL_S
    for r in (4, 3, 2, 1, 0):
        rl.update(CREATE, "1", hdrs(remaining=r, reset_after=5.0), t + 0.01)
    assert rl.acquire(CREATE, "1", t + 0.02) == pytest.approx(5.0 - 0.01 + SAFETY_MARGIN_S)


def test_requests_in_flight_across_a_reset_count_in_the_new_window():
    rl = limiter()
    discover(rl, remaining=4, reset_after=1.0)
    assert rl.acquire(CREATE, "1", 0.99) == 0  # may land after the server's reset
    t = 1.0 + SAFETY_MARGIN_S
    assert [rl.acquire(CREATE, "1", t) for _ in range(4)] == [0] * 4
    assert rl.acquire(CREATE, "1", t) > 0


def test_late_response_from_the_old_window_cannot_reopen_the_new_one_early():
    rl = limiter()
    discover(rl, remaining=3, reset_after=1.0)
    assert rl.acquire(CREATE, "1", 0.9) == 0            # old window, slow answer
    t = 1.0 + SAFETY_MARGIN_S
    assert [rl.acquire(CREATE, "1", t) for _ in range(4)] == [0] * 4
    for r in (3, 2, 1, 0):                               # the new window's answers
        rl.update(CREATE, "1", hdrs(remaining=r, reset_after=1.0), t + 0.01)
    rl.update(CREATE, "1", hdrs(remaining=0, reset_after=0.001), t + 0.02)  # the late one
    assert rl.acquire(CREATE, "1", t + 0.05) == pytest.approx(0.96 + SAFETY_MARGIN_S)


def test_a_burst_of_thirty_never_exceeds_five_per_window():
    """Simulated server with Discord's fixed 5-per-5 s windows; the limiter must never 429."""
    rl = limiter()
    sent, now, window_start, count = [], 0.0, None, 0
    while len(sent) < 30:
        wait = rl.acquire(CREATE, "1", now)
        if wait:
            now += wait
            continue
        if window_start is None or now >= window_start + 5.0:
            window_start, count = now, 0
        count += 1
        assert count <= 5, f"429 at t={now}"
        sent.append(now)
        now += 0.002  # round trip
        rl.update(CREATE, "1", hdrs(remaining=5 - count, reset_after=window_start + 5.0 - now), now)
    assert all(sum(1 for s in sent if t <= s < t + 5.0) <= 5 for t in sent)
    # The rate-limit floor for 30 is 25 s; the limiter stays close to it.
    assert 25.0 <= sent[-1] < 25.5


def test_sends_keep_to_limit_per_period_even_across_a_reset():
    rl = limiter()
    discover(rl, limit=2, remaining=1, reset_after=1.0)          # sent at 0.0
    assert rl.acquire(CREATE, "1", 0.5) == 0                        # sent at 0.5
    rl.update(CREATE, "1", hdrs(limit=2, remaining=0, reset_after=0.5), 0.5)
    t = 1.0 + SAFETY_MARGIN_S
    assert rl.acquire(CREATE, "1", t) == 0                          # the window reset...
    # ...but a second send now would make 3 within [0.5, 1.5): wait for 0.5 + 1 s.
    assert rl.acquire(CREATE, "1", t) == pytest.approx(0.5)


def test_fresh_window_whose_requests_all_failed_assumes_a_whole_period():
    rl = limiter()
    discover(rl, remaining=0, reset_after=2.0)
    t = 2.0 + SAFETY_MARGIN_S
    assert [rl.acquire(CREATE, "1", t) for _ in range(5)] == [0] * 5
    for _ in range(5):
        rl.release(CREATE, "1", t + 1)
    assert rl.acquire(CREATE, "1", t + 1) == pytest.approx(2.0 + SAFETY_MARGIN_S)


def test_prune_forgets_only_idle_expired_buckets():
    rl = limiter()
    discover(rl, major="1", remaining=0, reset_after=1.0)
    discover(rl, major="2", remaining=0, reset_after=10.0)
    rl.prune(2.0)
    assert rl.snapshot(CREATE, "1") is None
    assert rl.snapshot(CREATE, "2") is not None


# -- 429 -------------------------------------------------------------------

def test_route_429_blocks_that_bucket_for_retry_after():
    rl = limiter()
    discover(rl, remaining=4, reset_after=1.0)
    assert rl.acquire(CREATE, "1", 0.1) == 0
    wait = rl.on_429(CREATE, "1", 2.5, False, 0.2, hdrs(remaining=0, reset_after=0.5))
    assert wait == pytest.approx(2.5 + SAFETY_MARGIN_S)
    # retry_after wins over the shorter Reset-After (a sub-limit).
    assert rl.acquire(CREATE, "1", 1.0) == pytest.approx(1.7 + SAFETY_MARGIN_S)
    assert rl.acquire(CREATE, "2", 1.0) == 0          # other channels are not blocked
    assert rl.acquire(REACT, "1", 1.0) == 0           # nor other routes
    assert rl.acquire(CREATE, "1", 2.7 + SAFETY_MARGIN_S) == 0


def test_429_during_discovery_without_headers_blocks_the_route():
    rl = limiter()
    assert rl.acquire(CREATE, "1", 0.0) == 0
    rl.on_429(CREATE, "1", 1.0, False, 0.1)
    assert rl.acquire(CREATE, "1", 0.5) == pytest.approx(0.6 + SAFETY_MARGIN_S)
    assert rl.acquire(CREATE, "1", 1.2) == 0


def test_429_on_a_route_thought_unlimited_rediscovers_it():
    rl = limiter()
    assert rl.acquire(CREATE, "1", 0.0) == 0
    rl.update(CREATE, "1", {}, 0.0)
    assert rl.acquire(CREATE, "1", 0.0) == 0
    rl.on_429(CREATE, "1", 1.0, False, 0.1)
    assert rl.acquire(CREATE, "1", 0.2) > 0.8
    assert rl.acquire(CREATE, "1", 1.2) == 0
    assert rl.acquire(CREATE, "1", 1.2) == IN_FLIGHT_POLL_S


def test_global_429_pauses_everything():
    rl = limiter()
    discover(rl, remaining=4)
    assert rl.acquire(CREATE, "1", 0.1) == 0
    rl.on_429(CREATE, "1", 3.0, True, 0.2)
    assert rl.acquire(CREATE, "1", 1.2) == pytest.approx(2.0 + SAFETY_MARGIN_S)
    assert rl.acquire(REACT, "9", 1.2) == pytest.approx(2.0 + SAFETY_MARGIN_S)
    assert rl.acquire("GET /users/@me", "", 1.2) > 0
    assert rl.acquire("GET /users/@me", "", 3.3) == 0


# -- caps ------------------------------------------------------------------

def test_bucket_wait_above_cap_raises():
    rl = limiter(max_wait=1.0)
    discover(rl, remaining=0, reset_after=5.0)
    with pytest.raises(RateLimitedTooLong) as info:
        rl.acquire(CREATE, "1", 0.1)
    exc = info.value
    assert (exc.method, exc.route, exc.cap, exc.is_global) == ("POST", "/channels/{channel_id}/messages", 1.0, False)
    assert exc.retry_after == pytest.approx(4.9 + SAFETY_MARGIN_S)
    assert "more than the 1.00s cap" in str(exc)
    # Nothing was reserved by the refused call.
    assert rl.snapshot(CREATE, "1")[3] == 0


def test_429_retry_after_above_cap_raises_and_global_says_so():
    rl = limiter(max_wait=2.0)
    assert rl.acquire(CREATE, "1", 0.0) == 0
    with pytest.raises(RateLimitedTooLong) as info:
        rl.on_429(CREATE, "1", 30.0, True, 0.0)
    assert info.value.is_global and "global rate limit" in str(info.value)
    with pytest.raises(RateLimitedTooLong):
        rl.acquire("GET /users/@me", "", 1.0)


def test_in_flight_polls_are_not_capped():
    rl = limiter(max_wait=0.0)
    assert rl.acquire(CREATE, "1", 0.0) == 0
    assert rl.acquire(CREATE, "1", 0.0) == IN_FLIGHT_POLL_S


def test_bad_arguments():
    with pytest.raises(ValueError):
        RateLimiter(-1)
    with pytest.raises(ValueError):
        GlobalLimiter(0)


# -- the global cap --------------------------------------------------------

def test_global_limiter_is_a_sliding_window():
    g = GlobalLimiter(per_second=3)
    for t in (0.0, 0.1, 0.2):
        assert g.wait(t) == 0
        g.record(t)
    assert g.wait(0.5) == pytest.approx(0.5 + SAFETY_MARGIN_S)
    assert g.wait(1.0 + SAFETY_MARGIN_S) == 0


def test_rate_limiter_applies_the_global_cap_across_routes():
    rl = RateLimiter(60.0, global_per_second=50)
    assert rl.acquire("GET /users/@me", "", 0.0) == 0
    rl.update("GET /users/@me", "", {}, 0.0)
    granted = 1
    for _ in range(60):
        if rl.acquire("GET /users/@me", "", 0.0) == 0:
            granted += 1
    assert granted == 50
    assert rl.acquire(CREATE, str(99), 0.5) == pytest.approx(0.5 + SAFETY_MARGIN_S)
    assert rl.acquire(CREATE, str(99), 1.0 + SAFETY_MARGIN_S) == 0
