"""The route table of the loopback Discord and how a request path finds its route."""

from __future__ import annotations

import hashlib
import re
import urllib.parse
from typing import Dict, List, Optional, Tuple

API_PREFIX = "/api/v10"

# (method, template, handler name, bucket family or None = per-route default)
ROUTE_DEFS: Tuple[Tuple[str, str, str, Optional[str]], ...] = (
    ("GET", "/users/@me", "_h_get_me", None),
    ("GET", "/channels/{channel_id}", "_h_get_channel", None),
    ("PATCH", "/channels/{channel_id}", "_h_edit_channel", None),
    ("GET", "/channels/{channel_id}/messages", "_h_list_messages", None),
    ("POST", "/channels/{channel_id}/messages", "_h_create_message", "message_create"),
    ("GET", "/channels/{channel_id}/messages/{message_id}", "_h_get_message", None),
    ("PATCH", "/channels/{channel_id}/messages/{message_id}", "_h_edit_message", None),
    ("DELETE", "/channels/{channel_id}/messages/{message_id}", "_h_delete_message", None),
    ("PUT", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me", "_h_add_reaction", "reactions"),
    ("DELETE", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me", "_h_remove_reaction", "reactions"),
    ("GET", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}", "_h_list_reaction_users", None),
    ("POST", "/channels/{channel_id}/messages/{message_id}/threads", "_h_start_thread", "thread_create"),
    ("GET", "/guilds/{guild_id}", "_h_get_guild", None),
    ("GET", "/guilds/{guild_id}/members/{user_id}", "_h_get_member", None),
    ("GET", "/guilds/{guild_id}/threads/active", "_h_list_active_threads", None),
    # what `discord-orch init` reads and does (guilds.py)
    ("GET", "/oauth2/applications/@me", "_h_get_my_application", None),
    ("GET", "/users/@me/guilds", "_h_list_my_guilds", None),
    ("GET", "/guilds/{guild_id}/channels", "_h_list_guild_channels", None),
    ("POST", "/guilds/{guild_id}/channels", "_h_create_guild_channel", None),
    ("GET", "/guilds/{guild_id}/members/search", "_h_search_members", None),
    ("GET", "/gateway/bot", "_h_get_gateway_bot", None),   # gateway.py: the local Gateway's URL
    # interactions.py: slash commands and the answers to interactions
    ("GET", "/applications/{application_id}/guilds/{guild_id}/commands", "_h_list_guild_commands", None),
    ("PUT", "/applications/{application_id}/guilds/{guild_id}/commands", "_h_set_guild_commands", None),
    ("POST", "/interactions/{interaction_id}/{interaction_token}/callback", "_h_interaction_callback", None),
)
NO_BOT_TOKEN = ("/interactions/{interaction_id}/{interaction_token}/callback",)   # the interaction's token is enough
ATTACHMENT_ROUTE = "GET /attachments/{channel_id}/{attachment_id}/{filename}"
SNOWFLAKE_PARAMS = ("channel_id", "message_id", "guild_id", "user_id")


def _split_template(template: str) -> List[str]:
    return template.strip("/").split("/")


_COMPILED = [(m, t, h, b, _split_template(t)) for (m, t, h, b) in ROUTE_DEFS]


def match_route(path: str) -> Tuple[List[Tuple[str, str, str, Optional[str]]], Dict[str, str]]:
    """All (method, template, handler, bucket) whose template fits ``path``, and its params. A literal segment
    beats a parameter, as on Discord: ``/members/search`` is the search, not the member whose id is "search"."""
    segs = path.strip("/").split("/") if path.strip("/") else []
    fits: List[Tuple[int, Tuple[str, str, str, Optional[str]], Dict[str, str]]] = []
    for method, template, handler, bucket, tsegs in _COMPILED:
        if len(tsegs) != len(segs):
            continue
        got: Dict[str, str] = {}
        for t, s in zip(tsegs, segs):
            if t.startswith("{") and t.endswith("}"):
                if not s:
                    break
                got[t[1:-1]] = s
            elif urllib.parse.unquote(s) != t:
                break
        else:
            fits.append((len(got), (method, template, handler, bucket), got))
    fits.sort(key=lambda fit: fit[0])   # stable: fewest parameters first
    return [entry for _n, entry, _got in fits], (fits[0][2] if fits else {})


def norm_route(route: str) -> Tuple[Optional[str], str]:
    """``"POST /channels/{x}/messages"`` -> ("POST", "/channels/{}/messages")."""
    route = route.strip()
    method: Optional[str] = None
    if " " in route:
        m, route = route.split(None, 1)
        method = m.upper()
    route = route.strip()
    if route.startswith(API_PREFIX):
        route = route[len(API_PREFIX):]
    return method, re.sub(r"\{[^}]*\}", "{}", route).rstrip("/") or "/"


def bucket_hash(family: str) -> str:
    """A stable opaque bucket id for a route family, like Discord's X-RateLimit-Bucket."""
    return hashlib.sha256(("localdiscord-bucket:" + family).encode()).hexdigest()[:32]
