"""`discord-orch check`: the setup checked up front, without posting anything."""

from __future__ import annotations

from pathlib import Path

from discord_orch.cgroups import detect
from discord_orch.errors import EXIT_CONFIG, EXIT_DISCORD


def lines(run) -> list:
    return run.stdout.splitlines()


def nothing_posted(world) -> bool:
    return all(world.ld.messages(ch) == [] for ch in (world.task_queue, world.results, world.worker_pool))


def test_a_good_setup_passes_every_check_with_six_requests_and_posts_nothing(home, world):
    run = home.cli("check")
    assert run.returncode == 0, run.stderr
    out = lines(run)
    assert out[0] == f"ok    token: bot discord-orch (id {world.bot.id})"
    assert f"ok    RESULTS_CHANNEL: #results in server {world.guild}" in out
    assert out.count("ok    TASK_QUEUE_CHANNEL: the bot can read its message history") == 1
    assert f"ok    openclaw: {home.config['OPENCLAW_BIN']}" in out
    assert f"ok    openclaw under cron (PATH=/usr/bin:/bin): {home.config['OPENCLAW_BIN']}" in out
    # the fixture's OPENCLAW_CONFIG does not exist: a warning, not a failure
    [config] = [line for line in out if "OPENCLAW_CONFIG" in line]
    assert config.startswith("warn  OPENCLAW_CONFIG: ") and "no-openclaw.json not found" in config
    assert out[-1].startswith("ok    who may submit: the bot itself")
    assert all(line.startswith("ok") or line.startswith("warn") for line in out)
    assert world.ld.request_count() == 6 and nothing_posted(world)


def test_a_wrong_channel_id_is_named_once_with_its_key(home, world):
    run = home.cli("check", env={"RESULTS_CHANNEL": "1234567890123456789"})
    assert run.returncode == EXIT_DISCORD
    failed = [line for line in lines(run) if line.startswith("fail")]
    assert failed == ["fail  RESULTS_CHANNEL: Discord answered HTTP 404, code 10003 Unknown Channel on GET "
                      "/channels/{channel_id}: there is no channel RESULTS_CHANNEL=1234567890123456789 (or the bot "
                      "is not in its server); copy the id again (Developer Mode on, right-click the channel → Copy "
                      "Channel ID)"]
    assert run.stderr.strip() == "discord-orch: error: 1 problem(s) found; fix them and run discord-orch check again"


def test_a_channel_the_bot_cannot_see_says_which_permission(home, world):
    world.ld.deny(world.worker_pool, world.bot.id, code=50001)
    run = home.cli("check")
    assert run.returncode == EXIT_DISCORD
    [failed] = [line for line in lines(run) if line.startswith("fail")]
    assert failed.startswith(f"fail  WORKER_POOL_CHANNEL: Discord refused GET /channels/{{channel_id}} (HTTP 403, "
                             f"code 50001 Missing Access): the bot cannot see WORKER_POOL_CHANNEL={world.worker_pool}")
    assert "View Channel" in failed


def test_channels_of_another_server_than_guild_id_fail(home, world):
    other = world.ld.create_guild("elsewhere")
    run = home.cli("check", env={"GUILD_ID": other})
    assert run.returncode == EXIT_DISCORD
    assert f"fail  TASK_QUEUE_CHANNEL: #task-queue is in server {world.guild}, not in GUILD_ID={other}" in lines(run)


def test_a_wrong_token_stops_after_one_request(home, world):
    run = home.cli("check", env={"CHIP_TOKEN": "not-the-token"})
    assert run.returncode == EXIT_DISCORD
    assert lines(run) == ["fail  token: Discord rejected the bot token (HTTP 401 on GET /users/@me): CHIP_TOKEN (set "
                          "in the environment) is wrong or was reset; paste the bot's current token (Developer Portal "
                          "→ your application → Bot → Reset Token)"]
    assert world.ld.request_count() == 1


def test_a_missing_openclaw_fails_the_check(home, world):
    run = home.cli("check", env={"OPENCLAW_BIN": "no-such-openclaw"})
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert ("fail  openclaw: agent 'no-such-openclaw': not found on PATH nor in ~/.local/bin, ~/.npm-global/bin, "
            "~/.volta/bin, ~/.bun/bin, ~/.nvm/versions/node/*/bin, /usr/local/bin; install openclaw or set "
            "OPENCLAW_BIN to its full path") in lines(run)


def test_a_missing_key_is_a_config_error(home, world):
    home.config.pop("WORKER_POOL_CHANNEL")
    home.write_config()
    run = home.cli("check")
    assert run.returncode == EXIT_CONFIG and run.stdout == ""
    assert run.stderr.startswith("discord-orch: error: config: WORKER_POOL_CHANNEL: not set")
    assert world.ld.request_count() == 0


def script(path: Path, first_line: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{first_line}\necho hello\n")
    path.chmod(0o755)
    return path


def test_openclaw_missing_its_interpreter_fails_with_the_name(home, world, tmp_path):
    program = script(tmp_path / "oc" / "openclaw", "#!/usr/bin/env no-such-node")
    run = home.cli("check", env={"OPENCLAW_BIN": str(program)})
    assert run.returncode != 0
    assert (f"fail  openclaw: {program} needs `no-such-node` (its #! line), which is not on PATH nor beside it: "
            "install it or put its directory on PATH") in lines(run)


def test_what_works_in_a_shell_but_not_under_cron_is_a_warning_with_the_fix(home, world, tmp_path):
    """openclaw and node found through the shell's PATH: under cron (PATH=/usr/bin:/bin) neither would be."""
    program = script(tmp_path / "oc" / "openclaw", "#!/usr/bin/env fakenode")
    node = script(tmp_path / "nodebin" / "fakenode", "#!/bin/sh")
    shell_path = f"{program.parent}:{node.parent}:/usr/bin:/bin"
    run = home.cli("check", env={"OPENCLAW_BIN": "openclaw", "PATH": shell_path, "HOME": str(tmp_path / "nohome")})
    assert run.returncode == 0, run.stdout + run.stderr
    assert (f"warn  openclaw under cron (PATH=/usr/bin:/bin): openclaw would not be found: set "
            f"OPENCLAW_BIN={program} in discord-config.env") in lines(run)
    run = home.cli("check", env={"OPENCLAW_BIN": str(program), "PATH": shell_path})
    assert (f"warn  openclaw under cron (PATH=/usr/bin:/bin): agents would not find `fakenode` (the #! line of "
            f"{program}): put PATH={node.parent}:/usr/bin:/bin on a line of its own at the top of your crontab"
            ) in lines(run)
    node.rename(program.parent / "fakenode")   # node beside openclaw (npm, nvm, volta): agents get that dir
    run = home.cli("check", env={"OPENCLAW_BIN": str(program), "PATH": shell_path})
    assert f"ok    openclaw under cron (PATH=/usr/bin:/bin): {program}" in lines(run)


def test_openclaw_is_found_in_the_usual_install_dirs_newest_node_first(home, world, tmp_path):
    fake_home = tmp_path / "user"
    for version in ("v9.11.2", "v24.21.0", "v20.1.0"):
        script(fake_home / ".nvm" / "versions" / "node" / version / "bin" / "openclaw", "#!/bin/sh")
    run = home.cli("check", env={"OPENCLAW_BIN": "openclaw", "PATH": "/usr/bin:/bin", "HOME": str(fake_home)})
    newest = fake_home / ".nvm" / "versions" / "node" / "v24.21.0" / "bin" / "openclaw"
    assert f"ok    openclaw: {newest}" in lines(run)
    assert f"ok    openclaw under cron (PATH=/usr/bin:/bin): {newest}" in lines(run)


def test_check_says_what_holds_an_agents_processes(home, world):
    """Issue 11, item 10: whether a child that leaves the agent's group and marker can outlive it."""
    [line] = [line for line in lines(home.cli("check")) if "containment:" in line]
    if detect().parent is not None:
        assert line.startswith("ok    containment: each agent runs in its own cgroup under ")
    else:
        assert line.startswith("warn  containment: agents are held by their process group and environment marker")
    run = home.cli("check", env={"AGENT_CGROUP": "false"})
    assert run.returncode == 0, run.stderr
    [line] = [line for line in lines(run) if "containment:" in line]
    assert line == ("warn  containment: agents are held by their process group and environment marker only "
                    "(AGENT_CGROUP=false): a process that leaves both its process group and its environment "
                    "(setsid with a clean environment) can outlive its agent; see README, Security")
