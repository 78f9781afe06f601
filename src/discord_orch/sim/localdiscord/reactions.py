"""The reaction routes: add and remove the bot's own reaction, list who reacted."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Tuple

from .apierror import field_error, invalid_form, merge, query_limit, unknown
from .emoji import decode_emoji_segment, parse_emoji
from .store import Store, looks_like_snowflake


class ReactionRoutes(Store):
    """Handlers: (user_id, params, query, headers, body) -> (status, JSON or None); the lock is held."""

    def _api_emoji(self, params: Mapping[str, str]) -> Tuple[str, Dict[str, Any]]:
        try:
            return parse_emoji(decode_emoji_segment(params["emoji"]))
        except (ValueError, UnicodeDecodeError):
            raise unknown("emoji") from None

    def _h_add_reaction(self, user_id: str, params: Mapping[str, str], query: Mapping[str, List[str]],
                        headers: Any, body: bytes) -> Tuple[int, Any]:
        ch, msg = self._api_message(params)
        key, ejson = self._api_emoji(params)
        self._require(ch, user_id, "READ_MESSAGE_HISTORY")
        if not msg.reactions.get(key):   # only the first reaction with an emoji needs Add Reactions
            self._require(ch, user_id, "ADD_REACTIONS")
        self._add_reaction(msg, key, ejson, user_id)
        return 204, None

    def _h_remove_reaction(self, user_id: str, params: Mapping[str, str], query: Mapping[str, List[str]],
                           headers: Any, body: bytes) -> Tuple[int, Any]:
        _ch, msg = self._api_message(params)
        key, _ejson = self._api_emoji(params)
        self._remove_reaction(msg, key, user_id)
        return 204, None

    def _h_list_reaction_users(self, user_id: str, params: Mapping[str, str], query: Mapping[str, List[str]],
                               headers: Any, body: bytes) -> Tuple[int, Any]:
        _ch, msg = self._api_message(params)
        key, _ejson = self._api_emoji(params)
        errors: Dict[str, Any] = {}
        limit = query_limit(query, 25, errors)
        after = 0
        if "after" in query:
            raw = query["after"][-1]
            if looks_like_snowflake(raw):
                after = int(raw)
            else:
                merge(errors, field_error(["after"], "NUMBER_TYPE_COERCE", f'Value "{raw}" is not snowflake.'))
        if errors:
            raise invalid_form(errors)
        if query.get("type", ["0"])[-1] == "1":
            return 200, []
        users = sorted((int(u) for u in msg.reactions.get(key, [])))
        users = [u for u in users if u > after][:limit]
        return 200, [self._user_json(str(u)) for u in users]
