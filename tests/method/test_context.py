"""Privileged-context selection and rendering."""

import pytest

from antisd.method.context import (
    ContextConfig,
    TeacherContext,
    build_teacher_contexts,
    clean_solution,
    render_prompt,
    source_fractions,
)

TPL = "{prompt} | ref: {solution} | {feedback}"


def _cfg(**kw):
    return ContextConfig(template=TPL, feedback_correct="OK", feedback_incorrect="BAD", **kw)


def test_sibling_from_same_group_never_itself():
    prompts = ["p0"] * 4
    completions = ["c0", "c1", "c2", "c3"]
    rewards = [1.0, 0.0, 1.0, 0.0]
    ctx = build_teacher_contexts(prompts, completions, rewards, [0, 0, 0, 0], config=_cfg(), seed=1)
    assert [c.source for c in ctx] == ["sibling"] * 4
    assert ctx[0].sibling_index == 2 and ctx[2].sibling_index == 0  # the only other correct one
    assert ctx[1].sibling_index in (0, 2) and ctx[3].sibling_index in (0, 2)
    for i, c in enumerate(ctx):
        assert c.sibling_index != i
        assert c.prompt == f"p0 | ref: c{c.sibling_index} | {'OK' if rewards[i] else 'BAD'}"


def test_lone_correct_rollout_falls_back_to_dataset_then_answer_then_none():
    prompts = ["p"] * 2 + ["q"] * 2 + ["r"] * 2
    completions = ["a", "b", "c", "d", "e", "f"]
    rewards = [1, 0, 1, 0, 1, 0]
    groups = [0, 0, 1, 1, 2, 2]
    solutions = ["SOL", "SOL", None, None, "", ""]
    answers = ["1", "1", "2", "2", None, None]
    ctx = build_teacher_contexts(prompts, completions, rewards, groups, solutions=solutions,
                                 answers=answers, config=_cfg())
    assert [c.source for c in ctx] == ["dataset", "sibling", "answer", "sibling", "none", "sibling"]
    assert ctx[0].prompt == "p | ref: SOL | OK"
    assert ctx[2].prompt == "q | ref: The final answer is $2$. | OK"
    assert ctx[4].prompt is None
    fr = source_fractions(ctx)
    assert fr["context/sibling_frac"] == pytest.approx(0.5)
    assert fr["context/none_frac"] == pytest.approx(1 / 6)


def test_sibling_from_another_group_of_the_same_problem():
    ctx = build_teacher_contexts(["p"] * 4, ["a", "b", "c", "d"], [0, 0, 1, 0], [0, 0, 1, 1],
                                 problem_ids=["x"] * 4, config=_cfg(sources=("sibling",)))
    assert [c.source for c in ctx] == ["sibling", "sibling", "none", "sibling"]
    assert ctx[0].sibling_index == 2 and ctx[3].sibling_index == 2


def test_source_policy_order_is_respected():
    ctx = build_teacher_contexts(["p", "p"], ["a", "b"], [1, 1], [0, 0], solutions=["S", "S"],
                                 config=_cfg(sources=("dataset", "sibling")))
    assert [c.source for c in ctx] == ["dataset", "dataset"]


def test_deterministic_under_seed_and_varies_with_seed():
    n = 16
    args = (["p"] * n, [f"c{i}" for i in range(n)], [1.0] * n, [0] * n)
    a = build_teacher_contexts(*args, config=_cfg(), seed=3)
    b = build_teacher_contexts(*args, config=_cfg(), seed=3)
    assert a == b
    others = [build_teacher_contexts(*args, config=_cfg(), seed=s) for s in range(4, 8)]
    assert any(o != a for o in others)


def test_chat_prompts_template_the_last_user_message():
    prompt = [{"role": "system", "content": "Box it."}, {"role": "user", "content": "1+1?"}]
    ctx = build_teacher_contexts([prompt, prompt], ["\\boxed{2}", "3"], [1, 0], [0, 0], config=_cfg())
    assert ctx[1].prompt == [{"role": "system", "content": "Box it."},
                             {"role": "user", "content": "1+1? | ref: \\boxed{2} | BAD"}]
    assert prompt[1]["content"] == "1+1?"  # input untouched


def test_think_block_stripped_and_long_solutions_cut_from_the_front():
    cfg = _cfg(max_solution_chars=10)
    text, cut = clean_solution("<think>long musing</think>The answer is \\boxed{42}.", cfg)
    assert text == "...boxed{42}." and cut
    text, cut = clean_solution("<think>never closed", _cfg())
    assert text == "<think>never closed" and not cut


def test_braces_in_problem_text_are_safe():
    out = render_prompt("Find {x} in $\\frac{1}{2}$", "sol {y}", "fb", ContextConfig().template)
    assert "Find {x} in $\\frac{1}{2}$" in out and "sol {y}" in out


def test_correct_threshold_handles_plus_minus_one_rewards():
    ctx = build_teacher_contexts(["p"] * 2, ["a", "b"], [1.0, -1.0], [0, 0],
                                 config=_cfg(correct_threshold=0.0))
    assert [c.correct for c in ctx] == [True, False]


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(template="{prompt} {oops}"), "unknown placeholders"),
        (dict(template="{prompt} only"), "must contain {solution}"),
        (dict(template="{prompt {solution}"), "not a valid format string"),
        (dict(sources=("sibling", "web")), "ordered subset"),
        (dict(answer_template="no placeholder"), "answer_template"),
    ],
)
def test_config_errors_name_the_field(kw, match):
    with pytest.raises(ValueError, match=match):
        ContextConfig(**kw)


def test_length_mismatch_and_bad_prompts():
    with pytest.raises(ValueError, match="rewards has length 1, expected 2"):
        build_teacher_contexts(["p", "p"], ["a", "b"], [1], [0, 0])
    with pytest.raises(ValueError, match="no message with role 'user'"):
        build_teacher_contexts([[{"role": "system", "content": "x"}]], ["a"], [0], [0],
                               solutions=["s"])


def test_default_template_renders_all_parts():
    ctx = build_teacher_contexts(["Q"], ["A"], [0], [0], solutions=["S"])
    assert isinstance(ctx[0], TeacherContext)
    assert ctx[0].prompt.startswith("Q\n\n") and "S" in ctx[0].prompt and "incorrect" in ctx[0].prompt
