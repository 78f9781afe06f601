"""`discord-orch status` (issue 15): one screen, and --json, on a home with waiting, running and finished
tasks; no Discord request unless --live."""

from __future__ import annotations

import json
import re
import signal
import time

from tests.test_results import orchestrate, submit

WAIT_CAP_S = 30.0


def status_json(home) -> dict:
    res = home.cli("status", "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_status_shows_the_last_pass_waiting_running_outcomes_outbox_and_spend(home, world):
    home.write_config(MAX_AGENTS="1", BUDGET_DAILY_USD="5", TASK_MAX_USD="0.01")
    done = submit(home, "a finished task COST=0.02")
    failed = submit(home, "a failed task FAIL")
    orchestrate(home)
    running = submit(home, "a long task SLEEP=60")
    waiting = submit(home, "a waiting task")
    proc = home.popen("orchestrate")
    try:
        deadline = time.monotonic() + WAIT_CAP_S
        while True:
            data = status_json(home)
            if [r["task_id"] for r in data["running"]] == [running] and data["running"][0]["agent_id"] \
                    and [t["task_id"] for t in data["waiting"]["tasks"]] == [waiting]:
                break
            assert time.monotonic() < deadline, data
            time.sleep(0.2)
        assert data["pass_running_pid"] == proc.pid
        assert data["last_pass"]["how"] == "done" and data["last_pass"]["claimed"] == 2
        assert data["running"][0]["host"] == data["host"] and data["running"][0]["model"].endswith("kimi-k2.5")
        outcomes = {o["task_id"]: o for o in data["last_outcomes"]}
        assert outcomes[done]["status"] == "ok" and outcomes[done]["cost_usd"] == 0.02
        assert outcomes[done]["over_task_max"] is True and outcomes[failed]["status"] == "failed"
        assert data["outbox"] == []
        today = data["spend"]["today"]
        assert today["usd"] == 0.02 and today["budget"] == 5 and today["tasks"] == 2
        assert today["unknown"] == [failed]                  # the stand-in's failure reports no cost
        assert data["time_zone"] == "UTC" and data["spend"]["month"]["usd"] == 0.02

        screen = home.cli("status")
        assert screen.returncode == 0, screen.stderr
        text = screen.stdout
        assert re.search(r"^last pass: ended \S+ \S+ \(.+ ago\): done \(claimed 2, refused 0, finished 2, "
                         rf"reported 2, deferred 0\) · a pass is running now \(pid {proc.pid}\)$", text, re.M), text
        assert re.search(rf"^waiting: 1 \(as of the last poll, .+\)\n  {waiting} by ", text, re.M), text
        assert re.search(rf"^running: 1\n  {running} · host \S+ · agent agent-\S+ · model \S+ · \d+s$", text, re.M)
        assert re.search(rf"^  {done} · ok · \d+s · \$0\.0200 · over TASK_MAX_USD$", text, re.M), text
        assert re.search(rf"^  {failed} · failed · \d+s · n/a$", text, re.M), text
        assert "outbox: 0 result(s) waiting to be posted" in text
        assert re.search(r"^  today \(\d{4}-\d\d-\d\d\): \$0\.0200 of BUDGET_DAILY_USD=\$5\.00, 2 task\(s\) · "
                         rf"1 of unknown cost: {failed}$", text, re.M), text
        assert "this month (" in text and "(no BUDGET_MONTHLY_USD)" in text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=WAIT_CAP_S)


def test_status_on_a_new_home_and_live(home, world):
    res = home.cli("status")
    assert res.returncode == 0, res.stderr
    assert "last pass: none recorded" in res.stdout and "waiting: 0" in res.stdout
    assert not (home.path / ".runtime" / "state.db").exists()        # reading changes nothing
    task = submit(home, "pending now")
    world.ld.reset_log()
    live = home.cli("status", "--live", "--json")
    assert live.returncode == 0, live.stderr
    assert [t["task_id"] for t in json.loads(live.stdout)["live_pending"]] == [task]
    assert len(world.ld.requests) == 1
    world.ld.reset_log()
    orchestrate(home)
    world.ld.reset_log()
    assert home.cli("status").returncode == 0 and home.cli("status", "--json").returncode == 0
    assert world.ld.requests == []                                  # without --live, no Discord request
