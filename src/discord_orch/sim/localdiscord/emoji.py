"""Reaction emoji as Discord takes them in a path: unicode emoji or a custom ``name:id``."""

from __future__ import annotations

import re
import unicodedata
import urllib.parse
from typing import Any, Dict, Tuple

_EMOJI_EXTRA = {0x00A9, 0x00AE, 0x203C, 0x2049, 0x2122, 0x2139, 0x24C2, 0x3030, 0x303D, 0x3297, 0x3299}
_EMOJI_JOINERS = {0x200D, 0xFE0E, 0xFE0F, 0x20E3}
_CUSTOM_EMOJI = re.compile(r"^(?:a:)?([A-Za-z0-9_]{2,32}):([0-9]{1,20})$")


def _is_unicode_emoji(s: str) -> bool:
    if not s or len(s) > 32:
        return False
    keycap = "\u20e3" in s
    seen = False
    for ch in s:
        cp = ord(ch)
        if cp in _EMOJI_JOINERS or 0x1F3FB <= cp <= 0x1F3FF or 0xE0020 <= cp <= 0xE007F:
            continue
        if keycap and ch in "0123456789#*":
            seen = True
            continue
        if (unicodedata.category(ch) == "So" or cp in _EMOJI_EXTRA or 0x1F000 <= cp <= 0x1FAFF):
            seen = True
            continue
        return False
    return seen


def parse_emoji(text: str) -> Tuple[str, Dict[str, Any]]:
    """Emoji text (already URL-decoded) -> (key, emoji JSON). ValueError if not an emoji."""
    m = _CUSTOM_EMOJI.match(text)
    if m:
        return f"{m.group(1)}:{m.group(2)}", {"id": m.group(2), "name": m.group(1)}
    if _is_unicode_emoji(text):
        return text, {"id": None, "name": text}
    raise ValueError(f"not an emoji: {text!r}")


def decode_emoji_segment(seg: str) -> str:
    # http.server decodes the request line as latin-1: recover the raw bytes first.
    raw = urllib.parse.unquote_to_bytes(seg.encode("latin-1", "replace"))
    return raw.decode("utf-8")  # strict: undecodable bytes -> UnicodeDecodeError
