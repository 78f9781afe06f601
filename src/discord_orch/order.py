"""Which pending tasks this host may claim, and in what order (issue 17). Pure: every call takes ``now``.

Tags: a host with ``HOST_TAGS=gpu,repo-x`` claims a task only when it has every tag the task
names with ``[needs:...]`` (``can_run``); a task without needs runs anywhere. The others are
*passed over*: left to the hosts that have the tags, and still pending for this host's cursor
(intake.py), so a host whose HOST_TAGS grows finds them again. A task that no host seen lately
could take gets one answer (``unreachable_needs``, ``answers_here``; unreachable.py posts it).

Order, among the pending tasks whose authors may run tasks (refusals wait behind them, intake.py):

1. by level: high before normal before low (``[priority:...]``, default normal);
2. then by turn: the author this host served least recently first (round-robin between
   authors: one author's 200 queued tasks hold another author's one back by one claim at most);
3. then oldest first (the message's id is its time).

No starvation (the bound): a task's level rises by one for every PRIORITY_AGE seconds it has
waited since it was posted, up to high. So a low task counts as high once it has waited twice
PRIORITY_AGE; from then on no task posted after it goes before it within its author's turn, and
between authors it waits at most one claim per other author with a pending task. Its wait is
bounded by 2 × PRIORITY_AGE plus the claims of the tasks posted before it and one per other
author (with MAX_AGENTS, each claim waits for a free slot). The time is the message's own
(its snowflake id), the same on every host.

Tags and priority are read from the message's own text (``discord-orch submit`` writes them
there, also when the task's text travels in TASK.txt); tags inside an attached TASK.txt are
seen only when the task is claimed: a host lacking such a need then passes it over too
(claim.py), but its priority is not used for the order.
"""

from __future__ import annotations

from typing import Callable, Dict, FrozenSet, Iterable, List, NamedTuple, Sequence, Tuple

from .models import Message, snowflake_time
from .tasks import PRIORITIES, read_routing

HIGH = len(PRIORITIES) - 1                                # the top level (PRIORITIES runs high → low)
LEVEL = {name: HIGH - i for i, name in enumerate(PRIORITIES)}   # high 2, normal 1, low 0


def can_run(needs: Iterable[str], host_tags: Iterable[str]) -> bool:
    """Whether a host with these tags may claim a task with these needs (all of them)."""
    return set(needs) <= set(host_tags)


def level(priority: str, waited_s: float, age_s: float) -> int:
    """The task's level now: its priority's, one higher for every ``age_s`` it has waited, at most high."""
    return min(HIGH, LEVEL.get(priority, LEVEL["normal"]) + int(max(0.0, waited_s) // age_s))


class HostSeen(NamedTuple):
    """A host another host knows of (host presence, #worker-pool): its HOST_NAME, its tags, when last seen."""

    name: str
    tags: FrozenSet[str]
    last_seen: float          # epoch seconds


def live(hosts_seen: Iterable[HostSeen], now: float, silent_after: float) -> List[HostSeen]:
    """The hosts seen within ``silent_after`` seconds of ``now``."""
    return [h for h in hosts_seen if now - h.last_seen < silent_after]


def unreachable_needs(needs: Sequence[str], hosts_seen: Iterable[HostSeen], *, now: float,
                      silent_after: float) -> Tuple[str, ...]:
    """The needs that keep every live host from taking a task: () when one of them has them all. The tags
    no live host has; when each is on some host but none has them all, every need."""
    if not needs:
        return ()
    hosts = live(hosts_seen, now, silent_after)
    if any(can_run(needs, h.tags) for h in hosts):
        return ()
    anywhere = set().union(*(h.tags for h in hosts)) if hosts else set()
    missing = tuple(tag for tag in needs if tag not in anywhere)
    return missing or tuple(needs)


def answers_here(me: str, hosts_seen: Iterable[HostSeen], *, now: float, silent_after: float) -> bool:
    """Whether this host is the one that answers an unreachable task: the live host with the smallest
    name, so that every host reaches the same choice and the task gets one answer."""
    names = [h.name for h in live(hosts_seen, now, silent_after)] + [me]
    return min(names) == me


class Order:
    """This host's order of pending tasks: what it may claim, and which first (the module docstring).
    Remembers which author it served last (a pass's memory; ``served``)."""

    def __init__(self, host_tags: Sequence[str], age_s: float, wall: Callable[[], float]) -> None:
        self.host_tags = frozenset(host_tags)
        self.age_s = age_s
        self.wall = wall
        self._routing: Dict[str, Tuple[Tuple[str, ...], str]] = {}   # message id → (needs, priority)
        self._turns: Dict[str, int] = {}                             # author id → when served (a count)
        self._served = 0

    def routing(self, msg: Message) -> Tuple[Tuple[str, ...], str]:
        """(needs, priority) as the message's text says (read once per message)."""
        found = self._routing.get(msg.id)
        if found is None:
            found = self._routing[msg.id] = read_routing(msg.content)
        return found

    def runnable(self, msg: Message) -> bool:
        """Whether this host has every tag the message's text says the task needs."""
        return can_run(self.routing(msg)[0], self.host_tags)

    def _key(self, now: float) -> Callable[[Message], Tuple[int, int, int]]:
        def key(msg: Message) -> Tuple[int, int, int]:
            lvl = level(self.routing(msg)[1], now - snowflake_time(msg.id), self.age_s)
            return -lvl, self._turns.get(msg.author.id, 0), int(msg.id)
        return key

    def pick(self, candidates: Sequence[Message]) -> Message:
        """The one to claim first (level, then the author's turn, then age); its author is served."""
        chosen = min(candidates, key=self._key(self.wall()))
        self.served(chosen.author.id)
        return chosen

    def top(self, candidates: Sequence[Message], count: int) -> List[Message]:
        """The first ``count`` in this order that share the first one's level (hosts spreading over the
        queue pick among them: intake.spread_pick); nobody is served yet."""
        key = self._key(self.wall())
        ranked = sorted(candidates, key=key)[:count]
        first_level = key(ranked[0])[0]
        return [msg for msg in ranked if key(msg)[0] == first_level]

    def served(self, author_id: str) -> None:
        """A task of this author's was just taken: the others' come first next."""
        self._served += 1
        self._turns[author_id] = self._served

    def learn(self, msg: Message, needs: Tuple[str, ...]) -> None:
        """The task's needs as its whole text says (TASK.txt included), once it was read (claim.py)."""
        self._routing[msg.id] = (needs, self.routing(msg)[1])
