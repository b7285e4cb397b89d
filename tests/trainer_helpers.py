"""Shared builders for trainer tests (imported by tests and by the 2-process script)."""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from antisd.trainer.config import AntiSDConfig
from antisd.trainer.core import AntiSDTrainer


def toy_rows(n: int = 16) -> list[dict]:
    rows = []
    for i in range(n):
        a, b = i % 5, i // 5
        rows.append({"prompt": f"What is {a} + {b}?", "answer": str(a + b),
                     "solution": f"{a} + {b} = {a + b}" if i % 3 else ""})
    return rows


def length_reward(prompts, completions, answer, **kwargs):
    """A deterministic stand-in reward that varies within a group: 1 when the length is even."""
    return [float(len(c) % 2 == 0) for c in completions]


def base_kwargs(output_dir: str | Path, **overrides) -> dict:
    kw = dict(
        output_dir=str(output_dir), bf16=False, report_to=[], max_steps=2, seed=0,
        per_device_train_batch_size=8, num_generations=4, max_completion_length=12,
        logging_steps=1, gradient_checkpointing=False, save_strategy="no",
        learning_rate=1e-3, temperature=1.0, top_k=0, top_p=1.0, beta=0.0,
        dataloader_num_workers=0, disable_tqdm=True,
    )
    kw.update(overrides)
    return kw


def make_trainer(model_path, output_dir, rows=None, reward=length_reward, trainer_cls=AntiSDTrainer,
                 config_cls=AntiSDConfig, **overrides):
    tok = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path)
    if config_cls is AntiSDConfig:
        overrides.setdefault("gate_warmup_steps", 1)
    args = config_cls(**base_kwargs(output_dir, **overrides))
    return trainer_cls(model=model, reward_funcs=[reward], args=args,
                       train_dataset=Dataset.from_list(rows or toy_rows()), processing_class=tok)


def teacher_and_student_on_the_same_prompt(tr, batch):
    """Generate for ``batch``, then score the completions as the teacher would with the student's own prompt
    as "privileged" prompt: (teacher logps, student logps, teacher entropy, student entropy, completion mask,
    too_long), each (B, T) but too_long (B,). Alignment demands u = t - s = 0 everywhere."""
    from trl import GRPOTrainer

    from antisd.method.context import TeacherContext

    tr.model.train()
    out = GRPOTrainer._generate_and_score_completions(tr, batch)
    contexts = [TeacherContext(prompt=x["prompt"], source="dataset", correct=False) for x in batch]
    t_logps, t_ent, too_long = tr.teacher_pass(contexts, out["completion_ids"], out["completion_mask"])
    s_logps, s_ent = tr.student_pass(out)
    return t_logps, s_logps, t_ent, s_ent, out["completion_mask"].bool(), too_long
