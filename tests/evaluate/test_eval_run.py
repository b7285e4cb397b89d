"""antisd.evaluate.run: end-to-end runs on a tiny model, resume after a crash, the fingerprint, the
vLLM path (fake vllm) and ``antisd eval`` itself."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import antisd.evaluate as ev
from antisd.evaluate import EvalConfig, EvalError, main, read_records, run_eval

from eval_helpers import CountCalls, fake_vllm, toy_config, write_jsonl


def test_end_to_end_tiny_model_writes_samples_summary_and_plot(baseline, tiny_model_path, toy_data):
    out, summary = baseline
    label = ev.model_label(str(tiny_model_path))[0]
    toy, toy3 = read_records(out / "samples" / f"{label}__toy.jsonl"), read_records(out / "samples" / f"{label}__toy3.jsonl")
    assert len(toy) == 2 * 2 and len(toy3) == 2 * 3  # k > batch_size: one problem in two calls
    assert [(r["problem_id"], r["sample_index"]) for r in toy3[:3]] == [("t0", 0), ("t0", 1), ("t0", 2)]
    for r in toy + toy3:
        assert set(r) >= {"model", "benchmark", "problem_id", "sample_index", "completion", "extracted_answer",
                          "correct", "n_tokens", "truncated", "outcome", "answer"}
        assert 1 <= r["n_tokens"] <= 6 and (not r["truncated"] or r["n_tokens"] == 6)
    row = summary.row(label, "toy")
    assert (row["n_problems"], row["k"], row["n_samples"]) == (2, 2, 4)
    assert summary.row(label, "mean")["n_problems"] == 4
    assert {"markdown", "csv"} <= set(summary.files) and (out / "summary.md").exists()
    meta = json.loads((out / "samples" / f"{label}__toy.config.json").read_text())
    assert meta["fingerprint"]["n_samples"] == 2 and meta["recorded"]["backend"] == "transformers"


def test_resume_after_a_crash_gives_the_same_summary(baseline, tiny_model_path, toy_data, tmp_path, monkeypatch):
    base_out, base = baseline
    cfg = toy_config(tiny_model_path, toy_data, tmp_path)
    crashing = CountCalls(monkeypatch, crash_at=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_eval(cfg)
    label = ev.model_label(str(tiny_model_path))[0]
    path = tmp_path / "samples" / f"{label}__toy.jsonl"
    assert [r["problem_id"] for r in read_records(path)] == ["t0", "t0"]  # the first chunk was flushed
    with path.open("a") as f:
        f.write('{"model": "tiny", "benchmark": "toy", "problem_id": "t1", "sample_')  # a crash mid-line
    monkeypatch.setattr(ev.TransformersGenerator, "generate", crashing.orig)
    resumed = CountCalls(monkeypatch)
    summary = run_eval(cfg)
    assert resumed.calls == 1 + 2 * 2  # toy: t1; toy3: two problems in two calls each
    assert summary.rows == base.rows
    for name in ("toy", "toy3"):
        key = lambda r: (r["problem_id"], r["sample_index"], r["completion"])  # noqa: E731
        again = sorted(map(key, read_records(tmp_path / "samples" / f"{label}__{name}.jsonl")))
        assert again == sorted(map(key, read_records(base_out / "samples" / f"{label}__{name}.jsonl")))
    assert run_eval(cfg).rows == base.rows and resumed.calls == 5  # nothing left to sample


def test_changed_sampling_settings_refuse_to_mix(baseline, tiny_model_path, toy_data, tmp_path, monkeypatch):
    out = tmp_path / "copy"
    shutil.copytree(baseline[0], out)
    with pytest.raises(EvalError, match=r"temperature: 1\.0 -> 0\.7.*--overwrite"):
        run_eval(toy_config(tiny_model_path, toy_data, out, temperature=0.7))
    calls = CountCalls(monkeypatch)
    summary = run_eval(toy_config(tiny_model_path, toy_data, out, temperature=0.7, limit=1, overwrite=True,
                                  benchmarks=[f"toy={toy_data}?problem=question&answer=final&id=uid&k=2"]))
    assert calls.calls == 1 and [r["n_problems"] for r in summary.rows] == [1]


def test_vllm_path_end_to_end_with_a_fake_vllm(tiny_model_path, tmp_path, monkeypatch):
    made = fake_vllm(monkeypatch)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    data = write_jsonl(tmp_path / "d.jsonl", [{"id": f"q{i}", "problem": "1+1?", "answer": "2"} for i in range(2)])
    summary = run_eval(EvalConfig(models=[f"fake={tiny_model_path}"], benchmarks=[f"d={data}?id=id&k=3"],
                                  backend="vllm", top_k=0, seed=5, output_dir=str(tmp_path / "o"),
                                  show_progress=False, plot=False))
    assert [(p["n"], p["top_k"], p["temperature"], p["max_tokens"]) for p in made] == [(3, -1, 0.6, 32768)] * 2
    assert made[0]["seed"] != made[1]["seed"]  # one seed per problem
    row = summary.row("fake", "d")
    assert [row["avg@k"], row["pass@2"], row["pass@3"]] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert (row["truncation_rate"], row["n_empty"], row["mean_tokens"]) == (pytest.approx(1 / 3), 2, 2.0)


def test_vllm_backend_is_checked_before_any_model_loads(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    data = write_jsonl(tmp_path / "d.jsonl", [{"id": "q0", "problem": "1+1?", "answer": "2"}])
    cfg = EvalConfig(models=["no/such-model"], benchmarks=[f"d={data}?id=id"], backend="vllm",
                     output_dir=str(tmp_path / "o"))
    with pytest.raises(EvalError, match="backend='vllm' needs the vllm package and a CUDA GPU"):
        run_eval(cfg)
    assert not (tmp_path / "o").exists()


def test_cli_runs_and_rescores(tiny_model_path, toy_data, tmp_path, capsys):
    spec = f"toy={toy_data}?problem=question&answer=final&id=uid"
    out = tmp_path / "cli"
    assert main(["--models", str(tiny_model_path), "--benchmarks", spec, "--k", "1", "--limit", "1",
                 "--max_new_tokens", "2", "--output_dir", str(out), "--show_progress", "false", "--plot", "false"]) == 0
    assert "| toy | 1 | 1 |" in capsys.readouterr().out
    from antisd.cli import main as antisd_main

    assert antisd_main(["eval", "--rescore", "--output-dir", str(out), "--plot", "false"]) == 0
