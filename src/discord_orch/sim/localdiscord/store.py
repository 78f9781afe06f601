"""What the loopback Discord holds: guilds, users, channels and messages, in memory behind one lock.

``Store`` builds the world (Python calls), lets people act in it (``post_message``,
``react``), answers inspection, and renders its objects in Discord's v10 JSON shapes.
The HTTP side (``LocalDiscord`` and the route handlers) builds on it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import mimetypes
import re
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from ...models import DISCORD_EPOCH_MS, MESSAGE_LIMIT
from . import grants
from .apierror import DENY_MESSAGES, MISSING_ACCESS, ApiError, missing_permissions, unknown
from .emoji import parse_emoji


LINK_TTL_S = 24 * 3600       # how long a signed attachment link lasts (Discord's CDN: about a day)
LINK_KEY_BYTES = 16
THREAD_STARTER_MESSAGE = 21  # a message type: the first message of a thread started from a message


@dataclass(frozen=True)
class LocalUser:
    """A person or a bot of the world; bots have a token."""

    id: str
    username: str
    bot: bool = False
    token: Optional[str] = field(default=None, repr=False)


def iso(ms: int) -> str:
    """An ISO 8601 UTC timestamp with microseconds, as Discord writes them."""
    return datetime.fromtimestamp(ms / 1000.0, tz=timezone.utc).isoformat(timespec="microseconds")


def _snowflake_ms(sid: Union[str, int]) -> int:
    return (int(sid) >> 22) + DISCORD_EPOCH_MS


def looks_like_snowflake(value: Any) -> bool:
    """Discord's spec for an id: any 64-bit decimal (``models.is_snowflake`` is stricter, on purpose)."""
    return isinstance(value, str) and value.isdigit() and len(value) <= 20 and (value == "0" or value[0] != "0")


def _safe_filename(name: str) -> str:
    name = name.replace("\\", "/").rsplit("/", 1)[-1].strip() or "unknown"
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:1024]


def _content_type_for(filename: str) -> Optional[str]:
    ctype, _ = mimetypes.guess_type(filename)
    if ctype is None:
        return None
    if ctype.startswith("text/") or ctype in ("application/json", "application/javascript"):
        return ctype + "; charset=utf-8"
    return ctype


@dataclass
class Attachment:
    id: str
    filename: str
    data: bytes
    content_type: Optional[str]
    description: Optional[str] = None


@dataclass
class Msg:
    id: str
    channel_id: str
    author_id: str
    content: str = ""
    type: int = 0
    tts: bool = False
    flags: int = 0
    embeds: List[Dict[str, Any]] = field(default_factory=list)
    attachments: List[Attachment] = field(default_factory=list)
    mention_user_ids: List[str] = field(default_factory=list)
    mention_role_ids: List[str] = field(default_factory=list)
    mention_everyone: bool = False
    allowed_mentions: Optional[Dict[str, Any]] = None
    reference_id: Optional[str] = None
    reference_channel_id: Optional[str] = None  # set when the reference is in another channel (a thread's starter)
    edited_ms: Optional[int] = None
    nonce: Optional[Union[str, int]] = None
    reactions: Dict[str, List[str]] = field(default_factory=dict)  # key -> user ids in order
    reaction_emoji: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    components: List[Dict[str, Any]] = field(default_factory=list)   # action rows of buttons (interactions.py)


@dataclass
class ThreadState:
    """What makes a channel a thread (see ``threads.py``): its parent, creator, archive state, members."""

    parent_id: str
    owner_id: str
    auto_archive_duration: int
    create_ms: int
    archive_ms: int                  # when ``archived`` last changed (Discord's archive_timestamp)
    activity_ms: int                 # the last activity, for auto-archiving
    archived: bool = False
    locked: bool = False
    total_sent: int = 0
    members: Dict[str, int] = field(default_factory=dict)  # user id -> join ms


@dataclass
class Channel:
    id: str
    guild_id: str
    name: str
    type: int = 0
    position: int = 0
    topic: Optional[str] = None
    messages: List[Msg] = field(default_factory=list)
    by_id: Dict[str, Msg] = field(default_factory=dict)
    thread: Optional[ThreadState] = None
    overwrites: Dict[str, grants.Overwrite] = field(default_factory=dict)  # role or user id -> overwrite


@dataclass
class Role:
    name: str
    permissions: int
    position: int


@dataclass
class Guild:
    id: str
    name: str
    owner_id: str
    roles: Dict[str, Role] = field(default_factory=dict)                     # @everyone's id is the guild's
    members: Dict[str, Tuple[List[str], int]] = field(default_factory=dict)  # user -> (roles, joined ms)


class Store:
    """The world of a LocalDiscord and the JSON it is seen as. See the package docstring."""

    def __init__(self, message_content_intent: bool) -> None:
        self.message_content_intent = message_content_intent
        self.nonce_window = 300.0
        self.nonce_in_history = False
        self.max_content_length = MESSAGE_LIMIT
        self.max_file_size = 10 * 1024 * 1024
        self.max_files = 10
        self.attachment_link_ttl = LINK_TTL_S
        self._link_key = secrets.token_bytes(LINK_KEY_BYTES)
        self._lock = threading.RLock()
        self._versions: Dict[str, List[str]] = {}   # message id -> its content before and after each edit
        self._last_id = 0
        self._counter = 0
        self._users: Dict[str, LocalUser] = {}
        self._tokens: Dict[str, str] = {}
        self._guilds: Dict[str, Guild] = {}
        self._channels: Dict[str, Channel] = {}
        self._attachments: Dict[str, Tuple[str, str, Attachment]] = {}  # att id -> (channel, msg, att)
        self._nonces: Dict[Tuple[str, str], Tuple[str, str, float]] = {}
        self.app_owners: Dict[str, str] = {}   # a bot's id -> who owns its application (guilds.py)

    @property
    def origin(self) -> str:
        """Where attachments are served (the server's address: LocalDiscord knows it)."""
        raise NotImplementedError

    # ----------------------------------------------------------------- ids

    def _next_id(self) -> str:
        with self._lock:
            ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
            self._counter = (self._counter + 1) & 0x3FFFFF
            cand = (ms << 22) | self._counter
            if cand <= self._last_id:
                cand = self._last_id + 1
            self._last_id = cand
            return str(cand)

    # ----------------------------------------------------------------- world building

    def create_guild(self, name: str, owner_id: Optional[str] = None) -> str:
        """A new guild (with its @everyone role, allowed ``grants.EVERYONE_DEFAULT``); returns its id.
        Its owner (who has every permission, and is a member, as on Discord) is ``owner_id``, else a new
        user of its own."""
        with self._lock:
            owner = str(owner_id) if owner_id is not None else self.create_user(f"{name}-owner").id
            gid = self._next_id()
            self._guilds[gid] = Guild(gid, name, owner)
            self._guilds[gid].roles[gid] = Role("@everyone", grants.EVERYONE_DEFAULT, 0)
            if owner in self._users:
                self._guilds[gid].members[owner] = ([], int(time.time() * 1000))
            return gid

    def create_user(self, username: str, bot: bool = False) -> LocalUser:
        """A new user; a bot gets a token for ``Authorization: Bot ...``."""
        with self._lock:
            uid = self._next_id()
            token = None
            if bot:
                head = base64.urlsafe_b64encode(uid.encode()).decode().rstrip("=")
                token = f"{head}.{secrets.token_urlsafe(5)[:6]}.{secrets.token_urlsafe(30)[:38]}"
                self._tokens[token] = uid
            user = LocalUser(uid, username, bot, token)
            self._users[uid] = user
            return user

    def create_channel(self, guild_id: str, name: str, topic: Optional[str] = None) -> str:
        """A new text channel in the guild; returns its id."""
        with self._lock:
            guild = self._guild(guild_id)
            cid = self._next_id()
            position = sum(1 for c in self._channels.values() if c.guild_id == guild.id)
            self._channels[cid] = Channel(cid, guild.id, name, position=position, topic=topic)
            return cid

    def create_role(self, guild_id: str, name: str, permissions: int = 0) -> str:
        """A new role in the guild with these permission bits (``grants``); returns its id."""
        with self._lock:
            guild = self._guild(guild_id)
            rid = self._next_id()
            guild.roles[rid] = Role(name, int(permissions), len(guild.roles))
            return rid

    def set_role_permissions(self, guild_id: str, role_id: str, permissions: int) -> None:
        """A role's permission bits (the guild's id names @everyone)."""
        with self._lock:
            self._guild(guild_id).roles[str(role_id)].permissions = int(permissions)

    def set_overwrite(self, channel_id: str, target_id: str, *, allow: int = 0, deny: int = 0,
                      member: bool = False) -> None:
        """A channel's permission overwrite for a role (or, ``member``, a user); allow = deny = 0 removes it."""
        with self._lock:
            ch = self._channel(channel_id)
            if allow == 0 and deny == 0:
                ch.overwrites.pop(str(target_id), None)
            else:
                kind = grants.MEMBER if member else grants.ROLE
                ch.overwrites[str(target_id)] = grants.Overwrite(kind, int(allow), int(deny))

    def permissions_in(self, channel_id: str, user_id: str) -> int:
        """The bits ``user_id`` holds in a channel (a thread: its parent's), as the routes judge them."""
        with self._lock:
            return self._bits(self._channel(channel_id), str(user_id))

    def add_member(self, guild_id: str, user_id: str, roles: Iterable[str] = ()) -> None:
        """Make the user a member of the guild with these roles."""
        with self._lock:
            guild = self._guild(guild_id)
            self._user(user_id)
            roles = [str(r) for r in roles]
            for r in roles:
                if r not in guild.roles or r == guild.id:
                    raise KeyError(f"unknown role {r} in guild {guild_id}")
            joined = guild.members.get(user_id, (None, int(time.time() * 1000)))[1]
            guild.members[user_id] = (list(dict.fromkeys(roles)), joined)

    def remove_member(self, guild_id: str, user_id: str) -> None:
        """The user leaves the guild."""
        with self._lock:
            self._guild(guild_id).members.pop(user_id, None)

    def deny(self, channel_id: str, user_id: str, code: int = 50001) -> None:
        """Take from ``user_id``, by a member overwrite on the channel (each channel of a guild, given its
        id): 50001 View Channel (then every request about it is 403 50001 Missing Access); 50013 all it
        may do there but see it (a message, a reaction... 403 50013 Missing Permissions)."""
        if code not in DENY_MESSAGES:
            raise ValueError(f"deny code must be one of {sorted(DENY_MESSAGES)}, not {code}")
        self._overwrite_member(channel_id, user_id, deny=grants.TAKEN_BY_DENY[code])

    def allow(self, channel_id: str, user_id: str) -> None:
        """Undo ``deny``: the member overwrite no longer denies what ``deny`` took."""
        self._overwrite_member(channel_id, user_id, undeny=grants.TAKEN_BY_DENY[50001] | grants.TAKEN_BY_DENY[50013])

    def _overwrite_member(self, where: str, user_id: str, *, allow: int = 0, deny: int = 0, undeny: int = 0) -> None:
        """Change ``user_id``'s own overwrite on a channel (a thread: its parent) or on each channel of a guild."""
        with self._lock:
            if str(where) in self._guilds:
                places = [c for c in self._channels.values() if c.guild_id == str(where) and c.thread is None]
            else:
                ch = self._channel(where)
                places = [self._channels[ch.thread.parent_id] if ch.thread is not None else ch]
            for ch in places:
                o = ch.overwrites.setdefault(str(user_id), grants.Overwrite(grants.MEMBER))
                o.allow = (o.allow | allow) & ~deny
                o.deny = ((o.deny | deny) & ~allow) & ~undeny
                if o.allow == 0 and o.deny == 0:
                    del ch.overwrites[str(user_id)]

    # ----------------------------------------------------------------- acting as a person

    def post_message(self, channel_id: str, author_id: str, content: str = "",
                     attachments: Sequence[Tuple[str, bytes]] = (), reply_to: Optional[str] = None,
                     embeds: Sequence[Mapping[str, Any]] = ()) -> Dict[str, Any]:
        """Post as ``author_id`` (no HTTP, no limits); returns the message JSON."""
        with self._lock:
            ch = self._channel(channel_id)
            self._user(author_id)
            if reply_to is not None and str(reply_to) not in ch.by_id:
                raise KeyError(f"unknown message {reply_to} in channel {channel_id}")
            files = [(_safe_filename(n), bytes(d), None) for n, d in attachments]
            msg = self._create(ch, author_id, content=content, embeds=[dict(e) for e in embeds], files=files,
                               reference_id=None if reply_to is None else str(reply_to),
                               allowed_mentions=None, tts=False, flags=0, nonce=None)
            return self._render(msg, self._default_viewer(), intent=True)

    def edit_message(self, channel_id: str, message_id: str, content: str) -> Dict[str, Any]:
        """Edit as its author (no HTTP); returns the message JSON."""
        with self._lock:
            msg = self._message(channel_id, message_id)
            msg.content = content
            msg.edited_ms = int(time.time() * 1000)
            self._compute_mentions(msg)
            return self._render(msg, self._default_viewer(), intent=True)

    def remove_attachment(self, channel_id: str, message_id: str, filename: str) -> None:
        """The author takes a file off their message (Discord's client edits it): its link answers 404."""
        with self._lock:
            msg = self._message(channel_id, message_id)
            gone = [a for a in msg.attachments if a.filename == filename]
            msg.attachments = [a for a in msg.attachments if a.filename != filename]
            for att in gone:
                self._attachments.pop(att.id, None)

    def delete_message(self, channel_id: str, message_id: str) -> None:
        """Delete the message (no HTTP), as a moderator would."""
        with self._lock:
            self._message(channel_id, message_id)
            self._delete(self._channels[str(channel_id)], str(message_id))

    def react(self, channel_id: str, message_id: str, user_id: str, emoji: str) -> None:
        """``user_id`` reacts with ``emoji`` (no HTTP)."""
        with self._lock:
            msg = self._message(channel_id, message_id)
            self._user(user_id)
            key, ejson = parse_emoji(emoji)
            self._add_reaction(msg, key, ejson, str(user_id))

    def unreact(self, channel_id: str, message_id: str, user_id: str, emoji: str) -> None:
        """``user_id`` takes the ``emoji`` reaction back (no HTTP)."""
        with self._lock:
            msg = self._message(channel_id, message_id)
            key, _ = parse_emoji(emoji)
            self._remove_reaction(msg, key, str(user_id))

    # ----------------------------------------------------------------- inspection

    def messages(self, channel_id: str) -> List[Dict[str, Any]]:
        """Oldest first, as the (first) bot sees them with the content intent."""
        with self._lock:
            ch = self._channel(channel_id)
            viewer = self._default_viewer()
            return [self._render(m, viewer, intent=True) for m in ch.messages]

    def versions(self, message_id: str) -> List[str]:
        """Every content a message had, oldest first (what a person watching it saw), edits included."""
        with self._lock:
            return list(self._versions.get(str(message_id), []))

    def get_message(self, channel_id: str, message_id: str) -> Dict[str, Any]:
        """One message, as ``messages`` renders it."""
        with self._lock:
            return self._render(self._message(channel_id, message_id), self._default_viewer(), intent=True)

    def reactions(self, channel_id: str, message_id: str) -> Dict[str, List[str]]:
        """Emoji -> the ids of who reacted, in order."""
        with self._lock:
            return {k: list(v) for k, v in self._message(channel_id, message_id).reactions.items()}

    def attachment_bytes(self, channel_id: str, message_id: str, index: int = 0) -> bytes:
        """The bytes of the message's ``index``-th attachment."""
        with self._lock:
            return self._message(channel_id, message_id).attachments[index].data

    def nonce_of(self, channel_id: str, message_id: str) -> Optional[Union[str, int]]:
        """The nonce a message was created with (Discord does not return it on fetch)."""
        with self._lock:
            return self._message(channel_id, message_id).nonce

    # ----------------------------------------------------------------- lookups (lock held)

    def _guild(self, gid: str) -> Guild:
        try:
            return self._guilds[str(gid)]
        except KeyError:
            raise KeyError(f"unknown guild {gid}") from None

    def _user(self, uid: str) -> LocalUser:
        try:
            return self._users[str(uid)]
        except KeyError:
            raise KeyError(f"unknown user {uid}") from None

    def _channel(self, cid: str) -> Channel:
        try:
            return self._channels[str(cid)]
        except KeyError:
            raise KeyError(f"unknown channel {cid}") from None

    def _message(self, cid: str, mid: str) -> Msg:
        ch = self._channel(cid)
        try:
            return ch.by_id[str(mid)]
        except KeyError:
            raise KeyError(f"unknown message {mid} in channel {cid}") from None

    def _default_viewer(self) -> Optional[str]:
        for u in self._users.values():
            if u.bot:
                return u.id
        return None

    # ----------------------------------------------------------------- message model (lock held)

    def _create(self, ch: Channel, author_id: str, *, content: str, embeds: List[Dict[str, Any]],
                files: List[Tuple[str, bytes, Optional[str]]], reference_id: Optional[str],
                allowed_mentions: Optional[Dict[str, Any]], tts: bool, flags: int,
                nonce: Optional[Union[str, int]]) -> Msg:
        mid = self._next_id()
        msg = Msg(id=mid, channel_id=ch.id, author_id=author_id, content=content or "",
                  type=19 if reference_id else 0, tts=tts, flags=flags, embeds=embeds,
                  allowed_mentions=allowed_mentions, reference_id=reference_id, nonce=nonce)
        msg.attachments = [self._new_attachment(ch.id, mid, n, d, desc) for n, d, desc in files]
        self._compute_mentions(msg)
        ch.messages.append(msg)
        ch.by_id[mid] = msg
        if ch.thread is not None:
            self._thread_activity(ch, author_id)
        self._gateway_event("MESSAGE_CREATE", ch, lambda bot, intent: dict(
            self._render(msg, bot, intent=intent), guild_id=ch.guild_id))
        return msg

    def _gateway_event(self, event: str, ch: Channel, render: Callable[[str, bool], Dict[str, Any]]) -> None:
        """What the REST side did, for the Gateway's sessions (``gateway.GatewayRoutes``)."""

    def _thread_activity(self, ch: Channel, author_id: str) -> None:
        """A message was posted in the thread ``ch`` (``threads.ThreadRoutes`` says what follows)."""
        raise NotImplementedError

    def _new_attachment(self, cid: str, mid: str, name: str, data: bytes, description: Optional[str]) -> Attachment:
        aid = self._next_id()
        att = Attachment(aid, _safe_filename(name), data, _content_type_for(name), description)
        self._attachments[aid] = (cid, mid, att)
        return att

    def _link_signature(self, aid: str, expires: str, issued: str) -> str:
        return hmac.new(self._link_key, f"{aid}:{expires}:{issued}".encode(), hashlib.sha256).hexdigest()

    def _signed_query(self, aid: str) -> str:
        """Discord's CDN link parameters: ``ex`` (expiry) and ``is`` (issued), hex seconds, signed by ``hm``.
        Every rendering of a message signs its links anew, as Discord does."""
        now = time.time()
        expires, issued = f"{int(now + self.attachment_link_ttl):x}", f"{int(now):x}"
        return f"?ex={expires}&is={issued}&hm={self._link_signature(aid, expires, issued)}&"

    def link_valid(self, aid: str, query: str) -> bool:
        """Whether an attachment link's query is signed by us and not expired."""
        params = urllib.parse.parse_qs(query)
        expires, issued, sig = (params.get(k, [""])[-1] for k in ("ex", "is", "hm"))
        try:
            live = time.time() < int(expires, 16)
        except ValueError:
            return False
        return live and hmac.compare_digest(sig, self._link_signature(aid, expires, issued))

    def _delete(self, ch: Channel, mid: str) -> None:
        msg = ch.by_id.pop(mid)
        ch.messages.remove(msg)
        for att in msg.attachments:
            self._attachments.pop(att.id, None)

    def _compute_mentions(self, msg: Msg) -> None:
        am = msg.allowed_mentions
        parse = {"users", "roles", "everyone"} if am is None else set(am.get("parse") or ())
        allowed_users = set() if am is None else {str(u) for u in (am.get("users") or ())}
        allowed_roles = set() if am is None else {str(r) for r in (am.get("roles") or ())}
        content = msg.content or ""
        users: List[str] = []
        for uid in re.findall(r"<@!?([0-9]{1,20})>", content):
            if uid in self._users and ("users" in parse or uid in allowed_users) and uid not in users:
                users.append(uid)
        if msg.reference_id:
            ref = self._channels[msg.channel_id].by_id.get(msg.reference_id)
            replied = True if am is None else bool(am.get("replied_user"))
            if ref is not None and replied and ref.author_id not in users:
                users.append(ref.author_id)
        guild = self._guilds.get(self._channels[msg.channel_id].guild_id)
        roles: List[str] = []
        for rid in re.findall(r"<@&([0-9]{1,20})>", content):
            if guild and rid in guild.roles and ("roles" in parse or rid in allowed_roles) and rid not in roles:
                roles.append(rid)
        msg.mention_user_ids = users
        msg.mention_role_ids = roles
        msg.mention_everyone = bool(re.search(r"@(everyone|here)\b", content)) and "everyone" in parse

    def _add_reaction(self, msg: Msg, key: str, ejson: Dict[str, Any], user_id: str) -> None:
        users = msg.reactions.setdefault(key, [])
        msg.reaction_emoji.setdefault(key, ejson)
        if user_id not in users:
            users.append(user_id)
            ch = self._channels[msg.channel_id]
            data = {"user_id": user_id, "channel_id": ch.id, "message_id": msg.id, "guild_id": ch.guild_id,
                    "emoji": dict(ejson), "message_author_id": msg.author_id, "burst": False, "type": 0}
            self._gateway_event("MESSAGE_REACTION_ADD", ch, lambda bot, intent: data)

    def _remove_reaction(self, msg: Msg, key: str, user_id: str) -> None:
        users = msg.reactions.get(key)
        if users and user_id in users:
            users.remove(user_id)
        if users is not None and not users:
            del msg.reactions[key]
            msg.reaction_emoji.pop(key, None)

    # ----------------------------------------------------------------- rendering (lock held)

    def _user_json(self, uid: str) -> Dict[str, Any]:
        u = self._users.get(uid)
        if u is None:
            u = LocalUser(uid, "Deleted User", False)
        out: Dict[str, Any] = {
            "id": u.id,
            "username": u.username,
            "avatar": None,
            "discriminator": f"{int(u.id) % 10000:04d}" if u.bot else "0",
            "public_flags": 0,
            "flags": 0,
            "banner": None,
            "accent_color": None,
            "global_name": None if u.bot else u.username,
            "avatar_decoration_data": None,
            "collectibles": None,
            "primary_guild": None,
        }
        if u.bot:
            out["bot"] = True
        return out

    def _attachment_json(self, cid: str, att: Attachment) -> Dict[str, Any]:
        url = f"{self.origin}/attachments/{cid}/{att.id}/{urllib.parse.quote(att.filename)}{self._signed_query(att.id)}"
        out: Dict[str, Any] = {"id": att.id, "filename": att.filename, "size": len(att.data), "url": url,
                               "proxy_url": url}
        if att.content_type:
            out["content_type"] = att.content_type
        if att.description:
            out["description"] = att.description
        return out

    def _render(self, msg: Msg, viewer: Optional[str], intent: Optional[bool] = None, nested: bool = False,
                with_nonce: bool = False) -> Dict[str, Any]:
        intent = self.message_content_intent if intent is None else intent
        visible = intent or viewer is None or msg.author_id == viewer or viewer in msg.mention_user_ids
        ch = self._channels[msg.channel_id]
        out: Dict[str, Any] = {
            "type": msg.type,
            "content": msg.content if visible else "",
            "mentions": [self._user_json(u) for u in msg.mention_user_ids],
            "mention_roles": list(msg.mention_role_ids),
            "attachments": [self._attachment_json(ch.id, a) for a in msg.attachments] if visible else [],
            "embeds": [dict(e) for e in msg.embeds] if visible else [],
            "timestamp": iso(_snowflake_ms(msg.id)),
            "edited_timestamp": None if msg.edited_ms is None else iso(msg.edited_ms),
            "flags": msg.flags,
            "components": [dict(c) for c in msg.components] if visible else [],
            "id": msg.id,
            "channel_id": msg.channel_id,
            "author": self._user_json(msg.author_id),
            "pinned": False,
            "mention_everyone": msg.mention_everyone,
            "tts": msg.tts,
        }
        if msg.reactions and not nested:  # BasicMessageResponse (referenced_message) has no reactions
            out["reactions"] = [
                {"emoji": dict(msg.reaction_emoji[k]), "count": len(users),
                 "count_details": {"burst": 0, "normal": len(users)}, "burst_colors": [],
                 "me_burst": False, "me": viewer is not None and viewer in users}
                for k, users in msg.reactions.items()
            ]
        if msg.nonce is not None and (with_nonce or self.nonce_in_history):
            out["nonce"] = msg.nonce
        if msg.reference_id:
            ref_ch = self._channels.get(msg.reference_channel_id or ch.id)
            out["message_reference"] = {"type": 0, "channel_id": msg.reference_channel_id or ch.id,
                                        "message_id": msg.reference_id, "guild_id": ch.guild_id}
            if not nested:
                ref = ref_ch.by_id.get(msg.reference_id) if ref_ch is not None else None
                out["referenced_message"] = None if ref is None else self._render(ref, viewer, intent, nested=True)
        started = self._channels.get(msg.id)
        if started is not None and started.thread is not None and started.thread.parent_id == ch.id:
            out["thread"] = self._channel_json(started, viewer)   # the thread started from this message
        return out

    def _channel_json(self, ch: Channel, viewer: Optional[str] = None) -> Dict[str, Any]:
        if ch.thread is not None:
            return self._thread_json(ch, viewer)
        return {
            "id": ch.id, "type": ch.type,
            "last_message_id": ch.messages[-1].id if ch.messages else None,
            "flags": 0, "guild_id": ch.guild_id, "name": ch.name, "parent_id": None,
            "rate_limit_per_user": 0, "topic": ch.topic, "position": ch.position,
            "permission_overwrites": [{"id": target, "type": o.type, "allow": str(o.allow), "deny": str(o.deny)}
                                      for target, o in ch.overwrites.items()],
            "nsfw": False, "last_pin_timestamp": None,
        }

    def _thread_json(self, ch: Channel, viewer: Optional[str]) -> Dict[str, Any]:
        """A thread channel as Discord renders it (``threads.ThreadRoutes``)."""
        raise NotImplementedError

    # ----------------------------------------------------------------- access (lock held)

    def _auth_user(self, headers: Any) -> Optional[str]:
        value = (headers.get("Authorization") or "").strip()
        if not value.startswith("Bot "):
            return None
        uid = self._tokens.get(value[4:].strip())
        if uid is None or not self._users[uid].bot:
            return None
        return uid

    def _bits(self, ch: Channel, user_id: str) -> int:
        """``grants.in_channel`` for a member (a thread: its parent channel's overwrites)."""
        place = self._channels[ch.thread.parent_id] if ch.thread is not None else ch
        guild = self._guilds[place.guild_id]
        role_ids = guild.members.get(user_id, ([], 0))[0]
        return grants.in_channel(owner=user_id == guild.owner_id, everyone=guild.roles[guild.id].permissions,
                                 roles=[guild.roles[r].permissions for r in role_ids if r in guild.roles],
                                 role_ids=role_ids, user_id=user_id, guild_id=guild.id, overwrites=place.overwrites)

    def _has(self, ch: Channel, user_id: str, permission: str) -> bool:
        return bool(self._bits(ch, user_id) & grants.bit(permission))

    def _require(self, ch: Channel, user_id: str, permission: str) -> None:
        """403 50013 unless ``user_id`` holds ``permission`` in ``ch``."""
        if not self._has(ch, user_id, permission):
            raise missing_permissions()

    def _check_denied(self, params: Mapping[str, str], user_id: str) -> None:
        """A channel (or thread) the user cannot see: 403 50001 on every request about it."""
        ch = self._channels.get(params.get("channel_id") or "")
        if ch is not None and not self._has(ch, user_id, "VIEW_CHANNEL"):
            raise ApiError(403, MISSING_ACCESS, DENY_MESSAGES[MISSING_ACCESS])

    def _api_channel(self, params: Mapping[str, str]) -> Channel:
        ch = self._channels.get(params["channel_id"])
        if ch is None:
            raise unknown("channel")
        return ch

    def _api_message(self, params: Mapping[str, str]) -> Tuple[Channel, Msg]:
        ch = self._api_channel(params)
        msg = ch.by_id.get(params["message_id"])
        if msg is None:
            raise unknown("message")
        return ch, msg
