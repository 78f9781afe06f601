"""The routes about who and where: users/@me, a channel, a guild member."""

from __future__ import annotations

from typing import Any, List, Mapping, Tuple

from .apierror import unknown
from .store import Store, iso


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
