"""Threads started from a message: start, read, post in, archive, lock, list the active ones.

What the loopback Discord does here, and where each fact comes from. "Spec" is Discord's
OpenAPI spec (../shared/discord-openapi.json, vendored cut in tests/openapi/); "docs" is
Discord's developer documentation (github.com/discord/discord-api-docs, read at commit
c98d64b, 2026-08-06: developers/resources/channel.mdx "Start Thread from Message",
"Modify Channel" and "Thread Metadata Object"; developers/topics/threads.mdx;
developers/resources/message.mdx; developers/resources/guild.mdx "List Active Guild
Threads"; developers/topics/opcodes-and-status-codes.mdx; developers/topics/permissions.mdx).

Verified
    * ``POST /channels/{channel_id}/messages/{message_id}/threads`` exists (spec path,
      operationId create_thread_from_message); body ``CreateTextThreadWithMessageRequest``:
      ``name`` required, 1-100 chars; ``auto_archive_duration`` 60/1440/4320/10080
      (spec ``ThreadAutoArchiveDuration``); ``rate_limit_per_user`` 0-21600. Answer 201 with
      a ``ThreadResponse`` (spec).
    * The thread's id is the starter message's id, "and as such a message can only have a
      single thread created from it" (docs, Start Thread from Message; threads topic).
    * A second start: 400, code 160004 "A thread has already been created for this message"
      (docs, JSON error codes). One project reports a 500 instead after a reconnect
      (openabdev/openab#137): ``LocalDiscord.fail(..., after_processing=True)`` models that.
    * Too many active threads: code 160006 "Maximum number of active threads reached" (docs,
      error codes; HTTP 400 as reported in pR0Ps/slack-to-discord#16). Archived threads do
      not count, and a thread cannot be unarchived at the cap either (docs, channel.mdx
      "Once these are reached additional threads cannot be created or unarchived").
    * A message with a thread carries ``thread`` (spec ``MessageResponse.thread`` and
      ``BasicMessageResponse.thread``: a ``ThreadResponse``; docs) and the flag HAS_THREAD
      ``1 << 5`` (docs, message flags).
    * A thread is a channel of type 11 PUBLIC_THREAD in a GUILD_TEXT parent (spec
      ``ChannelTypes``; docs) with ``parent_id``, ``owner_id`` (who started it),
      ``thread_metadata`` {archived, archive_timestamp, auto_archive_duration, locked,
      create_timestamp}, ``message_count``, ``member_count``, ``total_message_sent`` (spec
      ``ThreadResponse`` required fields, ``ThreadMetadataResponse``; docs threads topic).
      ``GET /channels/{id}`` answers it (spec: oneOf ... ThreadResponse) with the caller's
      ``member`` when it has joined (docs, Get Channel).
    * The first message of a thread started from a message is a THREAD_STARTER_MESSAGE,
      type 21 (spec ``MessageType``; docs), with a ``message_reference`` to the starter in
      the parent; it is not deletable (docs: type 21 "deletable: false").
    * Messages and reactions in a thread use the thread's id as the channel id (a thread is
      a channel; docs). Sending a message unarchives an archived thread "unless the thread
      has been locked by a moderator" (docs, threads topic and channel.mdx). In an archived
      thread nobody can edit messages or add reactions (docs): 50083 "Thread is archived"
      (docs, error codes; the answer bot authors report, e.g. discord-api-docs#6928 for
      locking an archived thread, #6884 for posting in a locked archived one).
    * ``PATCH /channels/{id}`` with ``archived`` / ``locked`` (spec
      ``UpdateThreadRequestPartial``); it needs the thread unarchived or being unarchived
      (docs, Modify Channel); archiving needs MANAGE_THREADS or being the creator; a locked
      thread is unarchived only with MANAGE_THREADS (docs, threads topic).
    * ``GET /guilds/{guild_id}/threads/active``: ``threads`` (ordered by id, descending),
      ``members`` (a thread member for each thread the caller joined) (docs);
      ``has_more`` is required by the spec (``ThreadsResponse``) though the docs omit it.
      Each thread carries ``last_message_id`` (spec ``ThreadResponse``).
    * Permissions: CREATE_PUBLIC_THREADS (1 << 35), SEND_MESSAGES_IN_THREADS (1 << 38; Send
      Messages has no effect in threads), MANAGE_THREADS (1 << 34) (docs, permissions and
      threads topic), computed by ``grants`` from roles and the parent's overwrites. A
      missing permission is 403 code 50013 "Missing Permissions"; a channel the bot cannot
      see is 403 50001 "Missing Access" (docs, error codes).
    * Replies to a message that is gone fail (50035, ``message_reference``) unless
      ``fail_if_not_exists`` is false, then post as a normal message (docs, message
      reference structure; ``messages.py``).

Not verified (the emulator's choice, named so a test can change it)
    * 1,000 active threads per guild (``max_active_threads``): reported by bot authors
      (Copycord/Copycord#15, Slackord discussions), not in the developer docs.
    * The rate limit of thread starts: undocumented. Reports show 429s with scope
      ``shared`` and retry_after of 145-280 s after bursts (discord-api-docs#7816,
      NousResearch/hermes-agent#96101). ``RateLimits.thread_create`` is its own bucket
      per parent channel; its default is a guess, set it tighter to test the worst case.
    * The HTTP status of 160005 "Thread is locked" (posting in a locked, active thread) and
      of 50083 in a message create (400 here; one report says 403, discord-api-docs#7707).
    * Whether a start checks the body before the permission (here: body first).
    * The type-21 message's id and author (here: a fresh id, after the thread's; the
      thread's creator) and whether it counts in ``message_count`` (here: it does not).
    * The default ``auto_archive_duration`` when the body has none (here 1440).
    * A creator may lock its own thread (docs PR #7407; disputed in its comments); only
      MANAGE_THREADS unlocks.

Not emulated
    Private and announcement threads, forum posts, thread members routes, archived-thread
    listings, the THREAD_CREATED (type 18) notice Discord posts in the parent when the
    starter message is "old" (threshold undocumented), slowmode, the guild-wide bucket
    some thread routes share (discord-api-docs#8082).
"""

from __future__ import annotations

import json
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple

from . import grants
from .apierror import ApiError, field_error, invalid_form, merge, missing_permissions, unknown
from .bodies import parse_body
from .store import THREAD_STARTER_MESSAGE, Channel, Msg, Store, ThreadState, iso

PUBLIC_THREAD = 11
GUILD_TEXT = 0
HAS_THREAD = 1 << 5                    # message flag: "this message has an associated thread, with the same id"
AUTO_ARCHIVE_DURATIONS = (60, 1440, 4320, 10080)   # minutes
DEFAULT_AUTO_ARCHIVE = 1440
THREAD_NAME_MAX = 100
MAX_ACTIVE_THREADS = 1000
SLOWMODE_MAX_S = 21600

CREATE_PUBLIC_THREADS = "CREATE_PUBLIC_THREADS"
SEND_MESSAGES_IN_THREADS = "SEND_MESSAGES_IN_THREADS"
MANAGE_THREADS = "MANAGE_THREADS"

START_ROUTE = "/channels/{channel_id}/messages/{message_id}/threads"
_MESSAGES = "/channels/{channel_id}/messages"
_MESSAGE = "/channels/{channel_id}/messages/{message_id}"
_REACTION_ME = "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me"


def thread_exists() -> ApiError:
    return ApiError(400, 160004, "A thread has already been created for this message")


def too_many_threads() -> ApiError:
    return ApiError(400, 160006, "Maximum number of active threads reached")


def thread_locked() -> ApiError:
    return ApiError(400, 160005, "Thread is locked")


def thread_archived() -> ApiError:
    return ApiError(400, 50083, "Thread is archived")


def _now_ms() -> int:
    return int(time.time() * 1000)


class ThreadRoutes(Store):
    """Handlers and world knobs for threads; the lock is held in handlers."""

    def __init__(self, message_content_intent: bool) -> None:
        super().__init__(message_content_intent)
        self.max_active_threads = MAX_ACTIVE_THREADS

    # ----------------------------------------------------------------- world knobs (Python calls)

    def deny_permission(self, channel_id: str, user_id: str, permission: str) -> None:
        """Take ``permission`` (an API name: CREATE_PUBLIC_THREADS, SEND_MESSAGES_IN_THREADS, ADD_REACTIONS...)
        from ``user_id`` in a channel (and its threads) or, given a guild id, in each of its channels: a member
        overwrite that denies it, served in the channel's ``permission_overwrites`` (``grants``)."""
        self._overwrite_member(channel_id, user_id, deny=grants.bit(permission))

    def allow_permission(self, channel_id: str, user_id: str, permission: str) -> None:
        """Give ``permission`` to ``user_id`` in a channel or guild, the same way (@everyone has no MANAGE_THREADS)."""
        self._overwrite_member(channel_id, user_id, allow=grants.bit(permission))

    def has_permission(self, channel_id: str, user_id: str, permission: str) -> bool:
        """Whether ``user_id`` has ``permission`` in the channel (a thread: its parent's)."""
        with self._lock:
            return self._has(self._channel(channel_id), str(user_id), permission)

    def start_thread(self, channel_id: str, message_id: str, user_id: str, name: str) -> Dict[str, Any]:
        """Someone starts a thread on a message, as in Discord's own client (no HTTP); the rules of the
        route hold (one thread per message, the permission, the server's cap)."""
        with self._lock:
            return self._h_start_thread(str(user_id), {"channel_id": channel_id, "message_id": message_id}, {},
                                        {"Content-Type": "application/json"},
                                        json.dumps({"name": name}).encode())[1]

    def archive_thread(self, thread_id: str, locked: bool = False) -> None:
        """Archive (and lock) a thread as a moderator would, or as Discord does after inactivity."""
        with self._lock:
            th = self._thread_state(thread_id)
            now = _now_ms()
            if not th.archived:
                th.archived, th.archive_ms = True, now
            th.locked = th.locked or locked

    def idle_thread(self, thread_id: str, minutes: float) -> None:
        """Let ``minutes`` pass for a thread with nothing posted in it: past its auto_archive_duration, Discord
        has archived it by itself (seen at the next look, as ``_auto_archive`` models it)."""
        with self._lock:
            th = self._thread_state(thread_id)
            th.activity_ms -= int(minutes * 60_000)

    def thread(self, thread_id: str) -> Dict[str, Any]:
        """A thread's JSON, as the (first) bot sees it."""
        with self._lock:
            return self._thread_json(self._channel(thread_id), self._default_viewer())

    def _thread_state(self, thread_id: str) -> ThreadState:
        th = self._channel(thread_id).thread
        if th is None:
            raise KeyError(f"channel {thread_id} is not a thread")
        return th

    # ----------------------------------------------------------------- model (lock held)

    def _auto_archive(self, ch: Channel) -> None:
        """Archive a thread idle for its auto_archive_duration (checked when it is looked at)."""
        th = ch.thread
        if th is not None and not th.archived:
            due = th.activity_ms + th.auto_archive_duration * 60_000
            if _now_ms() >= due:
                th.archived, th.archive_ms = True, due

    def _active_threads(self, guild_id: str) -> List[Channel]:
        out = []
        for ch in self._channels.values():
            if ch.thread is not None and ch.guild_id == guild_id:
                self._auto_archive(ch)
                if not ch.thread.archived:
                    out.append(ch)
        return out

    def _check_room(self, guild_id: str) -> None:
        if len(self._active_threads(guild_id)) >= self.max_active_threads:
            raise too_many_threads()

    def _thread_activity(self, ch: Channel, author_id: str) -> None:
        th = ch.thread
        assert th is not None
        now = _now_ms()
        self._auto_archive(ch)
        if th.archived:   # a post unarchives (the gate refused it if the thread is locked)
            th.archived, th.archive_ms = False, now
        th.activity_ms = now
        th.total_sent += 1
        th.members.setdefault(author_id, now)

    def _thread_gate(self, method: str, template: str, params: Mapping[str, str], user_id: str) -> None:
        """What a thread refuses before a message or reaction route runs in it (HTTP only)."""
        ch = self._channels.get(params.get("channel_id", ""))
        if ch is None or ch.thread is None:
            return
        self._auto_archive(ch)
        th = ch.thread
        moderator = self._has(ch, user_id, MANAGE_THREADS)
        if (method, template) == ("POST", _MESSAGES):
            if not self._has(ch, user_id, SEND_MESSAGES_IN_THREADS):
                raise missing_permissions()
            if th.locked and not moderator:
                raise thread_archived() if th.archived else thread_locked()
            if th.archived:
                self._check_room(ch.guild_id)
        elif (method == "PATCH" and template == _MESSAGE) or template == _REACTION_ME:
            if th.archived:
                raise thread_archived()
            if method == "PATCH" and th.locked and not moderator:
                raise thread_locked()

    # ----------------------------------------------------------------- rendering (lock held)

    def _thread_json(self, ch: Channel, viewer: Optional[str]) -> Dict[str, Any]:
        th = ch.thread
        assert th is not None
        self._auto_archive(ch)
        out: Dict[str, Any] = {
            "id": ch.id, "type": ch.type, "last_message_id": ch.messages[-1].id if ch.messages else None,
            "flags": 0, "guild_id": ch.guild_id, "name": ch.name, "parent_id": th.parent_id,
            "rate_limit_per_user": 0, "owner_id": th.owner_id,
            "thread_metadata": {"archived": th.archived, "archive_timestamp": iso(th.archive_ms),
                                "auto_archive_duration": th.auto_archive_duration, "locked": th.locked,
                                "create_timestamp": iso(th.create_ms)},
            "message_count": sum(1 for m in ch.messages if m.type != THREAD_STARTER_MESSAGE),
            "member_count": len(th.members), "total_message_sent": th.total_sent,
        }
        if viewer is not None and viewer in th.members:
            out["member"] = self._member_json(ch, viewer)
        return out

    @staticmethod
    def _member_json(ch: Channel, user_id: str) -> Dict[str, Any]:
        assert ch.thread is not None
        return {"id": ch.id, "user_id": user_id, "join_timestamp": iso(ch.thread.members[user_id]), "flags": 0}

    # ----------------------------------------------------------------- handlers

    def _h_start_thread(self, user_id: str, params: Mapping[str, str], query: Mapping[str, List[str]],
                        headers: Any, body: bytes) -> Tuple[int, Any]:
        parent, msg = self._api_message(params)
        if parent.thread is not None or parent.type != GUILD_TEXT:
            raise ApiError(400, 50024, "Cannot execute action on this channel type")
        name, duration = self._start_body(parse_body(headers, body)[0])
        if not self._has(parent, user_id, CREATE_PUBLIC_THREADS):
            raise missing_permissions()
        if msg.id in self._channels:
            raise thread_exists()
        self._check_room(parent.guild_id)
        now = _now_ms()
        th = ThreadState(parent_id=parent.id, owner_id=user_id, auto_archive_duration=duration, create_ms=now,
                         archive_ms=now, activity_ms=now, members={user_id: now})
        ch = Channel(msg.id, parent.guild_id, name, type=PUBLIC_THREAD, thread=th)
        self._channels[ch.id] = ch
        starter = Msg(id=self._next_id(), channel_id=ch.id, author_id=user_id, type=THREAD_STARTER_MESSAGE,
                      reference_id=msg.id, reference_channel_id=parent.id)
        ch.messages.append(starter)
        ch.by_id[starter.id] = starter
        msg.flags |= HAS_THREAD
        self._gateway_event("THREAD_CREATE", ch, lambda bot, intent: dict(self._thread_json(ch, bot),
                                                                         newly_created=True))
        return 201, self._thread_json(ch, user_id)

    @staticmethod
    def _start_body(payload: Mapping[str, Any]) -> Tuple[str, int]:
        errors: Dict[str, Any] = {}
        name = payload.get("name")
        if name is None:
            merge(errors, field_error(["name"], "BASE_TYPE_REQUIRED", "This field is required"))
        else:
            _check_name(name, errors)
        duration = _check_duration(payload, errors)
        slowmode = payload.get("rate_limit_per_user")
        if slowmode is not None and (not isinstance(slowmode, int) or isinstance(slowmode, bool)
                                     or not 0 <= slowmode <= SLOWMODE_MAX_S):
            merge(errors, field_error(["rate_limit_per_user"], "NUMBER_TYPE_MAX",
                                      f"int value should be less than or equal to {SLOWMODE_MAX_S}."))
        if errors:
            raise invalid_form(errors)
        return str(name), DEFAULT_AUTO_ARCHIVE if duration is None else duration

    def _h_edit_channel(self, user_id: str, params: Mapping[str, str], query: Mapping[str, List[str]],
                        headers: Any, body: bytes) -> Tuple[int, Any]:
        ch = self._api_channel(params)
        if ch.thread is None:   # a guild channel needs Manage Channels, which the bot has not
            raise missing_permissions()
        payload = parse_body(headers, body)[0]
        errors: Dict[str, Any] = {}
        if payload.get("name") is not None:
            _check_name(payload["name"], errors)
        duration = _check_duration(payload, errors)
        for key in ("archived", "locked"):
            if payload.get(key) is not None and not isinstance(payload[key], bool):
                merge(errors, field_error([key], "BASE_TYPE_BOOLEAN", "Must be either true or false."))
        if errors:
            raise invalid_form(errors)
        self._auto_archive(ch)
        th = ch.thread
        archived, locked = payload.get("archived"), payload.get("locked")
        moderator = self._has(ch, user_id, MANAGE_THREADS)
        owner = user_id == th.owner_id
        if th.archived and archived is not False:
            raise thread_archived()
        if th.archived and th.locked and not moderator:
            raise missing_permissions()
        changes_more = archived is True or payload.get("name") is not None or duration is not None
        if (changes_more or locked is True) and not (moderator or owner):
            raise missing_permissions()
        if locked is False and th.locked and not moderator:
            raise missing_permissions()
        if th.archived:
            self._check_room(ch.guild_id)
        now = _now_ms()
        if payload.get("name") is not None:
            ch.name = payload["name"]
        if duration is not None:
            th.auto_archive_duration, th.archive_ms = duration, now
        if locked is not None:
            th.locked = locked
        if archived is not None and archived != th.archived:
            th.archived, th.archive_ms = archived, now
            if not archived:
                th.activity_ms = now
        return 200, self._thread_json(ch, user_id)

    def _h_list_active_threads(self, user_id: str, params: Mapping[str, str], query: Mapping[str, List[str]],
                               headers: Any, body: bytes) -> Tuple[int, Any]:
        if params["guild_id"] not in self._guilds:
            raise unknown("guild")
        threads = sorted(self._active_threads(params["guild_id"]), key=lambda c: int(c.id), reverse=True)
        return 200, {
            "threads": [self._thread_json(c, None) for c in threads],
            "members": [self._member_json(c, user_id) for c in threads if c.thread and user_id in c.thread.members],
            "has_more": False,
        }


def _check_name(name: Any, errors: Dict[str, Any]) -> None:
    if not isinstance(name, str):
        merge(errors, field_error(["name"], "BASE_TYPE_STRING", "This field must be a string."))
    elif not 1 <= len(name) <= THREAD_NAME_MAX:
        merge(errors, field_error(["name"], "BASE_TYPE_BAD_LENGTH",
                                  f"Must be between 1 and {THREAD_NAME_MAX} in length."))


def _check_duration(payload: Mapping[str, Any], errors: Dict[str, Any]) -> Optional[int]:
    value = payload.get("auto_archive_duration")
    if value is None:
        return None
    if isinstance(value, bool) or value not in AUTO_ARCHIVE_DURATIONS:
        choices = ", ".join(str(d) for d in AUTO_ARCHIVE_DURATIONS)
        merge(errors, field_error(["auto_archive_duration"], "BASE_TYPE_CHOICES", f"Value must be one of ({choices})."))
        return None
    return int(value)
