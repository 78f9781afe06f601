"""The hosts on one queue: each host's presence in #worker-pool, and who has been seen.

Presence (issue 17, issue 13)
-----------------------------
Each host keeps one thread in #worker-pool, started on a message it posts once
(``🖥 **host-a** runs discord-orch tasks here``), and named ``🖥 <HOST_NAME>`` with its
tags (``🖥 gpu-box [big,gpu]``). It posts a short line in that thread (``💓``) at
most every HOST_SILENT_AFTER / BEATS_PER_SILENCE seconds while a pass runs, and
deletes the line before it, so the thread stays one line long. Its id and the line's
are kept in state.db's meta.

Why a thread: ``GET /guilds/{id}/threads/active`` answers every active thread of the
server in one request, each with its name and ``last_message_id``, a snowflake
whose timestamp is the time of the last line. So one request tells any host (or
``discord-orch status``) which hosts exist, their tags, and when each was last seen
(``hosts_seen``), with no server of our own and no message history to read. An edit
would not do: it does not change ``last_message_id``. A host that stays off lets its
thread archive itself after PRESENCE_ARCHIVE_MINUTES without a line, and it drops
out of the list; its next pass's line unarchives it (a post in an archived, unlocked
thread does, per Discord's docs, threads topic).

Cost: a pass posts a line only when one is due, so a cron pass every minute with
nothing to do makes one request, plus two (the line, the delete of the one before)
once per beat interval (200 s by default); the first pass of a host also posts the
message and starts the thread.
"""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING, Callable, Iterable, List, Optional, Sequence, Tuple

from .errors import DiscordError, ThreadAlreadyExists, Unauthorized
from .models import THREAD_NAME_MAX, ActiveThreads, Channel, Message, snowflake_time
from .order import HostSeen, live
from .tasks import POST_MARKER

if TYPE_CHECKING:
    from .config import Settings
    from .discord_api import DiscordClient
    from .state import Store

log = logging.getLogger("discord_orch")

PRESENCE_ICON = "🖥"
BEAT_ICON = "💓"
BEATS_PER_SILENCE = 3              # lines per HOST_SILENT_AFTER: two may be lost before a host counts as silent
BEAT_RETRY_S = 30.0                # a line Discord did not take is tried again this much later (not every tick)
PRESENCE_ARCHIVE_MINUTES = 10080   # a host off for a week drops out of hosts_seen (Discord's longest)
THREAD_KEY = "presence:thread"     # meta: this host's presence thread
NAME_KEY = "presence:name"         # meta: the name it was given (HOST_TAGS may change)
LINE_KEY = "presence:line"         # meta: the last line posted (deleted when the next is out)
BEAT_KEY = "presence:beat"         # meta: when (epoch s) the last line was posted
LEASE_KEY = "presence:lease"       # meta: this host's lease message in #worker-pool (takeover.py)
LEASE_ICON = "🔑"
LEASE_ARCHIVE_MINUTES = 60         # a lease's thread (renewed, taken over) says its piece at once: Discord's shortest
STALE_SHARE = 0.5                  # a host whose last line is older than this share of HOST_SILENT_AFTER renews
LEASE_RE = re.compile(r"· lease `(\d{17,20})`")


def presence_name(host: str, tags: Sequence[str]) -> str:
    """``🖥 host-a`` or ``🖥 host-a [big,gpu]`` (tags cut to fit Discord's 100 characters)."""
    name = f"{PRESENCE_ICON} {host}"
    if tags:
        shown = ",".join(sorted(tags))
        room = THREAD_NAME_MAX - len(name) - 3
        name += f" [{shown if len(shown) <= room else shown[:max(0, room - 1)] + '…'}]"
    return name


def parse_presence_name(name: str) -> Optional[Tuple[str, Tuple[str, ...]]]:
    """(host, tags) from a presence thread's name; None for any other thread."""
    if not name.startswith(PRESENCE_ICON + " "):
        return None
    rest = name[len(PRESENCE_ICON) + 1:]
    host, _, tags = rest.partition(" [")
    if not host or " " in host:
        return None
    return host, tuple(t for t in tags.rstrip("]").rstrip("…").split(",") if t)


def renewal_name(host: str) -> str:
    """The name of a lease's thread its own host started (it came back in time)."""
    return f"{LEASE_ICON} {host} renewed"


def takeover_name(silent: str, taker: str) -> str:
    """The name of a lease's thread another host started: it took the silent host's tasks over."""
    return f"{LEASE_ICON} {silent} taken over by {taker}"


def taker_of(name: str) -> str:
    """The taker a takeover thread's name gives, or ""."""
    return name.rsplit(" taken over by ", 1)[1] if " taken over by " in name else ""


def lease_in(line: Message) -> Optional[str]:
    """The lease id a presence line gives, or None."""
    found = LEASE_RE.search(line.content)
    return found.group(1) if found else None


def hosts_seen(active: ActiveThreads, worker_pool_channel: str) -> List[HostSeen]:
    """Every host with an active presence thread in #worker-pool, the most recently seen first (a name
    seen twice, e.g. a home made anew, counts once, at its latest)."""
    latest = {}
    for thread in presence_threads(active.threads, worker_pool_channel):
        host, tags = parse_presence_name(thread.name or "")   # type: ignore[misc]
        seen = snowflake_time(thread.last_message_id or thread.id)
        if host not in latest or seen > latest[host].last_seen:
            latest[host] = HostSeen(host, frozenset(tags), seen)
    return sorted(latest.values(), key=lambda h: -h.last_seen)


def presence_threads(threads: Iterable[Channel], worker_pool_channel: str) -> List[Channel]:
    return [t for t in threads if t.parent_id == worker_pool_channel and parse_presence_name(t.name or "")]


def read_hosts(client: "DiscordClient", guild_id: str, worker_pool_channel: str) -> List[HostSeen]:
    """``hosts_seen`` from one ``GET /guilds/{id}/threads/active``."""
    return hosts_seen(client.list_active_threads(guild_id), worker_pool_channel)


def hosts_with(hosts: Iterable[HostSeen], tags: Iterable[str], *, now: float, silent_after: float) -> List[HostSeen]:
    """The live hosts (``order.live``) that carry every one of ``tags``: none means a task needing them
    would wait for good (unreachable.py answers that once)."""
    needed = {t.lower() for t in tags}
    return [h for h in live(hosts, now, silent_after) if needed <= h.tags]


class Presence:
    """This host's presence thread and its lines (runs on a lane of its own: never in the main loop)."""

    def __init__(self, settings: "Settings", client: "DiscordClient", store: "Store", *,
                 on_fatal: Callable[[Exception], None], wall: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.client = client
        self.store = store
        self._on_fatal = on_fatal
        self._wall = wall
        self.interval = settings.host_silent_after_s / BEATS_PER_SILENCE
        last = store.get_meta(BEAT_KEY) if self.interval else None
        self.next_beat = (float(last) + self.interval) if last else 0.0
        self.last_beat = float(last) if last else None   # epoch s of the last line Discord took
        self.beats = 0                       # lines Discord took in this pass
        self.lost_to: Optional[str] = None   # the host that took this one's tasks over (takeover.py), once seen
        self.after_beat: Optional[Callable[[], None]] = None   # takeover.py's look for silent hosts

    def fresh(self) -> bool:
        """Whether this host may post results and claim: presence is off, or its last line is recent
        enough that no other host can have found it silent (its lease renewed otherwise: ``beat``)."""
        if not self.interval:
            return True
        if self.lost_to is not None:   # until the main loop has let the lost tasks go
            return False
        return self.last_beat is not None and self._wall() - self.last_beat < \
            self.settings.host_silent_after_s * STALE_SHARE

    def due(self) -> bool:
        """A line is due (never with HOST_SILENT_AFTER=0: no presence)."""
        return self.interval > 0 and self._wall() >= self.next_beat

    def beat(self) -> None:
        """Post this host's line (announcing it first, the first time); on a failure, try again soon."""
        self.next_beat = self._wall() + BEAT_RETRY_S
        try:
            thread = self._thread()
            if not self.fresh() and self.store.get_meta(LEASE_KEY):
                self._renew()
            line = self.client.post_in_thread(thread, self._line())
            if line is None:   # its thread was deleted: announce anew, now
                self.store.set_meta(THREAD_KEY, "")
                line = self.client.post_in_thread(self._thread(), self._line())
                if line is None:
                    return
        except Unauthorized as exc:
            self._on_fatal(exc)
            return
        except DiscordError as exc:
            log.warning("presence line not posted (tried again in %.0f s): %s", BEAT_RETRY_S, exc)
            return
        now = self._wall()
        self.last_beat, self.next_beat = now, now + self.interval
        self.beats += 1
        previous = self.store.get_meta(LINE_KEY)
        self.store.set_meta(LINE_KEY, line.id)
        self.store.set_meta(BEAT_KEY, f"{now:.3f}")
        if previous:
            try:
                self.client.delete_message(line.channel_id or thread, previous)
            except DiscordError as exc:   # one line more in the thread: harmless
                log.debug("previous presence line not deleted: %s", exc)
        if self.after_beat is not None and self.lost_to is None:
            self.after_beat()

    def _line(self) -> str:
        return f"{BEAT_ICON} **{self.settings.host_name}** is up · lease `{self._lease()}`\n{POST_MARKER}"

    def _lease(self) -> str:
        """This host's lease message in #worker-pool: another host that finds this one silent takes its
        tasks over by starting the lease's thread (takeover.py); posted anew once that thread exists."""
        lease = self.store.get_meta(LEASE_KEY)
        if not lease:
            s = self.settings
            lease = self.client.create_message(
                s.worker_pool_channel, f"{LEASE_ICON} Lease of **{s.host_name}**: a host that finds it silent "
                f"takes its open tasks over by starting this message's thread\n{POST_MARKER}").id
            self.store.set_meta(LEASE_KEY, lease)
        return lease

    def _renew(self) -> None:
        """This host's last line is old (stopped, asleep, cut off): another host may have found it silent.
        Start its lease's thread itself: Discord's one thread per message decides between this host
        keeping its tasks and another taking them over (``lost_to``). Either way a new lease follows."""
        s = self.settings
        lease = self._lease()
        mine = renewal_name(s.host_name)
        try:
            self.client.start_thread(s.worker_pool_channel, lease, mine, auto_archive_duration=LEASE_ARCHIVE_MINUTES)
            log.info("presence: %s was silent for a while; it renewed its lease and keeps its tasks", s.host_name)
        except ThreadAlreadyExists:
            seen = self.client.find_thread(lease)
            if seen is None:
                raise
            if seen.name != mine:
                self.lost_to = taker_of(seen.name or "") or f"user {seen.owner_id}"
                log.warning("presence: %s was silent and %s took its open tasks over; none of them is "
                            "posted here", s.host_name, self.lost_to)
        self.store.set_meta(LEASE_KEY, "")   # used: the next line carries a new one

    def _thread(self) -> str:
        """This host's presence thread: announced (a message in #worker-pool, a thread on it) the first time;
        renamed when HOST_TAGS changed."""
        name = presence_name(self.settings.host_name, self.settings.host_tags)
        thread = self.store.get_meta(THREAD_KEY)
        if not thread:
            s = self.settings
            tags = f" (tags: {', '.join(sorted(s.host_tags))})" if s.host_tags else ""
            root = self.client.create_message(
                s.worker_pool_channel, f"{PRESENCE_ICON} **{s.host_name}** runs discord-orch tasks here{tags}; "
                f"its thread says when it was last seen\n{POST_MARKER}")
            thread = self.client.start_thread(s.worker_pool_channel, root.id, name,
                                              auto_archive_duration=PRESENCE_ARCHIVE_MINUTES).id
            self.store.set_meta(THREAD_KEY, thread)
            self.store.set_meta(NAME_KEY, name)
            self.store.set_meta(LINE_KEY, "")
            log.info("presence: announced %s in #worker-pool (thread %s)", self.settings.host_name, thread)
        elif self.store.get_meta(NAME_KEY) != name:
            self.client.edit_thread(thread, name=name)
            self.store.set_meta(NAME_KEY, name)
        return thread
