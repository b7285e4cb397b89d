"""Score one program on one `CodeTask`: expected outputs (computed once, cached), the sandboxed
run, and the verdict, decided here in the trusted process from plain data.

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
import tempfile
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from antisd.code._driver import decode, encode
from antisd.code.compare import outputs_match
from antisd.code.sandbox import Executor, Limits, RunResult
from antisd.code.tasks import AssertSuite, CodeTask, IOSuite

logger = logging.getLogger(__name__)

CACHE_VERSION = 1


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
class Expected:
    """The reference's results on one suite: outputs (IO suites) and times, or why it is unusable."""

    key: str
    outputs: list[Any] | None = None
    times: list[float] = field(default_factory=list)
    error: str | None = None


@dataclass
class SuiteResult:
    status: str
    n_tests: int
    n_passed: int = 0
    failure: str | None = None  # the first failing test and why

    @property
    def passed(self) -> bool:
        return self.status == "pass"


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
        return Expected(key=key, outputs=outputs, times=[float(t) for t in data["times"]], error=data["error"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:
        logger.warning("expected-output cache %s is unreadable (%s); recomputing", path, exc)
        return None


def _store(path: Path, expected: Expected, encoded_outputs: list[Any] | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = json.dumps({"outputs": encoded_outputs, "times": expected.times, "error": expected.error})
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as handle:
        handle.write(gzip.compress(blob.encode("utf-8", "surrogatepass"), mtime=0))
    os.replace(tmp, path)


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
        result = _run_asserts(task, task.reference, suite, executor, limits)
        verdict = _assert_verdict(task, suite, result, 0, executor, limits)
        error = None if verdict.passed else f"{verdict.status}: {verdict.failure}"
        return Expected(key=key, times=[result.wall_s], error=error), None, verdict.status in ("timeout", "sandbox_error")
    request = {"mode": "io", "program": task.reference, "setup": task.setup_code, "entry_point": task.entry_point,
               "inputs": [encode(args) for args in suite.inputs], "time_limits": None,
               "not_none": "always" if task.not_none else None}
    result = executor.run(request, limits)
    by_index = _records_by_index(result)
    encoded, times = [], []
    for k in range(len(suite)):
        record = by_index.get(k)
        if record is None or "out" not in record:
            why = _missing_reason(result, record)
            return Expected(key=key, error=f"input {k}: {why}"), None, result.status in ("timeout", "sandbox_error")
        encoded.append(record["out"])
        times.append(float(record.get("t", 0.0)))
    try:
        outputs = [decode(v) for v in encoded]
    except (ValueError, TypeError, RecursionError) as exc:
        return Expected(key=key, error=f"undecodable reference output: {exc}"), None, False
    return Expected(key=key, outputs=outputs, times=times), encoded, False


# ------------------------------------------------------------------------------------------
# Candidate runs and verdicts
# ------------------------------------------------------------------------------------------


def _records_by_index(result: RunResult) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for record in result.records:
        index = record.get("i")
        if type(index) is int and index not in out:
            out[index] = record
    return out


def _load_error(result: RunResult) -> str | None:
    for record in result.records:
        for key in ("load_error", "run_error"):
            if key in record:
                return f"{key}: {str(record[key])[:300]}"
    return None


def _missing_reason(result: RunResult, record: dict[str, Any] | None) -> str:
    if record is not None and record.get("timeout") is True:
        return "timed out"
    if record is not None and "err" in record:
        return f"raised {str(record['err'])[:300]}"
    return _load_error(result) or {"timeout": "run killed at the wall-clock limit",
                                   "output_limit": "output larger than the limit",
                                   "sandbox_error": f"sandbox error: {result.message}"}.get(
        result.status, "no result (the program exited early)")


def _io_suite_verdict(task: CodeTask, suite: IOSuite, expected: Expected, result: RunResult,
                      by_index: dict[int, dict[str, Any]], offset: int) -> SuiteResult:
    if result.status == "sandbox_error":
        return SuiteResult("sandbox_error", len(suite), failure=result.message)
    assert expected.outputs is not None
    passed, status, failure = 0, "pass", None
    for k, args in enumerate(suite.inputs):
        record = by_index.get(offset + k)
        ok = False
        if record is not None and "out" in record:
            try:
                ok = outputs_match(decode(record["out"]), expected.outputs[k], task.atol, oracle=task.oracle, args=args)
                why = "wrong output"
            except (ValueError, TypeError, RecursionError):
                why = "malformed output"
        else:
            why = _missing_reason(result, record)
        if ok:
            passed += 1
            continue
        if failure is None:
            failure = f"input {k}: {why}"
        if "timed out" in why or "wall-clock" in why:
            status = "timeout"
        elif status == "pass":
            status = "fail"
    return SuiteResult(status, len(suite), passed, failure)


def _io_time_limits(expected: Expected, config: HarnessConfig) -> tuple[list[float], float]:
    limits = [max(config.min_time_limit_s, config.time_limit_factor * t) for t in expected.times]
    return limits, min(config.max_suite_time_s, sum(limits))


def check_program(task: CodeTask, program: str, executor: Executor, config: HarnessConfig) -> ProgramResult:
    """Run `program` on every suite of `task` and judge it (the module docstring)."""
    suites = task.suites()
    expected = {name: expected_for(task, name, executor, config) for name in suites}
    broken = {name: e.error for name, e in expected.items() if e.error}
    if broken:
        raise UnusableTaskError(f"{task.task_id}: the reference fails its own tests ({broken}); the task is unusable")
    if isinstance(task.base, AssertSuite):
        return _check_asserts(task, program, suites, expected, executor, config)
    inputs, time_limits, wall = [], [], config.startup_s
    for name, suite in suites.items():
        assert isinstance(suite, IOSuite)
        per_input, suite_wall = _io_time_limits(expected[name], config)
        inputs += [encode(args) for args in suite.inputs]
        time_limits += per_input
        wall += suite_wall
    request = {"mode": "io", "program": program, "setup": task.setup_code, "entry_point": task.entry_point,
               "inputs": inputs, "time_limits": time_limits, "not_none": "unless_bool" if task.not_none else None}
    result = executor.run(request, replace(config.limits, wall_s=wall))
    by_index = _records_by_index(result)
    verdicts, offset = {}, 0
    for name, suite in suites.items():
        assert isinstance(suite, IOSuite)
        verdicts[name] = _io_suite_verdict(task, suite, expected[name], result, by_index, offset)
        offset += len(suite)
    return ProgramResult(task.task_id, verdicts["base"], verdicts.get("plus"), result.status, result.wall_s)


def _run_asserts(task: CodeTask, program: str, suite: AssertSuite, executor: Executor, limits: Limits) -> RunResult:
    request = {"mode": "expr", "program": program, "setup": task.setup_code,
               "exprs": [list(split.calls) for split in suite.split]}
    return executor.run(request, limits)


def _fast_check(fast: tuple[Any, ...], values: list[Any]) -> bool:
    kind, j = fast[0], fast[1]
    if kind == "eq":
        return bool(values[j] == fast[2])
    return bool(values[j]) if kind == "truthy" else not values[j]


def _assert_verdict(task: CodeTask, suite: AssertSuite, result: RunResult, offset: int, executor: Executor,
                    limits: Limits) -> SuiteResult:
    """Verdict of an assert suite from the values the run sent back (plus a trusted check run)."""
    if result.status == "sandbox_error":
        return SuiteResult("sandbox_error", len(suite), failure=result.message)
    by_index = _records_by_index(result)
    outcomes: dict[int, tuple[bool, str]] = {}
    pending: list[tuple[int, list[Any]]] = []
    for k, split in enumerate(suite.split):
        record = by_index.get(offset + k)
        try:
            values = [decode(v) for v in record["vals"]] if record is not None and "vals" in record else None
        except (ValueError, TypeError, RecursionError):
            values = None
            record = {"err": "malformed values"}
        if values is None or len(values) != len(split.calls):
            outcomes[k] = (False, _missing_reason(result, record))
        elif split.fast is not None:
            outcomes[k] = (_fast_check(split.fast, values), "assertion failed")
        else:
            pending.append((k, values))
    if pending:
        checks = [{"expr": suite.split[k].check, "values": [encode(v) for v in values]} for k, values in pending]
        request = {"mode": "check", "program": task.reference, "setup": task.setup_code, "checks": checks}
        checked = _records_by_index(executor.run(request, limits))
        for n, (k, _) in enumerate(pending):
            outcomes[k] = (checked.get(n, {}).get("ok") is True, "assertion failed")
    passed = sum(ok for ok, _ in outcomes.values())
    failing = [k for k in sorted(outcomes) if not outcomes[k][0]]
    if not failing:
        return SuiteResult("pass", len(suite), passed)
    why = outcomes[failing[0]][1]
    status = "timeout" if "wall-clock" in why or "timed out" in why else "fail"
    return SuiteResult(status, len(suite), passed, f"test {failing[0]} ({suite.asserts[failing[0]].strip()[:120]}): {why}")


def _check_asserts(task: CodeTask, program: str, suites: dict[str, Any], expected: dict[str, Expected],
                   executor: Executor, config: HarnessConfig) -> ProgramResult:
    all_tests = AssertSuite(tuple(a for s in suites.values() for a in s.asserts), task.base.targets)
    reference_s = sum(sum(e.times) for e in expected.values())
    wall = config.startup_s + min(config.max_suite_time_s * len(suites),
                                  max(config.min_time_limit_s * len(all_tests), config.time_limit_factor * reference_s))
    limits = replace(config.limits, wall_s=wall)
    result = _run_asserts(task, program, all_tests, executor, limits)
    verdicts, offset = {}, 0
    for name, suite in suites.items():
        verdicts[name] = _assert_verdict(task, suite, result, offset, executor, limits)
        offset += len(suite)
    return ProgramResult(task.task_id, verdicts["base"], verdicts.get("plus"), result.status, result.wall_s)
