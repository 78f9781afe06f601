"""Typed values for the parts of Discord's v10 objects that discord-orch reads.

The HTTP layer (``discord_api.py``) turns JSON into these at the edge, so the
rest of the code never indexes raw dicts. Unknown fields are ignored; missing
optional fields get safe defaults.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, NamedTuple, Optional, Tuple

# Facts of Discord's v10 API that more than one module relies on (one home each).
API_BASE_URL = "https://discord.com/api/v10"
DISCORD_EPOCH_MS = 1420070400000       # 2015-01-01T00:00:00Z: the zero of a snowflake's timestamp
# The seed's name for a task too long for one message: the attachment it travels in, and the file the
# agent reads it from in its workspace (workspace.py), so one name for both.
TASK_FILE = "TASK.txt"
INPUTS_DIR = "inputs"     # <task dir>/inputs/: the files that came with a task (inputs.py)
MESSAGE_LIMIT = 2000                   # characters of a message's content; Discord counts code points: len(str)
SNOWFLAKE_MAX = 2 ** 64 - 1
_SNOWFLAKE_RE = re.compile(r"[1-9][0-9]{16,19}")

# Message types that can carry a task: DEFAULT and REPLY. Everything else
# (joins, pins, thread starters...) is a system message.
TASK_MESSAGE_TYPES = (0, 19)
THREAD_STARTER_MESSAGE = 21            # the first message of a thread started from a message
THREAD_TYPES = (10, 11, 12)            # announcement, public and private thread channels
THREAD_NAME_MAX = 100                  # characters of a thread's name (at least 1)
AUTO_ARCHIVE_MINUTES = (60, 1440, 4320, 10080)   # the auto_archive_duration values Discord accepts
TEXT_CHANNEL = 0                       # a channel's type: a server's text channel
# An application's flags saying its Message Content intent is on: GATEWAY_MESSAGE_CONTENT (1 << 18, a verified
# bot) or GATEWAY_MESSAGE_CONTENT_LIMITED (1 << 19, the toggle under Bot in the Developer Portal); Discord's docs,
# resources/application "Application Flags". Without it other people's messages read as empty, over REST too.
MESSAGE_CONTENT_FLAGS = (1 << 18) | (1 << 19)


def is_snowflake(s: object) -> bool:
    """A Discord id as text: ASCII digits, no leading zero, 17-20 long, < 2**64.

    Discord's spec says ``^(0|[1-9][0-9]*)$`` for a 64-bit unsigned integer;
    real ids (timestamp since 2015 in the top 42 bits) have 17 to 20 digits.
    Ids are checked with this before they become part of a path.
    """
    return isinstance(s, str) and _SNOWFLAKE_RE.fullmatch(s) is not None and int(s) <= SNOWFLAKE_MAX


SNOWFLAKE_TIME_SHIFT = 22   # a Discord id's milliseconds since DISCORD_EPOCH_MS start at bit 22


def snowflake_at(epoch_s: float) -> int:
    """The smallest Discord id a message created at ``epoch_s`` can have."""
    return max(0, int(epoch_s * 1000) - DISCORD_EPOCH_MS) << SNOWFLAKE_TIME_SHIFT


def snowflake_time(snowflake: str) -> float:
    """When a Discord id (a message's, a thread's) was made, in epoch seconds."""
    return ((int(snowflake) >> SNOWFLAKE_TIME_SHIFT) + DISCORD_EPOCH_MS) / 1000.0


class User(NamedTuple):
    """A Discord user (the bot included)."""

    id: str
    username: str = ""
    bot: bool = False

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "User":
        """From Discord's user object."""
        return cls(id=str(data["id"]), username=str(data.get("username") or ""),
                   bot=bool(data.get("bot", False)))


class Reaction(NamedTuple):
    """One emoji's reactions on a message: how many, and whether the bot's is among them."""

    emoji: str          # unicode emoji, or "name:id" for a custom one
    count: int = 0
    me: bool = False

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Reaction":
        """From Discord's reaction object."""
        emoji = data.get("emoji") or {}
        name = emoji.get("name") or ""
        if emoji.get("id"):
            name = f"{name}:{emoji['id']}"
        return cls(emoji=name, count=int(data.get("count", 0)), me=bool(data.get("me", False)))


class Attachment(NamedTuple):
    """A file attached to a message (its CDN url is fetched without the token)."""

    id: str
    filename: str
    size: int
    url: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Attachment":
        """From Discord's attachment object."""
        return cls(id=str(data["id"]), filename=str(data.get("filename", "")),
                   size=int(data.get("size", 0)), url=str(data.get("url", "")))


def _bits(value: Any) -> int:
    """A permission bit set: Discord sends it as a decimal string (v8 and later)."""
    text = str(value)
    if not text.isdigit():
        raise ValueError(f"not a permission bit set: {text[:40]!r}")
    return int(text)


class Overwrite(NamedTuple):
    """One of a channel's permission overwrites: for a role (type 0; @everyone's id is the server's) or a member (1)."""

    id: str
    type: int
    allow: int = 0
    deny: int = 0

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Overwrite":
        """From Discord's overwrite object (``allow`` and ``deny`` are strings)."""
        return cls(id=str(data["id"]), type=int(data["type"]), allow=_bits(data.get("allow") or "0"),
                   deny=_bits(data.get("deny") or "0"))


class Role(NamedTuple):
    """A server role: its id and permission bits."""

    id: str
    permissions: int = 0

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Role":
        """From Discord's role object."""
        return cls(id=str(data["id"]), permissions=_bits(data.get("permissions") or "0"))


class Guild(NamedTuple):
    """A server as far as permissions go: its owner and its roles (@everyone's id is the server's); its name.
    A server in the bot's list (GET /users/@me/guilds) has neither owner nor roles."""

    id: str
    owner_id: Optional[str] = None
    roles: Tuple[Role, ...] = ()
    name: str = ""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Guild":
        """From Discord's guild object (GET /guilds/{id}) or a partial one (GET /users/@me/guilds)."""
        return cls(id=str(data["id"]), owner_id=_opt_id(data.get("owner_id")),
                   roles=tuple(Role.from_json(r) for r in data.get("roles") or ()), name=str(data.get("name") or ""))


class Application(NamedTuple):
    """The bot's application (GET /oauth2/applications/@me): its id (an invite link's client_id) and flags."""

    id: str
    name: str = ""
    flags: int = 0

    @property
    def message_content_intent(self) -> bool:
        """Whether the bot may read other people's messages (the Developer Portal's Message Content Intent)."""
        return bool(self.flags & MESSAGE_CONTENT_FLAGS)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Application":
        """From Discord's application object."""
        return cls(id=str(data["id"]), name=str(data.get("name") or ""), flags=int(data.get("flags") or 0))


class GatewayBot(NamedTuple):
    """Where the Gateway is (GET /gateway/bot) and how many sessions may still start today."""

    url: str
    remaining: int
    reset_after_s: float

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "GatewayBot":
        limit = data.get("session_start_limit") or {}
        return cls(url=str(data["url"]), remaining=int(limit.get("remaining", 0)),
                   reset_after_s=int(limit.get("reset_after", 0)) / 1000)


class Channel(NamedTuple):
    """A channel: its type, server and permission overwrites; for a thread also its parent, creator
    and archive state."""

    id: str
    name: str = ""
    guild_id: Optional[str] = None
    type: int = 0
    parent_id: Optional[str] = None
    owner_id: Optional[str] = None       # a thread's creator
    last_message_id: Optional[str] = None
    archived: bool = False
    locked: bool = False
    auto_archive_duration: Optional[int] = None
    message_count: int = 0
    overwrites: Tuple[Overwrite, ...] = ()    # a thread has none: its parent's apply

    @property
    def is_thread(self) -> bool:
        """Whether this channel is a thread."""
        return self.type in THREAD_TYPES

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Channel":
        """From Discord's channel (or thread) object; thread fields default when absent."""
        meta = data.get("thread_metadata") or {}
        duration = meta.get("auto_archive_duration")
        return cls(id=str(data["id"]), name=str(data.get("name") or ""),
                   guild_id=_opt_id(data.get("guild_id")), type=int(data.get("type", 0)),
                   parent_id=_opt_id(data.get("parent_id")), owner_id=_opt_id(data.get("owner_id")),
                   last_message_id=_opt_id(data.get("last_message_id")),
                   archived=bool(meta.get("archived", False)), locked=bool(meta.get("locked", False)),
                   auto_archive_duration=None if duration is None else int(duration),
                   message_count=int(data.get("message_count") or 0),
                   overwrites=tuple(Overwrite.from_json(o) for o in data.get("permission_overwrites") or ()))


class ActiveThreads(NamedTuple):
    """A server's active threads (GET /guilds/{id}/threads/active), newest first."""

    threads: Tuple[Channel, ...] = ()
    joined: Tuple[str, ...] = ()         # ids of the threads the bot is a member of
    has_more: bool = False

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ActiveThreads":
        """From Discord's answer: ``threads``, ``members``, ``has_more`` (absent = False)."""
        return cls(threads=tuple(Channel.from_json(t) for t in data.get("threads") or ()),
                   joined=tuple(str(m["id"]) for m in data.get("members") or () if m.get("id")),
                   has_more=bool(data.get("has_more", False)))


def _opt_id(value: Any) -> Optional[str]:
    return None if value is None else str(value)


class Message(NamedTuple):
    """A message as a poll returns it, with its reactions, attachments and thread."""

    id: str
    channel_id: str
    author: User
    content: str = ""
    type: int = 0
    reactions: Tuple[Reaction, ...] = ()
    attachments: Tuple[Attachment, ...] = ()
    referenced_message_id: Optional[str] = None
    nonce: Optional[str] = None
    thread: Optional[Channel] = None     # the thread started from this message, if any

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Message":
        """From Discord's message object; unknown fields are ignored."""
        ref = data.get("message_reference") or {}
        nonce = data.get("nonce")
        return cls(
            id=str(data["id"]),
            channel_id=str(data.get("channel_id", "")),
            author=User.from_json(data.get("author") or {"id": "0"}),
            content=str(data.get("content") or ""),
            type=int(data.get("type", 0)),
            reactions=tuple(Reaction.from_json(r) for r in data.get("reactions") or ()),
            attachments=tuple(Attachment.from_json(a) for a in data.get("attachments") or ()),
            referenced_message_id=str(ref["message_id"]) if ref.get("message_id") else None,
            nonce=None if nonce is None else str(nonce),
            thread=Channel.from_json(data["thread"]) if data.get("thread") else None,
        )

    def reaction(self, emoji: str) -> Optional[Reaction]:
        """The reactions with this emoji, or None."""
        for r in self.reactions:
            if r.emoji == emoji:
                return r
        return None


class Member(NamedTuple):
    """A member of a server: their role ids, and their username (to find someone by it)."""

    user_id: str
    roles: Tuple[str, ...] = ()
    username: str = ""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Member":
        """From Discord's guild member object."""
        user = data.get("user") or {}
        return cls(user_id=str(user.get("id", "")), roles=tuple(str(r) for r in data.get("roles") or ()),
                   username=str(user.get("username") or ""))


class FileUpload(NamedTuple):
    """A file to attach to a message: name and bytes."""

    filename: str
    data: bytes
    description: str = ""
