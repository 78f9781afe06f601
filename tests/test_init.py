"""`discord-orch init`: from a bot token to a checked config, driven as a user would (a terminal) or a script.

The terminal is a real pseudo-terminal (os.openpty, the child's controlling terminal), so the token
prompt is click's hidden one, as a user meets it; every read waits for a prompt's text (a gate).
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import stat
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from discord_orch import permissions as perm
from discord_orch.check import INVITE_NEEDS
from discord_orch.config import read_config_file
from discord_orch.errors import EXIT_DISCORD, EXIT_SIGINT
from discord_orch.sim.localdiscord import LocalDiscord, RateLimits
from discord_orch.sim.standin_openclaw import write_standin_executable

PROMPT_WAIT_S = 120      # a gate's bound, not a measure: a prompt normally shows in well under a second
CONFIG = "discord-config.env"
READ_FD0 = {"x86_64": "0 0x0 ", "aarch64": "63 0x0 "}.get(os.uname().machine, "0 0x0 ")   # /proc/<pid>/syscall: read(0, ...)


class Place:
    """A local Discord with a bot and alice, a server ``home`` (its owner a member), and an empty home dir."""

    def __init__(self, ld: LocalDiscord, root: Path, *, in_server: bool = True, manage_channels: bool = True) -> None:
        self.ld, self.root = ld, root
        self.bot = ld.create_user("discord-orch", bot=True)
        self.alice = ld.create_user("alice")
        self.guild = ld.create_guild("home")
        if in_server:
            roles = [ld.create_role(self.guild, "bots", perm.MANAGE_CHANNELS)] if manage_channels else []
            ld.add_member(self.guild, self.bot.id, roles=roles)
        ld.add_member(self.guild, self.alice.id)
        self.home = root / "home"
        self.home.mkdir()
        write_standin_executable(root / "bin")
        self.token_file = root / "token"
        self.token_file.write_text(self.bot.token + "\n")
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("DISCORD_", "CHIP_", "ORCHESTRATOR_", "OPENCLAW", "ALLOWED_", "ALLOW_", "HOST_"))}
        env.update(DISCORD_API_BASE_URL=ld.base_url, PATH=f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}",
                   STANDIN_RUN_LOG=str(root / "agent-runs.jsonl"), PYTHONUNBUFFERED="1",
                   OPENCLAW_CONFIG=str(root / "no-openclaw.json"))
        self.env = env

    def cli(self, *args: str, env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
        """The CLI with no terminal at all (stdin is /dev/null), as a script runs it."""
        return subprocess.run([sys.executable, "-m", "discord_orch", *args], cwd=self.home, env={**self.env, **(env or {})},
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240)

    def config(self) -> Dict[str, str]:
        return read_config_file(self.home / CONFIG)[0]

    def channel(self, name: str) -> Optional[str]:
        found = [c for c in self.ld._channels.values() if c.guild_id == self.guild and c.name == name]
        return found[0].id if found else None


@pytest.fixture
def ld():
    with LocalDiscord(rate_limits=RateLimits.off()) as server:
        yield server


class Terminal:
    """The CLI on a pseudo-terminal: ``expect`` waits for text, ``type`` answers it."""

    def __init__(self, place: Place, *args: str) -> None:
        master, slave = os.openpty()
        self.proc = subprocess.Popen([sys.executable, "-m", "discord_orch", *args], cwd=place.home, env=place.env,
                                     stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                                     preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        os.close(slave)
        self.master, self.seen, self.pos = master, "", 0

    def _read(self, deadline_s: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], deadline_s)
        if not ready:
            return False
        try:
            data = os.read(self.master, 4096)
        except OSError:          # EIO: the child closed the terminal
            data = b""
        self.seen += data.decode("utf-8", errors="replace")
        return bool(data)

    def expect(self, text: str) -> None:
        while text not in self.seen[self.pos:]:
            assert self._read(PROMPT_WAIT_S), f"waited for {text!r}; the terminal showed:\n{self.seen}"
        self.pos = self.seen.index(text, self.pos) + len(text)

    def type(self, answer: str) -> None:
        os.write(self.master, answer.encode() + b"\r")     # Enter, as a terminal sends it

    def wait_reading(self) -> None:
        """Until the CLI blocks reading its terminal (fd 0): as a user answering, it waits there."""
        deadline = time.monotonic() + PROMPT_WAIT_S
        while not Path(f"/proc/{self.proc.pid}/syscall").read_text().startswith(READ_FD0):
            assert time.monotonic() < deadline, "the CLI never waited for an answer"
            time.sleep(0.01)

    def end(self) -> int:
        while self._read(PROMPT_WAIT_S):
            pass
        os.close(self.master)
        return self.proc.wait(timeout=PROMPT_WAIT_S)


def test_init_in_a_terminal_creates_the_channels_writes_a_config_check_passes_and_a_task_is_answered(ld, tmp_path):
    place = Place(ld, tmp_path)
    term = Terminal(place, "init")
    term.expect("Bot token: ")
    term.type(place.bot.token)
    term.expect("home has no #task-queue, #results and #worker-pool. Create them? [Y/n]: ")
    term.type("")
    term.expect("Usernames, comma-separated (empty: nobody): ")
    term.type("@Alice")
    term.expect("This host's name (it ends each task's thread name)")
    term.type("box-1")
    assert term.end() == 0, term.seen
    assert place.bot.token not in term.seen          # typed unseen, and never printed
    for name in ("task-queue", "results", "worker-pool"):
        assert f"#{name} created (id {place.channel(name)})" in term.seen
    assert "ok    tasks may run from: the bot itself (discord-orch submit), home-owner (the server's owner) and alice" \
        in term.seen
    assert "discord-orch: error" not in term.seen and "\r\nfail " not in term.seen
    assert "Next:" in term.seen and "discord-orch schedule install" in term.seen

    path = place.home / CONFIG
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    config = place.config()
    owner = ld._guilds[place.guild].owner_id
    assert config["TASK_QUEUE_CHANNEL"] == place.channel("task-queue") and config["GUILD_ID"] == place.guild
    assert config["ALLOWED_USER_IDS"] == f"{owner},{place.alice.id}" and config["HOST_NAME"] == "box-1"
    text = path.read_text()
    assert "# Channel ids (Discord: Settings → Advanced → Developer Mode" in text     # the example's comments kept
    assert "#MODEL_ALIASES=fast=" in text and "\nCHIP_TOKEN=" in text

    assert place.cli("check").returncode == 0
    task = ld.post_message(place.channel("task-queue"), place.alice.id, "Say hello from a fresh setup")
    run = place.cli("orchestrate")
    assert run.returncode == 0, run.stderr
    [result] = [m for m in ld.messages(place.channel("results")) if task["id"] in m["content"]
                or (m.get("message_reference") or {}).get("message_id") == task["id"]]
    assert "Say hello from a fresh setup" in result["content"]


def test_a_bot_in_no_server_gets_the_invite_link_with_the_permissions_check_needs_and_exit_1(ld, tmp_path):
    place = Place(ld, tmp_path, in_server=False)
    run = place.cli("init", "--non-interactive", "--token-file", str(place.token_file))
    assert run.returncode == 1
    bits = sum(INVITE_NEEDS)
    link = f"https://discord.com/oauth2/authorize?client_id={place.bot.id}&scope=bot&permissions={bits}"
    assert f"  {link}" in run.stdout.splitlines()
    assert bits == (perm.VIEW_CHANNEL | perm.SEND_MESSAGES | perm.READ_MESSAGE_HISTORY | perm.ADD_REACTIONS
                    | perm.ATTACH_FILES | perm.CREATE_PUBLIC_THREADS | perm.SEND_MESSAGES_IN_THREADS)
    assert run.stderr == ("discord-orch: error: the bot is in no server yet: open the link above, choose your server, "
                          "then run discord-orch init again\n")
    assert not (place.home / CONFIG).exists()


def test_a_bot_without_manage_channels_is_told_which_channels_to_create(ld, tmp_path):
    place = Place(ld, tmp_path, manage_channels=False)
    ld.create_channel(place.guild, "results")
    run = place.cli("init", "--non-interactive", "--token-file", str(place.token_file))
    assert run.returncode == 1
    assert f"ok    RESULTS_CHANNEL: #results (id {place.channel('results')})" in run.stdout
    assert run.stderr == ("discord-orch: error: home has no #task-queue and #worker-pool: create them (text channels "
                          "the bot can see), or give the bot Manage Channels so init can, then run discord-orch init "
                          "again\n")
    assert not (place.home / CONFIG).exists() and place.channel("task-queue") is None


def test_a_wrong_token_is_one_line_after_one_request(ld, tmp_path):
    place = Place(ld, tmp_path)
    place.token_file.write_text("not-the-token")
    run = place.cli("init", "--non-interactive", "--token-file", str(place.token_file))
    assert run.returncode == EXIT_DISCORD
    assert run.stderr.splitlines() == [
        f"discord-orch: error: Discord rejected the bot token (HTTP 401 on GET /users/@me): the token in "
        f"{place.token_file} is wrong or was reset; paste the bot's current token (Developer Portal → your "
        f"application → Bot → Reset Token)"]
    assert ld.request_count() == 1 and not (place.home / CONFIG).exists()


def test_answers_given_by_options_need_no_terminal_and_a_config_is_replaced_only_when_told(ld, tmp_path):
    place = Place(ld, tmp_path)
    for name in ("task-queue", "results"):
        ld.create_channel(place.guild, name)
    other = ld.create_guild("elsewhere")
    ld.add_member(other, place.bot.id)
    (place.home / CONFIG).write_text("MODEL_ALIASES=fast=x/y\nCHIP_TOKEN=old\n")
    args = ["init", "--non-interactive", "--token-file", str(place.token_file), "--host-name", "ci-1"]

    several = place.cli(*args)
    assert several.returncode == 1 and several.stderr == (
        f"discord-orch: error: {place.home / CONFIG} exists: add --force to replace it (a copy of it is kept)\n")
    several = place.cli(*args, "--force")
    assert several.returncode == 1 and several.stderr == (
        "discord-orch: error: the bot is in several servers (home, elsewhere): say which with --server NAME\n")
    nobody = place.cli(*args, "--force", "--server", "HOME", "--allow", "bob")
    assert nobody.returncode == 1
    assert nobody.stderr == "discord-orch: error: no member of home has the username 'bob'\n"
    assert (place.home / CONFIG).read_text() == "MODEL_ALIASES=fast=x/y\nCHIP_TOKEN=old\n"

    run = place.cli(*args, "--force", "--server", "HOME", "--allow", "alice")
    assert run.returncode == 0, run.stderr
    config = place.config()
    assert config["GUILD_ID"] == place.guild and config["HOST_NAME"] == "ci-1" and config["CHIP_TOKEN"] == place.bot.token
    assert config["MODEL_ALIASES"] == "fast=x/y"                     # the old file's other keys kept
    assert (place.home / f"{CONFIG}.bak").read_text() == "MODEL_ALIASES=fast=x/y\nCHIP_TOKEN=old\n"
    assert stat.S_IMODE((place.home / f"{CONFIG}.bak").stat().st_mode) == 0o600
    # created by the run that stopped at --allow bob (no question for it: its default is yes); found since
    assert f"ok    WORKER_POOL_CHANNEL: #worker-pool created (id {place.channel('worker-pool')})" in nobody.stdout
    assert f"ok    WORKER_POOL_CHANNEL: #worker-pool (id {place.channel('worker-pool')})" in run.stdout
    assert [r.method for r in ld.requests if r.route == "POST /guilds/{guild_id}/channels"] == ["POST"]


def test_ctrl_c_at_a_question_leaves_no_config(ld, tmp_path):
    place = Place(ld, tmp_path)
    term = Terminal(place, "init", "--token-file", str(place.token_file))
    term.expect("Create them? [Y/n]: ")
    term.wait_reading()    # a SIGINT between the prompt and the read would wait for the read's end (Python's race)
    os.killpg(term.proc.pid, signal.SIGINT)     # what the terminal does on Ctrl-C: SIGINT to its foreground group
    assert term.end() == EXIT_SIGINT
    assert "discord-orch: interrupted" in term.seen
    assert sorted(p.name for p in place.home.iterdir()) == []
