"""Budgets (issue 15): a daily budget reached, new tasks wait with ⏸ and one notice, then run, oldest first,
once the day turns; TASK_MAX_USD flags a result. Passes run in-process with the wall clock injected."""

from __future__ import annotations

from datetime import datetime, timezone

from discord_orch.budget import day_of, month_of
from discord_orch.config import load_settings
from discord_orch.discord_api import DiscordClient
from discord_orch.orchestrator import Orchestrator
from discord_orch.state import Store
from tests.test_results import reaction_calls, run_of, submit, the_result

PAUSED = "⏸"
DAY_ONE = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc).timestamp()
NEXT_DAY = datetime(2026, 12, 2, 0, 0, 5, tzinfo=timezone.utc).timestamp()


def pass_at(home, monkeypatch, wall: float):
    """One pass of this home, its wall clock at ``wall`` (the day a cost counts on, the budget's day)."""
    monkeypatch.setenv("STANDIN_RUN_LOG", str(home.run_log))
    settings = load_settings(home.path, environ={})
    store = Store(settings.runtime_dir, host=settings.host_name)
    try:
        with DiscordClient(settings.token.reveal(), base_url=settings.api_base_url) as client:
            stats = Orchestrator(settings, client, store, wall=lambda: wall).run_pass()
    finally:
        store.close()
    assert stats.fatal is None, stats.fatal
    return stats


def test_a_daily_budget_reached_makes_new_tasks_wait_then_run_oldest_first_when_the_day_turns(home, world, monkeypatch):
    home.write_config(BUDGET_DAILY_USD="0.01", MAX_AGENTS="1")
    first = submit(home, "an expensive task COST=0.02")
    pass_at(home, monkeypatch, DAY_ONE)
    assert "cost $0.0200" in the_result(world, first)["content"]

    second = submit(home, "the second task")
    stranger = world.post(world.mallory, "not allowed here")["id"]
    third = submit(home, "the third task")
    pass_at(home, monkeypatch, DAY_ONE + 60)
    assert "⛔" in world.ld.reactions(world.task_queue, stranger)    # a refusal costs nothing: it does not wait
    assert PAUSED not in world.ld.reactions(world.task_queue, stranger)
    assert [r["task_id"] for r in home.runs()] == [first]          # nothing new ran
    for task in (second, third):
        assert world.ld.reactions(world.task_queue, task).get(PAUSED) == [world.bot.id]
        assert "✅" not in world.ld.reactions(world.task_queue, task)
    notice = ("⏸ daily budget reached: $0.0200 spent of BUDGET_DAILY_USD=$0.0100 (1 task(s) this day). New tasks "
              "wait (⏸) until it resets at 2026-12-02 00:00 UTC, or the budget is raised; running tasks go on")
    assert world.notices().count(notice) == 1, world.notices()

    pass_at(home, monkeypatch, DAY_ONE + 120)                        # the same day: no second notice, no second ⏸
    assert world.notices().count("budget reached") == 1
    assert reaction_calls(world, second).count(("PUT", PAUSED)) == 1
    assert len(home.runs()) == 1

    pass_at(home, monkeypatch, NEXT_DAY)
    assert [r["task_id"] for r in home.runs()] == [first, second, third]   # oldest first
    for task in (second, third):
        assert the_result(world, task)["content"].startswith("✅ **DONE**")
        assert PAUSED not in world.ld.reactions(world.task_queue, task)


def test_raising_the_budget_lets_the_waiting_task_run(home, world, monkeypatch):
    home.write_config(BUDGET_MONTHLY_USD="0.01")
    submit(home, "spend COST=0.05")
    pass_at(home, monkeypatch, DAY_ONE)
    waiting = submit(home, "wait for the budget")
    pass_at(home, monkeypatch, DAY_ONE + 60)
    assert "⏸ monthly budget reached: $0.0500 spent of BUDGET_MONTHLY_USD=$0.0100" in world.notices()
    assert "resets at 2027-01-01 00:00 UTC" in world.notices()
    home.write_config(BUDGET_MONTHLY_USD="1")
    pass_at(home, monkeypatch, DAY_ONE + 120)
    assert run_of(home, waiting) and PAUSED not in world.ld.reactions(world.task_queue, waiting)


def test_task_max_usd_flags_the_result_and_says_the_agent_was_not_stopped(home, world, monkeypatch):
    home.write_config(TASK_MAX_USD="0.01")
    dear = submit(home, "dear COST=0.5")
    cheap = submit(home, "cheap COST=0.001")
    pass_at(home, monkeypatch, DAY_ONE)
    post = the_result(world, dear)["content"]
    assert ("⚠️ cost $0.5000 passed TASK\\_MAX\\_USD=$0.0100: an agent's cost is known only when it ends, "
            "so it ran to the end") in post
    assert "TASK\\_MAX\\_USD" not in the_result(world, cheap)["content"]


def test_tasks_started_together_count_at_their_expected_cost_so_at_most_two_run_on_a_fresh_day(home, world,
                                                                                              monkeypatch):
    """Issue 24: five agents free, a $0.02 daily budget, tasks that cost $0.0123: a running task counts at the
    median of the last runs on its model here, so two start (0 and $0.0123 spent or expected: under the
    budget), not five; the others wait with ⏸."""
    home.write_config(MAX_AGENTS="5")
    submit(home, "yesterday's task COST=0.0123")               # what a task costs here, learned a day before
    pass_at(home, monkeypatch, DAY_ONE)
    home.write_config(MAX_AGENTS="5", BUDGET_DAILY_USD="0.02")
    tasks = [submit(home, f"task {n} COST=0.0123") for n in range(5)]
    pass_at(home, monkeypatch, NEXT_DAY)
    ran = [r["task_id"] for r in home.runs()][1:]
    assert ran == tasks[:2]
    for task in tasks[2:]:
        assert world.ld.reactions(world.task_queue, task).get(PAUSED) == [world.bot.id]
    assert "⏸ daily budget reached: $0.00 spent + $0.0246 expected of running tasks" in world.notices()


def test_with_no_run_yet_task_max_usd_is_a_tasks_expected_cost(home, world, monkeypatch):
    home.write_config(MAX_AGENTS="5", BUDGET_DAILY_USD="0.02", TASK_MAX_USD="0.015")
    tasks = [submit(home, f"task {n} COST=0.0123") for n in range(5)]
    pass_at(home, monkeypatch, DAY_ONE)
    assert [r["task_id"] for r in home.runs()] == tasks[:2]


def test_days_and_months_are_the_calendar_s_of_the_time_zone():
    from zoneinfo import ZoneInfo

    berlin = ZoneInfo("Europe/Berlin")
    spring = day_of(datetime(2026, 3, 29, 12, tzinfo=berlin).timestamp(), berlin)   # clocks go forward
    assert spring.name == "2026-03-29" and spring.end - spring.start == 23 * 3600
    late = datetime(2026, 12, 31, 23, 30, tzinfo=timezone.utc).timestamp()
    assert day_of(late, timezone.utc).name == "2026-12-31" and day_of(late, berlin).name == "2027-01-01"
    assert month_of(late, timezone.utc).name == "2026-12" and month_of(late, berlin).name == "2027-01"
