"""antisd.rewards.code.cgroup: a fake cgroupfs (v1 and v2 layouts) for the logic, the real one for the limits."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from antisd.rewards.code import cgroup

# ---------------------------------------------------------------------------------------------
# Fake cgroupfs. The kernel creates control files on mkdir and lets rmdir remove a directory
# holding them; the fake does the same through the module's two seams (_fs_mkdir, _fs_rmdir).

V1_FILES = {
    "memory": ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.max_usage_in_bytes",
               "memory.oom_control"],
    "pids": ["pids.max", "pids.current", "pids.events"],
    "cpu": ["cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.stat"],
    "freezer": ["freezer.state"],
}
V2_FILES = ["cgroup.controllers", "cgroup.subtree_control", "cgroup.type", "cgroup.kill", "memory.max",
            "memory.swap.max", "memory.peak", "pids.max", "cpu.max"]


class FakeFs:
    def __init__(self, tmp_path: Path, lines: list[str], v1_files=V1_FILES, v2_files=V2_FILES):
        self.root = tmp_path / "cg"
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.proc = tmp_path / "proc_self_cgroup"
        self.proc.write_text("".join(line + "\n" for line in lines))
        self.v1_files, self.v2_files = v1_files, v2_files

    def own(self, rel: str, *files: str, **contents: str) -> Path:
        """A directory of an existing cgroup (ours, or a hierarchy root) with its files."""
        d = self.root / rel
        d.mkdir(parents=True, exist_ok=True)
        for name in ("cgroup.procs", *files):
            (d / name).write_text(contents.get(name.replace(".", "_"), ""))
        return d

    def mkdir(self, path: str) -> None:
        os.mkdir(path)
        top = Path(path).relative_to(self.root).parts[0]
        v2 = (self.root / "cgroup.controllers").exists() or top == "unified"
        files = self.v2_files if v2 else [f for c in top.split(",") for f in self.v1_files.get(c, [])]
        for name in ["cgroup.procs", *files]:
            Path(path, name).write_text("")

    @staticmethod
    def rmdir(path: str) -> None:
        if any(p.is_dir() for p in Path(path).iterdir()):
            raise OSError(16, "Device or resource busy", path)
        shutil.rmtree(path)

    def detect(self) -> cgroup.CgroupSupport:
        return cgroup.detect(str(self.root), str(self.proc))


V1_LINES = ["8:pids:/", "4:memory:/job/a", "1:cpu,cpuacct:/", "6:freezer:/", "0::/"]


@pytest.fixture
def fake_v1(tmp_path, monkeypatch):
    fs = FakeFs(tmp_path, V1_LINES)
    fs.own("memory/job/a", "memory.limit_in_bytes", cgroup_procs="1\n")
    fs.own("pids")
    fs.own("cpu,cpuacct", "cpu.cfs_quota_us")
    fs.own("freezer")
    monkeypatch.setattr(cgroup, "_fs_mkdir", fs.mkdir)
    monkeypatch.setattr(cgroup, "_fs_rmdir", fs.rmdir)
    return fs


def v2_fake(tmp_path, monkeypatch, own="/user.slice/app.scope", subtree="cpu memory pids", procs="77\n"):
    fs = FakeFs(tmp_path, [f"0::{own}"])
    fs.own("", "cgroup.controllers", "cgroup.subtree_control", cgroup_controllers="cpu io memory pids")
    type_file = ("cgroup.type",) if own != "/" else ()
    fs.own(own.strip("/"), "cgroup.controllers", "cgroup.subtree_control", *type_file,
           cgroup_controllers="cpu memory pids", cgroup_subtree_control=subtree, cgroup_procs=procs)
    monkeypatch.setattr(cgroup, "_fs_mkdir", fs.mkdir)
    monkeypatch.setattr(cgroup, "_fs_rmdir", fs.rmdir)
    return fs


def test_detect_v1_per_controller(fake_v1):
    support = fake_v1.detect()
    root = fake_v1.root
    assert support.version == "v1" and support.enforced == {"memory", "pids", "cpu"} and support.notes == ()
    assert support.bases == {"memory": str(root / "memory/job/a"), "pids": str(root / "pids"),
                             "cpu": str(root / "cpu,cpuacct"), "freezer": str(root / "freezer"),
                             "cpuacct": str(root / "cpu,cpuacct")}


def test_create_v1_writes_limits_and_remove_cleans_up(fake_v1):
    group = cgroup.RunGroup.create("run", memory_bytes=64 << 20, max_pids=8, cpu_quota_cpus=0.5,
                                   support=fake_v1.detect())
    assert group is not None and group.enforced == {"memory", "pids", "cpu"} and group.notes == []
    leaf = Path(group.dirs["memory"]).name
    assert leaf.startswith(f"run-{os.getpid()}-")
    root = fake_v1.root
    assert group.procs_files == [str(root / d / leaf / "cgroup.procs")
                                 for d in ("memory/job/a", "pids", "cpu,cpuacct", "freezer")]
    mem, pids, cpu = root / "memory/job/a" / leaf, root / "pids" / leaf, root / "cpu,cpuacct" / leaf
    assert (mem / "memory.limit_in_bytes").read_text() == str(64 << 20)
    assert (mem / "memory.memsw.limit_in_bytes").read_text() == str(64 << 20)
    assert (pids / "pids.max").read_text() == "8"
    assert (cpu / "cpu.cfs_period_us").read_text() == "100000"
    assert (cpu / "cpu.cfs_quota_us").read_text() == "50000"
    (pids / "pids.events").write_text("max 3\n")
    (mem / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert group.stats()["pids_max_events"] == 3 and group.stats()["oom_kill"] == 2
    second = cgroup.RunGroup.create("run", memory_bytes=1 << 30, max_pids=8, support=fake_v1.detect())
    assert Path(second.dirs["pids"]).name != leaf  # unique per run
    with second:
        pass
    group.remove()
    group.remove()  # idempotent
    assert sorted(p.name for p in (root / "pids").iterdir()) == ["cgroup.procs"]
    assert not (root / "memory/job/a" / leaf).exists()


def test_v1_missing_control_files_are_reported_not_raised(tmp_path, monkeypatch):
    files = dict(V1_FILES, pids=["pids.current"], memory=["memory.limit_in_bytes"])  # no pids.max, no memsw
    fs = FakeFs(tmp_path, V1_LINES, v1_files=files)
    fs.own("memory/job/a")
    fs.own("pids")
    fs.own("cpu,cpuacct")
    monkeypatch.setattr(cgroup, "_fs_mkdir", fs.mkdir)
    monkeypatch.setattr(cgroup, "_fs_rmdir", fs.rmdir)
    with cgroup.RunGroup.create("run", memory_bytes=1 << 26, max_pids=8, support=fs.detect()) as group:
        assert group.enforced == {"memory", "cpu"}
        text = "\n".join(group.notes)
        assert "NOT enforced: process count (pids.max:" in text and "swap use not capped" in text
    assert not any(p.is_dir() for p in (fs.root / "pids").iterdir())


def test_detect_v2_delegated_and_create(tmp_path, monkeypatch):
    fs = v2_fake(tmp_path, monkeypatch)
    support = fs.detect()
    own = fs.root / "user.slice/app.scope"
    assert support.version == "v2" and support.enforced == {"memory", "pids", "cpu"}
    assert support.bases == {"unified": str(own)}
    group = cgroup.RunGroup.create("run", memory_bytes=1 << 26, max_pids=16, cpu_quota_cpus=1.0, support=support)
    parent = own / f"antisd-{os.getpid()}"
    d = parent / Path(group.dirs["unified"]).name
    assert group.procs_files == [str(d / "cgroup.procs")]
    assert (parent / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    assert [(d / f).read_text() for f in ("memory.max", "memory.swap.max", "pids.max", "cpu.max")] == [
        str(1 << 26), "0", "16", "100000 100000"]
    (d / "memory.peak").write_text("1234\n")
    assert group.stats() == {"memory_peak_bytes": 1234}
    group.remove()
    assert not parent.exists()  # the per-process parent goes with its last child


def test_v2_at_root_is_usable_but_not_when_our_cgroup_holds_processes(tmp_path, monkeypatch):
    assert v2_fake(tmp_path / "a", monkeypatch, own="/", subtree="").detect().version == "v2"
    support = v2_fake(tmp_path / "b", monkeypatch, subtree="").detect()
    assert support.version is None and support.enforced == frozenset()
    assert support.notes[0] == "cgroups not writable here" and "holds processes" in support.notes[1]
    assert support.notes[-1] == "NOT enforced for a run as a whole: total memory, process count, CPU share"
    assert cgroup.RunGroup.create("run", memory_bytes=1, max_pids=1, support=support) is None


def test_v2_missing_cpu_controller_file(tmp_path, monkeypatch):
    files = [f for f in V2_FILES if f != "cpu.max"]
    fs = v2_fake(tmp_path, monkeypatch)
    fs.v2_files = files
    with cgroup.RunGroup.create("run", memory_bytes=1 << 26, max_pids=8, support=fs.detect()) as group:
        assert group.enforced == {"memory", "pids"}
        assert any("CPU share" in n for n in group.notes)


def test_nothing_usable(tmp_path):
    support = cgroup.detect(str(tmp_path / "none"), str(tmp_path / "missing"))
    assert support.version is None and "total memory" in support.notes[-1]
    with pytest.raises(ValueError):
        cgroup.RunGroup.create("../x", memory_bytes=1, max_pids=1, support=support)


# ---------------------------------------------------------------------------------------------
# The real cgroupfs of this machine.

REAL = cgroup.detect()


def _real_skip(*needed: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("not root: real cgroup tests need a writable cgroupfs")
    if not set(needed) <= REAL.enforced:
        pytest.skip(f"cgroupfs here cannot enforce {sorted(set(needed) - REAL.enforced)}: {REAL.notes}")


@pytest.fixture
def make_group():
    groups, procs = [], []

    def make(memory_bytes=64 << 20, max_pids=8, cpu_quota_cpus=1.0, support=None):
        group = cgroup.RunGroup.create("test", memory_bytes=memory_bytes, max_pids=max_pids,
                                       cpu_quota_cpus=cpu_quota_cpus, support=support or REAL)
        assert group is not None
        groups.append(group)
        return group

    yield make, procs
    errors = []
    for group in groups:
        try:
            group.remove()
        except RuntimeError as e:
            errors.append(e)
    for p in procs:  # those inside a group were killed by remove(); the others end by themselves
        p.wait(timeout=30)
    assert not errors


JOIN = 'for f in "$@"; do echo $$ > "$f" || exit 125; done; exec "$PY" -c "$CODE"'


def spawn(procs: list, group, code: str) -> subprocess.Popen:
    """A python process that joins the group (all its procs files) before it runs `code`."""
    p = subprocess.Popen(["/bin/sh", "-c", JOIN, "sh", *(group.procs_files if group else [])],
                         env={"PY": sys.executable, "CODE": code, "PATH": "/usr/bin:/bin"},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs.append(p)
    return p


def wait_for(predicate, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_real_pids_cap(make_group):
    _real_skip("pids")
    make, procs = make_group
    group = make(max_pids=8)
    code = ("import subprocess, sys\nok = bad = 0\nfor _ in range(20):\n    try:\n"
            "        subprocess.Popen(['sleep', '5']); ok += 1\n    except OSError:\n        bad += 1\n"
            "print(ok, bad, flush=True)\n__import__('time').sleep(5)\n")
    p = spawn(procs, group, code)
    ok, bad = map(int, p.stdout.readline().split())
    peak = 0
    for _ in range(20):
        peak = max(peak, group.stats().get("pids_current", 0))
        time.sleep(0.01)
    assert ok <= 7 and bad >= 13 and ok + bad == 20
    assert peak <= 8 and group.stats().get("pids_peak", 0) <= 8 and group.stats().get("pids_max_events", 1) > 0
    assert group.kill_all() and not group._pids()


def test_real_memory_oom_inside_control_outside(make_group):
    _real_skip("memory")
    make, procs = make_group
    group = make(memory_bytes=64 << 20, max_pids=8)
    code = "b = b'x' * (256 << 20); print('survived', len(b))"
    inside, outside = spawn(procs, group, code), spawn(procs, None, code)
    out_in, err_in = inside.communicate(timeout=60)
    out_out, _ = outside.communicate(timeout=60)
    assert "survived" not in out_in and (inside.returncode == -9 or "MemoryError" in err_in)
    assert out_out.startswith("survived") and outside.returncode == 0
    if inside.returncode == -9:
        assert group.stats().get("oom_kill", 1) >= 1


FORKER = """import os, time
def hop():  # a pid-hopping chain: fork, the parent exits at once (defeats naive kill loops)
    while True:
        try:
            if os.fork():
                os._exit(0)
        except OSError:
            time.sleep(0.001)
for _ in range(HOPPERS):
    try:
        if os.fork() == 0:
            hop()
    except OSError:
        pass
while True:  # a fork bomb, capped by pids.max: every process keeps forking
    try:
        os.fork()
    except OSError:
        time.sleep(0.001)
"""


REFUSED = {"cgroup.kill": (), "cgroup.freeze": ("cgroup.kill", "freezer.state"), "freezer": ("cgroup.kill",),
           "loop": ("cgroup.kill", "cgroup.freeze", "freezer.state")}


@pytest.mark.parametrize("strategy", list(REFUSED))
def test_real_kill_all_with_forks_racing(make_group, monkeypatch, strategy):
    """Each kill_all strategy, the better ones made to fail (their control file write refused)."""
    _real_skip("pids")
    needs = {"cgroup.kill": "unified", "cgroup.freeze": "unified", "freezer": "freezer", "loop": "pids"}[strategy]
    if needs not in REAL.bases and not (needs == "pids" and REAL.version == "v2"):
        pytest.skip(f"no {needs} group here")
    write = cgroup._write
    monkeypatch.setattr(cgroup, "_write", lambda p, v: "refused" if p.endswith(REFUSED[strategy]) else write(p, v))
    make, procs = make_group
    group = make(max_pids=16, memory_bytes=512 << 20)
    spawn(procs, group, FORKER.replace("HOPPERS", "0" if strategy == "loop" else "3"))
    wait_for(lambda: group.stats().get("pids_current", 0) >= 3)
    time.sleep(0.2)
    assert group.kill_all(timeout_s=5.0)
    time.sleep(0.1)
    assert not group._pids()


def test_real_generous_limits_run_normally(make_group):
    _real_skip("memory", "pids")
    make, procs = make_group
    group = make(memory_bytes=512 << 20, max_pids=32)
    p = spawn(procs, group, "import subprocess; print(subprocess.run(['echo', 'hi'], capture_output=True).stdout)")
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0 and out.strip() == "b'hi\\n'", err


def test_real_cpu_quota(make_group):
    _real_skip("cpu")
    make, procs = make_group
    group = make(memory_bytes=512 << 20, max_pids=8, cpu_quota_cpus=0.2)
    p = spawn(procs, group, "while True: pass")
    time.sleep(1.0)
    fields = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    assert cpu_s <= 0.35, f"{cpu_s:.2f} s of CPU in 1 s wall under a 0.2 CPU quota"
    assert group.stats().get("cpu_usage_us", 0) <= 350_000
