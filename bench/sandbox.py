"""A task's wall time with and without the sandbox (issue 23): target < 5% or < 0.3 s more.

    python bench/sandbox.py [--runs 20]

One agent run (the instant stand-in: its start-up is the run) through ``RunningAgent.start``
and its supervision to the end, as a pass runs it, under each fence this machine has; the
fences' fixed cost (bwrap's namespaces and mounts, the Landlock ruleset) is what differs.
Median of ``--runs`` after a warm-up, alternating the modes so that load hits all alike. One
line per fence: ``name: value (target ...) PASS|MISS``. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))

from discord_orch import landlock, sandbox  # noqa: E402
from helpers_agent import Rig, drive  # noqa: E402


def one(rig: Rig, mode: str) -> float:
    cfg = rig.config(sandbox=mode, sandbox_read=(str(ROOT / "src"),), sandbox_write=(str(rig.run_log),))
    started = time.monotonic()
    _ws, ra = rig.start("bench", cfg)
    out = drive(ra, interval=0.005)
    took = time.monotonic() - started
    assert out.status == "ok", (mode, out.reason, out.log_tail)
    return took


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    runs = parser.parse_args().runs
    modes = ["off"] + (["bwrap"] if sandbox._probe_bwrap()[0] else []) + (["landlock"] if landlock.abi_version()[0] else [])
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as tmp:
        rig = Rig(Path(tmp))
        rig.run_log.touch()
        for mode in modes:   # warm-up: the probe, the page cache
            one(rig, mode)
        times = {mode: [] for mode in modes}
        for _ in range(runs):
            for mode in modes:
                times[mode].append(one(rig, mode))
    base = statistics.median(times["off"])
    print(f"# {runs} runs each, stand-in agent; unfenced median {base * 1000:.0f} ms")
    for mode in modes[1:]:
        med = statistics.median(times[mode])
        more = med - base
        ok = more < 0.3 or more / base < 0.05
        print(f"sandbox_{mode}_extra_s: {more:.3f} s ({more / base:+.0%}; median {med * 1000:.0f} ms) "
              f"(target < 0.3 s or < 5%) {'PASS' if ok else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
