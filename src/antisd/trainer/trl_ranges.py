"""Ranges of the TRL/transformers fields that neither library checks when a config is built.

A bad value would otherwise fail inside the first step (torch's Adam for a negative learning rate) or pass
silently; ``AntiSDConfig`` runs ``check_trl_ranges`` first thing in its validation.
"""

from __future__ import annotations

from typing import Any

# (name, test, what is expected)
TRL_RANGES: tuple[tuple[str, Any, str], ...] = (
    ("learning_rate", lambda v: v >= 0, ">= 0"),
    ("temperature", lambda v: v > 0, "> 0 (the sampling temperature)"),
    ("top_p", lambda v: 0 < v <= 1, "in (0, 1]"),
    ("top_k", lambda v: v is None or v >= 0, ">= 0 (0: off)"),
    ("max_completion_length", lambda v: v is None or v >= 1, ">= 1"),
    ("per_device_train_batch_size", lambda v: v >= 1, ">= 1"),
    ("gradient_accumulation_steps", lambda v: v >= 1, ">= 1"),
    ("num_iterations", lambda v: v >= 1, ">= 1"),
    ("beta", lambda v: v >= 0, ">= 0 (the KL coefficient)"),
    ("epsilon", lambda v: v >= 0, ">= 0 (the clipping range)"),
    ("max_grad_norm", lambda v: v is None or v >= 0, ">= 0 (0: no clipping)"),
    ("weight_decay", lambda v: v >= 0, ">= 0"),
    ("warmup_steps", lambda v: v >= 0, ">= 0"),
)


def check_trl_ranges(config: Any) -> None:
    """Raise ValueError naming the first field of ``TRL_RANGES`` whose value is out of its range."""
    for name, ok, expected in TRL_RANGES:
        value = getattr(config, name, None)
        if isinstance(value, int | float) and not ok(value):
            raise ValueError(f"{name}={value!r} must be {expected}")
