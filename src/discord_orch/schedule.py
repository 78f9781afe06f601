"""`discord-orch schedule install | remove | status`: passes on their own, from cron or systemd.

Cron (the default): one line in the user's crontab, a pass every minute, errors only on
stderr (cron mails them; the log goes to .runtime/orchestrator.log, rotated). The line sets
the PATH agents need under cron as `check` computes it (``check.cron_path``) and runs this
Python (``sys.executable -m discord_orch``: the venv it is installed in). It ends with the
marker ``# discord-orch home=<home>``, a shell comment, by which install replaces and remove
takes away only this home's line: every other line of the crontab is kept byte for byte,
and a crontab that held only our line is removed (``crontab -r``), as it was before.

systemd: ``orchestrate --watch`` as the user unit discord-orch.service under
``$XDG_CONFIG_HOME/systemd/user`` (default ~/.config): the home as its working directory,
the same PATH, SIGTERM's exit (143) a success, a stop timeout past KILL_GRACE, restarted on
failure; then ``systemctl --user daemon-reload`` and ``enable --now``. Without lingering
(``/var/lib/systemd/linger/<user>``) a user's services stop when they log out: said, with the fix.

Both are idempotent: install twice leaves one line (one unit), remove when none is there says so.
"""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from .check import cron_path
from .config import Settings
from .errors import EXIT_CONFIG, SetupError

MARKER = "# discord-orch home="
LOG_FILE = ".runtime/orchestrator.log"
UNIT_NAME = "discord-orch.service"
LINGER_DIR = Path("/var/lib/systemd/linger")
STOP_MARGIN_S = 30           # a stop's timeout past KILL_GRACE: the pass records its agents' ends, then exits 143


def run_schedule(settings: Settings, action: str, how: Optional[str]) -> List[str]:
    """What to print for ``action`` (install, remove, status) with cron, systemd or (``how`` None) the usual."""
    if action == "install":
        return install_systemd(settings) if how == "systemd" else install_cron(settings)
    kinds = [how] if how else ["cron", "systemd"]
    if action == "remove":
        lines = []
        for kind in kinds:
            lines += remove_systemd(settings) if kind == "systemd" else remove_cron(settings)
        return lines
    return [status_cron(settings) if kind == "cron" else status_systemd(settings) for kind in kinds]


# -- cron -------------------------------------------------------------------------------------------

def cron_line(settings: Settings) -> str:
    """This home's crontab line (cron reads ``%`` as a newline: escaped)."""
    argv = [sys.executable, "-m", "discord_orch", "-q", "--log-file", LOG_FILE, "orchestrate"]
    line = (f"* * * * * cd {_sh(str(settings.home))} && PATH={_sh(_agent_path(settings))} "
            f"{' '.join(_sh(a) for a in argv)} {MARKER}{settings.home}")
    return line.replace("%", "\\%")


def install_cron(settings: Settings) -> List[str]:
    current = _crontab()
    line = cron_line(settings)
    kept = _without_ours(current, settings)
    if _ours(current, settings) == [line]:
        return [f"cron: already installed: {line}"]
    _set_crontab(kept + ("" if kept.endswith("\n") or not kept else "\n") + line + "\n")
    said = [f"cron: installed, a pass every minute: {line}"]
    if _unit_path().is_file():
        said.append(f"warn  {_unit_path()} is installed too: use one of them (discord-orch schedule remove --systemd)")
    return said


def remove_cron(settings: Settings) -> List[str]:
    current = _crontab()
    if not _ours(current, settings):
        return ["cron: nothing to remove (no line of this home in the crontab)"]
    kept = _without_ours(current, settings)
    if kept:
        _set_crontab(kept)
    else:
        _run(["crontab", "-r"])
    return ["cron: removed this home's line from the crontab"]


def status_cron(settings: Settings) -> str:
    try:
        ours = _ours(_crontab(), settings)
    except SetupError as exc:
        return f"cron: {exc}"
    return f"cron: installed: {ours[0]}" if ours else "cron: not installed"


def _marked(line: str, settings: Settings) -> bool:
    return line.rstrip("\n").endswith(f"{MARKER}{settings.home}".replace("%", "\\%"))


def _ours(text: str, settings: Settings) -> List[str]:
    return [line for line in text.splitlines() if _marked(line, settings)]


def _without_ours(text: str, settings: Settings) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if not _marked(line, settings))


def _crontab() -> str:
    """The user's crontab ("" when there is none)."""
    done = _run(["crontab", "-l"], check=False)
    if done.returncode != 0:
        if "no crontab" in done.stderr.lower():
            return ""
        raise SetupError(f"crontab -l failed: {_first_line(done.stderr)}")
    return done.stdout


def _set_crontab(text: str) -> None:
    _run(["crontab", "-"], stdin=text)


# -- systemd ----------------------------------------------------------------------------------------

def unit_text(settings: Settings) -> str:
    """The user unit that keeps ``orchestrate --watch`` running in this home."""
    start = " ".join(_unit_quote(a) for a in (sys.executable, "-m", "discord_orch", "orchestrate", "--watch"))
    stop_s = int(settings.kill_grace_s) + STOP_MARGIN_S
    return (
        "[Unit]\n"
        "Description=discord-orch: a Discord task queue for OpenClaw agents\n"
        "After=network-online.target\n\n"
        "[Service]\n"
        f"WorkingDirectory={_unit_escape(str(settings.home))}\n"
        f"Environment={_unit_quote('PATH=' + _agent_path(settings))}\n"
        f"ExecStart={start}\n"
        "# a stop is SIGTERM: agents get SIGTERM, KILL_GRACE, SIGKILL, then the pass records and exits 143\n"
        "SuccessExitStatus=143\n"
        f"TimeoutStopSec={max(60, stop_s)}\n"
        "Restart=on-failure\n"
        "RestartSec=30\n\n"
        "[Install]\n"
        "WantedBy=default.target\n")


def install_systemd(settings: Settings) -> List[str]:
    path = _unit_path()
    text = unit_text(settings)
    other = _unit_home(path)
    if other is not None and other != str(settings.home):
        raise SetupError(f"{path} runs another home ({other}): remove it first "
                         f"(discord-orch --home {other} schedule remove --systemd)")
    same = path.is_file() and path.read_text(encoding="utf-8") == text
    if not same:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    _run(["systemctl", "--user", "daemon-reload"])
    _run(["systemctl", "--user", "enable", "--now", UNIT_NAME])
    said = [f"systemd: {'already installed' if same else 'installed'} and enabled: {path}",
            f"systemd: its log: journalctl --user -u {UNIT_NAME}"]
    user = getpass.getuser()
    if not (LINGER_DIR / user).exists():
        said.append(f"warn  lingering is off for {user}: the service stops when you log out; "
                    f"to keep it running: loginctl enable-linger {user}")
    if _ours(_crontab_or_empty(), settings):
        said.append("warn  this home's cron line is installed too: use one of them "
                    "(discord-orch schedule remove --cron)")
    return said


def remove_systemd(settings: Settings) -> List[str]:
    path = _unit_path()
    if _unit_home(path) != str(settings.home):
        return [f"systemd: nothing to remove (no {UNIT_NAME} for this home)"]
    _run(["systemctl", "--user", "disable", "--now", UNIT_NAME])
    path.unlink()
    _run(["systemctl", "--user", "daemon-reload"])
    return [f"systemd: stopped, disabled and removed {path}"]


def status_systemd(settings: Settings) -> str:
    path = _unit_path()
    if _unit_home(path) != str(settings.home):
        return "systemd: not installed"
    enabled = _run(["systemctl", "--user", "is-enabled", UNIT_NAME], check=False).stdout.strip() or "unknown"
    active = _run(["systemctl", "--user", "is-active", UNIT_NAME], check=False).stdout.strip() or "unknown"
    return f"systemd: {path} ({enabled}, {active})"


def _unit_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user" / UNIT_NAME


def _unit_home(path: Path) -> Optional[str]:
    """The home an installed unit runs (its WorkingDirectory), or None without one."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("WorkingDirectory="):
            return line[len("WorkingDirectory="):].replace("%%", "%")
    return None


def _crontab_or_empty() -> str:
    try:
        return _crontab()
    except SetupError:
        return ""


# -- helpers ----------------------------------------------------------------------------------------

def _agent_path(settings: Settings) -> str:
    return cron_path(settings.openclaw_bin, os.environ.get("PATH"))


def _sh(word: str) -> str:
    """A word for sh, quoted only when it must be (a crontab line stays readable)."""
    import shlex

    return shlex.quote(word)


def _unit_escape(text: str) -> str:
    return text.replace("%", "%%")      # systemd's specifiers


def _unit_quote(word: str) -> str:
    """A word of ExecStart= / Environment=, double-quoted with systemd's escapes."""
    inner = word.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$")
    return f'"{_unit_escape(inner)}"'


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or ["(no message)"])[0]


def _run(argv: Sequence[str], *, stdin: Optional[str] = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run a system tool; its absence or its failure (when ``check``) is one line."""
    try:
        done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise SetupError(f"`{argv[0]}` not found: install it, or use the other way (--cron / --systemd)",
                         EXIT_CONFIG) from None
    except subprocess.TimeoutExpired:
        raise SetupError(f"`{' '.join(argv)}` did not answer in 60 s") from None
    if check and done.returncode != 0:
        raise SetupError(f"`{' '.join(argv)}` failed (exit {done.returncode}): {_first_line(done.stderr)}")
    return done
