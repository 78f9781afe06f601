"""Model prices from the user's OpenClaw config, for results openclaw did not price.

``models.providers.<provider>.models[].cost.input/.output`` are read as USD per
1,000 tokens, as the later versions of the original scripts did (see
``../shared/seed/ORIGINAL-NOTES.md``). The key is ``<provider>/<model id>``, the
same ``provider/model`` the result header shows. A config (or a part of it)
that cannot be read gives no prices: the report then says "n/a"; it never
guesses.

OpenClaw accepts JSON5 and ``$include``; both are read here as far as prices
need: comments, trailing commas, unquoted keys, single-quoted strings, and
``"$include": "<file>"`` (or a list of files, relative to the including file,
at most a few levels deep), whose keys the including file's own keys override.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

Prices = Dict[str, Tuple[float, float]]

INCLUDE_KEY = "$include"
MAX_INCLUDE_DEPTH = 4
MAX_CONFIG_BYTES = 4 * 1024 * 1024

_IDENT_START = re.compile(r"[A-Za-z_$]")
_IDENT = re.compile(r"[A-Za-z0-9_$]*")


def _json5_to_json(text: str) -> str:
    """The JSON5 subset config files use → strict JSON (strings are kept byte for byte).

    Removes ``//`` and ``/* */`` comments and trailing commas, quotes bare object
    keys and turns single-quoted strings into double-quoted ones.
    """
    out: List[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "\"'":
            j = i + 1
            body: List[str] = []
            while j < n and text[j] != c:
                if text[j] == "\\" and j + 1 < n:
                    nxt = text[j + 1]
                    body.append("'" if nxt == "'" else text[j:j + 2])  # \\' is not a JSON escape
                    j += 2
                    continue
                body.append('\\"' if (c == "'" and text[j] == '"') else text[j])
                j += 1
            out.append('"' + "".join(body) + '"')
            i = j + 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif c == ",":
            j = i + 1
            while j < n:  # a comma before } or ] (blanks and comments between) is dropped
                if text[j].isspace():
                    j += 1
                elif text.startswith("//", j):
                    end = text.find("\n", j)
                    j = n if end < 0 else end
                elif text.startswith("/*", j):
                    end = text.find("*/", j + 2)
                    j = n if end < 0 else end + 2
                else:
                    break
            if j >= n or text[j] not in "}]":
                out.append(c)
            i += 1
        elif _IDENT_START.match(c):
            m = _IDENT.match(text, i + 1)
            word = text[i:m.end()]
            k = m.end()
            while k < n and text[k] in " \t":
                k += 1
            is_key = k < n and text[k] == ":" and word not in ("true", "false", "null")
            out.append(json.dumps(word) if is_key else word)
            i = m.end()
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _parse(text: str) -> Optional[Any]:
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return json.loads(_json5_to_json(text))
    except (ValueError, RecursionError):
        return None


def _merge(base: Any, over: Any) -> Any:
    """``over`` on top of ``base``: objects merge key by key, anything else is replaced."""
    if isinstance(base, dict) and isinstance(over, dict):
        merged = dict(base)
        for key, value in over.items():
            merged[key] = _merge(merged[key], value) if key in merged else value
        return merged
    return over


def _load(path: Path, depth: int, seen: Tuple[str, ...]) -> Optional[Any]:
    real = os.path.realpath(path)
    if real in seen or depth > MAX_INCLUDE_DEPTH:
        return None
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError:
        return None
    if len(raw) > MAX_CONFIG_BYTES:
        return None
    data = _parse(raw.decode("utf-8", errors="replace").lstrip("\ufeff"))
    return _resolve_includes(data, path.parent, depth, seen + (real,))


def _resolve_includes(data: Any, base_dir: Path, depth: int, seen: Tuple[str, ...]) -> Any:
    if isinstance(data, list):
        return [_resolve_includes(v, base_dir, depth, seen) for v in data]
    if not isinstance(data, dict):
        return data
    own = {k: _resolve_includes(v, base_dir, depth, seen) for k, v in data.items() if k != INCLUDE_KEY}
    includes = data.get(INCLUDE_KEY)
    if includes is None:
        return own
    names = [includes] if isinstance(includes, str) else includes if isinstance(includes, list) else []
    merged: Any = {}
    for name in names:
        if not isinstance(name, str) or not name:
            continue
        target = Path(os.path.expanduser(name))
        included = _load(target if target.is_absolute() else base_dir / target, depth + 1, seen)
        if included is not None:
            merged = _merge(merged, included)
    return _merge(merged, own) if isinstance(merged, dict) else own


def _price(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def prices_from_config(data: Any) -> Prices:
    """``provider/model`` → (input, output) USD per 1,000 tokens, from a parsed config."""
    prices: Prices = {}
    models_section = data.get("models") if isinstance(data, dict) else None
    providers = models_section.get("providers") if isinstance(models_section, dict) else None
    if not isinstance(providers, dict):
        return prices
    for provider, entry in providers.items():
        models = entry.get("models") if isinstance(entry, dict) else None
        if not isinstance(models, list):
            continue
        for model in models:
            if not isinstance(model, dict) or not isinstance(model.get("cost"), dict):
                continue
            model_id = model.get("id")
            if not isinstance(model_id, str) or not model_id.strip():
                continue
            model_id = model_id.strip()
            pin, pout = _price(model["cost"].get("input")), _price(model["cost"].get("output"))
            if pin is None or pout is None:
                continue
            prices[f"{provider}/{model_id}"] = (pin, pout)
            if model_id.startswith(f"{provider}/"):  # an id that already names its provider
                prices.setdefault(model_id, (pin, pout))
    return prices


def load_prices(config_path: Path) -> Prices:
    """Full model id (``provider/model``) → (input, output) USD per 1,000 tokens.

    Follows ``$include``; an unreadable or invalid file gives ``{}`` (no prices, "n/a").
    """
    path = Path(os.path.expanduser(os.fspath(config_path)))
    return prices_from_config(_load(path, 0, ()))
