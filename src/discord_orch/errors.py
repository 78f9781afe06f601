"""The one exception tree of discord-orch.

Every error the package raises on purpose derives from :class:`OrchError`.
Exceptions carry data (status, code, key, path...) and build their one-line,
human-readable message in ``__str__``; nothing here ever holds the bot token.
Only ``cli.py`` turns them into exit codes (``exit_code`` is a hint it reads).

The tree is deliberately shallow::

    OrchError
    ├── InputError             bad input on the command line (exit 2)
    ├── ConfigError            a key is missing or malformed
    ├── SetupError             init / schedule cannot go on (the bot in no server, a file kept...)
    ├── StateError             .runtime/ or a workspace cannot be written
    ├── AgentError             the agent could not be started at all
    ├── TransitionError        a task record asked to skip or reverse a step (a bug)
    ├── InternalError          a job on a lane raised what is not ours (a bug), in one line
    └── DiscordError           Discord answered with an error, or not at all
        ├── Unauthorized       401: token wrong or reset
        ├── Forbidden          403: missing access / permission
        ├── NotFound           404: unknown channel / message / ...
        ├── BadRequest         400 and other 4xx: Discord's code and field errors
        │   ├── ThreadAlreadyExists  160004: the message has a thread (maybe one's own)
        │   └── TooManyActiveThreads 160006: the server is at its active-thread cap
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
EXIT_HUNG = 70        # the watchdog ended a pass that stood still (sysexits' EX_SOFTWARE)
EXIT_SIGHUP = 129
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


class SetupError(OrchError):
    """`discord-orch init` or `schedule` cannot go on; the message says what to do (exit 1 unless told)."""

    def __init__(self, problem: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(problem)
        self.problem = problem
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.problem


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


class TransitionError(OrchError):
    """A task's record was asked for a step its status does not allow (see state.TRANSITIONS).

    Always a bug: the pass that hits one stops (the record stays as it was), and
    the next pass carries on from the last step that was written.
    """

    def __init__(self, task_id: str, current: Optional[str], wanted: str) -> None:
        super().__init__(task_id, current, wanted)
        self.task_id = task_id
        self.current = current
        self.wanted = wanted

    def __str__(self) -> str:
        now = f"it is {self.current}" if self.current else "it has no record"
        return f"internal error: task {self.task_id} cannot become {self.wanted}: {now}"


class InternalError(OrchError):
    """A job on a lane raised an exception that is not the project's: a bug, ended in one line."""

    exit_code = EXIT_HUNG

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem

    def __str__(self) -> str:
        return self.problem


class DiscordError(OrchError):
    """Discord answered a request with an error (or could not be reached).

    ``route`` is the route template (``POST /channels/{channel_id}/messages``),
    never a full URL with query parameters, and never a header.
    """

    exit_code = EXIT_DISCORD
    what = "Discord error"
    about_the_channel = True    # explain() may point at the config key holding the channel

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
        self.message_id: Optional[str] = None   # the path's message, where the route has one
        self.after_retry = False   # the answer came to a retry of a request whose first fate was unknown

    def _where(self) -> str:
        where = f"{self.method} {self.route}".strip()
        if self.channel_id:
            where += f" (channel {self.channel_id})"
        return where

    def answer(self) -> str:
        """``HTTP 403, code 50013 Missing Permissions``: what Discord said, short."""
        out = f"HTTP {self.status}" if self.status is not None else "no answer"
        if self.code:
            out += f", code {self.code}"
        if self.message and not self.message[:3].isdigit():  # not "401: Unauthorized" again
            out += f" {self.message}"
        return out

    def explain(self, channel_key: Optional[str] = None, token_key: Optional[str] = None) -> str:
        """The one line a user reads: what happened and what to do.

        ``channel_key`` names the config key that holds ``channel_id``
        (``RESULTS_CHANNEL``), ``token_key`` the key the token came from.
        Subclasses that know a fix say it; the default is ``str(self)``, with the
        channel's key to check unless the error is not about the channel.
        """
        text = str(self)
        return f"{text} [check {channel_key}]" if channel_key and self.about_the_channel else text

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


MISSING_ACCESS = 50001        # 403: the bot cannot see the channel (or is not in the server)
MISSING_PERMISSIONS = 50013   # 403: it sees the channel but lacks a permission there
UNKNOWN_CHANNEL = 10003
UNKNOWN_GUILD = 10004
UNKNOWN_MEMBER = 10007
UNKNOWN_MESSAGE = 10008
CANNOT_EXECUTE_ON_SYSTEM_MESSAGE = 50021
THREAD_ARCHIVED = 50083       # an archived thread refuses edits and reactions (and posts, when locked)
THREAD_ALREADY_CREATED = 160004
THREAD_LOCKED = 160005
MAX_ACTIVE_THREADS = 160006

# The permission a route needs, named as Discord's server settings name it.
_PERMISSION_FOR = {
    "GET /channels/{channel_id}": "View Channel",
    "GET /channels/{channel_id}/messages": "Read Message History",
    "GET /channels/{channel_id}/messages/{message_id}": "Read Message History",
    "POST /channels/{channel_id}/messages":
        "Send Messages (in a thread: Send Messages in Threads) (and Attach Files, Read Message History)",
    "POST /channels/{channel_id}/messages/{message_id}/threads": "Create Public Threads (and Read Message History)",
    "PATCH /channels/{channel_id}": "Manage Threads (or be the thread's creator)",
    "PUT /channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me":
        "Add Reactions (and Read Message History)",
    "GET /channels/{channel_id}/messages/{message_id}/reactions/{emoji}": "Read Message History",
}


class Unauthorized(DiscordError):
    """401: the token is wrong or was reset; nothing more is sent."""

    what = "Discord rejected the bot token (401; wrong or reset token: check CHIP_TOKEN / ORCHESTRATOR_AGENT_TOKEN)"

    def explain(self, channel_key: Optional[str] = None, token_key: Optional[str] = None) -> str:
        """The line for the user, naming the config key that holds the token."""
        key = token_key or "CHIP_TOKEN (or ORCHESTRATOR_AGENT_TOKEN)"
        late = " (an earlier request was rejected)" if "sends nothing more" in self.message else ""
        return (f"Discord rejected the bot token (HTTP 401 on {self.method} {self.route}{late}): {key} is wrong "
                "or was reset; paste the bot's current token (Developer Portal → your application → Bot → "
                "Reset Token)")


class Forbidden(DiscordError):
    """403: the bot lacks a permission, or cannot see the channel."""

    what = "Discord refused access (403; the bot lacks a permission or cannot see the channel)"

    def explain(self, channel_key: Optional[str] = None, token_key: Optional[str] = None) -> str:
        """The line for the user, naming the channel's config key and the permission."""
        channel = f"{channel_key}={self.channel_id}" if channel_key and self.channel_id else \
            (f"channel {self.channel_id}" if self.channel_id else "")
        place = f"in {channel}" if channel else "there"
        head = f"Discord refused {self.method} {self.route} ({self.answer()})"
        if self.code == MISSING_ACCESS:
            fix = (f"the bot cannot see {channel or 'it'}: invite the bot to that server and give it View Channel "
                   "and Read Message History in the channel")
        elif self.code == MISSING_PERMISSIONS:
            perm = _PERMISSION_FOR.get(f"{self.method} {self.route}", "a permission this request needs")
            fix = f"give the bot {perm} {place}"
        else:
            fix = f"check the bot's permissions {place}"
        return f"{head}: {fix}"


class NotFound(DiscordError):
    """404: an unknown channel, message, member..."""

    what = "Discord does not know this (404)"

    def explain(self, channel_key: Optional[str] = None, token_key: Optional[str] = None) -> str:
        """The line for the user, naming the channel's config key."""
        head = f"Discord answered {self.answer()} on {self.method} {self.route}"
        if self.code == UNKNOWN_CHANNEL or (self.code is None and channel_key):
            what = f"{channel_key}={self.channel_id}" if channel_key else f"channel {self.channel_id}"
            return (f"{head}: there is no channel {what} (or the bot is not in its server); copy the id again "
                    "(Developer Mode on, right-click the channel → Copy Channel ID)")
        if self.code == UNKNOWN_GUILD:
            return f"{head}: check GUILD_ID (Developer Mode on, right-click the server → Copy Server ID)"
        return super().explain(channel_key, token_key)


class BadRequest(DiscordError):
    """400 and any other 4xx: Discord's code and field errors, never retried."""

    what = "Discord rejected the request"


class ThreadAlreadyExists(BadRequest):
    """160004: the message already has a thread (``thread_id`` = the message's id).

    A start whose first answer was lost and that was retried gets this for its own thread
    (``after_retry``): look at the thread (its name, its owner) before deciding who has it.
    """

    what = "the message already has a thread"
    about_the_channel = False

    @property
    def thread_id(self) -> Optional[str]:
        """The thread's id: the starter message's id."""
        return self.message_id

    def __str__(self) -> str:
        again = " (after a retry: it may be this bot's own start)" if self.after_retry else ""
        return f"message {self.message_id} in channel {self.channel_id} already has a thread (code 160004){again}"


class TooManyActiveThreads(BadRequest):
    """160006: the server holds as many active threads as Discord allows; archive some first."""

    what = "the server is at its limit of active threads"
    about_the_channel = False

    def __str__(self) -> str:
        return (f"Discord refused {self.method} {self.route}: the server has the most active threads it may "
                "have (code 160006); archive finished threads, then start again")


class RateLimitedTooLong(DiscordError):
    """Waiting for the rate limit would take longer than the configured cap."""

    what = "rate limited for too long"
    about_the_channel = False   # a busy API, not a wrong channel: no config key to check

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
    about_the_channel = False   # an outage or no network, not a wrong channel

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
