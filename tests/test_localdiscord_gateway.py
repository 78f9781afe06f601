"""The loopback Discord's Gateway over a real websocket: what a bot sees when it identifies, resumes,
is told to reconnect, loses its session, sends bad intents or a bad token (codes as Discord's)."""

from __future__ import annotations

import collections
import json
import time
from typing import Any, Dict, Iterator, List

import pytest
import requests

pytest.importorskip("websockets")
from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from discord_orch.sim.localdiscord import LocalDiscord, RateLimits  # noqa: E402
from discord_orch.sim.world import World, make_world  # noqa: E402

INTENTS = (1 << 0) | (1 << 9) | (1 << 10) | (1 << 15)


@pytest.fixture
def w() -> Iterator[World]:
    with LocalDiscord(rate_limits=RateLimits.off()) as ld:
        yield make_world(ld)


def gateway_url(w: World) -> str:
    r = requests.get(f"{w.ld.base_url}/gateway/bot", headers={"Authorization": f"Bot {w.bot.token}"}, timeout=5)
    assert r.status_code == 200
    body = r.json()
    assert body["session_start_limit"]["total"] == 1000 and body["shards"] == 1
    return body["url"] + "/?v=10&encoding=json"


def recv(ws: Any) -> Dict[str, Any]:
    return json.loads(ws.recv(timeout=5))


def until(ws: Any, event: str) -> Dict[str, Any]:
    while True:
        frame = recv(ws)
        if frame.get("t") == event:
            return frame


def identify(ws: Any, token: str, intents: int = INTENTS) -> Dict[str, Any]:
    hello = recv(ws)
    assert hello["op"] == 10 and hello["d"]["heartbeat_interval"] > 0
    ws.send(json.dumps({"op": 2, "d": {"token": token, "intents": intents,
                                       "properties": {"os": "linux", "browser": "t", "device": "t"}}}))
    return recv(ws)


def test_identify_gives_ready_then_messages_reactions_and_threads_in_sequence(w: World) -> None:
    with connect(gateway_url(w)) as ws:
        ready = identify(ws, w.bot.token)
        assert (ready["op"], ready["t"], ready["s"]) == (0, "READY", 1)
        assert ready["d"]["user"]["id"] == w.bot.id and ready["d"]["session_id"]
        assert ready["d"]["resume_gateway_url"].startswith("ws://")
        msg = w.post(w.alice, "a task")
        created = recv(ws)
        assert (created["t"], created["s"], created["d"]["id"], created["d"]["content"]) == (
            "MESSAGE_CREATE", 2, msg["id"], "a task")
        assert created["d"]["guild_id"] == w.guild
        w.ld.react(w.task_queue, msg["id"], w.alice.id, "🛑")
        reaction = recv(ws)
        assert reaction["t"] == "MESSAGE_REACTION_ADD" and reaction["s"] == 3
        assert (reaction["d"]["user_id"], reaction["d"]["message_id"], reaction["d"]["emoji"]["name"]) == (
            w.alice.id, msg["id"], "🛑")
        w.ld.start_thread(w.task_queue, msg["id"], w.bot.id, "a task")
        thread = recv(ws)
        assert thread["t"] == "THREAD_CREATE" and thread["d"]["id"] == msg["id"] and thread["d"]["newly_created"]
        ws.send(json.dumps({"op": 1, "d": thread["s"]}))
        assert recv(ws) == {"op": 11}


def test_without_the_content_intent_others_messages_come_empty(w: World) -> None:
    with connect(gateway_url(w)) as ws:
        identify(ws, w.bot.token, intents=INTENTS & ~(1 << 15))
        w.post(w.alice, "secret task")
        assert recv(ws)["d"]["content"] == ""
        w.post(w.alice, f"<@{w.bot.id}> hello")
        assert recv(ws)["d"]["content"] == f"<@{w.bot.id}> hello"


@pytest.mark.parametrize("token,intents,code", [
    ("not-a-token", INTENTS, 4004),
    (None, 1 << 40, 4013),
    (None, 1 << 1, 4014),   # GUILD_MEMBERS: privileged, not enabled
])
def test_fatal_close_codes(w: World, token: Any, intents: int, code: int) -> None:
    with connect(gateway_url(w)) as ws:
        identify_frame = {"token": token or w.bot.token, "intents": intents, "properties": {}}
        recv(ws)
        ws.send(json.dumps({"op": 2, "d": identify_frame}))
        with pytest.raises(ConnectionClosed) as closed:
            recv(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == code


def test_content_intent_not_enabled_on_the_application_is_4014() -> None:
    with LocalDiscord(rate_limits=RateLimits.off(), message_content_intent=False) as ld:
        w = make_world(ld)
        with connect(gateway_url(w)) as ws:
            recv(ws)
            ws.send(json.dumps({"op": 2, "d": {"token": w.bot.token, "intents": INTENTS, "properties": {}}}))
            with pytest.raises(ConnectionClosed) as closed:
                recv(ws)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4014


def test_a_dropped_socket_resumes_with_what_was_missed_then_resumed(w: World) -> None:
    with connect(gateway_url(w)) as ws:
        ready = identify(ws, w.bot.token)
        w.post(w.alice, "one")
        seen = recv(ws)["s"]
        w.ld.gateway.drop()
        with pytest.raises(ConnectionClosed):
            recv(ws)
    missed = [w.post(w.alice, text)["id"] for text in ("two", "three")]
    with connect(ready["d"]["resume_gateway_url"] + "/?v=10&encoding=json") as ws2:
        recv(ws2)   # HELLO
        ws2.send(json.dumps({"op": 6, "d": {"token": w.bot.token, "session_id": ready["d"]["session_id"],
                                            "seq": seen}}))
        frames = [recv(ws2) for _ in range(3)]
        assert [f.get("t") for f in frames] == ["MESSAGE_CREATE", "MESSAGE_CREATE", "RESUMED"]
        assert [f["d"]["id"] for f in frames[:2]] == missed and [f["s"] for f in frames[:2]] == [seen + 1, seen + 2]
    assert w.ld.gateway.resumes == 1 and w.ld.gateway.identifies == [w.bot.id]


def test_op7_and_op9(w: World) -> None:
    with connect(gateway_url(w)) as ws:
        ready = identify(ws, w.bot.token)
        w.ld.gateway.reconnect()
        assert recv(ws) == {"op": 7, "d": None}
        w.ld.gateway.invalidate(resumable=False)
        assert recv(ws) == {"op": 9, "d": False}
    with connect(gateway_url(w)) as ws:
        recv(ws)
        ws.send(json.dumps({"op": 6, "d": {"token": w.bot.token, "session_id": ready["d"]["session_id"], "seq": 1}}))
        assert recv(ws) == {"op": 9, "d": False}   # that session is gone: identify anew


def test_a_client_that_stops_heartbeating_is_closed_and_may_resume(w: World) -> None:
    w.ld.gateway.heartbeat_interval_ms = 200
    with connect(gateway_url(w)) as ws:
        ready = identify(ws, w.bot.token)
        with pytest.raises(ConnectionClosed) as closed:
            recv(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000
    assert ready["d"]["session_id"] in w.ld.gateway.sessions


def test_past_a_thousand_identifies_the_token_is_reset(w: World) -> None:
    gateway = w.ld.gateway
    gateway._identified_at[w.bot.id] = collections.deque([time.time()] * 1000)   # a day of restarts
    with connect(gateway_url(w)) as ws:
        recv(ws)
        ws.send(json.dumps({"op": 2, "d": {"token": w.bot.token, "intents": INTENTS, "properties": {}}}))
        with pytest.raises(ConnectionClosed):
            recv(ws)
    r = requests.get(f"{w.ld.base_url}/users/@me", headers={"Authorization": f"Bot {w.bot.token}"}, timeout=5)
    assert r.status_code == 401


def register_status(w: World) -> requests.Response:
    return requests.put(f"{w.ld.base_url}/applications/{w.bot.id}/guilds/{w.guild}/commands",
                        json=[{"name": "status", "type": 1, "description": "what runs"}],
                        headers={"Authorization": f"Bot {w.bot.token}"}, timeout=5)


def callback(w: World, iid: str, token: str, body: Dict[str, Any]) -> requests.Response:
    return requests.post(f"{w.ld.base_url}/interactions/{iid}/{token}/callback", json=body, timeout=5)


def test_commands_are_registered_and_an_interaction_reaches_one_session_answered_once(w: World) -> None:
    r = register_status(w)
    assert r.status_code == 200 and [c["name"] for c in r.json()] == ["status"]
    bad = requests.put(f"{w.ld.base_url}/applications/{w.bot.id}/guilds/{w.guild}/commands",
                       json=[{"name": "Bad Name", "description": "x"}],
                       headers={"Authorization": f"Bot {w.bot.token}"}, timeout=5)
    assert bad.status_code == 400 and bad.json()["code"] == 50035
    with connect(gateway_url(w)) as one, connect(gateway_url(w)) as two:
        identify(one, w.bot.token)
        identify(two, w.bot.token)
        iid = w.ld.interact_command(w.bot.id, w.alice.id, w.task_queue, "status")
        assert iid is not None
        got = []
        for ws in (one, two):
            try:
                got.append(json.loads(ws.recv(timeout=0.5)))
            except TimeoutError:
                pass
        assert [f["t"] for f in got] == ["INTERACTION_CREATE"]   # one session, not both
        d = got[0]["d"]
        assert (d["type"], d["data"]["name"], d["member"]["user"]["id"]) == (2, "status", w.alice.id)
        first = callback(w, iid, d["token"], {"type": 4, "data": {"content": "hi", "flags": 64}})
        assert first.status_code == 204
        second = callback(w, iid, d["token"], {"type": 4, "data": {"content": "again"}})
        assert second.status_code == 400 and second.json()["code"] == 40060
        assert w.ld.interaction_answer(iid) == {"type": 4, "data": {"content": "hi", "flags": 64}}


def test_an_answer_after_the_three_seconds_is_10062(w: World) -> None:
    register_status(w)
    w.ld.interaction_deadline = 0.0
    with connect(gateway_url(w)) as ws:
        identify(ws, w.bot.token)
        iid = w.ld.interact_command(w.bot.id, w.alice.id, w.task_queue, "status")
        d = until(ws, "INTERACTION_CREATE")["d"]
        late = callback(w, iid, d["token"], {"type": 4, "data": {"content": "late"}})
        assert late.status_code == 404 and late.json()["code"] == 10062
