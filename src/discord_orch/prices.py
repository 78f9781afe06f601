"""Model prices from the user's OpenClaw config, for results openclaw did not price.

``models.providers.<provider>.models[].cost.input/.output`` are read as USD per
1,000 tokens, as the later versions of the original scripts did. A config that
cannot be read gives no prices (the report then says "n/a"; it never guesses).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict, Tuple

Prices = Dict[str, Tuple[float, float]]

_LINE_COMMENT = re.compile(r'^\s*//.*$', re.MULTILINE)


def load_prices(config_path: Path) -> Prices:
    """Full model id (``provider/model``) → (input, output) USD per 1,000 tokens."""
    try:
        text = Path(config_path).expanduser().read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        try:  # OpenClaw accepts JSON5; whole-line // comments are the common case
            data = json.loads(_LINE_COMMENT.sub("", text))
        except ValueError:
            return {}
    prices: Prices = {}
    providers = ((data.get("models") or {}).get("providers") or {}) if isinstance(data, dict) else {}
    if not isinstance(providers, dict):
        return {}
    for provider, entry in providers.items():
        models = entry.get("models") if isinstance(entry, dict) else None
        for model in models or ():
            if not isinstance(model, dict) or not isinstance(model.get("cost"), dict):
                continue
            cost = model["cost"]
            try:
                pin, pout = float(cost["input"]), float(cost["output"])
            except (KeyError, TypeError, ValueError):
                continue
            prices[f"{provider}/{model.get('id')}"] = (pin, pout)
    return prices
