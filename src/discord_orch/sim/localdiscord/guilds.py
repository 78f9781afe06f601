"""The routes about who and where: users/@me, a channel, a guild (its roles), a guild member."""

from __future__ import annotations

from typing import Any, List, Mapping, Tuple

from .apierror import DENY_MESSAGES, MISSING_ACCESS, ApiError, unknown
from .store import Guild, Store, iso


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
        member = guild.members.get(uid)
        if member is None:
            raise unknown("member")
        roles, joined = member
        return 200, {
            "avatar": None, "banner": None, "communication_disabled_until": None, "flags": 0,
            "joined_at": iso(joined), "nick": None, "pending": False, "premium_since": None,
            "roles": list(roles), "user": self._user_json(uid), "mute": False, "deaf": False,
        }

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
