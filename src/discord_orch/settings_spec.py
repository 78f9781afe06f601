"""Every setting, declared once: its key, the Settings field, how its text is read, its default.

config.py derives ``KNOWN_KEYS``, ``DEFAULTS``, the ``Settings`` defaults and
``load_settings`` from :data:`SETTINGS`; cli.py derives the orchestrate flags;
tests/test_settings_declared.py checks README.md and discord-config.env.example
against it. A module of its own, importing only errors and models, so that the
command line can build its options without loading config.py (dotenv, tasks).
"""

from __future__ import annotations

import math
import re
import socket
from pathlib import Path
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

from .errors import ConfigError
from .models import API_BASE_URL, is_snowflake

DEFAULT_TIMEOUT_S = 120
DEFAULT_TIMEOUT_HIGH_S = 300          # for thinking "high" and above, as the later scripts did
HIGH_THINKING = ("high", "xhigh")
STATUS_REACTION_MODES = ("full", "final", "off")
SANDBOX_MODES = ("auto", "bwrap", "landlock", "off")   # as sandbox.MODES (this module imports no sandbox)
CLAIM_MODES = ("thread", "reaction")   # how a host claims a task (claim.py)
GATEWAY_MODES = ("auto", "off")        # --watch's live events (gateway.py): auto = a Gateway session when it can
HOST_NAME_MAX = 32                    # characters: it ends each task thread's name (100 at most)
_HOST_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_HOST_TAG_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")   # as tasks.HOST_TAG_RE (this module imports no tasks)
OPENCLAW = "openclaw"                 # the executable's name, looked up on PATH
MAX_SECONDS = 30 * 24 * 3600          # the longest time a seconds setting may say (30 days)
MAX_HOURS = 10 * 365 * 24             # the longest an hours setting may say (10 years)
MAX_INPUT_MB = 1024                   # INPUT_MAX_MB's ceiling: a task's files are held in memory one at a time
MAX_INPUT_FILES = 100                 # INPUT_MAX_FILES's ceiling (Discord itself takes 10 files a message)
MAX_USD = 1_000_000                   # a budget's ceiling: a typo, not a plan, beyond it
MAX_ATTEMPTS_CAP = 99                 # a retry's result nonce is r<task id>.<attempt>: 25 characters at most

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

# parse(key, text, home) -> the value, or ConfigError naming key. home anchors relative paths.
Parser = Callable[[str, str, Path], Any]


class Setting(NamedTuple):
    """One key of discord-config.env (and the environment)."""

    key: str
    field: str                 # the Settings field it fills
    parse: Optional[Parser]    # None: load_settings reads it itself (the token, MODEL_ALIASES)
    help: str                  # one line on what it does
    default: str = ""          # as text, as the file would hold it
    unset_means: str = ""      # what an empty default does, where that is more than nothing (README)
    flag: str = ""             # the `orchestrate` option that overrides it
    flag_help: str = ""        # that option's help, before "(KEY, default ...)."


def boolean(key: str, raw: str, home: Path) -> bool:
    """true/yes/on/1 or false/no/off/0/empty, in any case."""
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(key, f"expected true or false, got {raw!r}")


class Number(NamedTuple):
    """A finite number within bounds; cli.py turns the bounds into click's range check."""

    minimum: float
    maximum: float
    integer: bool = False
    optional: bool = False     # empty means None (TIMEOUT: the default then depends on thinking)

    def __call__(self, key: str, raw: str, home: Path) -> Any:
        if self.optional:
            raw = raw.strip()
            if not raw:
                return None
        try:
            value = int(raw) if self.integer else float(raw)
        except ValueError:
            kind = "a whole number" if self.integer else "a number"
            raise ConfigError(key, f"expected {kind}, got {raw!r}") from None
        # nan compares False with every bound, and "1e400" reads as inf: both would pass the bounds.
        if not math.isfinite(value) or not self.minimum <= value <= self.maximum:
            raise ConfigError(key, f"must be between {self.minimum:g} and {self.maximum:g}, got {raw.strip()!r}")
        return value


class Choice(NamedTuple):
    """One of a few words, in any case."""

    options: Tuple[str, ...]

    def __call__(self, key: str, raw: str, home: Path) -> str:
        value = raw.strip().lower()
        if value not in self.options:
            raise ConfigError(key, f"expected one of {', '.join(self.options)}, got {value!r}")
        return value


class Text(NamedTuple):
    """Free text, stripped; empty becomes ``empty``."""

    empty: Optional[str] = None

    def __call__(self, key: str, raw: str, home: Path) -> Optional[str]:
        return raw.strip() or self.empty


def snowflake(key: str, raw: str, home: Path) -> str:
    """A Discord id, or empty."""
    value = raw.strip()
    if value and not is_snowflake(value):
        raise ConfigError(key, f"{raw!r} is not a Discord id (17-20 digits; enable Developer Mode, "
                               "then right-click → Copy ID)")
    return value


def snowflakes(key: str, raw: str, home: Path) -> Tuple[str, ...]:
    """Comma-separated Discord ids."""
    return tuple(snowflake(key, part, home) for part in raw.replace(" ", "").split(",") if part)


def http_url(key: str, raw: str, home: Path) -> str:
    """An http(s) URL, without the trailing slash."""
    value = raw.strip().rstrip("/")
    if not value.startswith(("https://", "http://")):
        raise ConfigError(key, f"expected an http(s) URL, got {value!r}")
    return value


def host_name(key: str, raw: str, home: Path) -> str:
    """A host's name in thread names: letters, digits, ``.``, ``_``, ``-``; empty: this machine's hostname
    (its first label, cut to HOST_NAME_MAX)."""
    value = raw.strip()
    if not value:
        label = socket.gethostname().split(".", 1)[0]
        found = _HOST_NAME_RE.search(label)
        return found.group(0)[:HOST_NAME_MAX] if found else "host"
    if len(value) > HOST_NAME_MAX or not _HOST_NAME_RE.fullmatch(value):
        raise ConfigError(key, f"expected up to {HOST_NAME_MAX} letters, digits, '.', '_' or '-', got {value!r}")
    return value


def time_zone(key: str, raw: str, home: Path) -> str:
    """An IANA time zone name (``Europe/Berlin``), checked against the machine's zone data; empty: UTC."""
    value = raw.strip() or "UTC"
    if value == "UTC":
        return value
    from zoneinfo import ZoneInfo   # only when a zone other than UTC is set

    try:
        ZoneInfo(value)
    except (ValueError, OSError, LookupError):   # ZoneInfoNotFoundError is a KeyError
        raise ConfigError(key, f"{value!r} is not a time zone this machine knows (e.g. UTC, Europe/Berlin)") from None
    return value


def host_tags(key: str, raw: str, home: Path) -> Tuple[str, ...]:
    """Comma-separated tags, lower-case, each once, in the order written (``[needs:...]`` on a task names them)."""
    tags = []
    for part in raw.split(","):
        tag = part.strip().lower()
        if not tag:
            continue
        if not _HOST_TAG_RE.fullmatch(tag):
            raise ConfigError(key, f"tag {part.strip()!r}: expected 1-32 letters, digits, '-' or '_', starting with a "
                                   "letter or digit (e.g. HOST_TAGS=gpu,repo-x)")
        if tag not in tags:
            tags.append(tag)
    return tuple(tags)


def user_path(key: str, raw: str, home: Path) -> Path:
    """A path where ``~`` is the user's home."""
    return Path(raw.strip()).expanduser()


def absolute_paths(key: str, raw: str, home: Path) -> Tuple[str, ...]:
    """Colon-separated absolute paths (~ expanded); empty: none."""
    found = []
    for part in raw.split(":"):
        part = part.strip()
        if not part:
            continue
        path = Path(part).expanduser()
        if not path.is_absolute():
            raise ConfigError(key, f"{part!r} is not an absolute path")
        found.append(str(path))
    return tuple(found)


def home_path(key: str, raw: str, home: Path) -> Optional[Path]:
    """A path relative to discord-orch's home directory, or None when empty."""
    value = raw.strip()
    return home / Path(value).expanduser() if value else None


# In the order load_settings checks them, after the token and MODEL_ALIASES: so a file with several
# bad values gets the same first error as before the settings were declared here.
SETTINGS: Tuple[Setting, ...] = (
    Setting("CHIP_TOKEN", "token", None, "bot token (the seed's name)"),
    Setting("ORCHESTRATOR_AGENT_TOKEN", "token", None,
            "bot token (the later scripts' name; used when CHIP_TOKEN is unset)"),
    Setting("MODEL_ALIASES", "aliases", None, "extra or overriding model aliases, name=provider/model,..."),
    Setting("STATUS_REACTIONS", "status_reactions", Choice(STATUS_REACTION_MODES),
            "status reactions on tasks: full (⏳ then 🏁/❌/⏱), final (🏁/❌/⏱), off", default="final"),
    Setting("DISCORD_API_BASE_URL", "api_base_url", http_url, "Discord API base URL", default=API_BASE_URL),
    Setting("TASK_QUEUE_CHANNEL", "task_queue_channel", snowflake, "id of #task-queue"),
    Setting("RESULTS_CHANNEL", "results_channel", snowflake,
            "id of #results; empty: each result goes to its task's thread only (CLAIM=thread)"),
    Setting("WORKER_POOL_CHANNEL", "worker_pool_channel", snowflake, "id of #worker-pool"),
    Setting("GUILD_ID", "guild_id", snowflake, "id of the server (for jump links and role checks)",
            unset_means="looked up"),
    Setting("OPENCLAW_BIN", "openclaw_bin", Text(empty=OPENCLAW), "openclaw executable", default=OPENCLAW),
    Setting("OPENCLAW_CONFIG", "openclaw_config", user_path, "the user's OpenClaw config",
            default="~/.openclaw/openclaw.json"),
    Setting("AGENT_LOCAL", "agent_local", boolean,
            "run `openclaw agent --local` (embedded agent, per-task workspace)", default="true"),
    Setting("TIMEOUT", "timeout_s", Number(minimum=1, maximum=MAX_SECONDS, optional=True),
            "agent timeout in seconds",
            unset_means=f"{DEFAULT_TIMEOUT_S} ({DEFAULT_TIMEOUT_HIGH_S} for {'/'.join(HIGH_THINKING)})",
            flag="--timeout", flag_help="Agent timeout in seconds"),
    Setting("KILL_GRACE", "kill_grace_s", Number(minimum=0, maximum=MAX_SECONDS),
            "seconds between SIGTERM and SIGKILL on timeout",
            default="10"),
    Setting("AGENT_CGROUP", "agent_cgroup", boolean,
            "run each agent in a cgroup v2 of its own where the machine allows it (see Security)", default="true"),
    Setting("AGENT_SANDBOX", "agent_sandbox", Choice(SANDBOX_MODES),
            "the fence around each agent: auto (bubblewrap where it works, else Landlock, else none and a "
            "warning), bwrap or landlock (fail when it does not work here), off (see Security)", default="auto"),
    Setting("SANDBOX_READ_PATHS", "sandbox_read_paths", absolute_paths,
            "more paths an agent may read (colon-separated, absolute: a repo to read, a cache)", unset_means="none"),
    Setting("SANDBOX_WRITE_PATHS", "sandbox_write_paths", absolute_paths,
            "more paths an agent may write (colon-separated, absolute: a repo it works on)", unset_means="none"),
    Setting("MAX_AGENTS", "max_agents", Number(minimum=1, maximum=1000, integer=True), "agents running at once",
            default="2", flag="--max-agents", flag_help="Agents at once"),
    Setting("ALLOWED_USER_IDS", "allowed_user_ids", snowflakes, "user ids whose tasks may run",
            unset_means="none"),
    Setting("ALLOWED_ROLE_IDS", "allowed_role_ids", snowflakes, "role ids whose members' tasks may run",
            unset_means="none"),
    Setting("CLAIM_BOT_IDS", "claim_bot_ids", snowflakes,
            "other bots whose ✅ claims a task (the old scripts' bot, other hosts)", unset_means="none"),
    Setting("CLAIM", "claim", Choice(CLAIM_MODES),
            "how a task is claimed: thread (one thread per task: several hosts on one queue) or reaction "
            "(the seed's ✅: one host, no thread permissions needed)", default="thread"),
    Setting("HOST_NAME", "host_name", host_name,
            "this host's name in each task's thread name (unique among the hosts on one queue)",
            unset_means="the machine's hostname"),
    Setting("HOST_TAGS", "host_tags", host_tags,
            "this host's tags, comma-separated (gpu,repo-x): it claims only tasks whose [needs:...] it has; "
            "shown with its presence in #worker-pool", unset_means="none"),
    Setting("HOST_SILENT_AFTER", "host_silent_after_s", Number(minimum=0, maximum=MAX_SECONDS),
            "seconds without a sign of life after which a host counts as silent: its tasks are taken over, "
            "and a task needing a tag only silent hosts have is answered as unreachable (it stays claimable); "
            "its presence line in #worker-pool is renewed three times as often; 0: no presence line (so no "
            "takeover and no such answer)", default="600"),
    Setting("PRIORITY_AGE", "priority_age_s", Number(minimum=0.1, maximum=MAX_SECONDS),
            "seconds a pending task waits before it counts one priority level higher (a low task counts as "
            "high after twice this: no starvation)", default="900"),
    Setting("ALLOW_ANYONE", "allow_anyone", boolean, "run tasks from anyone who can post in #task-queue (unsafe)",
            default="false"),
    Setting("RETRY_INTERRUPTED", "retry_interrupted", boolean, "re-run tasks whose agent died with the orchestrator",
            default="false"),
    Setting("MAX_ATTEMPTS", "max_attempts", Number(minimum=1, maximum=MAX_ATTEMPTS_CAP, integer=True),
            "runs of one task at most, the first included: 🔁 (or `retry` in its thread) runs it again",
            default="3"),
    Setting("RETRY_WINDOW_HOURS", "retry_window_h", Number(minimum=0, maximum=MAX_HOURS),
            "hours after a task failed during which a 🔁 on it is looked for (0 = never; see Stop and retry)",
            default="24"),
    Setting("SUMMARY_MAX_LENGTH", "summary_max", Number(minimum=100, maximum=1800, integer=True),
            "max characters of SUMMARY.txt shown", default="1500"),
    Setting("ARCHIVE_RETENTION_HOURS", "archive_retention_h", Number(minimum=0, maximum=MAX_HOURS),
            "hours failed workspaces stay in archive/", default="72"),
    Setting("KEEP_SUCCESS_HOURS", "keep_success_h", Number(minimum=0, maximum=MAX_HOURS),
            "hours successful workspaces stay in archive/ (0 = removed at once)", default="0"),
    Setting("AGENTS_MD_TEMPLATE", "agents_md_template", home_path, "a custom AGENTS.md template file",
            unset_means="built-in"),
    Setting("EXTRA_PYTHONPATH", "extra_pythonpath", Text(), "added to the agent's PYTHONPATH"),
    Setting("RATE_LIMIT_MAX_WAIT", "rate_limit_max_wait", Number(minimum=1, maximum=MAX_SECONDS),
            "longest rate-limit wait in seconds before giving up (result kept for later)", default="60"),
    Setting("POLL_INTERVAL", "poll_interval", Number(minimum=0.2, maximum=MAX_SECONDS),
            "seconds between polls of #task-queue while a pass runs and in --watch", default="5",
            flag="--interval", flag_help="Seconds between polls"),
    Setting("GATEWAY", "gateway", Choice(GATEWAY_MODES),
            "orchestrate --watch: auto = a Gateway session (needs the live extra) picks tasks, 🛑 / 🔁 and follow-ups "
            "up as they happen, polling drops to a slow safety net; off = poll only (a cron pass always polls)",
            default="auto"),
    Setting("WATCHDOG", "watchdog_s", Number(minimum=0, maximum=MAX_SECONDS),
            "seconds a pass may stand still before it exits (code 70) for the next pass to recover; 0 = never",
            default="1800"),
    Setting("LOG_FILE", "log_file", home_path, "append the log to this file (rotated)"),
    Setting("FOLLOWUP_HOURS", "followup_h", Number(minimum=0, maximum=MAX_HOURS),
            "hours a task's thread takes follow-ups after its last answer (its workspace is kept that long; "
            "0 = none)", default="24"),
    Setting("STATUS_EVERY", "status_every_s", Number(minimum=1, maximum=MAX_SECONDS),
            "seconds between edits of a task's status message, at most", default="15"),
    Setting("STALL_AFTER", "stall_after_s", Number(minimum=1, maximum=MAX_SECONDS),
            "seconds an agent may write nothing before its thread gets a stall notice", default="120"),
    Setting("INPUT_MAX_MB", "input_max_mb", Number(minimum=0.001, maximum=MAX_INPUT_MB),
            "largest file attached to a task that is fetched into its inputs/ (MiB); a larger one refuses the task",
            default="25"),
    Setting("INPUT_MAX_FILES", "input_max_files", Number(minimum=0, maximum=MAX_INPUT_FILES, integer=True),
            "most files attached to a task (TASK.txt aside); more refuses the task", default="10"),
    Setting("BUDGET_DAILY_USD", "budget_daily_usd", Number(minimum=0, maximum=MAX_USD, optional=True),
            "spend a day (USD, this host's finished tasks) at which new tasks wait", unset_means="no budget"),
    Setting("BUDGET_MONTHLY_USD", "budget_monthly_usd", Number(minimum=0, maximum=MAX_USD, optional=True),
            "spend a calendar month (USD, this host's finished tasks) at which new tasks wait",
            unset_means="no budget"),
    Setting("BUDGET_TIMEZONE", "budget_timezone", time_zone,
            "the time zone whose midnight starts a budget's day and month (IANA name)", default="UTC"),
    Setting("TASK_MAX_USD", "task_max_usd", Number(minimum=0, maximum=MAX_USD, optional=True),
            "a task whose reported cost passes this is flagged in its result (it is not stopped)",
            unset_means="no flag"),
)

SETTING: Dict[str, Setting] = {s.key: s for s in SETTINGS}


class CommandOption(NamedTuple):
    """An option of a command that is no setting (`init`'s answers): cli_options.py makes it a click option."""

    flag: str                  # "--server", or "--create-channels/--no-create-channels" (then None unless given)
    dest: str                  # the name the command receives it under
    help: str
    metavar: str = ""          # "": a flag, no value
    multiple: bool = False


# `discord-orch init`: each question it may ask has one, so a script can answer them all (init.py).
INIT_OPTIONS: Tuple[CommandOption, ...] = (
    CommandOption("--token-file", "token_file", "Read the bot token from this file (else CHIP_TOKEN from the "
                  "environment; else it is asked, not shown as you type).", metavar="FILE"),
    CommandOption("--server", "server", "The server, by name or id (asked only when the bot is in several).",
                  metavar="NAME"),
    CommandOption("--create-channels/--no-create-channels", "create_channels",
                  "Create the missing channels, when the bot may (Manage Channels); asked otherwise."),
    CommandOption("--allow", "allow", "A username whose tasks may run, besides the server's owner (repeatable).",
                  metavar="USERNAME", multiple=True),
    CommandOption("--host-name", "host_name", "This host's name in each task's thread (HOST_NAME; default: the "
                  "machine's hostname).", metavar="NAME"),
    CommandOption("--force", "force", "Replace an existing discord-config.env (a copy of it is kept)."),
    CommandOption("--non-interactive", "non_interactive", "Ask nothing: what no option says takes its default, "
                  "or init stops and names the option it needs."),
)


def default_of(key: str) -> Any:
    """KEY's default, parsed: what Settings holds when nothing sets it."""
    setting = SETTING[key]
    return setting.parse(key, setting.default, Path())   # home: no default is a path in it


__all__ = ["Setting", "SETTINGS", "SETTING", "CommandOption", "INIT_OPTIONS", "default_of", "Number", "Choice", "Text", "boolean", "snowflake",
           "snowflakes", "http_url", "time_zone", "user_path", "home_path", "DEFAULT_TIMEOUT_S",
           "DEFAULT_TIMEOUT_HIGH_S", "HIGH_THINKING", "STATUS_REACTION_MODES", "CLAIM_MODES", "host_name", "host_tags"]
