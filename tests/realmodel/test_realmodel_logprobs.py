"""``antisd.lm.logprobs`` on a real model (vocab 49,152, tied output layer, grouped-query attention): the chunked
kernel on a left-padded float32 batch equals a plain float64 forward of each sequence alone.

Tolerance: float32 against float64 through 30 layers; measured on these rows, the largest difference was
4.5e-5 nats for log-probs and 1.3e-5 for entropies (mean 5e-6); the bounds below are 10x that."""

from __future__ import annotations

import copy

import pytest
import torch

from antisd.lm.logprobs import naive_logps_and_entropies, per_token_logps_and_entropies
from antisd.lm.sampling import pad_prompts_and_completions

MAX_ABS = 5e-4
MEAN_ABS = 5e-5


@pytest.fixture(scope="module")
def smollm2_f64(smollm2):
    return copy.deepcopy(smollm2).double()


@pytest.fixture(scope="module")
def real_batch(smollm2_tokenizer, gsm8k_rows):
    """Three GSM8K problems in the model's chat template and the first tokens of their worked solutions (different
    lengths: left-padded prompts, right-padded completions)."""
    tok = smollm2_tokenizer
    prompts, completions = [], []
    for row, n in zip(gsm8k_rows[:3], (40, 24, 33)):
        prompts.append(tok.apply_chat_template([{"role": "user", "content": row["problem"]}],
                                               add_generation_prompt=True)["input_ids"])
        completions.append(tok(row["solution"], add_special_tokens=False).input_ids[:n])
    return prompts, completions


def _reference(model64, prompts, completions, temperature=1.0):
    """Log-probs and entropies of each completion from one float64 forward of prompt + completion, unpadded."""
    out = []
    with torch.no_grad():
        for p, c in zip(prompts, completions):
            logits = model64(torch.tensor([p + c])).logits[0, len(p) - 1:-1] / temperature
            logp = torch.log_softmax(logits, -1)
            out.append((logp.gather(-1, torch.tensor(c)[:, None])[:, 0], -(logp.exp() * logp).sum(-1)))
    return out


@pytest.mark.parametrize("temperature, chunk_tokens", [(1.0, None), (0.7, 7)])
def test_chunked_logprobs_equal_a_float64_forward(smollm2, smollm2_f64, smollm2_tokenizer, real_batch, temperature,
                                                  chunk_tokens):
    prompts, completions = real_batch
    ids, mask, k = pad_prompts_and_completions(prompts, completions, smollm2_tokenizer.pad_token_id)
    assert len({len(p) for p in prompts}) == 3 and len({len(c) for c in completions}) == 3  # padding on both sides
    with torch.no_grad():
        logps, ent = per_token_logps_and_entropies(smollm2, ids, mask, k, temperature=temperature,
                                                   chunk_tokens=chunk_tokens)
    assert logps.dtype == ent.dtype == torch.float32
    diffs_lp, diffs_h = [], []
    for i, (ref_lp, ref_h) in enumerate(_reference(smollm2_f64, prompts, completions, temperature)):
        n = len(completions[i])
        diffs_lp.append((logps[i, :n].double() - ref_lp).abs())
        diffs_h.append((ent[i, :n].double() - ref_h).abs())
        assert torch.all(logps[i, n:] == 0) and torch.all(ent[i, n:] == 0)  # right padding scores nothing
        assert ref_lp.min() < -5 and ref_h.max() > 1  # real text: confident and unsure tokens both occur
    lp, h = torch.cat(diffs_lp), torch.cat(diffs_h)
    assert lp.max() < MAX_ABS and h.max() < MAX_ABS, (lp.max().item(), h.max().item())
    assert lp.mean() < MEAN_ABS and h.mean() < MEAN_ABS, (lp.mean().item(), h.mean().item())


def test_chunked_gradients_equal_the_full_softmax_ones(smollm2, smollm2_tokenizer, real_batch):
    """The kernel's backward (recomputed chunk softmaxes) against autograd through the full logits, on the
    real output layer (the tied embedding) and the last hidden states."""
    prompts, completions = real_batch
    ids, mask, k = pad_prompts_and_completions(prompts[:2], completions[:2], smollm2_tokenizer.pad_token_id)
    weight = smollm2.lm_head.weight
    grads = []
    for fn in (per_token_logps_and_entropies, naive_logps_and_entropies):
        weight.requires_grad_(True)
        try:
            logps, ent = fn(smollm2, ids, mask, k, chunk_tokens=5)
            (logps.sum() + 0.1 * ent.sum()).backward()
            grads.append(weight.grad.clone())
        finally:
            weight.grad = None
            weight.requires_grad_(False)
    scale = grads[1].abs().max()
    assert scale > 0 and (grads[0] - grads[1]).abs().max() < 1e-4 * scale
