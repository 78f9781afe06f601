"""The slash commands discord-orch answers, and `discord-orch commands sync`, which registers them.

They are guild commands (they take effect at once; Discord allows 200 creates a day per server),
registered in the server of #task-queue by replacing the application's whole set there, so a
sync is idempotent. Only ``orchestrate --watch`` with the Gateway answers them (steps/gateway.py):
an interaction reaches one session, and must be answered within 3 seconds.

What is answered: ``/status`` (what ``discord-orch status`` shows, only to who asked); ``/task``
(the task posted in #task-queue by the bot for the user, whose task it is: claim.Claims.as_posted);
and the Stop / Retry buttons of the status messages (not commands: nothing to register). The model
option is completed from the answering host's aliases; a file given is posted with the task.
"""

from __future__ import annotations

from typing import Any, Dict, List

from .setup_api import SetupClient
from .tasks import PRIORITIES, THINKING_LEVELS

STRING, ATTACHMENT = 3, 11   # an option's type
TASK_TEXT_MAX = 1800  # what one message holds with the header and the tags (longer: discord-orch submit --file)


def _choices(words: Any) -> List[Dict[str, str]]:
    return [{"name": w, "value": w} for w in words]


COMMANDS: List[Dict[str, Any]] = [
    {"name": "status", "type": 1, "description": "What discord-orch runs and what waits (only you see the answer)"},
    {"name": "task", "type": 1, "description": "Post a task in #task-queue, as yours (the same as typing it there)",
     "options": [
         {"type": STRING, "name": "text", "description": "What the agent should do", "required": True,
          "max_length": TASK_TEXT_MAX},
         {"type": STRING, "name": "model", "description": "A model alias (primary, cheap, coder, research, yours) "
                                                          "or a provider/model id", "autocomplete": True},
         {"type": STRING, "name": "thinking", "description": "How hard it thinks", "choices": _choices(THINKING_LEVELS)},
         {"type": STRING, "name": "needs", "description": "Tags the host must have, comma-separated (gpu,big-disk)"},
         {"type": STRING, "name": "priority", "description": "Its priority", "choices": _choices(PRIORITIES)},
         {"type": ATTACHMENT, "name": "file", "description": "A file for the agent (in its inputs/)"},
     ]},
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
