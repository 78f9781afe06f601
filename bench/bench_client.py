"""Bench: how close does DiscordClient get to Discord's rate-limit floor?

Against LocalDiscord with Discord's default limits (message create 5 per 5 s per
channel, reactions 1 per 0.25 s per channel, 50 requests per second per bot), it
posts N messages to one channel and adds N reactions (one each on N messages of
the same channel), both workloads at once in two threads (or one after the other
with --sequential), and prints one figure per line:

    makespan   time from a workload's first call to its last answer
    floor      the least time the limits allow: the first window is free, then
               one window per ``limit`` requests: ceil(N / limit - 1) * window
    ratio      makespan / floor (target <= 1.05)
    429s       rate-limited answers the server gave (target 0)

Run: ``python bench/bench_client.py`` (exit status 0 when every target is met).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

try:
    import discord_orch  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from discord_orch.discord_api import DiscordClient  # noqa: E402
from discord_orch.sim.localdiscord import LocalDiscord, RateLimits  # noqa: E402

RATIO_TARGET = 1.05
CREATE_ROUTE = "POST /channels/{channel_id}/messages"
REACT_ROUTE = "PUT /channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me"
EMOJI = "✅"


def floor_seconds(n: int, limit: int, window: float) -> float:
    """Least makespan for n requests at ``limit`` per ``window``: the first window is free."""
    return max(0, math.ceil(n / limit - 1)) * window


def timed(fn: Callable[[], None], out: Dict[str, float], key: str) -> Callable[[], None]:
    def run() -> None:
        started = time.monotonic()
        fn()
        out[key] = time.monotonic() - started
    return run


def main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=50, help="messages to post and reactions to add (default 50)")
    ap.add_argument("--sequential", action="store_true", help="run the two workloads one after the other")
    ap.add_argument("-v", "--verbose", action="store_true", help="DEBUG log of discord_orch.http on stderr")
    args = ap.parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(relativeCreated)9.1f %(threadName)s %(message)s")
        logging.getLogger("urllib3").setLevel(logging.WARNING)

    limits = RateLimits.discord_defaults()
    n = args.n
    with LocalDiscord(rate_limits=limits) as ld:
        gid = ld.create_guild("bench")
        bot = ld.create_user("bench-bot", bot=True)
        alice = ld.create_user("alice")
        ld.add_member(gid, alice.id)
        cid = ld.create_channel(gid, "task-queue")
        targets = [ld.post_message(cid, alice.id, f"task {i}")["id"] for i in range(n)]

        with DiscordClient(bot.token, ld.base_url) as client:
            def creates() -> None:
                for i in range(n):
                    client.create_message(cid, f"result {i}")

            def reactions() -> None:
                for mid in targets:
                    client.add_reaction(cid, mid, EMOJI)

            took: Dict[str, float] = {}
            jobs = [threading.Thread(target=timed(creates, took, "creates"), name="creates"),
                    threading.Thread(target=timed(reactions, took, "reactions"), name="reactions")]
            started = time.monotonic()
            for job in jobs:
                job.start()
                if args.sequential:
                    job.join()
            for job in jobs:
                job.join()
            took["both"] = time.monotonic() - started
            stats = client.stats

        assert len(ld.messages(cid)) == 2 * n, "every create posted exactly once"
        assert all(ld.reactions(cid, mid).get(EMOJI) == [bot.id] for mid in targets), "every reaction added"

        floors: Dict[str, Tuple[float, str]] = {
            "creates": (floor_seconds(n, *limits.message_create),
                        f"{n} at {limits.message_create[0]} per {limits.message_create[1]:g} s"),
            "reactions": (floor_seconds(n, *limits.reactions),
                          f"{n} at {limits.reactions[0]} per {limits.reactions[1]:g} s"),
        }
        both_floor = (sum if args.sequential else max)(f for f, _ in floors.values())
        floors["both"] = (both_floor, "sum of the two" if args.sequential else "the longer of the two, run at once")
        n429 = {"creates": ld.count_429(CREATE_ROUTE), "reactions": ld.count_429(REACT_ROUTE),
                "both": ld.count_429()}

    ok = True
    mode = "one after the other" if args.sequential else "concurrently (two threads)"
    print(f"bench_client: {n} creates + {n} reactions, one channel, Discord's default limits, {mode}")
    for key in ("creates", "reactions", "both"):
        floor, how = floors[key]
        ratio = took[key] / floor if floor else float("inf")
        ratio_ok = ratio <= RATIO_TARGET
        zero_429 = n429[key] == 0
        ok = ok and ratio_ok and zero_429
        print(f"{key:9} makespan  {took[key]:8.3f} s")
        print(f"{key:9} floor     {floor:8.3f} s   ({how})")
        print(f"{key:9} ratio     {ratio:8.3f}     {'PASS' if ratio_ok else 'MISS'} (target <= {RATIO_TARGET})")
        print(f"{key:9} 429s      {n429[key]:8d}     {'PASS' if zero_429 else 'MISS'} (target 0)")
    print(f"client    requests  {stats.requests:8d}     (retries {stats.retries}, "
          f"429s seen {stats.responses_429}, rate-limit waits {stats.waited_s:.1f} s summed over threads)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
