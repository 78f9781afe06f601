"""Discord's error answers: the JSON error body, field errors of 50035 and the usual 404 codes."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union


class ApiError(Exception):
    """Discord's answer to a refused request: HTTP status, JSON error code, message, field errors."""

    def __init__(self, status: int, code: int, message: str, errors: Optional[Mapping[str, Any]] = None,
                 headers: Sequence[Tuple[str, str]] = ()) -> None:
        super().__init__(status, code, message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors
        self.headers = list(headers)

    def body(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors:
            out["errors"] = self.errors
        return out


def query_limit(query: Mapping[str, List[str]], default: int, errors: Dict[str, Any]) -> int:
    """The ``limit`` query parameter (1-100), recording Discord's field errors when it is off."""
    if "limit" not in query:
        return default
    raw = query["limit"][-1]
    try:
        limit = int(raw)
    except ValueError:
        merge(errors, field_error(["limit"], "NUMBER_TYPE_COERCE", f'Value "{raw}" is not int.'))
        return default
    if limit < 1:
        merge(errors, field_error(["limit"], "NUMBER_TYPE_MIN", "int value should be greater than or equal to 1."))
    elif limit > 100:
        merge(errors, field_error(["limit"], "NUMBER_TYPE_MAX", "int value should be less than or equal to 100."))
    return limit


def field_error(path: Sequence[Union[str, int]], code: str, message: str) -> Dict[str, Any]:
    """Discord's nested 50035 field error for ``path``: ``{a: {b: {_errors: [...]}}}``."""
    node: Dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for key in reversed(list(path)):
        node = {str(key): node}
    return node


def merge(into: Dict[str, Any], other: Mapping[str, Any]) -> None:
    """Merge the field errors ``other`` into ``into`` (in place)."""
    for k, v in other.items():
        if k in into and isinstance(into[k], dict) and isinstance(v, Mapping) and k != "_errors":
            merge(into[k], v)
        elif k == "_errors" and k in into:
            into[k].extend(v)
        else:
            into[k] = v


def invalid_form(errors: Mapping[str, Any]) -> ApiError:
    """50035 Invalid Form Body with these field errors."""
    return ApiError(400, 50035, "Invalid Form Body", dict(errors))


def too_long(path: Sequence[Union[str, int]], n: int) -> Dict[str, Any]:
    """The field error of a value longer than ``n``."""
    return field_error(path, "BASE_TYPE_MAX_LENGTH", f"Must be {n} or fewer in length.")


_UNKNOWN = {
    "channel": (404, 10003, "Unknown Channel"),
    "guild": (404, 10004, "Unknown Guild"),
    "member": (404, 10007, "Unknown Member"),
    "message": (404, 10008, "Unknown Message"),
    "emoji": (400, 10014, "Unknown Emoji"),
}
DENY_MESSAGES = {50001: "Missing Access", 50013: "Missing Permissions"}
MISSING_PERMISSIONS = 50013
MISSING_ACCESS = 50001


def missing_permissions() -> ApiError:
    """403 50013: the user sees the channel but lacks a permission there."""
    return ApiError(403, MISSING_PERMISSIONS, DENY_MESSAGES[MISSING_PERMISSIONS])


def unknown(what: str) -> ApiError:
    """The 404 (400 for an emoji) Discord answers for an unknown ``what``."""
    status, code, msg = _UNKNOWN[what]
    return ApiError(status, code, msg)
