"""Each agent in a cgroup v2 of its own, where the machine lets us make one (Linux).

A process group and the ``DISCORD_ORCH_AGENT_ID`` marker do not hold an agent's
processes: a child started as ``setsid env -i ...`` (what ``sudo``, ``ssh`` or a
daemonizing tool leave behind) has neither. A cgroup does: every process forked
inside it stays inside, whatever its session or environment, and one write to
``cgroup.kill`` ends them all.

Where: a child of our own cgroup (``/proc/self/cgroup``'s ``0::`` line, under the
cgroup2 mount found in ``/proc/self/mountinfo``), named ``discord-orch-<agent id>``.
That needs write access to our cgroup and its ``cgroup.procs`` (root, or a
delegated cgroup: ``systemd-run --user --scope -p Delegate=yes``, a service with
``Delegate=yes``). We enable no controllers, so the v2 "no internal processes"
rule does not stand in the way of the orchestrator staying in the parent.

The agent enters its cgroup between fork and exec (it writes ``0`` to an fd of
its ``cgroup.procs`` opened by the parent), so nothing of it runs outside first.
Where no cgroup can be made, agents run as before (process group + marker) and
:func:`containment` says so, once, in the log.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

log = logging.getLogger("discord_orch")

PREFIX = "discord-orch-"                # + the agent id: how a later pass finds it by name
PROCS = "cgroup.procs"
KILL = "cgroup.kill"                    # kernel >= 5.14; else every pid gets SIGKILL
MOUNTINFO = "/proc/self/mountinfo"
SELF_CGROUP = "/proc/self/cgroup"
KILL_ROUNDS = 50                        # fallback: SIGKILL what is listed, until empty, at most this often
KILL_ROUND_PAUSE_S = 0.01
SEARCH_DEPTH = 8                        # recovery looks this deep for a cgroup of ours made by another pass

NO_CGROUP_ESCAPES = ("a process that leaves both its process group and its environment "
                     "(setsid with a clean environment) can outlive its agent")


@dataclass(frozen=True)
class Containment:
    """Where agent cgroups are made (``parent``), or None and why not (``reason``)."""

    parent: Optional[Path]
    reason: str

    def describe(self) -> str:
        """One line for the log and `discord-orch check`."""
        if self.parent is not None:
            return (f"each agent runs in its own cgroup under {self.parent} ({PREFIX}<agent id>); "
                    f"everything it starts is killed with it")
        return f"agents are held by their process group and environment marker only ({self.reason}): " \
               f"{NO_CGROUP_ESCAPES}"


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit() and len(field[i + 1:i + 4]) == 3:
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _cgroup2_mount() -> Optional[tuple]:
    """(mount point, the cgroup path it shows as its root) of the first cgroup2 mount."""
    with open(MOUNTINFO, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            head, sep, tail = line.partition(" - ")
            fields = head.split()
            if sep and tail.split()[:1] == ["cgroup2"] and len(fields) >= 5:
                return Path(_unescape(fields[4])), _unescape(fields[3])
    return None


def _own_cgroup_path() -> Optional[str]:
    with open(SELF_CGROUP, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith("0::"):
                return line[3:].rstrip("\n")
    return None


def _own_cgroup_dir() -> Path:
    """Our cgroup v2 directory; OSError with the reason when there is none to be seen."""
    mount = _cgroup2_mount()
    if mount is None:
        raise OSError(errno.ENOENT, "no cgroup2 file system is mounted")
    point, root = mount
    own = _own_cgroup_path()
    if own is None:
        raise OSError(errno.ENOENT, "this process is in no cgroup v2 hierarchy")
    root = root.rstrip("/")
    if root and not (own == root or own.startswith(root + "/")):
        raise OSError(errno.ENOENT, f"our cgroup {own} is outside the cgroup2 mount at {point}")
    path = point / own[len(root):].lstrip("/")
    if not path.is_dir():
        raise OSError(errno.ENOENT, f"our cgroup {own} is not visible under {point}")
    return path


def detect() -> Containment:
    """Can agent cgroups be made here? Probes by making (and removing) an empty one."""
    try:
        parent = _own_cgroup_dir()
        if not os.access(parent / PROCS, os.W_OK):
            return Containment(None, f"our cgroup {parent} is not delegated to us (its {PROCS} is not writable)")
        probe = parent / f"{PREFIX}probe-{os.getpid()}"
        os.mkdir(probe)
        os.rmdir(probe)
    except OSError as exc:
        return Containment(None, f"no cgroup v2 we may write to: {exc.strerror or exc}")
    return Containment(parent, "")


_decided: Dict[bool, Containment] = {}


def containment(enabled: bool = True) -> Containment:
    """What holds agents in this process (off when not ``enabled``): decided once, logged once."""
    if enabled not in _decided:
        _decided[enabled] = detect() if enabled else Containment(None, "AGENT_CGROUP=false")
        log.info("containment: %s", _decided[enabled].describe())
    return _decided[enabled]


class AgentCgroup:
    """One agent's cgroup directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._join_fd = -1

    @classmethod
    def create(cls, parent: Path, agent_id: str) -> "AgentCgroup":
        """Make ``<parent>/discord-orch-<agent_id>``, ready to be joined (OSError when it cannot be)."""
        cgroup = cls(parent / f"{PREFIX}{agent_id}")
        os.mkdir(cgroup.path)
        try:
            cgroup._join_fd = os.open(cgroup.path / PROCS, os.O_WRONLY | os.O_CLOEXEC)
        except OSError:
            cgroup.remove()
            raise
        return cgroup

    @classmethod
    def find(cls, agent_id: str) -> Optional["AgentCgroup"]:
        """The cgroup a pass made for this agent (ours or a dead pass's, wherever it ran), if any."""
        try:
            parent = _own_cgroup_dir()
            mount = _cgroup2_mount()
        except OSError:
            return None
        name = f"{PREFIX}{agent_id}"
        if (parent / name).is_dir():
            return cls(parent / name)
        for path in _walk(mount[0] if mount else parent, SEARCH_DEPTH):
            if path.name == name:
                return cls(path)
        return None

    def joiner(self) -> Callable[[], None]:
        """A preexec_fn that moves the forked child into this cgroup (after :meth:`create`)."""
        fd = self._join_fd

        def join() -> None:  # in the child, between fork and exec: one write, no lock taken
            os.write(fd, b"0")
        return join

    def close_joiner(self) -> None:
        """Close the fd the joiner writes to, once the child has been spawned."""
        fd, self._join_fd = self._join_fd, -1
        if fd >= 0:
            os.close(fd)

    def pids(self) -> List[int]:
        """Processes in the cgroup now (zombies are not listed)."""
        try:
            text = (self.path / PROCS).read_text()
        except OSError:
            return []
        return [int(word) for word in text.split()]

    def kill(self) -> List[int]:
        """SIGKILL every process in the cgroup; return those that were in it."""
        pids = self.pids()
        try:
            with open(self.path / KILL, "w") as fh:
                fh.write("1")
            return pids
        except OSError:
            pass
        seen = set(pids)
        for _ in range(KILL_ROUNDS):  # no cgroup.kill: what forks meanwhile is caught next round
            now = self.pids()
            if not now:
                break
            seen.update(now)
            for pid in now:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(KILL_ROUND_PAUSE_S)
        return sorted(seen)

    def remove(self) -> bool:
        """Remove the (empty) cgroup; False while something is still in it."""
        try:
            os.rmdir(self.path)
        except FileNotFoundError:
            return True
        except OSError:
            return False
        return True

    def __repr__(self) -> str:
        return f"AgentCgroup({str(self.path)!r})"


def _walk(top: Path, depth: int) -> Iterator[Path]:
    if depth <= 0:
        return
    try:
        entries = [e for e in os.scandir(top) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return
    for entry in entries:
        yield Path(entry.path)
    for entry in entries:
        yield from _walk(Path(entry.path), depth - 1)


def kill_leftover_cgroup(agent_id: str) -> List[int]:
    """Kill and remove the cgroup an ended agent left (after a crash); the pids it held."""
    cgroup = AgentCgroup.find(agent_id)
    if cgroup is None:
        return []
    pids = cgroup.kill()
    for _ in range(KILL_ROUNDS):
        if cgroup.remove():
            break
        time.sleep(KILL_ROUND_PAUSE_S)
    return pids
