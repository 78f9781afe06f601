"""The Discord routes only `discord-orch init` reads or writes, on top of ``DiscordClient``.

A pass never needs these, so they live apart from discord_api.py: the bot's application
(its id is an invite link's ``client_id``; its flags say whether Message Content is on), the
servers the bot is in, a server's channels, creating a text channel (Manage Channels), and
finding a member by name. Same edge as discord_api.py: typed values out, ``errors`` raised.

Verified against ../shared/discord-openapi.json (tests/test_openapi_conformance.py checks the
loopback Discord's answers against it): ``GET /oauth2/applications/@me`` (PrivateApplicationResponse),
``GET /users/@me/guilds`` (MyGuildResponse: id, name, owner, permissions; limit 1-200),
``GET /guilds/{guild_id}/channels``, ``POST /guilds/{guild_id}/channels`` (CreateGuildChannelRequest:
name required, type 0 = text), ``GET /guilds/{guild_id}/members/search`` (query 1-100 characters
required, limit 1-1000; Discord matches the start of usernames and nicknames).
"""

from __future__ import annotations

from typing import List

from .discord_api import DiscordClient, _list_of
from .models import TEXT_CHANNEL, Application, Channel, Guild, Member

MY_GUILDS_LIMIT = 200          # the most GET /users/@me/guilds returns at once (spec: limit 1-200)
SEARCH_QUERY_MAX = 100         # characters of a member search's query (spec)


class SetupClient(DiscordClient):
    """A DiscordClient that can also look a server over and set it up (see the module docstring)."""

    def application(self) -> Application:
        """The bot's application (GET /oauth2/applications/@me)."""
        return self._call("GET", "/oauth2/applications/@me", {}, parse=Application.from_json)

    def my_guilds(self) -> List[Guild]:
        """The servers the bot is in, names only (GET /users/@me/guilds; the first 200 are plenty here)."""
        return self._call("GET", "/users/@me/guilds", {}, query={"limit": str(MY_GUILDS_LIMIT)},
                          parse=_list_of(Guild.from_json))

    def guild_channels(self, guild_id: str) -> List[Channel]:
        """A server's channels, threads aside (GET /guilds/{id}/channels)."""
        return self._call("GET", "/guilds/{guild_id}/channels", {"guild_id": guild_id}, parse=_list_of(Channel.from_json))

    def create_text_channel(self, guild_id: str, name: str) -> Channel:
        """A new text channel (POST /guilds/{id}/channels); Forbidden (50013) without Manage Channels."""
        return self._call("POST", "/guilds/{guild_id}/channels", {"guild_id": guild_id},
                          json_body={"name": name, "type": TEXT_CHANNEL}, parse=Channel.from_json)

    def search_members(self, guild_id: str, query: str, limit: int = 10) -> List[Member]:
        """Members whose username or nickname starts with ``query`` (GET /guilds/{id}/members/search)."""
        if not 1 <= len(query) <= SEARCH_QUERY_MAX:
            raise ValueError(f"a member search needs 1 to {SEARCH_QUERY_MAX} characters")
        return self._call("GET", "/guilds/{guild_id}/members/search", {"guild_id": guild_id},
                          query={"query": query, "limit": str(limit)}, parse=_list_of(Member.from_json))
