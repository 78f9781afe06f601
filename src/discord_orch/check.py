"""`discord-orch check`: is this home ready to run tasks? One finding per thing checked.

A cron pass with nothing to do makes one request, to #task-queue, so a wrong
RESULTS_CHANNEL or a missing permission in #worker-pool only shows when the
first result is due (the result then waits in the outbox for the next pass).
``check`` looks at everything a pass will need, up front, without posting:
the token, each channel (it exists, the bot sees it, it is in GUILD_ID's
server), message history where the pass reads it, and the agent program
(found, its ``#!`` interpreter found, and both again with cron's short PATH).
Sending messages and adding reactions cannot be tested without doing them;
the first pass names the missing permission if one is missing.

Requests: at most 1 + 3 + 2 = 6, none after a 401 (the client refuses to send more).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

from .cgroups import Containment, detect
from .config import Settings
from .discord_api import DiscordClient
from .errors import DiscordError, OrchError
from .openclaw import CRON_PATH, missing_interpreter, path_for_agent, resolve_openclaw

OK = "ok"
WARN = "warn"       # worth knowing, not a reason to fail
FAIL = "fail"

CHANNEL_KEYS = ("TASK_QUEUE_CHANNEL", "RESULTS_CHANNEL", "WORKER_POOL_CHANNEL")
HISTORY_READ_BY_A_PASS = ("TASK_QUEUE_CHANNEL", "RESULTS_CHANNEL")  # polling; finding a result already posted


@dataclass(frozen=True)
class Finding:
    """One line of `discord-orch check`: its level, what it is about, what was found."""

    level: str                          # OK, WARN or FAIL
    subject: str                        # "token", a config key, "openclaw"
    text: str                           # what was found (for OK/WARN; for FAIL when there is no error)
    error: Optional[OrchError] = None   # the exception behind a FAIL, for cli.py to explain


def run_checks(settings: Settings, client: DiscordClient) -> List[Finding]:
    """Every check, in order, without posting; stops at a 401 (Discord bans clients that keep sending bad tokens)."""
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
    found.extend(_check_openclaw(settings))
    found.append(_check_containment(settings))
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


def _check_openclaw(settings: Settings) -> List[Finding]:
    """openclaw found, its ``#!`` interpreter found, the same under cron's short PATH, its config."""
    try:
        program, missing = _launch(settings.openclaw_bin, os.environ.get("PATH"))
    except OrchError as exc:
        return [Finding(FAIL, "openclaw", "", exc)]
    if missing:
        return [Finding(FAIL, "openclaw", f"{program} needs `{missing}` (its #! line), which is not on PATH nor "
                                          "beside it: install it or put its directory on PATH")]
    found = [Finding(OK, "openclaw", program)]
    found.append(_under_cron(settings.openclaw_bin, program, CRON_PATH))
    config = settings.openclaw_config.expanduser()
    if config.is_file():
        found.append(Finding(OK, "OPENCLAW_CONFIG", str(config)))
    else:
        found.append(Finding(WARN, "OPENCLAW_CONFIG", f"{config} not found (agents get OpenClaw's defaults: "
                                                      "no providers, models or keys of yours)"))
    return found


def _check_containment(settings: Settings) -> Finding:
    """Will each agent get a cgroup of its own (then nothing it starts outlives it)?"""
    place = detect() if settings.agent_cgroup else Containment(None, "AGENT_CGROUP=false")
    if place.parent is not None:
        return Finding(OK, "containment", place.describe())
    return Finding(WARN, "containment", f"{place.describe()}; see README, Security")


def _launch(name: str, path: Optional[str]) -> Tuple[str, Optional[str]]:
    """What starting an agent with ``path`` as PATH would find: openclaw's path, and the
    interpreter of its ``#!`` line that PATH (with openclaw's dir in front) lacks, if any.
    AgentError when openclaw is not found at all."""
    program = resolve_openclaw(name, path)
    return program, missing_interpreter(program, path_for_agent(program, path))


def _under_cron(name: str, program: str, cron_path: str) -> Finding:
    """A shell's PATH is long, cron's is /usr/bin:/bin: what works here may not work there."""
    subject = f"openclaw under cron (PATH={cron_path})"
    try:
        cron_program, missing = _launch(name, cron_path)
    except OrchError:
        return Finding(WARN, subject, f"{name} would not be found: set OPENCLAW_BIN={program} in discord-config.env")
    if missing:
        here = shutil.which(missing)
        fix = (f"put PATH={os.path.dirname(here)}:{cron_path} on a line of its own at the top of your crontab"
               if here else f"install `{missing}` and put its directory on the crontab's PATH")
        return Finding(WARN, subject, f"agents would not find `{missing}` (the #! line of {cron_program}): {fix}")
    return Finding(OK, subject, f"{cron_program}")


def _who_may_submit(settings: Settings) -> str:
    if settings.allow_anyone:
        return "anyone who can post in #task-queue (ALLOW_ANYONE=true)"
    who = [f"users {', '.join(settings.allowed_user_ids)}"] if settings.allowed_user_ids else []
    who += [f"roles {', '.join(settings.allowed_role_ids)}"] if settings.allowed_role_ids else []
    return "the bot itself (discord-orch submit)" + (f" and {' and '.join(who)}" if who else
                                                       "; nobody else (set ALLOWED_USER_IDS or ALLOWED_ROLE_IDS)")
