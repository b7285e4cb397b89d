"""One generation batch's token term, from the teacher pass to the advantages the loss reads.

The teacher pass runs once per generation batch (``AntiSDTrainer._generate_and_score_completions``); the student's
log-probs come either at once (the eager path) or from the loss's own forward (the lazy path, ``reuse_loss_logps``:
TRL's ``_compute_loss`` calls ``_get_per_token_logps_and_entropies`` before it reads the advantages). Both paths end
in the same ``TokenTermStep.finish``, the pure ``antisd.method.advantages.token_level_advantages`` (Eq. 4-6, 10-11).

On the lazy path the step travels inside TRL's batch dict (``put``/``take``, under ``KEYS``), so that TRL's
buffering and gradient-accumulation split it with the other per-row tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from antisd.method.advantages import token_level_advantages, token_term_statistics


@dataclass(frozen=True)
class TokenTermStep:
    """The teacher log-probs (B, T), the mask of the tokens that carry the term (B, T; Eq. 12 applied), lambda, and
    the verifier's verdict per rollout (B,) for the term's statistics."""

    teacher_logps: torch.Tensor
    ctx_mask: torch.Tensor
    lam: float
    correct: torch.Tensor | None = None

    KEYS = ("antisd_teacher_logps", "antisd_ctx_mask", "antisd_lambda", "antisd_correct")

    def put(self, batch: dict) -> None:
        """Store the step in TRL's batch dict (the lazy path)."""
        batch.update(zip(self.KEYS, (self.teacher_logps, self.ctx_mask, torch.tensor(float(self.lam)))))
        if self.correct is not None:
            batch[self.KEYS[3]] = self.correct

    @classmethod
    def take(cls, batch: dict) -> TokenTermStep | None:
        """The step stored in ``batch`` (its slice, after TRL's splitting), or None."""
        if cls.KEYS[0] not in batch:
            return None
        t, c, lam = (batch[k] for k in cls.KEYS[:3])
        return cls(teacher_logps=t, ctx_mask=c, lam=float(lam), correct=batch.get(cls.KEYS[3]))

    def finish(self, seq_adv: torch.Tensor, s_logps: torch.Tensor, s_ent: torch.Tensor | None,
               token_mask: torch.Tensor, args: Any) -> tuple[torch.Tensor, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
        """A_{i,t} (B, T) from A_i^seq (B,) and the student's log-probs (values only: the token term is a
        stop-gradient advantage), and the term's statistics as (numerator, denominator) pairs."""
        term = token_level_advantages(
            seq_adv, self.teacher_logps, s_logps.detach().float(), token_mask=token_mask, ctx_mask=self.ctx_mask,
            lam=self.lam, signal=args.token_signal, composition=args.composition, centering=args.token_term_centering,
        )
        stats = token_term_statistics(term, token_mask=token_mask,
                                      student_entropy=None if s_ent is None else s_ent.detach(),
                                      rollout_correct=self.correct)
        return term.advantages.to(seq_adv.device), stats
