"""Landlock (Linux >= 5.13) through ctypes: no dependency, no compiler.

A ruleset is built in the parent (an fd with one rule per allowed path, opened O_PATH);
the child, between fork and exec, sets no_new_privs, drops every capability from its
bounding set when it is root (so the exec gives it none) and restricts itself: from
then on it and everything it starts may touch only what the rules allow. The kernel's
ABI version decides which rights exist (REFER from 2, TRUNCATE from 3, IOCTL_DEV
from 5) and whether signals and abstract unix sockets can be scoped to the agent
(ABI 6): every right the ABI knows is handled, so what no rule grants is denied.
A process inside a Landlock domain cannot ptrace (so not read /proc/<pid>/environ,
mem, cwd or root of) a process outside it, whatever its user.
"""

from __future__ import annotations

import ctypes
import errno
import os
from typing import Callable, Iterable, List, Sequence, Tuple

SYS_CREATE_RULESET = 444      # the same number on every architecture (the unified syscall table)
SYS_ADD_RULE = 445
SYS_RESTRICT_SELF = 446
CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
CAP_LAST_MAX = 63             # bounding-set drops past the kernel's last capability fail with EINVAL: ignored
SCOPE_ABI = 6

EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REMOVE_DIR, REMOVE_FILE, MAKE_CHAR, MAKE_DIR = 1 << 4, 1 << 5, 1 << 6, 1 << 7
MAKE_REG, MAKE_SOCK, MAKE_FIFO, MAKE_BLOCK = 1 << 8, 1 << 9, 1 << 10, 1 << 11
MAKE_SYM, REFER, TRUNCATE, IOCTL_DEV = 1 << 12, 1 << 13, 1 << 14, 1 << 15
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1

FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV   # the only ones a rule on a file may hold
READ = EXECUTE | READ_FILE | READ_DIR
WRITE = (READ | WRITE_FILE | REMOVE_DIR | REMOVE_FILE | MAKE_DIR | MAKE_REG | MAKE_SOCK | MAKE_FIFO | MAKE_SYM
         | REFER | TRUNCATE)                     # no device nodes
DEVICE = READ_FILE | WRITE_FILE | TRUNCATE | IOCTL_DEV
READ_ONLY_SYSTEM = ("/proc", "/sys")             # read, for the agent's own /proc/self; the kernel guards the rest


def _handled(abi: int) -> int:
    rights = (1 << 13) - 1
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    if abi >= 5:
        rights |= IOCTL_DEV
    return rights


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def undumpable() -> None:
    """prctl(PR_SET_DUMPABLE, 0): no process of our user can read our environ or memory any more."""
    try:
        _libc().prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: nothing to do
        pass


def abi_version() -> Tuple[int, str]:
    """(the kernel's Landlock ABI version, "") or (0, why there is none)."""
    try:
        found = _libc().syscall(SYS_CREATE_RULESET, None, ctypes.c_size_t(0),
                                ctypes.c_uint32(CREATE_RULESET_VERSION))
    except (OSError, AttributeError) as exc:
        return 0, f"no Landlock: {exc}"
    if found > 0:
        return int(found), ""
    err = ctypes.get_errno()
    if err == errno.ENOSYS:
        return 0, "this kernel has no Landlock (Linux >= 5.13 with CONFIG_SECURITY_LANDLOCK)"
    if err == errno.EOPNOTSUPP:
        return 0, "Landlock is not enabled at boot (lsm=...,landlock)"
    return 0, f"Landlock is not usable: {os.strerror(err)}"


def _attr_size(abi: int) -> int:
    return 8 if abi < 4 else 16 if abi < SCOPE_ABI else 24


class Ruleset:
    """One agent's Landlock ruleset (an fd), ready for :meth:`enforcer`."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    @classmethod
    def build(cls, abi: int, *, read: Sequence[str], write: Sequence[str], devices: Iterable[str],
              hidden: Sequence[str] = ()) -> "Ruleset":
        """Rules for ``read`` (read and execute) and ``write`` (all but device nodes) paths, the
        ``devices`` read-write; /etc opened entry by entry so that ``hidden`` gets no rule."""
        libc = _libc()
        handled = _handled(abi)
        attr = _RulesetAttr(handled, 0, SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= SCOPE_ABI else 0)
        fd = libc.syscall(SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(_attr_size(abi)),
                          ctypes.c_uint32(0))
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"landlock_create_ruleset: {os.strerror(err)}")
        ruleset = cls(int(fd))
        try:
            for path, rights in _rules(read, write, devices, hidden):
                ruleset._allow(libc, path, rights & handled)
        except OSError:
            ruleset.close()
            raise
        return ruleset

    def _allow(self, libc, path: str, rights: int) -> None:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return   # not there: nothing to allow
        try:
            if not os.path.isdir(path):
                rights &= FILE_RIGHTS
            rule = _PathBeneath(rights, fd)
            if libc.syscall(SYS_ADD_RULE, self.fd, RULE_PATH_BENEATH, ctypes.byref(rule), ctypes.c_uint32(0)) < 0:
                err = ctypes.get_errno()
                raise OSError(err, f"landlock_add_rule {path}: {os.strerror(err)}")
        finally:
            os.close(fd)

    def enforcer(self) -> Callable[[], None]:
        """A preexec_fn: no_new_privs, no capabilities for root, then restrict_self (in the child)."""
        libc, fd, root = _libc(), self.fd, os.geteuid() == 0

        def enforce() -> None:
            if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
            if root:
                for cap in range(CAP_LAST_MAX + 1):
                    libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
            if libc.syscall(SYS_RESTRICT_SELF, fd, ctypes.c_uint32(0)) != 0:
                raise OSError(ctypes.get_errno(), "landlock_restrict_self")
        return enforce

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


def _rules(read: Sequence[str], write: Sequence[str], devices: Iterable[str],
           hidden: Sequence[str]) -> List[Tuple[str, int]]:
    rules: List[Tuple[str, int]] = []
    for path in [*read, *READ_ONLY_SYSTEM]:
        if path.rstrip("/") == "/etc":
            rules += [(os.path.join("/etc", name), READ) for name in _listdir("/etc")
                      if os.path.join("/etc", name) not in hidden]
        else:
            rules.append((path, READ))
    rules += [(path, WRITE) for path in write]
    rules += [(path, DEVICE) for path in devices]
    return rules


def _listdir(path: str) -> List[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []
