"""SmolLM2-135M-Instruct through the command line: a few AntiSD steps with and without LoRA (checkpointed every
step, resumed from the first checkpoint: the same weights, gate and logged values bit for bit), ``antisd eval`` on
the shipped GSM8K preset, ``antisd pmi`` on the rollouts the training run sampled.

Tiny settings (2 problems x 2 completions of 12 tokens per step, one torch thread): the gate is off (lambda = 0.5
from the first step) and the token term covers every rollout, so the weights move even though no 12-token
completion reaches an answer (reward 0: GRPO's advantage is 0 and only the token term trains)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from antisd.cli.main import main

pytestmark = pytest.mark.slow  # end-to-end training, evaluation and PMI runs (the fast suite: -m "not slow")

STEP = ["--dataset_name", "gsm8k_test", "--max_samples", "8", "--method", "antisd", "--gate", "none",
        "--token_term_rollouts", "all", "--max_steps", "2", "--num_generations", "2",
        "--per_device_train_batch_size", "4", "--max_completion_length", "12", "--gradient_checkpointing", "false",
        "--save_strategy", "steps", "--save_steps", "1", "--logging_steps", "1", "--report_to", "none",
        "--bf16", "false", "--seed", "0", "--disable_tqdm", "true", "--dump_rollouts_every", "1"]
LORA = ["--use_peft", "true", "--lora_r", "8", "--lora_alpha", "16", "--lora_dropout", "0.0",
        "--lora_target_modules", "q_proj", "v_proj", "--learning_rate", "1e-3"]
FULL = ["--learning_rate", "1e-5"]
LOGGED = ("loss", "grad_norm", "pmi/mean", "teacher/entropy_mean", "student/entropy_mean", "token_term/abs_mean")


def _train(model: Path, out: Path, extra: list[str]) -> int:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ANTISD_THREADS", "1")
        mp.setenv("HF_HUB_OFFLINE", "1")
        code = main(["train", "--model_name_or_path", str(model), "--output_dir", str(out), *STEP, *extra])
    torch.set_num_threads(1)
    return code


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    name = "adapter_model.safetensors" if (folder / "adapter_model.safetensors").exists() else "model.safetensors"
    return load_file(str(folder / name))


def _step_log(folder: Path, step: int) -> dict:
    history = json.loads((folder / "trainer_state.json").read_text())["log_history"]
    return next(h for h in history if h.get("step") == step and "loss" in h)


def _train_and_resume(model: Path, root: Path, extra: list[str]) -> tuple[Path, Path]:
    """Two steps, a checkpoint after each; then a second run resumed from checkpoint-1."""
    assert _train(model, root / "full", extra) == 0
    assert _train(model, root / "resumed", [*extra, "--resume_from_checkpoint", str(root / "full" / "checkpoint-1")]) == 0
    return root / "full", root / "resumed"


@pytest.fixture(scope="module")
def full_run(smollm2_path, tmp_path_factory):
    return _train_and_resume(smollm2_path, tmp_path_factory.mktemp("train-full"), FULL)


@pytest.fixture(scope="module")
def lora_run(smollm2_path, tmp_path_factory):
    return _train_and_resume(smollm2_path, tmp_path_factory.mktemp("train-lora"), LORA)


def _resumed_exactly(full: Path, resumed: Path) -> None:
    """checkpoint-2 of the resumed run equals the uninterrupted run's: weights, gate state, logged values."""
    one, two, again = (_weights(full / "checkpoint-1"), _weights(full / "checkpoint-2"),
                       _weights(resumed / "checkpoint-2"))
    assert any(not torch.equal(one[k], two[k]) for k in two)  # the second step moved the weights
    assert two.keys() == again.keys()
    assert all(torch.equal(two[k], again[k]) for k in two), [k for k in two if not torch.equal(two[k], again[k])][:5]
    state = "antisd_state.json"
    assert (json.loads((full / "checkpoint-2" / state).read_text())
            == json.loads((resumed / "checkpoint-2" / state).read_text()))
    a, b = _step_log(full, 2), _step_log(resumed, 2)
    assert {k: a[k] for k in LOGGED} == {k: b[k] for k in LOGGED}
    assert a["gate/lambda"] == 0.5 and a["token_term/active"] == 1 and a["context/none_frac"] == 0


def test_full_fine_tuning_steps_resume_exactly(full_run, smollm2_path):
    full, resumed = full_run
    base = load_file(str(smollm2_path / "model.safetensors"))
    one = _weights(full / "checkpoint-1")
    assert one.keys() == base.keys() and any(not torch.equal(one[k], base[k]) for k in base)  # the first step trained
    _resumed_exactly(full, resumed)


def test_lora_steps_resume_exactly(lora_run, smollm2_path):
    full, resumed = lora_run
    assert (full / "adapter_config.json").exists() and not (full / "model.safetensors").exists()
    two = _weights(full / "checkpoint-2")
    assert all("lora_" in k for k in two) and len(two) == 2 * 2 * 30  # A and B of q_proj and v_proj, 30 layers
    assert any(t.abs().max() > 0 for k, t in two.items() if "lora_B" in k)  # B starts at 0: the adapter trained
    _resumed_exactly(full, resumed)


@pytest.mark.parametrize("which", ["full_run", "lora_run"])
def test_the_final_model_loads_by_path_and_generates(which, request, smollm2_tokenizer):
    """What antisd eval and antisd pmi do with a run folder: load it by path (an adapter folder with its base)."""
    from transformers import AutoModelForCausalLM

    full, _ = request.getfixturevalue(which)
    model = AutoModelForCausalLM.from_pretrained(str(full)).eval()
    ids = smollm2_tokenizer.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}],
                                                add_generation_prompt=True, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=6, do_sample=False)
    assert out.shape[1] > ids.shape[1] and smollm2_tokenizer.decode(out[0, ids.shape[1]:]).strip()


def test_pmi_on_the_rollouts_the_run_sampled(full_run, smollm2_path, tmp_path, capsys):
    """antisd pmi re-scores the dumped rollouts with the base model: every rollout is scored, the telescoping check
    passes, and on the first step's rollouts (sampled and scored by the trainer before any update, so with the same
    weights) its student and teacher log-probs equal the ones the trainer dumped."""
    full, _ = full_run
    rollouts = full / "rollouts" / "rollouts.jsonl"
    dumped = [json.loads(line) for line in rollouts.read_text().splitlines()]
    assert len(dumped) == 2 * 4 and all(r["teacher_prompt"] for r in dumped)
    out = tmp_path / "pmi"
    assert main(["pmi", "--model", str(smollm2_path), "--rollouts", str(rollouts), "--output_dir", str(out),
                 "--bootstrap", "50", "--max_traces", "2", "--no_progress"]) == 0, capsys.readouterr().err[-2000:]
    summary = json.loads((out / "summary.json").read_text())["summary"]
    assert summary["n_rollouts"] == 8 and summary["n_tokens"] == 8 * 12
    assert summary["telescoping_checked"] == 8 and summary["telescoping_failed"] == 0
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    first = [(r, d) for r, d in zip(records, dumped) if d["step"] == 0]
    assert len(first) == 4
    for rec, row in first:
        assert rec["token_ids"] == row["completion_ids"]
        for key in ("student_logps", "teacher_logps"):
            torch.testing.assert_close(torch.tensor(rec[key]), torch.tensor(row[key]), atol=2e-4, rtol=0)
    later = [(r, d) for r, d in zip(records, dumped) if d["step"] == 1]  # sampled after one update: other weights
    assert any(abs(a - b) > 1e-3 for r, d in later for a, b in zip(r["student_logps"], d["student_logps"]))
    assert (out / "report.md").read_text().strip() and (out / "traces.html").exists()


def test_eval_on_the_gsm8k_preset(smollm2_path, smollm2_tokenizer, tmp_path, gsm8k_rows, capsys):
    """Greedy antisd eval on 3 GSM8K problems: the samples are the model's own greedy continuations of the
    problems rendered through its chat template with eval's system prompt (checked against generate)."""
    from antisd.data.problems import DEFAULT_SYSTEM_PROMPT

    out = tmp_path / "eval"
    args = ["eval", "--models", f"smol={smollm2_path}", "--benchmarks", "gsm8k", "--limit", "3", "--k", "1",
            "--temperature", "0", "--max_new_tokens", "16", "--backend", "transformers", "--device", "cpu",
            "--output_dir", str(out)]
    assert main(args) == 0, capsys.readouterr().err[-2000:]
    samples = [json.loads(line) for line in (out / "samples" / "smol__gsm8k.jsonl").read_text().splitlines()]
    assert [s["problem_id"] for s in samples] == [r["id"] for r in gsm8k_rows[:3]]
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(smollm2_path)).eval()
    for s, row in zip(samples, gsm8k_rows):
        ids = smollm2_tokenizer.apply_chat_template(
            [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}, {"role": "user", "content": row["problem"]}],
            add_generation_prompt=True, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            greedy = model.generate(ids, max_new_tokens=16, do_sample=False)[0, ids.shape[1]:]
        assert s["completion"] == smollm2_tokenizer.decode(greedy, skip_special_tokens=True)
        assert s["n_tokens"] == 16 and s["truncated"]
    csv = (out / "summary.csv").read_text().splitlines()
    assert csv[1].startswith("smol,gsm8k,3,1,")
    assert main(args) == 0  # resumable: the finished samples are kept, nothing is sampled again
    assert [json.loads(line) for line in (out / "samples" / "smol__gsm8k.jsonl").read_text().splitlines()] == samples
