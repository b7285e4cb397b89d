"""Kernel limits for a sandbox run as a whole: one cgroup per fork server (standard library only).

Why: rlimits are per process (RLIMIT_AS times RLIMIT_NPROC processes can still take many GiB) and
give no CPU share. A cgroup holding the whole tree (bwrap launcher, server, program, its children)
lets the kernel bound the total. A process joins by having its pid written into every file of
`RunGroup.procs_files` (e.g. by a shell, before ``exec bwrap``); its children inherit the groups.

What each version enforces:

- cgroup v2 (preferred: memory, pids and cpu in our cgroup's cgroup.controllers and delegable):
  memory.max (all memory charged to the group: anonymous, page cache, tmpfs pages, and kernel
  memory such as inodes and dentries), memory.swap.max=0, pids.max (processes and threads),
  cpu.max (quota per 100 ms period); cgroup.kill. The "no internal processes" rule forbids
  enabling controllers in a group that holds processes, so run groups live under a process-free
  parent ``<our cgroup>/antisd-<pid>/``; if our own cgroup holds processes and has not enabled the
  controllers already (only the root is exempt), v2 is reported unusable rather than moving us.
- cgroup v1 (one hierarchy per controller): memory.limit_in_bytes then memory.memsw.limit_in_bytes
  (so swap is no way out), pids.max, cpu.cfs_period_us + cpu.cfs_quota_us. A group directly under
  our cgroup of each hierarchy, plus freezer and cpuacct when mounted, plus (hybrid hosts) a
  controller-less group in the unified hierarchy, used only for its cgroup.kill and cpu.stat.
- neither (no cgroupfs, read-only, not delegated to our user): `RunGroup.create` returns None and
  `detect().notes` says what is NOT enforced; runs keep only their rlimits and PID namespace.

Zombies leave cgroup.procs at exit but stay counted in pids.current until their parent reaps them.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import re
import signal
import threading
import time
from dataclasses import dataclass, field

LIMITS = ("memory", "pids", "cpu")
_LABEL = {"memory": "total memory", "pids": "process count", "cpu": "CPU share"}
_PERIOD_US = 100_000
_LIMIT_FILES = {  # (limit, file, required) in write order: memsw/swap only after the memory limit
    "v1": [("memory", "memory.limit_in_bytes", True), ("memory", "memory.memsw.limit_in_bytes", False),
           ("pids", "pids.max", True), ("cpu", "cpu.cfs_period_us", True), ("cpu", "cpu.cfs_quota_us", True)],
    "v2": [("memory", "memory.max", True), ("memory", "memory.swap.max", False), ("pids", "pids.max", True),
           ("cpu", "cpu.max", True)],
}
_counter = itertools.count()
_v2_lock = threading.Lock()  # creating in the shared antisd-<pid> parent vs. removing it
# Seams for a fake cgroupfs in tests: the kernel adds the control files on mkdir, and rmdir
# removes a group with its control files inside.
_fs_mkdir = os.mkdir
_fs_rmdir = os.rmdir


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii") as f:
            return f.read()
    except (OSError, ValueError):  # absent, unreadable, not text: the callers treat it as unknown
        return ""


def _write(path: str, value: object) -> str | None:
    """Write to an existing control file (never create one); None, or why it failed."""
    try:
        fd = os.open(path, os.O_WRONLY)  # no O_CREAT; write-only, as cgroup.kill is mode 0200
        try:
            os.write(fd, str(value).encode())
        finally:
            os.close(fd)
    except OSError as e:
        return f"{os.path.basename(path)}: {e.strerror or e}"
    return None


def _usable(d: str) -> bool:
    return os.path.isfile(os.path.join(d, "cgroup.procs")) and os.access(d, os.W_OK)


@dataclass(frozen=True)
class CgroupSupport:
    """Where this process can create groups and what they enforce."""

    version: str | None  # "v2", "v1", or None (nothing usable)
    bases: dict[str, str]  # hierarchy (memory, pids, cpu, freezer, cpuacct, unified) -> our cgroup dir
    enforced: frozenset[str]  # subset of LIMITS
    notes: tuple[str, ...]  # human-readable: what is NOT enforced for a run as a whole, and why


def detect(root: str = "/sys/fs/cgroup", proc_self_cgroup: str = "/proc/self/cgroup") -> CgroupSupport:
    """v2 when it offers at least what v1 does, else v1 per controller. Reads only, changes nothing."""
    own: dict[str, tuple[str, str]] = {}  # controller ("" for v2) -> (hierarchy name, our path)
    for _, names, path in (ln.split(":", 2) for ln in _read(proc_self_cgroup).splitlines() if ln.count(":") >= 2):
        for c in names.split(",") if names else [""]:
            own[c] = (names, path.strip().lstrip("/"))
    v2 = next((os.path.normpath(os.path.join(m, own[""][1])) for m in (root, os.path.join(root, "unified"))
               if "" in own and os.path.isfile(os.path.join(m, "cgroup.controllers"))), None)
    v2 = v2 if v2 and _usable(v2) else None
    v2_ok = _v2_delegable(v2) if v2 else set()
    v1 = {}
    for c in (*LIMITS, "freezer", "cpuacct"):
        dirs = [os.path.normpath(os.path.join(root, m, own[c][1])) for m in (own[c][0], c)] if c in own else []
        if d := next((d for d in dirs if _usable(d)), None):  # mounted as "cpu,cpuacct", or as "cpu"
            v1[c] = d
    v1_ok = {c for c in LIMITS if c in v1}
    if v2_ok and v2_ok >= v1_ok:
        version, bases, enforced = "v2", {"unified": v2}, v2_ok
    elif v1_ok:
        version, bases, enforced = "v1", v1, v1_ok
        if v2 and not _read(os.path.join(v2, "cgroup.subtree_control")).split():
            bases["unified"] = v2  # no controllers there: joining a child of ours is always allowed
    else:
        version, bases, enforced = None, {}, set()
    missing = [_LABEL[c] for c in LIMITS if c not in enforced]
    notes = [f"cgroups {version or 'not writable here'}"] if missing else []
    if missing and v2 and not v2_ok and _read(os.path.join(v2, "cgroup.controllers")).split():
        notes.append("cgroup v2: our cgroup holds processes and has not enabled memory/pids/cpu for its"
                     " children (that needs a delegated, process-free parent)")
    if missing:
        notes.append("NOT enforced for a run as a whole: " + ", ".join(missing))
    return CgroupSupport(version, bases, frozenset(enforced), tuple(notes))


def _v2_delegable(own: str) -> set[str]:
    """Controllers a child of `own` can get: available, and enabled or enableable in `own`."""
    available = set(_read(os.path.join(own, "cgroup.controllers")).split())
    enabled = set(_read(os.path.join(own, "cgroup.subtree_control")).split())
    is_root = not os.path.exists(os.path.join(own, "cgroup.type"))  # the root is exempt from the rule
    empty = not _read(os.path.join(own, "cgroup.procs")).strip()
    can_enable = (is_root or empty) and os.access(os.path.join(own, "cgroup.subtree_control"), os.W_OK)
    return {c for c in LIMITS if c in available and (c in enabled or can_enable)}


@dataclass
class RunGroup:
    """One cgroup (v2) or one group per v1 hierarchy, holding a whole process tree."""

    version: str
    dirs: dict[str, str] = field(default_factory=dict)  # hierarchy -> this group's directory
    enforced: frozenset[str] = frozenset()
    notes: list[str] = field(default_factory=list)  # what is not enforced, and why
    _parent: str | None = None  # v2: the process-free antisd-<pid> parent
    _removed: bool = False

    @property
    def procs_files(self) -> list[str]:
        return [os.path.join(d, "cgroup.procs") for d in dict.fromkeys(self.dirs.values())]

    @classmethod
    def create(cls, name: str, *, memory_bytes: int, max_pids: int, cpu_quota_cpus: float | None = 1.0,
               support: CgroupSupport | None = None) -> RunGroup | None:
        """A new group, named `<name>-<pid>-<n>`, with its limits set; None if nothing is enforced."""
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
            raise ValueError(f"cgroup name {name!r}: use letters, digits, '_', '.', '-'")
        support = support or detect()
        if not support.enforced:
            return None
        group = cls(support.version, notes=list(support.notes))
        quota = None if cpu_quota_cpus is None else max(1000, int(cpu_quota_cpus * _PERIOD_US))
        values = {"memory.limit_in_bytes": memory_bytes, "memory.memsw.limit_in_bytes": memory_bytes,
                  "memory.max": memory_bytes, "memory.swap.max": 0, "pids.max": max_pids,
                  "cpu.cfs_period_us": _PERIOD_US, "cpu.cfs_quota_us": quota, "cpu.max": f"{quota} {_PERIOD_US}"}
        try:
            group._make_dirs(support, f"{name}-{os.getpid()}-{next(_counter)}")
            group._apply_limits(support.enforced - ({"cpu"} if quota is None else set()), values)
        except BaseException:
            group.remove()
            raise
        if not group.enforced:
            group.remove()
            return None
        return group

    def _make_dirs(self, support: CgroupSupport, leaf: str) -> None:
        """Create the group in each hierarchy; v2: under a process-free parent with controllers on.

        v2 enabling failures are not raised: they show up as absent limit files ("not enforced")."""
        with _v2_lock:
            for hier, base in support.bases.items():
                same = [h for h, b in support.bases.items() if b == base and h in self.dirs]
                if same:  # co-mounted controllers (e.g. "cpu,cpuacct") share one directory
                    self.dirs[hier] = self.dirs[same[0]]
                    continue
                try:
                    if self.version == "v2":
                        enable = " ".join(f"+{c}" for c in sorted(support.enforced))
                        _write(os.path.join(base, "cgroup.subtree_control"), enable)  # root; else on already
                        base = self._parent = os.path.join(base, f"antisd-{os.getpid()}")
                        if not os.path.isdir(base):
                            _fs_mkdir(base)
                        _write(os.path.join(base, "cgroup.subtree_control"), enable)
                    _fs_mkdir(os.path.join(base, leaf))
                except FileExistsError:
                    raise RuntimeError(f"cgroup {base}/{leaf} already exists: names must be unique") from None
                except OSError as e:
                    self.notes.append(f"cannot create a cgroup in {base}: {e.strerror or e}")
                    continue
                d = self.dirs[hier] = os.path.join(base, leaf)
                if not os.path.isfile(os.path.join(d, "cgroup.procs")):
                    raise RuntimeError(f"{d} has no cgroup.procs after mkdir: {base} is not a cgroupfs")

    def _apply_limits(self, wanted: frozenset[str], values: dict[str, object]) -> None:
        """Write the limit files; a limit counts as enforced only if all its required writes worked."""
        failed = {limit for limit in wanted if not self.dirs.get("unified" if self.version == "v2" else limit)}
        for limit, fname, required in _LIMIT_FILES[self.version]:
            if limit in wanted and limit not in failed:
                error = _write(os.path.join(self.dirs.get("unified" if self.version == "v2" else limit), fname),
                               values[fname])
                if error and required:
                    failed.add(limit)
                    self.notes.append(f"NOT enforced: {_LABEL[limit]} ({error})")
                elif error:
                    self.notes.append(f"swap use not capped ({error})")
        self.enforced = frozenset(wanted - failed)

    def _pids(self) -> set[int]:
        return {int(p) for f in self.procs_files for p in _read(f).split() if p.isdigit()}

    def _signal(self, pids: set[int]) -> None:
        """SIGKILL members only: pin each pid with a pidfd, then re-check membership before killing."""
        fds: dict[int, int | None] = {}
        for pid in pids:
            try:
                fds[pid] = os.pidfd_open(pid)
            except ProcessLookupError:
                continue
            except (OSError, AttributeError):
                fds[pid] = None  # no pidfd here: plain kill, with the (tiny) pid-reuse window
        members = self._pids()
        for pid, fd in fds.items():
            with contextlib.suppress(ProcessLookupError):
                if pid in members:
                    signal.pidfd_send_signal(fd, signal.SIGKILL) if fd is not None else os.kill(pid, signal.SIGKILL)
            if fd is not None:
                os.close(fd)

    def _wait_empty(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while (busy := bool(self._pids())) and time.monotonic() < deadline:
            time.sleep(0.005)
        return not busy

    def _freeze(self, frozen: bool) -> bool:
        """v1 freezer, else v2 cgroup.freeze; True once the state is reached (no more forks then)."""
        v1_value = "FROZEN" if frozen else "THAWED"
        for hier, control, value, state, want in (
                ("freezer", "freezer.state", v1_value, "freezer.state", v1_value),
                ("unified", "cgroup.freeze", int(frozen), "cgroup.events", f"frozen {int(frozen)}")):
            d = self.dirs.get(hier)
            if d and _write(os.path.join(d, control), value) is None:
                for _ in range(200):  # at most ~1 s: a task in uninterruptible sleep delays freezing
                    if want in _read(os.path.join(d, state)).splitlines():
                        return True
                    time.sleep(0.005)
                return False
        return False

    def kill_all(self, timeout_s: float = 5.0) -> bool:
        """SIGKILL every process in the group, forks racing the kill included; True once empty.

        cgroup.kill is atomic. Else freeze (no forks), kill, thaw (frozen v1 tasks die only once
        thawed). Without any, kill rounds, each taking what the last missed (bounded)."""
        if not self._pids():
            return True
        kill = next((p for d in self.dirs.values() if os.path.exists(p := os.path.join(d, "cgroup.kill"))), None)
        if kill and _write(kill, 1) is None and self._wait_empty(min(timeout_s, 1.0)):
            return True
        for _ in range(100):
            self._freeze(True)
            try:
                self._signal(self._pids())
            finally:
                self._freeze(False)  # also after a freeze that did not complete in time
            if self._wait_empty(0.05):
                return True
        return self._wait_empty(timeout_s)

    def remove(self) -> None:
        """kill_all, then rmdir every group (idempotent; EBUSY retried briefly)."""
        if self._removed:
            return
        emptied = self.kill_all()
        left = [d for d in dict.fromkeys(self.dirs.values()) if not _rmdir_retry(d)]
        if self._parent:
            with _v2_lock, contextlib.suppress(OSError):
                _fs_rmdir(self._parent)  # fails (ignored) while other run groups live in it
        if left:
            raise RuntimeError(f"cannot remove cgroups {left} (emptied: {emptied}; pids {sorted(self._pids())})")
        self._removed = True

    def stats(self) -> dict[str, int]:
        """What the group's files report: current and peak use, OOM and fork-failure counts, CPU time."""
        out: dict[str, int] = {}
        for name, hier, fname, key in _STATS:
            for d in (self.dirs.get(hier), self.dirs.get("unified")):
                text = _read(os.path.join(d, fname)) if d and name not in out else ""
                pairs = dict(ln.split(None, 1) for ln in text.splitlines() if " " in ln)
                value = text.strip() if key is None else pairs.get(key, "").strip()
                if value.isdigit():
                    out[name] = int(value) // (1000 if fname == "cpuacct.usage" else 1)
        return out

    def __enter__(self) -> RunGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


_STATS = [  # (stats() key, hierarchy, file, key inside the file or None for the whole file); v1 and v2 names
    *[("memory_current_bytes", "memory", f, None) for f in ("memory.usage_in_bytes", "memory.current")],
    *[("memory_peak_bytes", "memory", f, None) for f in ("memory.max_usage_in_bytes", "memory.peak")],
    ("memory_failcnt", "memory", "memory.failcnt", None), ("oom", "memory", "memory.events", "oom"),
    *[("oom_kill", "memory", f, "oom_kill") for f in ("memory.oom_control", "memory.events")],
    ("pids_current", "pids", "pids.current", None), ("pids_peak", "pids", "pids.peak", None),
    ("pids_max_events", "pids", "pids.events", "max"), ("cpu_nr_throttled", "cpu", "cpu.stat", "nr_throttled"),
    ("cpu_usage_us", "cpu", "cpu.stat", "usage_usec"), ("cpu_usage_us", "cpuacct", "cpuacct.usage", None),
]


def _rmdir_retry(d: str, tries: int = 50) -> bool:
    """rmdir, retrying EBUSY (a group can stay busy briefly after its last process exits)."""
    for _ in range(tries):
        try:
            _fs_rmdir(d)
        except FileNotFoundError:
            pass
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise
            time.sleep(0.02)
            continue
        return True
    return False
