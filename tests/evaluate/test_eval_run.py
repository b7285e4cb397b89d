"""antisd.evaluate.run: end-to-end runs on a tiny model, resume after a crash (byte-identical files), the
fingerprint, problem ids (a file's id column, repeated texts), the vLLM path (fake vllm) and ``antisd eval``
itself."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import antisd.evaluate as ev
from antisd.evaluate import EvalConfig, EvalError, main, read_records, run_eval
from antisd.evaluate.run import distinct_problem_ids

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
    from antisd.cli.main import main as antisd_main

    assert antisd_main(["eval", "--rescore", "--output-dir", str(out), "--plot", "false"]) == 0


# ---------------------------------------------------------------------------------------- problem identity


def _rows(texts, ids=True):
    return [{**({"id": f"q{i}"} if ids else {}), "problem": t, "answer": "2"} for i, t in enumerate(texts)]


def _eval(tiny_model_path, out, bench, **overrides):
    kwargs = {"models": [f"m={tiny_model_path}"], "benchmarks": [bench], "max_new_tokens": 3, "temperature": 1.0,
              "batch_size": 4, "output_dir": str(out), "show_progress": False, "plot": False}
    return run_eval(EvalConfig(**{**kwargs, **overrides}))


def test_a_files_id_column_names_its_problems_and_repeats_stay_separate(tiny_model_path, tmp_path):
    texts = ["1+1?", "What is 1+1?", "1+1?", "3-1?", "1+1?"]
    data = write_jsonl(tmp_path / "ids.jsonl", _rows(texts))
    summary = _eval(tiny_model_path, tmp_path / "a", f"d={data}?k=2")
    records = read_records(tmp_path / "a" / "samples" / "m__d.jsonl")
    assert [r["problem_id"] for r in records[::2]] == ["q0", "q1", "q2", "q3", "q4"]
    assert summary.row("m", "d")["n_problems"] == 5
    meta = json.loads((tmp_path / "a" / "samples" / "m__d.config.json").read_text())
    assert meta["fingerprint"]["id_column"] == "id" and meta["fingerprint"]["version"] == ev.RESULTS_VERSION

    no_ids = write_jsonl(tmp_path / "noids.jsonl", _rows(texts, ids=False))
    summary = _eval(tiny_model_path, tmp_path / "b", f"d={no_ids}?k=2")
    pids = [r["problem_id"] for r in read_records(tmp_path / "b" / "samples" / "m__d.jsonl")[::2]]
    assert summary.row("m", "d")["n_problems"] == 5 and len(set(pids)) == 5
    assert pids[2] == pids[0] + "#2" and pids[4] == pids[0] + "#3" and pids[1] != pids[0]
    completions = {pid: [r["completion"] for r in read_records(tmp_path / "b" / "samples" / "m__d.jsonl")
                         if r["problem_id"] == pid] for pid in pids}
    assert completions[pids[0]] != completions[pids[2]]  # a repeat is a problem of its own, with its own seeds


def test_an_id_column_that_repeats_an_id_is_refused(tiny_model_path, tmp_path, capsys):
    rows = _rows(["1+1?", "2+0?", "0+2?"])
    rows[2]["id"] = "q0"
    rows[2]["problem"] = "1+1?"  # the same id and text twice: not merged silently
    data = write_jsonl(tmp_path / "dup.jsonl", rows)
    code = main(["--models", f"m={tiny_model_path}", "--benchmarks", f"d={data}", "--output_dir", str(tmp_path / "o"),
                 "--show_progress", "false", "--plot", "false"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "'q0'" in err  # antisd.data.problems's row check, or the one below
    problems = [{"problem_id": pid, "prompt": "x", "answer": "1"} for pid in ("a", "b", "a")]
    with pytest.raises(EvalError, match="benchmark d: id 'a' .* is used by more than one row"):
        distinct_problem_ids(problems, ev.Benchmark("d", "d.jsonl", id_column="id"))
    assert [p["problem_id"] for p in distinct_problem_ids(problems, ev.Benchmark("d", "d.jsonl"))] == ["a", "b", "a#2"]


# ---------------------------------------------------------------------------------------- exact resume


def test_a_kill_mid_write_resumes_to_byte_identical_files(tiny_model_path, tmp_path, monkeypatch):
    """Chunks of two problems (k=2, batch 4), the second chunk torn after its first problem and a half line:
    the rerun draws that chunk whole again and the files equal an uninterrupted run's, byte for byte."""
    from antisd.evaluate.samples import SamplesFile

    texts = [f"What is {i} + 1?" for i in range(5)] + ["What is 0 + 1?"]
    data = write_jsonl(tmp_path / "d.jsonl", _rows(texts, ids=False))
    bench = f"d={data}?k=2"
    _eval(tiny_model_path, tmp_path / "full", bench)
    calls, append = [], SamplesFile.append

    def torn_append(self, records):
        records = list(records)
        calls.append(len(records))
        if len(calls) == 2:
            lines = [json.dumps(r, ensure_ascii=False) + "\n" for r in records]
            with open(self.path, "a", encoding="utf-8") as f:
                f.write("".join(lines[:2]) + lines[2][:25])
            raise KeyboardInterrupt("killed mid-write")
        append(self, records)

    monkeypatch.setattr(SamplesFile, "append", torn_append)
    with pytest.raises(KeyboardInterrupt):
        _eval(tiny_model_path, tmp_path / "killed", bench)
    monkeypatch.setattr(SamplesFile, "append", append)
    _eval(tiny_model_path, tmp_path / "killed", bench)
    for name in ("m__d.jsonl", "m__d.config.json"):
        assert (tmp_path / "killed" / "samples" / name).read_bytes() == (tmp_path / "full" / "samples" / name).read_bytes()
    assert (tmp_path / "killed" / "summary.csv").read_bytes() == (tmp_path / "full" / "summary.csv").read_bytes()
    assert not list((tmp_path / "killed" / "samples").glob(".*"))  # no temp files left


def test_damaged_settings_file_and_leftovers(tiny_model_path, tmp_path, caplog):
    data = write_jsonl(tmp_path / "d.jsonl", _rows(["1+1?"]))
    _eval(tiny_model_path, tmp_path / "o", f"d={data}?k=1")
    samples = tmp_path / "o" / "samples"
    (samples / ".m__d.jsonl.tmp-123").write_text("half a rewrite")
    _eval(tiny_model_path, tmp_path / "o", f"d={data}?k=1", batch_size=8)
    assert not (samples / ".m__d.jsonl.tmp-123").exists()
    assert any("batch_size (4 -> 8)" in r.getMessage() for r in caplog.records)
    (samples / "m__d.config.json").write_text('{"fingerprint": {"vers')
    with pytest.raises(EvalError, match=r"m__d.config.json is not valid JSON .*--overwrite"):
        _eval(tiny_model_path, tmp_path / "o", f"d={data}?k=1")
