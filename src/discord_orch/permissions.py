"""What the bot may do in a channel, computed as Discord does, from what Discord serves. Pure.

Verified (Discord's docs, github.com/discord/discord-api-docs at c98d64b, 2026-08-06,
developers/topics/permissions.mdx; the spec is ../shared/discord-openapi.json):
    * The bit values below: table "Bitwise Permission Flags" (the spec has no permission enum).
    * The algorithm, "Permission Overwrites": the server's owner has every permission; else
      @everyone's role (its id is the server's) OR each of the member's roles; ADMINISTRATOR
      = every permission and no overwrite applies; then the channel's overwrite for @everyone
      (deny, then allow), the overwrites of the member's roles together (all denies, then all
      allows), the member's own overwrite (deny, then allow).
    * "Implicit Permissions": without VIEW_CHANNEL nothing else in the channel counts; without
      SEND_MESSAGES neither do ATTACH_FILES, EMBED_LINKS, SEND_TTS_MESSAGES, MENTION_EVERYONE.
    * "Inherited Permissions (Threads)": a thread has its parent's permissions, and sending in
      it needs SEND_MESSAGES_IN_THREADS, not SEND_MESSAGES.
    * Where the values come from: role ``permissions`` and overwrite ``allow`` / ``deny`` are
      decimal strings (docs; spec ``GuildRoleResponse``, ``ChannelPermissionOverwriteResponse``,
      type 0 role / 1 member = spec ``ChannelPermissionOverwrites``); ``GET /guilds/{guild_id}``
      answers ``roles`` and ``owner_id`` (spec ``GuildWithCountsResponse``, both required);
      ``GET /guilds/{guild_id}/members/{user_id}`` the member's ``roles`` (spec
      ``GuildMemberResponse``); ``GET /channels/{channel_id}`` its ``permission_overwrites``.
"""

from __future__ import annotations

from typing import Dict, List, Sequence

from .models import Channel, Guild, Member

ADMINISTRATOR = 1 << 3
MANAGE_CHANNELS = 1 << 4      # server-wide: create channels (``discord-orch init`` makes the missing ones with it)
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
SEND_TTS_MESSAGES = 1 << 12
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
MENTION_EVERYONE = 1 << 17
MANAGE_THREADS = 1 << 34
CREATE_PUBLIC_THREADS = 1 << 35
SEND_MESSAGES_IN_THREADS = 1 << 38
ALL = (1 << 64) - 1           # every bit Discord has or may add (its bit sets grow: they are strings)
NEED_SENDING = ATTACH_FILES | EMBED_LINKS | SEND_TTS_MESSAGES | MENTION_EVERYONE

# The names Discord's client shows (Server Settings → Roles; Edit Channel → Permissions).
NAMES: Dict[int, str] = {
    ADMINISTRATOR: "Administrator", ADD_REACTIONS: "Add Reactions", VIEW_CHANNEL: "View Channel",
    SEND_MESSAGES: "Send Messages", EMBED_LINKS: "Embed Links", ATTACH_FILES: "Attach Files",
    READ_MESSAGE_HISTORY: "Read Message History", CREATE_PUBLIC_THREADS: "Create Public Threads",
    SEND_MESSAGES_IN_THREADS: "Send Messages in Threads", MANAGE_CHANNELS: "Manage Channels",
}


def base_permissions(guild: Guild, member: Member) -> int:
    """The member's permissions in the server, before any channel's overwrites."""
    if guild.owner_id is not None and guild.owner_id == member.user_id:
        return ALL
    roles = {role.id: role.permissions for role in guild.roles}
    held = roles.get(guild.id, 0)
    for role_id in member.roles:
        held |= roles.get(role_id, 0)
    return ALL if held & ADMINISTRATOR else held


def channel_permissions(guild: Guild, member: Member, channel: Channel) -> int:
    """The member's permissions in ``channel`` (for a thread, pass its parent)."""
    held = base_permissions(guild, member)
    if held & ADMINISTRATOR:
        return ALL
    by_target = {o.id: o for o in channel.overwrites}
    everyone = by_target.get(guild.id)
    if everyone is not None:
        held = (held & ~everyone.deny) | everyone.allow
    deny = allow = 0
    for role_id in member.roles:
        role = by_target.get(role_id)
        if role is not None:
            deny, allow = deny | role.deny, allow | role.allow
    held = (held & ~deny) | allow
    own = by_target.get(member.user_id)
    if own is not None:
        held = (held & ~own.deny) | own.allow
    if not held & VIEW_CHANNEL:
        return 0
    return held if held & SEND_MESSAGES else held & ~NEED_SENDING


def names(bits: int) -> List[str]:
    """The names of the permissions in ``bits`` that NAMES knows, lowest bit first."""
    return [name for bit, name in sorted(NAMES.items()) if bits & bit]


def missing(held: int, needed: Sequence[int]) -> List[str]:
    """The names of the ``needed`` permissions ``held`` lacks, in ``needed``'s order."""
    return [NAMES[p] for p in needed if not held & p]
