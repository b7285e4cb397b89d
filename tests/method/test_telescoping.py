"""Telescoping (docs/method.md): sum_t u_t = log pi(y | x, c) - log pi(y | x), on a tiny Qwen3
loaded by path, with per-token log-probs from the chunked path and whole-sequence
log-likelihoods from a plain full-softmax forward."""

import torch

from antisd.lm.logprobs import per_token_logps_and_entropies
from antisd.method.signals import pmi


def sequence_logprob(model, prefix_ids: list[int], completion_ids: list[int]) -> float:
    """log pi(completion | prefix) from one unchunked forward, in float64."""
    ids = torch.tensor([prefix_ids + completion_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].double()  # (L, V)
    logp = torch.log_softmax(logits[:-1], -1)  # predicts tokens 1..L-1
    targets = ids[0, 1:]
    per_tok = logp.gather(-1, targets[:, None])[:, 0]
    return per_tok[-len(completion_ids):].sum().item()


def test_sum_of_pmi_is_the_sequence_pmi(tiny_model, tiny_tokenizer):
    tok = tiny_tokenizer
    x = tok("What is 12 + 35?")["input_ids"]
    xc = tok("What is 12 + 35? Reference: 12 + 35 = 47. Feedback: correct.")["input_ids"]
    completions = [tok(" Let me think. 12 + 35 = 47. The answer is \\boxed{47}.")["input_ids"],
                   tok(" Wait, maybe 46.")["input_ids"]]
    for y in completions:
        K = len(y)
        s, _ = per_token_logps_and_entropies(tiny_model, torch.tensor([x + y]), torch.ones(1, len(x) + K,
                                             dtype=torch.long), K)
        t, _ = per_token_logps_and_entropies(tiny_model, torch.tensor([xc + y]), torch.ones(1, len(xc) + K,
                                             dtype=torch.long), K)
        u_sum = pmi(t, s).sum().item()
        expected = sequence_logprob(tiny_model, xc, y) - sequence_logprob(tiny_model, x, y)
        assert abs(u_sum - expected) < 1e-3 * max(1.0, abs(expected)), (u_sum, expected)
        assert abs(expected) > 1e-3  # the context really changes the likelihood


def test_identical_prompts_give_zero_pmi(tiny_model, tiny_tokenizer):
    tok = tiny_tokenizer
    x = tok("Solve 3x + 5 = 20.")["input_ids"]
    y = tok(" x = 5, so \\boxed{5}.")["input_ids"]
    ids = torch.tensor([x + y])
    s, _ = per_token_logps_and_entropies(tiny_model, ids, torch.ones_like(ids), len(y))
    t, _ = per_token_logps_and_entropies(tiny_model, ids.clone(), torch.ones_like(ids), len(y))
    assert torch.equal(pmi(t, s), torch.zeros_like(s))
