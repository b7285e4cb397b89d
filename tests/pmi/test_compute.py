"""antisd.pmi.compute: per-token values against the unpadded reference, telescoping, skipped rollouts."""

from __future__ import annotations

import logging
import math

import torch

from antisd.method.context import ContextConfig, build_teacher_contexts
from antisd.pmi import Rollout, SkipLog, aggregate, compute_pmi

from .helpers import chat, make_rollouts, naive_completion_logps


def test_trace_values_equal_naive_and_telescope(model_and_tok):
    model, tok = model_and_tok
    rollouts = make_rollouts(tok)
    cfg = ContextConfig()
    expected_ctx = build_teacher_contexts(
        [r.prompt for r in rollouts], [tok.decode(r.completion_ids, skip_special_tokens=True) for r in rollouts],
        [r.reward for r in rollouts], [r.problem_id for r in rollouts], solutions=[r.solution for r in rollouts],
        answers=[r.answer for r in rollouts], config=cfg, seed=7,
    )
    records = list(compute_pmi(model, tok, make_rollouts(tok), cfg, batch_size=3, seed=7))  # padding across a batch
    assert [r.rollout_id for r in records] == ["r0", "r1", "r2", "r3"]
    assert [r.source for r in records] == ["sibling", "dataset", "sibling", "answer"]
    for rec, ro, ctx in zip(records, rollouts, expected_ctx):
        assert rec.teacher_prompt == ctx.prompt and rec.source == ctx.source
        assert rec.token_ids == ro.completion_ids  # never re-tokenized
        s_ids = tok.apply_chat_template(ro.prompt, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
        t_ids = tok.apply_chat_template(ctx.prompt, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
        s_ref, s_ent = naive_completion_logps(model, list(s_ids), ro.completion_ids)
        t_ref, t_ent = naive_completion_logps(model, list(t_ids), ro.completion_ids)
        torch.testing.assert_close(torch.tensor(rec.student_logps, dtype=torch.float64), s_ref, atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(torch.tensor(rec.teacher_logps, dtype=torch.float64), t_ref, atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(torch.tensor(rec.teacher_entropy, dtype=torch.float64), t_ent, atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(torch.tensor(rec.student_entropy, dtype=torch.float64), s_ent, atol=1e-4, rtol=1e-5)
        assert rec.u == [t - s for t, s in zip(rec.teacher_logps, rec.student_logps)]
        # telescoping: sum_t u_t = log pi(y|x,c) - log pi(y|x) from the separate whole-sequence forward
        assert rec.telescoping_error is not None and rec.telescoping_error < 1e-4
        assert math.isclose(rec.seq_pmi, float(t_ref.sum() - s_ref.sum()), abs_tol=1e-6)
        assert len(rec.tokens) == len(rec.token_ids)
    tables = aggregate(records, n_boot=50)
    assert tables.summary["telescoping_checked"] == 4 and tables.summary["telescoping_failed"] == 0


def test_same_prompt_gives_zero_u_and_text_rollouts_tokenized_once(model_and_tok):
    model, tok = model_and_tok
    text = "Let me think step by step. 12 + 35 = 47. The answer is \\boxed{47}."
    prompt = "What is 12 + 35?"
    ros = [Rollout(prompt=prompt, completion=text, teacher_prompt=prompt, context_given=True, rollout_id="same"),
           Rollout(prompt=chat(prompt), completion=text, reward=1.0, answer="47", rollout_id="text")]
    # batch_size=1: the student and teacher batches of rollout 'same' are then identical (same padding)
    recs = list(compute_pmi(model, tok, ros, max_tokens=12, check_rollouts=1, batch_size=1))
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert recs[0].u == [0.0] * 12  # empty privileged context: teacher == student exactly
    assert recs[1].token_ids == ids[:12] and recs[1].truncated  # tokenized once, same ids for both passes
    assert recs[1].telescoping_error is None  # check_rollouts=1: only the first
    assert "".join(recs[1].tokens) == tok.decode(ids[:12])


def test_bad_inputs_skip_with_message_and_process_the_rest(model_and_tok, caplog):
    model, tok = model_and_tok
    skips = SkipLog()
    ros = [
        Rollout(prompt="What is 2 + 2?", completion=" 4", reward=1.0, answer=None, solution=None, problem_id="x", rollout_id="nosol"),
        Rollout(prompt="What is 2 + 3?", completion="", reward=0.0, answer="5", rollout_id="empty"),
        Rollout(prompt=chat("What is 2 + 4?"), completion=" 6", reward=1.0, answer="6", rollout_id="chat"),
        Rollout(prompt="What is 2 + 5?", completion=" \\boxed{7}", answer="7", rollout_id="ok"),
        Rollout(prompt="What is 2 + 6?", completion=" 8", rollout_id="noreward"),
    ]
    tok_nochat = type(tok).from_pretrained(tok.name_or_path)
    tok_nochat.chat_template = None
    with caplog.at_level(logging.WARNING, logger="antisd.pmi"):
        recs = list(compute_pmi(model, tok_nochat, ros, skips=skips))
    assert [r.rollout_id for r in recs] == ["ok"]
    assert recs[0].source == "answer" and recs[0].reward == 1.0  # reward computed from the answer
    assert dict(skips.counts) == {"no_context": 1, "empty_completion": 1, "no_chat_template": 1, "no_reward": 1}
    text = caplog.text
    assert "no verified solution" in text and "solution column missing" in text
    assert "empty completion" in text and "has no chat template" in text and "prompt_format=plain" in text
