"""antisd.lm.logprobs: chunked log-probs/entropies equal the full-softmax reference, with gradients,
bounded memory, and TRL 1.16.0's semantics on a tiny Qwen3 (the plumbing: test_modeling)."""

from __future__ import annotations

import contextlib
import logging
from types import SimpleNamespace

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from trl.trainer.utils import add_fused_lm_head, entropy_from_logits, selective_log_softmax

from antisd.lm.logprobs import (
    chunked_logps_and_entropy,
    default_chunk_tokens,
    naive_logps_and_entropies,
    per_token_logps_and_entropies,
)
from antisd.lm.plumbing import position_ids_from_mask
from model_wrappers import FakePeft, Wrapper

# ---- tensor level ---------------------------------------------------------------------------


def reference(hidden, weight, targets, bias=None, temperature=1.0):
    """Full-softmax float64 reference: log p = z_y - logsumexp(z), H = -sum p log p. (N,), (N,)."""
    z = hidden.double() @ weight.double().t()  # (N, V)
    if bias is not None:
        z = z + bias.double()
    logp = torch.log_softmax(z / temperature, dim=-1)  # (N, V)
    return logp.gather(1, targets[:, None]).squeeze(1), -(logp.exp() * logp).sum(-1)


def random_case(n=11, v=37, h=8, seed=0, dtype=torch.float32, bias=False, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    hidden = (torch.randn(n, h, generator=g) * scale).to(dtype)  # (N, H), peaked softmax
    weight = torch.randn(v, h, generator=g).to(dtype)  # (V, H)
    targets = torch.randint(0, v, (n,), generator=g)  # (N,)
    targets[0], targets[-1] = 0, v - 1  # vocabulary edges
    b = torch.randn(v, generator=g).to(dtype) if bias else None
    return hidden, weight, targets, b


@pytest.mark.parametrize("chunk_tokens", [1, 3, 11, 50, None])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("bias", [False, True])
def test_chunked_equals_reference(chunk_tokens, temperature, bias) -> None:
    hidden, weight, targets, b = random_case(bias=bias)
    logps, ent = chunked_logps_and_entropy(
        hidden, weight, targets, bias=b, temperature=temperature, chunk_tokens=chunk_tokens
    )
    ref_logps, ref_ent = reference(hidden, weight, targets, b, temperature)
    assert logps.dtype == ent.dtype == torch.float32 and logps.shape == ent.shape == (11,)
    torch.testing.assert_close(logps.double(), ref_logps, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ent.double(), ref_ent, rtol=1e-5, atol=1e-5)
    none_logps, none_ent = chunked_logps_and_entropy(
        hidden, weight, targets, bias=b, temperature=temperature, compute_entropy=False
    )
    assert none_ent is None
    torch.testing.assert_close(none_logps, logps)


def test_float64_and_bf16_inputs() -> None:
    hidden, weight, targets, _ = random_case(dtype=torch.float64)
    logps, ent = chunked_logps_and_entropy(hidden, weight, targets, chunk_tokens=4)
    ref_logps, ref_ent = reference(hidden, weight, targets)
    assert logps.dtype == torch.float64
    torch.testing.assert_close(logps, ref_logps, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ent, ref_ent, rtol=1e-12, atol=1e-12)

    hidden, weight, targets, _ = random_case(dtype=torch.bfloat16)
    logps, ent = chunked_logps_and_entropy(hidden, weight, targets, chunk_tokens=4)
    ref_logps, ref_ent = reference(hidden, weight, targets)  # float64 of the bf16 values
    assert logps.dtype == ent.dtype == torch.float32, "bf16 is upcast, outputs are float32"
    torch.testing.assert_close(logps.double(), ref_logps, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(ent.double(), ref_ent, rtol=1e-5, atol=1e-4)


def test_default_chunk_and_argument_checks() -> None:
    assert default_chunk_tokens(151_936) == 110
    assert default_chunk_tokens(151_936, 2**10) == 1
    hidden, weight, targets, _ = random_case()
    with pytest.raises(ValueError, match="temperature=0"):
        chunked_logps_and_entropy(hidden, weight, targets, temperature=0)
    with pytest.raises(ValueError, match="chunk_tokens=0"):
        chunked_logps_and_entropy(hidden, weight, targets, chunk_tokens=0)
    with pytest.raises(ValueError, match="targets"):
        chunked_logps_and_entropy(hidden, weight, targets[:-1])
    logps, ent = chunked_logps_and_entropy(hidden[:0], weight, targets[:0])
    assert logps.shape == ent.shape == (0,)


@pytest.mark.parametrize("which", ["both", "logps", "entropy"])
@pytest.mark.parametrize("bias", [False, True])
def test_gradients_equal_full_softmax_autograd(which, bias) -> None:
    hidden, weight, targets, b = random_case(n=9, v=23, h=5, bias=bias, seed=1)
    g = torch.Generator().manual_seed(2)
    w_lp, w_ent = torch.randn(9, generator=g), torch.randn(9, generator=g)  # (N,)
    leaves = [t.clone().requires_grad_() for t in (hidden, weight) + ((b,) if bias else ())]

    logps, ent = chunked_logps_and_entropy(
        leaves[0], leaves[1], targets, bias=leaves[2] if bias else None, temperature=0.8,
        chunk_tokens=2,
    )
    assert logps.requires_grad and ent.requires_grad
    loss = {"both": (w_lp * logps).sum() + (w_ent * ent).sum(),
            "logps": (w_lp * logps).sum(), "entropy": (w_ent * ent).sum()}[which]
    grads = torch.autograd.grad(loss, leaves)

    ref_leaves = [t.detach().double().requires_grad_() for t in leaves]
    ref_logps, ref_ent = reference(
        ref_leaves[0], ref_leaves[1], targets, ref_leaves[2] if bias else None, 0.8
    )
    w_lp, w_ent = w_lp.double(), w_ent.double()
    ref_loss = {"both": (w_lp * ref_logps).sum() + (w_ent * ref_ent).sum(),
                "logps": (w_lp * ref_logps).sum(), "entropy": (w_ent * ref_ent).sum()}[which]
    ref_grads = torch.autograd.grad(ref_loss, ref_leaves)
    for got, want in zip(grads, ref_grads):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-5)


def test_gradcheck_float64() -> None:
    hidden, weight, targets, b = random_case(n=5, v=7, h=3, dtype=torch.float64, bias=True)
    inputs = tuple(t.requires_grad_() for t in (hidden, weight, b))

    def fn(h, w, bb):
        return chunked_logps_and_entropy(h, w, targets, bias=bb, temperature=0.7, chunk_tokens=2)

    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradcheck(
        lambda h, w, bb: chunked_logps_and_entropy(
            h, w, targets, bias=bb, chunk_tokens=3, compute_entropy=False
        )[0],
        inputs,
    )


def test_no_graph_under_no_grad() -> None:
    hidden, weight, targets, _ = random_case()
    hidden.requires_grad_()
    with torch.no_grad():
        logps, ent = chunked_logps_and_entropy(hidden, weight, targets)
    assert logps.grad_fn is None and ent.grad_fn is None and not logps.requires_grad
    logps, ent = chunked_logps_and_entropy(hidden.detach(), weight, targets)
    assert logps.grad_fn is None


class MaxTensorSize(TorchDispatchMode):
    """Records the largest floating tensor produced by any op (forward and backward)."""

    def __init__(self) -> None:
        super().__init__()
        self.max_numel = 0
        self.ops: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.ops.add(str(func.overloadpacket.__name__))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                self.max_numel = max(self.max_numel, t.numel())
        return out


def test_memory_never_exceeds_one_chunk() -> None:
    # N * V = 30M logits, 29x the limit; N = 2_000 checks the same and costs ~4x the time
    n, v, h, max_elems = 600, 50_000, 8, 2**20
    hidden, weight, targets, _ = random_case(n=n, v=v, h=h, scale=1.0)
    leaves = [t.requires_grad_() for t in (hidden, weight)]
    slack = v  # one vocabulary row
    with MaxTensorSize() as fwd:
        logps, ent = chunked_logps_and_entropy(*leaves, targets, max_chunk_elems=max_elems)
    assert 0.9 * max_elems < fwd.max_numel <= max_elems + slack, fwd.max_numel
    with MaxTensorSize() as bwd:
        (logps.sum() + ent.sum()).backward()
    assert "mm" in bwd.ops or "addmm" in bwd.ops, "the backward ran outside the mode"
    assert bwd.max_numel <= max_elems + slack, bwd.max_numel
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in leaves)

    with MaxTensorSize() as control:  # the guard does see a full-logits computation
        _ = hidden[:100].detach() @ weight.detach().t()
    assert control.max_numel == 100 * v


# ---- model level ----------------------------------------------------------------------------


def padded_batch(seed: int = 0):
    """Left-padded prompts + right-padded completions: input_ids (3, 16), mask (3, 16), K = 7."""
    g = torch.Generator().manual_seed(seed)
    prompt_lens, completion_lens, p, k = [9, 5, 2], [7, 4, 1], 9, 7
    ids = torch.zeros(3, p + k, dtype=torch.long)  # pad id 0
    mask = torch.zeros(3, p + k, dtype=torch.long)
    for i, (pl, cl) in enumerate(zip(prompt_lens, completion_lens)):
        ids[i, p - pl : p + cl] = torch.randint(3, 500, (pl + cl,), generator=g)
        mask[i, p - pl : p + cl] = 1
    return ids, mask, k


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_model_matches_naive_and_trl_selective_log_softmax(tiny_model, temperature) -> None:
    ids, mask, k = padded_batch()
    with torch.no_grad():
        logps, ent = per_token_logps_and_entropies(
            tiny_model, ids, mask, k, temperature=temperature, chunk_tokens=4
        )
        naive_logps, naive_ent = naive_logps_and_entropies(
            tiny_model, ids, mask, k, temperature=temperature
        )
        logits = tiny_model(
            input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)
        ).logits[:, -k - 1 : -1] / temperature  # (B, K, V)
    keep = mask[:, -k:].bool()  # (B, K)
    assert logps.shape == ent.shape == (3, k)
    torch.testing.assert_close(logps, naive_logps, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ent, naive_ent, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logps[keep], selective_log_softmax(logits, ids[:, -k:])[keep])
    torch.testing.assert_close(ent[keep], entropy_from_logits(logits)[keep])
    assert (logps[~keep] == 0).all() and (ent[~keep] == 0).all()
    # negative control: an off-by-one alignment is far from these values
    shifted = selective_log_softmax(logits[:, 1:], ids[:, -k:-1])
    assert (shifted - logps[:, :-1])[keep[:, :-1]].abs().max() > 1e-3


def test_model_matches_trl_grpo_hook(tiny_model_path, tiny_model) -> None:
    """Against TRL 1.16.0's own GRPOTrainer._get_per_token_logps_and_entropies (fused LM head);
    fails loudly if that private hook moves."""
    from transformers import AutoModelForCausalLM
    from trl import GRPOTrainer

    trl_model = AutoModelForCausalLM.from_pretrained(tiny_model_path).eval()
    add_fused_lm_head(trl_model, temperature=0.8, outputs=("log_probs", "entropy"))
    fake_self = SimpleNamespace(accelerator=SimpleNamespace(autocast=contextlib.nullcontext))
    hook = GRPOTrainer._get_per_token_logps_and_entropies
    hook = getattr(hook, "__wrapped__", hook)  # past the profiling decorator
    ids, mask, k = padded_batch(seed=1)
    with torch.no_grad():
        trl_logps, trl_ent, _ = hook(fake_self, trl_model, ids, mask, k, compute_entropy=True)
        logps, ent = per_token_logps_and_entropies(tiny_model, ids, mask, k, temperature=0.8)
    # TRL does not recompute position ids: RoPE makes the shift harmless up to rounding
    torch.testing.assert_close(logps, trl_logps, rtol=1e-5, atol=2e-5)
    torch.testing.assert_close(ent, trl_ent, rtol=1e-5, atol=2e-5)


def test_left_padded_batch_equals_each_sequence_alone(tiny_model) -> None:
    ids, mask, k = padded_batch(seed=2)
    with torch.no_grad():
        logps, ent = per_token_logps_and_entropies(tiny_model, ids, mask, k)
        for i in range(ids.shape[0]):
            real = mask[i].bool()
            n_completion = int(mask[i, -k:].sum())
            alone_ids = ids[i, real][None]  # (1, L_i), no padding at all
            alone_logps, alone_ent = per_token_logps_and_entropies(
                tiny_model, alone_ids, torch.ones_like(alone_ids), n_completion
            )
            tol = {"atol": 1e-5, "rtol": 1e-5}
            torch.testing.assert_close(logps[i, :n_completion], alone_logps[0], **tol)
            torch.testing.assert_close(ent[i, :n_completion], alone_ent[0], **tol)


def test_sum_of_logps_is_sequence_log_likelihood(tiny_model) -> None:
    """sum_t log p(y_t | x, y_<t) == log p(y | x), against HF's own loss with prompt labels -100."""
    ids, mask, k = padded_batch(seed=3)
    with torch.no_grad():
        logps, _ = per_token_logps_and_entropies(tiny_model, ids, mask, k, compute_entropy=False)
        for i in range(ids.shape[0]):
            alone = ids[i, mask[i].bool()][None]  # (1, L_i)
            n_completion = int(mask[i, -k:].sum())
            labels = alone.clone()
            labels[:, :-n_completion] = -100
            loss = tiny_model(input_ids=alone, labels=labels).loss  # mean NLL of the completion
            torch.testing.assert_close(
                logps[i].sum(), -loss * n_completion, rtol=1e-5, atol=1e-5
            )


def test_model_gradients_equal_naive(tiny_model_path) -> None:
    from transformers import AutoModelForCausalLM

    ids, mask, k = padded_batch(seed=4)
    w = torch.linspace(-1, 1, 3 * k).view(3, k)  # (B, K)
    grads = []
    for fn in (per_token_logps_and_entropies, naive_logps_and_entropies):
        model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
        logps, ent = fn(model, ids, mask, k, temperature=0.9, chunk_tokens=5)
        ((w * logps).sum() + 0.5 * ent.sum()).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-6, msg=name)


def test_fallback_paths(tiny_model, caplog) -> None:
    ids, mask, k = padded_batch(seed=5)
    with torch.no_grad():
        want, want_ent = naive_logps_and_entropies(tiny_model, ids, mask, k)
        # wrapped model: hidden states through the wrapper's forward
        got, got_ent = per_token_logps_and_entropies(Wrapper(tiny_model), ids, mask, k)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got_ent, want_ent, rtol=1e-5, atol=1e-5)
        # PEFT-like model: the base model's backbone and head
        got, _ = per_token_logps_and_entropies(FakePeft(tiny_model), ids, mask, k)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        # a logit transform after lm_head: full-logits path, with a warning
        tiny_model.config.final_logit_softcapping = 30.0
        with caplog.at_level(logging.WARNING, logger="antisd.lm.logprobs"):
            got, _ = per_token_logps_and_entropies(tiny_model, ids, mask, k)
        assert "final_logit_softcapping" in caplog.text
        torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="logits_to_keep=16"):
        per_token_logps_and_entropies(tiny_model, ids, mask, 16)
