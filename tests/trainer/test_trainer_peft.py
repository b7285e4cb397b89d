"""AntiSD with LoRA (PEFT through TRL's ``peft_config``): only adapter weights train, the teacher is
the adapted model (its log-probs move with the adapter), resume restores adapter and gate exactly,
and an adapter checkpoint loads by path as the evaluation and PMI tools load models (issue 13)."""

import json
import math

import pytest
import torch
from datasets import Dataset
from peft import LoraConfig, PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import GRPOTrainer

from antisd.trainer.config import AntiSDConfig
from antisd.method.context import TeacherContext
from antisd.trainer.checkpoints import STATE_FILE
from antisd.trainer.core import AntiSDTrainer

from trainer_helpers import base_kwargs, length_reward, toy_rows

pytestmark = pytest.mark.slow  # trains tiny models end to end (the fast suite: -m 'not slow')

pytestmark = pytest.mark.slow  # trains tiny models end to end

LORA = dict(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")


def _lora_trainer(model_path, out, **overrides):
    overrides.setdefault("gate_warmup_steps", 1)
    args = AntiSDConfig(**base_kwargs(out, **overrides))
    return AntiSDTrainer(model=str(model_path), reward_funcs=[length_reward], args=args,
                         train_dataset=Dataset.from_list(toy_rows()),
                         processing_class=AutoTokenizer.from_pretrained(model_path), peft_config=LoraConfig(**LORA))


def _teacher_logps(tr, batch):
    tr.model.train()
    out = GRPOTrainer._generate_and_score_completions(tr, batch)
    contexts = [TeacherContext(prompt=x["prompt"] + " Hint: " + x["solution"], source="dataset", correct=False)
                for x in batch]
    t_logps, _, _ = tr.teacher_pass(contexts, out["completion_ids"], out["completion_mask"])
    return t_logps, out["completion_mask"].bool()


def test_lora_trains_only_the_adapter_and_the_teacher_is_the_adapted_model(tiny_model_path, tmp_path):
    tr = _lora_trainer(tiny_model_path, tmp_path, method="antisd", gate="none", max_steps=3, learning_rate=5e-2)
    assert isinstance(tr.model, PeftModel)
    before = {n: p.detach().clone() for n, p in tr.model.named_parameters()}
    torch.manual_seed(0)
    batch = [tr.train_dataset[i] for i in range(2) for _ in range(4)]
    t_before, mask = _teacher_logps(tr, batch)
    tr.train()
    after = dict(tr.model.named_parameters())
    lora = [n for n in before if "lora_" in n]
    assert lora and all(not torch.equal(before[n], after[n]) for n in lora if "lora_B" in n)
    assert all(torch.equal(before[n], after[n]) for n in before if "lora_" not in n)
    # the teacher pass runs the adapted weights: the same completions now score differently
    torch.manual_seed(0)
    t_after, mask2 = _teacher_logps(tr, batch)
    same = mask & mask2
    assert not torch.allclose(t_before[same], t_after[same])
    assert all(math.isfinite(h["loss"]) for h in tr.state.log_history if "loss" in h)


def test_lora_resume_restores_adapter_and_gate_exactly(tiny_model_path, tmp_path):
    common = dict(method="antisd", gate_warmup_steps=2, max_steps=4, save_strategy="steps", save_steps=2)
    full = _lora_trainer(tiny_model_path, tmp_path / "full", **common)
    full.train()
    resumed = _lora_trainer(tiny_model_path, tmp_path / "resumed", **common)
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-2"))
    a = load_file(str(tmp_path / "full" / "checkpoint-4" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "checkpoint-4" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ga = json.loads((tmp_path / "full" / "checkpoint-4" / STATE_FILE).read_text())
    gb = json.loads((tmp_path / "resumed" / "checkpoint-4" / STATE_FILE).read_text())
    assert ga == gb and ga["gate"]["reference"] is not None


def test_adapter_checkpoint_loads_by_path_with_its_base(tiny_model_path, tmp_path):
    tr = _lora_trainer(tiny_model_path, tmp_path, method="antisd", max_steps=2, save_strategy="steps", save_steps=2,
                       learning_rate=5e-2)
    tr.train()
    ckpt = tmp_path / "checkpoint-2"
    assert (ckpt / "adapter_config.json").exists() and not (ckpt / "model.safetensors").exists()
    loaded = AutoModelForCausalLM.from_pretrained(ckpt)  # what antisd eval / antisd pmi do with a path
    base = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        out_loaded, out_base = loaded(ids).logits, base(ids).logits
        out_trained = tr.model.eval()(input_ids=ids).logits
    torch.testing.assert_close(out_loaded, out_trained, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(out_loaded, out_base)


@pytest.mark.slow
def test_lora_with_the_fast_paths(tiny_model_path, tmp_path):
    """fast_logprobs, length-bucketed passes and pruned generation run on the PEFT model too."""
    tr = _lora_trainer(tiny_model_path, tmp_path, method="antisd", max_steps=2, fast_logprobs=True,
                       logps_batch_rows=3, generation_prune_finished=True)
    from antisd.trainer.generation import prunable_model

    assert prunable_model(tr) is not None
    tr.train()
    assert all(math.isfinite(h["loss"]) for h in tr.state.log_history if "loss" in h)


def test_antisd_eval_and_pmi_run_on_an_adapter_checkpoint(tiny_model_path, tmp_path, capsys):
    from antisd.cli.main import main

    tr = _lora_trainer(tiny_model_path, tmp_path / "run", method="antisd", max_steps=1, save_strategy="steps",
                       save_steps=1, learning_rate=5e-2)
    tr.train()
    ckpt = tmp_path / "run" / "checkpoint-1"
    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps({"id": f"q{i}", "problem": f"What is {i} + 1?", "answer": str(i + 1)}) + "\n"
                            for i in range(3)))
    assert main(["eval", "--models", f"lora={ckpt}", "--benchmarks", f"mine={data}", "--k", "1",
                 "--max_new_tokens", "3", "--output_dir", str(tmp_path / "eval"), "--show_progress", "false",
                 "--plot", "false"]) == 0
    assert "| mine | 3 | 1 |" in capsys.readouterr().out
    assert main(["pmi", "--model", str(ckpt), "--dataset", str(data), "--samples_per_problem", "2",
                 "--max_new_tokens", "4", "--output_dir", str(tmp_path / "pmi"), "--bootstrap", "10",
                 "--max_traces", "1", "--progress", "false"]) == 0
    assert len((tmp_path / "pmi" / "records.jsonl").read_text().splitlines()) == 6
