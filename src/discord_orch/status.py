"""`discord-orch status`: one screen on a home, read from its state.db (no Discord request unless --live).

What a pass leaves for it (written by the orchestrator):

- ``.runtime/last-pass.json``: when the last pass ended, how (done, nothing to do, results
  left, stopped by a signal, aborted and why), what it counted. Written once, as the pass
  ends, to a file of its own and without a sync: an idle cron pass writes nothing to
  state.db, whose commit would make SQLite sync the disk every minute (test_idle_pass).
- state.db's meta ``status:waiting``: the tasks a poll saw pending and not yet claimed (those held by a
  budget marked ⏸), with the time of that poll. Written when the list changes (and as a
  pass ends), not at every poll: it is "as of" the later of its time and the last pass's end.

The rest is read from the records: running tasks (host, agent, model, elapsed), the last
10 agent runs (status, duration, cost), results waiting in the outbox, and this host's spend
today and this month against the budgets (budget.py; BUDGET_TIMEZONE's day and month).
Whether a pass is running now is read from ``.runtime/orchestrate.lock``'s pid and /proc,
without taking the lock (taking it, even briefly, could make a cron pass skip its turn).
``--live`` adds one read of #task-queue after the cursor (what is pending there now) and one of
the server's active threads (the hosts on the queue: their presence threads in #worker-pool).
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional

from .budget import Budgets, record_cost, usd, zone
from .state import LOCK_NAME, OUTBOX_STATUSES, RUNNING, STARTING, Store

if TYPE_CHECKING:
    from .config import Settings
    from .discord_api import DiscordClient
    from .models import Message
    from .order import HostSeen

LAST_PASS_FILE = "last-pass.json"    # in .runtime/
WAITING_META = "status:waiting"
LAST_OUTCOMES = 10          # agent runs the screen lists, the latest first
WAITING_SHOWN = 20          # waiting tasks the screen lists (the count is always whole)
LIVE_PAGE = 100             # --live reads one page of #task-queue after the cursor (Discord's most)


# ---------------------------------------------------------------- what a pass leaves

def note_pass_end(store: Store, *, ended_at: float, how: str, counts: Dict[str, int]) -> None:
    """Record how the pass that is ending ended (a small file replaced whole; no sync: see above).
    OSError when it cannot be written."""
    path = store.runtime_dir / LAST_PASS_FILE
    tmp = path.with_name(f".{LAST_PASS_FILE}.{os.getpid()}")
    data = json.dumps({"ended_at": ended_at, "how": how, "host": store.host, "pid": os.getpid(), **counts})
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data.encode("utf-8"))
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _last_pass(runtime_dir: Path) -> Optional[Dict[str, Any]]:
    try:
        data = json.loads((runtime_dir / LAST_PASS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "ended_at" in data else None


class WaitingNote:
    """Writes ``status:waiting`` when the list of waiting tasks changes (an idle pass writes nothing)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._said: Optional[List[List[Any]]] = None

    def note(self, messages: Iterable["Message"], paused: Iterable[str], now: float) -> None:
        held = set(paused)
        tasks = [[m.id, m.author.username or m.author.id, m.id in held] for m in messages]
        if self._said is None:
            stored = self.store.get_meta(WAITING_META)
            self._said = json.loads(stored)["tasks"] if stored else []
        if tasks != self._said:
            self.store.set_meta(WAITING_META, json.dumps({"at": now, "tasks": tasks}))
            self._said = tasks


# ---------------------------------------------------------------- reading it

def pass_running(runtime_dir: Path) -> Optional[int]:
    """The pid of a discord-orch pass holding this home now (read from the lock file and /proc), or None."""
    try:
        pid = int((Path(runtime_dir) / LOCK_NAME).read_text().strip() or 0)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if pid > 0 and b"discord" in cmdline and b"orchestrate" in cmdline else None


def _meta_json(store: Store, key: str) -> Optional[Dict[str, Any]]:
    text = store.get_meta(key)
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def gather(settings: "Settings", store: Optional[Store], now: float,
           live: Optional[List["Message"]] = None, hosts: Optional[List["HostSeen"]] = None) -> Dict[str, Any]:
    """Everything the screen shows, as plain data (``--json`` prints it as is). ``store`` None: no pass
    has run in this home yet."""
    s = settings
    budgets_cfg = {"daily": s.budget_daily_usd, "monthly": s.budget_monthly_usd}
    out: Dict[str, Any] = {"home": str(s.home), "host": s.host_name, "now": now, "time_zone": s.budget_timezone,
                           "pass_running_pid": pass_running(s.runtime_dir), "last_pass": None,
                           "waiting": {"as_of": None, "tasks": []}, "running": [], "last_outcomes": [],
                           "outbox": [], "spend": None}
    if live is not None:
        out["live_pending"] = [{"task_id": m.id, "author": m.author.username or m.author.id} for m in live]
    if hosts is not None:
        out["hosts"] = [{"name": h.name, "tags": sorted(h.tags), "last_seen": h.last_seen,
                         "silent": now - h.last_seen > s.host_silent_after_s}
                        for h in sorted(hosts, key=lambda h: h.name)]
    if store is None:
        return out
    last = _last_pass(s.runtime_dir)
    out["last_pass"] = last
    waiting = _meta_json(store, WAITING_META) or {"at": None, "tasks": []}
    times = [t for t in (waiting.get("at"), (last or {}).get("ended_at")) if t is not None]
    out["waiting"] = {"as_of": max(times) if times else None,
                      "tasks": [{"task_id": t[0], "author": t[1], "paused": bool(t[2])} for t in waiting["tasks"]]}
    for rec in store.with_status(STARTING, RUNNING):
        out["running"].append({"task_id": rec.task_id, "status": str(rec.status), "host": rec.host,
                               "agent_id": rec.agent_id, "model": rec.model,
                               "elapsed_s": None if rec.started_at is None else max(0.0, now - rec.started_at)})
    budgets = Budgets(s, store)
    for rec in store.last_finished(LAST_OUTCOMES):
        cost, estimated = record_cost(rec, budgets.prices())
        outcome = rec.finished_outcome
        out["last_outcomes"].append({"task_id": rec.task_id, "status": outcome.status,
                                     "duration_s": outcome.duration_s, "finished_at": rec.finished_at,
                                     "cost_usd": cost, "cost_estimated": estimated and cost is not None,
                                     "over_task_max": bool(s.task_max_usd is not None and cost is not None
                                                           and cost > s.task_max_usd)})
    out["outbox"] = [{"task_id": r.task_id, "status": str(r.status)} for r in store.with_status(*OUTBOX_STATUSES)]
    (day, day_spend), (month, month_spend) = budgets.today_and_month(now)
    out["spend"] = {
        "today": {"period": day.name, "usd": day_spend.usd, "tasks": day_spend.tasks,
                  "unknown": list(day_spend.unknown), "budget": budgets_cfg["daily"], "resets_at": day.end},
        "month": {"period": month.name, "usd": month_spend.usd, "tasks": month_spend.tasks,
                  "unknown": list(month_spend.unknown), "budget": budgets_cfg["monthly"], "resets_at": month.end},
    }
    return out


# ---------------------------------------------------------------- the screen

def _when(epoch: Optional[float], tz_name: str) -> str:
    if epoch is None:
        return "never"
    return datetime.fromtimestamp(epoch, zone(tz_name)).strftime("%Y-%m-%d %H:%M:%S")


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} days ago"


def _duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "?"
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m" if hours else (f"{minutes}m {secs:02d}s" if minutes else f"{secs}s")


def _spend_line(name: str, part: Dict[str, Any], key: str) -> str:
    budget = part["budget"]
    against = f"of {key}={usd(budget)}" if budget is not None else f"(no {key})"
    reached = " · REACHED: new tasks wait" if budget is not None and part["usd"] >= budget else ""
    unknown = f" · {len(part['unknown'])} of unknown cost: {', '.join(part['unknown'][:5])}" if part["unknown"] else ""
    return f"  {name} ({part['period']}): {usd(part['usd'])} {against}, {part['tasks']} task(s){unknown}{reached}"


def render(data: Dict[str, Any]) -> str:
    """The one screen (plain text)."""
    tz = data["time_zone"]
    now = data["now"]
    lines = [f"discord-orch status · {data['home']} · host {data['host']} · {_when(now, tz)} {tz}"]
    last = data["last_pass"]
    running_pid = data["pass_running_pid"]
    if last is None:
        pass_line = "last pass: none recorded"
    else:
        counts = ", ".join(f"{k} {last[k]}" for k in ("claimed", "refused", "finished", "reported", "deferred")
                           if k in last)
        pass_line = (f"last pass: ended {_when(last['ended_at'], tz)} ({_ago(now - last['ended_at'])}): "
                     f"{last['how']}" + (f" ({counts})" if counts else ""))
    if running_pid is not None:
        pass_line += f" · a pass is running now (pid {running_pid})"
    lines.append(pass_line)
    waiting = data["waiting"]
    tasks = waiting["tasks"]
    as_of = f" (as of the last poll, {_when(waiting['as_of'], tz)})" if waiting["as_of"] is not None else ""
    lines.append(f"waiting: {len(tasks)}{as_of}")
    for t in tasks[:WAITING_SHOWN]:
        lines.append(f"  {t['task_id']} by {t['author']}" + (" ⏸ (budget)" if t["paused"] else ""))
    if len(tasks) > WAITING_SHOWN:
        lines.append(f"  … and {len(tasks) - WAITING_SHOWN} more")
    if "live_pending" in data:
        live = data["live_pending"]
        lines.append(f"pending in #task-queue now (--live): {len(live)}{'+' if len(live) >= LIVE_PAGE else ''}")
        lines.extend(f"  {t['task_id']} by {t['author']}" for t in live[:WAITING_SHOWN])
    if "hosts" in data:
        lines.append(f"hosts in #worker-pool (--live): {len(data['hosts'])}")
        lines.extend(f"  {h['name']} · tags {', '.join(h['tags']) or 'none'} · last seen {_when(h['last_seen'], tz)} "
                     f"({_ago(now - h['last_seen'])})" + (" · silent" if h["silent"] else "") for h in data["hosts"])
    lines.append(f"running: {len(data['running'])}")
    for r in data["running"]:
        lines.append(f"  {r['task_id']} · host {r['host'] or '?'} · agent {r['agent_id'] or '?'} · "
                     f"model {r['model'] or '?'} · {_duration(r['elapsed_s'])}"
                     + (" (starting)" if r["status"] == str(STARTING) else ""))
    lines.append(f"last {LAST_OUTCOMES} outcomes:" if data["last_outcomes"] else "last outcomes: none yet")
    for o in data["last_outcomes"]:
        cost = "n/a" if o["cost_usd"] is None else usd(o["cost_usd"]) + (" (est.)" if o["cost_estimated"] else "")
        flag = " · over TASK_MAX_USD" if o["over_task_max"] else ""
        lines.append(f"  {o['task_id']} · {o['status']} · {_duration(o['duration_s'])} · {cost}{flag}")
    outbox = data["outbox"]
    lines.append(f"outbox: {len(outbox)} result(s) waiting to be posted"
                 + (": " + ", ".join(o["task_id"] for o in outbox[:WAITING_SHOWN]) if outbox else ""))
    spend = data["spend"]
    if spend is not None:
        lines.append(f"spend on this host ({tz} days and months):")
        lines.append(_spend_line("today", spend["today"], "BUDGET_DAILY_USD"))
        lines.append(_spend_line("this month", spend["month"], "BUDGET_MONTHLY_USD"))
    return "\n".join(lines)


def live_hosts(settings: "Settings", client: "DiscordClient") -> Optional[List["HostSeen"]]:
    """--live: the hosts whose presence threads are in #worker-pool (one GET of the server's active
    threads; one more to learn the server when GUILD_ID is unset). None: no presence here (HOST_SILENT_AFTER=0
    or no WORKER_POOL_CHANNEL)."""
    from .hosts import read_hosts

    if not settings.host_silent_after_s or not settings.worker_pool_channel:
        return None
    guild = settings.guild_id or client.get_channel(settings.task_queue_channel).guild_id
    return read_hosts(client, guild, settings.worker_pool_channel) if guild else None


def live_pending(settings: "Settings", client: "DiscordClient", store: Optional[Store]) -> List["Message"]:
    """--live: the messages of #task-queue after the cursor that are pending now (one page)."""
    from .claim import Claims
    from .intake import CURSOR_KEY

    channel = settings.task_queue_channel
    after = (store.get_meta(CURSOR_KEY.format(channel=channel)) if store is not None else None) or "0"
    messages = client.list_messages(channel, after=after, limit=LIVE_PAGE)
    if store is None:   # no pass ran here yet: nothing is claimed by this home
        from .tasks import is_orchestrator_post

        return sorted((m for m in messages if not is_orchestrator_post(m.content)), key=lambda m: int(m.id))
    claims = Claims(settings, client, store, on_fatal=lambda exc: None, on_done=lambda: None)
    return sorted(claims.pending(messages), key=lambda m: int(m.id))
