"""The message routes: list, get, create (JSON or multipart), edit and delete."""

from __future__ import annotations

import time
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from .apierror import ApiError, field_error, invalid_form, merge, query_limit, too_long
from .bodies import parse_body
from .store import THREAD_STARTER_MESSAGE, Store, looks_like_snowflake


class MessageRoutes(Store):
    """Handlers: (user_id, params, query, headers, body) -> (status, JSON or None); the lock is held."""

    def _h_list_messages(self, user_id: str, params: Mapping[str, str], query: Mapping[str, List[str]],
                         headers: Any, body: bytes) -> Tuple[int, Any]:
        ch = self._api_channel(params)
        errors: Dict[str, Any] = {}
        limit = query_limit(query, 50, errors)
        anchors = {}
        for key in ("around", "before", "after"):
            if key in query:
                raw = query[key][-1]
                if not looks_like_snowflake(raw):
                    merge(errors, field_error([key], "NUMBER_TYPE_COERCE", f'Value "{raw}" is not snowflake.'))
                else:
                    anchors[key] = int(raw)
        if len(anchors) > 1:
            for key in anchors:
                merge(errors, field_error([key], "BASE_TYPE_BAD_COMBINATION",
                                          "Only one of around, before or after may be given."))
        if errors:
            raise invalid_form(errors)
        msgs = ch.messages  # ascending ids
        if "after" in anchors:
            picked = [m for m in msgs if int(m.id) > anchors["after"]][:limit]
        elif "before" in anchors:
            older = [m for m in msgs if int(m.id) < anchors["before"]]
            picked = older[-limit:] if limit else []
        elif "around" in anchors:
            a = anchors["around"]
            older = [m for m in msgs if int(m.id) < a]
            newer = [m for m in msgs if int(m.id) >= a]
            n_new = min(len(newer), limit - limit // 2)
            n_old = min(len(older), limit - n_new)
            picked = (older[-n_old:] if n_old else []) + newer[:n_new]
        else:
            picked = msgs[-limit:]
        if not self._has(ch, user_id, "READ_MESSAGE_HISTORY"):
            picked = []          # Discord's docs: "then no messages will be returned" (no error)
        return 200, [self._render(m, user_id) for m in reversed(picked)]

    def _h_get_message(self, user_id: str, params: Mapping[str, str], query: Mapping[str, List[str]],
                       headers: Any, body: bytes) -> Tuple[int, Any]:
        ch, msg = self._api_message(params)
        self._require(ch, user_id, "READ_MESSAGE_HISTORY")
        return 200, self._render(msg, user_id)

    def _h_create_message(self, user_id: str, params: Mapping[str, str], query: Mapping[str, List[str]],
                          headers: Any, body: bytes) -> Tuple[int, Any]:
        ch = self._api_channel(params)
        if ch.thread is None:   # in a thread SEND_MESSAGES_IN_THREADS counts instead (threads._thread_gate)
            self._require(ch, user_id, "SEND_MESSAGES")
        payload, raw_files, errors = self._message_body(headers, body)
        nonce = payload.get("nonce")
        if nonce is not None:
            if isinstance(nonce, bool) or not isinstance(nonce, (str, int)):
                merge(errors, field_error(["nonce"], "BASE_TYPE_STRING", "This field must be a string or an integer."))
            elif isinstance(nonce, str) and len(nonce) > 25:
                merge(errors, too_long(["nonce"], 25))
            elif isinstance(nonce, int) and not (-2 ** 63 <= nonce < 2 ** 63):
                merge(errors, field_error(["nonce"], "NUMBER_TYPE_MAX", "Value is out of range."))
        files = self._build_files(payload, raw_files, errors)
        reference_id: Optional[str] = None
        ref = payload.get("message_reference")
        if ref is not None:
            if not isinstance(ref, dict):
                merge(errors, field_error(["message_reference"], "DICT_TYPE_CONVERT",
                                          "Only dictionaries may be used in a DictType"))
            else:
                rmid = ref.get("message_id")
                rcid = ref.get("channel_id") or ch.id
                fail_if_missing = ref.get("fail_if_not_exists", True) is not False
                rmid_s = str(rmid) if isinstance(rmid, (str, int)) and not isinstance(rmid, bool) else ""
                if not looks_like_snowflake(rmid_s):
                    merge(errors, field_error(["message_reference", "message_id"], "BASE_TYPE_REQUIRED",
                                              "This field is required"))
                elif str(rcid) != ch.id:
                    merge(errors, field_error(["message_reference"], "REPLIES_CANNOT_REFERENCE_OTHER_CHANNEL",
                                              "Cannot reply to a message in a different channel"))
                elif rmid_s in ch.by_id:
                    reference_id = rmid_s
                elif fail_if_missing:
                    merge(errors, field_error(["message_reference"], "MESSAGE_REFERENCE_UNKNOWN_MESSAGE",
                                              "Unknown message"))
        if errors:
            raise invalid_form(errors)
        if files and ch.thread is None:
            self._require(ch, user_id, "ATTACH_FILES")
        if reference_id is not None:
            self._require(ch, user_id, "READ_MESSAGE_HISTORY")
        content = payload.get("content") or ""
        embeds = [self._clean_embed(e) for e in (payload.get("embeds") or [])]
        if not content.strip() and not embeds and not files and not payload.get("sticker_ids") \
                and not payload.get("components") and not payload.get("poll"):
            raise ApiError(400, 50006, "Cannot send an empty message")
        if nonce is not None and payload.get("enforce_nonce") is True:
            key = (user_id, repr(nonce))
            hit = self._nonces.get(key)
            now = time.monotonic()
            if hit is not None and now - hit[2] <= self.nonce_window:
                old_ch = self._channels.get(hit[0])
                old = old_ch.by_id.get(hit[1]) if old_ch else None
                if old is not None:
                    return 200, self._render(old, user_id, with_nonce=True)
        am = payload.get("allowed_mentions")
        msg = self._create(ch, user_id, content=content, embeds=embeds, files=files, reference_id=reference_id,
                           allowed_mentions=dict(am) if isinstance(am, dict) else None,
                           tts=bool(payload.get("tts")), flags=int(payload.get("flags") or 0) & (4 | 4096),
                           nonce=nonce)
        msg.components = self._components(payload.get("components"))   # type: ignore[attr-defined]
        if nonce is not None and payload.get("enforce_nonce") is True:
            self._nonces[(user_id, repr(nonce))] = (ch.id, msg.id, time.monotonic())
        return 200, self._render(msg, user_id, with_nonce=True)

    def _h_edit_message(self, user_id: str, params: Mapping[str, str], query: Mapping[str, List[str]],
                        headers: Any, body: bytes) -> Tuple[int, Any]:
        ch, msg = self._api_message(params)
        if msg.author_id != user_id:
            raise ApiError(403, 50005, "Cannot edit a message authored by another user")
        payload, raw_files, errors = self._message_body(headers, body)
        files = self._build_files(payload, raw_files, errors)
        if errors:
            raise invalid_form(errors)
        content = msg.content if "content" not in payload else (payload.get("content") or "")
        embeds = msg.embeds if "embeds" not in payload else [self._clean_embed(e) for e in payload.get("embeds") or []]
        keep = msg.attachments
        if isinstance(payload.get("attachments"), list):
            ids = {str(a.get("id")) for a in payload["attachments"] if isinstance(a, dict)}
            keep = [a for a in msg.attachments if a.id in ids]
        if not content.strip() and not embeds and not keep and not files:
            raise ApiError(400, 50006, "Cannot send an empty message")
        for a in msg.attachments:
            if a not in keep:
                self._attachments.pop(a.id, None)
        self._versions.setdefault(msg.id, [msg.content]).append(content)
        msg.content = content
        msg.embeds = embeds
        msg.attachments = list(keep) + [self._new_attachment(ch.id, msg.id, n, d, desc) for n, d, desc in files]
        if "components" in payload:
            msg.components = self._components(payload.get("components"))   # type: ignore[attr-defined]
        if "flags" in payload and payload["flags"] is not None:
            msg.flags = int(payload["flags"]) & (4 | 4096)
        if "allowed_mentions" in payload:
            am = payload.get("allowed_mentions")
            msg.allowed_mentions = dict(am) if isinstance(am, dict) else None
        msg.edited_ms = int(time.time() * 1000)
        self._compute_mentions(msg)
        return 200, self._render(msg, user_id)

    def _h_delete_message(self, user_id: str, params: Mapping[str, str], query: Mapping[str, List[str]],
                          headers: Any, body: bytes) -> Tuple[int, Any]:
        ch, msg = self._api_message(params)
        if msg.type == THREAD_STARTER_MESSAGE:   # not deletable (Discord's message types table)
            raise ApiError(400, 50021, "Cannot execute action on a system message")
        self._delete(ch, msg.id)
        return 204, None

    def _message_body(self, headers: Any,
                      body: bytes) -> Tuple[Dict[str, Any], List[Tuple[str, bytes, Optional[int]]], Dict[str, Any]]:
        """A create's or edit's payload and files (too large a file: 413), and its field errors so far."""
        payload, raw_files = parse_body(headers, body)
        for _name, data, _idx in raw_files:
            if len(data) > self.max_file_size:
                raise ApiError(413, 40005, "Request entity too large")
        errors: Dict[str, Any] = {}
        self._validate_message_fields(payload, errors)
        return payload, raw_files, errors

    def _validate_message_fields(self, payload: Mapping[str, Any], errors: Dict[str, Any]) -> None:
        content = payload.get("content")
        if content is not None:
            if not isinstance(content, str):
                merge(errors, field_error(["content"], "BASE_TYPE_STRING", "This field must be a string."))
            elif len(content) > self.max_content_length:
                merge(errors, too_long(["content"], self.max_content_length))
        embeds = payload.get("embeds")
        if embeds is not None:
            if not isinstance(embeds, list):
                merge(errors, field_error(["embeds"], "BASE_TYPE_LIST", "Must be an array."))
            else:
                self._validate_embeds(embeds, errors)
        am = payload.get("allowed_mentions")
        if am is not None:
            if not isinstance(am, dict):
                merge(errors, field_error(["allowed_mentions"], "DICT_TYPE_CONVERT",
                                          "Only dictionaries may be used in a DictType"))
            else:
                parse = am.get("parse") or []
                if not isinstance(parse, list) or any(p not in ("users", "roles", "everyone") for p in parse):
                    merge(errors, field_error(["allowed_mentions", "parse"], "BASE_TYPE_CHOICES",
                                              "Value must be one of {'users', 'roles', 'everyone'}."))
                else:
                    for kind in ("users", "roles"):
                        if kind in parse and am.get(kind):
                            merge(errors, field_error(
                                ["allowed_mentions"], "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                                f'parse:["{kind}"] and {kind}: [ids...] are mutually exclusive.'))
        flags = payload.get("flags")
        if flags is not None and (not isinstance(flags, int) or isinstance(flags, bool)):
            merge(errors, field_error(["flags"], "NUMBER_TYPE_COERCE", f'Value "{flags}" is not int.'))

    def _validate_embeds(self, embeds: List[Any], errors: Dict[str, Any]) -> None:
        if len(embeds) > 10:
            merge(errors, too_long(["embeds"], 10))
            return
        total = 0
        for i, e in enumerate(embeds):
            if not isinstance(e, dict):
                merge(errors, field_error(["embeds", i], "DICT_TYPE_CONVERT",
                                          "Only dictionaries may be used in a DictType"))
                continue

            def text(*path: Union[str, int], limit: int, src: Mapping[str, Any] = e) -> int:
                value = src.get(path[-1])
                if value is None:
                    return 0
                if not isinstance(value, str):
                    merge(errors, field_error(["embeds", i, *path], "BASE_TYPE_STRING", "This field must be a string."))
                    return 0
                if len(value) > limit:
                    merge(errors, too_long(["embeds", i, *path], limit))
                return len(value)

            total += text("title", limit=256)
            total += text("description", limit=4096)
            for sub, key, limit in (("footer", "text", 2048), ("author", "name", 256)):
                obj = e.get(sub)
                if isinstance(obj, dict):
                    value = obj.get(key)
                    if isinstance(value, str):
                        total += len(value)
                        if len(value) > limit:
                            merge(errors, too_long(["embeds", i, sub, key], limit))
            fields = e.get("fields")
            if fields is not None:
                if not isinstance(fields, list):
                    merge(errors, field_error(["embeds", i, "fields"], "BASE_TYPE_LIST", "Must be an array."))
                elif len(fields) > 25:
                    merge(errors, too_long(["embeds", i, "fields"], 25))
                else:
                    for j, f in enumerate(fields):
                        if not isinstance(f, dict):
                            continue
                        for key, limit in (("name", 256), ("value", 1024)):
                            value = f.get(key)
                            if value is None or value == "":
                                merge(errors, field_error(["embeds", i, "fields", j, key], "BASE_TYPE_REQUIRED",
                                                          "This field is required"))
                            elif isinstance(value, str):
                                total += len(value)
                                if len(value) > limit:
                                    merge(errors, too_long(["embeds", i, "fields", j, key], limit))
        if total > 6000:
            merge(errors, field_error(["embeds"], "MAX_EMBED_SIZE_EXCEEDED",
                                      "Embed size exceeds maximum size of 6000"))

    @staticmethod
    def _clean_embed(e: Mapping[str, Any]) -> Dict[str, Any]:
        """A request embed (validated) as Discord answers it: nulls dropped, type "rich",
        field ``inline`` defaulted, footer / author only with their required text."""
        out: Dict[str, Any] = {"type": e.get("type") or "rich"}
        for key in ("url", "title", "description", "color", "timestamp"):
            if e.get(key) is not None:
                out[key] = e[key]
        if isinstance(e.get("fields"), list):
            out["fields"] = [{"name": f["name"], "value": f["value"], "inline": bool(f.get("inline"))}
                             for f in e["fields"] if isinstance(f, dict)]
        for key, required in (("footer", "text"), ("author", "name")):
            sub = e.get(key)
            if isinstance(sub, dict) and isinstance(sub.get(required), str):
                out[key] = {k: v for k, v in sub.items() if v is not None and k in (required, "url", "icon_url")}
        for key in ("image", "thumbnail", "video"):
            sub = e.get(key)
            if isinstance(sub, dict) and isinstance(sub.get("url"), str):
                out[key] = {k: v for k, v in sub.items() if v is not None and k in ("url", "width", "height")}
        if isinstance(e.get("provider"), dict):
            out["provider"] = {k: v for k, v in e["provider"].items() if v is not None and k in ("name", "url")}
        return out

    def _build_files(self, payload: Mapping[str, Any], files: List[Tuple[str, bytes, Optional[int]]],
                     errors: Dict[str, Any]) -> List[Tuple[str, bytes, Optional[str]]]:
        meta: Dict[int, Mapping[str, Any]] = {}
        atts = payload.get("attachments")
        if isinstance(atts, list):
            for a in atts:
                if isinstance(a, dict) and str(a.get("id", "")).isdigit():
                    meta[int(a["id"])] = a
        out = []
        for pos, (name, data, idx) in enumerate(files):
            m = meta.get(idx if idx is not None else pos, {})
            fname = m.get("filename") or name
            out.append((str(fname), data, m.get("description")))
        if len(out) > self.max_files:
            merge(errors, too_long(["attachments"], self.max_files))
        return out
