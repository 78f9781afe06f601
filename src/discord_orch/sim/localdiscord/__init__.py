"""LocalDiscord: a loopback Discord (HTTP API v10) for tests, bench and ``discord-orch demo``.

A real HTTP server (stdlib ``ThreadingHTTPServer``, HTTP/1.1 keep-alive, bound to
127.0.0.1 on an ephemeral port) that answers the part of Discord's REST API that
discord-orch uses, with Discord's JSON shapes, error codes and rate-limit headers,
so the real client (``requests``) can be exercised without a network or a token.
The world (guilds, users, channels, roles, members) is built through Python calls;
people act through Python calls too (``post_message``, ``react``); the bot acts over
HTTP. Everything is kept in memory behind one lock.

Use::

    with LocalDiscord(rate_limits=RateLimits.off()) as ld:
        gid = ld.create_guild("home")
        bot = ld.create_user("orch-bot", bot=True)          # bot.token for "Authorization: Bot ..."
        cid = ld.create_channel(gid, "task-queue")
        ld.post_message(cid, ld.create_user("alice").id, "a task")
        requests.get(f"{ld.base_url}/channels/{cid}/messages", headers={"Authorization": f"Bot {bot.token}"})

Emulated
    * Routes in :attr:`LocalDiscord.ROUTES` (users/@me, channel, guild, guild member, list /
      create / get / edit / delete message, add / remove own reaction, list reaction
      users, start a thread from a message, edit (archive, lock) a thread, list a guild's
      active threads), with the v10 shapes of Discord's OpenAPI spec.
    * Public threads started from a message (``threads``, whose docstring lists which
      facts are verified and how): one thread per message (160004), the guild's cap of
      active threads (160006, ``max_active_threads``), ``thread`` on the starter message,
      the type-21 first message, unarchive on post, locked threads.
    * Permissions (``grants``, whose docstring says what is verified): roles with permission
      bitfields (``create_role``, ``set_role_permissions``; @everyone's id is the guild's),
      the guild's owner, channel ``permission_overwrites`` (``set_overwrite``), served by
      ``GET /guilds/{id}`` and ``GET /channels/{id}`` and enforced by the routes with
      Discord's algorithm: View Channel (else 50001 on anything about the channel and its
      threads), Read Message History (else an empty list, 50013 for one message, a reply or
      a reaction), Send Messages, Attach Files, Add Reactions (the first of an emoji),
      Create Public Threads, Send Messages in Threads, Manage Threads (else 50013).
      ``deny``, ``allow``, ``deny_permission``, ``allow_permission`` are member overwrites.
    * Bot-token auth (401), the usual
      404 codes (10003, 10004, 10007, 10008), 10014 Unknown Emoji, 50005, 50006,
      50035 with nested field errors, 50109 invalid JSON, 40005 file too large,
      unknown route 404 and wrong method 405.
    * Message create as JSON or multipart (``payload_json`` + ``files[n]``), content
      (2,000 chars for bots) and embed limits, ``allowed_mentions`` (mentions,
      ``mention_everyone``, replied user), replies (type 19, ``message_reference``,
      ``referenced_message``), ``nonce`` + ``enforce_nonce`` idempotency within
      ``nonce_window`` seconds (per author). Attachments get a CDN-like URL (no auth),
      signed anew each time a message is rendered (``ex``/``is``/``hm``) and valid for
      ``attachment_link_ttl`` seconds (a day); a deleted file, or an expired or unsigned
      link, is a 404 "This content is no longer available.", as on Discord's CDN.
    * The MESSAGE_CONTENT intent: when off, messages of other users come back with
      empty content, embeds, attachments and components, except those that mention
      the bot.
    * Rate limits shaped like Discord's: per-route buckets keyed by (bucket, major
      parameter) with a window that starts at the first request, ``X-RateLimit-*``
      headers on every answer of a limited route, 429 bodies and headers (per-route
      ``Scope: user`` and the per-bot global limit with ``X-RateLimit-Global``).
    * The Gateway (``gateway``, whose docstring says which facts are verified and where), started on
      first use (``ld.gateway``, or ``GET /gateway/bot``): HELLO, IDENTIFY → READY, heartbeats and
      ACKs, MESSAGE_CREATE / MESSAGE_REACTION_ADD / THREAD_CREATE with sequence numbers, intents
      (MESSAGE_CONTENT empties others' content), RESUME with replay, op 7, op 9, close codes,
      1,000 identifies a day.
    * Fault injection: injected statuses and dropped connections (before or after the
      request took effect, narrowed to path parameters and the asking bot with ``where``;
      ``lose_thread_start_answers``), added latency, whole-API outage.

Not emulated
    Interactions and the Gateway's other events, permissions other routes would need (the emulator serves no
    moderation routes), categories and permission syncing, timeouts, private /
    announcement / forum threads, DMs,
    webhooks, interactions, pins, stickers, polls, components validation, custom
    emoji registry (any well-formed ``name:id`` is accepted), the invalid-request
    (Cloudflare) limit, ``shared`` rate-limit scopes, ``X-Audit-Log-Reason``. Fetched
    messages do not carry ``nonce`` (Discord does not store it); only the create
    answer echoes it (set ``nonce_in_history = True`` to change that). With
    ``RateLimits.off()`` no rate-limit headers are sent at all.

Modules
    ``emulator`` (``LocalDiscord``: lifecycle, request pipeline, request log, faults),
    ``server`` (HTTP plumbing), ``store`` (the world and its JSON), the route handlers
    ``messages``, ``reactions``, ``guilds``, ``threads`` and ``gateway`` (and its websocket), and their helpers ``routes``, ``apierror``,
    ``bodies``, ``emoji``, ``ratelimits`` and ``faults``.
"""

from __future__ import annotations

from .emulator import LocalDiscord, RequestRecord
from .ratelimits import RateLimits
from .routes import API_PREFIX
from .store import LocalUser

__all__ = ["LocalDiscord", "LocalUser", "RateLimits", "RequestRecord", "API_PREFIX"]
