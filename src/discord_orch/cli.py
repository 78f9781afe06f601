"""The `discord-orch` command line: init, submit, orchestrate, check, status, schedule, demo.

Thin on purpose (house rule 8): options are defined once, turned into
``Settings`` by config.py (flag > environment > discord-config.env > default),
and handed to the module that does the work. This is the only place where
exceptions become exit codes: an ``OrchError`` is printed as one line on
stderr, never as a traceback (``-v`` adds the traceback of an internal error).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any, Callable, Optional, Tuple

import click

from . import __version__
from .errors import (EXIT_DISCORD, EXIT_SIGHUP, EXIT_SIGINT, EXIT_SIGTERM, EXIT_USAGE, DiscordError, OrchError,
                     StateError)
from .cli_options import command_options, setting_options
from .settings_spec import INIT_OPTIONS

log = logging.getLogger("discord_orch")

LOG_FORMAT = "%(asctime)s discord-orch[%(process)d] %(levelname)s %(message)s"
LOG_DATEFMT = "%Y-%m-%dT%H:%M:%S"
LOG_ROTATE_BYTES = 5 * 1024 * 1024
LOG_ROTATE_KEEP = 3
MISSING_COMMAND = "Missing command."   # click's UsageError text for a group called without one


class _Group(click.Group):
    """Turns OrchError into a one-line message and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OrchError as exc:
            _fail(ctx, exc)
        except KeyboardInterrupt:
            click.echo("discord-orch: interrupted", err=True)
            ctx.exit(EXIT_SIGINT)


def _fail(ctx: click.Context, exc: OrchError) -> None:
    click.echo(f"discord-orch: error: {_explain(ctx, exc)}", err=True)
    ctx.exit(exc.exit_code)


def _explain(ctx: click.Context, exc: OrchError) -> str:
    """One line for the user: a Discord error names the config key behind its channel and token."""
    settings = (ctx.obj or {}).get("settings")
    text = str(exc)
    if isinstance(exc, DiscordError):
        channel_key = token_key = None
        if settings is not None:
            if exc.channel_id:
                channel_key = next((key for key in ("TASK_QUEUE_CHANNEL", "RESULTS_CHANNEL", "WORKER_POOL_CHANNEL")
                                    if getattr(settings, key.lower()) == exc.channel_id), None)
            if settings.token_key:
                where = ("set in the environment" if os.environ.get(settings.token_key)
                         else f"in {settings.home / 'discord-config.env'}")
                token_key = f"{settings.token_key} ({where})"
        text = exc.explain(channel_key, token_key)
    return _one_line(text)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _setup_logging(verbose: int, quiet: bool, log_file: Optional[Path]) -> None:
    # -q quiets stderr only (cron mails what a job prints): --log-file still gets every line.
    level = logging.DEBUG if verbose else logging.INFO
    root = logging.getLogger("discord_orch")
    root.handlers.clear()
    root.setLevel(level if (log_file is not None or not quiet) else logging.ERROR)
    root.propagate = False
    fmt = logging.Formatter(LOG_FORMAT, LOG_DATEFMT)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(fmt)
    stderr.setLevel(logging.ERROR if quiet else level)
    root.addHandler(stderr)
    if log_file is not None:
        try:
            from logging.handlers import RotatingFileHandler   # only with --log-file: not every cron pass

            log_file.parent.mkdir(parents=True, exist_ok=True)
            handler = RotatingFileHandler(log_file, maxBytes=LOG_ROTATE_BYTES,
                                           backupCount=LOG_ROTATE_KEEP, encoding="utf-8")
        except OSError as exc:
            raise click.UsageError(f"--log-file {log_file}: {exc.strerror or exc}") from None
        handler.setFormatter(fmt)
        root.addHandler(handler)
    # HTTP detail only with -v; it never contains the token (see discord_api.py).
    logging.getLogger("discord_orch.http").setLevel(logging.DEBUG if verbose else logging.WARNING)


def _load(ctx: click.Context, **overrides: Any):
    from .config import load_settings

    home = ctx.obj["home"]
    settings = load_settings(home, overrides)
    ctx.obj["settings"] = settings
    _setup_logging(ctx.obj["verbose"], ctx.obj["quiet"], ctx.obj["log_file"] or settings.log_file)
    for warning in settings.warnings:
        log.warning("%s", warning)
    return settings


def _client(settings, *, setup: bool = False):
    from .discord_api import DiscordClient
    from .setup_api import SetupClient

    return (SetupClient if setup else DiscordClient)(settings.token.reveal(), base_url=settings.api_base_url,
                                                     max_wait=settings.rate_limit_max_wait)


def _keep_option(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """Store a shared option in ctx.obj: the group's value, unless given again after the command."""
    obj = ctx.ensure_object(dict)
    given = ctx.get_parameter_source(param.name) is click.core.ParameterSource.COMMANDLINE
    if param.name == "verbose" and param.name in obj:
        obj[param.name] += value            # `-v orchestrate -v`: both count
    elif given or param.name not in obj:
        obj[param.name] = value


# Accepted before the command and after it (`discord-orch -v orchestrate`, `discord-orch orchestrate -v`),
# so each is listed by every command's --help; defined once, here.
SHARED_OPTIONS = (
    click.option("--home", type=click.Path(file_okay=False, path_type=Path), envvar="DISCORD_ORCH_HOME",
                 callback=_keep_option, expose_value=False,
                 help="Directory holding discord-config.env, workers/, .runtime/, archive/ (default: current)."),
    click.option("-v", "--verbose", count=True, callback=_keep_option, expose_value=False,
                 help="More detail (HTTP requests, never the token)."),
    click.option("-q", "--quiet", is_flag=True, callback=_keep_option, expose_value=False,
                 help="Only errors on stderr (--log-file still gets every line)."),
    click.option("--log-file", type=click.Path(dir_okay=False, path_type=Path), callback=_keep_option,
                 expose_value=False, help="Also append the log here (rotated)."),
)


def shared_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options every command accepts (SHARED_OPTIONS), kept in ctx.obj."""
    for option in reversed(SHARED_OPTIONS):
        command = option(command)
    return command


# no_args_is_help=False: a bare `discord-orch` is then the same usage error (exit 2) with every
# click (8.1 printed the help and exited 0, 8.2 raises NoArgsIsHelpError).
@click.group(cls=_Group, no_args_is_help=False, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="discord-orch")
@shared_options
def cli() -> None:
    """Turn a Discord server into a task queue for OpenClaw agents."""


@cli.command()
@click.argument("task", required=False)
@click.argument("model", required=False)
@click.argument("thinking", required=False)
@click.option("--file", "task_file", type=click.File("r", encoding="utf-8", errors="strict"),
              help="Read the task from a file ('-' for standard input); the arguments are then MODEL THINKING.")
@click.option("--model", "model_option", metavar="MODEL", help="The model (as the MODEL argument).")
@click.option("--thinking", "thinking_option", metavar="LEVEL", help="The thinking level (as the THINKING argument).")
@click.option("--worker", help="Worker type: uses workers/<TYPE>/TOOLS.md and AGENTS.md.")
@click.option("--attach", "attach", multiple=True, metavar="FILE",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A file to send with the task (repeatable); the agent finds it in inputs/.")
@click.option("--needs", multiple=True, metavar="TAG",
              help="A host tag the task needs (HOST_TAGS); repeat it, or gpu,repo-x: all are required.")
@click.option("--priority", metavar="LEVEL", help="high, normal (the default) or low.")
@shared_options
@click.pass_context
def submit(ctx: click.Context, task: Optional[str], model: Optional[str], thinking: Optional[str],
           task_file, model_option: Optional[str], thinking_option: Optional[str], worker: Optional[str],
           attach: Tuple[Path, ...], needs: Tuple[str, ...], priority: Optional[str]) -> None:
    """Post TASK to #task-queue; print its task id.

    \b
    discord-orch submit "TASK" [MODEL] [THINKING]
    discord-orch submit --file task.txt [MODEL] [THINKING]
    discord-orch submit "TASK" --attach data.csv --attach screenshot.png

    MODEL is an alias (cheap, primary, coder, research, or one from MODEL_ALIASES)
    or a full provider/model id; THINKING is off, minimal, low, medium, high or xhigh.
    Both may also be given as --model and --thinking.
    """
    from .submit import read_attachments, read_task_text, submit_task, validate_submission

    if task_file is not None and task is not None:
        if any(c.isspace() for c in task):   # a sentence is a task, not a model
            raise click.UsageError("give the task either as TASK or with --file, not both")
        if thinking is not None:
            raise click.UsageError(f"with --file, the arguments are MODEL and THINKING: got a third ({thinking})")
        task, model, thinking = None, task, model   # `submit --file x cheap low`
    model = _one_of("MODEL", model, "--model", model_option)
    thinking = _one_of("THINKING", thinking, "--thinking", thinking_option)
    text = read_task_text(task, task_file)
    settings = _load(ctx)
    tags = validate_submission(text, model, thinking, worker, settings.aliases, needs, priority)
    uploads = read_attachments(list(attach))
    settings.require_token()
    settings.require_channels("TASK_QUEUE_CHANNEL")
    with _client(settings) as client:
        task_id = submit_task(client, settings, text, model, thinking, worker, uploads, needs=tags,
                              priority=priority.strip().lower() if priority else None)
    click.echo(task_id)


def _one_of(argument: str, positional: Optional[str], flag: str, option: Optional[str]) -> Optional[str]:
    """The value given as the argument or as the option; both, and different: a usage error."""
    if positional is not None and option is not None and positional != option:
        raise click.UsageError(f"{argument} given twice, differently: {positional!r} and {flag} {option!r}")
    return option if option is not None else positional


def _fence_or_fail(mode: str) -> None:
    """The pass holds the token: no process of our user may read our memory (prctl); a named sandbox
    that does not work here stops the pass before any agent runs (fail closed)."""
    from .landlock import undumpable

    undumpable()
    if mode in ("bwrap", "landlock"):   # auto never fails; an idle pass loads no more than this
        from . import sandbox

        sandbox.fence(mode)


@cli.command()
@click.option("--watch", is_flag=True, help="Keep polling and running until stopped (for systemd or a terminal).")
@setting_options("POLL_INTERVAL", "MAX_AGENTS", "TIMEOUT")
@shared_options
@click.pass_context
def orchestrate(ctx: click.Context, watch: bool, **flags: Any) -> None:
    """Run one pass: claim pending tasks, run their agents, post results."""
    from .orchestrator import Orchestrator
    from .state import DISK_FULL, RESERVE_NAME, Store, check_writable

    settings = _load(ctx, **flags)   # flags keyed like the file: flag > environment > file > default
    settings.require_token()
    settings.require_channels("TASK_QUEUE_CHANNEL", "WORKER_POOL_CHANNEL")
    settings.require_results_channel()
    _fence_or_fail(settings.agent_sandbox)
    try:
        for directory in (settings.runtime_dir, settings.workers_dir, settings.archive_dir):
            check_writable(directory, reserve=settings.runtime_dir / RESERVE_NAME)
        store = Store(settings.runtime_dir, host=settings.host_name)
    except StateError as exc:
        if exc.problem != DISK_FULL:
            raise
        from .workspace import disk_full_advice

        raise StateError(exc.path, f"{DISK_FULL}: {disk_full_advice(settings)}") from None
    client = _client(settings)
    orch = Orchestrator(settings, client, store)
    # SIGHUP: the terminal of a foreground --watch was closed. Under nohup it stays ignored.
    stop_signals = [signal.SIGTERM, signal.SIGINT]
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        stop_signals.append(signal.SIGHUP)
    previous = {sig: signal.signal(sig, lambda signum, frame: orch.request_stop(signum)) for sig in stop_signals}
    signal.signal(signal.SIGCHLD, lambda signum, frame: orch.wake())
    try:
        stats = orch.run_pass(watch=watch)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        client.close()
        store.close()
    orch.raise_if_fatal()
    if stats.stopped_by is not None:
        ctx.exit({signal.SIGINT: EXIT_SIGINT, signal.SIGHUP: EXIT_SIGHUP}.get(stats.stopped_by, EXIT_SIGTERM))
    if client.setup_problem is not None:  # e.g. no Add Reactions in #task-queue: the pass went on; say so
        raise client.setup_problem


@cli.command()
@shared_options
@click.pass_context
def check(ctx: click.Context) -> None:
    """Check the setup without posting: token, channels, permissions to read, openclaw.

    One line per check; exit 0 when all pass, else the exit code of the first problem.
    """
    from .check import FAIL, run_checks

    settings = _load(ctx)
    settings.require_token()
    settings.require_channels("TASK_QUEUE_CHANNEL", "WORKER_POOL_CHANNEL")
    settings.require_results_channel()
    with _client(settings, setup=True) as client:
        findings = run_checks(settings, client)
    for f in findings:
        text = _explain(ctx, f.error) if f.error is not None else f.text
        click.echo(f"{f.level:<4}  {f.subject}: {text}")
    failed = [f for f in findings if f.level == FAIL]
    if failed:
        click.echo(f"discord-orch: error: {len(failed)} problem(s) found; fix them and run discord-orch check again",
                   err=True)
        ctx.exit(failed[0].error.exit_code if failed[0].error is not None else EXIT_DISCORD)


@cli.command()
@click.argument("action", type=click.Choice(["sync"]))
@shared_options
@click.pass_context
def commands(ctx: click.Context, action: str) -> None:
    """Register the slash commands (/status) in the server of #task-queue: commands sync."""
    from .commands import sync

    settings = _load(ctx)
    settings.require_token()
    settings.require_channels("TASK_QUEUE_CHANNEL")
    with _client(settings, setup=True) as client:
        click.echo(sync(settings, client))


@cli.command()
@command_options(INIT_OPTIONS)
@shared_options
@click.pass_context
def init(ctx: click.Context, **answers: Any) -> None:
    """Set this home up from a bot token: find the server and its channels (create the missing ones),
    who may run tasks, write discord-config.env, then check it. Every question has an option."""
    from .init import Dialog, next_steps, run_init

    _setup_logging(ctx.obj["verbose"], ctx.obj["quiet"], ctx.obj["log_file"])
    dialog = Dialog(click.echo, lambda q, d: click.prompt(q, default=d, show_default=bool(d)), lambda q: click.prompt(
        q, hide_input=True), lambda q, d: click.confirm(q, default=d), interactive=not answers["non_interactive"])
    home = run_init(ctx.obj["home"] or Path.cwd(), answers, dialog)
    ctx.invoke(check)
    click.echo(next_steps(home))


@cli.command()
@click.argument("action", type=click.Choice(["install", "remove", "status"]))
@click.option("--cron", "how", flag_value="cron", help="A pass every minute from cron (install's default).")
@click.option("--systemd", "how", flag_value="systemd", help="orchestrate --watch as a systemd user service.")
@shared_options
@click.pass_context
def schedule(ctx: click.Context, action: str, how: Optional[str]) -> None:
    """Run passes on their own: schedule install [--cron | --systemd], schedule remove, schedule status."""
    from .schedule import run_schedule

    for line in run_schedule(_load(ctx), action, how):
        click.echo(line)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the same as JSON, for scripts.")
@click.option("--live", is_flag=True, help="Also read Discord now: what is pending in #task-queue, and the hosts on the queue (#worker-pool).")
@shared_options
@click.pass_context
def status(ctx: click.Context, as_json: bool, live: bool) -> None:
    """One screen: the last pass, waiting, running, the last outcomes, the outbox, spend and budgets.

    Read from this home's state.db; no Discord request unless --live (then also the hosts on the queue).
    """
    import json
    import time

    from .state import DB_NAME, Store
    from .status import gather, live_hosts, live_pending, render

    settings = _load(ctx)
    store = Store(settings.runtime_dir, host=settings.host_name) if (settings.runtime_dir / DB_NAME).exists() else None
    try:
        pending = hosts = None
        if live:
            settings.require_token()
            settings.require_channels("TASK_QUEUE_CHANNEL")
            with _client(settings) as client:
                pending = live_pending(settings, client, store)
                hosts = live_hosts(settings, client)
        data = gather(settings, store, time.time(), live=pending, hosts=hosts)
    finally:
        if store is not None:
            store.close()
    click.echo(json.dumps(data, indent=2, ensure_ascii=False) if as_json else render(data))


@cli.command()
@click.option("--real-agent", is_flag=True, help="Use the real openclaw (installed by scripts/install-openclaw) and a local model server instead of the built-in stand-in.")
@click.option("--keep", is_flag=True, help="Keep the demo's temporary home and print where it is.")
@shared_options
@click.pass_context
def demo(ctx: click.Context, real_agent: bool, keep: bool) -> None:
    """Run the whole flow on a local Discord stand-in: no token needed."""
    from .sim.demo import run_demo

    _setup_logging(ctx.obj["verbose"], ctx.obj["quiet"], ctx.obj["log_file"])
    run_demo(real_agent=real_agent, keep=keep, echo=click.echo)


def main(argv: Optional[list] = None) -> None:
    """Entry point: one line per problem, never a traceback (unless -v)."""
    try:
        rc = cli.main(args=argv, prog_name="discord-orch", standalone_mode=False)
    except click.UsageError as exc:
        args = sys.argv[1:] if argv is None else list(argv)
        command = exc.ctx.info_name if exc.ctx is not None and exc.ctx.parent is not None else \
            next((a for a in args if a in cli.commands), None)  # click gives no context for some errors
        where = f"discord-orch {command} --help" if command else "discord-orch --help"
        problem = exc.format_message()
        if problem == MISSING_COMMAND:
            problem = f"no command given: use one of {', '.join(sorted(cli.commands))}"
        click.echo(f"discord-orch: error: {_one_line(problem)} (see {where})", err=True)
        sys.exit(EXIT_USAGE)
    except click.Abort:
        click.echo("discord-orch: interrupted", err=True)
        sys.exit(EXIT_SIGINT)
    except click.ClickException as exc:
        click.echo(f"discord-orch: error: {_one_line(exc.format_message())}", err=True)
        sys.exit(exc.exit_code)
    except Exception as exc:  # an internal error: one line, the traceback only with -v
        if logging.getLogger("discord_orch").isEnabledFor(logging.DEBUG):
            raise
        click.echo(f"discord-orch: internal error: {exc.__class__.__name__}: {_one_line(exc)} "
                   "(run with -v for details)", err=True)
        sys.exit(1)
    sys.exit(rc if isinstance(rc, int) else 0)


__all__ = ["cli", "main", "EXIT_USAGE"]
