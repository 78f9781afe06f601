"""Settings: discord-config.env + environment + flags, validated once.

Precedence (house rule 8): a command-line flag beats the environment, the
environment beats ``<home>/discord-config.env``, and that beats the defaults
below. The file is read with python-dotenv without touching ``os.environ``.

The bot token is held in :class:`Secret`, whose ``repr``/``str`` never show
the value; nothing in this module logs or prints it.
"""

from __future__ import annotations

import dataclasses
import difflib
import io
import os
import stat
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from dotenv import dotenv_values
from dotenv.parser import parse_stream

from .errors import ConfigError
from .models import API_BASE_URL
from .models import is_snowflake
from .tasks import DEFAULT_ALIASES, THINKING_LEVELS, parse_aliases

CONFIG_FILENAME = "discord-config.env"
DEFAULT_TIMEOUT_S = 120
DEFAULT_TIMEOUT_HIGH_S = 300          # for thinking "high" and above, as the later scripts did
HIGH_THINKING = ("high", "xhigh")
TOKEN_KEYS = ("CHIP_TOKEN", "ORCHESTRATOR_AGENT_TOKEN")
CHANNEL_KEYS = ("TASK_QUEUE_CHANNEL", "RESULTS_CHANNEL", "WORKER_POOL_CHANNEL")
STATUS_REACTION_MODES = ("full", "final", "off")


class Secret:
    """A string that never shows itself in repr, str or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
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


# Every key the file may hold, with its default (as text, parsed below) and a
# one-line description (the README and discord-config.env.example say the same).
KNOWN_KEYS: Dict[str, str] = {
    "CHIP_TOKEN": "bot token (the seed's name)",
    "ORCHESTRATOR_AGENT_TOKEN": "bot token (the later scripts' name; used when CHIP_TOKEN is unset)",
    "TASK_QUEUE_CHANNEL": "id of #task-queue",
    "RESULTS_CHANNEL": "id of #results",
    "WORKER_POOL_CHANNEL": "id of #worker-pool",
    "GUILD_ID": "id of the server (for jump links and role checks)",
    "DISCORD_API_BASE_URL": "Discord API base URL",
    "OPENCLAW_BIN": "openclaw executable",
    "OPENCLAW_CONFIG": "the user's OpenClaw config",
    "AGENT_LOCAL": "run `openclaw agent --local` (embedded agent, per-task workspace)",
    "TIMEOUT": "agent timeout in seconds (default 120, 300 for high/xhigh thinking)",
    "KILL_GRACE": "seconds between SIGTERM and SIGKILL on timeout",
    "MAX_AGENTS": "agents running at once",
    "MODEL_ALIASES": "extra or overriding model aliases, name=provider/model,...",
    "ALLOWED_USER_IDS": "user ids whose tasks may run",
    "ALLOWED_ROLE_IDS": "role ids whose members' tasks may run",
    "ALLOW_ANYONE": "run tasks from anyone who can post in #task-queue (unsafe)",
    "RETRY_INTERRUPTED": "re-run tasks whose agent died with the orchestrator",
    "SUMMARY_MAX_LENGTH": "max characters of SUMMARY.txt shown",
    "ARCHIVE_RETENTION_HOURS": "hours failed workspaces stay in archive/",
    "KEEP_SUCCESS_HOURS": "hours successful workspaces stay in archive/ (0 = removed at once)",
    "AGENTS_MD_TEMPLATE": "a custom AGENTS.md template file",
    "EXTRA_PYTHONPATH": "added to the agent's PYTHONPATH",
    "RATE_LIMIT_MAX_WAIT": "longest rate-limit wait in seconds before giving up (result kept for later)",
    "POLL_INTERVAL": "seconds between polls of #task-queue while a pass runs and in --watch",
    "WATCHDOG": "seconds a pass may stand still before it exits (code 70) for the next pass to recover; 0 = never",
    "STATUS_REACTIONS": "status reactions on tasks: full (⏳ then 🏁/❌/⏱), final (🏁/❌/⏱), off",
    "LOG_FILE": "append the log to this file (rotated)",
}

DEFAULTS: Dict[str, str] = {
    "DISCORD_API_BASE_URL": API_BASE_URL,
    "OPENCLAW_BIN": "openclaw",
    "OPENCLAW_CONFIG": "~/.openclaw/openclaw.json",
    "AGENT_LOCAL": "true",
    "KILL_GRACE": "10",
    "MAX_AGENTS": "2",
    "ALLOW_ANYONE": "false",
    "RETRY_INTERRUPTED": "false",
    "SUMMARY_MAX_LENGTH": "1500",
    "ARCHIVE_RETENTION_HOURS": "72",
    "KEEP_SUCCESS_HOURS": "0",
    "RATE_LIMIT_MAX_WAIT": "60",
    "POLL_INTERVAL": "5",
    "WATCHDOG": "1800",
    "STATUS_REACTIONS": "final",
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Settings:
    home: Path
    token: Secret = field(default_factory=lambda: Secret(""))
    token_key: str = ""
    task_queue_channel: str = ""
    results_channel: str = ""
    worker_pool_channel: str = ""
    guild_id: str = ""
    api_base_url: str = API_BASE_URL
    openclaw_bin: str = "openclaw"
    openclaw_config: Path = Path("~/.openclaw/openclaw.json")
    agent_local: bool = True
    timeout_s: Optional[float] = None     # None: 120, or 300 for high thinking
    kill_grace_s: float = 10.0
    max_agents: int = 2
    aliases: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_ALIASES))
    allowed_user_ids: Tuple[str, ...] = ()
    allowed_role_ids: Tuple[str, ...] = ()
    allow_anyone: bool = False
    retry_interrupted: bool = False
    summary_max: int = 1500
    archive_retention_h: float = 72.0
    keep_success_h: float = 0.0
    agents_md_template: Optional[Path] = None
    extra_pythonpath: Optional[str] = None
    rate_limit_max_wait: float = 60.0
    poll_interval: float = 5.0
    watchdog_s: float = 1800.0
    status_reactions: str = "final"
    log_file: Optional[Path] = None
    warnings: Tuple[str, ...] = ()

    # -- derived paths -------------------------------------------------
    @property
    def runtime_dir(self) -> Path:
        return self.home / ".runtime"

    @property
    def workers_dir(self) -> Path:
        return self.home / "workers"

    @property
    def archive_dir(self) -> Path:
        return self.home / "archive"

    def timeout_for(self, thinking: str) -> float:
        if self.timeout_s is not None:
            return self.timeout_s
        return float(DEFAULT_TIMEOUT_HIGH_S if thinking in HIGH_THINKING else DEFAULT_TIMEOUT_S)

    # -- checks a command asks for ---------------------------------------
    def require_token(self) -> None:
        if not self.token:
            raise ConfigError("CHIP_TOKEN", "not set",
                              f"put CHIP_TOKEN=... (or ORCHESTRATOR_AGENT_TOKEN) in {self.home / CONFIG_FILENAME}"
                              " or the environment")

    def require_channels(self, *keys: str) -> None:
        for key in keys:
            if not getattr(self, key.lower()):
                raise ConfigError(key, "not set", f"the id of the channel, in {self.home / CONFIG_FILENAME}")

    def __repr__(self) -> str:  # the token is a Secret already; keep repr short and safe
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)
                          if f.name not in ("warnings", "aliases"))
        return f"Settings({shown})"


def _parse_bool(key: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(key, f"expected true or false, got {raw!r}")


def _parse_number(key: str, raw: str, *, minimum: float, integer: bool = False,
                  maximum: Optional[float] = None) -> float:
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise ConfigError(key, f"expected {kind}, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum:g} and {maximum:g}" if maximum is not None else f"at least {minimum:g}"
        raise ConfigError(key, f"must be {bound}, got {raw!r}")
    return value


def _parse_id(key: str, raw: str) -> str:
    value = raw.strip()
    if value and not is_snowflake(value):
        raise ConfigError(key, f"{raw!r} is not a Discord id (17-20 digits; enable Developer Mode, "
                               "then right-click → Copy ID)")
    return value


def _parse_id_list(key: str, raw: str) -> Tuple[str, ...]:
    return tuple(_parse_id(key, part) for part in raw.replace(" ", "").split(",") if part)


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

    token_key = next((k for k in TOKEN_KEYS if get(k).strip()), "")
    token = get(token_key).strip() if token_key else ""
    if token.lower().startswith("bot "):
        token = token[4:].strip()  # a pasted "Bot xxx" would otherwise become "Bot Bot xxx"
    if token and not all(33 <= ord(c) <= 126 for c in token):
        # Never quote the value, not even in part: it is the secret.
        raise ConfigError(token_key, "contains characters a bot token never has (blanks, quotes, "
                                     "non-ASCII or control characters)",
                          "paste it again, bare: Developer Portal → your application → Bot → Reset Token")

    aliases = dict(DEFAULT_ALIASES)
    if get("MODEL_ALIASES").strip():
        aliases.update(parse_aliases(get("MODEL_ALIASES")))

    timeout_raw = get("TIMEOUT").strip()
    template_raw = get("AGENTS_MD_TEMPLATE").strip()
    log_raw = get("LOG_FILE").strip()
    status_reactions = get("STATUS_REACTIONS").strip().lower()
    if status_reactions not in STATUS_REACTION_MODES:
        raise ConfigError("STATUS_REACTIONS", f"expected one of {', '.join(STATUS_REACTION_MODES)}, "
                                              f"got {status_reactions!r}")
    base_url = get("DISCORD_API_BASE_URL").strip().rstrip("/")
    if not base_url.startswith(("https://", "http://")):
        raise ConfigError("DISCORD_API_BASE_URL", f"expected an http(s) URL, got {base_url!r}")

    settings = Settings(
        home=home,
        token=Secret(token),
        token_key=token_key,
        task_queue_channel=_parse_id("TASK_QUEUE_CHANNEL", get("TASK_QUEUE_CHANNEL")),
        results_channel=_parse_id("RESULTS_CHANNEL", get("RESULTS_CHANNEL")),
        worker_pool_channel=_parse_id("WORKER_POOL_CHANNEL", get("WORKER_POOL_CHANNEL")),
        guild_id=_parse_id("GUILD_ID", get("GUILD_ID")),
        api_base_url=base_url,
        openclaw_bin=get("OPENCLAW_BIN").strip() or "openclaw",
        openclaw_config=Path(get("OPENCLAW_CONFIG").strip()).expanduser(),
        agent_local=_parse_bool("AGENT_LOCAL", get("AGENT_LOCAL")),
        timeout_s=_parse_number("TIMEOUT", timeout_raw, minimum=1) if timeout_raw else None,
        kill_grace_s=_parse_number("KILL_GRACE", get("KILL_GRACE"), minimum=0),
        max_agents=int(_parse_number("MAX_AGENTS", get("MAX_AGENTS"), minimum=1, maximum=1000, integer=True)),
        aliases=aliases,
        allowed_user_ids=_parse_id_list("ALLOWED_USER_IDS", get("ALLOWED_USER_IDS")),
        allowed_role_ids=_parse_id_list("ALLOWED_ROLE_IDS", get("ALLOWED_ROLE_IDS")),
        allow_anyone=_parse_bool("ALLOW_ANYONE", get("ALLOW_ANYONE")),
        retry_interrupted=_parse_bool("RETRY_INTERRUPTED", get("RETRY_INTERRUPTED")),
        summary_max=int(_parse_number("SUMMARY_MAX_LENGTH", get("SUMMARY_MAX_LENGTH"), minimum=100,
                                      maximum=1800, integer=True)),
        archive_retention_h=_parse_number("ARCHIVE_RETENTION_HOURS", get("ARCHIVE_RETENTION_HOURS"), minimum=0),
        keep_success_h=_parse_number("KEEP_SUCCESS_HOURS", get("KEEP_SUCCESS_HOURS"), minimum=0),
        agents_md_template=(home / Path(template_raw).expanduser()) if template_raw else None,
        extra_pythonpath=get("EXTRA_PYTHONPATH").strip() or None,
        rate_limit_max_wait=_parse_number("RATE_LIMIT_MAX_WAIT", get("RATE_LIMIT_MAX_WAIT"), minimum=1),
        poll_interval=_parse_number("POLL_INTERVAL", get("POLL_INTERVAL"), minimum=0.2),
        watchdog_s=_parse_number("WATCHDOG", get("WATCHDOG"), minimum=0),
        status_reactions=status_reactions,
        log_file=(home / Path(log_raw).expanduser()) if log_raw else None,
        warnings=tuple(warnings),
    )
    # Results may share #task-queue (they are then replies to their tasks, and the poll skips the bot's
    # own replies); spawn/finish notices are plain bot posts, which would be read as tasks.
    if settings.task_queue_channel and settings.worker_pool_channel == settings.task_queue_channel:
        raise ConfigError("WORKER_POOL_CHANNEL", "is the same channel as TASK_QUEUE_CHANNEL",
                          "the bot's notices there would be read as tasks; use a separate channel")
    if settings.guild_id and settings.guild_id in settings.allowed_role_ids:
        settings = dataclasses.replace(settings, warnings=settings.warnings + (
            f"ALLOWED_ROLE_IDS holds {settings.guild_id}, the server's own id (the @everyone role): Discord never "
            "lists it among a member's roles, so it allows nobody; ALLOW_ANYONE=true is how to allow everyone",))
    if settings.agents_md_template is not None and not settings.agents_md_template.is_file():
        raise ConfigError("AGENTS_MD_TEMPLATE", f"{settings.agents_md_template} is not a readable file")
    return settings


__all__ = ["Settings", "Secret", "load_settings", "read_config_file", "KNOWN_KEYS", "CONFIG_FILENAME",
           "THINKING_LEVELS"]
