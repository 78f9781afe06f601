"""The routes about who and where: users/@me, a channel, a guild (its roles), a guild member; and what
`discord-orch init` reads and does: the bot's application, its guilds, a guild's channels, a new text
channel (Manage Channels), a member search.

Verified (Discord's docs, resources/guild.mdx "Create Guild Channel", "Search Guild Members";
resources/user.mdx "Get Current User Guilds"; resources/application.mdx "Application Flags"):
creating a channel needs Manage Channels (else 403 50013); a search matches the start of a
username or nickname, case-insensitively, ``limit`` 1-1000 (default 1); the guilds list has
``owner`` and ``permissions`` (the bot's, server-wide, as a string).

Not verified (the emulator's choice): the application's owner is ``app_owners[bot]``, else the bot
itself; its ``flags`` say Message Content is on (1 << 19) when the emulator's intent is; a text
channel's name is lower-cased with blanks made ``-`` (what Discord's client shows).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Tuple

from . import grants
from .apierror import DENY_MESSAGES, MISSING_ACCESS, ApiError, field_error, invalid_form, missing_permissions, unknown
from .bodies import parse_body
from .store import Guild, Store, iso

MESSAGE_CONTENT_LIMITED = 1 << 19   # an application flag: the Message Content toggle under Bot
CHANNEL_NAME_MAX = 100


class GuildRoutes(Store):
    """Handlers: (user_id, params, query, headers, body) -> (status, JSON or None); the lock is held."""

    def _h_get_me(self, user_id: str, params: Mapping[str, str], query: Mapping[str, List[str]], headers: Any,
                  body: bytes) -> Tuple[int, Any]:
        out = self._user_json(user_id)
        out.update({"mfa_enabled": False, "locale": "en-US", "verified": True, "email": None})
        return 200, out

    def _h_get_channel(self, user_id: str, params: Mapping[str, str], query: Mapping[str, List[str]], headers: Any,
                       body: bytes) -> Tuple[int, Any]:
        return 200, self._channel_json(self._api_channel(params), user_id)

    def _h_get_member(self, user_id: str, params: Mapping[str, str], query: Mapping[str, List[str]], headers: Any,
                      body: bytes) -> Tuple[int, Any]:
        guild = self._guilds.get(params["guild_id"])
        if guild is None:
            raise unknown("guild")
        uid = params["user_id"]
        if uid == "@me":
            uid = user_id
        if uid not in guild.members:
            raise unknown("member")
        return 200, self._guild_member_json(guild, uid)

    def _guild_member_json(self, guild: Guild, uid: str) -> Dict[str, Any]:
        roles, joined = guild.members[uid]
        return {
            "avatar": None, "banner": None, "communication_disabled_until": None, "flags": 0,
            "joined_at": iso(joined), "nick": None, "pending": False, "premium_since": None,
            "roles": list(roles), "user": self._user_json(uid), "mute": False, "deaf": False,
        }

    def _member_of(self, guild_id: str, user_id: str) -> Guild:
        """The guild, when ``user_id`` is in it: 404 10004 for no such guild, 403 50001 for one it is not in."""
        guild = self._guilds.get(guild_id)
        if guild is None:
            raise unknown("guild")
        if user_id not in guild.members:
            raise ApiError(403, MISSING_ACCESS, DENY_MESSAGES[MISSING_ACCESS])
        return guild

    def _in_guild(self, guild: Guild, user_id: str) -> int:
        roles = guild.members[user_id][0]
        return grants.in_guild(owner=user_id == guild.owner_id, everyone=guild.roles[guild.id].permissions,
                               roles=[guild.roles[r].permissions for r in roles if r in guild.roles])

    def _h_get_my_application(self, user_id: str, params: Mapping[str, str], query: Mapping[str, List[str]],
                              headers: Any, body: bytes) -> Tuple[int, Any]:
        bot = self._user_json(user_id)
        return 200, {
            "id": user_id, "name": bot["username"], "icon": None, "description": "", "type": None,
            "bot": bot, "bot_public": True, "bot_require_code_grant": False, "verify_key": "0" * 64,
            "flags": MESSAGE_CONTENT_LIMITED if self.message_content_intent else 0,
            "flags_new": str(MESSAGE_CONTENT_LIMITED if self.message_content_intent else 0),
            "redirect_uris": [], "interactions_endpoint_url": None, "role_connections_verification_url": None,
            "owner": self._user_json(self.app_owners.get(user_id, user_id)), "team": None,
            "approximate_guild_count": sum(1 for g in self._guilds.values() if user_id in g.members),
            "approximate_user_install_count": 0, "approximate_user_authorization_count": 0,
            "explicit_content_filter": 0, "eligible_oauth2_scopes": ["bot", "applications.commands"],
        }

    def _h_list_my_guilds(self, user_id: str, params: Mapping[str, str], query: Mapping[str, List[str]],
                          headers: Any, body: bytes) -> Tuple[int, Any]:
        limit = _int_query(query, "limit", 200, 1, 200)
        mine = sorted((g for g in self._guilds.values() if user_id in g.members), key=lambda g: int(g.id))
        return 200, [{"id": g.id, "name": g.name, "icon": None, "banner": None, "owner": g.owner_id == user_id,
                      "permissions": str(self._in_guild(g, user_id)), "features": []} for g in mine[:limit]]

    def _h_list_guild_channels(self, user_id: str, params: Mapping[str, str], query: Mapping[str, List[str]],
                               headers: Any, body: bytes) -> Tuple[int, Any]:
        guild = self._member_of(params["guild_id"], user_id)
        return 200, [self._channel_json(c, user_id) for c in self._channels.values()
                     if c.guild_id == guild.id and c.thread is None]

    def _h_create_guild_channel(self, user_id: str, params: Mapping[str, str], query: Mapping[str, List[str]],
                                headers: Any, body: bytes) -> Tuple[int, Any]:
        guild = self._member_of(params["guild_id"], user_id)
        payload = parse_body(headers, body)[0]
        name, kind = payload.get("name"), payload.get("type", 0)
        errors: Dict[str, Any] = {}
        if not isinstance(name, str) or not 1 <= len(name) <= CHANNEL_NAME_MAX:
            errors.update(field_error(["name"], "BASE_TYPE_BAD_LENGTH", f"Must be between 1 and {CHANNEL_NAME_MAX} in length."))
        if kind not in (0, None):   # only text channels are emulated
            errors.update(field_error(["type"], "BASE_TYPE_CHOICES", "Value must be one of {0}."))
        if errors:
            raise invalid_form(errors)
        if not self._in_guild(guild, user_id) & grants.bit("MANAGE_CHANNELS"):
            raise missing_permissions()
        cid = self.create_channel(guild.id, "-".join(name.lower().split()))
        return 201, self._channel_json(self._channels[cid], user_id)

    def _h_search_members(self, user_id: str, params: Mapping[str, str], query: Mapping[str, List[str]],
                          headers: Any, body: bytes) -> Tuple[int, Any]:
        guild = self._member_of(params["guild_id"], user_id)
        text = (query.get("query") or [""])[-1]
        if not 1 <= len(text) <= 100:
            raise invalid_form(field_error(["query"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."))
        limit = _int_query(query, "limit", 1, 1, 1000)
        found = [uid for uid in guild.members if self._user_json(uid)["username"].lower().startswith(text.lower())]
        return 200, [self._guild_member_json(guild, uid) for uid in found[:limit]]

    def _h_get_guild(self, user_id: str, params: Mapping[str, str], query: Mapping[str, List[str]], headers: Any,
                     body: bytes) -> Tuple[int, Any]:
        """The guild with its roles and owner_id (spec ``GuildWithCountsResponse``); the counts with_counts asks
        for are left out. A bot that is not a member: 403 50001 (the emulator's choice)."""
        guild = self._guilds.get(params["guild_id"])
        if guild is None:
            raise unknown("guild")
        if user_id not in guild.members:
            raise ApiError(403, MISSING_ACCESS, DENY_MESSAGES[MISSING_ACCESS])
        return 200, _guild_json(guild)


def _int_query(query: Mapping[str, List[str]], key: str, default: int, low: int, high: int) -> int:
    """A whole-number query parameter within bounds, else Discord's 50035 naming it."""
    raw = (query.get(key) or [str(default)])[-1]
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise invalid_form(field_error([key], "NUMBER_TYPE_MAX", f"int value should be between {low} and {high}."))
    return int(raw)


def _guild_json(guild: Guild) -> Any:
    roles = [{"id": rid, "name": r.name, "permissions": str(r.permissions), "position": r.position, "color": 0,
              "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None}, "hoist": False,
              "managed": False, "mentionable": False, "icon": None, "unicode_emoji": None, "flags": 0}
             for rid, r in guild.roles.items()]
    nothing = ("icon", "description", "home_header", "splash", "discovery_splash", "banner", "application_id",
               "afk_channel_id", "system_channel_id", "widget_channel_id", "max_presences", "vanity_url_code",
               "rules_channel_id", "safety_alerts_channel_id", "public_updates_channel_id", "incidents_data")
    out = {key: None for key in nothing}
    out.update({
        "id": guild.id, "name": guild.name, "owner_id": guild.owner_id, "roles": roles, "features": [],
        "region": "deprecated", "afk_timeout": 300, "system_channel_flags": 0, "widget_enabled": False,
        "verification_level": 0, "default_message_notifications": 0, "mfa_level": 0, "explicit_content_filter": 0,
        "max_members": 500000, "max_stage_video_channel_users": 50, "max_video_channel_users": 25,
        "premium_tier": 0, "premium_subscription_count": 0, "preferred_locale": "en-US",
        "premium_progress_bar_enabled": False, "nsfw": False, "nsfw_level": 0, "emojis": [], "stickers": [],
    })
    return out
