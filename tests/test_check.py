"""`discord-orch check`: the setup checked up front, without posting anything."""

from __future__ import annotations

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
    # the fixture's OPENCLAW_CONFIG does not exist: a warning, not a failure
    [openclaw] = [line for line in out if " openclaw: " in line]
    assert openclaw.startswith("warn  openclaw: ") and "no-openclaw.json not found" in openclaw
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
    assert "fail  openclaw: agent 'no-such-openclaw': not found on PATH; install openclaw or set OPENCLAW_BIN" \
        in lines(run)


def test_a_missing_key_is_a_config_error(home, world):
    home.config.pop("WORKER_POOL_CHANNEL")
    home.write_config()
    run = home.cli("check")
    assert run.returncode == EXIT_CONFIG and run.stdout == ""
    assert run.stderr.startswith("discord-orch: error: config: WORKER_POOL_CHANNEL: not set")
    assert world.ld.request_count() == 0
