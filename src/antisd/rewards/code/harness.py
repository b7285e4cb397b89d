"""Score one program on one `CodeTask`: expected outputs (computed once, cached), the sandboxed
run, and the verdict, decided here in the trusted process from plain data (`antisd.rewards.code.verdicts`).

IO suites (EvalPlus): the reference program runs once per suite in the sandbox on the suite's
inputs; its outputs (plain data) and per-input times are cached on disk, keyed by
`CodeTask.suite_key` (sha256 of reference, setup, entry point and inputs), under
``$ANTISD_CODE_CACHE`` or ``~/.cache/antisd/code``. A candidate runs base then plus inputs in ONE
sandboxed process with EvalPlus's time limits: per input ``max(min_time_limit_s, factor * t_ref)``
(an in-sandbox alarm, best effort), per suite at most ``max_suite_time_s``, and the sum (+
``startup_s``) as the hard wall clock. Each output is compared with `compare.outputs_match`.

Assert suites (MBPP): the candidate's run evaluates only the calls of the functions under test
and returns their values as plain data; each assertion's check then runs here (``x == literal``,
``x``, ``not x``) or, for other shapes, in a second sandbox run that holds the reference program
and setup code but no candidate code. The reference is run the same way once per suite (cached):
a reference that fails its own tests makes the suite unusable (`Expected.error`). An assert suite
of a task without a reference (``reference == ""``, user data) is taken as written: nothing to
verify, and the candidate's time limit is ``min_time_limit_s`` per assertion.

Verdict of a suite: "pass" (every test passed), "fail", "timeout" (a test timed out, or the run was
killed before the suite finished), "sandbox_error" (the executor failed; not the program's fault).
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import sys
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from antisd.files import atomic_write
from antisd.rewards.code.driver.wire import decode, encode
from antisd.rewards.code.executor import Executor, Limits
from antisd.rewards.code.tasks import AssertSuite, CodeTask, IOSuite
from antisd.rewards.code.verdicts import (RECORD_SLACK_BYTES, Expected, SuiteResult, assert_verdict, described,
                                          io_suite_verdict, missing, record_cap, record_of, run_asserts)

__all__ = ["CACHE_VERSION", "Expected", "HarnessConfig", "ProgramResult", "SuiteResult", "UnusableTaskError",
           "check_program", "expected_for"]

logger = logging.getLogger(__name__)

CACHE_VERSION = 2  # 2: times measured by the trusted side, output sizes kept for the record caps


class UnusableTaskError(ValueError):
    """The task's reference program fails its own tests (or cannot run), so no verdict is possible."""


@dataclass(frozen=True)
class HarnessConfig:
    """Time limits (EvalPlus defaults), resource limits and the expected-output cache."""

    min_time_limit_s: float = 1.0  # EvalPlus DEFAULT_MIN_TIME_LIMIT
    time_limit_factor: float = 4.0  # EvalPlus DEFAULT_GT_TIME_LIMIT_FACTOR
    max_suite_time_s: float = 60.0  # EvalPlus EVALPLUS_TIMEOUT_PER_TASK
    startup_s: float = 2.0
    limits: Limits = field(default_factory=Limits)
    cache_dir: str | None = None

    def cache_path(self) -> Path:
        root = self.cache_dir or os.environ.get("ANTISD_CODE_CACHE") or Path.home() / ".cache" / "antisd" / "code"
        return Path(root)




@dataclass
class ProgramResult:
    """Verdicts of one program on one task: base, and plus when the task has plus tests."""

    task_id: str
    base: SuiteResult
    plus: SuiteResult | None
    run_status: str
    wall_s: float

    def passed(self, plus: bool = True) -> bool:
        """base passed, and plus too when `plus` (a task without plus tests: base alone)."""
        return self.base.passed and (not plus or self.plus is None or self.plus.passed)

    @property
    def sandbox_error(self) -> bool:
        return self.run_status == "sandbox_error"


# ------------------------------------------------------------------------------------------
# Expected outputs
# ------------------------------------------------------------------------------------------

_memory: OrderedDict[str, Expected] = OrderedDict()
_MEMORY_ENTRIES = 256


def _remember(expected: Expected) -> Expected:
    _memory[expected.key] = expected
    _memory.move_to_end(expected.key)
    while len(_memory) > _MEMORY_ENTRIES:
        _memory.popitem(last=False)
    return expected


def _cache_file(config: HarnessConfig, key: str) -> Path:
    return config.cache_path() / f"v{CACHE_VERSION}-py{sys.version_info.major}{sys.version_info.minor}" / f"{key}.json.gz"


def _load_cached(path: Path, key: str) -> Expected | None:
    try:
        data = json.loads(gzip.decompress(path.read_bytes()))
        outputs = None if data["outputs"] is None else [decode(v) for v in data["outputs"]]
        return Expected(key=key, outputs=outputs, times=[float(t) for t in data["times"]], error=data["error"],
                        sizes=[int(n) for n in data.get("sizes") or []])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:
        logger.warning("expected-output cache %s is unreadable (%s); recomputing", path, exc)
        return None


def _store(path: Path, expected: Expected, encoded_outputs: list[Any] | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = json.dumps({"outputs": encoded_outputs, "times": expected.times, "error": expected.error,
                       "sizes": expected.sizes})
    # level 1: level 9 (gzip's default) took 40% of computing HumanEval+'s expected outputs
    atomic_write(path, gzip.compress(blob.encode("utf-8", "surrogatepass"), compresslevel=1, mtime=0))


def expected_for(task: CodeTask, suite_name: str, executor: Executor, config: HarnessConfig) -> Expected:
    """The reference's outputs/times on suite `suite_name` of `task`: memory, disk, or a sandbox run."""
    key = task.suite_key(suite_name)
    if key in _memory:
        _memory.move_to_end(key)
        return _memory[key]
    path = _cache_file(config, key)
    cached = _load_cached(path, key)
    if cached is not None:
        return _remember(cached)
    suite = task.suites()[suite_name]
    expected, encoded, transient = _compute_expected(task, suite, key, executor, config)
    if expected.error:
        logger.warning("%s %s: reference fails its own tests: %s", task.task_id, suite_name, expected.error)
    if not transient:
        _store(path, expected, encoded)
    return _remember(expected)


def _compute_expected(task: CodeTask, suite: IOSuite | AssertSuite, key: str, executor: Executor,
                      config: HarnessConfig) -> tuple[Expected, list[Any] | None, bool]:
    """(Expected, encoded outputs to cache, transient failure: do not cache)."""
    if len(suite) == 0:
        return Expected(key=key, error="the suite has no tests"), None, False
    if isinstance(suite, AssertSuite) and not task.reference.strip():
        return Expected(key=key), None, True  # no reference: the assertions are taken as written (nothing cached)
    limits = replace(config.limits, wall_s=task.reference_wall_s)
    if isinstance(suite, AssertSuite):
        result = run_asserts(task, task.reference, suite, executor, limits)
        verdict = assert_verdict(task, suite, result, 0, executor, limits)
        error = None if verdict.passed else f"{verdict.status}: {verdict.failure}"
        return Expected(key=key, times=[result.wall_s], error=error), None, verdict.status in ("timeout", "sandbox_error")
    request = {"mode": "io", "program": task.reference, "setup": task.setup_code, "entry_point": task.entry_point,
               "inputs": [encode(args) for args in suite.inputs], "time_limits": None,
               "not_none": "always" if task.not_none else None}
    result = executor.run(request, replace(limits, max_record_bytes=limits.max_result_bytes))
    encoded, times, sizes = [], [], []
    for k in range(len(suite)):
        item = result.items[k] if k < len(result.items) else None
        record = record_of(item)
        if record is None or "out" not in record:
            status, why = missing(result, k) if item is None else ("fail", described(record))
            return Expected(key=key, error=f"input {k}: {why}"), None, status in ("timeout", "sandbox_error")
        assert item is not None and item.raw is not None
        encoded.append(record["out"])
        times.append(item.elapsed_s if item.elapsed_s is not None else float(record.get("t", 0.0)))
        sizes.append(len(item.raw))
    try:
        outputs = [decode(v) for v in encoded]
    except (ValueError, TypeError, RecursionError) as exc:
        return Expected(key=key, error=f"undecodable reference output: {exc}"), None, False
    return Expected(key=key, outputs=outputs, times=times, sizes=sizes), encoded, False


# ------------------------------------------------------------------------------------------
# Candidate runs (their verdicts: antisd.rewards.code.verdicts)
# ------------------------------------------------------------------------------------------


def _io_time_limits(expected: Expected, config: HarnessConfig) -> tuple[list[float], float]:
    limits = [max(config.min_time_limit_s, config.time_limit_factor * t) for t in expected.times]
    return limits, min(config.max_suite_time_s, sum(limits))


def check_program(task: CodeTask, program: str, executor: Executor, config: HarnessConfig) -> ProgramResult:
    """Run `program` on every suite of `task` and judge it (the module docstring).

    Raises only `UnusableTaskError` (the task's reference fails). Anything a program sends fails
    that program, with a reason; an unexpected error while judging it is logged and fails it too."""
    suites = task.suites()
    expected = {name: expected_for(task, name, executor, config) for name in suites}
    broken = {name: e.error for name, e in expected.items() if e.error}
    if broken:
        raise UnusableTaskError(f"{task.task_id}: the reference fails its own tests ({broken}); the task is unusable")
    try:
        if isinstance(task.base, AssertSuite):
            return _check_asserts(task, program, suites, expected, executor, config)
        return _check_io(task, program, suites, expected, executor, config)
    except Exception as exc:  # noqa: BLE001 - one program never stops a run
        logger.warning("%s: could not judge a program (%s: %s); it counts as failed", task.task_id,
                       type(exc).__name__, exc, exc_info=True)
        why = f"the harness could not judge this program ({type(exc).__name__})"
        plus = SuiteResult("fail", len(suites["plus"]), failure=why) if "plus" in suites else None
        return ProgramResult(task.task_id, SuiteResult("fail", len(suites["base"]), failure=why), plus, "finished", 0.0)


def _check_io(task: CodeTask, program: str, suites: dict[str, Any], expected: dict[str, Expected],
              executor: Executor, config: HarnessConfig) -> ProgramResult:
    inputs, time_limits, caps, wall = [], [], [], config.startup_s
    for name, suite in suites.items():
        assert isinstance(suite, IOSuite)
        per_input, suite_wall = _io_time_limits(expected[name], config)
        inputs += [encode(args) for args in suite.inputs]
        time_limits += per_input
        caps += [record_cap(expected[name], k) for k in range(len(suite))]
        wall += suite_wall
    request = {"mode": "io", "program": program, "setup": task.setup_code, "entry_point": task.entry_point,
               "inputs": inputs, "time_limits": time_limits, "not_none": "unless_bool" if task.not_none else None}
    limits = replace(config.limits, wall_s=wall, max_record_bytes=max(caps), load_s=config.startup_s,
                     max_result_bytes=min(config.limits.max_result_bytes, sum(caps) + RECORD_SLACK_BYTES))
    result = executor.run(request, limits)
    verdicts, offset = {}, 0
    for name, suite in suites.items():
        verdicts[name] = io_suite_verdict(task, suite, expected[name], result, offset, time_limits)
        offset += len(suite)
    return ProgramResult(task.task_id, verdicts["base"], verdicts.get("plus"), result.status, result.wall_s)




def _check_asserts(task: CodeTask, program: str, suites: dict[str, Any], expected: dict[str, Expected],
                   executor: Executor, config: HarnessConfig) -> ProgramResult:
    all_tests = AssertSuite(tuple(a for s in suites.values() for a in s.asserts), task.base.targets)
    reference_s = sum(sum(e.times) for e in expected.values())
    wall = config.startup_s + min(config.max_suite_time_s * len(suites),
                                  max(config.min_time_limit_s * len(all_tests), config.time_limit_factor * reference_s))
    limits = replace(config.limits, wall_s=wall, load_s=config.startup_s)
    result = run_asserts(task, program, all_tests, executor, limits)
    verdicts, offset = {}, 0
    for name, suite in suites.items():
        verdicts[name] = assert_verdict(task, suite, result, offset, executor, limits)
        offset += len(suite)
    return ProgramResult(task.task_id, verdicts["base"], verdicts.get("plus"), result.status, result.wall_s)
