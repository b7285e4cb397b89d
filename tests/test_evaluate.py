"""antisd.evaluate: presets and specs, loading and prompts, scoring per benchmark format, pass@k
tables from a hand-built results file, re-scoring, resume, the fingerprint, the vLLM glue (with a
fake vllm module), the training callback and the CLI. CPU only, tiny model, nothing downloaded."""

from __future__ import annotations

import csv
import dataclasses
import importlib.machinery
import json
import shutil
import sys
import types
from pathlib import Path

import pandas as pd
import pytest
import torch

import antisd.evaluate as ev
from antisd.data import DEFAULT_SYSTEM_PROMPT
from antisd.evaluate import (
    PRESETS,
    Benchmark,
    EvalCallback,
    EvalConfig,
    EvalError,
    check_gold,
    load_benchmark,
    main,
    parse_benchmark,
    preset_benchmark,
    read_records,
    run_eval,
    score_completion,
    score_results,
    summarize,
    write_summary,
)

from paths import SHARED_DATA  # noqa: E402

SHARED = SHARED_DATA
needs_shared = pytest.mark.skipif(not (SHARED / "aime2024.jsonl").is_file(), reason="no ../shared/data")


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny matmuls on a shared 2-core machine: one thread is ~30x faster than two contending."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------- presets and specs


def test_presets_name_the_paper_benchmarks_with_paper_k():
    assert set(ev.PAPER_BENCHMARKS) <= set(PRESETS)
    assert {n: PRESETS[n].hub.k for n in PRESETS} == {
        "aime24": 32, "aime25": 32, "aime26": 32, "hmmt25": 32, "minerva": 4, "math500": 4, "gsm8k": 4}
    gsm = PRESETS["gsm8k"].hub
    assert (gsm.source, gsm.config, gsm.split, gsm.problem_column, gsm.answer_format) == (
        "openai/gsm8k", "main", "test", "question", "gsm8k")
    assert PRESETS["minerva"].hub.problem_column == "question"


def test_parse_benchmark_specs():
    assert parse_benchmark("aime24") == PRESETS["aime24"].hub
    assert parse_benchmark("aime24?k=8").k == 8
    b = parse_benchmark("mine=/x/data.jsonl?problem=question&answer=final&id=uid&solution=&k=2")
    assert b == Benchmark("mine", "/x/data.jsonl", problem_column="question", answer_column="final",
                          id_column="uid", solution_column=None, k=2)
    like = parse_benchmark("g=/tmp/gsm.parquet?like=gsm8k&split=train")
    assert (like.name, like.source, like.answer_format, like.problem_column, like.split) == (
        "g", "/tmp/gsm.parquet", "gsm8k", "question", "train")
    for bad, words in [("nope", "presets"), ("x=/a.jsonl?colour=red", "unknown option"), ("x=", "source"),
                       ("a b=/x.jsonl", "name"), ("aime24?k=0", "positive"), ("x=/a.jsonl?answer_format=yaml", "gsm8k")]:
        with pytest.raises(EvalError, match=words):
            parse_benchmark(bad)


@needs_shared
def test_presets_read_the_data_dir_when_the_file_is_there(tmp_path, monkeypatch):
    local = preset_benchmark("hmmt25", str(SHARED))
    assert (Path(local.source).name, local.id_column, local.k, local.split) == ("hmmt_feb2025.jsonl", "id", 32, "train")
    assert preset_benchmark("hmmt25", str(tmp_path)) == PRESETS["hmmt25"].hub  # missing file: the hub
    monkeypatch.setenv(ev.DATA_DIR_ENV, str(SHARED))
    cfg = EvalConfig(models=["m"], benchmarks=["minerva"])
    assert cfg.data_dir == str(SHARED) and Path(cfg.benchmark_specs()[0].source).name == "minerva_math.jsonl"


def test_config_checks_fail_before_any_model_loads():
    for kwargs, words in [({"models": []}, "models is empty"), ({"temperature": -1}, "temperature"),
                          ({"top_p": 0}, "top_p"), ({"limit": 0}, "limit"), ({"benchmarks": ["nope"]}, "presets"),
                          ({"models": ["a/x", "b/x"]}, "LABEL=PATH"), ({"backend": "tpu"}, "backend")]:
        with pytest.raises(ValueError, match=words):
            EvalConfig(**{"models": ["m"], "benchmarks": ["aime24"], **kwargs})
    assert ev.model_label("runs/grpo/checkpoint-200") == ("grpo_checkpoint-200", "runs/grpo/checkpoint-200")
    assert ev.model_label("base=Qwen/Qwen3-8B") == ("base", "Qwen/Qwen3-8B")
    assert ev.model_label("Qwen/Qwen3-8B")[0] == "Qwen3-8B"


# ---------------------------------------------------------------------------------------- loading and prompts


@needs_shared
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_real_benchmark_files_load_with_ids_answers_and_prompts(name):
    bench = preset_benchmark(name, str(SHARED))
    ds = load_benchmark(bench, limit=3)
    raw = [json.loads(line) for line in (SHARED / PRESETS[name].local_file).open(encoding="utf-8")][:3]
    assert ds["problem_id"] == [r["id"] for r in raw]
    assert ds["answer"] == [r["answer"] for r in raw]
    system, user = ds[0]["prompt"]
    assert system == {"role": "system", "content": DEFAULT_SYSTEM_PROMPT} and "\\boxed{}" in system["content"]
    assert user == {"role": "user", "content": raw[0]["problem"]}
    plain = load_benchmark(bench, limit=1, prompt_format="plain", system_prompt=None)
    assert plain[0]["prompt"] == raw[0]["problem"]


def test_hub_formats_load_through_their_preset_columns(tmp_path):
    """Small files in each hub dataset's published format, read with ?like=PRESET."""
    write_jsonl(tmp_path / "gsm8k.jsonl", [
        {"question": "Janet has 3 ducks ...", "answer": "She has 3 + 4 = <<3+4=7>>7.\n#### 7"},
        {"question": "A robe takes ...", "answer": "2 + 1 = 3 bolts\n#### 2,125"}])
    write_jsonl(tmp_path / "minerva.jsonl", [{"question": "Find the diameter ...", "answer": "1.6"}])
    pd.DataFrame({"problem_idx": [1, 2], "problem": ["Find $x$.", "Find $y$."], "answer": [70, 588]}).to_parquet(
        tmp_path / "aime25.parquet")
    pd.DataFrame({"problem": ["Convert ..."], "solution": ["We have $\\boxed{3}$."], "answer": ["3"],
                  "subject": ["Precalculus"], "level": [2], "unique_id": ["test/precalculus/807.json"]}).to_parquet(
        tmp_path / "math500.parquet")
    pd.DataFrame({"id": [60], "problem": ["Every morning Aya ..."], "solution": ["... $\\boxed{204}$"],
                  "answer": ["204"], "url": ["u"], "year": ["2024"]}).to_parquet(tmp_path / "aime24.parquet")
    gsm = load_benchmark(parse_benchmark(f"g={tmp_path / 'gsm8k.jsonl'}?like=gsm8k&split=train"))
    assert gsm["answer"] == ["7", "2,125"] and gsm["solution"][0].endswith("#### 7")
    assert gsm["problem_id"][0].startswith("p-")  # no id column: a hash of the problem text
    mv = load_benchmark(parse_benchmark(f"m={tmp_path / 'minerva.jsonl'}?like=minerva&split=train"))
    assert mv["answer"] == ["1.6"] and mv["solution"] == [None]
    ma = load_benchmark(parse_benchmark(f"a={tmp_path / 'aime25.parquet'}?like=aime25&split=train"))
    assert (ma["problem_id"], ma["answer"]) == (["1", "2"], ["70", "588"])
    m5 = load_benchmark(parse_benchmark(f"m5={tmp_path / 'math500.parquet'}?like=math500&split=train"))
    assert m5["problem_id"] == ["test/precalculus/807.json"]
    a4 = load_benchmark(parse_benchmark(f"a4={tmp_path / 'aime24.parquet'}?like=aime24&split=train"))
    assert (a4["problem_id"], a4["answer"], a4["solution"]) == (["60"], ["204"], ["... $\\boxed{204}$"])


def test_prompt_rendering_uses_the_chat_template(tiny_tokenizer):
    messages = [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}, {"role": "user", "content": "What is 1+1?"}]
    text = tiny_tokenizer.decode(ev.prompt_ids(tiny_tokenizer, messages, None))
    assert text == (f"<|im_start|>system\n{DEFAULT_SYSTEM_PROMPT}<|im_end|>\n"
                    "<|im_start|>user\nWhat is 1+1?<|im_end|>\n<|im_start|>assistant\n")
    assert tiny_tokenizer.decode(ev.prompt_ids(tiny_tokenizer, "What is 1+1?", None)) == "What is 1+1?"
    tiny_tokenizer.chat_template = "{{ messages[-1]['content'] }}{% if think %} /think{% endif %}"
    assert tiny_tokenizer.decode(ev.prompt_ids(tiny_tokenizer, messages, {"think": True})) == "What is 1+1? /think"


# ---------------------------------------------------------------------------------------- scoring


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


# ---------------------------------------------------------------------------------------- summary tables


def record(model, bench, pid, i, correct, *, k=4, outcome=None, completion="x", tokens=10, truncated=False,
           gold_check="ok", answer="1"):
    return {"model": model, "benchmark": bench, "problem_id": pid, "sample_index": i, "n_samples": k,
            "answer": answer, "completion": completion, "extracted_answer": None, "extraction": "boxed",
            "outcome": outcome or ("correct" if correct else "wrong"), "correct": correct, "n_tokens": tokens,
            "truncated": truncated, "gold_check": gold_check}


def hand_built(path: Path) -> Path:
    """m on b1 (k=4): p1 1/4 correct, p2 3/4 correct, p3 incomplete; m on b2 (k=2): p1 2/2, p2 0/2."""
    rows = [record("m", "b1", "p1", i, i == 0, tokens=10 * (i + 1), truncated=i == 3) for i in range(4)]
    rows += [record("m", "b1", "p2", i, i > 0) for i in range(4)]
    rows += [record("m", "b1", "p3", 0, True)]  # an unfinished problem: excluded and counted
    rows += [record("m", "b2", "p1", i, True, k=2) for i in range(2)]
    rows += [record("m", "b2", "p2", 0, False, k=2, completion="  ", outcome="no_answer", gold_check="gold_unparseable"),
             record("m", "b2", "p2", 1, False, k=2, outcome="gold_unparseable", gold_check="gold_unparseable")]
    return write_jsonl(path, rows)


def test_pass_at_k_table_on_a_hand_built_results_file(tmp_path):
    rows = summarize(read_records(hand_built(tmp_path / "r.jsonl")))
    b1, b2, mean = rows
    assert (b1["benchmark"], b1["n_problems"], b1["k"], b1["n_incomplete_problems"]) == ("b1", 2, 4, 1)
    # p1: n=4, c=1: pass@1 1/4, pass@2 1 - C(3,2)/C(4,2) = 1/2, pass@3 1 - C(3,3)/C(4,3) = 3/4, pass@4 1
    # p2: n=4, c=3: pass@1 3/4, pass@j>=2 = 1
    assert b1["avg@k"] == pytest.approx(0.5)
    assert [b1[f"pass@{j}"] for j in range(1, 5)] == pytest.approx([0.5, 0.75, 0.875, 1.0])
    assert b1["mean_tokens"] == pytest.approx((10 + 20 + 30 + 40 + 4 * 10) / 8)
    assert b1["truncation_rate"] == pytest.approx(1 / 8)
    assert [b2["avg@k"], b2["pass@1"], b2["pass@2"]] == pytest.approx([0.5, 0.5, 0.5])
    assert (b2["n_empty"], b2["n_no_answer"], b2["n_gold_unparseable"], b2["n_gold_unparseable_problems"]) == (1, 1, 1, 1)
    assert b2["no_answer_rate"] == pytest.approx(0.25)
    assert mean["benchmark"] == "mean" and mean["avg@k"] == pytest.approx(0.5)  # the paper's mean over benchmarks
    assert mean["pass@2"] == pytest.approx((0.75 + 0.5) / 2) and "pass@3" not in mean
    files = write_summary(rows, tmp_path)
    table = list(csv.DictReader(files["csv"].open()))
    assert [r["benchmark"] for r in table] == ["b1", "b2", "mean"] and float(table[0]["pass@3"]) == 0.875
    assert table[1]["pass@3"] == "" and table[1]["n_incomplete_problems"] == "0"
    md = files["markdown"].read_text()
    assert "| m | b1 | 2 | 4 | 50.0 | 50.0 | 75.0 | 100.0 | 18 | 12.5 | 0.0 |" in md  # pass@1, 2, 4 (powers of 2, k)
    png = ev.plot_pass_at_k(rows, tmp_path / "p.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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


# ---------------------------------------------------------------------------------------- generation, resume


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("toy") / "toy.jsonl"
    return write_jsonl(path, [{"uid": f"t{i}", "question": f"What is {i} + 1?", "final": str(i + 1)} for i in range(4)])


def toy_config(model: Path, data: Path, out: Path, **overrides) -> EvalConfig:
    spec = f"?problem=question&answer=final&id=uid&solution="
    kwargs = {"models": [str(model)], "benchmarks": [f"toy={data}{spec}&k=2", f"toy3={data}{spec}&k=3"],
              "limit": 2, "batch_size": 2, "max_new_tokens": 6, "temperature": 1.0, "top_p": 1.0,
              "output_dir": str(out), "show_progress": False, "plot": False}
    return EvalConfig(**{**kwargs, **overrides})


class CountCalls:
    """Wraps TransformersGenerator.generate; raises `crash` on call number `crash_at`."""

    def __init__(self, monkeypatch, crash_at: int | None = None):
        self.calls, self.crash_at, self.orig = 0, crash_at, ev.TransformersGenerator.generate
        monkeypatch.setattr(ev.TransformersGenerator, "generate", self)

    def __get__(self, obj, objtype=None):
        return lambda *args: self(obj, *args)

    def __call__(self, gen, prompts, n, seeds):
        self.calls += 1
        if self.calls == self.crash_at:
            raise RuntimeError("simulated crash")
        return self.orig(gen, prompts, n, seeds)


@pytest.fixture(scope="module")
def baseline(tiny_model_path, toy_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("baseline")
    return out, run_eval(toy_config(tiny_model_path, toy_data, out))


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


# ---------------------------------------------------------------------------------------- vLLM glue (fake vllm)


def fake_vllm(monkeypatch) -> list:
    """A stand-in vllm module: sample i of each request is \\boxed{2}, \\boxed{3} or "" (truncated)."""
    made: list = []

    class SamplingParams:
        def __init__(self, **kwargs):
            self.__dict__.update(kwargs)
            made.append(kwargs)

    class LLM:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

        def generate(self, prompts, sampling_params, use_tqdm):
            assert all("prompt_token_ids" in p for p in prompts) and len(prompts) == len(sampling_params)
            texts = [("\\boxed{2}", "stop"), ("\\boxed{3}", "stop"), ("", "length")]
            return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text=t, token_ids=[1] * (i + 1), finish_reason=r)
                                                   for i, (t, r) in zip(range(sp.n), texts)]) for sp in sampling_params]

    module = types.ModuleType("vllm")
    module.__spec__ = importlib.machinery.ModuleSpec("vllm", None)
    module.LLM, module.SamplingParams = LLM, SamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    return made


def test_backend_choice(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    fake_vllm(monkeypatch)
    assert ev.resolve_backend("auto") == "vllm" and ev.resolve_backend("transformers") == "transformers"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert ev.resolve_backend("auto") == "transformers"
    with pytest.raises(EvalError, match="CUDA"):
        ev.resolve_backend("vllm")


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


# ---------------------------------------------------------------------------------------- training callback


def test_eval_callback_logs_through_the_trainer(tiny_model_path, tmp_path):
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    train = datasets.Dataset.from_dict({"input_ids": [[5, 6, 7, 8]] * 4, "labels": [[5, 6, 7, 8]] * 4})
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=2, logging_steps=1,
                             report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=train, processing_class=tok)
    problems = [{"problem_id": "a", "prompt": [{"role": "user", "content": "1+1?"}], "answer": "2"},
                {"problem_id": "b", "prompt": "2+2?", "answer": "4"}]
    callback = ev.attach_eval_callback(trainer, problems, eval_steps=2, k=2, max_new_tokens=4, temperature=1.0)
    trainer.train()
    logged = [h for h in trainer.state.log_history if "eval/avg@2" in h]
    assert [h["step"] for h in logged] == [2] and 0 <= logged[0]["eval/pass@2"] <= 1
    assert logged[0]["eval/mean_tokens"] <= 4 and callback.history[0]["step"] == 2


def test_eval_callback_unbound_merges_into_the_next_log(tiny_model, tiny_tokenizer):
    from transformers import TrainerControl, TrainerState

    callback = EvalCallback([{"problem_id": "a", "prompt": "1+1?", "answer": "2"}], eval_steps=3, k=1, max_new_tokens=2)
    state, control = TrainerState(), TrainerControl()
    tiny_model.train()
    state.global_step = 2
    callback.on_step_end(None, state, control, model=tiny_model, processing_class=tiny_tokenizer)
    assert state.log_history == []
    state.global_step = 3
    callback.on_step_end(None, state, control, model=tiny_model, processing_class=tiny_tokenizer)
    assert state.log_history[-1]["step"] == 3 and "eval/avg@1" in state.log_history[-1]
    assert tiny_model.training  # back in train mode after evaluating in eval mode
    logs = {"loss": 1.0}
    callback.on_log(None, state, control, logs=logs)
    assert set(logs) >= {"loss", "eval/avg@1", "eval/pass@1", "eval/truncation_rate"}
    with pytest.raises(ValueError, match="eval_steps"):
        EvalCallback([{"problem_id": "a", "prompt": "x", "answer": "1"}], eval_steps=0)


# ---------------------------------------------------------------------------------------- CLI


def test_cli_help_flags_config_and_errors(tiny_model_path, toy_data, tmp_path, capsys):
    help_text = ev.build_parser().format_help()
    for f in dataclasses.fields(EvalConfig):
        assert f"--{f.name}" in help_text
    config = tmp_path / "eval.yaml"
    config.write_text(f"models: {tiny_model_path}\nmax_new_tokens: 50\ntemperature: 1.0\n")
    cfg = ev.parse_args(["--config", str(config), "--benchmark", "aime24", "-k", "2", "--max-new-tokens", "3",
                         "--limit", "none", "--chat_template_kwargs", '{"enable_thinking": false}', "--overwrite"])
    assert (cfg.models, cfg.n_samples, cfg.max_new_tokens, cfg.temperature, cfg.limit, cfg.overwrite) == (
        [str(tiny_model_path)], 2, 3, 1.0, None, True)
    assert cfg.chat_template_kwargs == {"enable_thinking": False}
    assert main(["--models", "m", "--benchmarks", "nope"]) == 2
    assert "presets" in capsys.readouterr().err
    spec = f"toy={toy_data}?problem=question&answer=final&id=uid"
    out = tmp_path / "cli"
    assert main(["--models", str(tiny_model_path), "--benchmarks", spec, "--k", "1", "--limit", "1",
                 "--max_new_tokens", "2", "--output_dir", str(out), "--show_progress", "false", "--plot", "false"]) == 0
    assert "| toy | 1 | 1 |" in capsys.readouterr().out
    from antisd.cli import main as antisd_main

    assert antisd_main(["eval", "--rescore", "--output-dir", str(out), "--plot", "false"]) == 0
