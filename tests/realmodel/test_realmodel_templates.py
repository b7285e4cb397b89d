"""Teacher and student prompts through SmolLM2's own ChatML template: the completion tokens sit at the same
positions behind both prompts.

The template adds its own system prompt ("You are a helpful AI assistant named SmolLM, ...") when the messages
have none; antisd puts the privileged context into the last user message, so the teacher's prompt must keep the
student's system block (injected or given) and end with the same generation prefix
``<|im_end|>\\n<|im_start|>assistant\\n``, token for token. SmolLM2's template has no thinking variant: it ignores
``enable_thinking`` (checked below, so a template change would show)."""

from __future__ import annotations

import copy

import pytest
import torch
from datasets import Dataset
from trl import GRPOTrainer

from antisd.method.context import ContextConfig, TeacherContext, build_teacher_contexts
from antisd.data.problems import DEFAULT_SYSTEM_PROMPT, DataConfig, make_prompt

from trainer_helpers import make_trainer, teacher_and_student_on_the_same_prompt

SMOLLM_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
GENERATION_PREFIX = "<|im_end|>\n<|im_start|>assistant\n"


def _rows(gsm8k_rows, system_prompt, n=2):
    cfg = DataConfig(dataset_name="gsm8k_test", system_prompt=system_prompt)
    return [{"prompt": make_prompt(r["problem"], cfg), "answer": r["answer"], "solution": r["solution"]}
            for r in gsm8k_rows[:n]]


def _teacher_prompts(rows, completions, correct):
    contexts = build_teacher_contexts([r["prompt"] for r in rows], completions, [float(c) for c in correct],
                                      list(range(len(rows))), solutions=[r["solution"] for r in rows],
                                      answers=[r["answer"] for r in rows], config=ContextConfig())
    assert [c.source for c in contexts] == ["dataset"] * len(rows)
    return [c.prompt for c in contexts]


@pytest.fixture
def trainer(smollm2_path, tmp_path):
    def build(rows, **overrides):
        kw = dict(method="antisd", per_device_train_batch_size=4, num_generations=2, max_completion_length=10)
        return make_trainer(smollm2_path, tmp_path, rows=rows, **{**kw, **overrides})
    return build


@pytest.mark.parametrize("system_prompt", [DEFAULT_SYSTEM_PROMPT, None], ids=["own-system", "injected-system"])
def test_teacher_and_student_prompts_share_the_system_block_and_the_generation_prefix(
        trainer, gsm8k_rows, smollm2_tokenizer, system_prompt):
    rows = _rows(gsm8k_rows, system_prompt)
    tr = trainer(rows)
    tok = smollm2_tokenizer
    teacher = _teacher_prompts(rows, ["x", "y"], [True, False])
    s_ids, _, _ = tr._tokenize_prompts([r["prompt"] for r in rows])
    t_ids, _, _ = tr._tokenize_prompts(teacher)
    tail = tok(GENERATION_PREFIX, add_special_tokens=False).input_ids
    assert tail == [2, 198, 1, 520, 9531, 198]  # <|im_end|> \n <|im_start|> assistant \n: special tokens, no merge
    system = system_prompt or SMOLLM_SYSTEM
    head = tok(f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n", add_special_tokens=False).input_ids
    for s, t, row in zip(s_ids, t_ids, rows):
        s, t = list(s), list(t)
        assert s[-len(tail):] == tail and t[-len(tail):] == tail
        assert s[:len(head)] == head and t[:len(head)] == head
        assert len(t) > len(s) + 50  # the reference solution and the feedback are in the teacher's prompt
        text = tok.decode(t)
        assert row["solution"] in text and "Feedback: the attempt below was checked and is" in text
        assert text.count("<|im_start|>system") == 1


def test_the_thinking_switch_changes_nothing_in_this_template(trainer, gsm8k_rows):
    rows = _rows(gsm8k_rows, None)
    plain = trainer(rows)._tokenize_prompts([r["prompt"] for r in rows])[0]
    for flag in (True, False):
        got = trainer(rows, chat_template_kwargs={"enable_thinking": flag})._tokenize_prompts([r["prompt"] for r in rows])[0]
        assert [list(x) for x in got] == [list(x) for x in plain]


@pytest.mark.parametrize("system_prompt", [DEFAULT_SYSTEM_PROMPT, None], ids=["own-system", "injected-system"])
def test_the_same_prompt_as_teacher_gives_u_zero(trainer, gsm8k_rows, system_prompt):
    """Sampled completions scored by the teacher pass with the student's own prompt as privileged prompt (teacher
    batches are ordered and padded differently from the student's): u = teacher - student = 0 on every token."""
    tr = trainer(_rows(gsm8k_rows, system_prompt))
    torch.manual_seed(0)
    batch = [tr.train_dataset[i] for i in range(2) for _ in range(2)]
    t_logps, s_logps, t_ent, s_ent, mask, too_long = teacher_and_student_on_the_same_prompt(tr, batch)
    assert mask.sum() >= 20 and not too_long.any()
    torch.testing.assert_close(t_logps[mask], s_logps[mask], atol=2e-4, rtol=0)
    torch.testing.assert_close(t_ent[mask], s_ent[mask], atol=2e-4, rtol=0)


def test_the_teacher_pass_scores_the_completion_behind_the_privileged_prompt(trainer, gsm8k_rows, smollm2,
                                                                            smollm2_tokenizer):
    """The trainer's teacher log-probs equal an independent float64 computation: the privileged chat rendered by
    the tokenizer's template, then the sampled completion tokens, one sequence at a time."""
    rows = _rows(gsm8k_rows, None)
    tr = trainer(rows)
    tr.model.train()
    torch.manual_seed(0)
    batch = [tr.train_dataset[i] for i in range(2) for _ in range(2)]
    out = GRPOTrainer._generate_and_score_completions(tr, batch)
    completions = [smollm2_tokenizer.decode(c[m.bool()]) for c, m in zip(out["completion_ids"], out["completion_mask"])]
    teacher = _teacher_prompts(batch, completions, [True, False, True, False])
    contexts = [TeacherContext(prompt=p, source="dataset", correct=i % 2 == 0) for i, p in enumerate(teacher)]
    t_logps, _, _ = tr.teacher_pass(contexts, out["completion_ids"], out["completion_mask"])
    model64 = copy.deepcopy(smollm2).double()
    for i, prompt in enumerate(teacher):
        comp = out["completion_ids"][i][out["completion_mask"][i].bool()].tolist()
        p = smollm2_tokenizer.apply_chat_template(prompt, add_generation_prompt=True)["input_ids"]
        with torch.no_grad():
            logits = model64(torch.tensor([p + comp])).logits[0, len(p) - 1:-1]
        ref = torch.log_softmax(logits, -1).gather(-1, torch.tensor(comp)[:, None])[:, 0]
        assert len(comp) >= 5
        torch.testing.assert_close(t_logps[i, :len(comp)].double(), ref, atol=5e-4, rtol=0)
