"""`discord-orch check`: is this home ready to run tasks? One finding per thing checked.

A cron pass with nothing to do makes one request, to #task-queue, so a wrong
RESULTS_CHANNEL or a missing permission in #worker-pool only shows when the
first result is due (the result then waits in the outbox for the next pass).
``check`` looks at everything a pass will need, up front, without posting:
the token, each channel (it exists, the bot sees it, it is in GUILD_ID's
server), the bot's permissions in each (below), and the agent program (found,
its ``#!`` interpreter found, and both again with cron's short PATH).

Permissions are computed, not tried: the server's roles and owner (GET /guilds/{id}),
the bot's roles (GET /guilds/{id}/members/{bot}) and each channel's overwrites (the
GET /channels/{id} already made) go through Discord's algorithm (``permissions.py``,
whose docstring says what is verified and how). Each channel needs what a pass does
there (``NEEDS``); with CLAIM=thread, #task-queue also needs Create Public Threads,
Send Messages in Threads and Attach Files (``THREAD_NEEDS``: a host claims a task by
starting its thread, posts its first line there, and copies the result there, a long one
as a file); CLAIM=reaction needs none of them. Reading the history is
not tried either: Discord answers a bot without Read Message History with no messages,
not with an error, so only the computation can tell.

Requests: at most 1 + 3 + 2 = 6, none after a 401 (the client refuses to send more).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple, Union

from . import permissions as perm
from . import sandbox
from .cgroups import Containment, detect
from .config import Settings
from .discord_api import DiscordClient
from .errors import ConfigError, DiscordError, OrchError
from .models import Channel, Guild, Member, User
from .openclaw import CRON_PATH, missing_interpreter, path_for_agent, resolve_openclaw

OK = "ok"
WARN = "warn"       # worth knowing, not a reason to fail
FAIL = "fail"

CHANNEL_KEYS = ("TASK_QUEUE_CHANNEL", "RESULTS_CHANNEL", "WORKER_POOL_CHANNEL")
# What a pass does in each channel, and the permissions that takes.
NEEDS = {
    "TASK_QUEUE_CHANNEL": ("read tasks and mark them (✅ ⛔ 🏁...)",
                           (perm.VIEW_CHANNEL, perm.READ_MESSAGE_HISTORY, perm.ADD_REACTIONS)),
    "RESULTS_CHANNEL": ("post results (a long one as a file) and find one already posted",
                        (perm.VIEW_CHANNEL, perm.READ_MESSAGE_HISTORY, perm.SEND_MESSAGES, perm.ATTACH_FILES)),
    "WORKER_POOL_CHANNEL": ("post notices", (perm.VIEW_CHANNEL, perm.SEND_MESSAGES)),
}
# in #task-queue, with CLAIM=thread: start a task's thread, post in it, and (a thread has its parent's
# permissions) attach a long result there as a file
THREAD_NEEDS = (perm.CREATE_PUBLIC_THREADS, perm.SEND_MESSAGES_IN_THREADS, perm.ATTACH_FILES)
# in #worker-pool, with HOST_SILENT_AFTER > 0: a presence thread, its lines, a lease's thread, a host's line read
PRESENCE_NEEDS = (perm.CREATE_PUBLIC_THREADS, perm.SEND_MESSAGES_IN_THREADS, perm.READ_MESSAGE_HISTORY)
# Everything a bot of this project may be asked for (an invite link's permissions: init.py): each channel's
# NEEDS, CLAIM=thread's and presence's. Manage Threads (renaming another bot's thread on a takeover) is left out:
# without it a taken-over thread only keeps its first host's name.
INVITE_NEEDS = tuple(sorted({p for _doing, needs in NEEDS.values() for p in needs} | set(THREAD_NEEDS)
                            | set(PRESENCE_NEEDS)))
GRANT_FIX = "give {them} to the bot's role (Server Settings → Roles) or allow {them} in {channel} (Edit Channel → Permissions)"


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
    access = _Access(client, me)
    guild = settings.guild_id
    for key in CHANNEL_KEYS:
        if key == "RESULTS_CHANNEL" and not settings.results_channel:   # CLAIM=thread: config.py saw to it
            found.append(Finding(OK, key, "empty: each result goes to its task's thread in #task-queue only"))
            continue
        finding, channel = _check_channel(settings, client, key)
        found.append(finding)
        if channel is not None:   # a channel that failed is said once
            found.extend(_check_permissions(settings, access, key, channel))
            if key == "TASK_QUEUE_CHANNEL":
                guild = guild or channel.guild_id or ""
    if settings.claim == "reaction":
        found.append(Finding(OK, "CLAIM=reaction", "one host claims a task by its ✅; no thread permissions needed"))
    found.extend(_check_openclaw(settings))
    found.append(_check_containment(settings))
    found.append(_check_sandbox(settings))
    if settings.gateway == "auto":
        found.extend(_check_live(settings, client, guild))
    found.append(Finding(OK, "who may submit", _who_may_submit(settings)))
    return found


def _check_live(settings: Settings, client: DiscordClient, guild: str) -> List[Finding]:
    """GATEWAY=auto: the websocket library, the Message Content intent, the slash commands (warnings: a cron
    pass needs none of them, and `orchestrate --watch` polls without them)."""
    from .commands import COMMANDS, missing
    from .gateway import available
    from .setup_api import SetupClient

    found = []
    if not available():
        found.append(Finding(WARN, "GATEWAY=auto", "the websocket library is not installed: orchestrate --watch "
                                                   "polls (pip install 'discord-orch[live]' for live events)"))
    if not isinstance(client, SetupClient) or not guild:
        return found
    try:
        app = client.application()
        gone = missing(client, app.id, guild)
    except DiscordError as exc:
        return found + [Finding(WARN, "commands", f"could not be read ({exc})")]
    if app.message_content_intent:
        found.append(Finding(OK, "intents", "Message Content Intent is on (the Gateway session asks for it)"))
    else:
        found.append(Finding(WARN, "intents", "Message Content Intent is off: the Gateway refuses the session "
                                              "(4014) and tasks read empty; turn it on in the Developer Portal "
                                              "(Bot → Privileged Gateway Intents)"))
    if gone:
        found.append(Finding(WARN, "commands", ", ".join(f"/{n}" for n in gone) + " not registered in the server: "
                             "run `discord-orch commands sync`"))
    else:
        found.append(Finding(OK, "commands", f"{', '.join('/' + c['name'] for c in COMMANDS)} registered "
                                             "(answered by orchestrate --watch)"))
    return found


class _Access:
    """The bot's standing in a server (its roles and the server's), fetched once per server."""

    def __init__(self, client: DiscordClient, me: User) -> None:
        self.client, self.me = client, me
        self._known: Dict[str, Union[Tuple[Guild, Member], DiscordError]] = {}

    def of(self, guild_id: str) -> Union[Tuple[Guild, Member], DiscordError]:
        if guild_id not in self._known:
            try:
                self._known[guild_id] = (self.client.get_guild(guild_id), self.client.get_member(guild_id, self.me.id))
            except DiscordError as exc:
                self._known[guild_id] = exc
        return self._known[guild_id]


def _check_channel(settings: Settings, client: DiscordClient, key: str) -> Tuple[Finding, Optional[Channel]]:
    """The channel's line, and the channel when it is usable (found, in GUILD_ID's server)."""
    channel_id = getattr(settings, key.lower())
    try:
        channel = client.get_channel(channel_id)
    except DiscordError as exc:
        return Finding(FAIL, key, "", exc), None
    name = _name(channel)
    if settings.guild_id and channel.guild_id and channel.guild_id != settings.guild_id:
        return Finding(FAIL, key, f"{name} is in server {channel.guild_id}, not in GUILD_ID={settings.guild_id}"), None
    where = f" in server {channel.guild_id}" if channel.guild_id else ""
    return Finding(OK, key, f"{name}{where}"), channel


def _name(channel: Channel) -> str:
    return f"#{channel.name}" if channel.name else f"channel {channel.id}"


def _check_permissions(settings: Settings, access: _Access, key: str, channel: Channel) -> List[Finding]:
    """What the bot may do in the channel against what a pass does there (and CLAIM=thread in #task-queue)."""
    if not channel.guild_id:
        return []
    standing = access.of(channel.guild_id)
    if isinstance(standing, DiscordError):
        return [Finding(FAIL, f"{key} permissions", "", standing)]
    held = perm.channel_permissions(standing[0], standing[1], channel)
    doing, needed = NEEDS[key]
    lacking = perm.missing(held, needed)
    name = _name(channel)
    if lacking:
        found = [Finding(FAIL, key, f"the bot lacks {_listed(lacking)} in {name}, which a pass needs to {doing}: "
                                    + _fix(lacking, name))]
    else:
        found = [Finding(OK, key, f"the bot has {_listed([perm.NAMES[p] for p in needed])} there")]
    if key == "TASK_QUEUE_CHANNEL" and settings.claim == "thread":
        found.append(_check_thread_claim(held, name))
    if key == "WORKER_POOL_CHANNEL" and settings.host_silent_after_s > 0:
        found.append(_check_presence(held, name))
    return found


def _check_presence(held: int, name: str) -> Finding:
    """HOST_SILENT_AFTER > 0: the host's presence thread and its lease in #worker-pool (hosts.py)."""
    return _check_needs(held, name, "HOST_SILENT_AFTER", PRESENCE_NEEDS, needed_by="this host's presence thread",
                        or_else="HOST_SILENT_AFTER=0 (no presence, no takeover)",
                        possible="presence and takeover are possible")


def _check_thread_claim(held: int, name: str) -> Finding:
    """CLAIM=thread: a host claims a task by starting its thread, then posts in it."""
    return _check_needs(held, name, "CLAIM=thread", THREAD_NEEDS, needed_by="claiming a task by starting its thread and posting its result there",
                        or_else="CLAIM=reaction (one host only)", possible="thread claiming is possible")


def _check_needs(held: int, name: str, what: str, needs, *, needed_by: str, or_else: str, possible: str) -> Finding:
    """A feature's permissions in a channel: all held (ok), or which are lacking and how to fix it."""
    lacking = perm.missing(held, needs)
    if lacking:
        return Finding(FAIL, what, f"the bot lacks {_listed(lacking)} in {name}, which {needed_by} needs: "
                                   f"{_fix(lacking, name)}, or set {or_else}")
    return Finding(OK, what, f"{possible}: the bot has {_listed([perm.NAMES[p] for p in needs])} in {name}")


def _listed(names: List[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _fix(lacking: List[str], channel: str) -> str:
    return GRANT_FIX.format(them="it" if len(lacking) == 1 else "them", channel=channel)


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


def _check_sandbox(settings: Settings) -> Finding:
    """Which fence will hold agents (AGENT_SANDBOX), probed as a pass would."""
    try:
        found = sandbox.choose(settings.agent_sandbox)
    except ConfigError as exc:
        return Finding(FAIL, "sandbox", f"{exc.problem}")
    if found.fenced:
        return Finding(OK, "sandbox", found.describe())
    return Finding(WARN, "sandbox", f"{found.describe()}; see README, Security")


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


def cron_path(name: str, path: Optional[str]) -> str:
    """The PATH a job started by cron (or systemd, whose PATH is as short) needs for its agents: cron's own,
    behind openclaw's directory when cron's PATH lacks it and the directory of its ``#!`` interpreter when
    that is missing there (both as found on ``path``, the shell's): what ``_under_cron`` tells to put in a
    crontab, computed for `discord-orch schedule`."""
    try:
        program = resolve_openclaw(name, path)
    except OrchError:
        return CRON_PATH     # not found here either: check says so
    dirs: List[str] = []
    try:
        resolve_openclaw(name, CRON_PATH)
    except OrchError:
        dirs.append(os.path.dirname(program))
    missing = missing_interpreter(program, path_for_agent(program, ":".join(dirs + [CRON_PATH])))
    here = shutil.which(missing, path=path) if missing else None
    if here:
        dirs.append(os.path.dirname(here))
    return ":".join(dict.fromkeys(dirs + [CRON_PATH]))


def _who_may_submit(settings: Settings) -> str:
    if settings.allow_anyone:
        return "anyone who can post in #task-queue (ALLOW_ANYONE=true)"
    who = [f"users {', '.join(settings.allowed_user_ids)}"] if settings.allowed_user_ids else []
    who += [f"roles {', '.join(settings.allowed_role_ids)}"] if settings.allowed_role_ids else []
    return "the bot itself (discord-orch submit)" + (f" and {' and '.join(who)}" if who else
                                                       "; nobody else (set ALLOWED_USER_IDS or ALLOWED_ROLE_IDS)")
