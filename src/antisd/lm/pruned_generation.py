"""Sampling that drops finished sequences from the batch: the same distribution as
``transformers``' ``generate(do_sample=True)``, cheaper for small models on CPU.

``generate`` keeps every sequence of a batch in every decoding step until the longest one ends,
so a batch whose responses have mean length 35 and maximum 96 runs 96 steps at full width. For a
small model on CPU the cost of a step grows faster than linearly with the batch (measured on the
toy policy, one thread: 35 ms per step at 128 rows, 12 ms at 64, 8 ms at 8), so most of the work
is spent on rows that have already emitted their end-of-sequence token. ``pruned_generate``
removes a row from the batch, and from the KV cache (``DynamicCache.batch_select_indices``), as
soon as it ends.

What stays the same: each new token is drawn from softmax(logits / temperature), restricted to
the top-k / nucleus top-p set when those are on, exactly as ``generate``'s logits warpers do; the
output has ``generate``'s layout (prompt ids, then new ids, ``pad_token_id`` after a row's end
token, width prompt + the number of steps run). What differs: the random stream (fewer rows draw
at each step), so the samples are others from the same distribution.

Supported: decoder-only models that take ``cache`` (transformers 5's name of ``past_key_values``),
``position_ids`` and a 2-D ``attention_mask`` (Llama, Qwen, Mistral, Olmo families), left-padded prompts, temperature,
top_k, top_p. Anything else (repetition penalty, min_p, beam search, constraints) is refused by
``supports`` so that callers fall back to ``generate``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import DynamicCache

_NEUTRAL = {"repetition_penalty": (None, 1.0), "min_p": (None, 0.0), "num_beams": (None, 1),
            "no_repeat_ngram_size": (None, 0), "bad_words_ids": (None,), "suppress_tokens": (None,),
            "begin_suppress_tokens": (None,), "forced_eos_token_id": (None,), "forced_bos_token_id": (None,),
            "typical_p": (None, 1.0), "epsilon_cutoff": (None, 0.0), "eta_cutoff": (None, 0.0),
            "min_new_tokens": (None, 0), "min_length": (None, 0), "guidance_scale": (None, 1.0),
            "num_return_sequences": (None, 1), "top_h": (None,)}


def supports(generation_config: Any) -> str | None:
    """None when ``pruned_generate`` computes what ``generate`` would for this config, else the reason."""
    if not getattr(generation_config, "do_sample", False):
        return "do_sample is off"
    if not getattr(generation_config, "max_new_tokens", None):
        return "max_new_tokens is not set"
    for name, neutral in _NEUTRAL.items():
        value = getattr(generation_config, name, None)
        if value not in neutral:
            return f"{name}={value!r}"
    return None


def _filter_logits(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Top-k then nucleus filtering as transformers' TopKLogitsWarper / TopPLogitsWarper (min_tokens_to_keep=1)."""
    if top_k and 0 < top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]  # (A, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, sorted_idx = torch.sort(logits, descending=False, dim=-1)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove_sorted = cum <= (1 - top_p)
        remove_sorted[..., -1:] = False  # keep at least one token
        remove = remove_sorted.scatter(-1, sorted_idx, remove_sorted)
        logits = logits.masked_fill(remove, float("-inf"))
    return logits


@torch.no_grad()
def pruned_generate(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    max_new_tokens: int,
    eos_token_ids: Sequence[int],
    pad_token_id: int,
    temperature: float = 1.0,
    top_k: int | None = 0,
    top_p: float | None = 1.0,
) -> torch.Tensor:
    """Sample up to ``max_new_tokens`` per row of left-padded ``input_ids`` (B, P); returns (B, P + steps)."""
    if input_ids.shape != attention_mask.shape or input_ids.dim() != 2:
        raise ValueError(f"input_ids {tuple(input_ids.shape)} and attention_mask {tuple(attention_mask.shape)} "
                         "must both be (B, P)")
    if not temperature > 0:
        raise ValueError(f"temperature={temperature} must be > 0")
    device = input_ids.device
    B = input_ids.size(0)
    eos = torch.tensor(sorted(set(int(e) for e in eos_token_ids)), device=device)
    new = torch.full((B, max_new_tokens), pad_token_id, dtype=input_ids.dtype, device=device)  # (B, T)
    active = torch.arange(B, device=device)  # rows still generating
    mask = attention_mask.long()  # (A, P + t)
    position = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, P)
    cache = DynamicCache()
    out = model(input_ids=input_ids, attention_mask=mask, position_ids=position, cache=cache, use_cache=True,
                logits_to_keep=1)
    next_pos = position[:, -1] + 1  # (A,)
    steps = 0
    for t in range(max_new_tokens):
        logits = out.logits[:, -1, :].float() / temperature  # (A, V)
        logits = _filter_logits(logits, top_k or 0, top_p if top_p is not None else 1.0)
        token = torch.multinomial(logits.softmax(dim=-1), num_samples=1).squeeze(1)  # (A,)
        new[active, t] = token
        steps = t + 1
        alive = ~torch.isin(token, eos)  # (A,)
        if t == max_new_tokens - 1 or not alive.any():
            break
        if not alive.all():
            keep = alive.nonzero().squeeze(1)  # (A',)
            cache.batch_select_indices(keep)
            active, token, mask, next_pos = active[keep], token[keep], mask[keep], next_pos[keep]
        mask = torch.cat([mask, mask.new_ones(mask.size(0), 1)], dim=1)
        out = model(input_ids=token[:, None], attention_mask=mask, position_ids=next_pos[:, None],
                    cache=cache, use_cache=True)
        next_pos = next_pos + 1
    return torch.cat([input_ids, new[:, :steps]], dim=1)
