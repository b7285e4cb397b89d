"""The trainer's per-step metrics, reduced over every process before they reach TRL's ``_metrics``.

``StepMetrics`` appends to TRL's per-mode metric lists (``GRPOTrainer._metrics[mode][name]``), which TRL averages
over a logging window and sends to ``report_to``. Every value is global: masked means are sums over processes,
medians gather the values, and the token term's ratios are (numerator, denominator) pairs summed before dividing.
The names are listed in docs/method.md ("Logged metrics").
"""

from __future__ import annotations

import math
from typing import Any

import torch
from accelerate.utils import gather, gather_object

from antisd.method.context import source_fractions


class StepMetrics:
    """Global reductions and the groups of metrics one step logs. ``metrics``: TRL's ``{mode: {name: [values]}}``."""

    def __init__(self, accelerator, metrics: dict[str, Any], log_once) -> None:
        self.accelerator = accelerator
        self.metrics = metrics
        self.log_once = log_once

    # ---- reductions over processes
    def mean_all(self, x: torch.Tensor, mask: torch.Tensor) -> float:
        """Global masked mean (NaN when the mask is empty everywhere)."""
        local = torch.stack([(x * mask).sum().float(), mask.sum().float()])
        tot = gather(local.to(self.accelerator.device)).view(-1, 2).sum(0)
        return (tot[0] / tot[1]).item() if tot[1] > 0 else float("nan")

    def global_stat(self, values: torch.Tensor, keep_mask: torch.Tensor) -> tuple[float, float, float]:
        """Mean and median of the finite ``values[keep_mask]`` over all processes (NaN when there are none), and
        the share of ``values[keep_mask]`` that is not finite (NaN/inf never reach a mean or the gate)."""
        local = values[keep_mask].float()
        if self.accelerator.num_processes > 1:
            allv = torch.tensor(sum(gather_object([local.tolist()]), []))
        else:
            allv = local.cpu()
        finite = torch.isfinite(allv)
        bad_frac = (~finite).float().mean().item() if allv.numel() else 0.0
        allv = allv[finite]
        if allv.numel() == 0:
            return float("nan"), float("nan"), bad_frac
        return allv.mean().item(), allv.median().item(), bad_frac

    def ratios(self, stats: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Log numerator/denominator pairs summed over all processes (one collective for all of them)."""
        names = list(stats)
        local = torch.stack([torch.stack(stats[k]) for k in names]).to(self.accelerator.device)  # (K, 2)
        if self.accelerator.num_processes > 1:
            local = gather(local.unsqueeze(0)).view(-1, len(names), 2).sum(0)
        m = self.metrics["train"]
        for name, (num, den) in zip(names, local.tolist()):
            m[name].append(num / den if den > 0 else float("nan"))

    # ---- groups of metrics
    def completions(self, mode: str, output: dict, stash: dict, deliberation_ids: set[int], correct_idx: int,
                    correct_threshold: float) -> None:
        """``deliberation/token_frac``, ``accuracy``, ``reward/nonfinite_frac`` of a generation batch."""
        m = self.metrics[mode]
        mask = output["completion_mask"].bool()
        if deliberation_ids:
            ids = torch.tensor(sorted(deliberation_ids), device=mask.device)
            is_delib = torch.isin(output["completion_ids"], ids) & mask
            m["deliberation/token_frac"].append(self.mean_all(is_delib.float(), mask.float()))
        if "rewards_per_func" in stash:
            r = stash["rewards_per_func"][:, correct_idx]
            r = r[~torch.isnan(r)]
            m["accuracy"].append((r >= correct_threshold).float().mean().item() if r.numel() else float("nan"))
            m["reward/nonfinite_frac"].append(stash["nonfinite_reward_frac"])

    def student(self, s_logps: torch.Tensor, s_ent: torch.Tensor | None, token_mask: torch.Tensor) -> None:
        """``student/entropy_mean``, ``student/entropy_median``, ``student/perplexity``."""
        m = self.metrics["train"]
        if s_ent is not None:
            se_mean, se_median, _ = self.global_stat(s_ent.detach(), token_mask)
            m["student/entropy_mean"].append(se_mean)
            m["student/entropy_median"].append(se_median)
        nll = self.mean_all(-s_logps.detach().float(), token_mask.float())
        m["student/perplexity"].append(math.exp(nll) if math.isfinite(nll) else float("nan"))

    def gate(self, gate, h_mean: float, h_median: float, stat: float, lam: float, contexts,
             max_solution_chars: int) -> None:
        """``teacher/entropy_*``, ``gate/*`` and the privileged contexts' ``context/*`` shares."""
        m = self.metrics["train"]
        m["teacher/entropy_mean"].append(h_mean)
        m["teacher/entropy_median"].append(h_median)
        m["gate/statistic"].append(stat)
        for k, v in {**gate.metrics(), "gate/lambda": lam}.items():
            if math.isfinite(v):  # H_warm and the band exist only after warm-up
                m[k].append(v)
        fr = source_fractions(contexts)
        for k, v in fr.items():
            m[k].append(v)
        if fr.get("context/truncated_frac", 0) > 0:
            self.log_once(f"sibling solutions longer than max_solution_chars={max_solution_chars} are cut to their "
                          "last characters (counted in context/truncated_frac)")
        m["context/masked_rollout_frac"].append(fr["context/none_frac"])
