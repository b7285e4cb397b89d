"""Verdicts of one sandboxed run, decided here in the trusted process from plain data.

A run's records are untrusted (`antisd.rewards.code.records` read them under caps): each is parsed here
(`record_of`), and every label -- pass, fail, timeout, sandbox_error -- is decided on this side. IO suites
(`io_suite_verdict`): each input's output is compared with the reference's (`Expected`) by
`antisd.rewards.code.compare.outputs_match`, its time and record size checked against limits derived from
the reference's. Assert suites (`assert_verdict`): the values of the calls under test come back as plain
data and each assertion is checked here, or for other shapes in a second run that holds the reference
program but no candidate code. The order and the limits are `antisd.rewards.code.harness`'s.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from antisd.rewards.code.compare import outputs_match
from antisd.rewards.code.driver.wire import decode, encode
from antisd.rewards.code.executor import Executor, Limits, RunResult
from antisd.rewards.code.records import Item
from antisd.rewards.code.tasks import AssertSuite, CodeTask, IOSuite


@dataclass
class Expected:
    """The reference's results on one suite: outputs (IO suites) and times, or why it is unusable."""

    key: str
    outputs: list[Any] | None = None
    times: list[float] = field(default_factory=list)
    error: str | None = None
    sizes: list[int] = field(default_factory=list)  # bytes of each output's record (IO suites)


@dataclass
class SuiteResult:
    """Verdict of one suite: status "pass", "fail", "timeout" or "sandbox_error"; tests passed; why not."""

    status: str
    n_tests: int
    n_passed: int = 0
    failure: str | None = None  # the first failing test and why

    @property
    def passed(self) -> bool:
        return self.status == "pass"


RECORD_SLACK_BYTES = 64 << 10  # a record may exceed its cap (`record_cap`) by this much
_RECORD_FACTOR = 8  # an equal output's record can be this much longer (0 vs 0j, 0.5 vs 0.5000000000000001)
_LATE_FRACTION = 0.9  # a program's own timeout report counts as one when this side saw >= 90% of the limit


def record_of(item: Item | None) -> dict[str, Any] | None:
    """The JSON object of an item record, or None (no record, too large, not an object)."""
    if item is None or item.raw is None:
        return None
    try:
        record = json.loads(item.raw)
    except (ValueError, RecursionError):
        return None
    return record if type(record) is dict else None


def _text(value: Any) -> str:
    return value[:300] if type(value) is str else "(malformed)"


def described(record: dict[str, Any] | None) -> str:
    """Why a record is not an output: the program raised, reported a timeout, or sent something else."""
    if record is None:
        return "malformed or oversized record"
    if "err" in record:
        return f"raised {_text(record['err'])}"
    if record.get("timeout") is True:
        return "timed out"
    return "malformed record"


def missing(result: RunResult, index: int) -> tuple[str, str]:
    """(status, why) of an input with no record, from what this side saw of the run."""
    if result.killed_at == index:
        return "timeout", "exceeded its time limit (measured by the harness; the run was ended)"
    if result.status == "timeout" and "ready" not in result.control:
        return "timeout", "the program did not load within its time limit"
    for key in ("load_error", "run_error"):
        if key in result.control:
            return "fail", f"{key}: {_text(result.control[key])}"
    return {"timeout": ("timeout", "run killed at the wall-clock limit"),
            "output_limit": ("fail", "output larger than the limit"),
            "sandbox_error": ("sandbox_error", f"sandbox error: {result.message}")}.get(
        result.status, ("fail", "no result (the program exited early)"))


def judge_output(task: CodeTask, item: Item, record: dict[str, Any] | None, expected_out: Any, cap: int,
                  limit: float | None, args: Any) -> tuple[str, str]:
    """(status, why) of one IO input that sent a record; every label is decided on this side."""
    elapsed = item.elapsed_s
    if item.late:
        return "timeout", f"took {elapsed:.2f} s, limit {limit:.2f} s (measured by the harness)"
    if item.raw is None or len(item.raw) > cap:
        return "fail", f"output larger than the limit ({cap} bytes for this input)"
    if record is None or "out" not in record:
        if (record is not None and record.get("timeout") is True and limit is not None and elapsed is not None
                and elapsed >= _LATE_FRACTION * limit):
            return "timeout", f"took {elapsed:.2f} s, limit {limit:.2f} s (measured by the harness)"
        why = described(record)
        return "fail", "reported a timeout before its time limit" if why == "timed out" else why
    if outputs_match(decode(record["out"]), expected_out, task.atol, oracle=task.oracle, args=args):
        return "pass", ""
    return "fail", "wrong output"


def io_suite_verdict(task: CodeTask, suite: IOSuite, expected: Expected, result: RunResult, offset: int,
                      time_limits: list[float]) -> SuiteResult:
    """Verdict of an IO suite whose inputs are items ``offset ...`` of `result` (the first failure's reason kept)."""
    if result.status == "sandbox_error":
        return SuiteResult("sandbox_error", len(suite), failure=result.message)
    assert expected.outputs is not None
    passed, status, failure = 0, "pass", None
    for k, args in enumerate(suite.inputs):
        index = offset + k
        item = result.items[index] if index < len(result.items) else None
        if item is None:
            verdict, why = missing(result, index)
        else:
            try:
                verdict, why = judge_output(task, item, record_of(item), expected.outputs[k], record_cap(expected, k),
                                             time_limits[index] if time_limits else None, args)
            except Exception as exc:  # noqa: BLE001 - whatever the program sent, only this input fails
                verdict, why = "fail", f"output could not be judged ({type(exc).__name__}: {str(exc)[:200]})"
        if verdict == "pass":
            passed += 1
            continue
        if failure is None:
            failure = f"input {k}: {why}"
        if verdict in ("timeout", "sandbox_error"):
            status = verdict
        elif status == "pass":
            status = "fail"
    return SuiteResult(status, len(suite), passed, failure)


def record_cap(expected: Expected, k: int) -> int:
    """The longest record accepted for input k: a multiple of the reference's, plus slack."""
    size = expected.sizes[k] if k < len(expected.sizes) else 0
    return _RECORD_FACTOR * size + RECORD_SLACK_BYTES


def run_asserts(task: CodeTask, program: str, suite: AssertSuite, executor: Executor, limits: Limits) -> RunResult:
    """One sandboxed run of `program` that evaluates the calls under test of every assertion of `suite`."""
    request = {"mode": "expr", "program": program, "setup": task.setup_code,
               "exprs": [list(split.calls) for split in suite.split]}
    return executor.run(request, limits)


def _fast_check(fast: tuple[Any, ...], values: list[Any]) -> bool:
    kind, j = fast[0], fast[1]
    if kind == "eq":
        return bool(values[j] == fast[2])
    return bool(values[j]) if kind == "truthy" else not values[j]


def assert_values(result: RunResult, index: int, n_calls: int) -> tuple[list[Any] | None, str]:
    """The decoded values of one assertion's calls, or (None, why)."""
    item = result.items[index] if index < len(result.items) else None
    if item is None:
        return None, missing(result, index)[1]
    record = record_of(item)
    if record is None or type(record.get("vals")) is not list or len(record["vals"]) != n_calls:
        return None, described(record)
    try:
        return [decode(v) for v in record["vals"]], ""
    except (ValueError, TypeError, RecursionError, OverflowError) as exc:
        return None, f"malformed values ({type(exc).__name__})"


def assert_verdict(task: CodeTask, suite: AssertSuite, result: RunResult, offset: int, executor: Executor,
                    limits: Limits) -> SuiteResult:
    """Verdict of an assert suite from the values the run sent back (plus a trusted check run)."""
    if result.status == "sandbox_error":
        return SuiteResult("sandbox_error", len(suite), failure=result.message)
    outcomes: dict[int, tuple[bool, str]] = {}
    pending: list[tuple[int, list[Any]]] = []
    for k, split in enumerate(suite.split):
        values, why = assert_values(result, offset + k, len(split.calls))
        if values is None:
            outcomes[k] = (False, why)
        elif split.fast is not None:
            outcomes[k] = (_fast_check(split.fast, values), "assertion failed")
        else:
            pending.append((k, values))
    if pending:
        checks = [{"expr": suite.split[k].check, "values": [encode(v) for v in values]} for k, values in pending]
        request = {"mode": "check", "program": task.reference, "setup": task.setup_code, "checks": checks}
        checked = executor.run(request, limits)
        for n, (k, _) in enumerate(pending):
            record = record_of(checked.items[n] if n < len(checked.items) else None)
            outcomes[k] = (record is not None and record.get("ok") is True, "assertion failed")
    passed = sum(ok for ok, _ in outcomes.values())
    failing = [k for k in sorted(outcomes) if not outcomes[k][0]]
    if not failing:
        return SuiteResult("pass", len(suite), passed)
    k = failing[0]
    timed_out = result.killed_at == offset + k or (result.items[offset + k] is None and result.status == "timeout")
    return SuiteResult("timeout" if timed_out else "fail", len(suite), passed,
                       f"test {k} ({suite.asserts[k].strip()[:120]}): {outcomes[k][1]}")
