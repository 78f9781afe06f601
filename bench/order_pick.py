"""The cost of choosing the next task (issue 17: priority, turns between authors): intake.py's pick,
run over a backlog until it is empty, as a pass would when every claim frees a slot at once.

    python bench/order_pick.py [--sizes 100,1000,3000] [--authors 5]

Each pick looks at the whole backlog (who may run tasks, then order.Order.pick), so the cost per
pick grows with the backlog; a poll adds at most 1,000 messages to it. Prints one line per size:
the total and the cost per pick. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import time

from discord_orch.claim import Access
from discord_orch.models import Message, User, snowflake_at
from discord_orch.order import Order
from discord_orch.tasks import PRIORITIES

AGE_S = 900.0


def backlog(n: int, authors: int) -> list:
    base = snowflake_at(time.time() - 100)
    users = [User(id=str(10**17 + i), username=f"u{i}", bot=False) for i in range(authors)]
    return [Message(id=str(base + (i << 22)), channel_id="1", author=users[i % authors],
                    content=f"task {i} [priority:{PRIORITIES[i % len(PRIORITIES)]}]", type=0, reactions=(),
                    attachments=(), referenced_message_id=None, nonce=None, thread=None) for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100,1000,3000")
    ap.add_argument("--authors", type=int, default=5)
    args = ap.parse_args()
    for n in (int(x) for x in args.sizes.split(",")):
        pending = backlog(n, args.authors)
        access = Access(bot_user_id=lambda: "1", allowed_user_ids=tuple({m.author.id for m in pending}))
        order = Order((), AGE_S, time.time)
        t0 = time.perf_counter()
        while pending:
            chosen = order.pick([m for m in pending if access.allows(m.author)])
            pending.remove(chosen)
        took = time.perf_counter() - t0
        print(f"backlog {n}: {took:.3f} s for every pick, {took / n * 1e3:.3f} ms per pick")


if __name__ == "__main__":
    main()
