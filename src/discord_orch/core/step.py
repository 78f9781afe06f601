"""The step interface, the context steps share, and how the registry's steps are loaded.

A capability of a pass (reading #task-queue, claiming, running agents, posting results,
stop and retry, follow-ups, presence, budgets, the status messages, pruning) is a *step*:
a class with the five methods of ``Step``. The core (hub.py) knows steps only through
them, in the order the registry lists them (steps/__init__.py): adding a capability adds
a step and a registry line, not edits across the core. The pattern is Celery's bootsteps
and kombu's Hub (``call_soon``, ``on_tick``): parts plug into a loop that does not know them.

A step never waits for the network in ``turn``: it decides and hands the request to a
lane (``ctx.submit``); the lane's answer comes back to the loop thread through the hub's
inbox. Steps do not import one another: they meet in the ``Context``: the shared parts the
pass builds (``ctx.parts``: claims, intake, reporter, ...), the board of tasks waiting
for and holding an agent, and named events, gates and filters:

- events (``ctx.on`` / ``ctx.emit``, on the loop thread): ``ready`` (rec: a claimed task to
  start when an agent is free), ``start`` (rec: start it now), ``decided`` (a claim's
  ``Decision``), ``decide`` (a message to decide now), ``adopted`` / ``ended`` (recovery's
  agents), ``started`` (rec), ``queued`` (rec, position, of), ``finished`` (rec, outcome),
  ``forget`` (task id: another host has it now), ``passed`` (messages left to other hosts),
  ``polled`` (a poll's answer is in), ``waiting`` (the backlog changed), ``sigchld`` (from the
  signal handler: keep it short), ``poll_now`` (poll #task-queue at once), ``look_now`` (look for
  🛑 / 🔁 at once), ``read_threads`` (read the task threads at once): the last three from the
  Gateway step.
- gates (``ctx.gate`` / ``ctx.allows``): ``claim`` (may this host claim now: its presence is
  fresh), ``claim-one`` (asked before each claim: a budget has room for one task more, counting
  what runs at its expected cost), ``start`` (rec: may it start; controls ends a task stopped
  before it ran there), ``slow_polls`` (may the Gateway stretch the polls now: recovery says no
  while a start is unsettled).
- filters (``ctx.filter`` / ``ctx.apply``): ``outcome`` (rec, outcome → outcome: TASK_MAX_USD's note),
  ``poll_interval`` (seconds → seconds: the Gateway stretches polls while its session is up),
  ``buttons`` (whether the status messages carry Stop / Retry buttons: the Gateway step answers them).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, List, NamedTuple, Optional


class Step:
    """One capability of a pass. Every method but ``bind`` may be left as it is."""

    name = ""

    @staticmethod
    def enabled(settings: Any) -> bool:
        """Whether this step takes part with these settings (the registry asks before importing it)."""
        return True

    def bind(self, ctx: "Context") -> None:
        """Subscribe to events, add gates and filters, create lanes. No I/O."""
        self.ctx = ctx

    def turn(self, now: float) -> None:
        """Decide and submit work; never wait for the network (the loop calls it every turn)."""

    def busy(self) -> bool:
        """True while this step has work that should keep a cron pass alive."""
        return False

    def close(self, stopped_by: Optional[int]) -> None:
        """The pass is ending (``stopped_by``: the signal that stopped it, if one did): last submissions."""

    def ended(self) -> None:
        """The pass has ended and its lanes are drained (what was posted is known): last local work."""


class Entry(NamedTuple):
    """A registry line: the step's module under discord_orch.steps, and whether it takes part."""

    module: str
    enabled: Callable[[Any], bool] = lambda settings: True


def load_steps(registry: List[Entry], settings: Any) -> List[Step]:
    """The enabled steps, in the registry's order; a step not enabled is never imported."""
    steps = []
    for entry in registry:
        if entry.enabled(settings):
            module = importlib.import_module(f"discord_orch.steps.{entry.module}")
            steps.append(module.STEP())
    return steps


class PassStats:
    """What one pass did (its last log line counts these) and how it ended."""

    def __init__(self) -> None:
        self.polled = self.claimed = self.refused = self.started = 0
        self.finished = self.reported = self.deferred = self.adopted = 0
        self.skipped_locked = False
        self.stopped_by: Optional[int] = None
        self.fatal: Optional[str] = None


class Board:
    """The tasks of this pass that wait for an agent (``ready``) or hold one (``live``), and the
    claims in flight on a lane (``reserved``): together they are what MAX_AGENTS bounds."""

    def __init__(self, max_agents: int) -> None:
        self.max_agents = max_agents
        self.ready: List[Any] = []        # claimed records, waiting for capacity (in order)
        self.live: Dict[str, Any] = {}    # task id → what runs it (steps/running.py's Live)
        self.reserved = 0                 # claims and starts decided, their answer not back yet
        self.lost: set = set()            # tasks another host took over while this one was silent
        self.refusing = 0                 # refusals being decided: their posts wait to be grouped whole

    def capacity(self) -> int:
        return self.max_agents - len(self.live) - self.reserved


class Context:
    """What a step is given: the pass's settings and clients, the hub, the board, the shared parts,
    and the events, gates and filters by which steps meet (see the module docstring)."""

    def __init__(self, *, settings: Any, client: Any, store: Any, hub: Any, parts: Any, stats: PassStats,
                 clock: Callable[[], float], wall: Callable[[], float]) -> None:
        self.settings = settings
        self.client = client
        self.store = store
        self.hub = hub
        self.parts = parts
        self.stats = stats
        self.clock = clock
        self.wall = wall
        self.board = Board(settings.max_agents)
        self.watch = False
        self._events: Dict[str, List[Callable[..., Any]]] = {}
        self._gates: Dict[str, List[Callable[..., bool]]] = {}
        self._filters: Dict[str, List[Callable[..., Any]]] = {}

    @property
    def stopping(self) -> bool:
        """A signal asked the pass to stop, or an error ended it: claim and start nothing more."""
        return self.hub.stop_signal is not None or self.hub.fatal_error is not None

    def submit(self, lane: str, job: Callable[[], Any], done: Optional[Callable[[Any], None]] = None, *,
               priority: int = 0) -> None:
        self.hub.submit(lane, job, done, priority=priority)

    def on(self, event: str, handler: Callable[..., Any]) -> None:
        self._events.setdefault(event, []).append(handler)

    def emit(self, event: str, *args: Any) -> None:
        for handler in self._events.get(event, ()):
            handler(*args)

    def gate(self, name: str, check: Callable[..., bool]) -> None:
        self._gates.setdefault(name, []).append(check)

    def allows(self, name: str, *args: Any) -> bool:
        """Every gate of this name says yes (a gate may act on a no: a stopped task ends there)."""
        return all(check(*args) for check in self._gates.get(name, ()))

    def filter(self, name: str, fn: Callable[..., Any]) -> None:
        self._filters.setdefault(name, []).append(fn)

    def apply(self, name: str, value: Any, *args: Any) -> Any:
        for fn in self._filters.get(name, ()):
            value = fn(value, *args)
        return value
