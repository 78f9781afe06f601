"""`discord-orch check`: is this home ready to run tasks? One finding per thing checked.

A cron pass with nothing to do makes one request, to #task-queue, so a wrong
RESULTS_CHANNEL or a missing permission in #worker-pool only shows when the
first result is due (the result then waits in the outbox for the next pass).
``check`` looks at everything a pass will need, up front, without posting:
the token, each channel (it exists, the bot sees it, it is in GUILD_ID's
server), message history where the pass reads it, and the agent program.
Sending messages and adding reactions cannot be tested without doing them;
the first pass names the missing permission if one is missing.

Requests: at most 1 + 3 + 2 = 6, none after a 401 (the client refuses to send more).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional

from .config import Settings
from .discord_api import DiscordClient
from .errors import DiscordError, OrchError

OK = "ok"
WARN = "warn"       # worth knowing, not a reason to fail
FAIL = "fail"

CHANNEL_KEYS = ("TASK_QUEUE_CHANNEL", "RESULTS_CHANNEL", "WORKER_POOL_CHANNEL")
HISTORY_READ_BY_A_PASS = ("TASK_QUEUE_CHANNEL", "RESULTS_CHANNEL")  # polling; finding a result already posted


@dataclass(frozen=True)
class Finding:
    level: str                          # OK, WARN or FAIL
    subject: str                        # "token", a config key, "openclaw"
    text: str                           # what was found (for OK/WARN; for FAIL when there is no error)
    error: Optional[OrchError] = None   # the exception behind a FAIL, for cli.py to explain


def run_checks(settings: Settings, client: DiscordClient) -> List[Finding]:
    found: List[Finding] = []
    try:
        me = client.me()
    except DiscordError as exc:  # 401 above all: nothing more, Discord bans clients that keep sending bad tokens
        return [Finding(FAIL, "token", "", exc)]
    found.append(Finding(OK, "token", f"bot {me.username} (id {me.id})"))
    for key in CHANNEL_KEYS:
        channel = _check_channel(settings, client, key)
        found.append(channel)
        if key in HISTORY_READ_BY_A_PASS and channel.error is None:  # a missing channel is said once
            channel_id = getattr(settings, key.lower())
            found.append(_attempt(key, lambda: client.list_messages(channel_id, limit=1),
                                  "the bot can read its message history"))
    found.append(_check_openclaw(settings))
    found.append(Finding(OK, "who may submit", _who_may_submit(settings)))
    return found


def _attempt(subject: str, call: Callable[[], object], ok_text: str) -> Finding:
    try:
        call()
    except DiscordError as exc:
        return Finding(FAIL, subject, "", exc)
    return Finding(OK, subject, ok_text)


def _check_channel(settings: Settings, client: DiscordClient, key: str) -> Finding:
    channel_id = getattr(settings, key.lower())
    try:
        channel = client.get_channel(channel_id)
    except DiscordError as exc:
        return Finding(FAIL, key, "", exc)
    name = f"#{channel.name}" if channel.name else f"channel {channel.id}"
    if settings.guild_id and channel.guild_id and channel.guild_id != settings.guild_id:
        return Finding(FAIL, key, f"{name} is in server {channel.guild_id}, not in GUILD_ID={settings.guild_id}")
    where = f" in server {channel.guild_id}" if channel.guild_id else ""
    return Finding(OK, key, f"{name}{where}")


def _check_openclaw(settings: Settings) -> Finding:
    from .agent import resolve_openclaw

    try:
        program = resolve_openclaw(settings.openclaw_bin)
    except OrchError as exc:
        return Finding(FAIL, "openclaw", "", exc)
    config = settings.openclaw_config.expanduser()
    if not config.is_file():
        return Finding(WARN, "openclaw", f"{program}; OPENCLAW_CONFIG {config} not found (agents get OpenClaw's "
                                         "defaults: no providers, models or keys of yours)")
    return Finding(OK, "openclaw", f"{program}, config {config}")


def _who_may_submit(settings: Settings) -> str:
    if settings.allow_anyone:
        return "anyone who can post in #task-queue (ALLOW_ANYONE=true)"
    who = [f"users {', '.join(settings.allowed_user_ids)}"] if settings.allowed_user_ids else []
    who += [f"roles {', '.join(settings.allowed_role_ids)}"] if settings.allowed_role_ids else []
    return "the bot itself (discord-orch submit)" + (f" and {' and '.join(who)}" if who else
                                                       "; nobody else (set ALLOWED_USER_IDS or ALLOWED_ROLE_IDS)")
