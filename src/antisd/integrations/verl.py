"""AntiSD in verl's terms: the teacher batch, the token-level advantage and the gate as pure functions (docs/verl.md).

verl's PPO driver (``RayPPOTrainer.fit``, single controller) holds the whole batch of a step as a
``DataProto`` whose ``batch`` has, per rollout, left-padded ``prompts`` (B, P), right-padded
``responses`` (B, T), ``input_ids`` = [prompts | responses], ``attention_mask``, ``position_ids``
and ``response_mask`` (B, T); after the actor's ``compute_log_prob`` it also has
``old_log_probs`` (B, T) and ``entropys`` (B, T), and after ``compute_advantage`` (GRPO)
``advantages`` (B, T) = A_i^seq on every response token. verl's advantage registry
(``register_adv_est``) hands an estimator only ``token_level_rewards``, ``response_mask``,
``index`` and ``config``: never teacher log-probs. So AntiSD runs on the driver:

1. ``teacher_batch(...)``: the teacher sequences in verl's layout, teacher prompt + the *same*
   response ids (never re-tokenised); rows without a privileged context get their own prompt
   back, so the batch keeps its size (verl splits it evenly over data-parallel ranks) and the row
   is masked out of the token term;
2. the driver runs the actor's no-grad ``compute_log_prob`` on it (``_compute_old_log_prob``): its
   ``old_log_probs`` / ``entropys`` are the teacher's t (B, T) and H (B, T), aligned with
   ``responses`` because the response block is the same;
3. ``VerlGate.update(...)``: the gate on the global batch (the driver sees all of it);
4. ``antisd_advantages(...)``: from the batch fields to A_{i,t} (Eq. 1, 3-6, 10-11 through
   ``antisd.method.advantages.token_level_advantages``), written back as ``advantages`` before
   ``update_actor``; verl's policy loss takes (B, T) advantages as they are.

The Eq. 12 guard (``token_term_rollouts="correct"``, ``antisd.method.guard``) needs the verifier's verdict per
rollout in ``ROLLOUT_CORRECT`` (B,) bool; ``teacher_prompts_needed`` says which rollouts the teacher must score
(give the others None in step 1: their rows are never used).

Pure torch; no verl import (tests/integrations/test_verl.py runs verl's own padding utilities and GRPO
estimator against these when verl is installed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from antisd.method.advantages import token_level_advantages, token_term_statistics
from antisd.method.gate import SchmittGate, make_gate
from antisd.method.guard import carries_token_term, rollout_roles

# verl batch keys this module reads (besides verl's own) and writes
TEACHER_LOGPS = "teacher_log_probs"  # (B, T) float32: the teacher's compute_log_prob output, renamed
TEACHER_ENTROPY = "teacher_entropys"  # (B, T) float32
CONTEXT_MASK = "antisd_context_mask"  # (B,) bool: the rollout has a privileged context
ROLLOUT_CORRECT = "antisd_rollout_correct"  # (B,) bool: the verifier marked the rollout correct (Eq. 12's guard)


def _correct(batch: Mapping[str, torch.Tensor], rollouts: str) -> torch.Tensor:
    """``ROLLOUT_CORRECT`` (all True when the guard is off and the key is absent)."""
    if ROLLOUT_CORRECT in batch:
        return batch[ROLLOUT_CORRECT].bool()
    if rollouts == "correct":
        raise KeyError(f"token_term_rollouts='correct' needs the verifier's verdict per rollout in batch[{ROLLOUT_CORRECT!r}] "
                       "(B,) bool (docs/verl.md)")
    return torch.ones_like(batch[CONTEXT_MASK].bool())


def teacher_prompts_needed(has_context: torch.Tensor, correct: torch.Tensor, *, token_term_rollouts: str = "all",
                           gate_population: str = "token_term") -> torch.Tensor:
    """(B,) bool: the rollouts the teacher must score (the gate's population and the carriers of the token term,
    ``antisd.method.guard.rollout_roles``); give the other rows None in ``teacher_batch``."""
    return rollout_roles(has_context, correct, rollouts=token_term_rollouts, gate_population=gate_population).scored


def teacher_batch(teacher_prompt_ids: Sequence[Sequence[int] | None], prompts: torch.Tensor,
                  prompt_mask: torch.Tensor, responses: torch.Tensor, response_mask: torch.Tensor,
                  pad_token_id: int) -> dict[str, torch.Tensor]:
    """The teacher sequences of a step in verl's left-right padded layout.

    ``teacher_prompt_ids[i]``: the tokenised privileged prompt of rollout i, or None (no context: its
    own prompt ``prompts[i][prompt_mask[i]]`` is used and ``CONTEXT_MASK`` is False). ``prompts``
    (B, P) left-padded with ``prompt_mask`` (B, P); ``responses`` (B, T) right-padded with
    ``response_mask`` (B, T). Returns ``prompts`` (B, P') left-padded to the longest teacher prompt,
    ``responses`` and ``response_mask`` unchanged, ``input_ids`` / ``attention_mask`` (B, P' + T),
    ``position_ids`` (B, P' + T) = cumsum(attention_mask) - 1 clamped at 0 (verl's convention), and
    ``CONTEXT_MASK`` (B,).
    """
    B, T = responses.shape
    if len(teacher_prompt_ids) != B or prompts.size(0) != B or response_mask.shape != (B, T):
        raise ValueError(f"teacher_batch: {len(teacher_prompt_ids)} teacher prompts, prompts {tuple(prompts.shape)}, "
                         f"responses {(B, T)}, response_mask {tuple(response_mask.shape)}: expected B rows everywhere "
                         "and response_mask shaped like responses")
    rows, has_ctx = [], []
    for i, ids in enumerate(teacher_prompt_ids):
        if ids is not None and len(ids) == 0:
            raise ValueError(f"teacher_batch: row {i} has an empty teacher prompt (give None for no context)")
        has_ctx.append(ids is not None)
        rows.append(list(ids) if ids is not None else prompts[i][prompt_mask[i].bool()].tolist())
    width = max(len(r) for r in rows)
    device = responses.device
    new_prompts = torch.full((B, width), pad_token_id, dtype=responses.dtype, device=device)
    new_mask = torch.zeros((B, width), dtype=response_mask.dtype, device=device)
    for i, r in enumerate(rows):  # left padding
        new_prompts[i, width - len(r):] = torch.tensor(r, dtype=responses.dtype, device=device)
        new_mask[i, width - len(r):] = 1
    attention_mask = torch.cat([new_mask, response_mask], dim=1)
    return {
        "prompts": new_prompts, "responses": responses, "response_mask": response_mask,
        "input_ids": torch.cat([new_prompts, responses], dim=1), "attention_mask": attention_mask,
        "position_ids": (attention_mask.long().cumsum(-1) - 1).clamp(min=0),
        CONTEXT_MASK: torch.tensor(has_ctx, dtype=torch.bool, device=device),
    }


def sequence_advantages(advantages: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """A_i^seq (B,) from verl's GRPO ``advantages`` (B, T), which repeat A_i^seq on every response token:
    their mean over the response mask (0 for an empty response)."""
    m = response_mask.float()
    return (advantages.float() * m).sum(-1) / m.sum(-1).clamp(min=1.0)


def antisd_advantages(batch: Mapping[str, torch.Tensor], lam: float, *, signal: str = "antisd",
                      composition: str = "additive", centering: str = "none", token_term_rollouts: str = "all",
                      ) -> tuple[torch.Tensor, dict[str, float]]:
    """A_{i,t} (B, T) from verl's batch fields, and the token term's statistics (global over the batch).

    Reads ``advantages`` (B, T: A^seq on response tokens, verl's GRPO), ``old_log_probs`` (B, T: the
    student's s_t), ``TEACHER_LOGPS`` (B, T: t_t), ``response_mask`` (B, T) and ``CONTEXT_MASK`` (B,).
    u = t - s (Eq. 1), delta = signal(u) (Eq. 4), centred (Eq. 10-11), composed with A^seq and lambda
    (Eq. 5-6); 0 outside the response mask; a rollout without a context keeps A^seq, and so does an incorrect one
    under ``token_term_rollouts="correct"`` (Eq. 12; reads ``ROLLOUT_CORRECT``).
    """
    missing = [k for k in ("advantages", "old_log_probs", TEACHER_LOGPS, "response_mask", CONTEXT_MASK)
               if k not in batch]
    if missing:
        raise KeyError(f"antisd_advantages: the batch has no {missing}; run the teacher compute_log_prob and "
                       f"verl's compute_advantage first (docs/verl.md)")
    mask = batch["response_mask"].bool()  # (B, T)
    carries = carries_token_term(batch[CONTEXT_MASK], _correct(batch, token_term_rollouts), token_term_rollouts)
    ctx = mask & carries[:, None]  # (B, T)
    term = token_level_advantages(
        sequence_advantages(batch["advantages"], mask), batch[TEACHER_LOGPS].float(),
        batch["old_log_probs"].float(), token_mask=mask, ctx_mask=ctx, lam=lam, signal=signal,
        composition=composition, centering=centering,
    )
    stats = {k: float(num / den) if float(den) > 0 else float("nan")
             for k, (num, den) in token_term_statistics(term, token_mask=mask).items()}
    return term.advantages, stats


@dataclass
class VerlGate:
    """The gate on verl's driver: one update per step from the global batch (no cross-rank gather: the driver holds
    every rollout). ``statistic`` is the teacher's mean entropy over the response tokens of the gate's population
    (the canonical ``teacher_entropy`` gate, ``gate_statistic: mean``; the population as ``AntiSDConfig``'s
    ``gate_population``, ``antisd.method.guard``); ``state_dict`` goes into the driver's checkpoint."""

    kind: str = "teacher_entropy"
    params: dict[str, Any] = field(default_factory=dict)
    token_term_rollouts: str = "all"
    population: str = "token_term"

    def __post_init__(self) -> None:
        self.gate: SchmittGate = make_gate(self.kind, **self.params)

    def statistic(self, batch: Mapping[str, torch.Tensor]) -> float:
        """Mean of ``TEACHER_ENTROPY`` over the response tokens of the gate's population (NaN when there are none);
        non-finite entropies are left out, as the trainer does."""
        roles = rollout_roles(batch[CONTEXT_MASK], _correct(batch, self.token_term_rollouts),
                              rollouts=self.token_term_rollouts, gate_population=self.population)
        mask = batch["response_mask"].bool() & roles.gate[:, None]
        values = batch[TEACHER_ENTROPY][mask].float()
        values = values[torch.isfinite(values)]
        return float(values.mean()) if values.numel() else float("nan")

    def update(self, batch: Mapping[str, torch.Tensor]) -> float:
        """lambda for this step's batch."""
        return self.gate.update(self.statistic(batch))

    def state_dict(self) -> dict[str, Any]:
        return self.gate.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gate.load_state_dict(state)
