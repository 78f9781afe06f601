"""The classified end of one agent run: its status, what it cost, how it ended.

Pure and stdlib only: report.py formats an :class:`Outcome` without loading the
supervisor (agent.py), subprocess or /proc code. agent.py decides which status a
run gets (see its table); the statuses are house rule 3's.
"""

from __future__ import annotations

import signal as _signal
from typing import NamedTuple, Optional, Tuple

# Outcome statuses (house rule 3).
OK = "ok"
FAILED = "failed"
TIMED_OUT = "timed_out"
KILLED = "killed"            # stopped by a signal we did not send for a timeout (or orchestrator stop)
INTERRUPTED = "interrupted"  # found dead without a result by recovery after an orchestrator crash
STOPPED = "stopped"          # a person asked (🛑, or `stop` in its thread): before it ran, or its group was killed
STATUSES = (OK, FAILED, TIMED_OUT, KILLED, INTERRUPTED, STOPPED)
#: how a run may end and still be run again (🔁, controls.py)
RETRYABLE = (FAILED, TIMED_OUT, KILLED, INTERRUPTED, STOPPED)


class Usage(NamedTuple):
    """What openclaw's --json said about the run; None = unknown (shown as n/a)."""

    provider: Optional[str] = None
    model: Optional[str] = None
    input_tokens: Optional[int] = None
    output_tokens: Optional[int] = None
    cost_usd: Optional[float] = None


class Outcome(NamedTuple):
    """The classified end of one agent run, everything the report needs."""

    status: str                          # one of STATUSES
    duration_s: float
    exit_code: Optional[int] = None      # None when killed by a signal or unknown (adopted)
    signal: Optional[int] = None         # the signal that ended it, if any
    reason: str = ""                     # one line: why it failed / timed out ("" when ok)
    error_message: str = ""              # openclaw's own error message from its JSON, if any
    result_text: str = ""                # RESULT.txt, decoded with errors="replace", NULs removed
    summary_text: str = ""               # SUMMARY.txt, same decoding
    reply_text: str = ""                 # openclaw's payloads[].text joined (its chat answer)
    log_tail: str = ""                   # last 20 lines of agent-output.log
    files: Tuple[str, ...] = ()  # files left in the task dir (relative)
    usage: Usage = Usage()
    # --- added by agent.py (optional, at the end) ---
    result_truncated: bool = False       # RESULT.txt was larger than RESULT_READ_MAX: only its head is here
    result_bytes: Optional[int] = None   # size of RESULT.txt on disk (None: no RESULT.txt)
    notes: Tuple[str, ...] = ()          # one line each, shown in the post: "RESULT.txt is a link; not followed"
    stopped_by: str = ""                 # STOPPED: who asked, as the post names them


def signal_name(number: object) -> Optional[str]:
    """``SIGKILL`` for 9; None when ``number`` names no signal."""
    try:
        return _signal.Signals(number).name
    except (ValueError, TypeError):
        return None
