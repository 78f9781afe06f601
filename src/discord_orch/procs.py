"""Process groups and /proc (Linux): a process's state, start time and agent marker;
every live process of ours in a group or carrying an agent's marker; signals that do
not mind a process already gone.

An agent runs in its own session and process group, and its environment carries
``DISCORD_ORCH_AGENT_ID`` (openclaw.AGENT_ID_ENV): that marker finds a process that
escaped the group with setsid, and tells a recycled pid from the agent on adoption.
"""

from __future__ import annotations

import os
import signal
from typing import Dict, List, Optional

from .openclaw import AGENT_ID_ENV

_DEAD_STATES = ("Z", "X", "x")        # /proc/<pid>/stat states of a process that is no more (zombie, dead)


def _proc_stat_fields(pid: int) -> Optional[List[str]]:
    """Fields of /proc/<pid>/stat after the command name: [state, ppid, pgrp, ...]."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    close = data.rfind(b")")
    if close < 0:
        return None
    return data[close + 2:].decode("ascii", "replace").split()


def process_start_ticks(pid: int) -> Optional[int]:
    """Start time of a process in clock ticks since boot (/proc/<pid>/stat field 22)."""
    fields = _proc_stat_fields(pid)
    try:
        return int(fields[19]) if fields else None
    except (IndexError, ValueError):
        return None


def _proc_state(pid: int) -> Optional[str]:
    fields = _proc_stat_fields(pid)
    return fields[0] if fields else None


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is neither a zombie nor dead."""
    state = _proc_state(pid)
    return state is not None and state not in _DEAD_STATES


def agent_id_of(pid: int) -> Optional[str]:
    """The DISCORD_ORCH_AGENT_ID in a process's environment, if any."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    key = AGENT_ID_ENV.encode() + b"="
    at = data.find(b"\0" + key)
    if at >= 0:
        at += 1
    elif data.startswith(key):
        at = 0
    else:
        return None
    end = data.find(b"\0", at)
    return data[at + len(key):end if end >= 0 else len(data)].decode("ascii", "replace")


class ProcessTable:
    """One walk of /proc over our own user's live processes, read on first use.

    Finding an agent's leftovers means looking at every process we own (its group
    members, and anything carrying its marker that escaped the group with setsid).
    Agents that end in the same supervision tick share one walk instead of each
    making its own, which kept the orchestrator's CPU per task growing with the
    number of agents. A snapshot only lives for one tick: a process forked after
    the walk is caught by the group kill or by the next tick's walk.
    """

    def __init__(self) -> None:
        self._live: Optional[Dict[int, int]] = None          # pid -> pgrp
        self._by_agent: Optional[Dict[str, List[int]]] = None

    def _walk(self) -> Dict[int, int]:
        if self._live is None:
            live: Dict[int, int] = {}
            for pid in _own_pids():
                fields = _proc_stat_fields(pid)
                if not fields or fields[0] in _DEAD_STATES:
                    continue
                try:
                    live[pid] = int(fields[2])
                except (IndexError, ValueError):
                    continue
            self._live = live
        return self._live

    def group_members(self, pgid: int) -> List[int]:
        """Live processes of process group ``pgid``."""
        return sorted(pid for pid, pgrp in self._walk().items() if pgrp == pgid)

    def carrying(self, agent_id: str) -> List[int]:
        """Live processes whose environment carries DISCORD_ORCH_AGENT_ID=agent_id."""
        if self._by_agent is None:
            by_agent: Dict[str, List[int]] = {}
            for pid in self._walk():
                found = agent_id_of(pid)
                if found:
                    by_agent.setdefault(found, []).append(pid)
            self._by_agent = by_agent
        return sorted(self._by_agent.get(agent_id, ()))


def _own_pids() -> List[int]:
    uid = os.getuid()
    me = os.getpid()
    out = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if not name.isdigit():
            continue
        pid = int(name)
        if pid == me:
            continue
        try:
            if os.stat(f"/proc/{name}").st_uid != uid:
                continue
        except OSError:
            continue
        out.append(pid)
    return out


def find_agent_processes(agent_id: str) -> List[int]:
    """Live processes of our user whose environment carries DISCORD_ORCH_AGENT_ID=agent_id."""
    return ProcessTable().carrying(agent_id)


def kill_leftovers(agent_id: str) -> List[int]:
    """SIGKILL every live process carrying this agent's marker (what an unwatched agent left behind)."""
    pids = find_agent_processes(agent_id)
    for pid in pids:
        kill(pid, signal.SIGKILL)
    return pids


def killpg(pgid: int, sig: int) -> None:
    """Signal a process group; a group already gone (or not ours) is not an error."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def kill(pid: int, sig: int) -> None:
    """Signal a process; one already gone (or not ours) is not an error."""
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
