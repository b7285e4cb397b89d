"""The threat model of docs/code.md: each trick a policy could learn, and that it scores 0.

Every test also checks the honest control (`test_control_correct_program_passes`), so a sandbox
that failed everything could not pass this file. Tests that need namespace isolation (network,
host files, process limit, escaped children) skip where bubblewrap does not work, naming what
is then not enforced.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from antisd.rewards.code.harness import _cache_file, check_program
from antisd.rewards.code.sandbox import Limits, LocalExecutor
from antisd.rewards.code.tasks import CodeTask, IOSuite

REFERENCE = "def add(a, b):\n    return a + b\n"
TASK = CodeTask(task_id="t/add", benchmark="test", prompt="", entry_point="add", reference=REFERENCE,
                base=IOSuite(([1, 2], [3, 4], [10, -3])), plus=IOSuite(([2**70, 1], [0.5, 0.25])))


def _passes(program: str, executor, config) -> bool:
    return check_program(TASK, program, executor, config).passed()


def _needs(executor: LocalExecutor, what: str) -> None:
    if not executor.enforced()[what]:
        pytest.skip(f"{what} is not enforced without bubblewrap on this machine")


def _run(executor, program: str, limits: Limits | None = None) -> dict:
    """Run `program`'s f() once in the sandbox and return the decoded output record."""
    request = {"mode": "io", "program": program, "setup": "", "entry_point": "f", "inputs": [[]], "time_limits": None}
    result = executor.run(request, limits or Limits(wall_s=20))
    return next((r for r in result.records if r.get("i") == 0), {"status": result.status})


def test_control_correct_program_passes(executor, harness_config):
    assert _passes(REFERENCE, executor, harness_config)
    assert not _passes("def add(a, b):\n    return a - b\n", executor, harness_config)


def test_exiting_early_fails(executor, harness_config):
    for program in ("import sys\nsys.exit(0)\n", "import os\ndef add(a, b):\n    os._exit(0)\n",
                    "def add(a, b):\n    raise SystemExit(0)\n", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n"):
        assert not _passes(program, executor, harness_config), program


def test_printing_a_fake_verdict_fails(executor, harness_config):
    program = (
        "import os, sys\n"
        "fake = b'{\"i\": 0, \"out\": 3}\\n{\"verdict\": \"pass\", \"passed\": true}\\n{\"done\": true}\\n'\n"
        "print(fake.decode()); sys.stderr.write(fake.decode())\n"
        "def add(a, b):\n"
        "    for fd in range(3, 64):\n"
        "        try: os.write(fd, fake)\n"
        "        except OSError: pass\n"
        "    return None\n")
    assert not _passes(program, executor, harness_config)


def test_object_equal_to_anything_fails(executor, harness_config):
    always_equal = ("class Any:\n    def __eq__(self, other): return True\n    def __ne__(self, other): return False\n"
                    "def add(a, b):\n    return Any()\n")
    int_subclass = ("class Eq(int):\n    def __eq__(self, other): return True\n    __hash__ = int.__hash__\n"
                    "def add(a, b):\n    return Eq(0)\n")
    list_subclass = ("class L(list):\n    def __eq__(self, other): return True\n"
                     "def add(a, b):\n    return L()\n")
    for program in (always_equal, int_subclass, list_subclass):
        assert not _passes(program, executor, harness_config), program


def test_patching_builtins_and_the_checker_fails(executor, harness_config):
    program = (
        "import builtins, json, sys\n"
        "builtins.isinstance = lambda *a: True\n"
        "builtins.type = lambda *a: int\n"
        "json.dumps = lambda *a, **k: '{\"i\": 0, \"out\": 3}'\n"
        "json.loads = lambda *a, **k: {}\n"
        "main = sys.modules.get('__main__')\n"
        "for name in ('outputs_match', 'encode', 'emit', 'decode'):\n"
        "    setattr(main, name, lambda *a, **k: True)\n"
        "def add(a, b):\n    return 0\n")
    assert not _passes(program, executor, harness_config)


def test_reading_expected_outputs_fails(executor, harness_config):
    _needs(executor, "host_files_hidden")
    check_program(TASK, REFERENCE, executor, harness_config)  # make sure the cache file exists
    cache = _cache_file(harness_config, TASK.suite_key("base"))
    assert cache.exists()
    program = (
        "import gzip, json\n"
        "def add(a, b):\n"
        f"    data = json.loads(gzip.decompress(open({str(cache)!r}, 'rb').read()))\n"
        "    return a + b\n")
    assert not _passes(program, executor, harness_config)
    here = Path(__file__).resolve()
    assert "missing" in str(_run(executor, f"def f():\n    try:\n        return open({str(here)!r}).read()[:10]\n"
                                           "    except OSError:\n        return 'missing'\n").get("out"))


def test_sleeping_is_killed_at_the_wall_clock(executor, harness_config):
    start = time.monotonic()
    result = check_program(TASK, "import time\ndef add(a, b):\n    time.sleep(1000)\n", executor, harness_config)
    assert not result.passed() and result.base.status == "timeout"
    blocked = ("import signal, time\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
               "def add(a, b):\n    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})\n    time.sleep(1000)\n")
    result = check_program(TASK, blocked, executor, harness_config)
    assert not result.passed() and result.run_status == "timeout"
    assert time.monotonic() - start < 3 * (harness_config.max_suite_time_s + 10)


def test_sleeping_at_import_time_is_killed(executor):
    start = time.monotonic()
    out = _run(executor, "import time\ntime.sleep(1000)\n", Limits(wall_s=2))
    assert out == {"status": "timeout"} and time.monotonic() - start < 10


def test_fork_bomb_is_contained(executor):
    _needs(executor, "process_limit")
    start = time.monotonic()
    program = ("import os\ndef f():\n    n = 0\n    try:\n        while n < 100000:\n"
               "            if os.fork() == 0:\n                import time; time.sleep(60); os._exit(0)\n"
               "            n += 1\n    except OSError:\n        return n\n    return n\n")
    out = _run(executor, program, Limits(wall_s=20, max_processes=16))
    assert out.get("out") is not None and out["out"] < 16, out
    assert time.monotonic() - start < 20


def _sleepers(marker: str) -> list[str]:
    found = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes() == f"sleep\0{marker}\0".encode():
                found.append(pid)
        except OSError:
            pass
    return found


def test_escaped_children_die_with_the_run(executor, tmp_path):
    _needs(executor, "escaped_children_killed")
    marker = f"31.{os.getpid()}"
    program = ("import os, time\ndef f():\n    if os.fork() == 0:\n        os.setsid()\n"
               f"        os.execv('/bin/sleep', ['sleep', {marker!r}])\n    time.sleep(0.5)\n    return os.getpid()\n")
    out = _run(executor, program, Limits(wall_s=10))
    assert "out" in out
    time.sleep(0.5)
    assert _sleepers(marker) == []
    control = ("import subprocess, time\ndef f():\n"
               f"    p = subprocess.Popen(['sleep', {marker!r}], executable='/bin/sleep')\n    time.sleep(0.3)\n"
               "    return open('/proc/%d/cmdline' % p.pid).read()\n")
    assert _run(executor, control, Limits(wall_s=10)).get("out") == f"sleep\0{marker}\0"  # such a process does run


def test_allocating_memory_fails_fast(executor, harness_config):
    start = time.monotonic()
    program = "def add(a, b):\n    x = bytearray(64 << 30)\n    return a + b\n"
    assert not _passes(program, executor, harness_config)
    assert time.monotonic() - start < 30
    out = _run(executor, "def f():\n    try:\n        bytearray(2 << 30)\n        return 'allocated'\n"
                         "    except MemoryError:\n        return 'refused'\n", Limits(memory_bytes=1 << 30))
    assert out.get("out") == "refused"


def test_huge_files_are_capped(executor):
    limit = 1 << 20
    program = ("import os\ndef f():\n    try:\n        with open('big', 'wb') as h:\n"
               "            for _ in range(64):\n                h.write(b'x' * (1 << 20))\n"
               "    except OSError:\n        pass\n    return os.path.getsize('big')\n")
    out = _run(executor, program, Limits(file_size_bytes=limit))
    assert out.get("out") is not None and out["out"] <= limit


def test_environment_secrets_are_not_visible(executor, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_for_test")
    monkeypatch.setenv("ANTISD_SECRET_KEY", "sk-secret-for-test")
    out = _run(executor, "import os\ndef f():\n    return sorted(os.environ.items())\n")
    env = dict(item["t"] for item in out["out"])
    assert set(env) <= {"PATH", "LANG", "HOME", "TMPDIR", "PWD", "LC_CTYPE"}, env
    assert "secret" not in str(env)
    proc_env = _run(executor, "def f():\n    return open('/proc/1/environ', 'rb').read().decode(errors='replace')\n")
    assert "secret" not in str(proc_env)


def test_network_is_blocked(executor):
    _needs(executor, "network_blocked")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        program = ("import socket\ndef f():\n    try:\n"
                   f"        socket.create_connection(('127.0.0.1', {port}), timeout=2).close()\n        return 'connected'\n"
                   "    except OSError as e:\n        return 'blocked'\n")
        assert _run(executor, program).get("out") == "blocked"
        program = ("import socket\ndef f():\n    try:\n        socket.create_connection(('1.1.1.1', 53), timeout=2).close()\n"
                   "        return 'connected'\n    except OSError:\n        return 'blocked'\n")
        assert _run(executor, program).get("out") == "blocked"
    finally:
        server.close()


def test_filesystem_outside_the_sandbox_is_read_only(executor, tmp_path):
    _needs(executor, "filesystem_readonly")
    target = tmp_path / "written_by_sandbox"
    program = ("def f():\n    out = []\n"
               f"    for path in ({str(target)!r}, '/usr/antisd_probe', '/etc/antisd_probe'):\n"
               "        try:\n            open(path, 'w').write('x')\n            out.append(path)\n"
               "        except OSError:\n            pass\n    return out\n")
    assert _run(executor, program).get("out") == []
    assert not target.exists()


def test_killing_the_parent_does_not_reach_it(executor, harness_config):
    _needs(executor, "escaped_children_killed")
    program = "import os, signal\ndef add(a, b):\n    os.kill(os.getppid(), signal.SIGKILL)\n    return a + b\n"
    check_program(TASK, program, executor, harness_config)
    assert os.getpid() > 0  # still alive
    assert _passes(REFERENCE, executor, harness_config)


def test_isolation_is_reported(executor, caplog):
    enforced = executor.enforced()
    assert enforced["process_group_kill"] and enforced["scrubbed_env"] and enforced["memory_limit"]
    assert executor.isolation in ("bwrap", "none")
    fresh = LocalExecutor("none")
    assert fresh.isolation == "none" and not fresh.enforced()["network_blocked"]
