"""A local world to run discord-orch in: a server on the loopback Discord and a home wired to it.

One place for what `discord-orch demo`, the tests and the benchmarks all need:
a guild with our bot, two people and the three channels (``make_world``), and
the discord-config.env keys that point a home at them (``home_config``,
``write_config``). No token of a real bot is ever involved.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Union

from .localdiscord import LocalDiscord, LocalUser

CHANNEL_NAMES = ("task-queue", "results", "worker-pool")


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
        return self.ld.messages(self.results)

    def notices(self) -> str:
        return "\n".join(m["content"] for m in self.ld.messages(self.worker_pool))


def make_world(ld: LocalDiscord, guild_name: str = "home") -> World:
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
    }


def write_config(path: Path, values: Mapping[str, object], header: str = "") -> None:
    """Write discord-config.env, readable by its owner only (it holds the token)."""
    text = header + "".join(f"{k}={v}\n" for k, v in values.items())
    path.write_text(text, encoding="utf-8")
    os.chmod(path, 0o600)
