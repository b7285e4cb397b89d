"""Sampling plumbing shared by evaluation, the PMI diagnostics, the toy world and the benchmarks.

- Padding token lists into tensors: `left_pad` (prompts, so that generation continues from the
  last column), `right_pad` (completions), `pad_prompts_and_completions` (both, side by side,
  the layout `antisd.lm.logprobs.per_token_logps_and_entropies` scores).
- Special ids: `eos_token_ids` (the tokenizer's eos and every eos the model's generation config
  declares, e.g. Qwen's <|im_end|> and <|endoftext|>), `pad_token_id` (with a fallback).
- Loading: `load_tokenizer` (pad token = eos token when there is none, logged once per
  tokenizer), `torch_dtype` (a dtype name to a torch dtype), `resolve_device`.
- `generate_completions`: one seeded, batched `model.generate` loop. Each batch of prompts is
  left-padded and sampled under its own seed (`torch.manual_seed(seed)`, inside
  `torch.random.fork_rng` unless `isolate_rng=False`), so the same prompts, batch size and seeds
  give the same completions in any process. Each completion is cut at its first eos
  (`Completion`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from antisd.lm.plumbing import eval_mode, model_device

logger = logging.getLogger(__name__)

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

_PAD_FALLBACK_LOGGED: set[str] = set()  # tokenizers whose pad-token fallback was logged


# ------------------------------------------------------------------------------------ loading


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a CUDA device is visible, else ``cpu``; any other name as given."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def torch_dtype(name: str, device: str | torch.device | None = None) -> torch.dtype | str:
    """The weights dtype called `name` (float32, bfloat16, float16 or auto), for from_pretrained.

    ``auto`` without a device is the string "auto" (from_pretrained then keeps the checkpoint's
    own dtype); with a device it is float32 on a CPU and bfloat16 on any other device.
    """
    if name == "auto":
        if device is None:
            return "auto"
        return torch.float32 if torch.device(device).type == "cpu" else torch.bfloat16
    if name not in DTYPES:
        raise ValueError(f"dtype={name!r} is not a known dtype; expected one of {['auto', *sorted(DTYPES)]}")
    return DTYPES[name]


def ensure_pad_token(tokenizer: Any) -> Any:
    """Use the eos token as pad token when the tokenizer has none (as TRL does); logged once
    per tokenizer name. A tokenizer with neither is returned unchanged. Returns `tokenizer`."""
    if tokenizer.pad_token is not None or tokenizer.eos_token is None:
        return tokenizer
    tokenizer.pad_token = tokenizer.eos_token
    name = str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)
    if name not in _PAD_FALLBACK_LOGGED:
        _PAD_FALLBACK_LOGGED.add(name)
        logger.info("The tokenizer %s has no pad token: using the eos token %r", name, tokenizer.eos_token)
    return tokenizer


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False) -> Any:
    """``AutoTokenizer.from_pretrained`` with the pad-token fallback of `ensure_pad_token`; the toy model's
    tokenizer gets its chat template (``antisd.lm.names.ensure_toy_chat_template``)."""
    from transformers import AutoTokenizer

    from antisd.lm.names import ensure_toy_chat_template

    tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    return ensure_toy_chat_template(ensure_pad_token(tokenizer))


# ------------------------------------------------------------------------------------ special ids


def eos_token_ids(model: nn.Module | None, tokenizer: Any) -> set[int]:
    """Every id that ends a completion: the tokenizer's eos and the model generation config's
    ``eos_token_id`` (an int or a list; Qwen3 declares <|im_end|> and <|endoftext|>)."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    declared = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(declared, (list, tuple)):
        ids.update(declared)
    elif declared is not None:
        ids.add(declared)
    return ids


def pad_token_id(tokenizer: Any, eos_ids: Collection[int] = ()) -> int:
    """The tokenizer's pad id; else the smallest of `eos_ids` (default: the tokenizer's eos);
    else 0. Padded positions are masked, so the choice never changes a result."""
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    eos = set(eos_ids) or ({tokenizer.eos_token_id} - {None})
    return min(eos) if eos else 0


# ------------------------------------------------------------------------------------ padding


def _pad(seqs: Sequence[Sequence[int]], pad_id: int, left: bool, device: Any) -> tuple[Tensor, Tensor]:
    width = max((len(s) for s in seqs), default=0)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long, device=device)  # (N, W)
    mask = torch.zeros((len(seqs), width), dtype=torch.long, device=device)  # (N, W)
    for i, s in enumerate(seqs):
        if not len(s):
            continue
        cols = slice(width - len(s), width) if left else slice(0, len(s))
        ids[i, cols] = torch.as_tensor(list(s), dtype=torch.long, device=device)
        mask[i, cols] = 1
    return ids, mask


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int, device: Any = None) -> tuple[Tensor, Tensor]:
    """Token lists -> ids (N, W) with each row's tokens at the right end, pad_id before them, and
    the attention mask (N, W) (1 on real tokens); W = the longest list. int64, on `device`."""
    return _pad(seqs, pad_id, True, device)


def right_pad(seqs: Sequence[Sequence[int]], pad_id: int, device: Any = None) -> tuple[Tensor, Tensor]:
    """Token lists -> ids (N, W) with each row's tokens at the left end, pad_id after them, and
    the attention mask (N, W); W = the longest list. int64, on `device`."""
    return _pad(seqs, pad_id, False, device)


def pad_prompts_and_completions(
    prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]], pad_id: int, device: Any = None
) -> tuple[Tensor, Tensor, int]:
    """Left-padded prompts next to right-padded completions: ids (N, P + T), mask (N, P + T) and
    T, the completion width, so that ``ids[:, -T:]`` are the completions (logits_to_keep = T)."""
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts and {len(completions)} completions: need one completion per prompt")
    p_ids, p_mask = left_pad(prompts, pad_id, device)  # (N, P)
    c_ids, c_mask = right_pad(completions, pad_id, device)  # (N, T)
    return torch.cat([p_ids, c_ids], 1), torch.cat([p_mask, c_mask], 1), c_ids.shape[1]


# ------------------------------------------------------------------------------------ sampling


@dataclass(frozen=True)
class Completion:
    """One sampled completion: the tokens before its first eos, and that eos (None when
    max_new_tokens cut it first)."""

    ids: list[int]
    eos: int | None

    @property
    def truncated(self) -> bool:
        """Stopped by max_new_tokens, not by an eos token."""
        return self.eos is None

    @property
    def ids_with_eos(self) -> list[int]:
        """The ids up to and including the first eos (what TRL's completion mask keeps)."""
        return self.ids if self.eos is None else [*self.ids, self.eos]

    @property
    def n_tokens(self) -> int:
        """Generated tokens, the eos included."""
        return len(self.ids) + (self.eos is not None)


def split_at_eos(tokens: Sequence[int], eos_ids: Collection[int]) -> Completion:
    """Cut generated tokens at the first of `eos_ids`; what follows (padding) is dropped."""
    for i, token in enumerate(tokens):
        if token in eos_ids:
            return Completion(list(tokens[:i]), token)
    return Completion(list(tokens), None)


def generate_completions(
    model: nn.Module,
    prompts: Sequence[Sequence[int]],
    *,
    batch_seeds: Iterable[int],
    max_new_tokens: int,
    eos_ids: Collection[int],
    pad_id: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    batch_size: int | None = None,
    isolate_rng: bool = True,
    **generate_kwargs: Any,
) -> list[Completion]:
    """One completion per prompt (token ids), ``batch_size`` prompts per ``model.generate`` call.

    Batch b (prompts [b * batch_size, (b + 1) * batch_size); all prompts when batch_size is None)
    is left-padded with `pad_id` and sampled after ``torch.manual_seed(s_b)``, s_b the b-th of
    `batch_seeds` (an iterable that must give one seed per batch; it is consumed lazily).
    temperature > 0 samples from softmax(logits / temperature) restricted by top_k (0: off) and
    top_p; temperature 0 is greedy. `isolate_rng` runs each batch inside
    ``torch.random.fork_rng`` (global CPU and model-device RNG untouched); False leaves the
    global RNG as the last batch's sampling left it. The model runs in eval mode, no grad; its
    mode is restored. `generate_kwargs` go to ``model.generate`` as they are (use_cache,
    synced_gpus, min_new_tokens, ...).
    """
    if temperature < 0:
        raise ValueError(f"temperature={temperature} must be >= 0 (0: greedy)")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1 (or None: one batch)")
    kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": temperature > 0, "pad_token_id": pad_id,
                              "eos_token_id": sorted(eos_ids) or None, **generate_kwargs}
    if temperature > 0:
        kwargs.update(temperature=temperature, top_k=top_k, top_p=top_p)
    step = batch_size or max(len(prompts), 1)
    seeds = iter(batch_seeds)
    device = model_device(model)
    completions: list[Completion] = []
    with eval_mode(model), torch.no_grad():
        for start in range(0, len(prompts), step):
            seed = next(seeds, None)
            if seed is None:
                raise ValueError(f"batch_seeds ran out at the batch of prompts {start}..{start + step - 1}: "
                                 "give one seed per batch")
            ids, mask = left_pad(prompts[start:start + step], pad_id)  # (b, P)
            rng = (torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])
                   if isolate_rng else contextlib.nullcontext())
            with rng:
                torch.manual_seed(seed)
                out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs)  # (b, P + T')
            completions += [split_at_eos(row, eos_ids) for row in out[:, ids.shape[1]:].tolist()]
    return completions
