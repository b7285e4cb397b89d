"""Length-bucketed per-token passes: fewer padding positions, the same per-token values.

TRL pads a generation batch to its longest completion, so one clipped response makes every row
as wide as the response budget. ``length_bucketed`` evaluates a per-token function (the log-prob /
entropy pass of the loss or of the student) on chunks of rows sorted by real length, each chunk cut
to its own real columns (left padding of the prompts and right padding of the completions removed),
and puts the results back in the original row order, zero-padded to the batch width.

Each row sees the same tokens with the same attention mask, so the values equal the full-batch
pass up to float rounding (RoPE depends on relative positions only; models with absolute position
embeddings get position ids from the mask when the wrapped function does so). Gradients flow
through the chunks. Pure torch: no TRL, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

# fn(input_ids (b, w), attention_mask (b, w), logits_to_keep k) -> (logps (b, k), entropies (b, k) | None)
PerTokenFn = Callable[[torch.Tensor, torch.Tensor, int], tuple[torch.Tensor, torch.Tensor | None]]


def real_spans(attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(start, end) per row: the first real column and one past the last one. (B, W) -> (B,), (B,)."""
    real = attention_mask.bool()  # (B, W)
    W = real.size(1)
    cols = torch.arange(1, W + 1, device=real.device)
    end = (real * cols).amax(dim=1)  # (B,)
    start = torch.where(real.any(dim=1), real.int().argmax(dim=1), torch.full_like(end, W))
    return start, end


def length_bucketed(fn: PerTokenFn, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int,
                    rows: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``fn`` over chunks of at most ``rows`` rows sorted by real length; results (B, K) in the input's row order.

    The last ``logits_to_keep`` = K columns are the completion. A chunk keeps the columns from its
    earliest real start to its latest real end, and asks ``fn`` for the completion columns inside
    that window; the completion columns it drops are padding, for which the result is 0 (as TRL's
    path gives padding targets).
    """
    if rows < 1:
        raise ValueError(f"rows={rows} must be >= 1")
    B, W = input_ids.shape
    K = logits_to_keep
    start, end = real_spans(attention_mask)
    order = sorted(range(B), key=lambda i: (int(end[i]) - int(start[i]), i))
    logps_parts: list[torch.Tensor] = []
    ent_parts: list[torch.Tensor | None] = []
    for c0 in range(0, B, rows):
        idx = torch.tensor(order[c0:c0 + rows], device=input_ids.device)
        s0 = min(int(start[idx].min()), W - K)  # never cut into the completion columns from the left
        e0 = max(int(end[idx].max()), W - K)
        k = e0 - (W - K)  # completion columns inside [s0, e0)
        if k == 0:
            z = torch.zeros(len(idx), K, device=input_ids.device)
            logps_parts.append(z)
            ent_parts.append(z)
            continue
        lp, ent = fn(input_ids[idx, s0:e0], attention_mask[idx, s0:e0], k)  # (b, k)
        logps_parts.append(F.pad(lp.float(), (0, K - k)))
        ent_parts.append(None if ent is None else F.pad(ent.float(), (0, K - k)))
    inverse = torch.empty(B, dtype=torch.long, device=input_ids.device)
    inverse[torch.tensor(order, device=input_ids.device)] = torch.arange(B, device=input_ids.device)
    logps = torch.cat(logps_parts)[inverse]  # (B, K)
    if any(e is None for e in ent_parts):
        return logps, None
    return logps, torch.cat(ent_parts)[inverse]
