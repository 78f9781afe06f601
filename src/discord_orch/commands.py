"""The slash commands discord-orch answers, and `discord-orch commands sync`, which registers them.

They are guild commands (they take effect at once; Discord allows 200 creates a day per server),
registered in the server of #task-queue by replacing the application's whole set there, so a
sync is idempotent. Only ``orchestrate --watch`` with the Gateway answers them (steps/gateway.py):
an interaction reaches one session, and must be answered within 3 seconds.

What is answered today: ``/status`` (what ``discord-orch status`` shows, only to who asked), and
the Stop / Retry buttons of the status messages (not commands: nothing to register). ``/task`` is
not built yet (issue 25).
"""

from __future__ import annotations

from typing import Any, Dict, List

from .setup_api import SetupClient

COMMANDS: List[Dict[str, Any]] = [
    {"name": "status", "type": 1, "description": "What discord-orch runs and what waits (only you see the answer)"},
]


def _guild(settings: Any, client: SetupClient) -> str:
    return settings.guild_id or client.get_channel(settings.task_queue_channel).guild_id or ""


def sync(settings: Any, client: SetupClient) -> str:
    """Register COMMANDS in the server of #task-queue; what to say."""
    app, guild = client.application(), _guild(settings, client)
    names = client.set_guild_commands(app.id, guild, COMMANDS)
    return f"registered in server {guild}: " + ", ".join(f"/{n}" for n in names)


def missing(client: SetupClient, application_id: str, guild: str) -> List[str]:
    """The names of COMMANDS not registered in this server."""
    there = set(client.guild_commands(application_id, guild))
    return [c["name"] for c in COMMANDS if c["name"] not in there]
