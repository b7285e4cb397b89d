"""antisd.lm.pruned_generation: every sampled token is drawn from the distribution a full,
unpadded forward of the same prefix gives (so dropping finished rows from the batch and the KV
cache changes nothing but the random stream); output layout as transformers' generate; the
top-k / top-p filters equal transformers' own warpers."""

import pytest
import torch
from transformers import GenerationConfig
from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

from antisd.lm.pruned_generation import _filter_logits, pruned_generate, supports
from antisd.lm.sampling import left_pad


def _left_padded(tokenizer, texts):
    enc = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    return (enc, *left_pad(enc, tokenizer.pad_token_id))


@pytest.mark.parametrize("top_k,top_p", [(0, 1.0), (7, 1.0), (0, 0.8)])
def test_each_token_is_drawn_from_the_unpadded_full_forward_distribution(tiny_model, tiny_tokenizer, monkeypatch,
                                                                         top_k, top_p):
    tok = tiny_tokenizer
    prompts = ["What is 2 + 2?", "Hi", "Count to three please, slowly and clearly", "x"] * 2
    enc, ids, mask = _left_padded(tok, prompts)
    # end tokens: the 40 sampled most often (the random model is near uniform), so that rows end at
    # different steps and the pruning path runs
    torch.manual_seed(1)
    free = pruned_generate(tiny_model, ids, mask, max_new_tokens=12, eos_token_ids=[-1], pad_token_id=tok.pad_token_id)
    eos = torch.bincount(free[:, ids.size(1):].flatten()).topk(40).indices.tolist()
    drawn = []  # (probabilities given to multinomial (A, V), their rows)
    real = torch.multinomial

    def spy(probs, num_samples=1, **kw):
        out = real(probs, num_samples, **kw)
        drawn.append(probs.detach().clone())
        return out

    monkeypatch.setattr(torch, "multinomial", spy)
    torch.manual_seed(0)
    out = pruned_generate(tiny_model, ids, mask, max_new_tokens=12, eos_token_ids=eos,
                          pad_token_id=tok.pad_token_id, temperature=0.7, top_k=top_k, top_p=top_p)
    monkeypatch.setattr(torch, "multinomial", real)
    new = out[:, ids.size(1):]  # (B, steps)
    ends = torch.isin(new, torch.tensor(eos))
    lengths = [e.nonzero()[0].item() + 1 if e.any() else new.size(1) for e in ends]
    assert len(set(lengths)) > 1, "rows should end at different steps"
    # rebuild which row each multinomial row belonged to: rows alive at step t are those with length > t
    for t, probs in enumerate(drawn):
        alive = [i for i in range(len(prompts)) if lengths[i] > t]
        assert probs.size(0) == len(alive)
        for r, i in enumerate(alive):
            prefix = torch.tensor([enc[i] + new[i, :t].tolist()])
            logits = tiny_model(prefix).logits[0, -1].float() / 0.7
            if top_k:
                logits = TopKLogitsWarper(top_k)(prefix, logits[None])[0]
            if top_p < 1.0:
                logits = TopPLogitsWarper(top_p)(prefix, logits[None])[0]
            torch.testing.assert_close(probs[r], logits.softmax(-1), rtol=1e-4, atol=1e-6)
    # layout: after a row's end token only padding, width = prompt + steps run
    for i, n in enumerate(lengths):
        assert (new[i, n:] == tok.pad_token_id).all()
    assert new.size(1) == max(lengths)


def test_filters_equal_transformers_warpers():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 50, generator=g) * 3
    for k in (1, 5, 49):
        torch.testing.assert_close(_filter_logits(logits, k, 1.0), TopKLogitsWarper(k)(None, logits.clone()))
    for p in (0.1, 0.5, 0.95):
        torch.testing.assert_close(_filter_logits(logits, 0, p), TopPLogitsWarper(p)(None, logits.clone()))


def test_supports_refuses_settings_it_does_not_implement():
    assert supports(GenerationConfig(do_sample=True, max_new_tokens=8, temperature=0.9, top_k=5, top_p=0.9)) is None
    assert "do_sample" in supports(GenerationConfig(do_sample=False, max_new_tokens=8))
    assert "repetition_penalty" in supports(GenerationConfig(do_sample=True, max_new_tokens=8, repetition_penalty=1.2))
    assert "min_p" in supports(GenerationConfig(do_sample=True, max_new_tokens=8, min_p=0.1))
