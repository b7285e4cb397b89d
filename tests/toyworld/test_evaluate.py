"""antisd.toyworld.evaluate: seeded sampling of completions and the held-out accuracy record."""

from __future__ import annotations

import pytest
import torch

from antisd.toyworld.base_policy import ToyBaseConfig, build_model, heldout_rows
from antisd.toyworld.evaluate import evaluate_accuracy, sample_completions, strict_reward
from antisd.toyworld.tokenizer import BOX_OPEN, build_tokenizer


@pytest.fixture(scope="module")
def toy():
    """An untrained tiny toy model (random weights: long, varied completions), its tokenizer, 10 problems."""
    cfg = ToyBaseConfig.tiny()
    tok = build_tokenizer(cfg.max_number)
    return build_model(cfg, tok).eval(), tok, heldout_rows(cfg, 10)


def test_sample_completions_seeded_and_cut_at_eos(toy):
    model, tok, rows = toy
    prompts = [r["prompt"] for r in rows]
    torch.manual_seed(1)
    texts, ids = sample_completions(model, tok, prompts, max_new_tokens=16, batch_size=4, seed=3)
    after = torch.random.get_rng_state()
    torch.manual_seed(2)  # the global RNG before the call does not matter ...
    assert (texts, ids) == sample_completions(model, tok, prompts, max_new_tokens=16, batch_size=4, seed=3)
    assert torch.equal(torch.random.get_rng_state(), after), "... and the last batch's seed decides it after"
    assert ids != sample_completions(model, tok, prompts, max_new_tokens=16, batch_size=4, seed=4)[1]
    assert len(ids) == len(texts) == 10 and all(len(c) <= 16 for c in ids)
    for c, t in zip(ids, texts):
        assert tok.eos_token_id not in c and tok.pad_token_id not in c
        assert t == tok.decode(c, skip_special_tokens=True)
    model.train()
    sample_completions(model, tok, prompts[:2], max_new_tokens=4, seed=0)
    assert model.training, "the model's mode is restored"
    model.eval()


def test_evaluate_accuracy_record(toy):
    model, tok, rows = toy
    kept: list[dict] = []
    ev = evaluate_accuracy(model, tok, rows, max_new_tokens=16, batch_size=4, seed=5, samples_out=kept,
                           reward_fn=lambda text, answer: float(len(text.split()) % 2 == 0))
    _, ids = sample_completions(model, tok, [r["prompt"] for r in rows], max_new_tokens=16, batch_size=4, seed=5)
    assert [k["completion"] for k in kept] == [tok.decode(c, skip_special_tokens=True) for c in ids]
    scores = [k["score"] for k in kept]
    assert ev["eval/accuracy"] == sum(scores) / 10 and ev["eval/n"] == 10.0
    assert ev["eval/mean_tokens"] == sum(map(len, ids)) / 10
    assert ev["eval/truncated_frac"] == sum(len(c) >= 16 for c in ids) / 10
    assert ev["eval/strict_accuracy"] <= ev["eval/accuracy"]
    assert {f"eval/accuracy_{r['family']}" for r in rows} <= set(ev)
    assert strict_reward(f"x {BOX_OPEN} 3 }}", "3") == 1.0
