"""antisd.evaluate.code: the humaneval_plus / mbpp_plus presets, generated (a scripted generator and the tiny
model, resumed) or from an EvalPlus samples file (--samples), per-task results, summary rows, bad input."""

from __future__ import annotations

import json

import pytest

import antisd.evaluate.code as evcode
import antisd.evaluate.run as run_module
from antisd.rewards.code import load_tasks
from antisd.evaluate import EvalConfig, EvalError, main, parse_benchmark, run_eval
from antisd.evaluate.generation import Sample

from eval_helpers import CountCalls, write_jsonl

HE = load_tasks("humaneval_plus")[:2]


@pytest.fixture(autouse=True)
def private_code_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTISD_CODE_CACHE", str(tmp_path / "code_cache"))


def test_code_presets_parse_with_k_only():
    bench = parse_benchmark("humaneval_plus")
    assert (bench.kind, bench.source, bench.k) == ("code", "humaneval_plus", 10)
    assert parse_benchmark("mbpp_plus?k=3").k == 3 and parse_benchmark("aime24").kind == "math"
    with pytest.raises(EvalError, match="takes only k=N"):
        parse_benchmark("mbpp_plus?problem=text")
    with pytest.raises(EvalError, match="k='x' must be a positive integer"):
        parse_benchmark("mbpp_plus?k=x")
    with pytest.raises(EvalError, match="code: \\['humaneval_plus', 'mbpp_plus'\\]"):
        parse_benchmark("x=data.jsonl?like=humaneval_plus")


def test_code_prompts_follow_evalplus():
    task = HE[0]
    chat = evcode.code_prompt(task, EvalConfig(models=["m"], benchmarks=["humaneval_plus"]))
    assert [m["role"] for m in chat] == ["user"]  # the maths default system prompt is not used
    assert chat[0]["content"].startswith("Please provide a self-contained Python script that solves the following "
                                         "problem in a markdown code block:\n```\nfrom typing import List")
    mine = evcode.code_prompt(task, EvalConfig(models=["m"], benchmarks=["humaneval_plus"], system_prompt="Be terse."))
    assert mine[0] == {"role": "system", "content": "Be terse."} and mine[1] == chat[0]
    plain = EvalConfig(models=["m"], benchmarks=["humaneval_plus"], prompt_format="plain")
    assert evcode.code_prompt(task, plain) == task.prompt == task.completion_prefix


def _samples_file(path):
    rows = [{"task_id": HE[0].task_id, "solution": HE[0].reference},
            {"task_id": HE[0].task_id, "completion": "    return False\n"},
            {"task_id": HE[1].task_id, "solution": HE[1].reference, "sample_index": 0},
            {"task_id": HE[1].task_id, "solution": "def separate_paren_groups(s):\n    return []\n", "sample_index": 1},
            {"task_id": HE[1].task_id, "solution": HE[1].reference, "sample_index": 1},  # a duplicate
            {"task_id": "HumanEval/9999", "solution": "x"}, {"solution": "no id"}]
    write_jsonl(path, rows)
    with open(path, "a", encoding="utf-8") as f:
        f.write("{torn line\n")
    return path


def test_a_samples_file_is_scored_with_per_task_results_and_summary(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--benchmarks", "humaneval_plus", "--samples", str(_samples_file(tmp_path / "mine.jsonl")),
                 "--output_dir", str(out), "--code_workers", "0", "--plot", "false"]) == 0
    printed = capsys.readouterr().out
    assert "| mine | humaneval_plus:base | 2 | 2 | 50.0 | 50.0 | 100.0 |" in printed
    assert "| mine | humaneval_plus:base+plus | 2 | 2 | 50.0 | 50.0 | 100.0 |" in printed
    results = json.loads((out / "code" / "mine__humaneval_plus.results.json").read_text())
    assert results["pass_at_k"] == {"base": {"1": 0.5, "2": 1.0}, "base+plus": {"1": 0.5, "2": 1.0}}
    assert (results["n_rows"], results["n_scored"], results["n_tasks_without_samples"]) == (8, 4, 162)
    skipped = results["skipped"]
    assert len(skipped) == 4 and any("line 5: HumanEval/1 sample_index 1 repeats line 4" in s for s in skipped)
    assert any("unknown task_id 'HumanEval/9999'" in s for s in skipped) and any("not JSON" in s for s in skipped)
    first = results["tasks"]["HumanEval/0"]
    assert (first["n"], first["base_passed"], first["plus_passed"]) == (2, 1, 1)
    assert first["samples"][1]["base_failure"].startswith("input ") and first["samples"][1]["line"] == 2
    assert (out / "summary.md").exists() and (out / "summary.csv").exists()


@pytest.mark.parametrize("argv, expected", [
    (["--benchmarks", "aime24", "--samples", "FILE"], "is scored on one code benchmark"),
    (["--benchmarks", "humaneval_plus", "mbpp_plus", "--samples", "FILE"], "is scored on one code benchmark"),
    (["--benchmarks", "humaneval_plus", "--samples", "FILE", "--models", "m"], "not both"),
    (["--benchmarks", "humaneval_plus", "--samples", "missing.jsonl"], "no such file"),
    (["--benchmarks", "humaneval_plus", "--samples", "FILE", "--code_sandbox", "gopher://x"], "code_sandbox="),
    (["--benchmarks", "humaneval_plus", "--samples", "UNKNOWN"], "no sample of"),
    (["--benchmarks", "humaneval_plus", "--samples", "LATIN1"], "is not UTF-8 text: byte 0xe9 at line 1 (offset 45)"),
])
def test_bad_samples_input_is_one_line_and_exit_code_2(tmp_path, capsys, argv, expected):
    good = _samples_file(tmp_path / "good.jsonl")
    unknown = write_jsonl(tmp_path / "unknown.jsonl", [{"task_id": "Mbpp/2", "solution": "x"}])
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes(json.dumps({"task_id": "HumanEval/0", "solution": "x = 'é'"}, ensure_ascii=False).encode("latin-1")
                       + b"\n")
    names = {"FILE": str(good), "UNKNOWN": str(unknown), "LATIN1": str(latin1)}
    out = tmp_path / "out"
    code = main([names.get(a, a) for a in argv] + ["--output_dir", str(out), "--code_workers", "0"])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and err.count("\n") == 1 and err.startswith("antisd eval: error: ")
    assert not out.exists()


class ScriptedGenerator:
    """Sample 0 of each task: its canonical solution in a fence; sample 1: a wrong function; 2+: no code.
    (release_generator empties a generator's __dict__: the calls are counted in `calls`, a list.)"""

    def __init__(self, tasks, calls):
        self.by_prompt = {t.prompt.strip(): t for t in tasks}
        self.calls = calls

    def encode(self, prompt):
        text = prompt[-1]["content"]
        task = next(t for key, t in self.by_prompt.items() if key in text)
        return [list(self.by_prompt.values()).index(task)]

    def generate(self, prompts, n, seeds):
        self.calls.append(len(prompts))
        tasks = list(self.by_prompt.values())
        texts = [lambda t: f"Sure.\n```python\n{t.reference}```\n", lambda t: "```python\ndef f():\n    return 0\n```"]
        return [[Sample(texts[j](tasks[ids[0]]) if j < 2 else "I cannot.", 7, False) for j in range(n)] for ids in prompts]


def test_generated_samples_are_scored_resumed_and_reported(tiny_model_path, tmp_path, monkeypatch):
    tasks = load_tasks("humaneval_plus")[:2] + load_tasks("mbpp_plus")[:2]
    calls = []
    monkeypatch.setattr(run_module, "make_generator", lambda *a: ScriptedGenerator(tasks, calls))
    cfg = EvalConfig(models=[f"m={tiny_model_path}"], benchmarks=["humaneval_plus?k=3", "mbpp_plus"], n_samples=3,
                     limit=2, batch_size=3, output_dir=str(tmp_path), show_progress=False, plot=False, code_workers=2)
    summary = run_eval(cfg)
    assert calls == [1, 1, 1, 1]  # batch_size 3 // k 3: one task per call
    for bench in ("humaneval_plus", "mbpp_plus"):
        for tests in ("base", "base+plus"):
            row = summary.row("m", f"{bench}:{tests}")
            assert row["n_problems"] == 2 and row["k"] == 3 and row["pass@1"] == pytest.approx(1 / 3)
            assert row["pass@3"] == 1.0 and row["no_answer_rate"] == pytest.approx(1 / 3) and row["n_wrong"] == 2
    with pytest.raises(KeyError):
        summary.row("m", "mean")  # no headline mean over code rows
    samples = [json.loads(line) for line in (tmp_path / "code" / "m__mbpp_plus.samples.jsonl").read_text().splitlines()]
    assert [(s["task_id"], s["sample_index"], s["extraction"]) for s in samples[:3]] == [
        ("Mbpp/2", 0, "extracted"), ("Mbpp/2", 1, "extracted"), ("Mbpp/2", 2, "no_code")]
    assert samples[0]["solution"] == tasks[2].reference and samples[2]["solution"] == ""
    assert json.loads((tmp_path / "code" / "m__humaneval_plus.samples.config.json").read_text())["fingerprint"][
        "n_samples"] == 3
    before = (tmp_path / "code" / "m__mbpp_plus.results.json").read_text()
    assert run_eval(cfg).rows == summary.rows and len(calls) == 4  # resumed: nothing sampled again
    assert (tmp_path / "code" / "m__mbpp_plus.results.json").read_text() == before
    path = tmp_path / "code" / "m__mbpp_plus.samples.jsonl"
    whole = path.read_text()
    path.write_text("".join(whole.splitlines(keepends=True)[:4]) + '{"task_id": "Mbpp/3", "sam')  # a crash mid-task
    assert run_eval(cfg).rows == summary.rows and len(calls) == 5 and path.read_text() == whole
    with pytest.raises(EvalError, match="holds samples drawn with other settings"):
        run_eval(EvalConfig(**{**vars(cfg), "temperature": 1.0}))


def test_the_tiny_model_samples_code_benchmarks_next_to_maths(tiny_model_path, toy_data, tmp_path, monkeypatch):
    """One runner loop: the model is loaded once for its maths and code benchmarks, and both resume."""
    counter = CountCalls(monkeypatch)
    loads, make = [], run_module.make_generator
    monkeypatch.setattr(run_module, "make_generator", lambda *a: loads.append(a[2]) or make(*a))
    spec = "?problem=question&answer=final&id=uid&solution="
    cfg = EvalConfig(models=[str(tiny_model_path)], benchmarks=[f"toy={toy_data}{spec}", f"toy3={toy_data}{spec}",
                                                              "humaneval_plus"],
                     n_samples=2, limit=1, batch_size=4, max_new_tokens=6, temperature=1.0, top_p=1.0,
                     output_dir=str(tmp_path), show_progress=False, plot=False, code_workers=0)
    summary = run_eval(cfg)
    label = summary.rows[0]["model"]
    assert {r["benchmark"] for r in summary.rows} == {"toy", "toy3", "mean", "humaneval_plus:base",
                                                      "humaneval_plus:base+plus"}
    assert summary.row(label, "mean")["n_problems"] == 2  # the maths benchmarks only
    code_row = summary.row(label, "humaneval_plus:base")
    assert code_row["n_samples"] == 2 and code_row["mean_tokens"] <= 6
    assert loads == [str(tiny_model_path)]
    calls = counter.calls
    run_eval(cfg)
    assert counter.calls == calls and len(loads) == 1  # every problem and task was finished: nothing loaded again
