"""Harness verdicts: canonical solutions of the quirky tasks pass, oracles and tolerances as
EvalPlus, assertion suites, time limits from the reference, unusable tasks."""

from __future__ import annotations

import pytest

from antisd.data.code_benchmarks import load_tasks
from antisd.rewards.code.harness import HarnessConfig, UnusableTaskError, _io_time_limits, check_program, expected_for
from antisd.rewards.code.tasks import AssertSuite, CodeTask, IOSuite

QUIRKY_MBPP = ["Mbpp/2", "Mbpp/106", "Mbpp/120", "Mbpp/124", "Mbpp/252", "Mbpp/404", "Mbpp/580", "Mbpp/720",
               "Mbpp/793", "Mbpp/581", "Mbpp/558", "Mbpp/7", "Mbpp/259", "Mbpp/722"]
HUMANEVAL = ["HumanEval/0", "HumanEval/2", "HumanEval/32", "HumanEval/53", "HumanEval/115"]


@pytest.fixture(scope="module")
def tasks():
    return {t.task_id: t for name in ("humaneval_plus", "mbpp_plus", "mbpp_train") for t in load_tasks(name)}


@pytest.mark.parametrize("task_id", QUIRKY_MBPP + HUMANEVAL + ["mbpp-train-367", "mbpp-train-927", "mbpp-train-912"])
def test_canonical_solution_passes_base_and_plus(task_id, tasks, executor, harness_config):
    task = tasks[task_id]
    result = check_program(task, task.reference, executor, harness_config)
    assert result.passed(), (result.base, result.plus)


@pytest.mark.slow
def test_slow_task_mbpp_599_passes_with_its_measured_time_limit(tasks, executor, harness_config):
    task = tasks["Mbpp/599"]
    assert check_program(task, task.reference, executor, harness_config).passed()


def test_wrong_programs_fail_with_a_reason(tasks, executor, harness_config):
    task = tasks["HumanEval/0"]
    result = check_program(task, task.prompt + "    return True\n", executor, harness_config)
    assert not result.passed(plus=False) and "input" in result.base.failure
    result = check_program(task, "def has_close_elements(:\n", executor, harness_config)
    assert result.base.status == "fail" and "SyntaxError" in result.base.failure
    train = tasks["mbpp-train-1"]
    result = check_program(train, f"def {train.entry_point}(*args):\n    return 0\n", executor, harness_config)
    assert not result.passed() and "assertion failed" in result.base.failure


def test_find_zero_is_judged_by_its_oracle(tasks, executor, harness_config):
    task = tasks["HumanEval/32"]
    assert not check_program(task, task.prompt + "    return 12345.0\n", executor, harness_config).passed(plus=False)
    # a root found by plain bisection differs from the reference's Newton root, and still passes base
    bisect = task.prompt + (
        "    lo, hi = -1.0, 1.0\n    while poly(xs, lo) * poly(xs, hi) > 0:\n        lo, hi = 2 * lo, 2 * hi\n"
        "    for _ in range(200):\n        mid = (lo + hi) / 2\n"
        "        if poly(xs, lo) * poly(xs, mid) <= 0:\n            hi = mid\n        else:\n            lo = mid\n"
        "    return lo\n")
    result = check_program(task, bisect, executor, harness_config)
    assert result.base.passed, result.base


def test_float_tolerance_and_types(tasks, executor, harness_config):
    task = tasks["HumanEval/2"]  # truncate_number, atol 1e-6
    near = task.prompt + "    return number % 1.0 + 1e-9\n"
    assert check_program(task, near, executor, harness_config).passed()
    far = task.prompt + "    return number % 1.0 + 1e-3\n"
    assert not check_program(task, far, executor, harness_config).passed(plus=False)
    as_list = tasks["Mbpp/106"]  # expects a tuple: a list with the same items is wrong
    program = "def add_lists(test_list, test_tup):\n    return list(test_tup) + test_list\n"
    assert not check_program(as_list, program, executor, harness_config).passed(plus=False)


def test_set_oracle_accepts_any_order(tasks, executor, harness_config):
    task = tasks["Mbpp/2"]
    program = "def similar_elements(a, b):\n    return tuple(sorted(set(a) & set(b), reverse=True))\n"
    assert check_program(task, program, executor, harness_config).passed()


def test_non_fast_assertions_use_the_trusted_check_run(tasks, executor, harness_config):
    task = tasks["mbpp-train-912"]  # assert int(lobb_num(5, 3)) == 35
    assert all(split.fast is None for split in task.base.split)
    assert check_program(task, task.reference, executor, harness_config).passed()
    program = "def lobb_num(n, m):\n    return 1.0\n"
    assert not check_program(task, program, executor, harness_config).passed()


def test_candidate_time_limit_follows_the_reference(tasks, executor, harness_config):
    config = HarnessConfig(min_time_limit_s=1.0, time_limit_factor=4.0, max_suite_time_s=60.0)
    expected = expected_for(tasks["Mbpp/2"], "base", executor, harness_config)
    per_input, total = _io_time_limits(expected, config)
    assert per_input == [max(1.0, 4 * t) for t in expected.times] and total == min(60.0, sum(per_input))


def test_task_whose_reference_fails_is_unusable(executor, harness_config):
    broken = CodeTask(task_id="t/broken", benchmark="test", prompt="", entry_point="f",
                      reference="def f(x):\n    return 1 // x\n", base=IOSuite(([1], [0])))
    with pytest.raises(UnusableTaskError, match="input 1: raised ZeroDivisionError"):
        check_program(broken, "def f(x):\n    return 1\n", executor, harness_config)
    empty = CodeTask(task_id="t/empty", benchmark="test", prompt="", entry_point="f", reference="def f():\n    pass\n",
                     base=IOSuite(()))
    with pytest.raises(UnusableTaskError, match="no tests"):
        check_program(empty, "def f():\n    pass\n", executor, harness_config)
    bad_asserts = CodeTask(task_id="t/asserts", benchmark="test", prompt="", entry_point="g", reference="def g():\n    return 1\n",
                           base=AssertSuite(("assert g() == 2",), frozenset({"g"})))
    with pytest.raises(UnusableTaskError, match="assertion failed"):
        check_program(bad_asserts, "def g():\n    return 2\n", executor, harness_config)
