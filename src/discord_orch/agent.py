"""Supervise one ``openclaw agent`` run and classify how it ended.

House rule 3: the supervisor owns timeouts. The agent runs in its own session and
process group; past the deadline the whole group gets SIGTERM, after ``kill_grace_s``
SIGKILL; once the leader is gone every straggler of the group (and any process that
carries our ``DISCORD_ORCH_AGENT_ID`` marker, e.g. one that escaped with setsid) is
SIGKILLed, and so is everything in the agent's own cgroup (cgroups.py), where the machine
gives us one: that also holds a child that left both (``setsid env -i``). Nothing blocks: the orchestrator calls :meth:`RunningAgent.poll` with its
clock (wall-clock epoch seconds, so values survive a restart) until it returns True.
An agent started by an earlier orchestrator process is adopted (:meth:`RunningAgent.adopt`).

What openclaw is and how it is called: openclaw.py; process groups and /proc:
procs.py; reading the files the agent leaves: workspace.py; the outcome types:
outcome.py.

Classification (see :meth:`RunningAgent.outcome`):

=============  ===========================================================================
ok             exit 0, RESULT.txt non-empty, openclaw's JSON reports no error
failed         nonzero exit; or exit 0 without (or with an empty) RESULT.txt; or the JSON
               says ``{"ok":false,"error":...}``, ``payloads[].isError`` or ``meta.error``
timed_out      we signalled it at the deadline ("timed out after N s"); result/log kept
killed         ended by a signal we did not send for a timeout, or stopped by stop()
stopped        stopped by stop() for a person (``by``: 🛑 or `stop` in its thread); result/log kept
interrupted    (recovery only) found ended without evidence while no orchestrator watched
=============  ===========================================================================
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

from . import logcap, sandbox
from .cgroups import AgentCgroup, containment
from .errors import AgentError
from .openclaw import (CRON_PATH, EXIT_COMMAND_NOT_FOUND, AgentConfig, build_command, find_last_json_object,
                       interpret_json)
from .outcome import FAILED, KILLED, OK, STATUSES, STOPPED, TIMED_OUT, Outcome, Usage, signal_name
from .procs import ProcessTable, agent_id_of, alive, kill, killpg, process_start_ticks
from .workspace import (JSON_TAIL_MAX, LEFT_FILES, RESULT_FILE, RESULT_READ_MAX, STDERR_FILE, STDOUT_FILE, SUMMARY_FILE,
                        SUMMARY_READ_MAX, Workspace, decode_text, files_left, link_note, links_left, open_left,
                        read_head, read_log_tail, read_tail_bytes)

MIB = 1024 * 1024
STRAGGLER_GIVE_UP_S = 5.0             # after the leader exited, stop waiting for unkillable ones

log = logging.getLogger("discord_orch")


# ---------------------------------------------------------------- classification

@dataclass(frozen=True)
class _Evidence:
    """What the run left in its workspace, read once: what the classification judges by."""

    found_json: bool
    usage: Usage
    error_message: str
    reply_text: str
    result_text: Optional[str]
    result_bytes: Optional[int]
    result_truncated: bool
    summary_text: str
    log_tail: str
    files: Tuple[str, ...]
    links: Tuple[str, ...]           # what we would have read is a link (not followed): relative names
    logs_cut: Tuple[str, ...]        # a note per log that was capped


def _gather(ws: Workspace) -> _Evidence:
    data, _cut = read_tail_bytes(ws, STDOUT_FILE, JSON_TAIL_MAX)
    obj = find_last_json_object(decode_text(data))
    usage, error_message, reply = interpret_json(obj)
    result, rbytes, truncated = read_head(ws, RESULT_FILE, RESULT_READ_MAX)
    summary, _s, _t = read_head(ws, SUMMARY_FILE, SUMMARY_READ_MAX)
    return _Evidence(found_json=obj is not None, usage=usage, error_message=error_message,
                     reply_text=reply, result_text=result, result_bytes=rbytes,
                     result_truncated=truncated, summary_text=summary or "",
                     log_tail=read_log_tail(ws), files=files_left(ws), links=links_left(ws),
                     logs_cut=_logs_cut(ws))


def _logs_cut(ws: Workspace) -> Tuple[str, ...]:
    """A note for each log of the run that logcap cut."""
    notes = []
    for name in (STDOUT_FILE, STDERR_FILE):
        try:
            with open_left(ws, name) as fh:
                cut = logcap.bytes_cut(fh)
        except OSError:
            continue
        if cut:
            notes.append(f"{name} was cut: {cut:,} bytes left out "
                         f"(its first {logcap.HEAD_KEEP // MIB} MiB and last {logcap.TAIL_KEEP // MIB} MiB kept)")
    return tuple(notes)


def _make(ev: _Evidence, status: str, duration_s: float, *, exit_code: Optional[int] = None,
          sig: Optional[int] = None, reason: str = "") -> Outcome:
    return Outcome(status=status, duration_s=max(0.0, float(duration_s)), exit_code=exit_code,
                   signal=sig, reason=reason, error_message=ev.error_message,
                   result_text=ev.result_text or "", summary_text=ev.summary_text,
                   reply_text=ev.reply_text, log_tail=ev.log_tail, files=ev.files,
                   usage=ev.usage, result_truncated=ev.result_truncated,
                   result_bytes=ev.result_bytes, notes=tuple(link_note(rel) for rel in ev.links) + ev.logs_cut)


def _no_result_reason(ev: _Evidence) -> str:
    if ev.result_text is None:
        linked = [rel for rel in ev.links if rel == RESULT_FILE or rel not in LEFT_FILES]  # or the task dir
        return link_note(linked[0]) if linked else "the agent wrote no RESULT.txt"
    return "the agent wrote an empty RESULT.txt"


def _classify_exit(ev: _Evidence, duration_s: float, exit_code: int) -> Outcome:
    if exit_code == EXIT_COMMAND_NOT_FOUND:
        return _make(ev, FAILED, duration_s, exit_code=exit_code,
                     reason=f"openclaw exited with code {exit_code}: a program it needs was not found (its log "
                            f"says which; under cron PATH is only {CRON_PATH}: run discord-orch check)")
    if exit_code != 0:
        return _make(ev, FAILED, duration_s, exit_code=exit_code,
                     reason=f"openclaw exited with code {exit_code}")
    if ev.error_message:
        return _make(ev, FAILED, duration_s, exit_code=0, reason="openclaw reported an error")
    if not (ev.result_text or "").strip():
        return _make(ev, FAILED, duration_s, exit_code=0, reason=_no_result_reason(ev))
    return _make(ev, OK, duration_s, exit_code=0)


def _classify_unknown_exit(ev: _Evidence, duration_s: float, status_hint: str,
                           reason: str) -> Outcome:
    """Exit status unknown (not our child): judge by openclaw's JSON and RESULT.txt."""
    if ev.error_message:
        return _make(ev, FAILED, duration_s, reason="openclaw reported an error")
    if ev.found_json:
        if (ev.result_text or "").strip():
            return _make(ev, OK, duration_s)
        return _make(ev, FAILED, duration_s, reason=_no_result_reason(ev))
    return _make(ev, status_hint, duration_s, reason=reason)


def outcome_from_workspace(ws: Workspace, *, status_hint: str, duration_s: float,
                           reason: str) -> Outcome:
    """Classify an agent that ended while nobody watched (recovery; exit code unknown).

    openclaw's JSON with an error → failed; JSON without error and a non-empty RESULT.txt
    → ok; JSON but no RESULT.txt → failed; no JSON at all (killed, crashed, never
    finished) → ``status_hint`` with ``reason`` (whatever RESULT.txt holds is kept).
    """
    if status_hint not in STATUSES:
        raise ValueError(f"status_hint must be one of {STATUSES}, got {status_hint!r}")
    return _classify_unknown_exit(_gather(ws), duration_s, status_hint, reason)


# ---------------------------------------------------------------- RunningAgent

def _start_capper(path: "os.PathLike[str]", cappers: List["subprocess.Popen[bytes]"]) -> int:
    """Start a logcap process writing ``path`` (created 0600, never through a link); returns the
    write end of its pipe, for the agent."""
    log_fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        read_fd, write_fd = os.pipe()
    except OSError:
        os.close(log_fd)
        raise
    try:
        cappers.append(subprocess.Popen(logcap.command(), stdin=read_fd, stdout=log_fd,
                                        stderr=subprocess.DEVNULL, env={}, cwd="/",
                                        start_new_session=True, close_fds=True))
    except OSError:
        os.close(write_fd)
        raise
    finally:
        os.close(read_fd)
        os.close(log_fd)
    return write_fd


def _new_cgroup(cfg: AgentConfig, agent_id: str) -> Optional[AgentCgroup]:
    place = containment(cfg.cgroup)
    if place.parent is None:
        return None
    try:
        return AgentCgroup.create(place.parent, agent_id)
    except OSError as exc:
        log.warning("agent=%s runs without a cgroup of its own: cannot make one in %s: %s",
                    agent_id, place.parent, exc.strerror or exc)
        return None


def _spawn(argv: List[str], cgroup: Optional[AgentCgroup], fence: Optional[Callable[[], None]] = None,
           **kw) -> Tuple["subprocess.Popen[bytes]", Optional[AgentCgroup]]:
    """Popen, the child entering ``cgroup`` (then its ``fence``) before it execs; without the cgroup
    when it cannot enter; never without the fence."""
    if cgroup is not None:
        join = cgroup.joiner()
        try:
            return subprocess.Popen(argv, preexec_fn=_chain(join, fence), **kw), cgroup
        except subprocess.SubprocessError as exc:  # the child could not enter its cgroup (it never ran)
            log.warning("an agent runs without a cgroup of its own: it could not enter %s: %s", cgroup.path, exc)
            cgroup.remove()
        finally:
            cgroup.close_joiner()
    return subprocess.Popen(argv, preexec_fn=fence, **kw), None


def _chain(first: Callable[[], None], then: Optional[Callable[[], None]]) -> Callable[[], None]:
    if then is None:
        return first

    def both() -> None:
        first()
        then()
    return both


def _fmt_s(seconds: float) -> str:
    return f"{seconds:g}" if seconds < 100 else f"{seconds:.0f}"


class RunningAgent:
    """One supervised agent run; see the module docstring. Not thread-safe."""

    def __init__(self, *, cfg: AgentConfig, ws: Workspace, task_id: str, pid: int, pgid: int,
                 proc_start_ticks: Optional[int], started_at: float,
                 popen: Optional["subprocess.Popen[bytes]"], cgroup: Optional[AgentCgroup] = None) -> None:
        self.cfg = cfg
        self.ws = ws
        self.task_id = task_id
        self.agent_id = ws.agent_id
        self.pid = pid
        self.pgid = pgid
        self.proc_start_ticks = proc_start_ticks
        self.started_at = started_at
        self.deadline = started_at + cfg.timeout_s
        self.adopted = popen is None
        self._popen = popen
        self.cgroup = cgroup                        # None: held by its process group and marker only
        self.term_sent_at: Optional[float] = None   # when SIGTERM went to the group
        self.kill_sent_at: Optional[float] = None   # when SIGKILL went to the group
        self.timed_out = False
        self.stop_reason: Optional[str] = None
        self.stopped_by: Optional[str] = None       # a person asked for the stop (outcome STOPPED)
        self.leader_exited_at: Optional[float] = None
        self.returncode: Optional[int] = None       # Popen style: -N = signal N
        self.finished_at: Optional[float] = None
        self.stragglers_left: Tuple[int, ...] = ()  # pids that would not die (rare: D state)
        # the log cappers (logcap.py) of a run we started; an adopted run's are not ours to wait for
        self.cappers: Tuple["subprocess.Popen[bytes]", ...] = ()
        self.signal_as_exit = False

    # -- construction --------------------------------------------------------------

    @classmethod
    def start(cls, cfg: AgentConfig, ws: Workspace, *, task_id: str, session_id: str,
              model: str, thinking: str, now: float) -> "RunningAgent":
        """Spawn ``openclaw agent`` in its own session (AgentError when it cannot start)."""
        argv, env = build_command(cfg, ws, session_id=session_id, model=model, thinking=thinking)
        fenced = sandbox.fenced(cfg, ws, argv, env)
        cappers: List["subprocess.Popen[bytes]"] = []
        pipes: List[int] = []
        cgroup = _new_cgroup(cfg, ws.agent_id)
        try:
            for path in (ws.stdout_file, ws.stderr_file):
                pipes.append(_start_capper(path, cappers))
            popen, cgroup = _spawn(fenced.argv, cgroup, fenced.preexec, cwd=os.fspath(ws.task_dir), env=fenced.env,
                                   stdin=subprocess.DEVNULL, stdout=pipes[0], stderr=pipes[1],
                                   start_new_session=True, close_fds=True)
        except OSError as exc:
            for capper in cappers:   # their pipes close below: they end at once
                capper.kill()
            if cgroup is not None:
                cgroup.remove()
            raise AgentError(argv[0], f"cannot start: {exc.strerror or exc}") from exc
        finally:
            fenced.close()
            for fd in pipes:
                os.close(fd)
        ticks = process_start_ticks(popen.pid)
        agent = cls(cfg=cfg, ws=ws, task_id=task_id, pid=popen.pid, pgid=popen.pid,
                    proc_start_ticks=ticks, started_at=now, popen=popen, cgroup=cgroup)
        agent.cappers = tuple(cappers)
        agent.signal_as_exit = fenced.argv[0] != argv[0]   # bwrap: an agent ended by signal N exits 128+N
        return agent

    @classmethod
    def adopt(cls, pid: int, pgid: int, proc_start_ticks: Optional[int], started_at: float,
              cfg: AgentConfig, ws: Workspace, task_id: str) -> Optional["RunningAgent"]:
        """Supervise an agent started by an earlier orchestrator process.

        Returns None unless ``pid`` is alive, has the recorded start ticks and carries
        ``DISCORD_ORCH_AGENT_ID=<ws.agent_id>`` in its environment.
        """
        if not isinstance(pid, int) or pid <= 1 or not isinstance(pgid, int) or pgid <= 1:
            return None
        if proc_start_ticks is None or process_start_ticks(pid) != proc_start_ticks:
            return None
        if not alive(pid):
            return None
        if agent_id_of(pid) != ws.agent_id:
            return None
        return cls(cfg=cfg, ws=ws, task_id=task_id, pid=pid, pgid=pgid,
                   proc_start_ticks=proc_start_ticks, started_at=started_at, popen=None,
                   cgroup=AgentCgroup.find(ws.agent_id))

    # -- supervision ---------------------------------------------------------------

    @property
    def proc_start(self) -> Optional[int]:
        """Alias of ``proc_start_ticks`` (what the state record stores)."""
        return self.proc_start_ticks

    @property
    def finished(self) -> bool:
        """True once poll() has returned True."""
        return self.finished_at is not None

    def note_exit(self, now: float) -> None:
        """Stamp the leader's end if it has ended (called on SIGCHLD): a run's duration is the agent's own,
        not the time the loop took to look. Only our own child: its end is a peek (WNOWAIT), no /proc read."""
        if self.leader_exited_at is None and self._popen is not None and self._leader_exited():
            self.leader_exited_at = now

    def _leader_exited(self) -> bool:
        """True once the leader has ended. Our own child is NOT reaped here (a zombie keeps
        its pid and pgid reserved, so killing the group stays safe until we reap)."""
        if self.leader_exited_at is not None:
            return True
        if self._popen is not None:
            if self._popen.returncode is not None:
                return True
            try:
                info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return True
            return info is not None and info.si_pid == self.pid
        # adopted: not our child; gone, recycled or a zombie all mean "ended"
        if process_start_ticks(self.pid) != self.proc_start_ticks:
            return True
        return not alive(self.pid)

    def _signal_group(self, sig: int) -> None:
        if self._popen is not None or alive(self.pid):
            # our child (alive or an unreaped zombie) or a verified live leader: the
            # group id cannot have been recycled
            killpg(self.pgid, sig)
        else:
            for pid in ProcessTable().group_members(self.pgid):
                kill(pid, sig)

    def _sweep(self, procs: ProcessTable) -> List[int]:
        """SIGKILL every remaining process of the agent; return those still alive."""
        victims = set(procs.group_members(self.pgid)) | set(procs.carrying(self.agent_id))
        victims.discard(os.getpid())
        if self._popen is not None:
            killpg(self.pgid, signal.SIGKILL)
        for pid in victims:
            if pid != self.pid:
                kill(pid, signal.SIGKILL)
        if self.cgroup is not None:
            victims.update(self.cgroup.kill())
        return [pid for pid in victims if pid != self.pid and alive(pid)]

    def _reap(self) -> None:
        if self._popen is not None and self.returncode is None:
            try:
                self.returncode = self._popen.wait(timeout=5)
            except subprocess.TimeoutExpired:  # pragma: no cover - cannot happen after waitid
                self.returncode = None

    def poll(self, now: float, procs: Optional[ProcessTable] = None) -> bool:
        """Advance supervision; True when the run is over (and all its processes are gone).

        ``procs``: a ProcessTable to share with the other agents polled in the same tick."""
        if self.finished:
            return True
        if not self._leader_exited():
            if self.term_sent_at is None and now >= self.deadline:
                self.timed_out = True
                self.term_sent_at = now
                self._signal_group(signal.SIGTERM)
            elif (self.term_sent_at is not None and self.kill_sent_at is None
                  and now >= self.term_sent_at + self.cfg.kill_grace_s):
                self.kill_sent_at = now
                self._signal_group(signal.SIGKILL)
            return False
        if self.leader_exited_at is None:
            self.leader_exited_at = now
        survivors = self._sweep(procs or ProcessTable())  # while our zombie leader still holds the pgid
        writing = [c for c in self.cappers if c.poll() is None]   # the logs' last bytes
        if (survivors or writing) and now - self.leader_exited_at < STRAGGLER_GIVE_UP_S:
            return False
        self.stragglers_left = tuple(survivors)
        if self.cgroup is not None and not survivors:
            self.cgroup.remove()
        self._reap()
        self.finished_at = now
        return True

    def stop(self, now: float, reason: str, *, by: Optional[str] = None) -> None:
        """Begin terminating for an orchestrator shutdown, or for ``by``, a person who asked (SIGTERM
        to the group now, SIGKILL after the grace, driven by poll()). The outcome is KILLED (STOPPED
        with ``by``), unless the agent had already ended by itself or had already been timed out."""
        if self.finished or self.term_sent_at is not None or self._leader_exited():
            return
        self.stop_reason = reason or "stopped"
        self.stopped_by = by
        self.term_sent_at = now
        self._signal_group(signal.SIGTERM)

    def wait(self, *, clock=time.time, interval: float = 0.05) -> Outcome:
        """Block, polling, until finished (for demos and tests); returns the outcome."""
        while not self.poll(clock()):
            time.sleep(interval)
        return self.outcome(clock())

    def remaining(self, now: float) -> float:
        """Seconds until the deadline (negative past it)."""
        return self.deadline - now

    # -- classification ------------------------------------------------------------

    def outcome(self, now: float) -> Outcome:
        """The classified outcome; only after poll() returned True."""
        if not self.finished:
            raise RuntimeError("outcome() before the agent finished; call poll() until it is True")
        end = self.leader_exited_at if self.leader_exited_at is not None else now
        duration = end - self.started_at
        ev = _gather(self.ws)
        rc = self.returncode
        if self.signal_as_exit and rc is not None and 128 < rc < 128 + 65:
            rc = 128 - rc
        exit_code = rc if rc is not None and rc >= 0 else None
        sig = -rc if rc is not None and rc < 0 else None
        if self.timed_out:
            return _make(ev, TIMED_OUT, duration, exit_code=exit_code, sig=sig,
                         reason=f"timed out after {_fmt_s(self.cfg.timeout_s)} s")
        if self.stopped_by is not None:
            return _make(ev, STOPPED, duration, exit_code=exit_code, sig=sig,
                         reason=self.stop_reason or "stopped")._replace(stopped_by=self.stopped_by)
        if self.stop_reason is not None:
            return _make(ev, KILLED, duration, exit_code=exit_code, sig=sig,
                         reason=f"stopped by the orchestrator: {self.stop_reason}")
        if sig is not None:
            return _make(ev, KILLED, duration, sig=sig,
                         reason=f"killed by {signal_name(sig) or f'signal {sig}'}")
        if exit_code is not None:
            return _classify_exit(ev, duration, exit_code)
        return _classify_unknown_exit(
            ev, duration, FAILED,
            "the agent ended without openclaw's JSON result (exit status unknown: adopted)")

    def __repr__(self) -> str:
        return (f"RunningAgent(agent_id={self.agent_id!r}, task_id={self.task_id!r}, "
                f"pid={self.pid}, adopted={self.adopted}, finished={self.finished})")
