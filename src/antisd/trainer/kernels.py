"""Which per-token log-prob kernel a forward of the trainer uses, and the precision warning that goes with it.

``fast_logprobs`` (``AntiSDConfig``): ``antisd.lm.logprobs`` (chunked log-softmax over the vocabulary, scoring only
real completion tokens) instead of TRL's fused LM head, for text-only inputs without an MoE aux loss and with an
output layer it can read (docs/benchmarks.md: 3-4.5x faster forward+backward on a CPU; docs/scaleout.md for the
sharded cases). Functions of the trainer (``antisd.trainer.core.AntiSDTrainer``), called from its log-prob hook.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from antisd.lm.logprobs import per_token_logps_and_entropies
from antisd.lm.plumbing import needs_full_logits

logger = logging.getLogger("antisd.trainer.core")  # the trainer's own log name: its messages read as the trainer's


def warn_half_precision_head(trainer) -> None:
    """Warn when u = t - s comes from a half-precision output layer (TRL's fused head without
    cast_lm_head_to_fp32, under bf16/fp16 or with half-precision weights): measured on the toy model
    (benchmarks/precision.py, docs/scaleout.md), it puts the token term's precision noise at ~3% of its signal,
    above the 2% line docs/benchmarks.md states; a float32 head brings it to 1.2-1.5%."""
    a = trainer.args
    if not a.uses_teacher or (trainer.fast_logprobs and not head_partitioned(trainer)) or a.cast_lm_head_to_fp32:
        return
    head = trainer.accelerator.unwrap_model(trainer.model).get_output_embeddings()
    dtype = getattr(getattr(head, "weight", None), "dtype", torch.float32)
    if a.bf16 or a.fp16 or dtype in (torch.bfloat16, torch.float16):
        logger.warning("The teacher and student log-probs (u = t - s) come from TRL's fused LM head in %s: its "
                       "rounding puts the token term's noise above 2%% of its signal (docs/benchmarks.md, "
                       "Precision). Set cast_lm_head_to_fp32=true (the default for sd/antisd under bf16/fp16) or "
                       "fast_logprobs=true.", "bf16" if (a.bf16 or dtype == torch.bfloat16) else "fp16")


def fast_logprobs_apply(trainer, model, compute_aux_loss: bool, extra: dict[str, Any]) -> bool:
    """fast_logprobs applies to text-only inputs, no MoE aux loss, and output layers antisd.lm.logprobs handles."""
    if not trainer.fast_logprobs or compute_aux_loss or any(v is not None for v in extra.values()):
        return False
    if head_partitioned(trainer):
        return False
    return needs_full_logits(model) is None


def head_partitioned(trainer) -> bool:
    """Under DeepSpeed ZeRO-3 and FSDP1 the output layer's weight is partitioned outside the model's forward,
    where antisd.lm.logprobs reads it (FSDP2 gathers it: tests/trainer/test_fsdp.py; docs/scaleout.md); those runs
    take TRL's fused LM head, which computes inside the forward (logged once)."""
    if trainer._dist.is_zero3 or trainer._dist.fsdp_version == 1:
        trainer.log_once("fast_logprobs: the output layer is partitioned (DeepSpeed ZeRO-3 / FSDP1); log-probs from "
                         "TRL's fused LM head")
        return True
    return False


def fast_logps_and_entropies(trainer, model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy):
    """TRL's ``_get_per_token_logps_and_entropies`` contract through ``antisd.lm.logprobs``: (B, K) float32 each."""
    batch_size = batch_size or input_ids.size(0)
    logps, ents = [], []
    for start in range(0, input_ids.size(0), batch_size):
        with trainer.accelerator.autocast():
            lp, ent = per_token_logps_and_entropies(
                model, input_ids[start:start + batch_size], attention_mask[start:start + batch_size],
                logits_to_keep, temperature=trainer.temperature, compute_entropy=compute_entropy)
        logps.append(lp)  # (b, K)
        ents.append(ent)  # (b, K) or None
    return torch.cat(logps), (torch.cat(ents) if compute_entropy else None), None
