"""The pass as a core with steps (issue 22): a capability plugs in without an edit to the core, and
the loop never waits for Discord, so a flood of refusals holds back neither an agent's end nor its
result, and the time a result shows is the agent's own.

Every test here, like every other, runs its passes in strict mode (conftest.py): a request on the
loop thread raises.
"""

from __future__ import annotations

import collections
import re
import sys
import threading
import types
from typing import List

import pytest

from conftest import make_home
from discord_orch.config import load_settings
from discord_orch.core.step import Entry, Step
from discord_orch.discord_api import DiscordClient
from discord_orch.sim.localdiscord import LocalDiscord, RateLimits
from discord_orch.sim.world import make_world
from discord_orch.state import Store

START_ROUTE = "POST /channels/{channel_id}/messages/{message_id}/threads"
RESULT_DURATION = re.compile(r"^(?:(\d+)m )?(\d+(?:\.\d)?)s$")


def results_for(world, task_id: str) -> List[dict]:
    return [m for m in world.ld.messages(world.results) if f"task `{task_id}`" in m["content"]]


def shown_duration(post: dict) -> float:
    """The run time a result's header shows, among its second line's facts ("0.2s", "12s", "1m 04s")."""
    facts = post["content"].split("\n")[1].split(" · ")
    found = [m for m in map(RESULT_DURATION.match, facts) if m]
    assert len(found) == 1, facts
    minutes, seconds = found[0].groups()
    return int(minutes or 0) * 60 + float(seconds)


# ---------------------------------------------------------------------------- a step plugs in


class Witness(Step):
    """A capability written in a test: it subscribes, submits a request on a lane of its own, and keeps
    the pass alive until the answer is back; the core knows nothing of it."""

    name = "witness"
    seen: dict = {}

    def bind(self, ctx) -> None:   # type: ignore[no-untyped-def]
        self.ctx = ctx
        self.seen.update(turns=0, finished=[], answer=None, answer_thread=None, closed=[], ended=0, timer=False)
        self._waiting = False
        ctx.on("finished", lambda rec, outcome: self._finished(rec, outcome))
        ctx.hub.call_later(0.0, lambda: self.seen.update(timer=True))

    def _finished(self, rec, outcome) -> None:   # type: ignore[no-untyped-def]
        self.seen["finished"].append((rec.task_id, outcome.status))
        self._waiting = True
        self.ctx.submit("witness", lambda: self.ctx.client.me().username, self._answered)

    def _answered(self, username: str) -> None:
        self.seen.update(answer=username, answer_thread=threading.get_ident())
        self._waiting = False

    def turn(self, now: float) -> None:
        self.seen["turns"] += 1

    def busy(self) -> bool:
        return self._waiting

    def close(self, stopped_by) -> None:   # type: ignore[no-untyped-def]
        self.seen["closed"].append(stopped_by)

    def ended(self) -> None:
        self.seen["ended"] += 1


def test_a_step_written_elsewhere_plugs_into_the_pass_with_no_edit_to_the_core(home, world, monkeypatch):
    import discord_orch.orchestrator as orchestrator
    from discord_orch.steps import REGISTRY

    monkeypatch.setattr(orchestrator, "REGISTRY", REGISTRY + [Entry("witness"), Entry("unused", lambda s: False)])
    module = types.ModuleType("discord_orch.steps.witness")
    module.STEP = Witness   # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "discord_orch.steps.witness", module)
    task = world.post(world.bot, "plug me in")["id"]
    for key, value in home.env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings(home.path, {})
    client = DiscordClient(settings.token.reveal(), base_url=settings.api_base_url)
    store = Store(settings.runtime_dir)
    try:
        orch = orchestrator.Orchestrator(settings, client, store)
        stats = orch.run_pass()
        orch.raise_if_fatal()
    finally:
        client.close()
        store.close()
    seen = Witness.seen
    assert stats.finished == 1 and seen["finished"] == [(task, "ok")]
    assert seen["answer"] == world.bot.username                     # its request ran on its lane...
    assert seen["answer_thread"] == orch.hub.loop_thread           # ...and its answer came to the loop thread
    assert seen["turns"] > 1 and seen["timer"] and seen["closed"] == [None] and seen["ended"] == 1
    assert "discord_orch.steps.unused" not in sys.modules          # a step not enabled is never imported
    assert len(results_for(world, task)) == 1


# ---------------------------------------------------------------------------- the loop never waits for Discord


@pytest.fixture
def limited_world():
    """Discord's own limits: 10 thread starts per 10 s in #task-queue, 5 posts per 5 s, a reaction each 0.25 s."""
    with LocalDiscord(rate_limits=RateLimits.discord_defaults()) as ld:
        yield make_world(ld)


def test_a_strangers_flood_holds_back_neither_an_allowed_task_nor_the_time_its_result_shows(tmp_path, limited_world):
    """30 messages from someone not allowed, then one task. Issue 24 (was: each refusal started a thread, 31
    starts): a stranger's message starts no thread; ⛔ on the first STRANGER_MARKS of them, one explanation,
    posted behind the task's result; the time the result shows is the agent's, not the wait for Discord."""
    from discord_orch.claim import STRANGER_MARKS

    world = limited_world
    home = make_home(tmp_path, world, ALLOWED_USER_IDS=world.alice.id)
    strangers = [world.post(world.mallory, f"let me in {i}")["id"] for i in range(30)]
    task = world.post(world.alice, "a quick one SLEEP=0.1")["id"]
    run = home.cli("orchestrate")
    assert run.returncode == 0, run.stderr
    [post] = results_for(world, task)
    assert shown_duration(post) < 2.0, post["content"]
    starts = [r for r in world.ld.requests if r.route == START_ROUTE]
    assert [r.path.split("/messages/")[1].split("/")[0] for r in starts] == [task]   # no thread for a stranger
    assert [r["task_id"] for r in home.runs()] == [task]
    refused = [m for m in world.ld.messages(world.task_queue) if m["id"] in strangers
               and any(x["emoji"]["name"] == "⛔" for x in m.get("reactions", []))]
    assert len(refused) == STRANGER_MARKS
    assert not [r for r in world.ld.requests if r.status == 429]
    [told] = [m for m in world.ld.messages(world.results) if m["id"] != post["id"]]   # one explanation
    assert f"user {world.mallory.id} is not allowed to run tasks here" in told["content"]


def test_a_thousand_messages_from_a_stranger_cost_a_few_dozen_requests_and_no_thread(tmp_path, limited_world):
    world = limited_world
    home = make_home(tmp_path, world, ALLOWED_USER_IDS=world.alice.id)
    for i in range(1000):
        world.post(world.mallory, f"spam {i}")
    world.ld.reset_log()
    run = home.cli("orchestrate")
    assert run.returncode == 0, run.stderr
    assert len(world.ld.requests) <= 36, collections.Counter(r.route for r in world.ld.requests)
    assert not [r for r in world.ld.requests if r.route == START_ROUTE]
    assert len(world.results_messages()) == 1
    world.ld.reset_log()
    assert "nothing to do" in home.cli("orchestrate").stderr   # all of them decided: a later pass reads one page
