"""`discord-orch schedule`: a crontab line or a systemd user unit, installed and removed without touching the rest.

crontab and systemctl are fakes on PATH (shell scripts keeping the crontab in a file, logging their calls),
so the user's real ones are never touched; the unit goes under an XDG_CONFIG_HOME in tmp.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

FAKE_CRONTAB = """#!/bin/sh
# crontab -l | crontab - | crontab -r, on $FAKE_CRONTAB_FILE
case "$1" in
  -l) if [ -f "$FAKE_CRONTAB_FILE" ]; then cat "$FAKE_CRONTAB_FILE"; else echo "no crontab for $USER" >&2; exit 1; fi ;;
  -) cat > "$FAKE_CRONTAB_FILE" ;;
  -r) rm -f "$FAKE_CRONTAB_FILE" ;;
  *) echo "fake crontab: unexpected $*" >&2; exit 2 ;;
esac
"""
FAKE_SYSTEMCTL = """#!/bin/sh
echo "$*" >> "$FAKE_SYSTEMCTL_LOG"
case "$*" in *is-enabled*) echo enabled ;; *is-active*) echo active ;; esac
"""
USER_CRONTAB = "MAILTO=me@example.org\n# my backups\n15 3 * * * /usr/local/bin/backup --all\n"


def fake(directory: Path, name: str, text: str) -> None:
    path = directory / name
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def tools(home, tmp_path):
    fakes = tmp_path / "fakes"
    fakes.mkdir()
    fake(fakes, "crontab", FAKE_CRONTAB)
    fake(fakes, "systemctl", FAKE_SYSTEMCTL)
    home.env.update(PATH=f"{fakes}{os.pathsep}{home.env['PATH']}", FAKE_CRONTAB_FILE=str(tmp_path / "crontab"),
                    FAKE_SYSTEMCTL_LOG=str(tmp_path / "systemctl.log"), XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    return tmp_path


def test_cron_install_twice_then_remove_leaves_the_crontab_byte_for_byte(home, tools):
    crontab = tools / "crontab"
    crontab.write_text(USER_CRONTAB)
    first = home.cli("schedule", "install")
    assert first.returncode == 0, first.stderr
    lines = crontab.read_text().splitlines()
    assert lines[:3] == USER_CRONTAB.splitlines() and len(lines) == 4
    ours = lines[3]
    assert ours.startswith(f"* * * * * cd {home.path} && PATH=/usr/bin:/bin {sys.executable} -m "
                           "discord_orch -q --log-file .runtime/orchestrator.log orchestrate # discord-orch home=")
    assert first.stdout == f"cron: installed, a pass every minute: {ours}\n"
    again = home.cli("schedule", "install", "--cron")
    assert again.returncode == 0 and again.stdout == f"cron: already installed: {ours}\n"
    assert crontab.read_text() == USER_CRONTAB + ours + "\n"
    assert home.cli("schedule", "status", "--cron").stdout == f"cron: installed: {ours}\n"

    removed = home.cli("schedule", "remove")
    assert removed.returncode == 0, removed.stderr
    assert "cron: removed this home's line from the crontab" in removed.stdout
    assert crontab.read_text() == USER_CRONTAB
    assert home.cli("schedule", "remove", "--cron").stdout == \
        "cron: nothing to remove (no line of this home in the crontab)\n"


def test_a_user_without_a_crontab_has_none_again_after_remove(home, tools):
    assert home.cli("schedule", "install").returncode == 0
    assert (tools / "crontab").read_text().count("\n") == 1
    assert home.cli("schedule", "remove", "--cron").returncode == 0
    assert not (tools / "crontab").exists()


def test_the_crontab_path_holds_what_cron_needs_to_find_openclaw(home, tools):
    # openclaw found on the shell's PATH only: the line's PATH names its directory, as check advises
    run = home.cli("schedule", "install", env={"OPENCLAW_BIN": "openclaw"})
    assert run.returncode == 0, run.stderr
    assert f"PATH={tools / 'bin'}:/usr/bin:/bin " in (tools / "crontab").read_text()


def test_systemd_unit_runs_watch_in_this_home_and_remove_takes_it_away(home, tools):
    run = home.cli("schedule", "install", "--systemd")
    assert run.returncode == 0, run.stderr
    unit = tools / "xdg" / "systemd" / "user" / "discord-orch.service"
    text = unit.read_text()
    assert f"WorkingDirectory={home.path}\n" in text
    assert f'ExecStart="{sys.executable}" "-m" "discord_orch" "orchestrate" "--watch"\n' in text
    assert 'Environment="PATH=/usr/bin:/bin"\n' in text      # OPENCLAW_BIN is a full path whose #! needs nothing
    assert "SuccessExitStatus=143\n" in text and "Restart=on-failure\n" in text and "WantedBy=default.target\n" in text
    assert "TimeoutStopSec=60\n" in text      # KILL_GRACE=1 in these homes: 60 s is the floor
    assert run.stdout.startswith(f"systemd: installed and enabled: {unit}\n")
    log = tools / "systemctl.log"
    assert log.read_text().splitlines() == ["--user daemon-reload", "--user enable --now discord-orch.service"]
    assert home.cli("schedule", "install", "--systemd").stdout.startswith("systemd: already installed and enabled")
    assert home.cli("schedule", "status", "--systemd").stdout == f"systemd: {unit} (enabled, active)\n"

    removed = home.cli("schedule", "remove", "--systemd")
    assert removed.returncode == 0 and removed.stdout == f"systemd: stopped, disabled and removed {unit}\n"
    assert not unit.exists()
    assert log.read_text().splitlines()[-2:] == ["--user disable --now discord-orch.service", "--user daemon-reload"]


def test_no_crontab_program_is_one_line(home, tmp_path):
    run = home.cli("schedule", "install", env={"PATH": str(tmp_path / "nowhere")})
    assert run.returncode == 3
    assert run.stderr == ("discord-orch: error: `crontab` not found: install it, or use the other way "
                          "(--cron / --systemd)\n")
