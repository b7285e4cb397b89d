"""Token-level advantages of SD / AntiSD from teacher and student log-probs (docs/method.md,
Eq. 1-6, 10-11): one pure function that both trainer paths call, and the statistics it logs.

    u_t       = t_t - s_t                                   Eq. 1 (``signals.pmi``)
    delta_t   = signal(u_t), 0 where the rollout has no context or the token is not scored
    delta'_t  = centering(delta)_t                          Eq. 10-11 (``none`` in the paper)
    A_{i,t}   = composition(A_i^seq, delta'_{i,t}, lambda)  Eq. 5-6, 0 outside the token mask
    term_{i,t} = A_{i,t} - A_i^seq on context tokens        the token term as it reached the advantage
                                                          (lambda delta' for Eq. 5, lambda delta' A_i^seq for Eq. 6)

Shapes: B rollouts, T completion tokens. Pure torch: no TRL, no I/O, no logging. Statistics are
returned as (numerator, denominator) pairs of 0-d tensors so that a trainer can sum them over
processes before dividing (``token_term_statistics``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from antisd.method.signals import center_token_term, compose_advantages, pmi, token_signal

FORK_QUANTILE = 0.2  # "fork" tokens: the top 20% of scored tokens by student entropy


@dataclass(frozen=True)
class TokenTerm:
    """The composed advantages and the intermediate terms, all (B, T) float32 unless noted."""

    advantages: torch.Tensor  # A_{i,t}, 0 outside token_mask
    u: torch.Tensor  # PMI u_t, 0 outside ctx_mask
    delta: torch.Tensor  # signal(u), 0 outside ctx_mask, before centering
    applied: torch.Tensor  # delta after centering: what enters the composition
    ctx_mask: torch.Tensor  # (B, T) bool: scored context tokens whose t_t and s_t are finite
    n_nonfinite: torch.Tensor  # 0-d: context tokens dropped because t_t or s_t was NaN/inf
    seq_adv: torch.Tensor | None = None  # (B,) float32: A_i^seq, what the composition started from

    @property
    def token_term(self) -> torch.Tensor:
        """(B, T): A_{i,t} - A_i^seq on the context tokens (the tokens the token term touches), 0 elsewhere:
        lambda * delta' under Eq. 5, lambda * delta' * A_i^seq under Eq. 6 (0 where A_i^seq = 0)."""
        if self.seq_adv is None:
            raise ValueError("TokenTerm.token_term needs seq_adv (token_level_advantages sets it)")
        diff = self.advantages - self.seq_adv.to(self.advantages.dtype)[:, None]
        return torch.where(self.ctx_mask, diff, torch.zeros_like(diff))


def token_level_advantages(
    seq_adv: torch.Tensor,
    teacher_logps: torch.Tensor,
    student_logps: torch.Tensor,
    *,
    token_mask: torch.Tensor,
    ctx_mask: torch.Tensor,
    lam: float,
    signal: str = "antisd",
    composition: str = "additive",
    centering: str = "none",
) -> TokenTerm:
    """A (B, T) from A_seq (B,), teacher/student log-probs (B, T), masks (B, T) and lambda.

    ``token_mask``: scored completion tokens (A is 0 elsewhere). ``ctx_mask``: scored tokens of
    rollouts that have a privileged context (the token term is 0 elsewhere; a rollout without
    one keeps its plain GRPO advantage). The token term carries no gradient.
    """
    token_mask = token_mask.bool()
    t, s = teacher_logps.detach(), student_logps.detach()
    wanted = ctx_mask.bool() & token_mask  # (B, T)
    ctx_mask = wanted & torch.isfinite(t) & torch.isfinite(s)  # a NaN/inf log-prob never reaches an advantage
    zero = torch.zeros((), dtype=torch.float32, device=t.device)
    u = torch.where(ctx_mask, pmi(t, s), zero)  # (B, T)
    delta = torch.where(ctx_mask, token_signal(t, s, signal), zero)  # (B, T)
    applied = center_token_term(delta, ctx_mask, centering)  # (B, T)
    adv = compose_advantages(seq_adv, applied, token_mask, lam, composition)  # (B, T)
    return TokenTerm(advantages=adv, u=u, delta=delta, applied=applied, ctx_mask=ctx_mask,
                     n_nonfinite=(wanted & ~ctx_mask).sum(), seq_adv=seq_adv.detach().float())


def _pair(num: torch.Tensor, den: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return num.float().reshape(()), den.float().reshape(())


def token_term_statistics(
    term: TokenTerm,
    *,
    token_mask: torch.Tensor,
    student_entropy: torch.Tensor | None = None,
    fork_quantile: float = FORK_QUANTILE,
    rollout_correct: torch.Tensor | None = None,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Metric name -> (numerator, denominator); the metric is sum(numerators) / sum(denominators).

    pmi/mean, pmi/neg_frac, pmi/pos_frac          u over context tokens
    signal/mean, signal/pos_mass_frac             delta (before centering): its mean, and the share
                                                  of its absolute mass that is positive
    signal/applied_mean                           delta after centering
    adv/nonzero_token_frac                        tokens with a non-zero advantage
    pmi/nonfinite_frac                            context tokens dropped for a NaN/inf log-prob
    fork/* and nonfork/* (with ``student_entropy``) u and delta on the top ``fork_quantile`` of
                                                  context tokens by student entropy vs the rest;
                                                  fork/signal_mass_frac is their share of |delta|
    token_term/size_ratio                         the token term against the sequence advantage: mean
                                                  |A_{i,t} - A_i^seq| / mean |A_i^seq| over the context
                                                  tokens (the tokens the term touches); NaN when
                                                  A_i^seq = 0 on all of them
    token_term/abs_mean                           mean |A_{i,t} - A_i^seq| over the context tokens
    token_term/active                             1 when the term is non-zero on some token, else 0
                                                  (summed over processes: the share of them)
    token_term/wrong_nonzero_frac,                (with ``rollout_correct``, (B,) bool) over the scored
    token_term/wrong_abs_mean                     tokens of incorrect rollouts: the share where the term
                                                  is non-zero, and its mean absolute size
    """
    token_mask = token_mask.bool()
    ctx_mask = term.ctx_mask  # (B, T)
    f = ctx_mask.float()
    n_ctx = f.sum()
    u, delta = term.u, term.delta
    abs_mass = (delta.abs() * f).sum()
    out = {
        "pmi/mean": _pair((u * f).sum(), n_ctx),
        "pmi/neg_frac": _pair(((u < 0).float() * f).sum(), n_ctx),
        "pmi/pos_frac": _pair(((u > 0).float() * f).sum(), n_ctx),
        "signal/mean": _pair((delta * f).sum(), n_ctx),
        "signal/pos_mass_frac": _pair((delta.clamp(min=0) * f).sum(), abs_mass),
        "signal/applied_mean": _pair((term.applied * f).sum(), n_ctx),
        "adv/nonzero_token_frac": _pair(((term.advantages != 0).float() * token_mask).sum(), token_mask.float().sum()),
        "pmi/nonfinite_frac": _pair(term.n_nonfinite, n_ctx + term.n_nonfinite),
    }
    if term.seq_adv is not None:
        out.update(_size_statistics(term, token_mask, rollout_correct))
    if student_entropy is not None:  # the same keys on every process (they are summed across processes)
        out.update(_fork_statistics(term, student_entropy, fork_quantile))
    return out


def _size_statistics(term: TokenTerm, token_mask: torch.Tensor, rollout_correct: torch.Tensor | None,
                     ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """token_term/* of ``token_term_statistics``: the term's size against A_i^seq, and on wrong rollouts."""
    f = term.ctx_mask.float()
    tt = term.token_term.abs()  # (B, T), 0 outside ctx_mask
    seq_abs = term.seq_adv.abs()[:, None].expand_as(f)  # (B, T)
    out = {"token_term/size_ratio": _pair(tt.sum(), (seq_abs * f).sum()),
           "token_term/abs_mean": _pair(tt.sum(), f.sum()),
           "token_term/active": _pair((tt > 0).any().float(), torch.ones((), device=tt.device))}
    if rollout_correct is not None:
        w = (token_mask & ~rollout_correct.bool().to(token_mask.device)[:, None]).float()  # (B, T) wrong rollouts
        out["token_term/wrong_nonzero_frac"] = _pair(((tt > 0).float() * w).sum(), w.sum())
        out["token_term/wrong_abs_mean"] = _pair((tt * w).sum(), w.sum())
    return out


def _fork_statistics(term: TokenTerm, student_entropy: torch.Tensor, fork_quantile: float,
                     ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """fork/* and nonfork/* of ``token_term_statistics``: u and delta on high-entropy (fork) tokens vs the rest."""
    keep = term.ctx_mask & torch.isfinite(student_entropy)  # (B, T)
    ent = student_entropy.float()
    thr = torch.quantile(ent[keep], 1.0 - fork_quantile) if keep.any() else torch.zeros(())
    fork_mask = keep & (ent >= thr)  # (B, T)
    out = {}
    for name, mask in (("fork", fork_mask), ("nonfork", keep & ~fork_mask)):
        w = mask.float()
        out[f"{name}/pmi_mean"] = _pair((term.u * w).sum(), w.sum())
        out[f"{name}/signal_mean"] = _pair((term.delta * w).sum(), w.sum())
    out["fork/signal_mass_frac"] = _pair((term.delta.abs() * fork_mask).sum(), (term.delta.abs() * keep).sum())
    out["fork/entropy_threshold"] = _pair(thr, keep.any().float())
    return out


def scored_token_mask(batch: dict) -> torch.Tensor:
    """The tokens a batch's loss scores: ``completion_mask`` and, when present, ``tool_mask``. (B, T) bool."""
    mask = batch["completion_mask"].bool()
    if batch.get("tool_mask") is not None:
        mask = mask & batch["tool_mask"].bool()
    return mask
