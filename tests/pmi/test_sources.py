"""antisd.pmi.sources: sampled rollouts (seeded, cut after the first eos, with contexts) and rollout files."""

from __future__ import annotations

import json

import pytest

from antisd.method.context import ContextConfig
from antisd.data.problems import DataConfig
from antisd.pmi import SkipLog, read_rollouts, sample_rollouts
from antisd.pmi.compute import tokenize_prompt
from antisd.lm.sampling import eos_token_ids, generate_completions

from .helpers import chat

PROBLEMS = [{"prompt": chat("What is 1 + 1?"), "answer": "2", "problem_id": "a", "solution": "1 + 1 = 2"},
            {"prompt": chat("What is 12 + 35?"), "answer": "47", "problem_id": "b"},
            {"prompt": "Find x.", "answer": "3", "problem_id": "c"}]


def sample(model, tok, seed=11):
    return list(sample_rollouts(model, tok, PROBLEMS, ContextConfig(), samples_per_problem=2, max_new_tokens=10,
                                temperature=1.0, batch_size=3, problems_per_batch=2, seed=seed, skips=SkipLog()))


def test_sampled_rollouts_are_seeded_and_end_at_the_first_eos(model_and_tok):
    model, tok = model_and_tok
    ros = sample(model, tok)
    assert [r.rollout_id for r in ros] == ["a#0", "a#1", "b#0", "b#1", "c#0", "c#1"]
    assert [(r.completion_ids, r.teacher_prompt) for r in ros] == [(r.completion_ids, r.teacher_prompt) for r in sample(model, tok)]
    assert [r.completion_ids for r in ros] != [r.completion_ids for r in sample(model, tok, seed=12)]
    eos = eos_token_ids(model, tok)
    for r in ros:
        ids = r.completion_ids
        assert not eos & set(ids[:-1]) and (ids[-1] in eos or len(ids) == 10)  # TRL's completion mask
        assert r.completion == tok.decode(ids, skip_special_tokens=True) and r.context_given
        assert r.teacher_prompt is not None and r.source in ("sibling", "dataset", "answer")
    # the batch of rollouts g0.. of the problems b0.. is seeded seed * 1_000_003 + b0 * 1009 + g0
    prompts = [tokenize_prompt(tok, p["prompt"]) for p in PROBLEMS[:2] for _ in range(2)]
    first = generate_completions(model, prompts[:3], batch_seeds=[11 * 1_000_003], max_new_tokens=10, eos_ids=eos,
                                 pad_id=tok.pad_token_id)
    second = generate_completions(model, prompts[3:], batch_seeds=[11 * 1_000_003 + 3], max_new_tokens=10,
                                  eos_ids=eos, pad_id=tok.pad_token_id)
    assert [c.ids_with_eos for c in first + second] == [r.completion_ids for r in ros[:4]]


def test_read_rollouts_checks_the_file_then_streams_rows(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_rollouts(tmp_path / "missing.jsonl", data_cfg=DataConfig(dataset_name="d"), skips=SkipLog())
    (tmp_path / "r.csv").write_text("x")
    with pytest.raises(ValueError, match="unsupported file type '.csv'"):
        read_rollouts(tmp_path / "r.csv", data_cfg=DataConfig(dataset_name="d"), skips=SkipLog())
    f = tmp_path / "r.jsonl"
    f.write_text(json.dumps({"prompt": "Q?", "completion_ids": [5, 6], "answer": "1", "step": 3}) + "\n[1]\n")
    skips = SkipLog()
    (r,) = read_rollouts(f, data_cfg=DataConfig(dataset_name="d"), skips=skips)
    assert (r.prompt, r.completion_ids, r.answer, r.rollout_id) == ("Q?", [5, 6], "1", "step3-r.jsonl:1")
    assert dict(skips.counts) == {"bad_row": 1}
