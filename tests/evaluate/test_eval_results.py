"""antisd.evaluate.results: scoring per benchmark format, failures as outcomes, re-scoring stored files, appends
that survive a torn line, settings written atomically."""

from __future__ import annotations

import pytest

from antisd.evaluate import (
    EvalError,
    PRESETS,
    check_gold,
    load_benchmark,
    main,
    preset_benchmark,
    read_records,
    score_completion,
    score_results,
)

from eval_helpers import SHARED, needs_shared, record, write_jsonl


@needs_shared
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_known_completions_score_per_benchmark_format(name):
    ds = load_benchmark(preset_benchmark(name, str(SHARED)), limit=2)
    for gold in ds["answer"]:
        value = gold.replace(",", "") if name == "gsm8k" else gold  # GSM8K writes 2,125; models write 2125
        right = [f"Reasoning ... so the answer is \\boxed{{{value}}}.",
                 f"Final Answer: The final answer is ${value}$. I hope it is correct.",  # Minerva/lm-eval format
                 f"Some work.\nAnswer: {value}"]  # DAPO format
        for completion in right:
            assert score_completion(completion, gold)["correct"], (name, gold, completion)
        assert score_completion("... \\boxed{987654321}", gold)["outcome"] == "wrong"
        assert check_gold(gold) == "ok"
    assert score_completion("\\boxed{025}", "025")["correct"] and score_completion("\\boxed{25}", "025")["correct"]


def test_failure_cases_are_outcomes_not_exceptions():
    assert score_completion("", "7") == {"extracted_answer": None, "extraction": "none", "outcome": "no_answer",
                                         "correct": False}
    assert score_completion("so \\boxed{7", "7")["outcome"] == "unclosed_box"
    assert score_completion("\\boxed{" + "x+" * 600 + "1}", "7")["outcome"] == "pred_unparseable"
    assert score_completion("\\boxed{7}", "@@@")["outcome"] == "gold_unparseable"
    assert check_gold("@@@") == "gold_unparseable" and check_gold("\\frac{1}{576}") == "ok"


def test_rescore_fixes_stored_outcomes_without_generation(tmp_path):
    out = tmp_path / "run"
    (out / "samples").mkdir(parents=True)
    rows = [record("m", "b", "p1", 0, False, completion="so \\boxed{1}", outcome="wrong"),  # mis-scored: correct
            record("m", "b", "p1", 1, True, completion="so \\boxed{2}")]  # mis-scored: wrong
    for r in rows:
        r["n_samples"] = 2
    write_jsonl(out / "samples" / "m__b.jsonl", rows)
    fixed = score_results(out)
    assert [(r["correct"], r["outcome"], r["extracted_answer"]) for r in fixed] == [(True, "correct", "1"), (False, "wrong", "2")]
    assert [r["correct"] for r in read_records(out / "samples" / "m__b.jsonl")] == [True, False]
    assert main(["--rescore", "--output_dir", str(out), "--plot", "false"]) == 0
    assert "| m | b | 1 | 2 | 50.0 |" in (out / "summary.md").read_text()


def test_appended_records_survive_a_torn_last_line_and_settings_are_written_atomically(tmp_path):
    from antisd.evaluate.results import RESULTS_VERSION, append_records, complete_problems, prepare_results

    path = tmp_path / "samples" / "m__b.jsonl"
    fp = {"version": 1, "temperature": 0.6}  # as written by antisd before per-sample seeds
    prepare_results(path, fp, overwrite=False, recorded={"batch_size": 4})
    assert [p.name for p in path.parent.iterdir()] == ["m__b.config.json"]  # no temp file left
    append_records(path, [record("m", "b", "p1", i, i == 0, k=2) for i in range(2)])
    with path.open("a", encoding="utf-8") as f:
        f.write('{"model": "m", "problem_id": "p2", "sample_in')  # a crash mid-line
    records = read_records(path)
    assert [(r["problem_id"], r["sample_index"]) for r in records] == [("p1", 0), ("p1", 1)]
    assert list(complete_problems(records, 2)) == ["p1"]
    assert RESULTS_VERSION == 2
    with pytest.raises(EvalError, match=r"other settings \(version: 1 -> 2\); pass --overwrite"):
        prepare_results(path, {**fp, "version": RESULTS_VERSION}, overwrite=False, recorded={})


def test_flexible_extraction_scores_a_bare_number_and_enters_the_fingerprint():
    from antisd.evaluate import EvalConfig, fingerprint

    assert score_completion("5 + 2 is 7.", "7")["outcome"] == "no_answer"
    scored = score_completion("5 + 2 is 7.", "7", extraction="flexible")
    assert (scored["extraction"], scored["extracted_answer"], scored["correct"]) == ("last_number", "7", True)
    bench = preset_benchmark("gsm8k")
    strict = fingerprint(EvalConfig(models=["m"], benchmarks=["gsm8k"]), "m", "m", bench)
    flexible = fingerprint(EvalConfig(models=["m"], benchmarks=["gsm8k"], answer_extraction="flexible"), "m", "m", bench)
    assert "answer_extraction" not in strict  # files written before the setting existed still resume
    assert flexible == {**strict, "answer_extraction": "flexible"}
    with pytest.raises(ValueError, match="answer_extraction='loose'"):
        EvalConfig(models=["m"], benchmarks=["gsm8k"], answer_extraction="loose")
