"""Slash commands and the answers to interactions, on the loopback Discord.

Verified (Discord's docs, github.com/discord/discord-api-docs: interactions/receiving-and-responding.mdx,
interactions/application-commands.mdx, topics/opcodes-and-status-codes.mdx; the OpenAPI spec's
paths; ../shared/DISCORD-NOTES.md)
    * ``PUT /applications/{application_id}/guilds/{guild_id}/commands`` replaces the guild's
      commands (guild commands take effect at once); ``GET`` lists them. A command: ``name``
      1-32 characters (lower case), ``description`` 1-100, ``type`` 1 (CHAT_INPUT), ``options``;
      answered as ApplicationCommandResponse (id, application_id, version, type, name,
      description, default_member_permissions, guild_id).
    * Over the Gateway an interaction goes to one session (INTERACTION_CREATE, no intent needed),
      with ``id``, ``token``, ``application_id``, ``type`` (2 APPLICATION_COMMAND, 3
      MESSAGE_COMPONENT, 4 APPLICATION_COMMAND_AUTOCOMPLETE: the focused option ``focused``, answered
      with type 8 and at most 25 ``choices``), ``data``, ``guild_id``, ``channel_id``, ``member`` (with ``user``).
    * ``POST /interactions/{id}/{token}/callback`` (no bot token needed): 204; within 3 seconds of
      the interaction, else 404 10062 "Unknown interaction"; a second answer 400 40060
      "Interaction has already been acknowledged." Flag 64 makes an answer ephemeral.

    * A message's ``components``: action rows (type 1) of 1-5 buttons (type 2, style, ``custom_id``
      1-100 characters); each gets an ``id`` in the answer (spec ButtonComponentResponse requires it).

Not emulated: follow-up webhooks, link buttons, selects, modals, autocomplete, global commands, permissions of commands.
Test levers: ``interact_command``, ``interact_button`` (each returns the interaction's id, or None
when no session of the bot was connected), ``interaction_answer``, ``interaction_deadline``.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .apierror import ApiError, field_error, invalid_form
from .store import Store

NAME = re.compile(r"^[-_\w]{1,32}$")


class InteractionRoutes(Store):
    interaction_deadline = 3.0   # seconds an interaction may wait for its first answer

    def _interactions(self) -> Dict[str, Dict[str, Any]]:
        if not hasattr(self, "_interaction_log"):
            self._interaction_log: Dict[str, Dict[str, Any]] = {}
            self._guild_commands: Dict[Tuple[str, str], List[Dict[str, Any]]] = {}
        return self._interaction_log

    def _commands_of(self, app_id: str, guild_id: str) -> List[Dict[str, Any]]:
        self._interactions()
        return self._guild_commands.setdefault((app_id, guild_id), [])

    # -- people act ------------------------------------------------------------------
    def interact_command(self, bot_id: str, user_id: str, channel_id: str, name: str,
                         options: Mapping[str, Any] = {},
                         files: Mapping[str, Tuple[str, bytes]] = {}) -> Optional[str]:
        """``user_id`` runs /``name`` in ``channel_id`` (the command must be registered for the bot); ``files``:
        ATTACHMENT options (name → (filename, bytes)), uploaded first and given in ``resolved.attachments``."""
        with self._lock:
            ch = self._channel(channel_id)
            command = next((c for c in self._commands_of(bot_id, ch.guild_id) if c["name"] == name), None)
            if command is None:
                raise KeyError(f"/{name} is not registered in guild {ch.guild_id}")
            data: Dict[str, Any] = {"id": command["id"], "name": name, "type": 1,
                                    "options": [{"name": k, "type": 3, "value": v} for k, v in options.items()]}
            for option, (filename, blob) in files.items():
                att = self._new_attachment(ch.id, self._next_id(), filename, blob, None)
                data["options"].append({"name": option, "type": 11, "value": att.id})
                data.setdefault("resolved", {}).setdefault("attachments", {})[att.id] = \
                    self._attachment_json(ch.id, att)
            return self._interaction(bot_id, user_id, ch.id, 2, data)

    def interact_autocomplete(self, bot_id: str, user_id: str, channel_id: str, name: str, option: str,
                              typed: str) -> Optional[str]:
        """``user_id`` is typing ``typed`` into the option ``option`` of /``name`` (Discord asks for choices)."""
        with self._lock:
            ch = self._channel(channel_id)
            command = next((c for c in self._commands_of(bot_id, ch.guild_id) if c["name"] == name), None)
            if command is None:
                raise KeyError(f"/{name} is not registered in guild {ch.guild_id}")
            data = {"id": command["id"], "name": name, "type": 1,
                    "options": [{"name": option, "type": 3, "value": typed, "focused": True}]}
            return self._interaction(bot_id, user_id, ch.id, 4, data)

    def interact_button(self, bot_id: str, user_id: str, channel_id: str, message_id: str,
                        custom_id: str) -> Optional[str]:
        """``user_id`` clicks the button ``custom_id`` on a message."""
        with self._lock:
            ch = self._channel(channel_id)
            self._message(channel_id, message_id)
            data = {"custom_id": custom_id, "component_type": 2}
            return self._interaction(bot_id, user_id, ch.id, 3, data, message_id=message_id)

    def interaction_answer(self, interaction_id: str) -> Optional[Dict[str, Any]]:
        """The first answer the bot gave (the callback's body), or None."""
        with self._lock:
            return self._interactions()[interaction_id].get("answer")

    def _interaction(self, bot_id: str, user_id: str, channel_id: str, kind: int, data: Dict[str, Any],
                     message_id: Optional[str] = None) -> Optional[str]:
        gateway = self._gateway   # type: ignore[attr-defined]
        ch = self._channels[channel_id]
        iid, token = self._next_id(), secrets.token_urlsafe(24)
        body: Dict[str, Any] = {"id": iid, "token": token, "application_id": bot_id, "type": kind, "data": data,
                                "guild_id": ch.guild_id, "channel_id": ch.id, "version": 1, "locale": "en-US",
                                "member": {"user": self._user_json(user_id), "roles": [], "permissions": "0"}}
        if message_id is not None:
            body["message"] = self._render(self._message(channel_id, message_id), bot_id)
        self._interactions()[iid] = {"token": token, "at": time.monotonic(), "answer": None}
        if gateway is None or not gateway.dispatch_one(bot_id, "INTERACTION_CREATE", body):
            return None
        return iid

    def _components(self, rows: Any) -> List[Dict[str, Any]]:
        """A message's ``components`` as Discord keeps them: action rows (type 1) of at most 5 buttons (type 2,
        style 1-4 with a ``custom_id`` of 1-100 characters), each given an ``id``; else 50035."""
        if rows is None:
            return []
        out, n = [], 0
        for r, row in enumerate(rows if isinstance(rows, list) else [None]):
            buttons = row.get("components") if isinstance(row, dict) and row.get("type") == 1 else None
            if not isinstance(buttons, list) or not 1 <= len(buttons) <= 5:
                raise invalid_form(field_error(["components", str(r)], "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                                               "An action row holds 1 to 5 buttons"))
            n += 1
            kept = {"type": 1, "id": n, "components": []}
            for b, button in enumerate(buttons):
                ok = isinstance(button, dict) and button.get("type") == 2 and button.get("style") in (1, 2, 3, 4)
                custom = button.get("custom_id") if ok else None
                if not isinstance(custom, str) or not 1 <= len(custom) <= 100:
                    raise invalid_form(field_error(["components", str(r), "components", str(b)],
                                                   "BASE_TYPE_REQUIRED", "A button needs a style and a custom_id"))
                n += 1
                kept["components"].append({"type": 2, "id": n, "style": button["style"], "custom_id": custom,
                                           "label": str(button.get("label") or ""),
                                           "disabled": bool(button.get("disabled"))})
            out.append(kept)
        return out

    # -- routes ----------------------------------------------------------------------
    def _h_list_guild_commands(self, user_id: str, params: Mapping[str, str], query: Mapping[str, List[str]],
                               headers: Any, body: bytes) -> Tuple[int, Any]:
        self._own_application(user_id, params)
        return 200, [dict(c) for c in self._commands_of(params["application_id"], params["guild_id"])]

    def _h_set_guild_commands(self, user_id: str, params: Mapping[str, str], query: Mapping[str, List[str]],
                              headers: Any, body: bytes) -> Tuple[int, Any]:
        self._own_application(user_id, params)
        try:
            wanted = json.loads(body or b"null")
        except ValueError:
            raise ApiError(400, 50109, "The request body contains invalid JSON.") from None
        if not isinstance(wanted, list):
            raise invalid_form(field_error([], "BASE_TYPE_REQUIRED", "This field is required"))
        made = []
        for n, c in enumerate(wanted):
            name, description = c.get("name") if isinstance(c, dict) else None, (c or {}).get("description")
            if not isinstance(name, str) or not NAME.match(name) or name != name.lower():
                raise invalid_form(field_error([str(n), "name"], "APPLICATION_COMMAND_INVALID_NAME",
                                               "Command name is invalid"))
            if not isinstance(description, str) or not 1 <= len(description) <= 100:
                raise invalid_form(field_error([str(n), "description"], "BASE_TYPE_BAD_LENGTH",
                                               "Must be between 1 and 100 in length."))
            made.append({"id": self._next_id(), "application_id": params["application_id"], "version": self._next_id(),
                         "default_member_permissions": None, "type": int(c.get("type") or 1), "name": name,
                         "description": description, "guild_id": params["guild_id"],
                         "options": list(c.get("options") or []), "nsfw": False})
        commands = self._commands_of(params["application_id"], params["guild_id"])
        commands[:] = made
        return 200, [dict(c) for c in made]

    def _h_interaction_callback(self, user_id: Optional[str], params: Mapping[str, str],
                                query: Mapping[str, List[str]], headers: Any, body: bytes) -> Tuple[int, Any]:
        got = self._interactions().get(params["interaction_id"])
        if got is None or got["token"] != params["interaction_token"] or \
                (got["answer"] is None and time.monotonic() - got["at"] > self.interaction_deadline):
            raise ApiError(404, 10062, "Unknown interaction")
        if got["answer"] is not None:
            raise ApiError(400, 40060, "Interaction has already been acknowledged.")
        try:
            answer = json.loads(body or b"null")
        except ValueError:
            raise ApiError(400, 50109, "The request body contains invalid JSON.") from None
        if not isinstance(answer, dict) or answer.get("type") not in (1, 4, 5, 6, 7, 8, 9, 12):
            raise invalid_form(field_error(["type"], "BASE_TYPE_CHOICES",
                                           "Value must be one of (1, 4, 5, 6, 7, 8, 9)."))
        got["answer"] = answer
        return 204, None

    def _own_application(self, user_id: str, params: Mapping[str, str]) -> None:
        if params["application_id"] != user_id:   # a bot's application id is its user id here (guilds.py)
            raise ApiError(403, 50001, "Missing Access")
        guild = self._guilds.get(params["guild_id"])
        if guild is None:
            raise ApiError(404, 10004, "Unknown Guild")
        if user_id not in guild.members:
            raise ApiError(403, 50001, "Missing Access")
