"""Plumbing around a Hugging Face causal LM: wrappers, backbone, output layer, positions.

A causal LM maps token ids to logits in two parts: a backbone giving the final (normed) hidden
states h (B, L, H), and an output layer z = W h + b (V, H) x (H,) -> (V,). `antisd.lm.logprobs`
uses that split to score tokens without materialising (B, L, V) logits; this module finds the
two parts through the wrappers training puts around a model (DDP/DeepSpeed `.module`, PEFT,
FSDP2), says when the split does not hold (`needs_full_logits`), and gives the positions of
left-padded rows (`position_ids_from_mask`). Nothing here computes a log-prob.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator

import torch
from torch import Tensor, nn

# Config attributes of models whose logits are NOT lm_head(last_hidden_state): the chunked path
# would silently be wrong for them, so they take the naive (full-logits) path instead.
LOGIT_TRANSFORM_ATTRS = (
    "final_logit_softcapping",
    "logit_scale",
    "logits_scaling",
    "output_multiplier",
    "lm_head_multiplier",
)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (where its inputs must go)."""
    return next(model.parameters()).device


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """`model.eval()` inside the block, the previous train/eval mode restored after it."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def position_ids_from_mask(attention_mask: Tensor) -> Tensor:
    """Positions counted over real tokens only: cumsum(mask) - 1, clamped at 0. (B, L) -> (B, L).

    Left padding then does not shift the positions of the real tokens (needed for models with
    absolute positions; for RoPE models it only removes a harmless constant shift).
    """
    return (attention_mask.long().cumsum(-1) - 1).clamp_(min=0)


def accepts_kwarg(module: nn.Module, name: str) -> bool:
    """Whether `module.forward` takes a keyword `name` (explicitly or through **kwargs)."""
    try:
        params = inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def unwrap_model(model: nn.Module) -> nn.Module:
    """The causal LM inside a DDP/DeepSpeed wrapper (`.module`) and/or a PEFT model
    (`get_base_model()`: adapters are injected in place, so its layers are the adapted ones)."""
    inner = getattr(model, "module", None)
    if isinstance(inner, nn.Module):
        model = inner
    if hasattr(model, "peft_config") and callable(getattr(model, "get_base_model", None)):
        model = model.get_base_model()
    return model


def _is_prompt_learning(model: nn.Module) -> bool:
    """PEFT prefix/prompt tuning adds virtual tokens in the PEFT forward itself."""
    inner = getattr(model, "module", model)
    return bool(getattr(inner, "active_peft_config", None) and getattr(
        inner.active_peft_config, "is_prompt_learning", False
    ))


def _is_fsdp(model: nn.Module) -> bool:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # torch built without distributed
        return False
    return isinstance(model, FSDPModule)


def _is_dtensor(t: Tensor) -> bool:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:
        return False
    return isinstance(t, DTensor)


def find_backbone(model: nn.Module) -> nn.Module | None:
    """The module whose `last_hidden_state` feeds the output layer, or None.

    Tries `model.base_model` first (HF's `base_model_prefix` attribute: `model.model` for
    Qwen3/Llama/Olmo; the same lookup TRL 1.16.0's fused LM head uses), then
    `model.get_decoder()`, accepting a module other than `model` itself. Returns None for
    wrapped models (DDP/DeepSpeed expose `.module`: calling a submodule directly would bypass
    the wrapper's forward and its gradient synchronisation), for FSDP2 roots (their forward
    hooks must run), for PEFT prompt learning and for models exposing no backbone. A PEFT
    model's backbone is its base model's.
    """
    wrapped = isinstance(getattr(model, "module", None), nn.Module)
    if wrapped or _is_fsdp(model) or _is_prompt_learning(model):
        return None
    model = unwrap_model(model)
    candidate = getattr(model, "base_model", None)
    if isinstance(candidate, nn.Module) and candidate is not model:
        return candidate
    get_decoder = getattr(model, "get_decoder", None)
    if callable(get_decoder):
        try:
            candidate = get_decoder()
        except (AttributeError, NotImplementedError, TypeError, ValueError):
            candidate = None
        if isinstance(candidate, nn.Module) and candidate is not model:
            return candidate
    return None


def needs_full_logits(model: nn.Module) -> str | None:
    """Why lm_head(last_hidden_state) would not equal the model's logits, or None.

    Reasons: a config attribute that transforms the logits after the output layer
    (`LOGIT_TRANSFORM_ATTRS`, e.g. Gemma's softcapping) or an output layer that is not a plain
    nn.Linear (e.g. a LoRA on lm_head).
    """
    model = unwrap_model(model)
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "get_text_config"):
        config = config.get_text_config()
    for attr in LOGIT_TRANSFORM_ATTRS:
        value = getattr(config, attr, None)
        if value not in (None, 0, 0.0, 1, 1.0):
            return f"config.{attr}={value} transforms the logits"
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if not isinstance(head, nn.Linear):
        return f"output embeddings {type(head).__name__} are not a plain nn.Linear"
    return None


def output_layer(model: nn.Module) -> tuple[Tensor, Tensor | None]:
    """The output layer's weight (V, H) and bias (V,) or None, logits = h W^T + b.

    Under FSDP2 the head is sharded (DTensor): it is gathered here, differentiably. Check
    `needs_full_logits(model)` first: this assumes a plain nn.Linear head.
    """
    head = unwrap_model(model).get_output_embeddings()
    weight, bias = head.weight, head.bias
    if _is_dtensor(weight):
        weight = weight.full_tensor()
        bias = None if bias is None else bias.full_tensor()
    return weight, bias


def last_hidden_states(
    model: nn.Module, input_ids: Tensor, attention_mask: Tensor, position_ids: Tensor
) -> Tensor:
    """Final (normed) hidden states (B, L, H) that the output layer maps to logits.

    Preferred: run the backbone only (no logits at all). Fallback, for models that expose no
    backbone or are wrapped (DDP): run the full model with output_hidden_states=True and, where
    supported, logits_to_keep=1 so that only one position's logits are computed; HF models store
    the final normed state as hidden_states[-1].
    """
    backbone = find_backbone(model)
    inputs = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "position_ids": position_ids,
        "use_cache": False,
    }
    if backbone is not None:
        hidden = getattr(backbone(**inputs), "last_hidden_state", None)
        if hidden is None:
            raise TypeError(
                f"{type(backbone).__name__}, found as the backbone of {type(model).__name__}, "
                "returned no last_hidden_state; wrap the model in a module exposing `.module` "
                "to use the output_hidden_states path"
            )
        return hidden  # (B, L, H)
    if accepts_kwarg(unwrap_model(model), "logits_to_keep"):
        inputs["logits_to_keep"] = 1
    out = model(**inputs, output_hidden_states=True)
    return out.hidden_states[-1]  # (B, L, H)
