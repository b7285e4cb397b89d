"""Thinking-model chat templates and long privileged prompts (issue 13, item 6).

A template that emits ``<think>`` blocks and honours ``enable_thinking`` (as Qwen3's and
OLMo-3-Think's do): the teacher's prompt is rendered with the same template arguments as the
student's, so both end with the same generation prefix and the completion tokens line up; with
the student's own prompt as "privileged" prompt, u = 0 on every token. A privileged prompt too
long for the model is never cut: the rollout gets no token term and the run counts it."""

import math

import pytest
import torch
from transformers import AutoTokenizer


from trainer_helpers import make_trainer, teacher_and_student_on_the_same_prompt

pytestmark = pytest.mark.slow  # trains tiny models end to end (the fast suite: -m 'not slow')

THINKING_TEMPLATE = (  # the shape of Qwen3's: an empty think block when thinking is switched off
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}"
    "{% endif %}"
)


@pytest.fixture(scope="module")
def thinking_model_path(tiny_model_path, tmp_path_factory):
    """The tiny model with a thinking-style chat template."""
    import shutil

    path = tmp_path_factory.mktemp("thinking")
    shutil.copytree(tiny_model_path, path, dirs_exist_ok=True)
    tok = AutoTokenizer.from_pretrained(path)
    tok.chat_template = THINKING_TEMPLATE
    tok.save_pretrained(path)
    return path


def _chat_rows(n=8):
    return [{"prompt": [{"role": "user", "content": f"What is {i} + {i}?"}], "answer": str(2 * i),
             "solution": f"{i} + {i} = {2 * i}"} for i in range(n)]


@pytest.mark.parametrize("enable_thinking", [True, False])
def test_teacher_prompt_uses_the_students_template_arguments(thinking_model_path, tmp_path, enable_thinking):
    tr = make_trainer(thinking_model_path, tmp_path, rows=_chat_rows(), method="antisd",
                      chat_template_kwargs={"enable_thinking": enable_thinking})
    batch = [tr.train_dataset[i] for i in range(2) for _ in range(4)]
    student_ids, _, _ = tr._tokenize_prompts([x["prompt"] for x in batch])
    teacher = [[{"role": "user", "content": x["prompt"][0]["content"] + "\nReference: 42"}] for x in batch]
    teacher_ids, _, _ = tr._tokenize_prompts(teacher)
    tok = tr.processing_class
    prefix = "<|im_end|>\n<|im_start|>assistant\n" + ("" if enable_thinking else "<think>\n\n</think>\n\n")
    for s, t in zip(student_ids, teacher_ids):
        assert tok.decode(s).endswith(prefix) and tok.decode(t).endswith(prefix)
        # the same token ids, not just the same text: the longest common tail covers the generation prefix
        n = 0
        while n < min(len(s), len(t)) and s[-1 - n] == t[-1 - n]:
            n += 1
        assert tok.decode(s[-n:]).endswith(prefix) and prefix in tok.decode(s[-n:]), tok.decode(s[-n:])


@pytest.mark.parametrize("enable_thinking", [True, False])
def test_same_prompt_gives_zero_u_under_a_thinking_template(thinking_model_path, tmp_path, enable_thinking):
    tr = make_trainer(thinking_model_path, tmp_path, rows=_chat_rows(), method="antisd",
                      chat_template_kwargs={"enable_thinking": enable_thinking})
    batch = [tr.train_dataset[i] for i in range(2) for _ in range(4)]
    t_logps, s_logps, _, _, mask, too_long = teacher_and_student_on_the_same_prompt(tr, batch)
    torch.testing.assert_close(t_logps[mask], s_logps[mask], atol=2e-5, rtol=0)
    assert not too_long.any()


def test_privileged_prompt_too_long_for_the_model_is_masked_and_counted(tiny_model_path, tmp_path):
    long_solution = " ".join(["step"] * 400)  # > 400 tokens
    rows = [{**r, "solution": long_solution if i % 2 else r["solution"]} for i, r in enumerate(_chat_rows(16))]
    tr = make_trainer(tiny_model_path, tmp_path, rows=rows, method="antisd", gate="none",
                      solution_sources=["dataset"], max_steps=2)
    tr.model.config.max_position_embeddings = 256  # what the model says it can take
    tr.train()
    logs = [h for h in tr.state.log_history if "loss" in h]
    assert all(math.isfinite(h["loss"]) for h in logs)
    assert any(h["context/too_long_frac"] > 0 for h in logs)
    assert all(h["context/too_long_frac"] < 1 for h in logs)
