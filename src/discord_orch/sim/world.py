"""A local world to run discord-orch in: a server on the loopback Discord and a home wired to it.

One place for what `discord-orch demo`, the tests and the benchmarks all need:
a guild with our bot, two people and the three channels (``make_world``), the
discord-config.env keys that point a home at them (``home_config``,
``write_config``), and a whole home with the stand-in agent (``LocalHome.build``,
for the tests and the benchmarks). No token of a real bot is ever involved.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Type, TypeVar, Union

from ..config import CONFIG_FILENAME
from ..state import LEDGER_NAME
from .localdiscord import LocalDiscord, LocalUser
from .standin_openclaw import write_standin_executable

CHANNEL_NAMES = ("task-queue", "results", "worker-pool")
HOME_DIRS = ("workers", ".runtime", "archive")
NO_FOLLOWUPS = "0"       # LocalHome's FOLLOWUP_HOURS unless a test or bench sets it
STANDIN_BIN_DIR = "bin"  # under the root, beside the home: where LocalHome.build writes the stand-in openclaw


@dataclass
class World:
    """A server on a LocalDiscord: our bot, alice and mallory, and the three channels."""

    ld: LocalDiscord
    guild: str
    bot: LocalUser
    alice: LocalUser
    mallory: LocalUser
    task_queue: str
    results: str
    worker_pool: str

    def post(self, author: LocalUser, content: str, **kw: object) -> dict:
        """``author`` types ``content`` into #task-queue (no HTTP, as a person would)."""
        return self.ld.post_message(self.task_queue, author.id, content, **kw)

    def results_messages(self) -> List[dict]:
        """The messages of #results, oldest first."""
        return self.ld.messages(self.results)

    def notices(self) -> str:
        """The text of #worker-pool, one message a line."""
        return "\n".join(m["content"] for m in self.ld.messages(self.worker_pool))


def make_world(ld: LocalDiscord, guild_name: str = "home") -> World:
    """A guild on ``ld`` with our bot, alice, mallory and the three channels."""
    guild = ld.create_guild(guild_name)
    bot = ld.create_user("discord-orch", bot=True)
    alice = ld.create_user("alice")
    mallory = ld.create_user("mallory")
    for user in (bot, alice, mallory):
        ld.add_member(guild, user.id)
    channels = [ld.create_channel(guild, name) for name in CHANNEL_NAMES]
    return World(ld, guild, bot, alice, mallory, *channels)


def home_config(world: World, *, openclaw_bin: Union[str, Path], openclaw_config: Union[str, Path]) -> Dict[str, str]:
    """The discord-config.env keys that point a home at ``world``."""
    return {
        "CHIP_TOKEN": str(world.bot.token),
        "GUILD_ID": world.guild,
        "TASK_QUEUE_CHANNEL": world.task_queue,
        "RESULTS_CHANNEL": world.results,
        "WORKER_POOL_CHANNEL": world.worker_pool,
        "DISCORD_API_BASE_URL": world.ld.base_url,
        "OPENCLAW_BIN": str(openclaw_bin),
        "OPENCLAW_CONFIG": str(openclaw_config),
        # No presence line (hosts.py) unless a test or bench turns it on: it adds requests and messages in
        # #worker-pool that most tests count.
        "HOST_SILENT_AFTER": "0",
        # the stand-in's code (src/), which its executable imports: under a fence it is not there otherwise
        "SANDBOX_READ_PATHS": str(Path(__file__).resolve().parents[2]),
    }


def write_config(path: Path, values: Mapping[str, object], header: str = "") -> None:
    """Write discord-config.env, readable by its owner only (it holds the token)."""
    text = header + "".join(f"{k}={v}\n" for k, v in values.items())
    path.write_text(text, encoding="utf-8")
    os.chmod(path, 0o600)


H = TypeVar("H", bound="LocalHome")


@dataclass
class LocalHome:
    """A discord-orch home wired to a World, run with the stand-in openclaw; ``env`` is its CLI's environment."""

    path: Path
    world: World
    env: Dict[str, str]
    config: Dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls: Type[H], root: Path, world: World, env: Mapping[str, str], **config: object) -> H:
        """``root/home``, its directories and a config for ``world`` plus ``config``; the stand-in in root/bin."""
        path = root / "home"
        for sub in HOME_DIRS:
            (path / sub).mkdir(parents=True)
        openclaw = write_standin_executable(root / STANDIN_BIN_DIR)
        home = cls(path, world, dict(env))
        # Follow-ups (FOLLOWUP_HOURS, default 24) keep a workspace and read the task's thread for a day after
        # its result: the tests and benches of everything else see the walk without them; those about
        # follow-ups set it.
        config = {"FOLLOWUP_HOURS": NO_FOLLOWUPS, **config}
        home.write_config(**{**home_config(world, openclaw_bin=openclaw, openclaw_config=root / "no-openclaw.json"),
                             **config})
        return home

    def write_config(self, **extra: object) -> None:
        """Add ``extra`` to the config and write discord-config.env again."""
        self.config.update({k: str(v) for k, v in extra.items()})
        write_config(self.path / CONFIG_FILENAME, self.config)

    def ledger(self) -> List[str]:
        """The task ids in the ledger, in order."""
        path = self.path / ".runtime" / LEDGER_NAME
        return path.read_text().split() if path.exists() else []

    def workers(self) -> List[str]:
        """The entries of workers/ (dot files aside), sorted."""
        return _listing(self.path / "workers")

    def archive(self) -> List[str]:
        """The entries of archive/ (dot files aside), sorted."""
        return _listing(self.path / "archive")


def _listing(directory: Path) -> List[str]:
    return sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))
