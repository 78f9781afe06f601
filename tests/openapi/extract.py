"""Cut the parts of Discord's OpenAPI spec that the conformance tests use out of the full spec.

The full spec (``discord-openapi.json``, 1.2 MB, MIT: see LICENSE beside this file) is not in a
user's clone; the tests read the cut, ``discord-openapi.subset.json``, kept here. The cut holds
the path items of every route LocalDiscord serves (only the methods it serves), the schemas the
tests name, the rate-limit headers, and everything those reach through ``$ref``: a schema is
never cut in half, so validating against the cut is validating against the spec.

Refresh after LocalDiscord serves a new route or a new spec comes out:

    python tests/openapi/extract.py ../shared/discord-openapi.json
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, List, Set

HERE = Path(__file__).resolve().parent
SUBSET_PATH = HERE / "discord-openapi.subset.json"
DEFAULT_SOURCE = HERE.parents[2] / "shared" / "discord-openapi.json"

# Components the tests look up by name (test_openapi_conformance.py), beyond what the routes reach.
NAMED_SCHEMAS = (
    "UserPIIResponse", "UserResponse", "GuildMemberResponse", "GuildChannelResponse",
    "MessageResponse", "BasicMessageResponse", "MessageAttachmentResponse", "MessageReactionResponse",
    "MessageReactionEmojiResponse", "MessageReactionCountDetailsResponse", "MessageEmbedResponse",
    "MessageEmbedFieldResponse", "MessageReferenceResponse", "MessageCreateRequest",
    "MessageEditRequestPartial", "ErrorResponse", "RatelimitedResponse", "InnerErrors", "Error",
    "ThreadResponse", "ThreadMetadataResponse", "ThreadMemberResponse", "ThreadsResponse",
    "CreateTextThreadWithMessageRequest", "UpdateThreadRequestPartial",
    "MyGuildResponse", "PrivateApplicationResponse", "CreateGuildChannelRequest",   # discord-orch init's routes
)
NAMED_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "X-RateLimit-Reset-After")
KEPT_TOP_LEVEL = ("openapi", "info")


def _norm(template: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", template)


def served_routes() -> List[str]:
    """LocalDiscord's route table: ``METHOD /template`` strings."""
    from discord_orch.sim.localdiscord import LocalDiscord

    return list(LocalDiscord.ROUTES)


def _refs(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            yield ref
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _unescape(part: str) -> str:
    return part.replace("~1", "/").replace("~0", "~")


def subset(spec: Dict[str, Any], routes: Iterable[str]) -> Dict[str, Any]:
    """The cut: served path items (served methods only), named components, and their $ref closure."""
    by_norm = {_norm(p): p for p in spec["paths"]}
    out: Dict[str, Any] = {key: spec[key] for key in KEPT_TOP_LEVEL if key in spec}
    paths: Dict[str, Dict[str, Any]] = {}
    for route in routes:
        method, template = route.split(" ", 1)
        path = by_norm.get(_norm(template))
        if path is None or method.lower() not in spec["paths"][path]:
            continue   # the conformance test reports it; the cut cannot invent it
        item = spec["paths"][path]
        kept = paths.setdefault(path, {k: v for k, v in item.items() if k == "parameters"})
        kept[method.lower()] = item[method.lower()]
    out["paths"] = dict(sorted(paths.items()))
    components: Dict[str, Dict[str, Any]] = {}
    todo = [f"#/components/schemas/{n}" for n in NAMED_SCHEMAS] + [f"#/components/headers/{n}" for n in NAMED_HEADERS]
    todo += list(_refs(out["paths"]))
    seen: Set[str] = set()
    while todo:
        ref = todo.pop()
        if ref in seen:
            continue
        seen.add(ref)
        parts = [_unescape(p) for p in ref[2:].split("/")]
        if parts[0] != "components" or len(parts) != 3:
            raise SystemExit(f"unexpected $ref {ref}: extend extract.py")
        node = spec["components"][parts[1]][parts[2]]
        components.setdefault(parts[1], {})[parts[2]] = node
        todo.extend(_refs(node))
    out["components"] = {kind: dict(sorted(items.items())) for kind, items in sorted(components.items())}
    return out


def dumps(doc: Dict[str, Any]) -> str:
    """The cut as stored: compact, one stable form (so a refresh shows a real diff)."""
    return json.dumps(doc, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def main(argv: List[str]) -> int:
    source = Path(argv[1]) if len(argv) > 1 else DEFAULT_SOURCE
    if not source.is_file():
        print(f"extract.py: {source} not found (give the full spec's path)", file=sys.stderr)
        return 1
    text = dumps(subset(json.loads(source.read_text(encoding="utf-8")), served_routes()))
    SUBSET_PATH.write_text(text, encoding="utf-8")
    print(f"{SUBSET_PATH.name}: {len(text.encode()):,} bytes from {source} ({source.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
