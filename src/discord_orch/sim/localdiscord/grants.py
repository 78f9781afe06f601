"""Who may do what in the loopback Discord: role bitfields, channel overwrites, the algorithm.

The emulator's own copy of Discord's rules, written apart from ``discord_orch.permissions``
on purpose: the routes enforce these, ``discord-orch check`` computes its answer from what
the routes serve (roles, ``permission_overwrites``, member roles), and a test that takes a
permission away sees both agree only if both follow Discord.

The bit values are ``discord_orch.permissions``'s (verified there, one home); the rules are
written here again. Verified (Discord's docs, github.com/discord/discord-api-docs at c98d64b, 2026-08-06:
developers/topics/permissions.mdx "Bitwise Permission Flags", "Permission Overwrites",
"Implicit Permissions", "Inherited Permissions (Threads)"; developers/resources/message.mdx
"Get Channel Messages", "Get Channel Message", "Create Message", "Create Reaction")
    * The order: the owner has everything; @everyone's role (id = the guild's id), OR the
      member's roles; ADMINISTRATOR = everything, no overwrite applies; then the channel's
      @everyone overwrite (deny, then allow), the member's roles' overwrites (all denies, then
      all allows), the member's own overwrite (deny, then allow).
    * Without VIEW_CHANNEL nothing else in the channel counts; without SEND_MESSAGES neither do
      ATTACH_FILES, EMBED_LINKS, SEND_TTS_MESSAGES, MENTION_EVERYONE ("Implicit Permissions").
    * A thread has its parent's permissions, SEND_MESSAGES_IN_THREADS instead of SEND_MESSAGES.
    * Listing messages without READ_MESSAGE_HISTORY returns none; fetching one needs it; a
      message needs SEND_MESSAGES, a reply READ_MESSAGE_HISTORY; a reaction needs
      READ_MESSAGE_HISTORY, and ADD_REACTIONS when nobody has reacted with that emoji yet.

Not verified (the emulator's choice)
    * ``EVERYONE_DEFAULT``: what @everyone may do in a new server here. Discord's real default
      is not documented; this one holds what a bot of discord-orch needs, and no moderation.
    * A bot that is not a member is treated as one with no roles (Discord would refuse it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable

from ...permissions import (  # Discord's bit values (verified there); the algorithm below is this module's own
    ADD_REACTIONS,
    ADMINISTRATOR,
    ATTACH_FILES,
    CREATE_PUBLIC_THREADS,
    EMBED_LINKS,
    MANAGE_CHANNELS,
    MANAGE_THREADS,
    NEED_SENDING,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    SEND_MESSAGES_IN_THREADS,
    VIEW_CHANNEL,
)

USE_EXTERNAL_EMOJIS = 1 << 18
EVERYTHING = (1 << 64) - 1       # "ALL" of the docs' pseudocode: every bit there is or will be

BY_NAME: Dict[str, int] = {
    "ADMINISTRATOR": ADMINISTRATOR, "ADD_REACTIONS": ADD_REACTIONS, "VIEW_CHANNEL": VIEW_CHANNEL,
    "SEND_MESSAGES": SEND_MESSAGES, "EMBED_LINKS": EMBED_LINKS, "ATTACH_FILES": ATTACH_FILES,
    "READ_MESSAGE_HISTORY": READ_MESSAGE_HISTORY, "MANAGE_THREADS": MANAGE_THREADS,
    "CREATE_PUBLIC_THREADS": CREATE_PUBLIC_THREADS, "SEND_MESSAGES_IN_THREADS": SEND_MESSAGES_IN_THREADS,
    "MANAGE_CHANNELS": MANAGE_CHANNELS,
}
EVERYONE_DEFAULT = (VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS | ATTACH_FILES | READ_MESSAGE_HISTORY | ADD_REACTIONS
                    | USE_EXTERNAL_EMOJIS | CREATE_PUBLIC_THREADS | SEND_MESSAGES_IN_THREADS)
# What ``deny(channel, user, code)`` takes: 50001 the channel itself; 50013 everything done in it.
TAKEN_BY_DENY = {50001: VIEW_CHANNEL,
                 50013: EVERYTHING & ~VIEW_CHANNEL}

ROLE, MEMBER = 0, 1              # an overwrite's type


@dataclass
class Overwrite:
    """One entry of a channel's ``permission_overwrites``."""

    type: int                    # ROLE or MEMBER
    allow: int = 0
    deny: int = 0


def bit(name: str) -> int:
    """A permission's bit by its API name (ValueError for one the emulator does not know)."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(f"permission must be one of {sorted(BY_NAME)}, not {name!r}") from None


def in_guild(*, owner: bool, everyone: int, roles: Iterable[int]) -> int:
    """What a member may do server-wide (Manage Channels, say): the owner everything, else @everyone's role OR
    the member's roles, ADMINISTRATOR being everything; no channel's overwrite counts."""
    if owner:
        return EVERYTHING
    held = everyone
    for value in roles:
        held |= value
    return EVERYTHING if held & ADMINISTRATOR else held


def in_channel(*, owner: bool, everyone: int, roles: Iterable[int], role_ids: Iterable[str], user_id: str,
               guild_id: str, overwrites: Dict[str, Overwrite]) -> int:
    """What a member may do in a channel, by the docs' order (see the module docstring)."""
    if owner:
        return EVERYTHING
    held = everyone
    for value in roles:
        held |= value
    if held & ADMINISTRATOR:
        return EVERYTHING
    layers = [[overwrites.get(guild_id)], [overwrites.get(r) for r in role_ids], [overwrites.get(user_id)]]
    for layer in layers:
        found = [o for o in layer if o is not None]
        denied = allowed = 0
        for o in found:
            denied, allowed = denied | o.deny, allowed | o.allow
        held = (held & ~denied) | allowed
    if not held & VIEW_CHANNEL:
        return 0
    if not held & SEND_MESSAGES:
        held &= ~NEED_SENDING
    return held
