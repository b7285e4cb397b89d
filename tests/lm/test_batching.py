"""antisd.lm.batching.length_bucketed equals one full-batch pass (values and gradients), and the
trainer's logps_batch_rows trains as the single pass does."""

import pytest
import torch

from antisd.lm.batching import length_bucketed, real_spans
from antisd.lm.logprobs import per_token_logps_and_entropies

from trainer_helpers import make_trainer


def _batch(tokenizer, prompts, completions):
    """Left-padded prompts + right-padded completions, as TRL builds them: ids, mask, K."""
    p = [tokenizer(x, add_special_tokens=False)["input_ids"] for x in prompts]
    c = [tokenizer(x, add_special_tokens=False)["input_ids"] for x in completions]
    P, K = max(map(len, p)), max(map(len, c))
    ids = torch.full((len(p), P + K), tokenizer.pad_token_id)
    mask = torch.zeros(len(p), P + K, dtype=torch.long)
    for i, (a, b) in enumerate(zip(p, c)):
        ids[i, P - len(a):P] = torch.tensor(a)
        mask[i, P - len(a):P] = 1
        ids[i, P:P + len(b)] = torch.tensor(b)
        mask[i, P:P + len(b)] = 1
    return ids, mask, K


def test_real_spans():
    mask = torch.tensor([[0, 1, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0]])
    start, end = real_spans(mask)
    assert start.tolist() == [1, 0, 4] and end.tolist() == [3, 4, 0]


@pytest.mark.parametrize("rows", [1, 2, 3, 8])
def test_bucketed_pass_equals_the_full_pass_in_values_and_gradients(tiny_model, tiny_tokenizer, rows):
    prompts = ["What is 2 + 2?", "Hi", "Count to three please", "x", "Say a long sentence about numbers", "y z"]
    completions = ["4", "Hello there, how are you today?", "one two three", "", "numbers are fun", "a b c d e f"]
    ids, mask, K = _batch(tiny_tokenizer, prompts, completions)
    comp_mask = mask[:, -K:].float()

    def fn(i, m, k):
        return per_token_logps_and_entropies(tiny_model, i, m, k, compute_entropy=True)

    full_lp, full_ent = fn(ids, mask, K)
    (full_lp * comp_mask).sum().backward()
    full_grads = [p.grad.clone() for p in tiny_model.parameters()]
    tiny_model.zero_grad()
    lp, ent = length_bucketed(fn, ids, mask, K, rows)
    (lp * comp_mask).sum().backward()
    torch.testing.assert_close(lp * comp_mask, full_lp * comp_mask, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ent * comp_mask, full_ent * comp_mask, rtol=1e-4, atol=1e-5)
    assert (lp[comp_mask == 0] == 0).all()
    for g, h in zip((p.grad for p in tiny_model.parameters()), full_grads):
        torch.testing.assert_close(g, h, rtol=1e-3, atol=1e-5)


def test_bad_rows_is_an_error():
    with pytest.raises(ValueError, match="rows=0"):
        length_bucketed(lambda i, m, k: (None, None), torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 3), 1, 0)


@pytest.mark.slow
@pytest.mark.parametrize("fast", [False, True])
def test_trainer_with_bucketed_logps_trains_as_the_single_pass(tiny_model_path, tmp_path, fast):
    keys = ["loss", "grad_norm", "pmi/mean", "signal/mean"]
    hist = {}
    for rows in (None, 3):
        tr = make_trainer(tiny_model_path, tmp_path / str(rows), method="antisd", gate="none", max_steps=3,
                          logps_batch_rows=rows, fast_logprobs=fast)
        tr.train()
        hist[rows] = [{k: h[k] for k in keys} for h in tr.state.log_history if "loss" in h]
    assert len(hist[None]) == 3
    for a, b in zip(hist[None], hist[3]):
        for k in keys:
            assert b[k] == pytest.approx(a[k], rel=1e-3, abs=1e-5), k
