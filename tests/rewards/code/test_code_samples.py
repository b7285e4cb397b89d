"""Scoring EvalPlus samples files (pass@k, bad rows) and the parallel scorer."""

from __future__ import annotations

import json

import pytest

from antisd.rewards.code.extract import CodeOutcome
from antisd.rewards.code.samples import score_samples
from antisd.rewards.code.score import CodeScorer
from antisd.rewards.code.tasks import CodeTask, IOSuite
from antisd.method.passk import pass_at_k

ADD = CodeTask(task_id="t/add", benchmark="test", prompt="def add(a, b):\n", entry_point="add",
               reference="def add(a, b):\n    return a + b\n", base=IOSuite(([1, 2], [3, 4])), plus=IOSuite(([10**30, 1],)),
               completion_prefix="def add(a, b):\n")
NEG = CodeTask(task_id="t/neg", benchmark="test", prompt="", entry_point="neg", reference="def neg(a):\n    return -a\n",
               base=IOSuite(([1],)))
BROKEN = CodeTask(task_id="t/broken", benchmark="test", prompt="", entry_point="f",
                  reference="def f(x):\n    raise ValueError(x)\n", base=IOSuite(([1],)))
EMPTY = CodeTask(task_id="t/empty", benchmark="test", prompt="", entry_point="f", reference="def f():\n    pass\n",
                 base=IOSuite(()))


@pytest.fixture(scope="module")
def scorer(executor, harness_config):
    with CodeScorer(executor, harness_config, workers=2) as pool:
        yield pool


def test_pass_at_k_and_bad_rows(scorer):
    plus_only_wrong = "def add(a, b):\n    return a + b if abs(a) < 10**6 else 0\n"
    lines = [
        json.dumps({"task_id": "t/add", "solution": ADD.reference}),
        json.dumps({"task_id": "t/add", "completion": "    return a + b\n"}),
        json.dumps({"task_id": "t/add", "solution": plus_only_wrong}),
        json.dumps({"task_id": "t/add", "solution": "def add(a, b):\n    return 0\n"}),
        json.dumps({"task_id": "t/add", "solution": ADD.reference}),  # beyond n_samples=4
        "{not json",
        json.dumps({"task_id": "t/nope", "solution": "x"}),
        json.dumps({"task_id": "t/neg"}),
        json.dumps(["t/neg", "x"]),
        json.dumps({"task_id": "t/neg", "solution": "def neg(a):\n    return a\n"}),
        json.dumps({"task_id": "t/neg", "solution": NEG.reference}),
        json.dumps({"task_id": "t/broken", "solution": "def f(x):\n    return 1\n"}),
        json.dumps({"task_id": "t/empty", "solution": "def f():\n    pass\n"}),
        "",
    ]
    report = score_samples(lines, [ADD, NEG, BROKEN, EMPTY], scorer, ks=(1, 2, 3), n_samples=4)
    assert report.tasks["t/add"].base == [True, True, True, False]
    assert report.tasks["t/add"].plus == [True, True, False, False]
    assert report.tasks["t/neg"].base == [False, True]
    reasons = "\n".join(report.skipped)
    for needle in ("line 5: t/add sample 5 exceeds n_samples=4", "line 6: not JSON", "line 7: unknown task_id 't/nope'",
                   "line 8: t/neg has neither", "line 9: no string task_id", "task t/broken: reference fails",
                   "task t/empty: reference fails its own tests (base: the suite has no tests)"):
        assert needle in reasons, (needle, reasons)
    assert len(report.skipped) == 7 and report.n_rows == 13 and report.n_scored == 6
    expected_base_1 = (pass_at_k(4, 3, 1) + pass_at_k(2, 1, 1)) / 2
    assert report.pass_at_k["base"][1] == pytest.approx(expected_base_1)
    assert report.pass_at_k["base+plus"][2] == pytest.approx((pass_at_k(4, 2, 2) + pass_at_k(2, 1, 2)) / 2)
    assert report.pass_at_k["base"][3] == pytest.approx(pass_at_k(4, 3, 3)) and report.n_tasks_below_k[3] == 1
    assert report.n_tasks_without_samples == 2


def test_scorer_outcomes_and_order(scorer):
    fence = "`" * 3
    completions = [f"{fence}python\n{ADD.reference}{fence}", "no code here", f"{fence}python\ndef neg(a):\n    return a\n{fence}",
                   f"{fence}python\nimport time\ndef add(a, b):\n    time.sleep(60)\n{fence}", f"{fence}python\n{BROKEN.reference}{fence}"]
    tasks = [ADD, ADD, NEG, ADD, BROKEN]
    outcomes, stats = scorer.score_completions(tasks, completions)
    assert outcomes == [CodeOutcome.PASSED, CodeOutcome.NO_CODE, CodeOutcome.FAILED, CodeOutcome.TIMEOUT,
                        CodeOutcome.UNUSABLE_TASK]
    assert (stats.n_calls, stats.n_extracted, stats.n_passed) == (5, 4, 1)
    raw, _ = scorer.score_completions([ADD], ["    return a + b\n"], mode="raw")
    assert raw == [CodeOutcome.PASSED]
    with pytest.raises(ValueError, match="2 completions but 1 tasks"):
        scorer.score_completions([ADD], ["a", "b"])


def test_inline_scorer_matches_the_pool(executor, harness_config, scorer):
    pairs = [(ADD, ADD.reference), (ADD, "def add(a, b):\n    return a * b\n"), (NEG, NEG.reference)]
    inline = CodeScorer(executor, harness_config, workers=0).score_programs(pairs)
    pooled = scorer.score_programs(pairs)
    assert [r.passed() for r in inline] == [r.passed() for r in pooled] == [True, False, True]


def test_lines_parsed_once_score_like_the_file_and_keep_their_rows(scorer, tmp_path):
    from antisd.rewards.code.samples import parse_jsonl

    neg = {"task_id": "t/neg", "solution": NEG.reference, "n_tokens": 5}
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join([json.dumps({"task_id": "t/add", "solution": ADD.reference}), "", "{bad",
                               json.dumps(neg)]))  # a blank line, junk, and a last line without its newline
    with open(path, encoding="utf-8") as handle:
        parsed = list(parse_jsonl(handle))
    assert [(line.number, line.terminated) for line in parsed] == [(1, True), (3, True), (4, False)]
    assert parsed[1].value is None and parsed[1].error.startswith("Expecting property name")
    from_path, from_lines = score_samples(path, [ADD, NEG], scorer), score_samples(parsed, [ADD, NEG], scorer)
    assert from_lines.skipped == from_path.skipped and len(from_lines.skipped) == 1
    assert from_lines.skipped[0].startswith("line 3: not JSON (Expecting property name")
    assert from_lines.pass_at_k == from_path.pass_at_k == {"base": {1: 1.0}, "base+plus": {1: 1.0}}
    assert from_lines.tasks["t/neg"].rows == [neg] and from_lines.tasks["t/neg"].details[0]["line"] == 4
