"""`discord-orch init`: from a bot token to a checked discord-config.env, asking only what it cannot find.

The walk, each step a question only when Discord cannot answer it (and each question has an
option, settings_spec.INIT_OPTIONS, so ``--non-interactive`` asks nothing):

1. the token: ``--token-file``, else CHIP_TOKEN / ORCHESTRATOR_AGENT_TOKEN in the environment,
   else asked without echo; GET /users/@me checks it (a 401 is one line, nothing more is sent);
2. the application (GET /oauth2/applications/@me): its id makes the invite link, whose
   permissions are check.py's INVITE_NEEDS (one place); its flags say whether Message Content
   is on (a warning: without it other people's tasks read as empty);
3. the server (GET /users/@me/guilds): none → the invite link, exit 1, run init again; one →
   it; several → ``--server`` or asked;
4. the channels by name (GET /guilds/{id}/channels): the missing ones created (POST, after a
   yes or ``--create-channels``) when the bot has Manage Channels (computed from GET /guilds/{id}
   and the bot's member by ``permissions``), else named for the user to create, exit 1;
5. who may run tasks: the server's owner, and ``--allow`` usernames (or asked), each looked up
   to its id (GET /guilds/{id}/members/search, the exact username);
6. HOST_NAME (the hostname unless told).

Nothing is written before all of that is known: then discord-config.env whole (configfile.py:
the example's comments, mode 600, one rename, the old file copied first; the old file's other
keys kept). An existing file is replaced only after a yes or ``--force``. cli.py then runs
`check` on it and prints ``next_steps``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from . import permissions as perm
from .check import INVITE_NEEDS, _listed
from .config import CONFIG_FILENAME, TOKEN_KEYS, clean_token, read_config_file
from .configfile import example_text, render, replace_file
from .errors import EXIT_CONFIG, AgentError, ConfigError, OrchError, SetupError, Unauthorized
from .models import API_BASE_URL, TEXT_CHANNEL, Application, Guild, Member, User
from .openclaw import CRON_PATH, resolve_openclaw
from .settings_spec import OPENCLAW, host_name, http_url
from .setup_api import SetupClient

CHANNELS = (("TASK_QUEUE_CHANNEL", "task-queue"), ("RESULTS_CHANNEL", "results"), ("WORKER_POOL_CHANNEL", "worker-pool"))
INVITE_URL = "https://discord.com/oauth2/authorize?client_id={client_id}&scope=bot&permissions={permissions}"
TOKEN_HELP = "Developer Portal → your application → Bot → Reset Token"


class Dialog(NamedTuple):
    """How init talks to the user (cli.py gives click's prompts); not ``interactive``: nothing is asked."""

    say: Callable[[str], None]
    ask: Callable[[str, str], str]           # (question, default) -> answer
    secret: Callable[[str], str]             # question -> answer, not echoed
    confirm: Callable[[str, bool], bool]     # (question, default) -> yes?
    interactive: bool = True


def invite_url(application_id: str) -> str:
    """The link that adds the bot to a server with exactly the permissions a pass may need."""
    bits = 0
    for bit in INVITE_NEEDS:
        bits |= bit
    return INVITE_URL.format(client_id=application_id, permissions=bits)


def run_init(home: Path, answers: Mapping[str, Any], dialog: Dialog, environ: Mapping[str, str] = os.environ) -> Path:
    """The walk (module docstring); returns the home, whose discord-config.env is then written."""
    home = Path(home).expanduser().resolve()
    if not home.is_dir():
        raise ConfigError("--home / DISCORD_ORCH_HOME", f"{home} is not a directory")
    path = home / CONFIG_FILENAME
    old, _warnings = read_config_file(path)
    _may_replace(path, answers, dialog)
    base_url = http_url("DISCORD_API_BASE_URL", environ.get("DISCORD_API_BASE_URL") or old.get("DISCORD_API_BASE_URL")
                        or API_BASE_URL, home)
    token, source = _token(answers, dialog, environ)
    with SetupClient(token, base_url=base_url) as client:
        found = _discover(client, home, answers, dialog, source)
    values = {k: v for k, v in old.items() if k not in TOKEN_KEYS}
    values.update(found)
    values["CHIP_TOKEN"] = token
    if base_url != API_BASE_URL:
        values["DISCORD_API_BASE_URL"] = base_url
    values.update(_openclaw_bin(values, environ))
    backup = replace_file(path, render(example_text(), values))
    kept = f"; the previous one is in {backup.name}" if backup is not None else ""
    dialog.say(f"wrote {path} (mode 600{kept})\nChecking it (discord-orch check):")
    return home


def next_steps(home: Path) -> str:
    """What to do once the check passed."""
    here = "" if Path.cwd().resolve() == home else f"  cd {home}\n"
    return ("\nNext:\n" + here +
            '  discord-orch submit "Say hello"   a first task (the bot itself may always post tasks)\n'
            "  discord-orch orchestrate          one pass: it runs the task and posts its result in #results\n"
            "  discord-orch schedule install     a pass every minute from cron (--systemd: a user service)")


def _may_replace(path: Path, answers: Mapping[str, Any], dialog: Dialog) -> None:
    """An existing discord-config.env is replaced only when told so (--force or a yes), before anything is asked."""
    if not path.exists() or answers.get("force"):
        return
    if not dialog.interactive:
        raise SetupError(f"{path} exists: add --force to replace it (a copy of it is kept)")
    if not dialog.confirm(f"{path} exists. Replace it at the end (a copy of it is kept)?", False):
        raise SetupError(f"{path} kept as it is; nothing changed")


def _token(answers: Mapping[str, Any], dialog: Dialog, environ: Mapping[str, str]) -> Tuple[str, str]:
    """(the token, where it came from, as a 401 will name it)."""
    if answers.get("token_file"):
        file = Path(answers["token_file"]).expanduser()
        try:
            raw = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SetupError(f"--token-file {file}: {getattr(exc, 'strerror', None) or exc}", EXIT_CONFIG) from None
        return _bare(clean_token("--token-file", raw), f"--token-file {file}"), f"the token in {file}"
    for key in TOKEN_KEYS:
        if (environ.get(key) or "").strip():
            return clean_token(key, environ[key]), f"{key} (set in the environment)"
    if not dialog.interactive:
        raise SetupError("no bot token: give --token-file FILE or set CHIP_TOKEN in the environment", EXIT_CONFIG)
    dialog.say(f"The bot's token ({TOKEN_HELP}); it is not shown as you type or paste it.")
    return _bare(clean_token("the bot token", dialog.secret("Bot token")), "the bot token"), "the token you gave"


def _bare(token: str, what: str) -> str:
    if not token:
        raise SetupError(f"{what} is empty ({TOKEN_HELP})", EXIT_CONFIG)
    return token


def _discover(client: SetupClient, home: Path, answers: Mapping[str, Any], dialog: Dialog, source: str) -> Dict[str, str]:
    """Everything the config needs that Discord can tell (or the user, when it cannot)."""
    try:
        me = client.me()
    except Unauthorized as exc:   # one line; the client sends nothing more after a 401
        raise SetupError(exc.explain(token_key=source), exc.exit_code) from None
    app = client.application()
    dialog.say(f"ok    token: bot {me.username} (id {me.id})")
    if not app.message_content_intent:
        dialog.say("warn  Message Content Intent is off: the bot would read other people's tasks as empty. Turn it "
                   "on: Developer Portal → your application → Bot → Privileged Gateway Intents")
    listed = _server(client.my_guilds(), app, me, answers, dialog)
    guild = client.get_guild(listed.id)
    member = client.get_member(listed.id, me.id)
    channels = _channels(client, listed, perm.base_permissions(guild, member), answers, dialog)
    allowed = _allowed(client, listed, guild.owner_id, me, answers, dialog)
    return {"GUILD_ID": listed.id, **channels, "ALLOWED_USER_IDS": ",".join(allowed),
            "HOST_NAME": _host(home, answers, dialog)}


def _server(guilds: Sequence[Guild], app: Application, me: User, answers: Mapping[str, Any], dialog: Dialog) -> Guild:
    """The server the queue lives in: the bot's only one, the one named, or the one chosen."""
    if not guilds:
        dialog.say(f"The bot {me.username} is in no server yet. Add it to yours (you need Manage Server there) "
                   f"with this link, which asks for what it needs ({_listed(perm.names(sum(INVITE_NEEDS)))}):\n"
                   f"  {invite_url(app.id)}")
        raise SetupError("the bot is in no server yet: open the link above, choose your server, "
                         "then run discord-orch init again")
    names = ", ".join(g.name for g in guilds)
    wanted = (answers.get("server") or "").strip()
    if wanted:
        chosen = _named(guilds, wanted)
        if chosen is None:
            raise SetupError(f"--server {wanted}: the bot is in no server of that name or id (it is in: {names}); "
                             f"to add it to another: {invite_url(app.id)}")
    elif len(guilds) == 1:
        chosen = guilds[0]
    elif not dialog.interactive:
        raise SetupError(f"the bot is in several servers ({names}): say which with --server NAME")
    else:
        chosen = _choose(guilds, dialog)
    dialog.say(f"ok    server: {chosen.name} (id {chosen.id})")
    return chosen


def _named(guilds: Sequence[Guild], wanted: str) -> Optional[Guild]:
    return next((g for g in guilds if g.id == wanted), None) or \
        next((g for g in guilds if g.name.casefold() == wanted.casefold()), None)


def _choose(guilds: Sequence[Guild], dialog: Dialog) -> Guild:
    dialog.say("The bot is in several servers:\n" + "\n".join(f"  {n}. {g.name}" for n, g in enumerate(guilds, 1)))
    while True:
        answer = dialog.ask("Which one runs the queue? (number or name)", "1").strip()
        if answer.isdigit() and 1 <= int(answer) <= len(guilds):
            return guilds[int(answer) - 1]
        chosen = _named(guilds, answer)
        if chosen is not None:
            return chosen
        dialog.say(f"      no server {answer!r} among those")


def _channels(client: SetupClient, guild: Guild, held: int, answers: Mapping[str, Any], dialog: Dialog) -> Dict[str, str]:
    """The three channels' ids by their names; the missing ones created when the bot may and the user agrees."""
    existing = sorted((c for c in client.guild_channels(guild.id) if c.type == TEXT_CHANNEL), key=lambda c: int(c.id))
    found: Dict[str, str] = {}
    missing: List[Tuple[str, str]] = []
    for key, name in CHANNELS:
        channel = next((c for c in existing if c.name == name), None)
        if channel is None:
            missing.append((key, name))
            continue
        found[key] = channel.id
        dialog.say(f"ok    {key}: #{name} (id {channel.id})")
    if not missing:
        return found
    listed = _listed([f"#{name}" for _key, name in missing])
    if not held & perm.MANAGE_CHANNELS:
        raise SetupError(f"{guild.name} has no {listed}: create {'it' if len(missing) == 1 else 'them'} (text "
                         "channels the bot can see), or give the bot Manage Channels so init can, then run "
                         "discord-orch init again")
    create = answers.get("create_channels")
    if create is None and not dialog.interactive:
        create = True        # the question's default
    if create is None:
        create = dialog.confirm(f"{guild.name} has no {listed}. Create {'it' if len(missing) == 1 else 'them'}?", True)
    if not create:
        raise SetupError(f"create {listed} in {guild.name}, then run discord-orch init again")
    for key, name in missing:
        channel = client.create_text_channel(guild.id, name)
        found[key] = channel.id
        dialog.say(f"ok    {key}: #{channel.name} created (id {channel.id})")
    return found


def _allowed(client: SetupClient, guild: Guild, owner_id: Optional[str], me: User, answers: Mapping[str, Any],
             dialog: Dialog) -> List[str]:
    """The user ids whose tasks may run: the server's owner, and the usernames given, looked up."""
    ids: List[str] = []
    shown: List[str] = ["the bot itself (discord-orch submit)"]
    if owner_id and owner_id != me.id:
        ids.append(owner_id)
        owner = client.get_member(guild.id, owner_id)
        shown.append(f"{owner.username or owner_id} (the server's owner)")
    names = list(answers.get("allow") or ())
    if names or not dialog.interactive:
        members = [_member(client, guild, name) for name in names]
    else:
        members = _ask_members(client, guild, dialog)
    for m in members:
        if m.user_id not in ids:
            ids.append(m.user_id)
            shown.append(m.username)
    dialog.say(f"ok    tasks may run from: {_listed(shown)}")
    return ids


def _ask_members(client: SetupClient, guild: Guild, dialog: Dialog) -> List[Member]:
    while True:
        typed = dialog.ask("Anyone else whose tasks may run? Usernames, comma-separated (empty: nobody)", "")
        try:
            return [_member(client, guild, name) for name in typed.replace(" ", ",").split(",") if name.strip()]
        except SetupError as exc:
            dialog.say(f"      {exc}")


def _member(client: SetupClient, guild: Guild, name: str) -> Member:
    """The member whose username is ``name`` (a leading @ and the case aside)."""
    wanted = name.strip().lstrip("@")
    found = client.search_members(guild.id, wanted[:100], limit=10) if wanted else []
    exact = [m for m in found if m.username.casefold() == wanted.casefold()]
    if exact:
        return exact[0]
    near = f" (did you mean {', '.join(m.username for m in found)}?)" if found else ""
    raise SetupError(f"no member of {guild.name} has the username {wanted!r}{near}")


def _host(home: Path, answers: Mapping[str, Any], dialog: Dialog) -> str:
    """This host's name: given, asked (the hostname by default), or the hostname."""
    default = host_name("HOST_NAME", "", home)
    if answers.get("host_name"):
        return host_name("HOST_NAME", answers["host_name"], home)
    while dialog.interactive:
        try:
            return host_name("HOST_NAME", dialog.ask("This host's name (it ends each task's thread name)", default), home)
        except OrchError as exc:
            dialog.say(f"      {exc}")
    return default


def _openclaw_bin(values: Mapping[str, str], environ: Mapping[str, str]) -> Dict[str, str]:
    """OPENCLAW_BIN's full path when openclaw is found here but cron's PATH would not find it."""
    if values.get("OPENCLAW_BIN"):
        return {}
    try:
        program = resolve_openclaw(OPENCLAW, environ.get("PATH"))
    except AgentError:
        return {}        # check says so
    try:
        resolve_openclaw(OPENCLAW, CRON_PATH)
        return {}
    except AgentError:
        return {"OPENCLAW_BIN": program}
