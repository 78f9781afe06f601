"""Room under Discord's cap of active threads (1,000 a server), made by hand only when a start meets it.

A task's thread is started with the shortest auto-archive (60 minutes, claim.py), so Discord archives
it at no request. Only when the server nears its cap (the follow-up reader sees NEAR_CAP active
threads in the look it makes anyway) or a thread start is refused at it (160006) does a pass archive: this
host's finished tasks' threads that are still active (one ``GET /guilds/{id}/threads/active``), the
oldest finished first, at most ROOM_ARCHIVES, a PATCH each.

No follow-up is lost to it: the PATCH answers with the thread, ``last_message_id`` included. One newer
than what the follow-up reader saw (``seen_upto``, state.db; the thread's claim line alone is nothing
to read, as conversation.py skips it) means a message came that the reader has not read: the archive is
taken back at once (a PATCH more), so the thread stays among the active ones, where the reader looks.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, List, Optional, Tuple

from .models import ActiveThreads, Channel
from .state import FINISHED_HERE, STATUS_MESSAGE_KEY, Store

if TYPE_CHECKING:
    from .config import Settings
    from .discord_api import DiscordClient

log = logging.getLogger("discord_orch")

ROOM_ARCHIVES = 25   # threads archived by hand at most when a start meets the server's cap
ACTIVE_THREADS_MAX = 1000   # Discord's cap of active threads a server (reported by bot authors; 160006 past it)
NEAR_CAP = 950              # the follow-up reader, seeing this many active, makes room before a start meets the cap


def make_room(client: "DiscordClient", store: Store, settings: "Settings", guild_id: str,
              active: Optional[ActiveThreads] = None) -> bool:
    """Archive this host's finished tasks' active threads, the oldest finished first; whether any was (the
    start is then tried again). ``active``: the server's active threads as just read (else one GET).
    DiscordError as the client raises it."""
    if active is None:
        active = client.list_active_threads(guild_id)
    seen = store.conversations_watched(float("-inf"))
    done: List[Tuple[float, str]] = []
    for thread in active.threads:
        rec = store.get(thread.id) if thread.parent_id == settings.task_queue_channel else None
        if rec is not None and rec.status in FINISHED_HERE and rec.host == settings.host_name:
            done.append((rec.finished_at or rec.claimed_at, thread.id))
    archived = 0
    for _finished, thread_id in sorted(done)[:ROOM_ARCHIVES]:
        answer = client.archive_thread(thread_id)
        row = seen.get(thread_id)
        if answer is not None and row is not None and unread(answer, row["seen_upto"], store.get_meta(
                STATUS_MESSAGE_KEY.format(task=thread_id))):
            client.edit_thread(thread_id, archived=False)   # a follow-up came meanwhile: read it first
            log.info("task=%s: its thread has a message not read yet; left active", thread_id)
            continue
        archived += answer is not None
    if archived:
        log.warning("the server is at Discord's cap of active threads: %d finished task threads archived", archived)
    return archived > 0


def unread(thread: Channel, seen_upto: str, status_id: Optional[str]) -> bool:
    """Has the thread a message newer than what the follow-up reader saw? Its only message being its claim
    line (the status message) is nothing to read."""
    last = thread.last_message_id
    if not last or int(last) <= int(seen_upto):
        return False
    return not (thread.message_count == 1 and last == status_id)
