"""DiscordClient over real HTTP against LocalDiscord (no mocks of requests)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Iterator, List

import pytest

from discord_orch.discord_api import DiscordClient
from discord_orch.errors import (
    AttachmentTooLarge,
    BadRequest,
    ConfigError,
    DiscordUnavailable,
    Forbidden,
    NotFound,
    RateLimitedTooLong,
    Unauthorized,
)
from discord_orch.sim.localdiscord import LocalDiscord, RateLimits
from discord_orch.models import FileUpload

CREATE = "POST /channels/{channel_id}/messages"
REACT = "PUT /channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me"
LIST = "GET /channels/{channel_id}/messages"


class World:
    def __init__(self, ld: LocalDiscord) -> None:
        self.ld = ld
        self.gid = ld.create_guild("home")
        self.bot = ld.create_user("orch-bot", bot=True)
        self.alice = ld.create_user("alice")
        self.rid = ld.create_role(self.gid, "ops")
        ld.add_member(self.gid, self.alice.id, roles=[self.rid])
        self.cid = ld.create_channel(self.gid, "task-queue")
        self.other = ld.create_channel(self.gid, "results")

    def client(self, **kw) -> DiscordClient:
        return DiscordClient(self.bot.token, self.ld.base_url, **kw)


def _world(rate_limits: RateLimits) -> Iterator[World]:
    ld = LocalDiscord(rate_limits=rate_limits)
    ld.start()
    try:
        yield World(ld)
    finally:
        ld.stop()


@pytest.fixture
def world() -> Iterator[World]:
    yield from _world(RateLimits.off())


@pytest.fixture
def fast_limits() -> Iterator[World]:
    yield from _world(RateLimits(enabled=True, global_per_second=50, message_create=(2, 0.5),
                                 reactions=(1, 0.05), default=(50, 1.0)))


def no_sleep_recorder(log: List[float]):
    def sleep(seconds: float) -> None:
        log.append(seconds)
    return sleep


# -- Discord's per-channel message limit, shared by three threads ----------

# Discord's shape (5 creates a channel a window), its window cut to a tenth so the test takes
# 2.5 s, not 25. The local Discord enforces the limit (a 429 past it), so no 429 means the three
# threads kept to it together; how close the makespan comes to the floor is bench/bench_client.py's
# figure (tests assert no wall-clock time, and timestamps taken on a loaded machine jitter).
CREATE_LIMIT, CREATE_WINDOW_S = 5, 0.5


def test_thirty_posts_from_three_threads_keep_to_the_limit_without_a_429():
    for w in _world(RateLimits(message_create=(CREATE_LIMIT, CREATE_WINDOW_S))):
        with w.client() as client:
            errors: List[BaseException] = []

            def post(n: int) -> None:
                try:
                    for i in range(10):
                        client.create_message(w.cid, f"thread {n} message {i}")
                except BaseException as exc:  # pragma: no cover - reported below
                    errors.append(exc)

            threads = [threading.Thread(target=post, args=(n,)) for n in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert not errors
            assert w.ld.count_429() == 0 and client.stats.responses_429 == 0
            assert sorted(m["content"] for m in w.ld.messages(w.cid)) == sorted(
                f"thread {n} message {i}" for n in range(3) for i in range(10))


# -- rate limits with small windows -----------------------------------------

def test_concurrent_reactions_share_one_bucket_without_429(fast_limits):
    w = fast_limits
    mids = [w.ld.post_message(w.cid, w.alice.id, f"m{i}")["id"] for i in range(16)]
    with w.client() as client:
        def react(chunk: List[str]) -> None:
            for mid in chunk:
                client.add_reaction(w.cid, mid, "✅")
        threads = [threading.Thread(target=react, args=(mids[i::4],)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert w.ld.count_429() == 0
        assert all(w.ld.reactions(w.cid, m) == {"✅": [w.bot.id]} for m in mids)
        # Other channels and routes are not held up by the busy reaction bucket.
        client.create_message(w.other, "elsewhere")
        assert w.ld.count_429() == 0


def test_injected_429_is_honoured(fast_limits):
    w = fast_limits
    w.ld.fail("POST", CREATE, statuses=[429])  # body: retry_after 0.05, not global
    with w.client() as client:
        msg = client.create_message(w.cid, "after a 429")
    assert [m["id"] for m in w.ld.messages(w.cid)] == [msg.id]
    recs = [r for r in w.ld.requests if r.route == CREATE]
    assert [r.status for r in recs] == [429, 200]
    assert recs[1].time - recs[0].time >= 0.05
    assert client.stats.responses_429 == 1 and client.stats.retries == 1


def test_real_429_from_a_bucket_another_client_exhausted(fast_limits):
    w = fast_limits
    with w.client() as first, w.client() as second:
        first.create_message(w.cid, "one")
        first.create_message(w.cid, "two")          # the bucket (2 per 0.5 s) is empty now
        second.create_message(w.cid, "three")       # knows nothing: 429, waits, succeeds
    recs = [r for r in w.ld.requests if r.route == CREATE]
    assert [r.status for r in recs] == [200, 200, 429, 200]
    assert recs[3].time - recs[0].time >= 0.5
    assert second.stats.responses_429 == 1
    assert len(w.ld.messages(w.cid)) == 3


def test_global_429_pauses_every_route():
    for w in _world(RateLimits(enabled=True, global_per_second=4, default=(50, 1.0))):
        mid = w.ld.post_message(w.cid, w.alice.id, "x")["id"]
        with w.client() as client:
            for _ in range(3):
                client.me()
                client.get_message(w.cid, mid)
        recs = w.ld.requests
        hit = [i for i, r in enumerate(recs) if r.status == 429]
        assert hit and client.stats.responses_429 == len(hit)
        # The server's global window began with the first request and lasts 1 s:
        # after the 429 nothing at all was sent until it was over.
        assert all(r.time - recs[0].time >= 0.99 for r in recs[hit[0] + 1:])
        assert sum(1 for r in recs if r.status == 200) == 6


def test_wait_over_max_wait_raises_without_sending():
    for w in _world(RateLimits(enabled=True, message_create=(1, 5.0))):
        with w.client(max_wait=0.5) as client:
            client.create_message(w.cid, "one")
            sent = w.ld.request_count()
            started = time.monotonic()
            with pytest.raises(RateLimitedTooLong) as info:
                client.create_message(w.cid, "two")
            assert time.monotonic() - started < 0.5     # refused at once, no waiting
            assert w.ld.request_count() == sent
        exc = info.value
        assert exc.channel_id == w.cid and exc.cap == 0.5 and exc.retry_after > 4
        assert "POST /channels/{channel_id}/messages" in str(exc) and "cap" in str(exc)
        # A 429 asking for more than the cap raises too (a client that did not know the bucket).
        with w.client(max_wait=0.5) as fresh:
            with pytest.raises(RateLimitedTooLong):
                fresh.create_message(w.cid, "three")
        assert len(w.ld.messages(w.cid)) == 1


# -- retries and idempotency -------------------------------------------------

def test_502_then_success_posts_exactly_once(world):
    slept: List[float] = []
    world.ld.fail("POST", CREATE, statuses=[502])
    with world.client(sleep=no_sleep_recorder(slept)) as client:
        msg = client.create_message(world.cid, "hello")
    assert [m["id"] for m in world.ld.messages(world.cid)] == [msg.id]
    assert client.stats.retries == 1 and client.stats.requests == 2
    assert len(slept) == 1 and 0.25 <= slept[0] <= 0.5


def test_connection_dropped_after_processing_posts_exactly_once(world):
    world.ld.drop("POST", CREATE, after_processing=True)
    with world.client(sleep=no_sleep_recorder([])) as client:
        msg = client.create_message(world.cid, "hello")
    msgs = world.ld.messages(world.cid)
    assert [m["id"] for m in msgs] == [msg.id]
    recs = [r for r in world.ld.requests if r.route == CREATE]
    assert [r.status for r in recs] == [0, 200]          # the retry reached Discord...
    assert world.ld.nonce_of(world.cid, msg.id) == msg.nonce  # ...with the same nonce


def test_connection_dropped_before_processing_is_retried(world):
    world.ld.drop("POST", CREATE)
    with world.client(sleep=no_sleep_recorder([])) as client:
        client.create_message(world.cid, "hello")
    assert len(world.ld.messages(world.cid)) == 1


def test_caller_nonce_makes_repeated_creates_idempotent(world):
    with world.client() as client:
        a = client.create_message(world.cid, "once", nonce="task-42-result")
        b = client.create_message(world.cid, "once", nonce="task-42-result")
    assert a.id == b.id and len(world.ld.messages(world.cid)) == 1
    with pytest.raises(ValueError):
        client.create_message(world.cid, "x", nonce="n" * 26)


def test_persistent_5xx_gives_up_after_bounded_backoff(world):
    slept: List[float] = []
    world.ld.fail("GET", "/users/@me", statuses=[503], count=10)
    with world.client(max_retries=3, sleep=no_sleep_recorder(slept)) as client:
        with pytest.raises(DiscordUnavailable) as info:
            client.me()
    assert world.ld.request_count(route="GET /users/@me") == 4
    # Exponential with jitter: each in [d/2, d], d = 0.5, 1, 2.
    assert [0.25 <= slept[0] <= 0.5, 0.5 <= slept[1] <= 1.0, 1.0 <= slept[2] <= 2.0] == [True] * 3
    assert info.value.status == 503
    assert str(info.value) == ("Discord is unavailable on GET /users/@me after 4 attempt(s): "
                               "HTTP 503: 503: Service Unavailable")


def test_other_5xx_and_4xx_are_not_retried(world):
    world.ld.fail("GET", "/users/@me", statuses=[501])
    with world.client(sleep=no_sleep_recorder([])) as client:
        with pytest.raises(DiscordUnavailable):
            client.me()
        assert client.stats.retries == 0
        with pytest.raises(BadRequest) as info:
            client.create_message(world.cid, "x" * 2001)
        assert client.stats.retries == 0 and client.stats.requests == 2
    exc = info.value
    assert (exc.status, exc.code) == (400, 50035)
    assert "content" in str(exc) and "POST /channels/{channel_id}/messages" in str(exc)


def test_unreachable_server_is_unavailable_after_retries(world):
    base = world.ld.base_url
    world.ld.stop()
    with DiscordClient(world.bot.token, base, max_retries=2, sleep=no_sleep_recorder([])) as client:
        with pytest.raises(DiscordUnavailable) as info:
            client.me()
    assert info.value.attempts == 3
    host = base.split("//")[1].split("/")[0]
    assert str(info.value) == f"Discord is unavailable on GET /users/@me after 3 attempt(s): connection refused by {host}"


def test_unresolvable_host_is_named_as_such(world):
    with DiscordClient(world.bot.token, "http://no-such-host.invalid/api/v10", max_retries=0,
                       sleep=no_sleep_recorder([])) as client:
        with pytest.raises(DiscordUnavailable) as info:
            client.me()
    assert str(info.value).endswith("cannot resolve no-such-host.invalid (no network or no DNS)")


# -- typed errors ------------------------------------------------------------

def test_401_is_typed_and_the_client_then_sends_nothing(world):
    with DiscordClient("not-a-real-token", world.ld.base_url) as client:
        with pytest.raises(Unauthorized) as info:
            client.me()
        assert info.value.status == 401
        assert str(info.value).startswith("Discord rejected the bot token (401;")
        assert "GET /users/@me" in str(info.value)
        sent = world.ld.request_count()
        with pytest.raises(Unauthorized) as again:
            client.create_message(world.cid, "x")
        assert "sends nothing more" in str(again.value)
        assert world.ld.request_count() == sent


def test_403_and_404_are_typed_with_discords_code_and_message(world):
    world.ld.deny(world.cid, world.bot.id, code=50001)
    with world.client() as client:
        with pytest.raises(Forbidden) as forbidden:
            client.create_message(world.cid, "x")
        with pytest.raises(NotFound) as missing:
            client.get_channel("1234567890123")
        with pytest.raises(NotFound) as no_member:
            client.get_member(world.gid, "99999999")
    assert str(forbidden.value) == (
        "Discord refused access (403; the bot lacks a permission or cannot see the channel) HTTP 403 code 50001 "
        f"on POST /channels/{{channel_id}}/messages (channel {world.cid}): Missing Access")
    assert (missing.value.status, missing.value.code, missing.value.message) == (404, 10003, "Unknown Channel")
    assert "10007" in str(no_member.value) and "Unknown Member" in str(no_member.value)


def test_malformed_bodies_become_clear_errors(world):
    world.ld.fail("GET", "/users/@me", statuses=[200], body="<html>hello</html>")
    world.ld.fail("GET", "/channels/{channel_id}", statuses=[200], body={"name": "no id"})
    world.ld.fail("GET", "/guilds/{guild_id}/members/{user_id}", statuses=[400], body=b"\xff\xfe garbage")
    with world.client() as client:
        with pytest.raises(DiscordUnavailable) as not_json:
            client.me()
        with pytest.raises(DiscordUnavailable) as no_id:
            client.get_channel(world.cid)
        with pytest.raises(BadRequest) as bad:
            client.get_member(world.gid, world.alice.id)
    assert "HTTP 200 with a body that is not JSON (18 bytes)" in str(not_json.value)
    assert "malformed (KeyError: 'id')" in str(no_id.value)
    assert "the error body is not JSON" in str(bad.value)


def test_ids_that_are_not_snowflakes_are_refused_without_sending(world):
    with world.client() as client:
        with pytest.raises(BadRequest) as info:
            client.get_member("@me", world.alice.id)
        with pytest.raises(BadRequest):
            client.get_channel("../users/@me")
    assert world.ld.request_count() == 0
    assert "guild_id '@me' is not a snowflake" in str(info.value)


def test_bad_tokens_are_refused_without_echoing_them():
    with pytest.raises(ConfigError) as info:
        DiscordClient("abc\ndef", "http://127.0.0.1:9")
    assert "abc" not in str(info.value)
    with pytest.raises(ConfigError):
        DiscordClient("   ", "http://127.0.0.1:9")


# -- the API surface ---------------------------------------------------------

def test_reads_return_typed_values(world):
    mid = world.ld.post_message(world.cid, world.alice.id, "hi")["id"]
    world.ld.react(world.cid, mid, world.alice.id, "✅")
    with world.client() as client:
        me = client.me()
        assert (me.id, me.bot) == (world.bot.id, True)
        ch = client.get_channel(world.cid)
        assert (ch.id, ch.guild_id, ch.name) == (world.cid, world.gid, "task-queue")
        assert client.get_member(world.gid, world.alice.id).roles == (world.rid,)
        msg = client.get_message(world.cid, mid)
        assert msg.reaction("✅").count == 1 and msg.author.id == world.alice.id
        assert [u.id for u in client.reaction_users(world.cid, mid, "✅")] == [world.alice.id]


def test_list_messages_is_newest_first_and_iter_walks_forward_in_pages(world):
    anchor = world.ld.post_message(world.cid, world.alice.id, "anchor")["id"]
    ids = [world.ld.post_message(world.cid, world.alice.id, f"m{i}")["id"] for i in range(250)]
    with world.client() as client:
        page = client.list_messages(world.cid, limit=5)
        assert [m.id for m in page] == ids[:-6:-1]
        world.ld.reset_log()
        walked = list(client.iter_messages_after(world.cid, anchor))
        assert [m.id for m in walked] == ids
        assert world.ld.request_count(route=LIST) == 3
        assert list(client.iter_messages_after(world.cid, ids[-1])) == []
        with pytest.raises(ValueError):
            client.list_messages(world.cid, after=anchor, before=anchor)
        with pytest.raises(ValueError):
            client.list_messages(world.cid, limit=101)


def test_create_with_files_reply_and_no_mentions(world):
    task = world.ld.post_message(world.cid, world.alice.id, "task")["id"]
    with world.client() as client:
        msg = client.create_message(world.cid, f"done <@{world.alice.id}> @everyone", reply_to=task,
                                    files=[FileUpload("RESULT.txt", b"result bytes", description="the result"),
                                           FileUpload("log.txt", b"\x00\x01binary")])
        assert [a.filename for a in msg.attachments] == ["RESULT.txt", "log.txt"]
        assert msg.referenced_message_id == task
        assert client.download(msg.attachments[0].url, max_bytes=100) == b"result bytes"
        with pytest.raises(AttachmentTooLarge) as info:
            client.download(msg.attachments[0].url, max_bytes=5)
    raw = world.ld.get_message(world.cid, msg.id)
    assert raw["mentions"] == [] and raw["mention_everyone"] is False   # NO_MENTIONS by default
    assert world.ld.attachment_bytes(world.cid, msg.id, 1) == b"\x00\x01binary"
    assert str(info.value) == "attachment 'RESULT.txt' is 12 bytes, over the 5-byte limit (not downloaded)"


def test_reply_to_a_missing_message_still_posts(world):
    with world.client() as client:
        msg = client.create_message(world.cid, "reply", reply_to="1234567890")
    assert msg.id in [m["id"] for m in world.ld.messages(world.cid)]


def test_edit_and_reactions(world):
    with world.client() as client:
        msg = client.create_message(world.cid, "draft")
        edited = client.edit_message(world.cid, msg.id, "final")
        assert (edited.id, edited.content) == (msg.id, "final")
        for emoji in ("✅", "👍🏽", "❌"):
            client.add_reaction(world.cid, msg.id, emoji)
        client.remove_own_reaction(world.cid, msg.id, "❌")
    assert world.ld.reactions(world.cid, msg.id) == {"✅": [world.bot.id], "👍🏽": [world.bot.id]}


def test_download_sends_the_token_only_to_the_api_itself(world):
    with world.client() as client:
        # Under the API base URL the token goes along: the API answers as for the bot.
        assert world.bot.id.encode() in client.download(world.ld.base_url + "/users/@me", max_bytes=10_000)
        # The same server under another host name is "another host": no token, so 401...
        other_host = world.ld.base_url.replace("127.0.0.1", "localhost") + "/users/@me"
        with pytest.raises(Forbidden) as info:
            client.download(other_host, max_bytes=10_000)
        assert info.value.status == 401
        # ...which is not the bot token's fault: the client keeps working.
        assert client.me().id == world.bot.id
        with pytest.raises(ValueError):
            client.download("file:///etc/passwd", max_bytes=10)


# -- secrets -----------------------------------------------------------------

def test_the_token_never_appears_in_repr_errors_or_debug_logs(world, caplog):
    caplog.set_level(logging.DEBUG)
    token = world.bot.token
    texts: List[str] = []
    world.ld.deny(world.other, world.bot.id, code=50013)
    world.ld.fail("GET", "/users/@me", statuses=[502, 503], count=2)
    world.ld.drop("POST", CREATE, after_processing=True)
    with world.client(sleep=no_sleep_recorder([])) as client:
        texts.append(repr(client))
        client.me()
        client.create_message(world.cid, "hello")
        for call in (lambda: client.create_message(world.other, "x"),
                     lambda: client.get_channel("1"),
                     lambda: client.create_message(world.cid, "y" * 5000),
                     lambda: client.get_member("@me", "1")):
            with pytest.raises(Exception) as info:
                call()
            texts += [str(info.value), repr(info.value)]
    base = world.ld.base_url
    world.ld.stop()
    with DiscordClient(token, base, max_retries=0) as dead:
        with pytest.raises(DiscordUnavailable) as info:
            dead.me()
        texts += [str(info.value), repr(info.value), repr(dead)]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "GET /users/@me -> 502" in logged and "POST /channels/{channel_id}/messages -> 200" in logged
    for text in texts + [logged]:
        assert token not in text
