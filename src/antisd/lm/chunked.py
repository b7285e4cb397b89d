"""Per-token log-probs and full-vocabulary entropies from hidden states and an output layer, in token chunks.

For a hidden state h (H,), the output layer gives logits z = (W h + b) / tau over the vocabulary
(V,), with tau the sampling temperature. For a target token y:

    log p(y) = z_y - logsumexp(z)                                   (log-prob)
    H(p)     = logsumexp(z) - sum_v softmax(z)_v z_v                (entropy)

Materialising z for every token of a batch costs N x V float32 (16 x 513 x 151,936 floats is
~5 GiB). `chunked_logps_and_entropy` never holds more than one (chunk_tokens, V) block of
logits: it walks over the tokens in chunks, keeps only logsumexp (N,) and the outputs, and its
backward pass (a custom `torch.autograd.Function`) RECOMPUTES each chunk's softmax instead of
storing it. With p = softmax(z):

    d log p(y) / dz = onehot(y) - p
    d H / dz        = -p * (log p + H)

and the chain rule through z = (W h + b) / tau gives dh = dz W / tau, dW = dz^T h / tau,
db = sum_tokens dz / tau. Memory is O(N + chunk_tokens * V) (plus V x H for the weight gradient
and for a float32 copy of a bf16 weight) with or without gradient, and the backward pass costs
one extra chunk matmul (the recomputation) on top of the two gradient ones. The default chunk,
max_chunk_elems = 2**24 float32 logits (64 MiB), is 110 tokens at Qwen's V = 151,936.

Logits are always computed in float32 (float64 when an input is float64): a bf16/fp16 output
weight is upcast once per call (V x H float32, never tokens x V), and autocast is disabled
inside, so returned log-probs and entropies are float32 even for a bf16 model. (TRL 1.16.0's
fused LM head rounds each logit tile to the model's dtype unless `cast_lm_head_to_fp32`.)
Logits must be finite (a -inf logit, e.g. a vocabulary mask in the bias, gives NaN entropy).

The model-level entry points (a Hugging Face causal LM in, per-token values out) are
`antisd.lm.logprobs`.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

DEFAULT_MAX_CHUNK_ELEMS = 2**24  # 64 MiB of float32 logits per chunk (110 tokens at V=151,936)


def default_chunk_tokens(vocab_size: int, max_chunk_elems: int = DEFAULT_MAX_CHUNK_ELEMS) -> int:
    """Largest token chunk with chunk_tokens * vocab_size <= max_chunk_elems (at least 1)."""
    if vocab_size < 1 or max_chunk_elems < 1:
        raise ValueError(
            f"vocab_size={vocab_size} and max_chunk_elems={max_chunk_elems} must both be >= 1"
        )
    return max(1, max_chunk_elems // vocab_size)


def _compute_dtype(*tensors: Tensor | None) -> torch.dtype:
    """float64 if any input is float64, else float32 (bf16/fp16 are upcast)."""
    if any(t is not None and t.dtype == torch.float64 for t in tensors):
        return torch.float64
    return torch.float32


def _no_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Disable autocast so that the chunk matmuls really run in the compute dtype."""
    return torch.autocast(device_type=device.type, enabled=False)


class _Projection:
    """The output layer in the compute dtype, with 1/tau folded in: z = (h/tau) W^T + b/tau.

    Writes each chunk's logits into one preallocated (chunk_tokens, V) buffer, so the loop
    allocates no (tokens x V) memory after the first chunk (on CPU a fresh large allocation per
    chunk also costs page faults).
    """

    def __init__(
        self, weight: Tensor, bias: Tensor | None, temperature: float, dtype: torch.dtype
    ) -> None:
        self.inv_temp = 1.0 / temperature
        self.dtype = dtype
        self.weight = weight.to(dtype)  # (V, H); a copy only for a bf16/fp16 weight
        self.bias = None if bias is None else bias.to(dtype) * self.inv_temp  # (V,)

    def logits(self, h_chunk: Tensor, out: Tensor) -> Tensor:
        """z = (h/tau) W^T + b/tau into `out`. (c, H) -> (c, V)."""
        h = h_chunk.to(self.dtype)  # (c, H)
        if self.inv_temp != 1.0:
            h = h * self.inv_temp
        if self.bias is None:
            return torch.mm(h, self.weight.t(), out=out)
        return torch.addmm(self.bias, h, self.weight.t(), out=out)


def _forward_chunks(
    hidden: Tensor,
    weight: Tensor,
    targets: Tensor,
    bias: Tensor | None,
    temperature: float,
    chunk_tokens: int,
    compute_entropy: bool,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Chunked forward. Returns logps (N,), logsumexp (N,), entropy (N,) or None.

    Per chunk, with m = max z and e = exp(z - m): logsumexp = m + log sum e, and
    H = logsumexp - sum p z = log sum e - sum e (z - m) / sum e.
    """
    dtype = _compute_dtype(hidden, weight, bias)
    n, v = hidden.shape[0], weight.shape[0]
    proj = _Projection(weight, bias, temperature, dtype)
    logps = hidden.new_empty(n, dtype=dtype)  # (N,)
    lse = hidden.new_empty(n, dtype=dtype)  # (N,)
    entropy = hidden.new_empty(n, dtype=dtype) if compute_entropy else None  # (N,)
    rows = min(chunk_tokens, n)
    z_buf = hidden.new_empty(rows, v, dtype=dtype)  # (chunk, V)
    e_buf = hidden.new_empty(rows, v, dtype=dtype) if compute_entropy else None  # (chunk, V)
    with _no_autocast(hidden.device):
        for start in range(0, n, chunk_tokens):
            stop = min(start + chunk_tokens, n)
            z = proj.logits(hidden[start:stop], out=z_buf[: stop - start])  # (c, V)
            m = z.amax(dim=-1)  # (c,)
            z_y = z.gather(1, targets[start:stop, None]).squeeze(1)  # (c,)
            z.sub_(m[:, None])  # (c, V), z - m <= 0
            if e_buf is None:
                sum_e = z.exp_().sum(dim=-1)  # (c,)
            else:
                e = torch.exp(z, out=e_buf[: stop - start])  # (c, V)
                sum_e = e.sum(dim=-1)  # (c,)
                entropy[start:stop] = sum_e.log() - e.mul_(z).sum(dim=-1) / sum_e
            lse_c = m + sum_e.log()  # (c,)
            lse[start:stop] = lse_c
            logps[start:stop] = z_y - lse_c
    return logps, lse, entropy


class _ChunkedLogpsEntropy(torch.autograd.Function):
    """Autograd Function: saves hidden, weight, bias, targets, logsumexp (and entropy); the
    backward pass recomputes each chunk's softmax. Not twice differentiable."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        hidden: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        targets: Tensor,
        temperature: float,
        chunk_tokens: int,
        compute_entropy: bool,
    ) -> tuple[Tensor, Tensor]:
        logps, lse, entropy = _forward_chunks(
            hidden, weight, targets, bias, temperature, chunk_tokens, compute_entropy
        )
        if entropy is None:
            entropy = logps.new_empty(0)  # placeholder output, never differentiated
            ctx.mark_non_differentiable(entropy)
        ctx.save_for_backward(hidden, weight, bias, targets, lse, entropy)
        ctx.temperature = temperature
        ctx.chunk_tokens = chunk_tokens
        ctx.compute_entropy = compute_entropy
        ctx.set_materialize_grads(False)
        return logps, entropy

    @staticmethod
    @once_differentiable
    def backward(  # type: ignore[override]
        ctx: Any, grad_logps: Tensor | None, grad_entropy: Tensor | None
    ) -> tuple[Tensor | None, ...]:
        hidden, weight, bias, targets, lse, entropy = ctx.saved_tensors
        if not ctx.compute_entropy:
            grad_entropy = None
        if grad_logps is None and grad_entropy is None:
            return (None,) * 7
        grad_h, grad_w, grad_b = _backward_chunks(
            hidden, weight, bias, targets, lse, entropy, grad_logps, grad_entropy,
            ctx.temperature, ctx.chunk_tokens, ctx.needs_input_grad[:3],
        )
        return grad_h, grad_w, grad_b, None, None, None, None


def _grad_coefficients(
    grad_logps: Tensor | None, grad_entropy: Tensor | None, entropy: Tensor, inv_temp: float, dtype: torch.dtype
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """Per-row coefficients of `_backward_chunks`' dL/d(raw logits) = p * (slope log p + offset) + g_lp onehot:
    g_lp = grad_logps / tau, slope = -g_ent / tau, offset = -(g_ent H) / tau - g_lp (each (N,); slope and
    offset None without an entropy gradient, g_lp None without a log-prob gradient)."""
    g_lp = None if grad_logps is None else grad_logps.to(dtype) * inv_temp  # (N,)
    if grad_entropy is None:
        return g_lp, None, None
    g_ent = grad_entropy.to(dtype)  # (N,)
    slope = -g_ent * inv_temp  # (N,), coefficient of log p
    offset = -g_ent * entropy * inv_temp  # (N,)
    if g_lp is not None:
        offset = offset - g_lp
    return g_lp, slope, offset


def _backward_chunks(
    hidden: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    targets: Tensor,
    lse: Tensor,
    entropy: Tensor,
    grad_logps: Tensor | None,
    grad_entropy: Tensor | None,
    temperature: float,
    chunk_tokens: int,
    needs: tuple[bool, ...],
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """Gradients w.r.t. hidden (N, H), weight (V, H), bias (V,), recomputing each chunk.

    With z the tempered logits, log p = z - lse and p = exp(log p):
        dL/dz = g_lp (onehot - p) - g_ent p (log p + H)
              = p * (-g_ent log p - (g_lp + g_ent H)) + g_lp onehot,
    then dL/d(raw logits) = dL/dz / tau (folded into the per-row coefficients).
    """
    dtype = lse.dtype
    n, v = hidden.shape[0], weight.shape[0]
    proj = _Projection(weight, bias, temperature, dtype)
    g_lp, slope, offset = _grad_coefficients(grad_logps, grad_entropy, entropy, proj.inv_temp, dtype)
    need_h, need_w, need_b = needs
    grad_h = hidden.new_empty(hidden.shape, dtype=dtype) if need_h else None  # (N, H)
    grad_w = weight.new_zeros(weight.shape, dtype=dtype) if need_w else None  # (V, H)
    grad_b = weight.new_zeros(v, dtype=dtype) if need_b else None  # (V,)
    rows = min(chunk_tokens, n)
    z_buf = hidden.new_empty(rows, v, dtype=dtype)  # (chunk, V)
    p_buf = hidden.new_empty(rows, v, dtype=dtype) if grad_entropy is not None else None
    with _no_autocast(hidden.device):
        for start in range(0, n, chunk_tokens):
            stop = min(start + chunk_tokens, n)
            h_c = hidden[start:stop].to(dtype)  # (c, H)
            logp = proj.logits(h_c, out=z_buf[: stop - start])  # (c, V), z
            logp.sub_(lse[start:stop, None])  # (c, V), log p
            if p_buf is None:  # logps only: dL/dz = -g_lp p + g_lp onehot
                grad_z = logp.exp_().mul_(-g_lp[start:stop, None])  # (c, V)
            else:
                p = torch.exp(logp, out=p_buf[: stop - start])  # (c, V)
                grad_z = logp.mul_(slope[start:stop, None]).add_(offset[start:stop, None])
                grad_z.mul_(p)  # (c, V)
            if g_lp is not None:
                grad_z.scatter_add_(1, targets[start:stop, None], g_lp[start:stop, None])
            if grad_h is not None:
                torch.mm(grad_z, proj.weight, out=grad_h[start:stop])  # (c, H)
            if grad_w is not None:
                grad_w.addmm_(grad_z.t(), h_c)  # (V, H)
            if grad_b is not None:
                grad_b += grad_z.sum(dim=0)  # (V,)
    return (
        None if grad_h is None else grad_h.to(hidden.dtype),
        None if grad_w is None else grad_w.to(weight.dtype),
        None if grad_b is None else grad_b.to(bias.dtype),
    )


def chunked_logps_and_entropy(
    hidden: Tensor,
    weight: Tensor,
    targets: Tensor,
    *,
    bias: Tensor | None = None,
    temperature: float = 1.0,
    chunk_tokens: int | None = None,
    max_chunk_elems: int = DEFAULT_MAX_CHUNK_ELEMS,
    compute_entropy: bool = True,
) -> tuple[Tensor, Tensor | None]:
    """log p(y) = z_y - logsumexp(z) and H = logsumexp(z) - sum softmax(z) z, chunked over tokens.

    z = (hidden W^T + bias) / temperature, computed in float32 (float64 for float64 inputs).
    Shapes: hidden (N, H), weight (V, H), targets (N,) int64, bias (V,) -> logps (N,) and
    entropy (N,) or None. No (chunk_tokens x V) block larger than one chunk is ever held;
    chunk_tokens defaults to max(1, max_chunk_elems // V).

    Differentiable w.r.t. hidden, weight and bias through both outputs (entropy included) when
    grad is enabled; the backward recomputes each chunk's softmax (memory O(N + chunk * V)). Not
    twice differentiable. Under torch.no_grad (or with no input requiring grad) no graph is built
    and nothing is saved.
    """
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(
            f"hidden {tuple(hidden.shape)} must be (N, H) and weight {tuple(weight.shape)} (V, H)"
        )
    if targets.shape != hidden.shape[:1]:
        raise ValueError(f"targets {tuple(targets.shape)} must be (N,) = ({hidden.shape[0]},)")
    if bias is not None and bias.shape != weight.shape[:1]:
        raise ValueError(f"bias {tuple(bias.shape)} must be (V,) = ({weight.shape[0]},)")
    if temperature <= 0:
        raise ValueError(f"temperature={temperature} must be > 0")
    if chunk_tokens is None:
        chunk_tokens = default_chunk_tokens(weight.shape[0], max_chunk_elems)
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens={chunk_tokens} must be >= 1 (or None for the default)")
    targets = targets.long()
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (hidden, weight, bias)
    )
    if not needs_grad:
        logps, _, entropy = _forward_chunks(
            hidden, weight, targets, bias, temperature, chunk_tokens, compute_entropy
        )
        return logps, entropy
    logps, entropy = _ChunkedLogpsEntropy.apply(
        hidden, weight, bias, targets, float(temperature), chunk_tokens, compute_entropy
    )
    return logps, (entropy if compute_entropy else None)
