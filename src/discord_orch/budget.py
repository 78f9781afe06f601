"""Budgets: what this host's finished tasks cost today and this month, and the gate before a claim.

- **What counts.** Each finished task's cost as its result shows it: openclaw's own figure,
  else the estimate from the OpenClaw config's prices (report.cost_of). A task with neither
  counts as *unknown*: it adds nothing and is listed (``discord-orch status``, the notice).
  A task counts on the day its agent finished (``finished_at``).
- **Day and month** begin at midnight in BUDGET_TIMEZONE (UTC unless set): "today" is the
  calendar day there, "this month" the calendar month.
- **Per host.** Each home counts what its own agents cost (its state.db). Hosts sharing a
  queue each keep their own budget; there is no shared count (that would need a shared
  store or a Discord read of every host's results on each claim).
- **The gate** (``BudgetGate.holds``, called before a claim, apart from the order in which
  pending tasks are claimed): when the spend has reached BUDGET_DAILY_USD or
  BUDGET_MONTHLY_USD, no task that would run is claimed (messages to refuse are refused as
  ever: they cost nothing). The waiting tasks get ⏸ and, once per budget and
  period, #worker-pool one notice: which budget, what was spent, when it resets. They stay
  pending (intake holds them: the cursor stays before them), and run, oldest first, when
  the budget resets or is raised (the next pass reads discord-config.env again; ``--watch``
  reads it at its start and looks at the budget again every RETRY_SET_ASIDE_S). ⏸ is taken
  away when such a task is claimed.
- **Running tasks count at their expected cost** (issue 24): an agent's cost is known only when
  it ends, so each task claimed and not finished counts at what a task costs here: the median
  of the last EXPECTED_RUNS runs on its model on this host, else TASK_MAX_USD, else 0 (said
  once in the log). The gate is asked before each claim, so MAX_AGENTS tasks started together
  cannot pass a budget by MAX_AGENTS tasks' cost: claims stop once the spend and the expected
  cost of what runs reach it (the last one claimed may still pass it, by about one task's
  cost). Running tasks are never killed for it. TASK_MAX_USD flags a task whose cost passed it
  in its result; it cannot stop it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone, tzinfo
from typing import TYPE_CHECKING, Callable, List, NamedTuple, Optional, Set, Tuple

from .models import Message
from .state import Store, TaskRecord

if TYPE_CHECKING:
    from .config import Settings

log = logging.getLogger("discord_orch")

DAILY_KEY = "BUDGET_DAILY_USD"
MONTHLY_KEY = "BUDGET_MONTHLY_USD"
NOTICE_META = "notice:budget:{key}:{period}"   # state.db meta: this budget's notice for this period was said
UNKNOWN_SHOWN = 5                              # task ids a notice lists among those whose cost is unknown
EXPECTED_RUNS = 9                              # the last runs whose median is a task's expected cost


def zone(name: str) -> tzinfo:
    """BUDGET_TIMEZONE as a tzinfo (config.py checked the name)."""
    if name == "UTC":
        return timezone.utc
    from zoneinfo import ZoneInfo   # only for a zone other than UTC

    return ZoneInfo(name)


class Period(NamedTuple):
    """A calendar day or month in the budget's time zone: [start, end) in epoch seconds, and its name."""

    start: float
    end: float
    name: str          # 2026-12-01 (a day) or 2026-12 (a month)


def day_of(now: float, tz: tzinfo) -> Period:
    here = datetime.fromtimestamp(now, tz)
    start = datetime(here.year, here.month, here.day, tzinfo=tz)
    nxt = start.date() + timedelta(days=1)
    end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz)   # midnight again: 23 or 25 hours on a DST change
    return Period(start.timestamp(), end.timestamp(), start.strftime("%Y-%m-%d"))


def month_of(now: float, tz: tzinfo) -> Period:
    here = datetime.fromtimestamp(now, tz)
    start = datetime(here.year, here.month, 1, tzinfo=tz)
    end = datetime(here.year + here.month // 12, here.month % 12 + 1, 1, tzinfo=tz)
    return Period(start.timestamp(), end.timestamp(), start.strftime("%Y-%m"))


class Spend(NamedTuple):
    """What the tasks finished in a period cost: the known costs' sum, the tasks counted, those unknown."""

    usd: float
    tasks: int
    unknown: Tuple[str, ...]    # task ids whose cost is not known (neither reported nor estimated)


class Reached(NamedTuple):
    """A budget the spend has reached."""

    key: str           # BUDGET_DAILY_USD / BUDGET_MONTHLY_USD
    label: str         # daily / monthly
    limit: float
    spend: Spend
    period: Period
    zone: str
    committed: float = 0.0   # the expected cost of the tasks claimed and not finished


def record_cost(rec: TaskRecord, prices) -> Tuple[Optional[float], bool]:
    """(USD, estimated) of a finished task, as its result shows it; (None, True) when unknown."""
    from .report import cost_of, model_used   # only where costs are counted: never on an idle pass

    usage = rec.finished_outcome.usage
    return cost_of(usage, prices, model_used(usage, rec.model or None))


def over_task_max(outcome, model: Optional[str], settings: "Settings", budgets: "Budgets") -> str:
    """The note a result gets when the task's cost passed TASK_MAX_USD (else "")."""
    limit = settings.task_max_usd
    if limit is None:
        return ""
    from .report import cost_of, model_used

    cost, estimated = cost_of(outcome.usage, budgets.prices(), model_used(outcome.usage, model or None))
    if cost is None or cost <= limit:
        return ""
    return (f"cost {usd(cost)}{' (est.)' if estimated else ''} passed TASK_MAX_USD={usd(limit)}: an agent's cost "
            "is known only when it ends, so it ran to the end")


def usd(value: float) -> str:
    return f"${value:,.2f}" if value >= 1 or value == 0 else f"${value:.4f}"


class Budgets:
    """This host's spend in the current day and month, against BUDGET_DAILY_USD and BUDGET_MONTHLY_USD."""

    def __init__(self, settings: "Settings", store: Store) -> None:
        self.settings = settings
        self.store = store
        self.zone = zone(settings.budget_timezone)
        self._prices = None
        self._prices_read = False
        self._expected: Optional[dict] = None   # model ("" for any) → the expected cost of a task on it
        self._said_unknown = False

    @property
    def enabled(self) -> bool:
        return self.settings.budget_daily_usd is not None or self.settings.budget_monthly_usd is not None

    def prices(self):
        """The OpenClaw config's prices, read once (the estimate for a task openclaw gave no cost for)."""
        if not self._prices_read:
            from .prices import load_prices

            self._prices = load_prices(self.settings.openclaw_config)
            self._prices_read = True
        return self._prices

    def spend_in(self, period: Period, records: Optional[List[TaskRecord]] = None) -> Spend:
        total, counted, unknown = 0.0, 0, []
        rows = self.store.finished_since(period.start) if records is None else records
        for rec in rows:
            if rec.finished_at is None or not period.start <= rec.finished_at < period.end:
                continue
            cost, _ = record_cost(rec, self.prices())
            counted += 1
            if cost is None:
                unknown.append(rec.task_id)
            else:
                total += cost
        return Spend(total, counted, tuple(unknown))

    def today_and_month(self, now: float) -> Tuple[Tuple[Period, Spend], Tuple[Period, Spend]]:
        """This day's and this month's spend (one read of the month's records)."""
        day, month = day_of(now, self.zone), month_of(now, self.zone)
        records = self.store.finished_since(min(day.start, month.start))
        return (day, self.spend_in(day, records)), (month, self.spend_in(month, records))

    def reached(self, now: float, committed: float = 0.0) -> Optional[Reached]:
        """The budget the spend and ``committed`` (the expected cost of the tasks claimed and not finished)
        have reached (of two, the one that resets last: tasks wait for both), or None."""
        found: Optional[Reached] = None
        (day, day_spend), (month, month_spend) = self.today_and_month(now)
        for key, label, limit, period, spend in (
                (DAILY_KEY, "daily", self.settings.budget_daily_usd, day, day_spend),
                (MONTHLY_KEY, "monthly", self.settings.budget_monthly_usd, month, month_spend)):
            if limit is not None and spend.usd + committed >= limit:
                if found is None or period.end > found.period.end:
                    found = Reached(key, label, float(limit), spend, period, self.settings.budget_timezone,
                                    committed)
        return found

    def expected(self, model: Optional[str]) -> float:
        """What a task on ``model`` (None: any) is expected to cost here: the median of the last EXPECTED_RUNS
        runs of known cost on it on this host, else TASK_MAX_USD, else 0 (said once)."""
        import statistics

        if self._expected is None:   # read once a pass: a pass is short; --watch learns from its own runs below
            self._expected = {}
            by_model: dict = {}
            for rec in self.store.last_finished(EXPECTED_RUNS * 20):
                if rec.refusal is not None or not rec.agent_id:
                    continue
                cost, _ = record_cost(rec, self.prices())
                if cost is not None:
                    for key in (rec.model or "", None):
                        runs = by_model.setdefault(key, [])
                        if len(runs) < EXPECTED_RUNS:
                            runs.append(cost)
            self._expected = {k: statistics.median(v) for k, v in by_model.items()}
        known = self._expected.get(model or "" if model is not None else None)
        if known is None and model is not None:
            known = self._expected.get(None)
        if known is not None:
            return known
        if self.settings.task_max_usd is not None:
            return float(self.settings.task_max_usd)
        if not self._said_unknown:
            self._said_unknown = True
            log.warning("budget: no run of known cost on this host yet and no TASK_MAX_USD: running tasks count "
                        "as $0 until they end, so tasks started together may pass the budget (set TASK_MAX_USD)")
        return 0.0

    def learned(self) -> None:
        """A task finished: the expected costs are read again when next asked."""
        self._expected = None


def notice_line(reached: Reached) -> str:
    """The one notice a budget reached gets: which, how much, when it resets."""
    resets = datetime.fromtimestamp(reached.period.end, zone(reached.zone)).strftime("%Y-%m-%d %H:%M")
    spend = reached.spend
    unknown = ""
    if spend.unknown:
        shown = ", ".join(spend.unknown[:UNKNOWN_SHOWN]) + (" …" if len(spend.unknown) > UNKNOWN_SHOWN else "")
        unknown = f"; {len(spend.unknown)} task(s) of unknown cost not counted ({shown})"
    running = f" + {usd(reached.committed)} expected of running tasks" if reached.committed else ""
    return (f"⏸ {reached.label} budget reached: {usd(spend.usd)} spent{running} of {reached.key}={usd(reached.limit)} "
            f"({spend.tasks} task(s) this {'day' if reached.key == DAILY_KEY else 'month'}{unknown}). New tasks "
            f"wait (⏸) until it resets at {resets} {reached.zone}, or the budget is raised; running tasks go on")


class BudgetGate:
    """The small check before a claim: hold the pending tasks while a budget is reached (module docstring)."""

    def __init__(self, budgets: Budgets, *, hold: Callable[[Callable[[Message], bool]], List[Message]],
                 may_run: Callable[[Message], bool],
                 pause: Callable[[str, bool], None], notice: Callable[[str], None],
                 wall: Callable[[], float]) -> None:
        self.budgets = budgets
        self._hold = hold            # takes the backlog's messages it is given a test for aside, returns them
        self._may_run = may_run      # whose tasks would run: only those wait; the rest are refused as ever
        self._pause = pause          # (task id, remove): ⏸ on the task message, or taken away
        self._notice = notice
        self._wall = wall
        self._paused: Set[str] = set()

    @property
    def paused(self) -> Set[str]:
        """The tasks this pass held for a budget (``discord-orch status`` marks them ⏸)."""
        return self._paused

    def holds(self, committed: float = 0.0) -> bool:
        """True when a budget is reached by the spend and ``committed`` (the expected cost of the tasks claimed
        and not finished): the backlog's tasks that would run are held, each with ⏸, and the notice is said
        once (the messages to refuse stay: they cost nothing)."""
        if not self.budgets.enabled:
            return False
        reached = self.budgets.reached(self._wall(), committed)
        if reached is None:
            return False
        from .claim import PAUSED_EMOJI

        for msg in self._hold(self._may_run):
            mark = msg.reaction(PAUSED_EMOJI)
            if msg.id not in self._paused and not (mark is not None and mark.me):
                self._pause(msg.id, False)
            self._paused.add(msg.id)
        store = self.budgets.store
        key = NOTICE_META.format(key=reached.key, period=reached.period.name)
        if store.get_meta(key) is None:
            line = notice_line(reached)
            log.warning("%s", line)
            self._notice(line)
            store.set_meta(key, "said")
        return True

    def claimed(self, msg: Message) -> None:
        """A task that waited with ⏸ was claimed: the ⏸ goes."""
        from .claim import PAUSED_EMOJI

        mark = msg.reaction(PAUSED_EMOJI)
        if msg.id in self._paused or (mark is not None and mark.me):
            self._paused.discard(msg.id)
            self._pause(msg.id, True)
