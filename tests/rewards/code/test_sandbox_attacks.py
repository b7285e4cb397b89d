"""The red-team's classes of attack on the trusted side (docs/code.md, "Threat model", rows 16-27).

Each test runs an attack and, beside it, a control that must pass, so a harness that failed
everything (or nothing) could not pass this file. The attacking program writes records straight to
the result channel (fd 3) from inside the function under test, after the program has loaded: the
honest driver's own record for that input then arrives second and is dropped, so what the trusted
side judges is exactly what the attack sent.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import time

import pytest

from antisd.rewards.code import CodeScorer, load_tasks, score_samples
from antisd.rewards.code.extract import CodeOutcome
from antisd.rewards.code import sandbox
from antisd.rewards.code.harness import check_program
from antisd.rewards.code.sandbox import Limits, LocalExecutor
from antisd.rewards.code.score import outcome_of
from antisd.rewards.code.tasks import CodeTask, IOSuite

REFERENCE = "def add(a, b):\n    return a + b\n"
TASK = CodeTask(task_id="t/add", benchmark="test", prompt="", entry_point="add", reference=REFERENCE,
                base=IOSuite(([1, 2], [3, 4])), plus=None)
SLOW_TASK = CodeTask(task_id="t/slow", benchmark="test", prompt="", entry_point="add", reference=REFERENCE,
                     base=IOSuite(([1, 2],)), plus=None)
MERSENNE = (1 << 61) - 1  # ints equal modulo this share a hash


def _forging(line: str) -> str:
    """A program whose add() sends `line` as its record (then returns a wrong value)."""
    return ("import os\ndef add(a, b):\n"
            f"    data = {line!r}.encode()\n"
            "    while data:\n        data = data[os.write(3, data):]\n    return None\n")


def _judge(program: str, executor, config, task: CodeTask = TASK):
    start = time.monotonic()
    result = check_program(task, program, executor, config)
    return result, time.monotonic() - start


def _colliding(n: int) -> list:
    """n distinct ints with one hash, as the wire format sends ints >= 2**63: hex-tagged."""
    return [{"i": format(MERSENNE * (k + 1) + 3, "x")} for k in range(n)]


# 1. The trusted side pays for untrusted data -------------------------------------------------


def test_hash_flooding_outputs_fail_fast(executor, harness_config):
    assert check_program(TASK, REFERENCE, executor, harness_config).passed()  # control
    honest_set = _forging(json.dumps({"i": 0, "out": {"S": [1, 2, 3]}}) + "\n")
    assert not check_program(TASK, honest_set, executor, harness_config).passed()  # a set is not 3
    for shape in ({"S": _colliding(40000)}, {"F": _colliding(40000)}, {"d": [[k, 0] for k in _colliding(40000)]}):
        result, seconds = _judge(_forging(json.dumps({"i": 0, "out": shape}) + "\n"), executor, harness_config)
        assert not result.passed() and seconds < 10, (next(iter(shape)), seconds)  # quadratic: many minutes


def test_program_chosen_indices_do_not_build_a_table(executor, harness_config):
    lines = "".join(json.dumps({"i": MERSENNE * k, "out": 3}) + "\n" for k in range(1, 100000))
    result, seconds = _judge(_forging(lines), executor, harness_config)
    assert not result.passed() and seconds < 10
    correct_then_wrong = _forging(json.dumps({"i": 0, "out": 3}) + "\n" + json.dumps({"i": 0, "out": 4}) + "\n")
    assert check_program(TASK, correct_then_wrong.replace("return None", "return a + b"), executor,
                         harness_config).passed()  # control: the first record of an input counts, once


def test_huge_records_cost_bounded_memory(executor, harness_config):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    program = ("import os\ndef add(a, b):\n    line = b'{\"i\": 0, \"out\": [' + b'[], ' * (16 << 20) + b'[]]}\\n'\n"
               "    while line:\n        line = line[os.write(3, line):]\n    return a + b\n")
    result, seconds = _judge(program, executor, harness_config)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert not result.passed() and "larger than the limit" in result.base.failure
    assert grown_mib < 200, grown_mib  # decoded as Python objects, 64 MB of '[], ' is ~3 GB
    assert check_program(TASK, REFERENCE, executor, harness_config).passed()


# 2. One sample never crashes the run ----------------------------------------------------------


BAD_RECORDS = [
    {"i": 0, "out": {"Z": 1}},  # unknown tag
    {"i": 0, "out": {"S": 5}},  # field of the wrong shape
    {"i": 0, "out": {"c": [int("9" * 400), 0]}},  # an int that overflows a float
    {"i": 0, "out": {"d": [[[1], 2]]}},  # an unhashable key
    {"i": 0, "out": {"t": [json.loads("[" * 150 + "]" * 150)]}},  # nested deeper than the codec allows
    {"i": 0, "err": ["not", "a", "string"]},
    {"i": 0, "timeout": "yes"},
]


def test_malformed_records_fail_only_their_sample(executor, harness_config, tmp_path):
    lines = [json.dumps({"task_id": "Mbpp/2", "solution": _forging(json.dumps(bad) + "\n").replace("add", "similar_elements")})
             for bad in BAD_RECORDS]
    tasks = [t for t in load_tasks("mbpp_plus") if t.task_id == "Mbpp/2"]
    lines.append(json.dumps({"task_id": "Mbpp/2", "solution": tasks[0].reference}))  # control
    path = tmp_path / "samples.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with CodeScorer(executor, harness_config, workers=0) as scorer:
        report = score_samples(path, tasks, scorer, ks=(1,))
    assert report.n_scored == len(lines) and not report.skipped
    assert report.tasks["Mbpp/2"].plus == [False] * len(BAD_RECORDS) + [True]
    for detail in report.tasks["Mbpp/2"].details[:-1]:
        assert detail["base"] == "fail" and detail["base_failure"], detail


def test_scoring_completions_survives_a_malformed_record(executor, harness_config):
    task = load_tasks("mbpp_train")[0]
    bad = _forging(json.dumps(BAD_RECORDS[2]) + "\n").replace("add", task.entry_point)
    with CodeScorer(executor, harness_config, workers=0) as scorer:
        outcomes, _ = scorer.score_completions([task, task], [f"```python\n{bad}\n```",
                                                          f"```python\n{task.reference}\n```"])
    assert outcomes == [CodeOutcome.FAILED, CodeOutcome.PASSED]


# 3. A run's resources are limited for the run as a whole ------------------------------------


def _needs(executor: LocalExecutor, what: str) -> None:
    if not executor.enforced()[what]:
        pytest.skip(f"{what} is not enforced on this machine")


def _run(executor, program: str, limits: Limits | None = None):
    request = {"mode": "io", "program": program, "setup": "", "entry_point": "f", "inputs": [[]], "time_limits": None}
    result = executor.run(request, limits or Limits(wall_s=30))
    return next((r.get("out") for r in result.records if r.get("i") == 0), result.status)


HOLDERS = ("import os, select, time\ndef f():\n    pipes = []\n    for _ in range(6):\n        r, w = os.pipe()\n"
           "        pid = os.fork()\n        if pid == 0:\n            try:\n                x = bytearray({size})\n"
           "                for i in range(0, len(x), 4096): x[i] = 1\n                os.write(w, b'1')\n"
           "            except MemoryError:\n                os.write(w, b'0')\n            time.sleep(30)\n"
           "            os._exit(0)\n        pipes.append((pid, r))\n    holding, until = [], time.monotonic() + 4\n"
           "    while pipes and time.monotonic() < until:\n"
           "        ready = select.select([r for _, r in pipes], [], [], until - time.monotonic())[0]\n"
           "        for pid, r in [p for p in pipes if p[1] in ready]:\n"
           "            if os.read(r, 1) == b'1': holding.append(pid)\n            pipes.remove((pid, r))\n"
           "    time.sleep(0.5)\n"
           "    return sum(os.waitpid(pid, os.WNOHANG) == (0, 0) for pid in holding)  # alive and holding now\n")


def test_memory_is_capped_for_the_run_as_a_whole(executor):
    _needs(executor, "run_memory_limit")
    limits = Limits(wall_s=15, memory_bytes=512 << 20)  # per process; the run's total is this + 256 MiB
    assert _run(executor, HOLDERS.format(size=32 << 20), limits) == 6  # control: 6 x 32 MiB fit
    held = _run(executor, HOLDERS.format(size=256 << 20), limits)  # 6 x 256 MiB do not fit in 768 MiB
    assert held <= 3, held  # no more than 3 x 256 MiB alive at once: the others were refused or killed


def test_nested_namespaces_and_mounts_are_refused(executor):
    _needs(executor, "nested_namespaces_blocked")
    program = ("import ctypes, os\ndef f():\n    libc = ctypes.CDLL(None, use_errno=True)\n    out = []\n"
               "    for flags in (0x10000000, 0x10020000, 0x20000000, 0x00020000):\n"
               "        out.append(libc.unshare(flags))\n"
               "    out.append(libc.mount(b'tmpfs', b'.', b'tmpfs', 0, b'size=1g'))\n"
               "    out.append(os.system('unshare -Ur true 2>/dev/null') != 0)\n"
               "    pid = os.fork()\n    if pid == 0:\n        os._exit(7)\n"
               "    out.append(os.waitpid(pid, 0)[1] >> 8)\n    return out\n")
    assert _run(executor, program) == [-1, -1, -1, -1, -1, True, 7]  # a plain fork still works (control)


def test_scratch_inodes_are_capped(executor):
    _needs(executor, "scratch_inode_cap")
    program = ("import os\ndef f(n={n}):\n    made = 0\n    try:\n        while made < n:\n"
               "            open('f%d' % made, 'w').close()\n            made += 1\n    except OSError:\n        pass\n"
               "    return made\n")
    limits = Limits(wall_s=30, scratch_inodes=2000)
    assert _run(executor, program.format(n=500), limits) == 500  # control
    assert _run(executor, program.format(n=250000), limits) < 2000


def test_cpu_share_is_capped(executor):
    _needs(executor, "cpu_quota")
    program = ("import os, time\ndef busy(until):\n    while time.monotonic() < until: pass\n"
               "def f():\n    until = time.monotonic() + 1.5\n    kids = [os.fork() for _ in range(3)]\n"
               "    if 0 in kids:\n        busy(until)\n        os._exit(0)\n    busy(until)\n"
               "    for pid in kids: os.waitpid(pid, 0)\n    t = os.times()\n"
               "    return t.user + t.system + t.children_user + t.children_system\n")
    throttled = {}
    for cpus in (4.0, 0.1):  # 4 CPUs on a 2-core machine: never throttled (the control); a tenth: throttled
        capped = LocalExecutor(executor.requested)
        try:
            used = _run(capped, program, Limits(wall_s=30, cpus=cpus))
            throttled[cpus] = capped._held.group.stats().get("cpu_nr_throttled")
        finally:
            capped.close()
        if cpus == 0.1:
            assert used < 0.1 * 1.5 + 0.1, used  # 4 busy processes share a tenth of a CPU, whatever the load
    if None not in throttled.values():
        assert throttled[4.0] == 0 and throttled[0.1] > 0, throttled


# 4. Deadlines are kept by the trusted side ----------------------------------------------------


SWALLOWERS = [
    "import time\ndef add(a, b):\n    t = time.time()\n    while time.time() - t < 2.5:\n"
    "        try:\n            time.sleep(0.01)\n        except:\n            pass\n    return a + b\n",
    "import signal, time\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
    "def add(a, b):\n    time.sleep(2.5)\n    return a + b\n",
    "import signal, time\ndef add(a, b):\n    signal.setitimer(signal.ITIMER_REAL, 0)\n    time.sleep(2.5)\n    return a + b\n",
]


def test_a_program_that_swallows_the_alarm_fails_on_time(executor, harness_config):
    for program in SWALLOWERS:
        result, seconds = _judge(program, executor, harness_config, SLOW_TASK)
        assert result.base.status == "timeout" and not result.passed(), (program, result.base)
        assert seconds < 2.4, seconds  # ended at the 1 s limit (+ grace), not when the program chose
    honest_slow = "import time\ndef add(a, b):\n    time.sleep(0.3)\n    return a + b\n"
    assert check_program(SLOW_TASK, honest_slow, executor, harness_config).passed()  # control


def test_work_done_at_load_time_is_bounded(executor, harness_config):
    precompute = "import time\ntime.sleep(harness_seconds)\ndef add(a, b):\n    return a + b\n"
    slow = precompute.replace("harness_seconds", str(harness_config.startup_s + 1.5))
    result, seconds = _judge(slow, executor, harness_config, SLOW_TASK)
    assert result.base.status == "timeout" and "load" in result.base.failure
    assert check_program(SLOW_TASK, precompute.replace("harness_seconds", "0.2"), executor, harness_config).passed()


def test_a_late_record_fails_whatever_it_claims(executor, harness_config):
    late = ("import os, time\ndef add(a, b):\n    time.sleep(1.15)\n"
            "    os.write(3, b'{\"i\": 0, \"out\": 3, \"t\": 0.001}\\n')\n    return a + b\n")
    result, _ = _judge(late, executor, harness_config, SLOW_TASK)
    assert result.base.status == "timeout" and "measured by the harness" in result.base.failure


# 6. Labels come from the trusted side ------------------------------------------------------------


def test_a_timeout_message_is_not_a_timeout(executor, harness_config):
    for program in ("def add(a, b):\n    raise TimeoutError('timed out')\n",
                    "import os\ndef add(a, b):\n    os.write(3, b'{\"i\": 0, \"timeout\": true}\\n')\n"):
        result = check_program(TASK, program, executor, harness_config)
        assert outcome_of(result) is CodeOutcome.FAILED and result.base.status == "fail", result.base
    really = check_program(SLOW_TASK, "def add(a, b):\n    while True: pass\n", executor, harness_config)
    assert outcome_of(really) is CodeOutcome.TIMEOUT  # control


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping root needs root")
def test_isolation_none_drops_root_and_says_what_is_missing(caplog):
    caplog.set_level(logging.WARNING, logger="antisd.rewards.code.sandbox")
    sandbox._logged.clear()  # the warning is logged once per process
    bare = LocalExecutor("none")
    try:
        out = _run(bare, "import os\ndef f():\n    return [os.getuid(), os.geteuid(), os.getgid()]\n")
        assert 0 not in out, out
        assert bare.isolation == "none"
        said = [r.getMessage() for r in caplog.records if "NOT enforced" in r.getMessage()]
        assert said and "network access" in said[0], said
    finally:
        bare.close()


def _die_on_poison(task: CodeTask, program: str):
    from antisd.rewards.code.score import _worker_state

    if "POISON" in program:
        os._exit(9)  # the scoring worker itself dies, as if the kernel had killed it
    return check_program(task, program, _worker_state["executor"], _worker_state["config"])


def test_a_dead_scoring_worker_costs_only_its_item(executor, harness_config, monkeypatch):
    from antisd.rewards.code import score

    monkeypatch.setattr(score, "_score_one", _die_on_poison)
    with CodeScorer(executor, harness_config, workers=1) as scorer:
        results = scorer.score_programs([(TASK, REFERENCE), (TASK, "# POISON\n" + REFERENCE), (TASK, REFERENCE)])
    assert [r.passed() for r in results] == [True, False, True]
    assert results[1].sandbox_error
