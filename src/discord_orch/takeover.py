"""A silent host's open tasks, taken over by another host (issue 13): none is lost for good.

Every host posts a line in its presence thread at most every HOST_SILENT_AFTER/3
seconds (hosts.py), and each line names its *lease*: a message of its own in
#worker-pool. After its own line, a host looks (``Takeover.look``, on the presence
lane): one ``GET /guilds/{id}/threads/active`` shows every host's presence thread
(its last line's time is its ``last_message_id``'s) and every open task's thread
(a finished task's thread is archived, so the active ones are the open ones, and
each names its host).

For a host silent longer than HOST_SILENT_AFTER with open tasks:

1. read its last line (one GET): its lease;
2. start the lease's thread, named ``🔑 <silent> taken over by <me>``. Discord
   allows one thread per message, so of all the hosts that found it silent, and
   the silent host itself if it came back meanwhile (it starts the same thread,
   ``🔑 <host> renewed``, before it posts or claims anything: hosts.py), exactly one
   wins; the others leave it (160004);
3. the winner takes each of its open tasks: the thread's last messages are read
   (one GET; a task whose result is there is only closed), the task message (one
   GET) is parsed, recorded here as ``claimed`` (an ``elsewhere`` record becomes
   ``claimed``) with its ledger line, the thread renamed to this host (its
   thread now says who runs it) and told ``🔁 <me> takes over from <silent> …: the
   task runs again here``; then it runs as any claimed task, with its ✅ already
   there. The winner's own lease covers it from then on.

The silent host, when it comes back (SIGCONT, or a new pass after a SIGKILL or a
reboot), knows it was silent: its last line is older than HOST_SILENT_AFTER/2.
Until it has renewed its lease it posts no result and claims nothing
(``Presence.fresh``). Its renewal's start is answered 160004 with the taker's
name: it stops the agents of its open tasks, records them ``elsewhere`` and posts
nothing for them; one result per task, the taker's. The window left: a host
stopped between that check and its post (milliseconds), for which Discord offers
no fencing.

Cost: one request per presence line when no host is silent (the GET), three
requests per line when the presence is due at all (the line, the delete of the
one before, the GET): an idle cron pass stays one request between lines. A
takeover costs 2 + 4 per task.
"""

from __future__ import annotations

import logging
import queue
import time
from typing import TYPE_CHECKING, Callable, List

from .errors import DiscordError, ThreadAlreadyExists, Unauthorized
from .hosts import LEASE_ARCHIVE_MINUTES, HostSeen, hosts_seen, lease_in, parse_presence_name, presence_threads, takeover_name
from .models import Channel
from .state import CLAIMED, ELSEWHERE, Store, TaskRecord
from .tasks import POST_MARKER, parse_task

if TYPE_CHECKING:
    from .claim import Claims
    from .config import Settings
    from .discord_api import DiscordClient

log = logging.getLogger("discord_orch")

TAKEN_OVER_ICON = "🔁"
RESULT_LOOK = 20   # a taken task's thread: its last messages read for a result already posted


class Takeover:
    """Looks for silent hosts after each presence line and takes their open tasks over; the records it
    claims wait in ``taken`` for the main loop to start."""

    def __init__(self, settings: "Settings", client: "DiscordClient", store: Store, claims: "Claims", *,
                 on_fatal: Callable[[Exception], None], wall: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.client = client
        self.store = store
        self.claims = claims
        self._on_fatal = on_fatal
        self._wall = wall
        self.taken: "queue.Queue[TaskRecord]" = queue.Queue()

    def look(self) -> None:
        """One GET of the server's active threads; take over the open tasks of every silent host."""
        s = self.settings
        try:
            active = self.client.list_active_threads(self.claims.identity.guild())
            now = self._wall()
            for host in hosts_seen(active, s.worker_pool_channel):
                if host.name == s.host_name or now - host.last_seen <= s.host_silent_after_s:
                    continue
                tasks = self._open_tasks(active.threads, host.name)
                if tasks and self._win(host, active.threads):
                    for thread in tasks:
                        self._take(thread, host)
        except Unauthorized as exc:
            self._on_fatal(exc)
        except DiscordError as exc:
            log.warning("could not look for silent hosts: %s", exc)

    def _open_tasks(self, threads: "tuple", host: str) -> List[Channel]:
        from .report import thread_host

        return [t for t in threads if t.parent_id == self.settings.task_queue_channel
                and thread_host(t.name or "") == host]

    def _win(self, host: HostSeen, threads: "tuple") -> bool:
        """Start the silent host's lease thread: True when this host did."""
        s = self.settings
        theirs = [t for t in presence_threads(threads, s.worker_pool_channel)
                  if (parse_presence_name(t.name or "") or ("",))[0] == host.name]
        presence = max(theirs, key=lambda t: int(t.last_message_id or t.id), default=None)
        if presence is None or not presence.last_message_id:
            return False
        lease = lease_in(self.client.get_message(presence.id, presence.last_message_id))
        if lease is None:
            return False
        mine = takeover_name(host.name, s.host_name)
        try:
            self.client.start_thread(s.worker_pool_channel, lease, mine, auto_archive_duration=LEASE_ARCHIVE_MINUTES)
        except ThreadAlreadyExists as exc:
            seen = self.client.find_thread(lease) if exc.after_retry else None
            if seen is None or seen.name != mine:
                log.info("%s is silent; another host (or %s itself) has its lease", host.name, host.name)
                return False
        log.warning("%s silent since %s: taking its open tasks over", host.name,
                    time.strftime("%H:%M:%S", time.localtime(host.last_seen)))
        return True

    def _take(self, thread: Channel, host: HostSeen) -> None:
        """Take one open task of a silent host: record, rename its thread, say so; queue it to run."""
        from .report import thread_name

        s = self.settings
        task_id = thread.id
        try:
            lines = self.client.list_messages(task_id, limit=RESULT_LOOK)
            # the result: a post of its own (RESULTS_CHANNEL empty) or under the claim line (the status message)
            if any(m.author.bot and f"task `{task_id}`" in "\n".join(m.content.split("\n", 2)[:2]) for m in lines):
                log.info("task=%s: %s had posted its result; nothing to take over", task_id, host.name)
                return
            msg = self.client.get_message(s.task_queue_channel, task_id)
            if not self.claims.access.check(msg).allowed:
                return   # the silent host's refusal to post: not a task to run here either
            attachment_text, _unreadable = self.claims.task_attachment(msg)
            parsed = parse_task(msg.content, s.aliases, attachment_text=attachment_text)
            rec = self.store.get(task_id)
            if rec is None:
                self.store.insert(task_id=task_id, channel_id=msg.channel_id, author_id=msg.author.id, status=CLAIMED,
                                  description=parsed.description, model_alias=parsed.model_alias,
                                  model=parsed.model or "", thinking=parsed.thinking, worker=parsed.worker)
            elif rec.status == ELSEWHERE:
                self.store.mark_taken_over(task_id)
            else:
                return   # this host's own already
            self.store.append_ledger(task_id)
            self.store.note_claim_reacted(task_id)   # the ✅ is there; the line below says who runs it now
            rec = self.store.get(task_id)   # type: ignore[assignment]
            self.taken.put(rec)
        except (Unauthorized, DiscordError) as exc:
            if isinstance(exc, Unauthorized):
                self._on_fatal(exc)
            else:
                log.warning("task=%s: could not take it over from %s: %s", task_id, host.name, exc)
            return
        log.warning("task=%s: taken over from %s (silent); it runs again here", task_id, host.name)
        try:
            # Its thread now names this host, which its next takeover reads; another bot's thread can be
            # renamed only with Manage Threads (then the line below alone says who runs it).
            self.client.rename_thread(task_id, thread_name(rec.description, s.host_name, task_id))
            since = int(host.last_seen)
            self.client.post_in_thread(task_id, f"{TAKEN_OVER_ICON} Taken over by **{s.host_name}**: "
                                       f"**{host.name}** is silent since <t:{since}:R>, so the task runs again "
                                       f"here\n{POST_MARKER}")
        except DiscordError as exc:
            log.warning("task=%s: its thread does not say it was taken over: %s", task_id, exc)
