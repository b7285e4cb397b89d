"""Tests of the toy world: tasks, tokenizer, traces, the cached base-policy build, the PMI check."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest

from antisd.toyworld.tasks import (
    FAMILIES,
    ToyTaskConfig,
    brute_force,
    make_dataset,
    make_problems,
    split_of,
)
from antisd.toyworld.tokenizer import BOX_OPEN, DELIBERATION_WORDS, build_tokenizer, unknown_words
from antisd.toyworld.traces import (
    PRIVILEGED_STYLES,
    TOY_FEEDBACK_CORRECT,
    TOY_FEEDBACK_INCORRECT,
    TOY_TEACHER_TEMPLATE,
    ToyTraceConfig,
    privileged_trace,
    render_teacher_prompt,
    sft_example,
    student_trace,
)

from antisd.rewards import math_reward


@pytest.fixture(autouse=True, scope="module")
def _threads():
    """One torch thread on a busy machine (two threads per process there are ~5x slower)."""
    import torch

    from antisd.toyworld.base_policy import pick_num_threads

    before = torch.get_num_threads()
    torch.set_num_threads(pick_num_threads())
    yield
    torch.set_num_threads(before)


# -- tasks ----------------------------------------------------------------------------------------
def test_generator_is_deterministic_under_seed():
    a = [p.key for p in make_problems(200, seed=3)]
    assert a == [p.key for p in make_problems(200, seed=3)]
    assert a != [p.key for p in make_problems(200, seed=4)]


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_every_answer_is_the_unique_brute_force_solution(split):
    problems = make_problems(3000, split=split, seed=1)
    assert {p.family for p in problems} == set(FAMILIES)
    for p in problems:
        assert brute_force(p.prompt) == [p.answer], p.prompt
        assert p.verdict(p.answer) == "yes" and sum(p.verdict(y) == "yes" for y in p.candidates) == 1


def test_heldout_split_is_disjoint_and_by_hash():
    cfg = ToyTaskConfig()
    train = make_problems(4000, split="train", seed=0, config=cfg)
    held = make_problems(1000, split="heldout", seed=0, config=cfg)
    assert not {p.split_key for p in train} & {p.split_key for p in held}
    assert not {p.key for p in train} & {p.key for p in held}
    assert all(split_of(p, cfg.heldout_frac) == "train" for p in train)
    assert all(split_of(p, cfg.heldout_frac) == "heldout" for p in held)
    # the space is large: few repeats among fresh train problems
    assert len({p.key for p in train}) > 0.8 * len(train)
    assert len({p.split_key for p in train}) > 0.4 * len(train)


def test_dataset_columns():
    ds = make_dataset(16, split="heldout", seed=0)
    assert ds.column_names == ["prompt", "answer", "solution", "family"]
    row = ds[0]
    assert row["solution"] == f"x = {row['answer']}" and brute_force(row["prompt"]) == [int(row["answer"])]


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="families"):
        ToyTaskConfig(families=("linear", "nope"), family_weights=(1.0, 1.0))
    with pytest.raises(ValueError, match="privileged_style"):
        ToyTraceConfig(privileged_style="cheat")


# -- tokenizer and traces -------------------------------------------------------------------------
def _texts(n: int = 150) -> list[str]:
    rng = random.Random(0)
    out = []
    for i, p in enumerate(make_problems(n, seed=2)):
        style = PRIVILEGED_STYLES[i % len(PRIVILEGED_STYLES)]
        ex = sft_example(p, rng, ToyTraceConfig(privileged_style=style, ref_trace_frac=0.5), privileged=i % 2 == 0)
        out.append(ex["prompt"] + ex["completion"])
    return out


def test_tokenizer_round_trip_and_single_token_words(tmp_path):
    from transformers import AutoTokenizer

    tok = build_tokenizer()
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    for t in _texts():
        assert not unknown_words(t), t
        for tk in (tok, loaded):
            ids = tk(t, add_special_tokens=False)["input_ids"]
            assert tk.unk_token_id not in ids
            assert tk.decode(ids) == t
            assert len(ids) == len(t.split())
    for w in (*DELIBERATION_WORDS, "try", BOX_OPEN):
        assert len(tok(w, add_special_tokens=False)["input_ids"]) == 1, w
    assert loaded.eos_token == "<eos>" and loaded.pad_token == "<pad>" and loaded.padding_side == "left"
    ids = tok("try 3 : 3 * 3 = 9 + 1 = 10 yes . " + BOX_OPEN + " 3 }" + tok.eos_token)["input_ids"]
    assert ids[-1] == tok.eos_token_id and tok.decode(ids, skip_special_tokens=True).endswith("}")


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
    from antisd.context import build_teacher_contexts, render_prompt

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


# -- PMI token classes and log-probs ---------------------------------------------------------------
def test_classify_tokens():
    from antisd.toyworld.pmi_check import classify_tokens

    words = "try 4 : 2 * 4 = 8 + 1 = 9 small . Wait , try 5 : 2 * 5 = 10 + 1 = 11 yes . \\boxed{ 5 } <eos>".split()
    cats = classify_tokens(words, "5")
    assert cats[words.index("Wait")] == "after_fail"
    assert cats[1] == "wrong_candidate" and cats[words.index("Wait") + 3] == "correct_candidate"
    assert cats[-3] == "boxed_number" and cats[-1] == "eos"
    assert cats.count("other") == len(words) - 5


# -- the cached base policy -----------------------------------------------------------------------
TINY = dict(sft_steps=12, eval_samples=16, batch_size=16)


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory):
    from antisd.toyworld.base_policy import ToyBaseConfig, ensure_base_policy

    cache = tmp_path_factory.mktemp("toycache")
    cfg = ToyBaseConfig.tiny(**TINY)
    return cfg, cache, ensure_base_policy(cfg, cache)


def test_tiny_base_policy_builds_caches_and_loads(tiny_policy, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import antisd.toyworld.base_policy as bp

    cfg, cache, path = tiny_policy
    info = json.loads((path / bp.BUILD_INFO).read_text())
    assert info["recipe_hash"] == cfg.recipe_hash and 0.0 <= info["heldout"]["eval/accuracy"] <= 1.0
    assert bp.ToyBaseConfig.from_dict(info["recipe"]) == cfg
    assert not [p for p in cache.iterdir() if p.name.startswith(".tmp")]

    def no_rebuild(*a, **k):
        raise AssertionError("cached policy was rebuilt")

    monkeypatch.setattr(bp, "build_base_policy", no_rebuild)
    assert bp.ensure_base_policy(cfg, cache) == path
    changed = dataclasses.replace(cfg, seed=cfg.seed + 1)
    assert changed.recipe_hash != cfg.recipe_hash
    with pytest.raises(AssertionError, match="rebuilt"):
        bp.ensure_base_policy(changed, cache)

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.config.model_type == "qwen3" and model.config.vocab_size == len(tok)
    assert model.generation_config.eos_token_id == tok.eos_token_id


def test_changed_recipe_rebuilds(tiny_policy):
    from antisd.toyworld.base_policy import ensure_base_policy

    cfg, cache, path = tiny_policy
    other = ensure_base_policy(dataclasses.replace(cfg, traces=dataclasses.replace(cfg.traces, privileged_style="direct")), cache)
    assert other != path and (other / "build_info.json").exists() and (path / "build_info.json").exists()


def test_completion_logps_pmi_is_zero_without_context_and_padding_free(tiny_policy):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from antisd.toyworld.pmi_check import completion_logps

    _, _, path = tiny_policy
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    rows = [p.row() for p in make_problems(4, seed=9)]
    prompts = tok([r["prompt"] for r in rows], add_special_tokens=False)["input_ids"]
    comps = tok(["try 3 : 2 * 3 = 6 + 1 = 7 yes .", "try 2 : 5", "\\boxed{ 4 }", "Wait , try"], add_special_tokens=False)["input_ids"]
    batched, _ = completion_logps(model, prompts, comps, tok.pad_token_id)
    again, _ = completion_logps(model, prompts, comps, tok.pad_token_id)
    for b, a in zip(batched, again):
        assert torch.equal(a - b, torch.zeros_like(a))  # identical prompts: u = 0 exactly
    for i in range(len(rows)):  # left/right padding does not change the result
        single, _ = completion_logps(model, [prompts[i]], [comps[i]], tok.pad_token_id)
        torch.testing.assert_close(single[0], batched[i], atol=1e-5, rtol=1e-5)


def test_pmi_check_runs_on_the_tiny_policy(tiny_policy):
    pytest.importorskip("antisd.context")
    from antisd.toyworld.pmi_check import format_table, run_pmi_check

    _, _, path = tiny_policy
    res = run_pmi_check(path, n_problems=4, group_size=2, max_new_tokens=24)
    assert res["n_rollouts"] == 8 and set(res["forms"]) == {"answer", "sibling"}
    cats = res["forms"]["answer"]["categories"]
    assert sum(c["n"] for c in cats.values()) > 0
    assert "| answer |" in format_table(res)


def test_pick_num_threads(monkeypatch):
    import antisd.toyworld.base_policy as bp

    monkeypatch.setenv("ANTISD_TOY_THREADS", "1")
    assert bp.pick_num_threads() == 1
    monkeypatch.delenv("ANTISD_TOY_THREADS")
    monkeypatch.setattr(bp.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(bp, "_load", lambda: 2.1)
    assert bp.pick_num_threads(own_load=2) == 2  # only our own two threads: stay at 2
    assert bp.pick_num_threads(own_load=1) == 1  # someone else runs: one thread
    monkeypatch.setattr(bp, "_load", lambda: 0.1)
    assert bp.pick_num_threads() == 2
