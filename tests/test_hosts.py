"""Several hosts on one queue, the rest of issue 13 and issue 17's host presence: the claim's marks
retried within a pass, the full result in the task's thread, hosts spread over the queue, each host's
presence line, and a silent host's tasks taken over.

End to end: real CLI passes, real HTTP to the loopback Discord, the stand-in agent. Hosts A and B
share one bot token (told apart by HOST_NAME); host C has a bot of its own.
"""

from __future__ import annotations

import json
import random
import time
from typing import List

import pytest

from discord_orch.discord_api import DiscordClient
from discord_orch.hosts import hosts_with, read_hosts
from discord_orch.intake import SPREAD_WINDOW, spread_pick
from discord_orch.models import Message

from discord_orch.sim.world import World
from tests.conftest import make_home

POSTS = "/channels/{channel_id}/messages"
LEASE = "🔑 Lease of **{}**: a host that finds it silent takes its open tasks over by starting this message's thread"
CLIENT_TRIES = 4   # the client's first attempt and its 3 retries of a transient failure


@pytest.fixture
def hosts(tmp_path, world):
    """Three homes on one queue: A and B share the bot token, C has its own bot."""
    other_bot = world.ld.create_user("discord-orch-c", bot=True)
    world.ld.add_member(world.guild, other_bot.id)
    homes = {name: make_home(tmp_path / name, world, HOST_NAME=f"host-{name}", ALLOWED_USER_IDS=world.alice.id)
             for name in "abc"}
    homes["c"].write_config(CHIP_TOKEN=other_bot.token)
    return homes


def orchestrate(home):
    res = home.cli("orchestrate")
    assert res.returncode == 0, res.stderr
    return res


def thread_lines(world: World, task_id: str) -> List[str]:
    """What people see in the task's thread, after the starter line."""
    return [m["content"] for m in world.ld.messages(task_id) if m["type"] != 21]


def results_for(world: World, task_id: str) -> List[dict]:
    return [m for m in world.results_messages() if task_id in m["content"]]


def test_claim_lines_that_fail_past_the_clients_retries_are_tried_again_in_the_same_pass(hosts, world):
    """Each claim line fails as often as the client tries (first try and retries): one never reaches
    Discord (503), the other does each time but its answers are lost. A pass that is not killed
    still leaves exactly one claim line in each thread (the ✅ goes through the same rounds)."""
    home = hosts["a"]
    home.write_config(MAX_AGENTS="2")
    unsaid, unheard = (world.post(world.alice, f"Claim line {n}")["id"] for n in ("unsaid", "unheard"))
    world.ld.fail("POST", POSTS, statuses=(503,), count=CLIENT_TRIES, where={"channel_id": unsaid})
    world.ld.drop("POST", POSTS, count=CLIENT_TRIES, after_processing=True, where={"channel_id": unheard})
    res = orchestrate(home)
    assert [claim_lines(world, t) for t in (unsaid, unheard)] == [1, 1]
    assert all(len(results_for(world, t)) == 1 for t in (unsaid, unheard)) and len(home.runs()) == 2
    assert "claim marks failed" not in res.stderr


def claim_lines(world: World, task_id: str) -> int:
    return sum(1 for line in thread_lines(world, task_id) if line.startswith("🧵 Claimed by **host-a**"))


def test_with_results_channel_empty_each_result_and_refusal_is_in_its_tasks_thread_only(hosts, world):
    home = hosts["a"]
    home.write_config(RESULTS_CHANNEL="")
    task = world.post(world.alice, "Thread only please")["id"]
    refused = world.post(world.mallory, "Let me in")["id"]
    res = orchestrate(home)
    assert world.results_messages() == []
    claimed, *_status, result = thread_lines(world, task)   # between them: the status message (progress.py)
    assert claimed.startswith("🧵 Claimed by **host-a**")
    assert result.startswith(f"✅ **DONE** · task `{task}`") and "Summary: Thread only please" in result
    [posted] = [m for m in world.ld.messages(task) if m["content"] == result]
    assert [a["filename"] for a in posted["attachments"]] == ["RESULT.txt"]
    # issue 24: a stranger's message gets no thread: its refusal is a reply to it in #task-queue
    [refusal] = [m["content"] for m in world.ld.messages(world.task_queue)
                 if (m.get("message_reference") or {}).get("message_id") == refused]
    assert refusal.startswith(f"⛔ **REFUSED** · task `{refused}`") and f"user {world.mallory.id}" in refusal
    assert world.ld.thread(task)["thread_metadata"]["auto_archive_duration"] == 60   # Discord archives it
    assert "reported task=" + task in res.stderr
    assert "pass done: nothing to do" in orchestrate(home).stderr


def test_results_channel_empty_needs_the_thread_claim(hosts, world):
    home = hosts["a"]
    home.write_config(RESULTS_CHANNEL="", CLAIM="reaction")
    res = home.cli("orchestrate")
    assert res.returncode == 3 and "RESULTS_CHANNEL: not set" in res.stderr and "CLAIM=thread" in res.stderr
    out = hosts["b"].cli("check", env={"RESULTS_CHANNEL": "", "HOST_SILENT_AFTER": "600"}).stdout
    assert "ok    RESULTS_CHANNEL: empty: each result goes to its task's thread" in out
    assert "ok    HOST_SILENT_AFTER: presence and takeover are possible: the bot has Create Public Threads, " \
           "Send Messages in Threads and Read Message History in #worker-pool" in out


def test_hosts_that_spread_mostly_pick_different_tasks_and_each_keeps_its_pick():
    """After a lost start a host takes, among the SPREAD_WINDOW oldest tasks, the first by a hash of its
    name and the task: three hosts on the same window rarely pick the same task, and none favours the
    oldest (the hosts that raced for it lost)."""
    rng = random.Random(17)
    hosts = ("host-a", "host-b", "host-c")
    clashes = oldest = 0
    windows = 300
    for _ in range(windows):
        ids = sorted(str(rng.randrange(10 ** 18, 10 ** 19)) for _ in range(SPREAD_WINDOW))
        window = [Message.from_json({"id": i, "channel_id": "1" * 18, "content": "",
                                     "author": {"id": "2" * 18, "username": "alice"}}) for i in ids]
        picks = [spread_pick(h, window) for h in hosts]
        assert picks == [spread_pick(h, window) for h in hosts]    # the same host, the same pick
        clashes += len(set(picks)) < len(hosts)
        oldest += picks.count(0)
    assert clashes / windows < 0.5          # any two of three on one task: 1 - 7/8 * 6/8 = 0.34 expected
    assert oldest / (windows * len(hosts)) < 0.25   # 1/8 expected


def presence_threads(world: World) -> dict:
    """Each presence thread in #worker-pool by name: the lines people see in it."""
    with DiscordClient(world.bot.token, base_url=world.ld.base_url) as client:
        active = client.list_active_threads(world.guild).threads
    return {t.name: [m["content"].split("\n")[0].split(" · lease")[0] for m in world.ld.messages(t.id)
                     if m["type"] != 21]
            for t in active if t.parent_id == world.worker_pool}


def test_each_host_shows_its_presence_in_worker_pool_and_one_request_lists_every_host(hosts, world):
    a, b = hosts["a"], hosts["b"]
    a.write_config(HOST_SILENT_AFTER="600", HOST_TAGS="GPU, big")
    b.write_config(HOST_SILENT_AFTER="600")
    before = time.time()
    for home in (a, b):
        orchestrate(home)
    assert presence_threads(world) == {"🖥 host-a [big,gpu]": ["💓 **host-a** is up"],
                                       "🖥 host-b": ["💓 **host-b** is up"]}
    roots = [m["content"].split("\n")[0] for m in world.ld.messages(world.worker_pool)]
    assert roots == ["🖥 **host-a** runs discord-orch tasks here (tags: big, gpu); its thread says when it was "
                     "last seen", LEASE.format("host-a"),
                     "🖥 **host-b** runs discord-orch tasks here; its thread says when it was last seen",
                     LEASE.format("host-b")]
    with DiscordClient(world.bot.token, base_url=world.ld.base_url) as client:
        world.ld.reset_log()
        seen = read_hosts(client, world.guild, world.worker_pool)
        assert len(world.ld.requests) == 1
    assert [(h.name, sorted(h.tags)) for h in sorted(seen)] == [("host-a", ["big", "gpu"]), ("host-b", [])]
    assert all(before - 1 <= h.last_seen <= time.time() + 1 for h in seen)
    now = time.time()
    assert [h.name for h in hosts_with(seen, ["gpu"], now=now, silent_after=600)] == ["host-a"]
    assert hosts_with(seen, ["arm"], now=now, silent_after=600) == []
    assert hosts_with(seen, [], now=now + 601, silent_after=600) == []   # nobody seen lately
    world.ld.reset_log()
    assert "nothing to do" in orchestrate(a).stderr
    assert len(world.ld.requests) == 1   # an idle pass: no line due yet
    # discord-orch status --live lists them (issue 17): name, tags, when last seen
    shown = b.cli("status", "--live")
    assert shown.returncode == 0, shown.stderr
    listed = shown.stdout.split("hosts in #worker-pool (--live): 2\n")[1].splitlines()[:2]
    assert listed[0].startswith("  host-a · tags big, gpu · last seen ") and listed[1].startswith("  host-b · tags none")
    assert not any("silent" in line for line in listed)
    as_json = json.loads(b.cli("status", "--live", "--json").stdout)["hosts"]
    assert [(h["name"], h["tags"], h["silent"]) for h in as_json] == [("host-a", ["big", "gpu"], False),
                                                                    ("host-b", [], False)]


def test_a_hosts_next_line_replaces_the_last_and_new_tags_rename_its_thread(hosts, world):
    """HOST_SILENT_AFTER=3: a line is due each second, and a host away for more than 1.5 s may have been
    found silent, so before anything else it renews its lease (a 🔑 thread on it) and posts a new one."""
    a = hosts["a"]
    a.write_config(HOST_SILENT_AFTER="3", HOST_TAGS="gpu")
    orchestrate(a)
    time.sleep(1.6)
    a.write_config(HOST_TAGS="gpu,arm")
    res = orchestrate(a)
    assert presence_threads(world) == {"🖥 host-a [arm,gpu]": ["💓 **host-a** is up"], "🔑 host-a renewed": []}
    assert [m["content"].split("\n")[0] for m in world.ld.messages(world.worker_pool)][1:] == [LEASE.format("host-a")] * 2
    assert "renewed its lease and keeps its tasks" in res.stderr
