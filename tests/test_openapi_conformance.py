"""LocalDiscord against Discord's official OpenAPI spec.

The spec's parts these tests use are vendored in tests/openapi/ (MIT, its LICENSE beside it;
cut from ../shared/discord-openapi.json by tests/openapi/extract.py), so a fresh clone runs them.

* every (method, route) LocalDiscord serves is a path + method of the spec;
* the bodies it answers (users, members, channels, messages with reactions,
  attachments, embeds, replies; 4XX errors; 429s) validate against the operation's
  response schema (OAS 3.1, ``$ref`` resolved against the whole document), and every
  field we emit on the main objects is one the spec declares (no invented fields);
* the message-create / edit request bodies the tests send validate against the
  spec's request schemas (JSON and multipart), and so do the thread start and thread
  edit bodies;
* threads: the start's 201, a thread channel, a message's ``thread``, the type-21
  starter, the guild's active threads and the thread refusals (160004, 160005, 160006,
  50083, 50013) validate against the spec;
* the rate-limit headers have the spec's types.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
import requests

from discord_orch.sim.localdiscord import LocalDiscord, RateLimits

OPENAPI_DIR = Path(__file__).resolve().parent / "openapi"
SPEC_PATH = OPENAPI_DIR / "discord-openapi.subset.json"
FULL_SPEC_PATH = Path(__file__).resolve().parents[2] / "shared" / "discord-openapi.json"
SPEC_URI = "urn:discord-openapi"
CHECK = "%E2%9C%85"


@pytest.fixture(scope="module")
def spec() -> Dict[str, Any]:
    return json.loads(SPEC_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def registry(spec: Dict[str, Any]) -> Any:
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    return Registry().with_resource(SPEC_URI, Resource.from_contents(spec, default_specification=DRAFT202012))


# The spec's ErrorDetails / InnerErrors with a string field-error code (see check_response).
FIELD_ERRORS_SCHEMA: Dict[str, Any] = {
    "$defs": {
        "details": {"oneOf": [
            {"type": "object", "additionalProperties": {"$ref": "#/$defs/details"}, "not": {"required": ["_errors"]}},
            {"type": "object", "additionalProperties": False, "required": ["_errors"], "properties": {
                "_errors": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "additionalProperties": False, "required": ["code", "message"],
                    "properties": {"code": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]+$"},
                                   "message": {"type": "string", "minLength": 1}}}}}},
        ]},
    },
    "$ref": "#/$defs/details",
}


def jsonschema_validator(schema: Dict[str, Any]) -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema)


def _norm(template: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", template)


def _pointer(*parts: str) -> str:
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


class Spec:
    """Validation helpers bound to the loaded spec."""

    def __init__(self, spec: Dict[str, Any], registry: Any) -> None:
        self.doc = spec
        self.registry = registry
        self.paths = {_norm(p): p for p in spec["paths"]}

    def validate_pointer(self, instance: Any, pointer: str) -> None:
        from openapi_schema_validator import OAS31Validator

        ref = SPEC_URI + "#" + urllib.parse.quote(pointer, safe="/~")
        validator = OAS31Validator({"$ref": ref}, registry=self.registry,
                                   format_checker=OAS31Validator.FORMAT_CHECKER)
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
        assert not errors, f"{pointer}: " + "; ".join(
            f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:300]}" for e in errors[:5])

    def validate_schema(self, instance: Any, name: str) -> None:
        self.validate_pointer(instance, _pointer("components", "schemas", name))

    def spec_path(self, template: str) -> str:
        return self.paths[_norm(template)]

    def operation(self, method: str, template: str) -> Dict[str, Any]:
        return self.doc["paths"][self.spec_path(template)][method.lower()]

    def response_pointer(self, method: str, template: str, status: int) -> Optional[str]:
        """JSON pointer of the response body schema, or None when the spec defines no body."""
        path = self.spec_path(template)
        responses = self.operation(method, template)["responses"]
        key = str(status) if str(status) in responses else f"{str(status)[0]}XX"
        assert key in responses, f"{method} {template}: the spec has no {status} / {key} response"
        resp = responses[key]
        pointer = _pointer("paths", path, method.lower(), "responses", key)
        if "$ref" in resp:
            pointer = resp["$ref"][1:]
            resp = self.resolve(pointer)
        if "content" not in resp:
            return None
        return pointer + _pointer("content", "application/json", "schema")

    def resolve(self, pointer: str) -> Any:
        node: Any = self.doc
        for part in pointer.strip("/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def check_response(self, method: str, template: str, resp: requests.Response) -> Any:
        pointer = self.response_pointer(method, template, resp.status_code)
        if pointer is None:
            assert resp.content == b"", f"{method} {template} {resp.status_code}: body where the spec has none"
            return None
        body = resp.json()
        if isinstance(body, dict) and "errors" in body:
            # Known spec defect: InnerErrors reuses Error, whose ``code`` is an integer, but
            # Discord's field errors carry string codes ("BASE_TYPE_MAX_LENGTH"), as its
            # docs show. Check the envelope against the spec and the field errors against
            # the spec's ErrorDetails shape with string codes (FIELD_ERRORS_SCHEMA).
            envelope = {k: v for k, v in body.items() if k != "errors"}
            self.validate_pointer(envelope, pointer)
            errors = jsonschema_validator(FIELD_ERRORS_SCHEMA)
            problems = [e.message for e in errors.iter_errors(body["errors"])]
            assert not problems, problems[:3]
        else:
            self.validate_pointer(body, pointer)
        self.check_headers(resp)
        return body

    def check_headers(self, resp: requests.Response) -> None:
        types = {"X-RateLimit-Limit": int, "X-RateLimit-Remaining": int, "X-RateLimit-Reset": float,
                 "X-RateLimit-Reset-After": float}
        for name, kind in types.items():
            if name in resp.headers:
                kind(resp.headers[name])
                assert self.doc["components"]["headers"][name]["schema"]["type"] == (
                    "integer" if kind is int else "number")

    def declared(self, name: str) -> set:
        schema = self.doc["components"]["schemas"][name]
        props = set(schema.get("properties", {}))
        for part in schema.get("allOf", []):
            target = self.resolve(part["$ref"][1:]) if "$ref" in part else part
            props |= set(target.get("properties", {}))
        return props

    def no_undeclared(self, obj: Dict[str, Any], name: str) -> None:
        extra = set(obj) - self.declared(name)
        assert not extra, f"fields not in the spec's {name}: {sorted(extra)}"

    def no_undeclared_message(self, msg: Dict[str, Any], name: str = "MessageResponse") -> None:
        self.no_undeclared(msg, name)
        self.no_undeclared(msg["author"], "UserResponse")
        for u in msg["mentions"]:
            self.no_undeclared(u, "UserResponse")
        for a in msg["attachments"]:
            self.no_undeclared(a, "MessageAttachmentResponse")
        for r in msg.get("reactions", []):
            self.no_undeclared(r, "MessageReactionResponse")
            self.no_undeclared(r["emoji"], "MessageReactionEmojiResponse")
            self.no_undeclared(r["count_details"], "MessageReactionCountDetailsResponse")
        for e in msg["embeds"]:
            self.no_undeclared(e, "MessageEmbedResponse")
            for f in e.get("fields", []):
                self.no_undeclared(f, "MessageEmbedFieldResponse")
        if "message_reference" in msg:
            self.no_undeclared(msg["message_reference"], "MessageReferenceResponse")
        if msg.get("referenced_message"):
            self.no_undeclared_message(msg["referenced_message"], "BasicMessageResponse")
        if "thread" in msg:
            self.no_undeclared_thread(msg["thread"])

    def no_undeclared_thread(self, thread: Dict[str, Any]) -> None:
        self.no_undeclared(thread, "ThreadResponse")
        self.no_undeclared(thread["thread_metadata"], "ThreadMetadataResponse")
        if "member" in thread:
            self.no_undeclared(thread["member"], "ThreadMemberResponse")


@pytest.fixture(scope="module")
def oas(spec: Dict[str, Any], registry: Any) -> Spec:
    return Spec(spec, registry)


class World:
    def __init__(self, rate_limits: RateLimits) -> None:
        self.ld = LocalDiscord(rate_limits=rate_limits).start()
        ld = self.ld
        self.gid = ld.create_guild("home")
        self.bot = ld.create_user("orch-bot", bot=True)
        self.alice = ld.create_user("alice")
        self.rid = ld.create_role(self.gid, "operators")
        ld.add_member(self.gid, self.alice.id, roles=[self.rid])
        ld.add_member(self.gid, self.bot.id)
        self.cid = ld.create_channel(self.gid, "task-queue")
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bot {self.bot.token}"

    def call(self, method: str, path: str, **kw: Any) -> requests.Response:
        return self.http.request(method, self.ld.base_url + path, **kw)

    def close(self) -> None:
        self.http.close()
        self.ld.stop()


@pytest.fixture
def world() -> Iterator[World]:
    w = World(RateLimits.off())
    yield w
    w.close()


# Request bodies the tests send to create messages (each validated against the spec).
def create_payloads(task_id: str, alice_id: str) -> List[Dict[str, Any]]:
    return [
        {"content": "plain"},
        {"content": f"✅ **SUCCESS** `{task_id}` <@{alice_id}> @everyone",
         "allowed_mentions": {"parse": ["users"], "replied_user": False},
         "message_reference": {"message_id": task_id, "fail_if_not_exists": False},
         "nonce": "result-" + task_id[-10:], "enforce_nonce": True},
        {"content": "", "embeds": [{"title": "Result", "description": "done", "color": 0x2ECC71,
                                     "fields": [{"name": "model", "value": "primary", "inline": True}],
                                     "footer": {"text": "discord-orch"}, "author": {"name": "orch"},
                                     "timestamp": "2025-01-01T00:00:00+00:00"}]},
        {"content": "with nonce int", "nonce": 1234567890123, "enforce_nonce": True, "tts": False, "flags": 4096},
    ]


# ------------------------------------------------------------------ the route table


def test_every_served_route_is_in_the_spec(oas: Spec) -> None:
    assert LocalDiscord.ROUTES, "LocalDiscord exposes no route table"
    missing = []
    for route in LocalDiscord.ROUTES:
        method, template = route.split(" ", 1)
        spec_path = oas.paths.get(_norm(template))
        if spec_path is None or method.lower() not in oas.doc["paths"][spec_path]:
            missing.append(route)
    assert not missing, (f"served but not in the vendored spec: {missing} (if Discord's spec has them: "
                         f"python tests/openapi/extract.py ../shared/discord-openapi.json)")


def _extract_module() -> Any:
    import importlib.util

    loader = importlib.util.spec_from_file_location("openapi_extract", OPENAPI_DIR / "extract.py")
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return module


def test_vendored_spec_is_licensed_and_a_true_cut() -> None:
    assert "MIT License" in (OPENAPI_DIR / "LICENSE").read_text(encoding="utf-8")
    if not FULL_SPEC_PATH.is_file():
        pytest.skip("../shared/discord-openapi.json absent: the cut is checked where the full spec is")
    extract = _extract_module()
    full = json.loads(FULL_SPEC_PATH.read_text(encoding="utf-8"))
    fresh = extract.dumps(extract.subset(full, LocalDiscord.ROUTES))
    assert SPEC_PATH.read_text(encoding="utf-8") == fresh, (
        "tests/openapi/discord-openapi.subset.json is stale: python tests/openapi/extract.py")


def test_route_table_is_what_the_server_serves(world: World) -> None:
    # every listed route answers something other than 404-unknown-route / 405
    m = world.ld.post_message(world.cid, world.alice.id, "x")
    values = {"channel_id": world.cid, "message_id": m["id"], "emoji": CHECK, "guild_id": world.gid,
              "user_id": world.alice.id, "application_id": world.bot.id,
              "interaction_id": m["id"], "interaction_token": "unknown"}   # an unknown interaction: 404 10062
    for route in LocalDiscord.ROUTES:
        method, template = route.split(" ", 1)
        path = re.sub(r"\{([^}]*)\}", lambda mm: values[mm.group(1)], template)
        kw = {"json": {"content": "x"}} if method in ("POST", "PATCH") else {}
        r = world.call(method, path, **kw)
        assert r.status_code not in (404, 405) or r.json().get("code", 0) != 0, route


# ------------------------------------------------------------------ success bodies


def test_user_member_channel_bodies(oas: Spec, world: World) -> None:
    me = oas.check_response("GET", "/users/@me", world.call("GET", "/users/@me"))
    oas.no_undeclared(me, "UserPIIResponse")
    t = "/guilds/{guild_id}/members/{user_id}"
    member = oas.check_response("GET", t, world.call("GET", f"/guilds/{world.gid}/members/{world.alice.id}"))
    oas.no_undeclared(member, "GuildMemberResponse")
    oas.no_undeclared(member["user"], "UserResponse")
    world.ld.post_message(world.cid, world.alice.id, "x")
    ch = oas.check_response("GET", "/channels/{channel_id}", world.call("GET", f"/channels/{world.cid}"))
    oas.no_undeclared(ch, "GuildChannelResponse")
    oas.validate_schema(ch, "GuildChannelResponse")


def test_guild_roles_and_overwrites_bodies(oas: Spec, world: World) -> None:
    """What `discord-orch check` computes permissions from: the guild's roles and owner, a channel's overwrites."""
    guild = oas.check_response("GET", "/guilds/{guild_id}", world.call("GET", f"/guilds/{world.gid}"))
    oas.no_undeclared(guild, "GuildWithCountsResponse")
    assert {r["id"] for r in guild["roles"]} == {world.gid, world.rid}
    for role in guild["roles"]:
        oas.no_undeclared(role, "GuildRoleResponse")
    world.ld.set_overwrite(world.cid, world.rid, allow=1 << 34, deny=1 << 6)
    world.ld.deny_permission(world.cid, world.bot.id, "CREATE_PUBLIC_THREADS")
    ch = oas.check_response("GET", "/channels/{channel_id}", world.call("GET", f"/channels/{world.cid}"))
    oas.validate_schema(ch, "GuildChannelResponse")
    assert sorted((o["type"], o["allow"], o["deny"]) for o in ch["permission_overwrites"]) == [
        (0, str(1 << 34), str(1 << 6)), (1, "0", str(1 << 35))]
    for overwrite in ch["permission_overwrites"]:
        oas.no_undeclared(overwrite, "ChannelPermissionOverwriteResponse")


def test_message_bodies(oas: Spec, world: World) -> None:
    ld = world.ld
    task = ld.post_message(world.cid, world.alice.id, f"task for <@{world.bot.id}>",
                           attachments=[("TASK.txt", b"do things"), ("data.bin", b"\x00\x01")])
    ld.react(world.cid, task["id"], world.alice.id, "✅")
    ld.react(world.cid, task["id"], world.alice.id, "party:123456789012345678")
    assert world.call("PUT", f"/channels/{world.cid}/messages/{task['id']}/reactions/{CHECK}/@me").status_code == 204

    t_create = "/channels/{channel_id}/messages"
    created = []
    for payload in create_payloads(task["id"], world.alice.id):
        oas.validate_pointer(payload, _pointer("components", "schemas", "MessageCreateRequest"))
        body = oas.check_response("POST", t_create, world.call("POST", f"/channels/{world.cid}/messages",
                                                                json=payload))
        oas.no_undeclared_message(body)
        created.append(body)
    assert created[1]["type"] == 19 and created[1]["referenced_message"]["id"] == task["id"]
    assert created[1]["nonce"] == "result-" + task["id"][-10:]

    # multipart: payload_json + files[n]
    payload = {"content": "files", "attachments": [{"id": "0", "filename": "RESULT.txt", "description": "result"},
                                                   {"id": "1"}]}
    form = dict(payload, **{"files[0]": "résultat", "files[1]": "\x00\x01"})
    mp = _pointer("paths", oas.spec_path(t_create), "post", "requestBody", "content", "multipart/form-data",
                  "schema")
    oas.validate_pointer(form, mp)
    r = world.call("POST", f"/channels/{world.cid}/messages", data={"payload_json": json.dumps(payload)},
                   files={"files[0]": ("r.txt", "résultat".encode()), "files[1]": ("b.bin", b"\x00\x01")})
    body = oas.check_response("POST", t_create, r)
    oas.no_undeclared_message(body)
    assert [a["filename"] for a in body["attachments"]] == ["RESULT.txt", "b.bin"]

    listed = oas.check_response("GET", t_create, world.call("GET", f"/channels/{world.cid}/messages"))
    assert len(listed) == 6
    for m in listed:
        oas.no_undeclared_message(m)
    got_task = listed[-1]
    assert got_task["id"] == task["id"] and len(got_task["reactions"]) == 2 and len(got_task["attachments"]) == 2

    t_one = "/channels/{channel_id}/messages/{message_id}"
    one = oas.check_response("GET", t_one, world.call("GET", f"/channels/{world.cid}/messages/{created[1]['id']}"))
    oas.no_undeclared_message(one)
    edit = {"content": "edited", "allowed_mentions": {"parse": []}}
    oas.validate_pointer(edit, _pointer("components", "schemas", "MessageEditRequestPartial"))
    edited = oas.check_response("PATCH", t_one, world.call("PATCH", f"/channels/{world.cid}/messages/{one['id']}",
                                                            json=edit))
    assert edited["edited_timestamp"] is not None
    oas.check_response("DELETE", t_one, world.call("DELETE", f"/channels/{world.cid}/messages/{created[0]['id']}"))

    t_react = "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}"
    users = oas.check_response("GET", t_react, world.call("GET", f"/channels/{world.cid}/messages/{task['id']}"
                                                                 f"/reactions/{CHECK}"))
    assert [u["id"] for u in users] == sorted([world.alice.id, world.bot.id], key=int)
    for u in users:
        oas.no_undeclared(u, "UserResponse")
    for method in ("PUT", "DELETE"):
        oas.check_response(method, t_react + "/@me",
                           world.call(method, f"/channels/{world.cid}/messages/{task['id']}/reactions/{CHECK}/@me"))


# ------------------------------------------------------------------ error bodies


def test_spec_field_error_code_is_still_an_integer(oas: Spec) -> None:
    """The reason for FIELD_ERRORS_SCHEMA. If this fails, the spec was fixed: drop the workaround."""
    inner = oas.doc["components"]["schemas"]["InnerErrors"]["properties"]["_errors"]["items"]
    assert inner == {"$ref": "#/components/schemas/Error"}
    assert oas.doc["components"]["schemas"]["Error"]["properties"]["code"]["type"] == "integer"



def _errors(world: World) -> List[Tuple[str, str, requests.Response, int]]:
    ld, cid = world.ld, world.cid
    m = ld.post_message(cid, world.alice.id, "task")
    other = ld.create_channel(world.gid, "read-only")
    ld.deny(other, world.bot.id, code=50013)
    hidden = ld.create_channel(world.gid, "secret")
    ld.deny(hidden, world.bot.id, code=50001)
    c = "/channels/{channel_id}/messages"
    one = "/channels/{channel_id}/messages/{message_id}"
    react = "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me"
    return [
        ("GET", "/users/@me", requests.get(ld.base_url + "/users/@me"), 0),
        ("GET", "/channels/{channel_id}", world.call("GET", "/channels/1"), 10003),
        ("GET", "/channels/{channel_id}", world.call("GET", f"/channels/{hidden}"), 50001),
        ("POST", "/channels/{channel_id}/messages", world.call("POST", f"/channels/{other}/messages",
                                                                json={"content": "x"}), 50013),
        ("GET", "/guilds/{guild_id}", world.call("GET", "/guilds/1577172729885360130"), 10004),
        ("GET", "/guilds/{guild_id}/members/{user_id}", world.call("GET", f"/guilds/{world.gid}/members/1"), 10007),
        ("GET", c, world.call("GET", f"/channels/{cid}/messages", params={"limit": 500}), 50035),
        ("POST", c, world.call("POST", f"/channels/{cid}/messages", json={"content": "x" * 2001}), 50035),
        ("POST", c, world.call("POST", f"/channels/{cid}/messages",
                               json={"embeds": [{"title": "t" * 300, "fields": [{"name": "", "value": "v"}]}]}),
         50035),
        ("POST", c, world.call("POST", f"/channels/{cid}/messages", json={"content": ""}), 50006),
        ("POST", c, world.call("POST", f"/channels/{cid}/messages",
                               files={"files[0]": ("big", b"x" * (10 * 1024 * 1024 + 1))}), 40005),
        ("GET", one, world.call("GET", f"/channels/{cid}/messages/1"), 10008),
        ("PATCH", one, world.call("PATCH", f"/channels/{cid}/messages/{m['id']}", json={"content": "y"}), 50005),
        ("PUT", react, world.call("PUT", f"/channels/{cid}/messages/{m['id']}/reactions/xyz/@me"), 10014),
        ("PUT", "/users/@me", world.call("PUT", "/users/@me"), 0),  # 405, a 4XX of a real path
    ]


def test_error_bodies(oas: Spec, world: World) -> None:
    seen_field_errors = set()
    for method, template, resp, code in _errors(world):
        assert 400 <= resp.status_code < 500
        spec_method = "GET" if resp.status_code == 405 else method
        body = oas.check_response(spec_method, template, resp)
        assert body["code"] == code, (method, template, body)
        oas.validate_schema({k: v for k, v in body.items() if k != "errors"}, "ErrorResponse")
        oas.no_undeclared(body, "ErrorResponse")
        seen_field_errors.add(bool(body.get("errors")))
    assert seen_field_errors == {True, False}


def test_rate_limited_bodies(oas: Spec) -> None:
    w = World(RateLimits(message_create=(1, 5.0), global_per_second=3, default=(100, 1.0)))
    try:
        t = "/channels/{channel_id}/messages"
        assert w.call("POST", f"/channels/{w.cid}/messages", json={"content": "a"}).status_code == 200
        r = w.call("POST", f"/channels/{w.cid}/messages", json={"content": "b"})
        assert r.status_code == 429
        body = oas.check_response("POST", t, r)
        assert body["global"] is False
        oas.no_undeclared(body, "RatelimitedResponse")
        w.call("GET", "/users/@me")
        r = w.call("GET", "/users/@me")
        assert r.status_code == 429
        body = oas.check_response("GET", "/users/@me", r)
        assert body["global"] is True
    finally:
        w.close()


# ------------------------------------------------------------------ threads


def _request_pointer(oas: Spec, method: str, template: str) -> str:
    return _pointer("paths", oas.spec_path(template), method.lower(), "requestBody", "content", "application/json",
                    "schema")


def test_thread_bodies(oas: Spec, world: World) -> None:
    ld = world.ld
    task = ld.post_message(world.cid, world.alice.id, "a task")
    t_start = "/channels/{channel_id}/messages/{message_id}/threads"
    body = {"name": "a task · host-a", "auto_archive_duration": 1440}
    oas.validate_pointer(body, _request_pointer(oas, "POST", t_start))
    oas.validate_schema(body, "CreateTextThreadWithMessageRequest")
    r = world.call("POST", f"/channels/{world.cid}/messages/{task['id']}/threads", json=body)
    assert r.status_code == 201
    thread = oas.check_response("POST", t_start, r)
    oas.validate_schema(thread, "ThreadResponse")
    oas.no_undeclared_thread(thread)
    tid = thread["id"]

    t_channel = "/channels/{channel_id}"
    got = oas.check_response("GET", t_channel, world.call("GET", f"/channels/{tid}"))
    oas.validate_schema(got, "ThreadResponse")
    oas.no_undeclared_thread(got)

    t_msgs = "/channels/{channel_id}/messages"
    parent = oas.check_response("GET", t_msgs, world.call("GET", f"/channels/{world.cid}/messages"))
    assert parent[0]["thread"]["id"] == tid
    for m in parent:
        oas.no_undeclared_message(m)
    posted = oas.check_response("POST", t_msgs, world.call("POST", f"/channels/{tid}/messages",
                                                            json={"content": "claimed by host-a"}))
    oas.no_undeclared_message(posted)
    inside = oas.check_response("GET", t_msgs, world.call("GET", f"/channels/{tid}/messages"))
    assert [m["type"] for m in inside] == [0, 21]
    for m in inside:
        oas.no_undeclared_message(m)

    t_active = "/guilds/{guild_id}/threads/active"
    active = oas.check_response("GET", t_active, world.call("GET", f"/guilds/{world.gid}/threads/active"))
    oas.no_undeclared(active, "ThreadsResponse")
    for t in active["threads"]:
        oas.no_undeclared_thread(t)
    for member in active["members"]:
        oas.no_undeclared(member, "ThreadMemberResponse")

    for edit in ({"locked": True}, {"archived": True}, {"archived": False, "locked": False}):
        oas.validate_pointer(edit, _request_pointer(oas, "PATCH", t_channel))
        oas.validate_schema(edit, "UpdateThreadRequestPartial")
    ld.allow_permission(world.cid, world.bot.id, "MANAGE_THREADS")
    for edit in ({"locked": True}, {"archived": True}, {"archived": False, "locked": False}):
        done = oas.check_response("PATCH", t_channel, world.call("PATCH", f"/channels/{tid}", json=edit))
        oas.validate_schema(done, "ThreadResponse")
        oas.no_undeclared_thread(done)


def test_thread_error_bodies(oas: Spec, world: World) -> None:
    ld = world.ld
    t_start = "/channels/{channel_id}/messages/{message_id}/threads"
    t_msgs = "/channels/{channel_id}/messages"
    t_channel = "/channels/{channel_id}"
    first, second = (ld.post_message(world.cid, world.alice.id, t)["id"] for t in ("one", "two"))
    tid = world.call("POST", f"/channels/{world.cid}/messages/{first}/threads", json={"name": "one"}).json()["id"]
    ld.max_active_threads = 1
    cases = [("POST", t_start, world.call("POST", f"/channels/{world.cid}/messages/{first}/threads",
                                          json={"name": "again"}), 160004),
             ("POST", t_start, world.call("POST", f"/channels/{world.cid}/messages/{second}/threads",
                                          json={"name": "two"}), 160006),
             ("POST", t_start, world.call("POST", f"/channels/{world.cid}/messages/{second}/threads",
                                          json={"name": ""}), 50035)]
    world.call("PATCH", f"/channels/{tid}", json={"locked": True})
    cases.append(("POST", t_msgs, world.call("POST", f"/channels/{tid}/messages", json={"content": "x"}), 160005))
    ld.archive_thread(tid)
    cases.append(("POST", t_msgs, world.call("POST", f"/channels/{tid}/messages", json={"content": "x"}), 50083))
    cases.append(("PATCH", t_channel, world.call("PATCH", f"/channels/{tid}", json={"archived": False}), 50013))
    ld.deny_permission(world.gid, world.bot.id, "CREATE_PUBLIC_THREADS")
    cases.append(("POST", t_start, world.call("POST", f"/channels/{world.cid}/messages/{second}/threads",
                                              json={"name": "two"}), 50013))
    for method, template, resp, code in cases:
        assert 400 <= resp.status_code < 500
        body = oas.check_response(method, template, resp)
        assert body["code"] == code, (method, template, body)
        oas.no_undeclared(body, "ErrorResponse")


# ------------------------------------------------------------------ what `discord-orch init` reads and does


def test_init_routes_bodies(oas: Spec, world: World) -> None:
    """The application, the bot's guilds, a guild's channels, a new channel and a member search, as the spec has them."""
    app = oas.check_response("GET", "/oauth2/applications/@me", world.call("GET", "/oauth2/applications/@me"))
    oas.no_undeclared(app, "PrivateApplicationResponse")
    assert app["id"] == world.bot.id and app["flags"] & (1 << 19)
    guilds = oas.check_response("GET", "/users/@me/guilds", world.call("GET", "/users/@me/guilds",
                                                                      params={"limit": "200"}))
    assert [g["id"] for g in guilds] == [world.gid] and guilds[0]["owner"] is False
    for guild in guilds:
        oas.no_undeclared(guild, "MyGuildResponse")
    t = "/guilds/{guild_id}/channels"
    channels = oas.check_response("GET", t, world.call("GET", f"/guilds/{world.gid}/channels"))
    assert [c["name"] for c in channels] == ["task-queue"]
    for channel in channels:
        oas.no_undeclared(channel, "GuildChannelResponse")

    body = {"name": "Results Here", "type": 0}
    oas.validate_schema(body, "CreateGuildChannelRequest")
    refused = world.call("POST", f"/guilds/{world.gid}/channels", json=body)
    assert refused.status_code == 403 and oas.check_response("POST", t, refused)["code"] == 50013
    world.ld.set_role_permissions(world.gid, world.gid, (1 << 4) | (1 << 10))   # @everyone may Manage Channels
    created = oas.check_response("POST", t, world.call("POST", f"/guilds/{world.gid}/channels", json=body))
    assert created["name"] == "results-here" and created["type"] == 0
    oas.no_undeclared(created, "GuildChannelResponse")
    bad = world.call("POST", f"/guilds/{world.gid}/channels", json={"name": ""})
    assert bad.status_code == 400 and oas.check_response("POST", t, bad)["code"] == 50035

    t = "/guilds/{guild_id}/members/search"
    found = oas.check_response("GET", t, world.call("GET", f"/guilds/{world.gid}/members/search",
                                                    params={"query": "ALI", "limit": "10"}))
    assert [m["user"]["id"] for m in found] == [world.alice.id]
    for member in found:
        oas.no_undeclared(member, "GuildMemberResponse")
    outsider = world.ld.create_guild("elsewhere")
    denied = world.call("GET", f"/guilds/{outsider}/channels")
    assert denied.status_code == 403 and oas.check_response("GET", "/guilds/{guild_id}/channels", denied)["code"] == 50001


def test_gateway_bot_and_guild_commands_bodies(oas: Spec, world: World) -> None:
    oas.check_response("GET", "/gateway/bot", world.call("GET", "/gateway/bot"))
    template = "/applications/{application_id}/guilds/{guild_id}/commands"
    path = f"/applications/{world.bot.id}/guilds/{world.gid}/commands"
    body = [{"name": "status", "type": 1, "description": "what runs"}]
    [made] = oas.check_response("PUT", template, world.call("PUT", path, json=body))
    oas.no_undeclared(made, "ApplicationCommandResponse")
    [listed] = oas.check_response("GET", template, world.call("GET", path))
    assert listed == made
    refused = world.call("POST", f"/interactions/{made['id']}/nope/callback", json={"type": 4, "data": {}})
    assert oas.check_response("POST", "/interactions/{interaction_id}/{interaction_token}/callback",
                              refused)["code"] == 10062


def test_a_message_with_a_button_validates(oas: Spec, world: World) -> None:
    row = {"type": 1, "components": [{"type": 2, "style": 4, "label": "Stop", "custom_id": "stop:1"}]}
    made = oas.check_response("POST", "/channels/{channel_id}/messages",
                              world.call("POST", f"/channels/{world.cid}/messages", json={"content": "s",
                                                                                        "components": [row]}))
    [kept] = made["components"]
    assert kept["components"][0]["custom_id"] == "stop:1" and kept["components"][0]["style"] == 4
    edited = oas.check_response("PATCH", "/channels/{channel_id}/messages/{message_id}",
                                world.call("PATCH", f"/channels/{world.cid}/messages/{made['id']}",
                                           json={"components": []}))
    assert edited["components"] == []
    bad = world.call("POST", f"/channels/{world.cid}/messages",
                     json={"content": "s", "components": [{"type": 1, "components": [{"type": 2, "style": 1}]}]})
    assert bad.status_code == 400 and bad.json()["code"] == 50035
