"""Every agent in a sandbox (AGENT_SANDBOX=auto|bwrap|landlock|off): what it may see and touch.

An agent reads untrusted text, so it is treated as hostile. It sees its own agent dir
(OPENCLAW_STATE_DIR, with its task dir: its cwd, TMPDIR inside it) writable; the system
(/usr, /etc but its secrets, /bin, /lib*), openclaw's install tree and the interpreter
its ``#!`` names, the user's OpenClaw config and what it ``$include``s, and
SANDBOX_READ_PATHS read-only; SANDBOX_WRITE_PATHS writable; nothing else: not
discord-config.env (the token), .runtime/, other workspaces, archive/, the worker
profiles, the venv, $HOME. The network stays (the model provider).

- **bubblewrap**: the agent runs under ``bwrap`` in a root of its own built from that
  list (/tmp, /run and $HOME empty tmpfs), in its own pid namespace (the orchestrator
  and other agents are not there; everything in it dies with it), a new session, with
  no capabilities even for root. Our child is the outer ``bwrap``: it carries the
  marker, holds the process group and enters the cgroup, so adoption, timeouts, stop
  and the cgroup kill work as before. It dies of SIGTERM at once; what it held is then
  killed by marker and cgroup, as without a fence. It reports a signal that ended the
  agent as exit 128+N. (No --die-with-parent: an agent must outlive a crashed pass.)
- **Landlock** (syscall 444, where bubblewrap cannot run): the same list as rules,
  applied between fork and exec with no_new_privs; from ABI 6 signals and abstract
  unix sockets are scoped to the agent. It cannot hide the process list (/proc), and
  a path-named socket (/run/...) can still be connected to.

``auto`` takes bubblewrap when a probe (``bwrap ... true``) works, else Landlock, else
runs unfenced and says so; a named mechanism that does not work fails closed.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

if TYPE_CHECKING:
    from .openclaw import AgentConfig
    from .workspace import Workspace

from .errors import AgentError, ConfigError
from .openclaw import interpreter
from . import landlock

log = logging.getLogger("discord_orch")

MODES = ("auto", "bwrap", "landlock", "off")
SYSTEM_DIRS = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: under /etc, what even a root agent must not read (it owns them): hidden under both mechanisms
HIDDEN_ETC = ("shadow", "shadow-", "gshadow", "gshadow-", "ssh", "sudoers", "sudoers.d", "security")
DEV_FILES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty")
BWRAP_NAMES = ("bwrap",)
PROBE_TIMEOUT_S = 10.0
TMP_NAME = "tmp"                     # <agent dir>/tmp: the agent's TMPDIR
INCLUDE_DEPTH = 4                    # how deep the user's config $includes are followed
#: where openclaw writes whatever TMPDIR says: shared by every agent under Landlock (private under bwrap)
OPENCLAW_SHARED_TMP = ("/tmp/openclaw-state-locks-{uid}", "/tmp/openclaw")
LANDLOCK_CANNOT_HIDE = ("the process list (/proc: other processes' command lines, not their environment or "
                        "memory)", "path-named sockets (/run/...)", "openclaw's shared /tmp/openclaw-state-locks-<uid> "
                        "and /tmp/openclaw/ (every agent writes there)")


@dataclass(frozen=True)
class Fence:
    """What holds agents: ``kind`` bwrap, landlock or off; ``reason`` why off (or a warning)."""

    kind: str
    reason: str = ""
    bwrap: str = ""
    abi: int = 0

    def describe(self) -> str:
        """One line for the log and `discord-orch check`."""
        if self.kind == "bwrap":
            return (f"each agent runs under bubblewrap ({self.bwrap}): its own root (its dir writable, the system, "
                    f"openclaw and its OpenClaw config read-only; the home, the token, other workspaces not "
                    f"there), its own pid namespace and session; the network stays")
        if self.kind == "landlock":
            scoped = ("signals and abstract sockets scoped to it" if self.abi >= landlock.SCOPE_ABI
                      else "NOT its signals (Landlock ABI < 6: it can signal our processes)")
            return (f"each agent runs under Landlock ABI {self.abi}: its dir writable, the system, openclaw and "
                    f"its OpenClaw config read-only, nothing else; {scoped}; it cannot hide "
                    f"{' or '.join(LANDLOCK_CANNOT_HIDE)}; the network stays")
        return f"agents run UNFENCED ({self.reason}): an agent can read and write all this user can"

    @property
    def fenced(self) -> bool:
        return self.kind != "off"


@dataclass(frozen=True)
class View:
    """What one agent sees: paths read-only and writable (absolute), its cwd and TMPDIR."""

    read: Tuple[str, ...]
    write: Tuple[str, ...]
    links: Tuple[Tuple[str, str], ...]   # (link, its target) on the way to a program: made again under bwrap
    cwd: str
    tmpdir: str
    home: str


# ---------------------------------------------------------------- which fence

def _which_bwrap() -> Optional[str]:
    for name in BWRAP_NAMES:
        found = shutil.which(name) or shutil.which(name, path="/usr/bin:/bin:/usr/local/bin")
        if found:
            return found
    return None


def _probe_bwrap() -> Tuple[str, str]:
    """(bwrap's path, "") when ``bwrap ... true`` works here, else ("", why not)."""
    exe = _which_bwrap()
    if exe is None:
        return "", "bubblewrap (bwrap) is not installed"
    view = View(read=tuple(p for p in SYSTEM_DIRS if os.path.lexists(p)), write=(), links=(), cwd="/",
                tmpdir="/tmp", home="/")
    try:
        done = subprocess.run([exe, *bwrap_args(view), "--", "true"], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=PROBE_TIMEOUT_S,
                              env={"PATH": "/usr/bin:/bin"})
    except (OSError, subprocess.TimeoutExpired) as exc:
        return "", f"bwrap did not run: {exc}"
    if done.returncode != 0:
        said = done.stderr.decode("utf-8", "replace").strip().splitlines()
        return "", f"bwrap does not work here: {said[-1] if said else f'exit {done.returncode}'}"
    return exe, ""


def choose(mode: str) -> Fence:
    """The fence for ``mode``; ConfigError when a named mechanism does not work (fail closed)."""
    if mode not in MODES:
        raise ConfigError("AGENT_SANDBOX", f"must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "off":
        return Fence("off", "AGENT_SANDBOX=off")
    exe, why_not = _probe_bwrap() if mode in ("auto", "bwrap") else ("", "")
    if exe:
        return Fence("bwrap", bwrap=exe)
    if mode == "bwrap":
        raise ConfigError("AGENT_SANDBOX", f"bwrap: {why_not}; no agent runs unfenced (install bubblewrap, "
                                           f"or set AGENT_SANDBOX=landlock or auto)")
    abi, ll_why = landlock.abi_version()
    if abi:
        return Fence("landlock", abi=abi)
    if mode == "landlock":
        raise ConfigError("AGENT_SANDBOX", f"landlock: {ll_why}; no agent runs unfenced "
                                           f"(set AGENT_SANDBOX=bwrap or auto)")
    return Fence("off", f"no bubblewrap ({why_not}) and no Landlock ({ll_why})")


_decided: Dict[str, Fence] = {}


def fence(mode: str) -> Fence:
    """What holds this process's agents: decided once (probed once per pass), logged once."""
    if mode not in _decided:
        _decided[mode] = choose(mode)
        found = _decided[mode]
        if found.fenced:
            log.info("sandbox: %s", found.describe())
        else:
            log.warning("sandbox: %s; see README, Security", found.describe())
    return _decided[mode]


# ---------------------------------------------------------------- what the agent sees

def _covers(path: str, guarded: Iterable[str]) -> bool:
    """True when ``path`` is one of ``guarded`` or holds one of them (or is /)."""
    path = path.rstrip("/") or "/"
    return path == "/" or any(g == path or g.startswith(path + "/") for g in guarded)


def _prefix(path: str) -> str:
    """The install tree a program lives in: above its first node_modules, else above its bin/, else its dir."""
    parts = path.split("/")
    if "node_modules" in parts:
        return "/".join(parts[:parts.index("node_modules")]) or "/"
    directory = os.path.dirname(path)
    return os.path.dirname(directory) if os.path.basename(directory) == "bin" else directory


def _link_chain(path: str) -> Tuple[List[Tuple[str, str]], str]:
    """The links from ``path`` to the file it names, and that file."""
    links: List[Tuple[str, str]] = []
    for _ in range(40):
        if not os.path.islink(path):
            break
        target = os.readlink(path)
        links.append((path, target))
        path = os.path.normpath(os.path.join(os.path.dirname(path), target))
    return links, os.path.realpath(path)


def _program_trees(programs: Iterable[Optional[str]], guarded: Sequence[str]):
    """Read paths and links for the programs: each one's install tree, narrowed to the file itself
    where the tree would hold the home (a stand-in in the project's dir, a venv's python)."""
    read: List[str] = []
    links: List[Tuple[str, str]] = []
    for exe in programs:
        if not exe:
            continue
        chain, real = _link_chain(os.path.abspath(exe))
        links.extend(chain)
        venv = os.path.join(_prefix(os.path.abspath(exe)), "pyvenv.cfg")
        if chain and os.path.isfile(venv):   # a venv's python reads it first (Landlock shows that it is there)
            read.append(venv)
        tree = _prefix(real)
        read.append(real if _covers(tree, guarded) else tree)
    return read, links


def config_files(config: Path) -> List[str]:
    """The user's OpenClaw config and the files it ``$include``s (JSON or JSON5, followed a few levels)."""
    import json
    import re

    found: List[str] = []
    todo = [(os.path.abspath(os.path.expanduser(os.fspath(config))), 0)]
    while todo:
        path, depth = todo.pop()
        if path in found or not os.path.isfile(path):
            continue
        found.append(path)
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                text = fh.read(1 << 20)
        except OSError:
            continue
        names = re.findall(r'"\$include"\s*:\s*("(?:[^"\\]|\\.)*"|\[[^\]]*\])', text)
        for raw in names if depth < INCLUDE_DEPTH else ():
            try:
                value = json.loads(raw)
            except ValueError:
                continue
            for name in value if isinstance(value, list) else [value]:
                if isinstance(name, str) and name:
                    todo.append((os.path.join(os.path.dirname(path), os.path.expanduser(name)), depth + 1))
    return found


def view_for(agent_dir: Path, task_dir: Path, program: str, env: Mapping[str, str], *,
             user_config: Path, extra_read: Sequence[str] = (), extra_write: Sequence[str] = ()) -> View:
    """What an agent whose argv starts with ``program`` sees (see the module docstring)."""
    home = os.path.abspath(os.path.expanduser("~"))
    project = os.path.dirname(os.path.dirname(os.path.abspath(agent_dir)))   # <home>/workers/<agent id>
    guarded = (home, project, os.path.abspath(agent_dir))
    shebang = interpreter(program, env.get("PATH"))
    trees, links = _program_trees([program, shebang], guarded)
    system = [p for p in SYSTEM_DIRS if os.path.lexists(p)]
    read = [*system, *trees, *config_files(user_config), *extra_read]
    write = [os.fspath(agent_dir), *extra_write]
    return View(read=tuple(dict.fromkeys(os.path.abspath(p) for p in read)),
                write=tuple(dict.fromkeys(os.path.abspath(p) for p in write)), links=tuple(links),
                cwd=os.fspath(task_dir), tmpdir=os.path.join(os.fspath(agent_dir), TMP_NAME), home=home)


# ---------------------------------------------------------------- bubblewrap

def _hidden_etc() -> List[str]:
    return [os.path.join("/etc", name) for name in HIDDEN_ETC if os.path.lexists(os.path.join("/etc", name))]


def bwrap_args(view: View) -> List[str]:
    """bwrap's options for ``view`` (without the program and the ``--`` before it). No --die-with-parent:
    an agent must outlive a pass that crashed, for the next pass to adopt it; what it leaves is found by
    its marker and its cgroup, as without a fence."""
    args = ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--new-session",
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/run", "--tmpfs", "/home"]
    if os.geteuid() == 0:
        args += ["--cap-drop", "ALL"]   # root keeps every capability under bwrap unless told
    if view.home not in ("/", "/home"):
        args += ["--tmpfs", view.home]
    for path in view.read:
        if os.path.islink(path) and path in SYSTEM_DIRS:   # merged /usr: /bin -> usr/bin
            args += ["--symlink", os.readlink(path), path]
        else:
            args += ["--ro-bind-try", path, path]
    for path in _hidden_etc():
        args += ["--tmpfs", path] if os.path.isdir(path) else ["--ro-bind", "/dev/null", path]
    for path in view.write:
        args += ["--bind-try", path, path]
    for link, target in view.links:
        if not any(link.startswith(r.rstrip("/") + "/") for r in view.read):   # else it is there already
            args += ["--symlink", target, link]
    return args + ["--chdir", view.cwd, "--setenv", "TMPDIR", view.tmpdir]


def _shared_tmp() -> List[str]:
    """openclaw's fixed dirs under /tmp, made ours (0700) if missing; one that is not our own dir is left out."""
    import stat

    found = []
    for pattern in OPENCLAW_SHARED_TMP:
        path = pattern.format(uid=os.geteuid())
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError:
            continue
        info = os.lstat(path)
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid():
            found.append(path)
    return found


# ---------------------------------------------------------------- putting it on a command

@dataclass
class Launch:
    """The argv, environment and preexec_fn an agent starts with under a fence; :meth:`close` after the spawn."""

    argv: List[str]
    env: Dict[str, str]
    preexec: Optional[Callable[[], None]] = None
    ruleset: Optional["landlock.Ruleset"] = None

    def close(self) -> None:
        if self.ruleset is not None:
            self.ruleset.close()
            self.ruleset = None


def launch(found: Fence, view: View, argv: List[str], env: Dict[str, str]) -> Launch:
    """``argv`` and ``env`` put under ``found``'s fence (unchanged when it is off)."""
    if not found.fenced:
        return Launch(list(argv), dict(env))
    agent_home = os.path.join(os.path.dirname(view.tmpdir), "home")   # $HOME is not there: one of its own
    for path in (view.tmpdir, agent_home):
        os.makedirs(path, mode=0o700, exist_ok=True)
    env = {**env, "TMPDIR": view.tmpdir, "HOME": agent_home}
    if found.kind == "bwrap":
        return Launch([found.bwrap, *bwrap_args(view), "--", *argv], env)
    ruleset = landlock.Ruleset.build(found.abi, read=view.read, write=(*view.write, *_shared_tmp()), devices=DEV_FILES,
                                     hidden=_hidden_etc())
    return Launch(list(argv), env, preexec=ruleset.enforcer(), ruleset=ruleset)


def fenced(cfg: "AgentConfig", ws: "Workspace", argv: List[str], env: Dict[str, str]) -> Launch:
    """An agent's argv and env under the fence ``cfg.sandbox`` chose; AgentError when it cannot be."""
    try:
        found = fence(cfg.sandbox)
        view = view_for(ws.agent_dir, ws.task_dir, argv[0], env, user_config=cfg.user_openclaw_config,
                        extra_read=cfg.sandbox_read, extra_write=cfg.sandbox_write)
        return launch(found, view, argv, env)
    except (ConfigError, OSError) as exc:
        raise AgentError(argv[0], f"no sandbox for it: {exc}") from exc
