"""Eq. 12's guard and the gate's population (antisd.method.guard) against a plain per-rollout table."""

from __future__ import annotations

import itertools

import pytest
import torch

from antisd.method.guard import carries_token_term, rollout_roles


def _expected(has_ctx: bool, correct: bool, rollouts: str, population: str, dump: bool) -> tuple[bool, bool, bool]:
    carries = has_ctx and (rollouts == "all" or correct)
    gate = carries if population == "token_term" else has_ctx
    scored = has_ctx if dump else (gate or carries)
    return carries, gate, scored


@pytest.mark.parametrize("rollouts,population,dump", list(itertools.product(
    ["all", "correct"], ["token_term", "context"], [False, True])))
def test_roles_match_the_definition_row_by_row(rollouts, population, dump):
    cases = list(itertools.product([False, True], [False, True]))  # every (has_context, correct) pair
    has_ctx = torch.tensor([c[0] for c in cases])
    correct = torch.tensor([c[1] for c in cases])
    roles = rollout_roles(has_ctx, correct, rollouts=rollouts, gate_population=population, dump=dump)
    got = list(zip(roles.carries.tolist(), roles.gate.tolist(), roles.scored.tolist()))
    assert got == [_expected(h, c, rollouts, population, dump) for h, c in cases]
    assert not (roles.carries & ~roles.scored).any() and not (roles.gate & ~roles.scored).any()  # never unscored


def test_the_guard_keeps_wrong_rollouts_out_and_the_teacher_skips_them():
    has_ctx, correct = torch.tensor([True, True, False]), torch.tensor([True, False, True])
    assert carries_token_term(has_ctx, correct, "correct").tolist() == [True, False, False]
    assert carries_token_term(has_ctx, correct, "all").tolist() == [True, True, False]
    roles = rollout_roles(has_ctx, correct, rollouts="correct")
    assert roles.scored.tolist() == [True, False, False]  # the wrong rollout is never scored
    assert rollout_roles(has_ctx, correct, rollouts="correct", gate_population="context").scored.tolist() == \
        [True, True, False]


def test_unknown_settings_are_named():
    t = torch.tensor([True])
    with pytest.raises(ValueError, match="token_term_rollouts"):
        carries_token_term(t, t, "wrong")
    with pytest.raises(ValueError, match="gate_population"):
        rollout_roles(t, t, gate_population="everyone")
