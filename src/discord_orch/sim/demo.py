"""`discord-orch demo`: the whole product on a local Discord, no token needed.

Starts the loopback Discord (sim/localdiscord) with a server, a bot and the
three channels, writes a throw-away home with its discord-config.env, submits
two sample tasks through the real submit path, runs one real orchestrate pass
(a subprocess per agent, as in production) with the built-in stand-in agent or
(``--real-agent``) the real openclaw that scripts/install-openclaw cached, talking to the local
model server (sim/model_server.py: no API key, no network), and prints what appeared in each
channel.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from ..errors import AgentError

SAMPLE_TASKS = (
    ("Write a haiku about cron jobs", "cheap", "low"),
    ('Summarise: "quotes", back\\slashes and\nnewlines all survive', None, None),
)


def run_demo(*, real_agent: bool = False, keep: bool = False, echo: Callable[[str], None] = print) -> None:
    from ..config import CONFIG_FILENAME, load_settings
    from ..discord_api import DiscordClient
    from ..orchestrator import Orchestrator
    from ..state import Store
    from ..submit import submit_task
    from .localdiscord import LocalDiscord, RateLimits
    from .model_server import PROVIDER, ModelServer
    from .openclaw_install import installed_openclaw, not_installed_message
    from .standin_openclaw import write_standin_executable
    from .world import HOME_DIRS, home_config, make_world, write_config

    openclaw = installed_openclaw() if real_agent else None
    if real_agent and openclaw is None:
        raise AgentError("openclaw", f"{not_installed_message()}; or drop --real-agent to use the stand-in")
    home = Path(tempfile.mkdtemp(prefix="discord-orch-demo-"))
    try:
        with LocalDiscord(rate_limits=RateLimits.discord_defaults()) as ld, contextlib.ExitStack() as stack:
            world = make_world(ld, "demo")
            channels = {"task-queue": world.task_queue, "results": world.results, "worker-pool": world.worker_pool}
            extra: dict = {"TIMEOUT": 60}
            if openclaw is not None:
                model_server = stack.enter_context(ModelServer())
                (home / "openclaw").mkdir()
                openclaw_config = str(model_server.openclaw_config(home / "openclaw" / "openclaw.json"))
                # the sample tasks' models, served by the local model server instead of openrouter
                extra["MODEL_ALIASES"] = f"cheap={PROVIDER}/model-a,primary={PROVIDER}/model-b"
                echo(f"real openclaw {openclaw}; local model server at {model_server.base_url}")
            else:
                openclaw = write_standin_executable(home / "bin")
                openclaw_config = str(home / "no-openclaw.json")
            for sub in HOME_DIRS:
                (home / sub).mkdir()
            write_config(home / CONFIG_FILENAME,
                         {**home_config(world, openclaw_bin=openclaw, openclaw_config=openclaw_config), **extra},
                         header="# written by discord-orch demo: a local Discord on 127.0.0.1, not discord.com\n")
            settings = load_settings(home, environ={k: v for k, v in os.environ.items()
                                                    if k not in _CONFIG_ENV_KEYS})
            echo(f"local Discord at {ld.base_url}; home {home}")
            with DiscordClient(settings.token.reveal(), base_url=settings.api_base_url) as client:
                for text, model, thinking in SAMPLE_TASKS:
                    task_id = submit_task(client, settings, text, model, thinking, None)
                    echo(f"submitted task {task_id}")
                echo("running one orchestrate pass ...")
                store = Store(settings.runtime_dir, host=settings.host_name)
                try:
                    Orchestrator(settings, client, store).run_pass()
                finally:
                    store.close()
            for name, cid in channels.items():
                echo("")
                echo(f"#{name}")
                for msg in ld.messages(cid):
                    reactions = " ".join(f"{e}{len(users)}" for e, users in ld.reactions(cid, msg["id"]).items())
                    files = " ".join(f"[{a['filename']}]" for a in msg.get("attachments") or ())
                    echo(f"  ┌ {msg['author']['username']}  {reactions} {files}".rstrip())
                    for line in (msg.get("content") or "").splitlines() or [""]:
                        echo(f"  │ {line}")
            leftover = [p.name for p in (home / "workers").iterdir()]
            echo("")
            kept = " (kept for follow-ups in each task's thread: FOLLOWUP_HOURS)" if leftover else ""
            echo(f"workers/ after the pass: {leftover or 'empty (workspaces removed)'}{kept}")
    finally:
        if keep:
            echo(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


# Keys the user's own environment must not inject into the demo's config.
_CONFIG_ENV_KEYS = ("CHIP_TOKEN", "ORCHESTRATOR_AGENT_TOKEN", "TASK_QUEUE_CHANNEL", "RESULTS_CHANNEL",
                    "WORKER_POOL_CHANNEL", "GUILD_ID", "DISCORD_API_BASE_URL", "OPENCLAW_BIN", "OPENCLAW_CONFIG",
                    "MODEL_ALIASES", "AGENT_LOCAL", "TIMEOUT",
                    "MAX_AGENTS", "ALLOWED_USER_IDS", "ALLOWED_ROLE_IDS", "ALLOW_ANYONE", "DISCORD_ORCH_HOME")
