"""The one exception tree of discord-orch.

Every error the package raises on purpose derives from :class:`OrchError`.
Exceptions carry data (status, code, key, path...) and build their one-line,
human-readable message in ``__str__``; nothing here ever holds the bot token.
Only ``cli.py`` turns them into exit codes (``exit_code`` is a hint it reads).

The tree is deliberately shallow::

    OrchError
    ├── InputError             bad input on the command line (exit 2)
    ├── ConfigError            a key is missing or malformed
    ├── StateError             .runtime/ or a workspace cannot be written
    ├── AgentError             the agent could not be started at all
    └── DiscordError           Discord answered with an error, or not at all
        ├── Unauthorized       401: token wrong or reset
        ├── Forbidden          403: missing access / permission
        ├── NotFound           404: unknown channel / message / ...
        ├── BadRequest         400 and other 4xx: Discord's code and field errors
        ├── RateLimitedTooLong a rate-limit wait would exceed the configured cap
        ├── DiscordUnavailable 5xx or connection errors after bounded retries
        └── AttachmentTooLarge a download would exceed the caller's byte limit
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_DISCORD = 4
EXIT_STATE = 5
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class OrchError(Exception):
    """Common root. Subclasses keep their data as attributes."""

    exit_code = EXIT_FAILURE

    def __str__(self) -> str:  # pragma: no cover - overridden everywhere
        return self.__class__.__name__


class InputError(OrchError):
    """Bad command-line input: unknown alias or level, empty task, unreadable file."""

    exit_code = EXIT_USAGE

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem

    def __str__(self) -> str:
        return self.problem


class ConfigError(OrchError):
    """A configuration value is missing, malformed or contradictory."""

    exit_code = EXIT_CONFIG

    def __init__(self, key: str, problem: str, hint: str = "") -> None:
        super().__init__(key, problem, hint)
        self.key = key
        self.problem = problem
        self.hint = hint

    def __str__(self) -> str:
        msg = f"config: {self.key}: {self.problem}" if self.key else f"config: {self.problem}"
        return f"{msg} ({self.hint})" if self.hint else msg


class StateError(OrchError):
    """The home directory, .runtime/ or a workspace cannot be written or read."""

    exit_code = EXIT_STATE

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(path, problem)
        self.path = path
        self.problem = problem

    def __str__(self) -> str:
        return f"cannot use {self.path}: {self.problem}"


class AgentError(OrchError):
    """The agent executable could not be found or started."""

    def __init__(self, program: str, problem: str) -> None:
        super().__init__(program, problem)
        self.program = program
        self.problem = problem

    def __str__(self) -> str:
        return f"agent {self.program!r}: {self.problem}"


class DiscordError(OrchError):
    """Discord answered a request with an error (or could not be reached).

    ``route`` is the route template (``POST /channels/{channel_id}/messages``),
    never a full URL with query parameters, and never a header.
    """

    exit_code = EXIT_DISCORD
    what = "Discord error"

    def __init__(
        self,
        method: str = "",
        route: str = "",
        status: Optional[int] = None,
        code: Optional[int] = None,
        message: str = "",
        *,
        channel_id: Optional[str] = None,
        errors: Optional[Mapping[str, Any]] = None,
    ) -> None:
        super().__init__(method, route, status, code, message)
        self.method = method
        self.route = route
        self.status = status
        self.code = code
        self.message = message
        self.channel_id = channel_id
        self.errors = dict(errors or {})

    def _where(self) -> str:
        where = f"{self.method} {self.route}".strip()
        if self.channel_id:
            where += f" (channel {self.channel_id})"
        return where

    def __str__(self) -> str:
        parts = [self.what]
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        if self.code:
            parts.append(f"code {self.code}")
        head = " ".join(parts)
        detail = self.message or ""
        field_errors = _flatten_field_errors(self.errors)
        if field_errors:
            detail = f"{detail}: {field_errors}" if detail else field_errors
        where = self._where()
        out = f"{head} on {where}" if where else head
        return f"{out}: {detail}" if detail else out


class Unauthorized(DiscordError):
    what = "Discord rejected the bot token (401; wrong or reset token: check CHIP_TOKEN / ORCHESTRATOR_AGENT_TOKEN)"


class Forbidden(DiscordError):
    what = "Discord refused access (403; the bot lacks a permission or cannot see the channel)"


class NotFound(DiscordError):
    what = "Discord does not know this (404)"


class BadRequest(DiscordError):
    what = "Discord rejected the request"


class RateLimitedTooLong(DiscordError):
    """Waiting for the rate limit would take longer than the configured cap."""

    what = "rate limited for too long"

    def __init__(self, method: str, route: str, retry_after: float, cap: float, *,
                 is_global: bool = False, channel_id: Optional[str] = None) -> None:
        super().__init__(method, route, 429, None, "", channel_id=channel_id)
        self.retry_after = retry_after
        self.cap = cap
        self.is_global = is_global

    def __str__(self) -> str:
        scope = "global " if self.is_global else ""
        return (f"{scope}rate limit on {self._where()} asks for {self.retry_after:.2f}s, "
                f"more than the {self.cap:.2f}s cap (try again later)")


class DiscordUnavailable(DiscordError):
    """5xx answers or connection errors, after the client's bounded retries."""

    what = "Discord is unavailable"

    def __init__(self, method: str, route: str, attempts: int, last: str, *,
                 status: Optional[int] = None, channel_id: Optional[str] = None) -> None:
        super().__init__(method, route, status, None, last, channel_id=channel_id)
        self.attempts = attempts
        self.last = last

    def __str__(self) -> str:
        return f"Discord is unavailable on {self._where()} after {self.attempts} attempt(s): {self.last}"


class AttachmentTooLarge(DiscordError):
    """An attachment is bigger than the caller's limit; the download stopped there."""

    what = "attachment too large"

    def __init__(self, size: Optional[int], limit: int, *, filename: str = "",
                 channel_id: Optional[str] = None) -> None:
        super().__init__("GET", "{attachment_url}", None, None, "", channel_id=channel_id)
        self.size = size  # None: no Content-Length, known only to exceed the limit
        self.limit = limit
        self.filename = filename

    def __str__(self) -> str:
        name = f" {self.filename!r}" if self.filename else ""
        size = f"{self.size} bytes" if self.size is not None else f"more than {self.limit} bytes"
        return f"attachment{name} is {size}, over the {self.limit}-byte limit (not downloaded)"


def _flatten_field_errors(errors: Mapping[str, Any], prefix: str = "") -> str:
    """Discord's nested ``errors`` object as ``field.path: message; ...``."""
    out = []
    for key, value in errors.items():
        if key == "_errors" and isinstance(value, list):
            msgs = ", ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in value)
            out.append(f"{prefix or '(body)'}: {msgs}")
        elif isinstance(value, Mapping):
            nested = _flatten_field_errors(value, f"{prefix}.{key}" if prefix else str(key))
            if nested:
                out.append(nested)
    return "; ".join(out)
