"""DiscordClient's thread calls over real HTTP against LocalDiscord: typed threads, typed refusals."""

from __future__ import annotations

import pytest

from discord_orch.errors import (
    THREAD_ARCHIVED,
    THREAD_LOCKED,
    BadRequest,
    Forbidden,
    ThreadAlreadyExists,
    TooManyActiveThreads,
)
from discord_orch.models import Channel, Message
from test_discord_api import World, world  # noqa: F401 - fixture

START = "POST /channels/{channel_id}/messages/{message_id}/threads"


def test_start_thread_returns_the_typed_thread_and_the_poll_shows_it(world: World) -> None:
    task = world.ld.post_message(world.cid, world.alice.id, "build the thing")
    with world.client(sleep=lambda s: None) as c:
        t = c.start_thread(world.cid, task["id"], "build the thing · host-a", auto_archive_duration=1440)
        assert isinstance(t, Channel) and t.is_thread
        assert (t.id, t.parent_id, t.owner_id, t.name) == (task["id"], world.cid, world.bot.id,
                                                         "build the thing · host-a")
        assert (t.archived, t.locked, t.auto_archive_duration) == (False, False, 1440)
        polled = c.list_messages(world.cid)
        assert isinstance(polled[0], Message) and polled[0].thread is not None
        assert (polled[0].thread.id, polled[0].thread.owner_id) == (task["id"], world.bot.id)
        assert c.get_channel(task["id"]) == t
        first = c.list_messages(t.id)
        assert [m.type for m in first] == [21] and first[0].referenced_message_id == task["id"]


def test_second_start_raises_thread_already_exists_with_the_thread_id(world: World) -> None:
    task = world.ld.post_message(world.cid, world.alice.id, "t")
    with world.client(sleep=lambda s: None) as c:
        c.start_thread(world.cid, task["id"], "host-a")
        with pytest.raises(ThreadAlreadyExists) as got:
            c.start_thread(world.cid, task["id"], "host-b")
    err = got.value
    assert isinstance(err, BadRequest) and err.code == 160004 and err.thread_id == task["id"]
    assert err.after_retry is False
    assert f"message {task['id']} in channel {world.cid} already has a thread" in str(err)


def test_a_lost_answer_retried_says_it_may_be_ones_own(world: World) -> None:
    task = world.ld.post_message(world.cid, world.alice.id, "t")
    world.ld.lose_thread_start_answers(message_id=task["id"])
    with world.client(sleep=lambda s: None) as c:
        with pytest.raises(ThreadAlreadyExists) as got:
            c.start_thread(world.cid, task["id"], "t · host-a")
        assert got.value.after_retry is True and "may be this bot's own start" in str(got.value)
        mine = c.get_channel(task["id"])
    assert (mine.name, mine.owner_id) == ("t · host-a", world.bot.id)
    assert world.ld.request_count(route=START) == 2


def test_thread_cap_raises_too_many_active_threads(world: World) -> None:
    world.ld.max_active_threads = 1
    a, b = (world.ld.post_message(world.cid, world.alice.id, t)["id"] for t in "ab")
    with world.client(sleep=lambda s: None) as c:
        c.start_thread(world.cid, a, "a")
        with pytest.raises(TooManyActiveThreads) as got:
            c.start_thread(world.cid, b, "b")
        assert "archive finished threads" in str(got.value)
        archived = c.archive_thread(a)
        assert archived.archived is True and c.list_active_threads(world.gid).threads == ()
        assert c.start_thread(world.cid, b, "b").id == b


def test_list_active_threads_and_archive_lock(world: World) -> None:
    a, b = (world.ld.post_message(world.cid, world.alice.id, t)["id"] for t in "ab")
    with world.client(sleep=lambda s: None) as c:
        c.start_thread(world.cid, a, "a")
        c.start_thread(world.cid, b, "b")
        posted = c.create_message(b, "claimed by host-a")
        active = c.list_active_threads(world.gid)
        assert [t.id for t in active.threads] == [b, a] and set(active.joined) == {a, b}
        assert active.has_more is False
        assert {t.id: t.last_message_id for t in active.threads}[b] == posted.id
        locked = c.archive_thread(a, lock=True)
        assert (locked.archived, locked.locked) == (True, True)
        with pytest.raises(BadRequest) as got:
            c.create_message(a, "late")
        assert got.value.code == THREAD_ARCHIVED
        assert c.edit_thread(b, locked=True).locked is True
        with pytest.raises(BadRequest) as got:
            c.create_message(b, "late")
        assert got.value.code == THREAD_LOCKED
        with pytest.raises(ValueError):
            c.start_thread(world.cid, a, "x" * 101)


@pytest.mark.parametrize("permission, needed", [("CREATE_PUBLIC_THREADS", "Create Public Threads"),
                                                ("SEND_MESSAGES_IN_THREADS", "Send Messages in Threads")])
def test_missing_thread_permission_names_it(world: World, permission: str, needed: str) -> None:
    a, b = (world.ld.post_message(world.cid, world.alice.id, t)["id"] for t in "ab")
    with world.client(sleep=lambda s: None) as c:
        c.start_thread(world.cid, a, "a")
        world.ld.deny_permission(world.cid, world.bot.id, permission)
        with pytest.raises(Forbidden) as got:
            if permission == "CREATE_PUBLIC_THREADS":
                c.start_thread(world.cid, b, "b")
            else:
                c.create_message(a, "in the thread")
    assert got.value.code == 50013
    assert needed in got.value.explain("TASK_CHANNEL")
