"""antisd.toyworld.traces: student and privileged traces, knobs, the teacher-prompt constants."""

from __future__ import annotations

import random

import pytest

from antisd.rewards import math_reward
from antisd.toyworld.tasks import ToyTaskConfig, make_problems
from antisd.toyworld.tokenizer import BOX_OPEN, DELIBERATION_WORDS, unknown_words
from antisd.toyworld.traces import (
    PRIVILEGED_STYLES,
    TOY_FEEDBACK_CORRECT,
    TOY_FEEDBACK_INCORRECT,
    TOY_TEACHER_TEMPLATE,
    ToyTraceConfig,
    privileged_trace,
    render_teacher_prompt,
    student_trace,
)


@pytest.mark.parametrize("style", PRIVILEGED_STYLES)
def test_traces_end_with_the_boxed_answer_and_earn_reward(style):
    from antisd.toyworld.evaluate import strict_reward

    rng = random.Random(1)
    cfg = ToyTraceConfig(privileged_style=style)
    for p in make_problems(100, seed=5):
        for trace in (student_trace(p, rng, cfg), privileged_trace(p, rng, cfg)):
            assert trace.endswith(f"{BOX_OPEN} {p.answer} }}") and trace.count(BOX_OPEN) == 1
            assert len(trace.split()) + 1 <= cfg.max_completion_tokens
            assert math_reward(trace, str(p.answer)) == 1.0
            assert math_reward(trace, str(p.answer + 1)) == 0.0
            assert strict_reward(trace, str(p.answer)) == 1.0
            tries = [int(w) for prev, w in zip(trace.split(), trace.split()[1:]) if prev == "try"]
            assert tries[-1] == p.answer and all(y in p.candidates for y in tries)
    assert strict_reward(f"{BOX_OPEN} 3 }} yes {BOX_OPEN} 3 }}", "3") == 0.0


def test_commit_style_commits_without_deliberation():
    rng = random.Random(2)
    cfg = ToyTraceConfig(privileged_style="commit", commit_after_fail_frac=1.0)
    traces = [privileged_trace(p, rng, cfg) for p in make_problems(100, seed=6)]
    assert any(" so try " in t for t in traces)
    assert not any(w in t.split() for t in traces for w in DELIBERATION_WORDS)


def test_show_target_knob():
    p = make_problems(1, seed=0, config=ToyTaskConfig(families=("linear",), family_weights=(1.0,)))[0]
    rng = random.Random(0)
    assert f"vs {p.target} yes" in student_trace(p, rng, ToyTraceConfig())
    assert " vs " not in student_trace(p, rng, ToyTraceConfig(show_target=False))


def test_teacher_prompts_match_the_context_module():
    from antisd.method.context import build_teacher_contexts, render_prompt

    from antisd.toyworld.traces import toy_context_config

    rows = [p.row() for p in make_problems(2, seed=0)]
    prompt = rows[0]["prompt"]
    for correct in (True, False):
        fb = TOY_FEEDBACK_CORRECT if correct else TOY_FEEDBACK_INCORRECT
        assert render_teacher_prompt(prompt, "x = 4", correct) == render_prompt(prompt, "x = 4", fb, TOY_TEACHER_TEMPLATE)
    # what the trainer will build: a sibling rendered as an answer line, else the dataset solution
    prompts, answers = [r["prompt"] for r in rows for _ in range(2)], [r["answer"] for r in rows for _ in range(2)]
    comps = [f"{BOX_OPEN} {a} }}" for a in answers]
    ctxs = build_teacher_contexts(prompts, comps, [1.0, 0.0, 0.0, 0.0], [0, 0, 1, 1],
                                  solutions=[r["solution"] for r in rows for _ in range(2)], answers=answers,
                                  config=toy_context_config())
    assert [c.source for c in ctxs] == ["dataset", "sibling", "dataset", "dataset"]
    for c, p, a, r in zip(ctxs, prompts, answers, [1.0, 0.0, 0.0, 0.0]):
        assert c.prompt == render_teacher_prompt(p, f"x = {a}", correct=r == 1.0)
        tok_words = c.prompt.split()
        assert not unknown_words(c.prompt) and len(tok_words) == len(c.prompt.split(" "))


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="privileged_style"):
        ToyTraceConfig(privileged_style="cheat")
