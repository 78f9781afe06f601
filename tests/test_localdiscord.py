"""LocalDiscord over real HTTP: what a client sees (shapes, codes, limits, faults)."""

from __future__ import annotations

import dataclasses

import http.client
import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterator, List

import pytest
import requests

from discord_orch.models import DISCORD_EPOCH_MS
from discord_orch.sim.localdiscord import LocalDiscord, LocalUser, RateLimits, RequestRecord

CHECK = "%E2%9C%85"  # ✅ URL-encoded
CREATE = "POST /channels/{channel_id}/messages"
REACT_PUT = "PUT /channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me"


@dataclass
class World:
    ld: LocalDiscord
    gid: str
    bot: LocalUser
    alice: LocalUser
    bob: LocalUser
    rid: str
    cid: str
    cid2: str
    http: requests.Session

    def url(self, path: str) -> str:
        return self.ld.base_url + path

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.http.get(self.url(path), **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self.http.post(self.url(path), **kw)

    def put(self, path: str, **kw: Any) -> requests.Response:
        return self.http.put(self.url(path), **kw)

    def patch(self, path: str, **kw: Any) -> requests.Response:
        return self.http.patch(self.url(path), **kw)

    def delete(self, path: str, **kw: Any) -> requests.Response:
        return self.http.delete(self.url(path), **kw)

    def create(self, content: str = "hi", channel: str = "", **payload: Any) -> requests.Response:
        payload.setdefault("content", content)
        return self.post(f"/channels/{channel or self.cid}/messages", json=payload)


@pytest.fixture
def make_world() -> Iterator[Callable[..., World]]:
    made: List[World] = []

    def make(rate_limits: Any = None, **kw: Any) -> World:
        ld = LocalDiscord(rate_limits=rate_limits if rate_limits is not None else RateLimits.off(), **kw)
        ld.start()
        gid = ld.create_guild("home")
        bot = ld.create_user("orch-bot", bot=True)
        alice = ld.create_user("alice")
        bob = ld.create_user("bob")
        rid = ld.create_role(gid, "operators")
        ld.add_member(gid, alice.id, roles=[rid])
        ld.add_member(gid, bot.id)
        cid = ld.create_channel(gid, "task-queue")
        cid2 = ld.create_channel(gid, "results")
        s = requests.Session()
        s.headers["Authorization"] = f"Bot {bot.token}"
        w = World(ld, gid, bot, alice, bob, rid, cid, cid2, s)
        made.append(w)
        return w

    yield make
    for w in made:
        w.http.close()
        w.ld.stop()


@pytest.fixture
def w(make_world: Callable[..., World]) -> World:
    return make_world()


def field_error(body: dict, *path: str) -> dict:
    node = body["errors"]
    for p in path:
        node = node[p]
    return node["_errors"][0]


# ------------------------------------------------------------------ lifecycle, auth, routing


def test_base_url_context_manager_and_stop() -> None:
    ld = LocalDiscord()
    with pytest.raises(RuntimeError):
        ld.base_url
    with ld:
        assert ld.base_url == f"http://127.0.0.1:{ld.port}/api/v10"
        assert ld.port > 0
        r = requests.get(ld.base_url + "/users/@me")
        assert r.status_code == 401
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{ld.port}/api/v10/users/@me", timeout=2)


def test_keep_alive_two_requests_on_one_connection(w: World) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", w.ld.port, timeout=5)
    for _ in range(2):
        conn.request("GET", "/api/v10/users/@me", headers={"Authorization": f"Bot {w.bot.token}"})
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200
        assert int(resp.getheader("Content-Length")) == len(body)
    sock = conn.sock
    assert sock is not None  # still open: the server kept the connection alive
    conn.request("DELETE", f"/api/v10/channels/{w.cid}/messages/{w.ld.post_message(w.cid, w.bot.id, 'x')['id']}",
                 headers={"Authorization": f"Bot {w.bot.token}"})
    resp = conn.getresponse()
    assert resp.status == 204 and resp.read() == b""
    assert conn.sock is sock
    conn.close()


def test_unauthorized(w: World) -> None:
    for headers in ({}, {"Authorization": "Bot nope"}, {"Authorization": w.bot.token},
                    {"Authorization": f"Bearer {w.bot.token}"}):
        r = requests.get(w.url("/users/@me"), headers=headers)
        assert r.status_code == 401
        assert r.json() == {"message": "401: Unauthorized", "code": 0}
    assert w.alice.token is None


def test_401_does_not_consume_buckets(make_world: Callable[..., World]) -> None:
    w = make_world(RateLimits(default=(1, 5.0)))
    for _ in range(3):
        assert requests.get(w.url(f"/channels/{w.cid}")).status_code == 401
    r = w.get(f"/channels/{w.cid}")
    assert r.status_code == 200
    assert r.headers["X-RateLimit-Remaining"] == "0"


def test_unknown_route_and_wrong_method(w: World) -> None:
    r = w.get("/nope/nothing")
    assert r.status_code == 404 and r.json() == {"message": "404: Not Found", "code": 0}
    r = requests.get(w.ld.origin + "/something-else")
    assert r.status_code == 404 and r.json()["code"] == 0
    r = w.http.post(w.url("/users/@me"), json={})
    assert r.status_code == 405
    assert r.json() == {"message": "405: Method Not Allowed", "code": 0}
    assert r.headers["Allow"] == "GET"


def test_bad_snowflake_in_path_is_50035(w: World) -> None:
    r = w.get("/channels/abc")
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == 50035
    assert field_error(body, "channel_id")["code"] == "NUMBER_TYPE_COERCE"


# ------------------------------------------------------------------ users, channels, members


def test_users_me(w: World) -> None:
    me = w.get("/users/@me").json()
    assert me["id"] == w.bot.id and me["username"] == "orch-bot" and me["bot"] is True
    assert me["avatar"] is None and me["global_name"] is None
    assert me["mfa_enabled"] is False and me["locale"] == "en-US"


def test_get_channel_and_unknown(w: World) -> None:
    ch = w.get(f"/channels/{w.cid}").json()
    assert ch["id"] == w.cid and ch["guild_id"] == w.gid and ch["name"] == "task-queue" and ch["type"] == 0
    assert ch["last_message_id"] is None
    m = w.ld.post_message(w.cid, w.alice.id, "x")
    assert w.get(f"/channels/{w.cid}").json()["last_message_id"] == m["id"]
    r = w.get("/channels/123456")
    assert r.status_code == 404 and r.json() == {"message": "Unknown Channel", "code": 10003}


def test_get_member(w: World) -> None:
    m = w.get(f"/guilds/{w.gid}/members/{w.alice.id}").json()
    assert m["user"]["id"] == w.alice.id and m["roles"] == [w.rid]
    assert "bot" not in m["user"]
    assert datetime.fromisoformat(m["joined_at"]).tzinfo is not None
    r = w.get(f"/guilds/{w.gid}/members/{w.bob.id}")
    assert r.status_code == 404 and r.json() == {"message": "Unknown Member", "code": 10007}
    r = w.get(f"/guilds/999/members/{w.alice.id}")
    assert r.status_code == 404 and r.json()["code"] == 10004


# ------------------------------------------------------------------ listing messages


def test_list_messages_order_and_pagination(w: World) -> None:
    ids = [w.ld.post_message(w.cid, w.alice.id, f"m{i}")["id"] for i in range(10)]
    assert [int(i) for i in ids] == sorted(int(i) for i in ids)  # strictly increasing
    assert len(set(ids)) == 10
    got = w.get(f"/channels/{w.cid}/messages").json()
    assert [m["id"] for m in got] == ids[::-1]
    got = w.get(f"/channels/{w.cid}/messages", params={"limit": 3}).json()
    assert [m["content"] for m in got] == ["m9", "m8", "m7"]
    # after: the `limit` messages right after, newest first
    got = w.get(f"/channels/{w.cid}/messages", params={"after": ids[2], "limit": 3}).json()
    assert [m["content"] for m in got] == ["m5", "m4", "m3"]
    got = w.get(f"/channels/{w.cid}/messages", params={"before": ids[5], "limit": 2}).json()
    assert [m["content"] for m in got] == ["m4", "m3"]
    got = w.get(f"/channels/{w.cid}/messages", params={"around": ids[5], "limit": 4}).json()
    assert [m["content"] for m in got] == ["m6", "m5", "m4", "m3"]
    got = w.get(f"/channels/{w.cid}/messages", params={"after": ids[-1]}).json()
    assert got == []


def test_list_messages_default_limit_is_50(w: World) -> None:
    for i in range(55):
        w.ld.post_message(w.cid, w.alice.id, f"m{i}")
    got = w.get(f"/channels/{w.cid}/messages").json()
    assert len(got) == 50 and got[0]["content"] == "m54" and got[-1]["content"] == "m5"
    assert len(w.get(f"/channels/{w.cid}/messages", params={"limit": 100}).json()) == 55


@pytest.mark.parametrize("limit,code", [("0", "NUMBER_TYPE_MIN"), ("101", "NUMBER_TYPE_MAX"),
                                        ("abc", "NUMBER_TYPE_COERCE")])
def test_list_messages_bad_limit(w: World, limit: str, code: str) -> None:
    r = w.get(f"/channels/{w.cid}/messages", params={"limit": limit})
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == 50035 and body["message"] == "Invalid Form Body"
    assert field_error(body, "limit")["code"] == code


def test_list_messages_two_anchors_rejected(w: World) -> None:
    r = w.get(f"/channels/{w.cid}/messages", params={"before": "5", "after": "1"})
    assert r.status_code == 400 and r.json()["code"] == 50035


# ------------------------------------------------------------------ message shape


def test_message_shape(w: World) -> None:
    before_ms = int(time.time() * 1000)
    m = w.create("hello").json()
    assert set(m) >= {"id", "channel_id", "type", "content", "author", "timestamp", "edited_timestamp", "tts",
                      "mention_everyone", "mentions", "mention_roles", "attachments", "embeds", "pinned", "flags",
                      "components"}
    assert m["type"] == 0 and m["content"] == "hello" and m["channel_id"] == w.cid
    assert m["author"] == {"id": w.bot.id, "username": "orch-bot", "avatar": None,
                           "discriminator": m["author"]["discriminator"], "public_flags": 0, "flags": 0,
                           "banner": None, "accent_color": None, "global_name": None,
                           "avatar_decoration_data": None, "collectibles": None, "primary_guild": None,
                           "bot": True}
    assert "reactions" not in m and "message_reference" not in m and "nonce" not in m
    assert m["edited_timestamp"] is None and m["pinned"] is False and m["tts"] is False
    ms = (int(m["id"]) >> 22) + DISCORD_EPOCH_MS
    assert before_ms - 5 <= ms <= int(time.time() * 1000) + 5
    assert abs(datetime.fromisoformat(m["timestamp"]).timestamp() * 1000 - ms) < 2
    human = w.ld.post_message(w.cid, w.alice.id, "from alice")
    assert "bot" not in human["author"] and human["author"]["discriminator"] == "0"
    assert human["author"]["global_name"] == "alice"


# ------------------------------------------------------------------ creating messages


def test_create_json_and_content_limit(w: World) -> None:
    r = w.create("x" * 2000)
    assert r.status_code == 200 and len(r.json()["content"]) == 2000
    r = w.create("x" * 2001)
    assert r.status_code == 400
    assert r.json() == {"message": "Invalid Form Body", "code": 50035, "errors": {"content": {"_errors": [
        {"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}]}}}
    assert len(w.ld.messages(w.cid)) == 1


@pytest.mark.parametrize("payload", [{}, {"content": ""}, {"content": "   \n"}, {"content": None, "embeds": []}])
def test_create_empty_is_50006(w: World, payload: dict) -> None:
    r = w.post(f"/channels/{w.cid}/messages", json=payload)
    assert r.status_code == 400
    assert r.json() == {"message": "Cannot send an empty message", "code": 50006}
    assert w.ld.messages(w.cid) == []


def test_create_invalid_json_is_50109(w: World) -> None:
    r = w.post(f"/channels/{w.cid}/messages", data=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["code"] == 50109


def test_create_unknown_channel(w: World) -> None:
    r = w.create("x", channel="42")
    assert r.status_code == 404 and r.json()["code"] == 10003


def test_embeds_accepted(w: World) -> None:
    embed = {"title": "T", "description": "D", "fields": [{"name": "n", "value": "v", "inline": True}],
             "footer": {"text": "f"}, "color": 0x00FF00}
    m = w.post(f"/channels/{w.cid}/messages", json={"embeds": [embed]}).json()
    assert m["content"] == ""
    assert m["embeds"] == [dict(embed, type="rich")]
    m = w.post(f"/channels/{w.cid}/messages", json={"embeds": [{"title": "t", "fields": [{"name": "a", "value": "b"}],
                                                                "footer": None, "url": None}]}).json()
    assert m["embeds"] == [{"type": "rich", "title": "t", "fields": [{"name": "a", "value": "b", "inline": False}]}]


@pytest.mark.parametrize("embed,path,code", [
    ({"title": "t" * 257}, ("embeds", "0", "title"), "BASE_TYPE_MAX_LENGTH"),
    ({"description": "d" * 4097}, ("embeds", "0", "description"), "BASE_TYPE_MAX_LENGTH"),
    ({"fields": [{"name": "n", "value": "v"}] * 26}, ("embeds", "0", "fields"), "BASE_TYPE_MAX_LENGTH"),
    ({"footer": {"text": "f" * 2049}}, ("embeds", "0", "footer", "text"), "BASE_TYPE_MAX_LENGTH"),
    ({"description": "d" * 4096, "fields": [{"name": "n", "value": "v" * 1000}] * 2}, ("embeds",),
     "MAX_EMBED_SIZE_EXCEEDED"),
])
def test_embed_limits(w: World, embed: dict, path: tuple, code: str) -> None:
    r = w.post(f"/channels/{w.cid}/messages", json={"embeds": [embed]})
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == 50035
    assert field_error(body, *path)["code"] == code
    assert w.ld.messages(w.cid) == []


def test_multipart_with_files_and_download(w: World) -> None:
    blob = bytes(range(256)) + b"\r\n--not-a-boundary\r\n\r\n" + b"\x00" * 10
    payload = {"content": "see files", "attachments": [{"id": 0, "description": "the task"},
                                                       {"id": 1, "filename": "renamed.bin"}]}
    r = w.post(f"/channels/{w.cid}/messages", data={"payload_json": json.dumps(payload)},
               files={"files[0]": ("RESULT.txt", "résultat ✅\n".encode(), "text/plain"),
                      "files[1]": ("orig.bin", blob, "application/octet-stream")})
    assert r.status_code == 200, r.text
    m = r.json()
    assert m["content"] == "see files"
    a0, a1 = m["attachments"]
    assert a0["filename"] == "RESULT.txt" and a0["size"] == len("résultat ✅\n".encode())
    assert a0["content_type"] == "text/plain; charset=utf-8" and a0["description"] == "the task"
    assert a1["filename"] == "renamed.bin" and a1["size"] == len(blob)
    assert int(a1["id"]) > int(a0["id"])
    dl = requests.get(a1["url"])  # no auth, like the CDN
    assert dl.status_code == 200 and dl.content == blob
    assert a0["url"].startswith(f"{w.ld.origin}/attachments/{w.cid}/{a0['id']}/RESULT.txt")
    assert requests.get(a0["proxy_url"]).content == "résultat ✅\n".encode()
    assert w.ld.attachment_bytes(w.cid, m["id"], 1) == blob
    assert w.ld.attachment_bytes(w.cid, m["id"]) == "résultat ✅\n".encode()


def test_multipart_file_only(w: World) -> None:
    r = w.post(f"/channels/{w.cid}/messages", files={"files[0]": ("a b.txt", b"x")})
    assert r.status_code == 200
    assert r.json()["attachments"][0]["filename"] == "a_b.txt"


def test_file_too_large_is_40005(w: World) -> None:
    big = b"a" * (10 * 1024 * 1024 + 1)
    r = w.post(f"/channels/{w.cid}/messages", data={"payload_json": json.dumps({"content": "big"})},
               files={"files[0]": ("big.txt", big)})
    assert r.status_code == 413
    assert r.json() == {"message": "Request entity too large", "code": 40005}
    assert w.ld.messages(w.cid) == []
    ok = w.post(f"/channels/{w.cid}/messages", files={"files[0]": ("ok.txt", big[:-1])})
    assert ok.status_code == 200


def test_attachment_gone_after_delete(w: World) -> None:
    m = w.ld.post_message(w.cid, w.alice.id, "t", attachments=[("TASK.txt", b"do it")])
    url = m["attachments"][0]["url"]
    assert requests.get(url).content == b"do it"
    w.ld.delete_message(w.cid, m["id"])
    assert requests.get(url).status_code == 404


def test_allowed_mentions(w: World) -> None:
    m = w.create("@everyone done", allowed_mentions={"parse": []}).json()
    assert m["mention_everyone"] is False
    m = w.create("@everyone done", allowed_mentions={"parse": ["everyone"]}).json()
    assert m["mention_everyone"] is True
    m = w.create("@everyone done").json()
    assert m["mention_everyone"] is True
    m = w.create(f"hey <@{w.alice.id}> and <@&{w.rid}>", allowed_mentions={"parse": ["users"]}).json()
    assert [u["id"] for u in m["mentions"]] == [w.alice.id] and m["mention_roles"] == []
    m = w.create(f"hey <@{w.alice.id}>", allowed_mentions={"parse": []}).json()
    assert m["mentions"] == []
    m = w.create(f"hey <@{w.alice.id}> <@{w.bob.id}>", allowed_mentions={"users": [w.bob.id]}).json()
    assert [u["id"] for u in m["mentions"]] == [w.bob.id]
    r = w.create("x", allowed_mentions={"parse": ["users"], "users": [w.bob.id]})
    assert r.status_code == 400 and r.json()["code"] == 50035


def test_reply(w: World) -> None:
    task = w.ld.post_message(w.cid, w.alice.id, "task")
    r = w.create("result", message_reference={"message_id": task["id"]}, allowed_mentions={"parse": []})
    m = r.json()
    assert m["type"] == 19
    assert m["message_reference"] == {"type": 0, "channel_id": w.cid, "message_id": task["id"], "guild_id": w.gid}
    assert m["referenced_message"]["id"] == task["id"] and m["referenced_message"]["content"] == "task"
    assert m["mentions"] == []  # replied_user not allowed
    m2 = w.create("again", message_reference={"message_id": task["id"]}).json()
    assert [u["id"] for u in m2["mentions"]] == [w.alice.id]  # default pings the replied author
    m3 = w.create("x", message_reference={"message_id": task["id"]},
                  allowed_mentions={"parse": [], "replied_user": True}).json()
    assert [u["id"] for u in m3["mentions"]] == [w.alice.id]
    # human replies through the Python API too
    h = w.ld.post_message(w.cid, w.alice.id, "thanks", reply_to=m["id"])
    assert h["type"] == 19 and h["message_reference"]["message_id"] == m["id"]


def test_reply_to_unknown_message(w: World) -> None:
    r = w.create("result", message_reference={"message_id": "1234"})
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == 50035
    assert field_error(body, "message_reference")["code"] == "MESSAGE_REFERENCE_UNKNOWN_MESSAGE"
    assert w.ld.messages(w.cid) == []
    r = w.create("result", message_reference={"message_id": "1234", "fail_if_not_exists": False})
    assert r.status_code == 200
    m = r.json()
    assert m["type"] == 0 and "message_reference" not in m


def test_referenced_message_null_after_delete(w: World) -> None:
    task = w.ld.post_message(w.cid, w.alice.id, "task")
    m = w.create("result", message_reference={"message_id": task["id"]}).json()
    w.ld.delete_message(w.cid, task["id"])
    got = w.get(f"/channels/{w.cid}/messages/{m['id']}").json()
    assert got["referenced_message"] is None and got["message_reference"]["message_id"] == task["id"]


# ------------------------------------------------------------------ nonce idempotency


def test_enforce_nonce_returns_existing_message(w: World) -> None:
    r1 = w.create("result", nonce="task-1-result", enforce_nonce=True)
    r2 = w.create("result (retry)", nonce="task-1-result", enforce_nonce=True)
    assert r1.status_code == r2.status_code == 200
    assert r1.json()["id"] == r2.json()["id"]
    assert r2.json()["content"] == "result" and r2.json()["nonce"] == "task-1-result"
    assert len(w.ld.messages(w.cid)) == 1
    # integer nonces work too, and are distinct from strings
    a = w.create("n", nonce=12345, enforce_nonce=True).json()
    b = w.create("n", nonce=12345, enforce_nonce=True).json()
    assert a["id"] == b["id"] and a["nonce"] == 12345
    assert len(w.ld.messages(w.cid)) == 2
    # fetched messages do not carry the nonce (Discord does not store it)
    assert "nonce" not in w.get(f"/channels/{w.cid}/messages/{a['id']}").json()
    assert w.ld.nonce_of(w.cid, a["id"]) == 12345


def test_nonce_without_enforce_creates_twice(w: World) -> None:
    a = w.create("x", nonce="n1").json()
    b = w.create("x", nonce="n1").json()
    assert a["id"] != b["id"] and len(w.ld.messages(w.cid)) == 2


def test_nonce_is_per_author(w: World) -> None:
    other = w.ld.create_user("other-bot", bot=True)
    a = w.create("x", nonce="same", enforce_nonce=True).json()
    r = requests.post(w.url(f"/channels/{w.cid}/messages"), json={"content": "y", "nonce": "same",
                                                                   "enforce_nonce": True},
                      headers={"Authorization": f"Bot {other.token}"})
    assert r.status_code == 200 and r.json()["id"] != a["id"] and r.json()["author"]["id"] == other.id


def test_nonce_window_expires(w: World) -> None:
    w.ld.nonce_window = 0.15
    a = w.create("x", nonce="n", enforce_nonce=True).json()
    time.sleep(0.2)
    b = w.create("x", nonce="n", enforce_nonce=True).json()
    assert a["id"] != b["id"]


def test_nonce_too_long(w: World) -> None:
    r = w.create("x", nonce="n" * 26, enforce_nonce=True)
    assert r.status_code == 400 and field_error(r.json(), "nonce")["code"] == "BASE_TYPE_MAX_LENGTH"


# ------------------------------------------------------------------ get / edit / delete


def test_get_edit_delete_message(w: World) -> None:
    mine = w.create("draft").json()
    got = w.get(f"/channels/{w.cid}/messages/{mine['id']}").json()
    assert got["content"] == "draft"
    r = w.patch(f"/channels/{w.cid}/messages/{mine['id']}", json={"content": "**[Task: 1]** final"})
    assert r.status_code == 200
    edited = r.json()
    assert edited["content"] == "**[Task: 1]** final" and edited["id"] == mine["id"]
    assert edited["edited_timestamp"] is not None
    assert w.ld.get_message(w.cid, mine["id"])["content"] == "**[Task: 1]** final"
    r = w.patch(f"/channels/{w.cid}/messages/{mine['id']}", json={"content": "y" * 2001})
    assert r.status_code == 400 and r.json()["code"] == 50035
    theirs = w.ld.post_message(w.cid, w.alice.id, "alice's")
    r = w.patch(f"/channels/{w.cid}/messages/{theirs['id']}", json={"content": "hijack"})
    assert r.status_code == 403
    assert r.json() == {"message": "Cannot edit a message authored by another user", "code": 50005}
    assert w.ld.get_message(w.cid, theirs["id"])["content"] == "alice's"
    r = w.delete(f"/channels/{w.cid}/messages/{mine['id']}")
    assert r.status_code == 204 and r.content == b""
    r = w.get(f"/channels/{w.cid}/messages/{mine['id']}")
    assert r.status_code == 404 and r.json() == {"message": "Unknown Message", "code": 10008}
    assert w.delete(f"/channels/{w.cid}/messages/{mine['id']}").json()["code"] == 10008
    assert w.patch(f"/channels/{w.cid}/messages/{mine['id']}", json={"content": "z"}).json()["code"] == 10008


# ------------------------------------------------------------------ reactions


def test_reactions_put_delete_idempotent_and_shape(w: World) -> None:
    m = w.ld.post_message(w.cid, w.alice.id, "task")
    w.ld.react(w.cid, m["id"], w.alice.id, "✅")
    path = f"/channels/{w.cid}/messages/{m['id']}/reactions/{CHECK}/@me"
    for _ in range(2):
        r = w.put(path)
        assert r.status_code == 204 and r.content == b""
    got = w.get(f"/channels/{w.cid}/messages/{m['id']}").json()
    assert got["reactions"] == [{"emoji": {"id": None, "name": "✅"}, "count": 2,
                                 "count_details": {"burst": 0, "normal": 2}, "burst_colors": [],
                                 "me_burst": False, "me": True}]
    assert w.ld.reactions(w.cid, m["id"]) == {"✅": [w.alice.id, w.bot.id]}
    for _ in range(2):
        assert w.delete(path).status_code == 204
    got = w.get(f"/channels/{w.cid}/messages/{m['id']}").json()
    assert got["reactions"][0]["count"] == 1 and got["reactions"][0]["me"] is False
    w.ld.unreact(w.cid, m["id"], w.alice.id, "✅")
    assert "reactions" not in w.get(f"/channels/{w.cid}/messages/{m['id']}").json()


def test_reaction_users_ordering_after_limit(w: World) -> None:
    m = w.ld.post_message(w.cid, w.alice.id, "task")
    users = [w.ld.create_user(f"u{i}") for i in range(5)]
    for u in reversed(users):
        w.ld.react(w.cid, m["id"], u.id, "⏳")
    path = f"/channels/{w.cid}/messages/{m['id']}/reactions/%E2%8F%B3"
    got = w.get(path).json()
    assert [u["id"] for u in got] == [u.id for u in users]
    got = w.get(path, params={"after": users[1].id, "limit": 2}).json()
    assert [u["id"] for u in got] == [users[2].id, users[3].id]
    assert w.get(path, params={"limit": 0}).json()["code"] == 50035
    assert w.get(f"/channels/{w.cid}/messages/{m['id']}/reactions/%F0%9F%8F%81").json() == []


@pytest.mark.parametrize("emoji", ["abc", "%FF%FE", "%E2%9C%85abc", "a", "bad%20name:12x"])
def test_unknown_emoji(w: World, emoji: str) -> None:
    m = w.ld.post_message(w.cid, w.alice.id, "task")
    r = w.put(f"/channels/{w.cid}/messages/{m['id']}/reactions/{emoji}/@me")
    assert r.status_code == 400
    assert r.json() == {"message": "Unknown Emoji", "code": 10014}
    assert w.ld.reactions(w.cid, m["id"]) == {}


def test_custom_emoji_and_unknown_message(w: World) -> None:
    m = w.ld.post_message(w.cid, w.alice.id, "task")
    assert w.put(f"/channels/{w.cid}/messages/{m['id']}/reactions/done:123456/@me").status_code == 204
    got = w.get(f"/channels/{w.cid}/messages/{m['id']}").json()
    assert got["reactions"][0]["emoji"] == {"id": "123456", "name": "done"}
    assert w.ld.reactions(w.cid, m["id"]) == {"done:123456": [w.bot.id]}
    r = w.put(f"/channels/{w.cid}/messages/999/reactions/{CHECK}/@me")
    assert r.status_code == 404 and r.json()["code"] == 10008
    with pytest.raises(ValueError):
        w.ld.react(w.cid, m["id"], w.alice.id, "ok")


# ------------------------------------------------------------------ access


@pytest.mark.parametrize("code,message", [(50001, "Missing Access"), (50013, "Missing Permissions")])
def test_deny(w: World, code: int, message: str) -> None:
    """50001: the channel is hidden (View Channel denied); 50013: seen, nothing allowed in it (Discord's
    docs: no history = an empty list, not an error). Both are a member overwrite the channel shows."""
    m = w.ld.post_message(w.cid, w.alice.id, "task")
    w.ld.deny(w.cid, w.bot.id, code=code)
    refused = [w.create("x"), w.put(f"/channels/{w.cid}/messages/{m['id']}/reactions/{CHECK}/@me")]
    listed, channel = w.get(f"/channels/{w.cid}/messages"), w.get(f"/channels/{w.cid}")
    if code == 50001:
        refused += [listed, channel]
    else:
        assert listed.json() == [] and channel.status_code == 200
        [overwrite] = channel.json()["permission_overwrites"]
        assert overwrite["id"] == w.bot.id and overwrite["type"] == 1 and overwrite["allow"] == "0"
        assert int(overwrite["deny"]) & (1 << 11) and not int(overwrite["deny"]) & (1 << 10)
    for r in refused:
        assert r.status_code == 403
        assert r.json() == {"message": message, "code": code}
    assert len(w.ld.messages(w.cid)) == 1 and w.ld.reactions(w.cid, m["id"]) == {}
    assert w.create("fine", channel=w.cid2).status_code == 200
    other = w.ld.create_user("other-bot", bot=True)
    r = requests.get(w.url(f"/channels/{w.cid}"), headers={"Authorization": f"Bot {other.token}"})
    assert r.status_code == 200
    w.ld.allow(w.cid, w.bot.id)
    assert w.get(f"/channels/{w.cid}").status_code == 200


# ------------------------------------------------------------------ message content intent


def test_message_content_intent_off(make_world: Callable[..., World]) -> None:
    w = make_world(message_content_intent=False)
    w.ld.post_message(w.cid, w.alice.id, "secret task", attachments=[("TASK.txt", b"x")])
    w.ld.post_message(w.cid, w.alice.id, f"<@{w.bot.id}> mentioned task")
    own = w.create("bot text").json()
    assert own["content"] == "bot text"
    got = w.get(f"/channels/{w.cid}/messages").json()
    assert [m["content"] for m in got] == ["bot text", f"<@{w.bot.id}> mentioned task", ""]
    assert got[2]["attachments"] == [] and got[2]["author"]["id"] == w.alice.id
    # inspection shows what the bot would see *with* the intent
    assert [m["content"] for m in w.ld.messages(w.cid)][0] == "secret task"
    w.ld.message_content_intent = True
    assert w.get(f"/channels/{w.cid}/messages").json()[2]["content"] == "secret task"


# ------------------------------------------------------------------ rate limits


def test_message_create_429_after_five(make_world: Callable[..., World]) -> None:
    w = make_world(RateLimits.discord_defaults())
    buckets = set()
    for i in range(5):
        r = w.create(f"m{i}")
        assert r.status_code == 200
        assert r.headers["X-RateLimit-Limit"] == "5"
        assert r.headers["X-RateLimit-Remaining"] == str(4 - i)
        assert 0 < float(r.headers["X-RateLimit-Reset-After"]) <= 5.0
        assert abs(float(r.headers["X-RateLimit-Reset"]) - time.time() - float(r.headers["X-RateLimit-Reset-After"])) < 0.5
        buckets.add(r.headers["X-RateLimit-Bucket"])
    r = w.create("one too many")
    assert r.status_code == 429
    body = r.json()
    assert set(body) == {"message", "retry_after", "global", "code"} and body["code"] == 0  # the spec requires code
    assert body["message"] == "You are being rate limited." and body["global"] is False
    assert 4.0 < body["retry_after"] <= 5.0
    assert r.headers["Retry-After"] == "5"
    assert r.headers["X-RateLimit-Scope"] == "user"
    assert r.headers["X-RateLimit-Remaining"] == "0" and r.headers["X-RateLimit-Limit"] == "5"
    assert "X-RateLimit-Global" not in r.headers
    buckets.add(r.headers["X-RateLimit-Bucket"])
    assert len(buckets) == 1
    assert [m["content"] for m in w.ld.messages(w.cid)] == [f"m{i}" for i in range(5)]  # the 429 did nothing
    # another channel has its own bucket, with the same bucket hash
    r2 = w.create("elsewhere", channel=w.cid2)
    assert r2.status_code == 200 and r2.headers["X-RateLimit-Bucket"] in buckets
    assert r2.headers["X-RateLimit-Remaining"] == "4"
    # other routes have other buckets
    r3 = w.get(f"/channels/{w.cid}/messages")
    assert r3.status_code == 200 and r3.headers["X-RateLimit-Bucket"] not in buckets
    assert w.ld.count_429() == 1 and w.ld.count_429(CREATE) == 1
    assert w.ld.count_429("GET /channels/{channel_id}/messages") == 0


def test_bucket_window_resets(make_world: Callable[..., World]) -> None:
    w = make_world(RateLimits(message_create=(2, 0.3)))
    assert [w.create("a").status_code, w.create("b").status_code, w.create("c").status_code] == [200, 200, 429]
    retry = w.create("d").json()["retry_after"]
    assert 0 < retry <= 0.3
    time.sleep(retry + 0.02)
    r = w.create("e")
    assert r.status_code == 200 and r.headers["X-RateLimit-Remaining"] == "1"
    assert [m["content"] for m in w.ld.messages(w.cid)] == ["a", "b", "e"]


def test_each_bot_has_its_own_buckets(make_world: Callable[..., World]) -> None:
    """Discord applies per-route limits to each bot (or user) by its token: another bot posting in the
    same channel is not held back by this bot's bucket (rate-limits topic: "Limits are applied to
    individual bots and users both on a per-route basis and globally")."""
    w = make_world(RateLimits(message_create=(2, 5.0)))
    assert [w.create("a").status_code, w.create("b").status_code, w.create("c").status_code] == [200, 200, 429]
    other = w.ld.create_user("other-bot", bot=True)
    w.ld.add_member(w.gid, other.id)
    r = requests.post(w.url(f"/channels/{w.cid}/messages"), json={"content": "mine"},
                      headers={"Authorization": f"Bot {other.token}"})
    assert r.status_code == 200 and r.headers["X-RateLimit-Remaining"] == "1"
    assert w.create("d").status_code == 429   # this bot's bucket is still empty


def test_headers_on_error_answers_of_limited_routes(make_world: Callable[..., World]) -> None:
    w = make_world(RateLimits(default=(3, 5.0)))
    r = w.get(f"/channels/{w.cid}/messages/123")
    assert r.status_code == 404 and r.headers["X-RateLimit-Remaining"] == "2"
    r = w.get(f"/channels/{w.cid}/messages", params={"limit": 0})
    assert r.status_code == 400 and "X-RateLimit-Bucket" in r.headers


def test_reaction_put_and_delete_share_a_bucket(make_world: Callable[..., World]) -> None:
    w = make_world(RateLimits(reactions=(1, 0.3)))
    m = w.ld.post_message(w.cid, w.alice.id, "task")
    path = f"/channels/{w.cid}/messages/{m['id']}/reactions/{CHECK}/@me"
    r1 = w.put(path)
    r2 = w.delete(path)
    assert (r1.status_code, r2.status_code) == (204, 429)
    assert r1.headers["X-RateLimit-Bucket"] == r2.headers["X-RateLimit-Bucket"]
    assert w.ld.reactions(w.cid, m["id"]) == {"✅": [w.bot.id]}  # the 429'd DELETE did nothing
    time.sleep(r2.json()["retry_after"] + 0.02)
    assert w.delete(path).status_code == 204
    assert w.ld.reactions(w.cid, m["id"]) == {}


def test_global_limit(make_world: Callable[..., World]) -> None:
    w = make_world(RateLimits(global_per_second=5, default=(1000, 1.0)))
    codes = [w.get(f"/channels/{w.cid if i % 2 else w.cid2}").status_code for i in range(5)]
    assert codes == [200] * 5
    r = w.get("/users/@me")
    assert r.status_code == 429
    body = r.json()
    assert body["global"] is True and body["message"] == "You are being rate limited."
    assert 0 < body["retry_after"] <= 1.0
    assert r.headers["X-RateLimit-Global"] == "true"
    assert r.headers["X-RateLimit-Scope"] == "global"
    assert r.headers["Retry-After"] == "1"
    # per bot: another bot is not affected
    other = w.ld.create_user("other-bot", bot=True)
    assert requests.get(w.url("/users/@me"), headers={"Authorization": f"Bot {other.token}"}).status_code == 200
    time.sleep(body["retry_after"] + 0.02)
    assert w.get("/users/@me").status_code == 200


def test_global_default_is_fifty_per_second(make_world: Callable[..., World]) -> None:
    defaults = RateLimits.discord_defaults()
    assert (defaults.global_per_second, defaults.global_window_s) == (50, 1.0)
    # the count, over a window no loaded machine outlasts (51 requests once spanned two seconds under load)
    w = make_world(dataclasses.replace(defaults, global_window_s=60.0))
    statuses = [w.get(f"/channels/{w.cid}" if i < 25 else f"/channels/{w.cid2}").status_code for i in range(51)]
    assert statuses[:50] == [200] * 50
    assert statuses[50] == 429
    assert w.ld.count_429() == 1


def test_rate_limits_off(w: World) -> None:
    for i in range(20):
        r = w.create(f"m{i}")
        assert r.status_code == 200
    assert w.ld.count_429() == 0 and len(w.ld.messages(w.cid)) == 20


def test_rate_limits_tweakable_at_runtime(w: World) -> None:
    w.ld.rate_limits = RateLimits(message_create=(1, 5.0))
    assert [w.create("a").status_code, w.create("b").status_code] == [200, 429]
    w.ld.reset_rate_limits()
    assert w.create("c").status_code == 200


# ------------------------------------------------------------------ fault injection


def test_fail_statuses_in_order(w: World) -> None:
    w.ld.fail("POST", CREATE, statuses=[502, 503])
    r1, r2, r3 = w.create("a"), w.create("b"), w.create("c")
    assert (r1.status_code, r2.status_code, r3.status_code) == (502, 503, 200)
    assert r1.json() == {"message": "502: Bad Gateway", "code": 0}
    assert [m["content"] for m in w.ld.messages(w.cid)] == ["c"]


def test_fail_count_repeats_last(w: World) -> None:
    w.ld.fail("POST", "/channels/{channel_id}/messages", statuses=[500, 503], count=4)
    assert [w.create("x").status_code for _ in range(5)] == [500, 503, 503, 503, 200]
    # other routes are untouched
    w.ld.fail("GET", "/channels/{channel_id}", statuses=[500])
    assert w.get(f"/channels/{w.cid}/messages").status_code == 200
    assert w.get(f"/channels/{w.cid}").status_code == 500


def test_fail_injected_429(w: World) -> None:
    w.ld.fail("PUT", REACT_PUT, statuses=[429])
    m = w.ld.post_message(w.cid, w.alice.id, "t")
    r = w.put(f"/channels/{w.cid}/messages/{m['id']}/reactions/{CHECK}/@me")
    assert r.status_code == 429 and "retry_after" in r.json()
    assert w.ld.reactions(w.cid, m["id"]) == {}
    assert w.ld.count_429(REACT_PUT) == 1


def test_drop_before_processing(w: World) -> None:
    w.ld.drop("POST", CREATE)
    with pytest.raises(requests.ConnectionError):
        w.create("lost")
    assert w.ld.messages(w.cid) == []
    assert w.create("ok").status_code == 200  # one drop only; the session recovers
    recs = [r for r in w.ld.requests if r.route == CREATE]
    assert [r.status for r in recs] == [0, 200]


def test_drop_after_processing(w: World) -> None:
    w.ld.drop("POST", CREATE, after_processing=True)
    with pytest.raises(requests.ConnectionError):
        w.create("took effect", nonce="r1", enforce_nonce=True)
    assert [m["content"] for m in w.ld.messages(w.cid)] == ["took effect"]
    retry = w.create("took effect", nonce="r1", enforce_nonce=True)
    assert retry.status_code == 200 and retry.json()["id"] == w.ld.messages(w.cid)[0]["id"]
    assert len(w.ld.messages(w.cid)) == 1


def test_latency(w: World) -> None:
    w.ld.latency = 0.2
    t0 = time.monotonic()
    assert w.get("/users/@me").status_code == 200
    assert time.monotonic() - t0 >= 0.2
    w.ld.latency = 0.0
    t0 = time.monotonic()
    w.get("/users/@me")
    assert time.monotonic() - t0 < 0.2


def test_outage(w: World) -> None:
    w.ld.set_outage(True)
    for r in (w.create("x"), w.get("/users/@me"), requests.get(w.url("/users/@me")), w.get("/no/such/route")):
        assert r.status_code == 503
        assert r.json() == {"message": "Service Unavailable", "code": 0}
    assert w.ld.messages(w.cid) == []
    w.ld.set_outage(False)
    assert w.create("x").status_code == 200
    w.ld.outage_for(0.2)
    assert w.get("/users/@me").status_code == 503
    time.sleep(0.25)
    assert w.get("/users/@me").status_code == 200


# ------------------------------------------------------------------ inspection


def test_request_log(w: World) -> None:
    w.ld.reset_log()
    t0 = time.time()
    m = w.create("x").json()
    w.put(f"/channels/{w.cid}/messages/{m['id']}/reactions/{CHECK}/@me")
    w.get(f"/channels/{w.cid}/messages", params={"limit": 5})
    requests.get(w.url("/users/@me"))
    recs = w.ld.requests
    assert all(isinstance(r, RequestRecord) for r in recs)
    assert [(r.method, r.route, r.status) for r in recs] == [
        ("POST", CREATE, 200), ("PUT", REACT_PUT, 204),
        ("GET", "GET /channels/{channel_id}/messages", 200), ("GET", "GET /users/@me", 401)]
    assert recs[0].user_id == w.bot.id and recs[0].channel_id == w.cid and recs[-1].user_id is None
    assert recs[2].path == f"/api/v10/channels/{w.cid}/messages?limit=5"
    assert t0 - 1 <= recs[0].time <= time.time()
    assert recs[0].bucket is None  # RateLimits.off(): no buckets
    assert w.ld.request_count() == 4
    assert w.ld.request_count(method="GET") == 2
    assert w.ld.request_count(route=CREATE) == 1
    assert w.ld.request_count("POST", "/channels/{channel_id}/messages") == 1
    assert w.ld.request_count(route="PUT /channels/{c}/messages/{m}/reactions/{emoji_name}/@me") == 1
    w.ld.reset_log()
    assert w.ld.requests == [] and w.ld.request_count() == 0


def test_buckets_recorded_when_limited(make_world: Callable[..., World]) -> None:
    w = make_world(RateLimits.discord_defaults())
    r = w.create("x")
    assert w.ld.requests[-1].bucket == r.headers["X-RateLimit-Bucket"]


def test_inspection_snapshots(w: World) -> None:
    m = w.ld.post_message(w.cid, w.alice.id, "text", attachments=[("TASK.txt", b"...")])
    w.ld.react(w.cid, m["id"], w.alice.id, "✅")
    snap = w.ld.messages(w.cid)
    assert len(snap) == 1 and snap[0]["id"] == m["id"] and snap[0]["content"] == "text"
    snap[0]["content"] = "mutated"
    assert w.ld.get_message(w.cid, m["id"])["content"] == "text"
    assert w.ld.get_message(w.cid, m["id"])["reactions"][0]["me"] is False
    assert w.ld.attachment_bytes(w.cid, m["id"], index=0) == b"..."
    r = w.ld.reactions(w.cid, m["id"])
    r["✅"].append("x")
    assert w.ld.reactions(w.cid, m["id"]) == {"✅": [w.alice.id]}
    with pytest.raises(KeyError):
        w.ld.post_message("1", w.alice.id, "x")
    with pytest.raises(KeyError):
        w.ld.get_message(w.cid, "1")
    with pytest.raises(KeyError):
        w.ld.post_message(w.cid, w.alice.id, "x", reply_to="1")


def test_edit_and_delete_as_a_person(w: World) -> None:
    m = w.ld.post_message(w.cid, w.alice.id, "v1")
    w.ld.edit_message(w.cid, m["id"], "v2")
    got = w.get(f"/channels/{w.cid}/messages/{m['id']}").json()
    assert got["content"] == "v2" and got["edited_timestamp"] is not None
    w.ld.delete_message(w.cid, m["id"])
    assert w.get(f"/channels/{w.cid}/messages/{m['id']}").status_code == 404


def test_concurrent_creates_are_consistent(make_world: Callable[..., World]) -> None:
    import concurrent.futures

    w = make_world()

    def send(i: int) -> str:
        with requests.Session() as s:
            s.headers["Authorization"] = f"Bot {w.bot.token}"
            return s.post(w.url(f"/channels/{w.cid}/messages"), json={"content": str(i)}).json()["id"]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(send, range(40)))
    assert len(set(ids)) == 40
    listed = [m["id"] for m in w.ld.messages(w.cid)]
    assert listed == sorted(listed, key=int) and sorted(listed) == sorted(ids)


def test_attachment_links_are_signed_and_expire_like_the_cdn(w: World) -> None:
    """A link lasts attachment_link_ttl seconds; a fresh GET of the message signs a new one."""
    w.ld.attachment_link_ttl = 1.0
    m = w.ld.post_message(w.cid, w.alice.id, "t", attachments=[("TASK.txt", b"do it")])
    url = m["attachments"][0]["url"]
    assert requests.get(url).content == b"do it"
    assert requests.get(url.split("?")[0]).status_code == 404                    # unsigned
    assert requests.get(url.replace("hm=", "hm=0")).status_code == 404          # signed by someone else
    time.sleep(2.1)
    gone = requests.get(url)
    assert gone.status_code == 404 and gone.text == "This content is no longer available."
    fresh = w.get(f"/channels/{w.cid}/messages/{m['id']}").json()["attachments"][0]["url"]
    assert fresh != url and requests.get(fresh).content == b"do it"
