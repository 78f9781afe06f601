"""discord-orch: turn a Discord server into a task queue for OpenClaw agents."""

__version__ = "0.1.0"
PROJECT_URL = "https://github.com/discord-orch/discord-orch"
