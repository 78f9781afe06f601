"""Settings: discord-config.env + environment + flags, validated once.

Precedence (house rule 8): a command-line flag beats the environment, the
environment beats ``<home>/discord-config.env``, and that beats the defaults
declared in settings_spec.py. The file is read with python-dotenv without touching ``os.environ``.

The bot token is held in :class:`Secret`, whose ``repr``/``str`` never show
the value; nothing in this module logs or prints it.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Tuple

from dotenv import dotenv_values
from dotenv.parser import parse_stream

from .errors import ConfigError
from .settings_spec import DEFAULT_TIMEOUT_HIGH_S, DEFAULT_TIMEOUT_S, HIGH_THINKING, SETTINGS, default_of
from .tasks import DEFAULT_ALIASES, THINKING_LEVELS, parse_aliases

CONFIG_FILENAME = "discord-config.env"
TOKEN_KEYS = ("CHIP_TOKEN", "ORCHESTRATOR_AGENT_TOKEN")   # in the order they are tried
CHANNEL_KEYS = ("TASK_QUEUE_CHANNEL", "RESULTS_CHANNEL", "WORKER_POOL_CHANNEL")
TOKEN_CHARS = range(33, 127)          # printable ASCII without the blank: all a bot token may hold
BOT_PREFIX = "bot "                   # of an Authorization header, pasted along with the token


class Secret:
    """A string that never shows itself in repr, str or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The value itself: only for the Authorization header, never for a log or an agent."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))


# Every key the file may hold, with a one-line description, and the defaults (as text), from the
# declarations in settings_spec.py (README.md and discord-config.env.example are checked against them).
KNOWN_KEYS: Dict[str, str] = {s.key: s.help for s in SETTINGS}
DEFAULTS: Dict[str, str] = {s.key: s.default for s in SETTINGS if s.default}


class Settings(NamedTuple):
    """Validated settings; a declared key's field defaults to its declaration's default (settings_spec.py)."""

    home: Path
    token: Secret = Secret("")
    token_key: str = ""
    task_queue_channel: str = default_of("TASK_QUEUE_CHANNEL")
    results_channel: str = default_of("RESULTS_CHANNEL")
    worker_pool_channel: str = default_of("WORKER_POOL_CHANNEL")
    guild_id: str = default_of("GUILD_ID")
    api_base_url: str = default_of("DISCORD_API_BASE_URL")
    openclaw_bin: str = default_of("OPENCLAW_BIN")
    openclaw_config: Path = default_of("OPENCLAW_CONFIG")
    agent_local: bool = default_of("AGENT_LOCAL")
    timeout_s: Optional[float] = default_of("TIMEOUT")
    kill_grace_s: float = default_of("KILL_GRACE")
    agent_cgroup: bool = default_of("AGENT_CGROUP")
    agent_sandbox: str = default_of("AGENT_SANDBOX")
    sandbox_read_paths: Tuple[str, ...] = default_of("SANDBOX_READ_PATHS")
    sandbox_write_paths: Tuple[str, ...] = default_of("SANDBOX_WRITE_PATHS")
    max_agents: int = default_of("MAX_AGENTS")
    aliases: Mapping[str, str] = DEFAULT_ALIASES
    allowed_user_ids: Tuple[str, ...] = default_of("ALLOWED_USER_IDS")
    allowed_role_ids: Tuple[str, ...] = default_of("ALLOWED_ROLE_IDS")
    allow_anyone: bool = default_of("ALLOW_ANYONE")
    claim_bot_ids: Tuple[str, ...] = default_of("CLAIM_BOT_IDS")
    claim: str = default_of("CLAIM")
    gateway: str = default_of("GATEWAY")
    host_name: str = default_of("HOST_NAME")
    host_tags: Tuple[str, ...] = default_of("HOST_TAGS")
    host_silent_after_s: float = default_of("HOST_SILENT_AFTER")
    priority_age_s: float = default_of("PRIORITY_AGE")
    retry_interrupted: bool = default_of("RETRY_INTERRUPTED")
    max_attempts: int = default_of("MAX_ATTEMPTS")
    retry_window_h: float = default_of("RETRY_WINDOW_HOURS")
    summary_max: int = default_of("SUMMARY_MAX_LENGTH")
    archive_retention_h: float = default_of("ARCHIVE_RETENTION_HOURS")
    keep_success_h: float = default_of("KEEP_SUCCESS_HOURS")
    agents_md_template: Optional[Path] = default_of("AGENTS_MD_TEMPLATE")
    extra_pythonpath: Optional[str] = default_of("EXTRA_PYTHONPATH")
    rate_limit_max_wait: float = default_of("RATE_LIMIT_MAX_WAIT")
    poll_interval: float = default_of("POLL_INTERVAL")
    watchdog_s: float = default_of("WATCHDOG")
    status_reactions: str = default_of("STATUS_REACTIONS")
    log_file: Optional[Path] = default_of("LOG_FILE")
    followup_h: float = default_of("FOLLOWUP_HOURS")
    status_every_s: float = default_of("STATUS_EVERY")
    stall_after_s: float = default_of("STALL_AFTER")
    input_max_mb: float = default_of("INPUT_MAX_MB")
    input_max_files: int = default_of("INPUT_MAX_FILES")
    budget_daily_usd: Optional[float] = default_of("BUDGET_DAILY_USD")
    budget_monthly_usd: Optional[float] = default_of("BUDGET_MONTHLY_USD")
    budget_timezone: str = default_of("BUDGET_TIMEZONE")
    task_max_usd: Optional[float] = default_of("TASK_MAX_USD")
    warnings: Tuple[str, ...] = ()

    # -- derived paths -------------------------------------------------
    @property
    def runtime_dir(self) -> Path:
        """<home>/.runtime: state.db, the ledger, the lock."""
        return self.home / ".runtime"

    @property
    def workers_dir(self) -> Path:
        """<home>/workers: the agents' workspaces."""
        return self.home / "workers"

    @property
    def archive_dir(self) -> Path:
        """<home>/archive: workspaces kept after a failure (or KEEP_SUCCESS_HOURS)."""
        return self.home / "archive"

    def timeout_for(self, thinking: str) -> float:
        """The agent timeout for a thinking level: TIMEOUT, else 120 s (300 s for high/xhigh)."""
        if self.timeout_s is not None:
            return self.timeout_s
        return float(DEFAULT_TIMEOUT_HIGH_S if thinking in HIGH_THINKING else DEFAULT_TIMEOUT_S)

    # -- checks a command asks for ---------------------------------------
    def require_token(self) -> None:
        """ConfigError unless a bot token is set."""
        if not self.token:
            raise ConfigError("CHIP_TOKEN", "not set",
                              f"put CHIP_TOKEN=... (or ORCHESTRATOR_AGENT_TOKEN) in {self.home / CONFIG_FILENAME}"
                              " or the environment")

    def require_channels(self, *keys: str) -> None:
        """ConfigError naming the first of these channel keys that is not set."""
        for key in keys:
            if not getattr(self, key.lower()):
                raise ConfigError(key, "not set", f"the id of the channel, in {self.home / CONFIG_FILENAME}")

    def require_results_channel(self) -> None:
        """ConfigError unless results have somewhere to go: RESULTS_CHANNEL, or (empty) each task's thread,
        which only CLAIM=thread gives a task."""
        if not self.results_channel and self.claim != "thread":
            raise ConfigError("RESULTS_CHANNEL", "not set", f"the id of #results, in {self.home / CONFIG_FILENAME} "
                              "(empty means each result goes to its task's thread only, which needs CLAIM=thread)")

    def __repr__(self) -> str:  # the token is a Secret already; keep repr short and safe
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields if name not in ("warnings", "aliases"))
        return f"Settings({shown})"


def _key_of(line: str) -> str:
    """The KEY of a ``KEY=...`` line, or "" (never any part of the value: it may be the token)."""
    head = line.strip()
    if head.startswith("export "):
        head = head[len("export "):].lstrip()
    key = head.split("=", 1)[0].strip() if "=" in head else ""
    return key if key.replace("_", "").isalnum() and key.isascii() else ""


def _check_config_text(path: Path, data: bytes) -> str:
    """The file as text, or ConfigError naming the file, the line and what is wrong with it.

    Messages never quote a value: a broken line may well be the token's.
    """
    if b"\x00" in data:
        raise ConfigError("", f"{path} is not a text file (it contains NUL bytes); it should hold "
                              "KEY=value lines (see discord-config.env.example)")
    try:
        text = data.decode("utf-8-sig")   # a BOM from a Windows editor is not part of the first key
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError("", f"{path} line {line} is not UTF-8 text (byte 0x{data[exc.start]:02x}); "
                              "save the file as UTF-8, KEY=value lines") from None
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            line = binding.original.line
            key = _key_of(binding.original.string)
            what = f" (the {key} line)" if key else ""
            raise ConfigError("", f"{path} line {line}{what} cannot be read: expected KEY=value "
                                  "(is a quote left open?)")
    return text


def read_config_file(path: Path) -> Tuple[Dict[str, str], List[str]]:
    """The file's keys and the warnings it deserves (permissions, unknown keys).

    Raises ConfigError for a file that cannot be read or parsed (binary, not
    UTF-8, a line that is not KEY=value such as an unclosed quote): a broken
    line would otherwise be skipped, or swallow the lines after it, silently.
    """
    warnings: List[str] = []
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}, warnings
    except OSError as exc:
        raise ConfigError("", f"cannot read {path}: {exc.strerror or exc}") from None
    text = _check_config_text(path, data)
    raw = dotenv_values(stream=io.StringIO(text))
    values = {k: (v if v is not None else "") for k, v in raw.items()}
    upper = {k.upper(): k for k in KNOWN_KEYS}
    for key in values:
        if key not in KNOWN_KEYS:
            import difflib   # only for a misspelt key: not on every cron pass

            close = [upper[key.upper()]] if key.upper() in upper else \
                difflib.get_close_matches(key.upper(), KNOWN_KEYS, n=1)
            hint = f"; did you mean {close[0]}?" if close else " (ignored)"
            warnings.append(f"{path.name}: unknown key {key}{hint}")
    if any(values.get(k) for k in TOKEN_KEYS):
        try:
            mode = path.stat().st_mode
        except OSError:
            mode = 0
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            warnings.append(f"{path} holds the bot token and other users can read it "
                            f"(mode {stat.S_IMODE(mode):03o}): run chmod 600 {path}")
    return values, warnings


def _token(get: Callable[[str], str]) -> Tuple[str, str]:
    """(the key it came from, the bot token): the first of TOKEN_KEYS that is set, without a pasted 'Bot '."""
    token_key = next((k for k in TOKEN_KEYS if get(k).strip()), "")
    return token_key, clean_token(token_key, get(token_key) if token_key else "")


def clean_token(token_key: str, raw: str) -> str:
    """A bot token as pasted, bare: blanks and a pasted 'Bot ' taken off; ConfigError naming ``token_key``
    (never the value) when it holds what no token does."""
    token = raw.strip()
    if token.lower().startswith(BOT_PREFIX):
        token = token[len(BOT_PREFIX):].strip()  # a pasted "Bot xxx" would otherwise become "Bot Bot xxx"
    if token and not all(ord(c) in TOKEN_CHARS for c in token):
        # Never quote the value, not even in part: it is the secret.
        raise ConfigError(token_key, "contains characters a bot token never has (blanks, quotes, "
                                     "non-ASCII or control characters)",
                          "paste it again, bare: Developer Portal → your application → Bot → Reset Token")
    return token


def load_settings(home: Optional[Path] = None, overrides: Optional[Mapping[str, Any]] = None,
                  environ: Optional[Mapping[str, str]] = None) -> Settings:
    """Build Settings from flags (``overrides``, keyed like the file), env, file, defaults."""
    environ = os.environ if environ is None else environ
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if home is None:
        home = Path(environ.get("DISCORD_ORCH_HOME") or os.getcwd())
    home = Path(home).expanduser().resolve()
    if not home.is_dir():
        raise ConfigError("--home / DISCORD_ORCH_HOME", f"{home} is not a directory")
    file_values, warnings = read_config_file(home / CONFIG_FILENAME)

    def get(key: str) -> str:
        if key in overrides:
            return str(overrides[key])
        if environ.get(key) is not None:
            return environ[key]
        if key in file_values:
            return file_values[key]
        return DEFAULTS.get(key, "")

    token_key, token = _token(get)
    aliases = dict(DEFAULT_ALIASES)
    if get("MODEL_ALIASES").strip():
        aliases.update(parse_aliases(get("MODEL_ALIASES")))
    declared = {setting.field: setting.parse(setting.key, get(setting.key), home)
                for setting in SETTINGS if setting.parse is not None}
    settings = Settings(home=home, token=Secret(token), token_key=token_key, aliases=aliases,
                        warnings=tuple(warnings), **declared)
    # Results may share #task-queue (they are then replies to their tasks, and the poll skips the bot's
    # own replies); spawn/finish notices are plain bot posts, which would be read as tasks.
    if settings.task_queue_channel and settings.worker_pool_channel == settings.task_queue_channel:
        raise ConfigError("WORKER_POOL_CHANNEL", "is the same channel as TASK_QUEUE_CHANNEL",
                          "the bot's notices there would be read as tasks; use a separate channel")
    if settings.guild_id and settings.guild_id in settings.allowed_role_ids:
        settings = settings._replace(warnings=settings.warnings + (
            f"ALLOWED_ROLE_IDS holds {settings.guild_id}, the server's own id (the @everyone role): Discord never "
            "lists it among a member's roles, so it allows nobody; ALLOW_ANYONE=true is how to allow everyone",))
    if settings.agents_md_template is not None and not settings.agents_md_template.is_file():
        raise ConfigError("AGENTS_MD_TEMPLATE", f"{settings.agents_md_template} is not a readable file")
    return settings


__all__ = ["Settings", "Secret", "load_settings", "read_config_file", "clean_token", "TOKEN_KEYS", "KNOWN_KEYS", "CONFIG_FILENAME",
           "THINKING_LEVELS"]
