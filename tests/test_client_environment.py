"""DiscordClient and the process environment: proxies and CA bundle read once, ~/.netrc never.

requests, left to itself, re-reads os.environ (proxies, no_proxy, CA bundle) and
~/.netrc on every request. The client resolves them once when it is made; these
tests pin the behaviour that must survive that: an HTTP(S)_PROXY is still used,
NO_PROXY still bypasses it, and a netrc entry never replaces the bot token.
"""

from __future__ import annotations

import pytest

from discord_orch.discord_api import DiscordClient
from discord_orch.errors import DiscordUnavailable
from discord_orch.sim.localdiscord import LocalDiscord, RateLimits

PROXY_KEYS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy",
              "no_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NETRC")


@pytest.fixture
def ld(monkeypatch):
    for key in PROXY_KEYS:
        monkeypatch.delenv(key, raising=False)
    with LocalDiscord(rate_limits=RateLimits.off()) as server:
        yield server


def test_proxy_from_the_environment_is_used(ld, monkeypatch):
    bot = ld.create_user("orch-bot", bot=True)
    # The local Discord answers absolute-form request lines, so it can stand in for a forward proxy:
    # a host that does not resolve is reached only through it.
    monkeypatch.setenv("HTTP_PROXY", ld.origin)
    client = DiscordClient(bot.token, "http://discord.invalid/api/v10", max_retries=0)
    assert client.me().id == bot.id
    [rec] = ld.requests
    assert rec.path.startswith("http://discord.invalid/api/v10/users/@me")


def test_no_proxy_bypasses_it(ld, monkeypatch):
    bot = ld.create_user("orch-bot", bot=True)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    client = DiscordClient(bot.token, ld.base_url, max_retries=0)
    assert client.me().id == bot.id


def test_environment_is_read_once_per_client(ld, monkeypatch):
    bot = ld.create_user("orch-bot", bot=True)
    client = DiscordClient(bot.token, ld.base_url, max_retries=0)
    assert client.me().id == bot.id
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # set after the client was made
    assert client.me().id == bot.id
    fresh = DiscordClient(bot.token, ld.base_url, max_retries=0)
    with pytest.raises(DiscordUnavailable):
        fresh.me()


def test_netrc_never_replaces_the_bot_token(ld, monkeypatch, tmp_path):
    bot = ld.create_user("orch-bot", bot=True)
    netrc = tmp_path / "netrc"
    netrc.write_text("default login someone password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    client = DiscordClient(bot.token, ld.base_url, max_retries=0)
    assert client.me().id == bot.id
