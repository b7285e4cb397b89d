"""Which rollouts carry the token term (Eq. 12), which ones the gate measures, which ones the teacher scores.

docs/method.md, "Guards", Eq. 12 (``token_term_rollouts``): the token term is added only to rollouts that have a
privileged context and, under the guard (``correct``), that the verifier marked correct; every other rollout keeps
its plain sequence advantage A_i^seq:

    carries_i = has_context_i  and  (rollouts == "all"  or  correct_i)                       Eq. 12

The gate's statistic (docs/method.md, "The gate") is taken over the response tokens of a population of rollouts,
an explicit setting (``gate_population``):

    token_term   the rollouts that carry the term (project default; under the guard: the correct ones only)
    context      every rollout with a privileged context, whatever the guard

The teacher scores exactly the rollouts some consumer needs: the gate's population (which contains the carriers),
and every rollout with a context when the step's rollouts are dumped. Rows it does not need are never scored.

Pure torch on (B,) bool tensors: no TRL, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

TOKEN_TERM_ROLLOUTS = ("all", "correct")
GATE_POPULATIONS = ("token_term", "context")


@dataclass(frozen=True)
class RolloutRoles:
    """Per-rollout roles in one generation batch, all (B,) bool."""

    carries: torch.Tensor  # gets the token term (Eq. 12)
    gate: torch.Tensor  # its response tokens enter the gate's statistic
    scored: torch.Tensor  # the teacher scores it


def carries_token_term(has_context: torch.Tensor, correct: torch.Tensor, rollouts: str) -> torch.Tensor:
    """Eq. 12: (B,) bool, the rollouts whose advantage gets the token term."""
    if rollouts not in TOKEN_TERM_ROLLOUTS:
        raise ValueError(f"token_term_rollouts must be one of {list(TOKEN_TERM_ROLLOUTS)}, got {rollouts!r}")
    has_context = has_context.bool()
    return has_context if rollouts == "all" else has_context & correct.bool().to(has_context.device)


def rollout_roles(has_context: torch.Tensor, correct: torch.Tensor, *, rollouts: str = "all",
                  gate_population: str = "token_term", dump: bool = False) -> RolloutRoles:
    """The carriers (Eq. 12), the gate's population and the rows the teacher must score."""
    if gate_population not in GATE_POPULATIONS:
        raise ValueError(f"gate_population must be one of {list(GATE_POPULATIONS)}, got {gate_population!r}")
    has_context = has_context.bool()
    carries = carries_token_term(has_context, correct, rollouts)
    gate = carries if gate_population == "token_term" else has_context
    scored = has_context if dump else gate | carries
    return RolloutRoles(carries=carries, gate=gate, scored=scored)
