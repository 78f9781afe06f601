"""`discord-orch check`: the setup checked up front, without posting anything."""

from __future__ import annotations

from pathlib import Path

import requests

from discord_orch.cgroups import detect
from discord_orch.errors import EXIT_CONFIG, EXIT_DISCORD
from discord_orch.sim.localdiscord import grants

THREADS_OK = ("ok    CLAIM=thread: thread claiming is possible: the bot has Create Public Threads, Send Messages "
              "in Threads and Attach Files in #task-queue")


def lines(run) -> list:
    return run.stdout.splitlines()


def nothing_posted(world) -> bool:
    """No message anywhere, and every request the check made only read."""
    return (all(world.ld.messages(ch) == [] for ch in (world.task_queue, world.results, world.worker_pool))
            and {r.method for r in world.ld.requests} == {"GET"})


def deny_thread_permissions(world, where: str) -> None:
    for permission in ("CREATE_PUBLIC_THREADS", "SEND_MESSAGES_IN_THREADS"):
        world.ld.deny_permission(where, world.bot.id, permission)


def failed(run) -> list:
    return [line for line in lines(run) if line.startswith("fail")]


def fails_with(run, *expected: str) -> None:
    """Exactly these fail lines, and the exit code of a Discord setup problem."""
    assert run.returncode == EXIT_DISCORD
    assert failed(run) == list(expected)


def test_a_good_setup_passes_every_check_with_eight_requests_and_posts_nothing(home, world):
    run = home.cli("check")
    assert run.returncode == 0, run.stderr
    out = lines(run)
    assert out[0] == f"ok    token: bot discord-orch (id {world.bot.id})"
    assert f"ok    RESULTS_CHANNEL: #results in server {world.guild}" in out
    assert out[1:8] == [f"ok    TASK_QUEUE_CHANNEL: #task-queue in server {world.guild}",
                        "ok    TASK_QUEUE_CHANNEL: the bot has View Channel, Read Message History and Add Reactions there",
                        THREADS_OK,
                        f"ok    RESULTS_CHANNEL: #results in server {world.guild}",
                        "ok    RESULTS_CHANNEL: the bot has View Channel, Read Message History, Send Messages and "
                        "Attach Files there",
                        f"ok    WORKER_POOL_CHANNEL: #worker-pool in server {world.guild}",
                        "ok    WORKER_POOL_CHANNEL: the bot has View Channel and Send Messages there"]
    assert f"ok    openclaw: {home.config['OPENCLAW_BIN']}" in out
    assert f"ok    openclaw under cron (PATH=/usr/bin:/bin): {home.config['OPENCLAW_BIN']}" in out
    # the fixture's OPENCLAW_CONFIG does not exist: a warning, not a failure
    [config] = [line for line in out if "OPENCLAW_CONFIG" in line]
    assert config.startswith("warn  OPENCLAW_CONFIG: ") and "no-openclaw.json not found" in config
    assert out[-1].startswith("ok    who may submit: the bot itself")
    assert all(line.startswith("ok") or line.startswith("warn") for line in out)
    assert world.ld.request_count() == 8 and nothing_posted(world)   # GATEWAY=auto: the application, the commands


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


# -- permissions (issue 13: CLAIM=thread needs two thread permissions in #task-queue) -------------------

def test_without_create_public_threads_check_names_it_and_the_two_fixes(home, world):
    world.ld.deny_permission(world.task_queue, world.bot.id, "CREATE_PUBLIC_THREADS")
    run = home.cli("check")
    fails_with(run, "fail  CLAIM=thread: the bot lacks Create Public Threads in #task-queue, which claiming a task by "
                    "starting its thread and posting its result there needs: give it to the bot's role (Server Settings → Roles) or allow it in "
                    "#task-queue (Edit Channel → Permissions), or set CLAIM=reaction (one host only)")
    assert run.stderr.strip() == "discord-orch: error: 1 problem(s) found; fix them and run discord-orch check again"
    assert world.ld.request_count() == 8 and nothing_posted(world)   # GATEWAY=auto: the application, the commands
    # what check saw missing is what the route refuses
    task = world.post(world.alice, "a task")
    refused = requests.post(f"{world.ld.base_url}/channels/{world.task_queue}/messages/{task['id']}/threads",
                            json={"name": "mine"}, headers={"Authorization": f"Bot {world.bot.token}"}, timeout=10)
    assert (refused.status_code, refused.json()) == (403, {"message": "Missing Permissions", "code": 50013})


def test_without_send_messages_in_threads_from_any_role_check_names_it(home, world):
    """Taken from @everyone (the server's role), then given back by a role of the bot's: roles add up."""
    world.ld.set_role_permissions(world.guild, world.guild, grants.EVERYONE_DEFAULT & ~grants.SEND_MESSAGES_IN_THREADS)
    run = home.cli("check")
    assert run.returncode == EXIT_DISCORD
    [line] = failed(run)
    assert line.startswith("fail  CLAIM=thread: the bot lacks Send Messages in Threads in #task-queue, which claiming")
    assert line.endswith("or set CLAIM=reaction (one host only)")
    threads = world.ld.create_role(world.guild, "threads", grants.SEND_MESSAGES_IN_THREADS)
    world.ld.add_member(world.guild, world.bot.id, roles=[threads])
    run = home.cli("check")
    assert run.returncode == 0 and THREADS_OK in lines(run)


def test_without_attach_files_in_the_task_queue_check_names_it_for_results_in_threads(home, world):
    """CLAIM=thread copies each result into its task's thread, a long one as a file, and threads take
    #task-queue's permissions: without Attach Files there, check says so before a result is refused."""
    world.ld.deny_permission(world.task_queue, world.bot.id, "ATTACH_FILES")
    run = home.cli("check")
    assert run.returncode == EXIT_DISCORD
    [line] = failed(run)
    assert line.startswith("fail  CLAIM=thread: the bot lacks Attach Files in #task-queue, which claiming a task by "
                           "starting its thread and posting its result there needs"), line


def test_both_thread_permissions_missing_are_named_in_one_line(home, world):
    deny_thread_permissions(world, world.task_queue)
    run = home.cli("check")
    assert run.returncode == EXIT_DISCORD
    [line] = failed(run)
    assert line.startswith("fail  CLAIM=thread: the bot lacks Create Public Threads and Send Messages in Threads in "
                           "#task-queue, which claiming a task by starting its thread and posting its result there "
                           "needs: give them to the bot's "
                           "role (Server Settings → Roles) or allow them in #task-queue")


def test_claim_by_reaction_needs_no_thread_permission(home, world):
    deny_thread_permissions(world, world.guild)
    run = home.cli("check", env={"CLAIM": "reaction"})
    assert run.returncode == 0, run.stdout
    out = lines(run)
    assert "ok    CLAIM=reaction: one host claims a task by its ✅; no thread permissions needed" in out
    assert not any("CLAIM=thread" in line for line in out)
    assert world.ld.request_count() == 8 and nothing_posted(world)   # GATEWAY=auto: the application, the commands


def test_a_channel_overwrite_for_everyone_is_seen_and_an_administrator_passes_it(home, world):
    """#results: @everyone may not send (Attach Files goes with it, as Discord says); a bot with Administrator
    ignores every overwrite."""
    world.ld.set_overwrite(world.results, world.guild, deny=grants.SEND_MESSAGES)
    fails_with(home.cli("check"), "fail  RESULTS_CHANNEL: the bot lacks Send Messages and Attach Files in #results, "
               "which a pass needs to post results (a long one as a file) and find one already posted: give them to "
               "the bot's role (Server Settings → Roles) or allow them in #results (Edit Channel → Permissions)")
    admin = world.ld.create_role(world.guild, "admin", grants.ADMINISTRATOR)
    world.ld.add_member(world.guild, world.bot.id, roles=[admin])
    assert home.cli("check").returncode == 0


def test_no_message_history_is_named_though_discord_answers_it_with_no_messages(home, world):
    """Discord lists no messages to a bot without Read Message History, no error: a pass would see no task."""
    world.post(world.alice, "a task nobody would see")
    world.ld.deny_permission(world.task_queue, world.bot.id, "READ_MESSAGE_HISTORY")
    run = home.cli("check")
    assert run.returncode == EXIT_DISCORD
    [line] = failed(run)
    assert line.startswith("fail  TASK_QUEUE_CHANNEL: the bot lacks Read Message History in #task-queue, which a "
                           "pass needs to read tasks and mark them")
