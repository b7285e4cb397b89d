"""Per-token log-probs and entropies of a Hugging Face causal LM, computed in token chunks.

`per_token_logps_and_entropies` has the semantics of TRL 1.16.0's
`GRPOTrainer._get_per_token_logps_and_entropies`: the log-prob of each of the last K tokens of
`input_ids` given everything before it, and the entropy of the distribution it was drawn from. It
takes the final hidden states and the output layer from `antisd.lm.plumbing` (backbone, wrappers,
FSDP/PEFT) and combines them with the chunked kernel of `antisd.lm.chunked`
(`chunked_logps_and_entropy`, which never holds more than one (chunk_tokens, V) block of logits,
also importable from here; its maths is in that module's docstring). `naive_logps_and_entropies` is
the full-softmax reference (materialises (B, K, V) logits), used by tests and by callers that want
the model's own logits.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

from antisd.lm.chunked import DEFAULT_MAX_CHUNK_ELEMS, chunked_logps_and_entropy, default_chunk_tokens
from antisd.lm.plumbing import last_hidden_states, needs_full_logits, output_layer, position_ids_from_mask

__all__ = ["DEFAULT_MAX_CHUNK_ELEMS", "chunked_logps_and_entropy", "default_chunk_tokens",
           "naive_logps_and_entropies", "per_token_logps_and_entropies"]

logger = logging.getLogger(__name__)


def _check_inputs(input_ids: Tensor, attention_mask: Tensor, logits_to_keep: int) -> None:
    if input_ids.dim() != 2 or attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"input_ids {tuple(input_ids.shape)} and attention_mask "
            f"{tuple(attention_mask.shape)} must both be (B, L)"
        )
    if not 1 <= logits_to_keep < input_ids.shape[1]:
        raise ValueError(
            f"logits_to_keep={logits_to_keep} must be in [1, L-1] with L={input_ids.shape[1]} "
            "(each kept token needs at least one token before it)"
        )


def per_token_logps_and_entropies(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor,
    logits_to_keep: int,
    *,
    temperature: float = 1.0,
    compute_entropy: bool = True,
    chunk_tokens: int | None = None,
    max_chunk_elems: int = DEFAULT_MAX_CHUNK_ELEMS,
) -> tuple[Tensor, Tensor | None]:
    """Tempered log pi(x_t | x_<t) and the entropy of pi(. | x_<t) for the last K tokens.

    Same semantics as TRL 1.16.0 `GRPOTrainer._get_per_token_logps_and_entropies` (its fused LM
    head): input_ids (B, L), attention_mask (B, L), K = logits_to_keep -> logps (B, K) float32
    and entropies (B, K) float32 or None, where logps[b, k] scores input_ids[b, L-K+k] given
    input_ids[b, :L-K+k], with logits divided by `temperature`. Targets that are padding
    (attention_mask[:, -K:] == 0) get log-prob 0 and entropy 0, as TRL's labels of -100 do, and
    are skipped by the output layer. Both outputs carry gradient when grad is enabled (as TRL's
    do); `.detach()` the entropy if the loss must not see it.

    Differences from TRL: position_ids are recomputed from the attention mask (cumsum - 1), so
    left padding does not shift positions (only rounding-level changes for RoPE models); logits
    are float32 even for a bf16 model; models whose logits are transformed after the output
    layer (softcapping, logit scales) or whose output layer is not a plain nn.Linear (e.g. a
    LoRA on lm_head) take the naive full-logits path, with a warning.
    """
    _check_inputs(input_ids, attention_mask, logits_to_keep)
    reason = needs_full_logits(model)
    if reason is not None:
        logger.warning("per_token_logps_and_entropies: %s; using full logits", reason)
        return naive_logps_and_entropies(
            model,
            input_ids,
            attention_mask,
            logits_to_keep,
            temperature=temperature,
            compute_entropy=compute_entropy,
        )
    k = logits_to_keep
    position_ids = position_ids_from_mask(attention_mask)  # (B, L)
    hidden = last_hidden_states(model, input_ids, attention_mask, position_ids)  # (B, L, H)
    hidden = hidden[:, -k - 1 : -1, :]  # (B, K, H): the states preceding the targets
    keep_mask = attention_mask[:, -k:].bool()  # (B, K): real (non-pad) target tokens
    weight, bias = output_layer(model)  # (V, H), (V,) or None; gathered once under FSDP2
    logps, entropy = chunked_logps_and_entropy(
        hidden[keep_mask],  # (M, H), only real targets are scored
        weight,
        input_ids[:, -k:][keep_mask],  # (M,)
        bias=bias,
        temperature=temperature,
        chunk_tokens=chunk_tokens,
        max_chunk_elems=max_chunk_elems,
        compute_entropy=compute_entropy,
    )
    # masked_scatter keeps the graph connected even when no target is real (as TRL does)
    logps = logps.new_zeros(keep_mask.shape).masked_scatter(keep_mask, logps)  # (B, K)
    if entropy is not None:
        entropy = entropy.new_zeros(keep_mask.shape).masked_scatter(keep_mask, entropy)  # (B, K)
    return logps, entropy


def naive_logps_and_entropies(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor,
    logits_to_keep: int,
    *,
    temperature: float = 1.0,
    compute_entropy: bool = True,
    chunk_tokens: int | None = None,
    max_chunk_elems: int = DEFAULT_MAX_CHUNK_ELEMS,
) -> tuple[Tensor, Tensor | None]:
    """Full-softmax reference for `per_token_logps_and_entropies` (materialises (B, K, V) logits).

    For tests, documentation and small models (the toy world's PMI check); chunk_tokens and
    max_chunk_elems are accepted and ignored so that both functions share one signature.
    """
    del chunk_tokens, max_chunk_elems
    _check_inputs(input_ids, attention_mask, logits_to_keep)
    k = logits_to_keep
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids_from_mask(attention_mask),
        use_cache=False,
    )
    logits = out.logits[:, -k - 1 : -1, :].float() / temperature  # (B, K, V)
    logp_all = torch.log_softmax(logits, dim=-1)  # (B, K, V)
    logps = logp_all.gather(-1, input_ids[:, -k:, None]).squeeze(-1)  # (B, K)
    entropy = None
    if compute_entropy:
        entropy = -(logp_all.exp() * logp_all).sum(-1)  # (B, K)
    keep_mask = attention_mask[:, -k:].bool()  # (B, K)
    logps = logps.masked_fill(~keep_mask, 0.0)
    entropy = None if entropy is None else entropy.masked_fill(~keep_mask, 0.0)
    return logps, entropy
