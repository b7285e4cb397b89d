"""antisd.method.advantages against a float64 loop re-computation, and the pending token term through
TRL's own batch splitting and shuffling."""

import math

import pytest
import torch
from trl.trainer.utils import shuffle_sequence_dict, split_tensor_dict

from antisd.method.advantages import scored_token_mask, token_level_advantages, token_term_statistics
from antisd.method.signals import ANTISD_SIGNAL_MAX, center_token_term, centering_modes
from antisd.trainer.token_term import TokenTermStep


def _case(seed=0, B=6, T=9):
    g = torch.Generator().manual_seed(seed)
    t = -torch.rand(B, T, generator=g) * 6
    s = -torch.rand(B, T, generator=g) * 6
    lengths = torch.randint(0, T + 1, (B,), generator=g)
    token_mask = torch.arange(T)[None, :] < lengths[:, None]  # (B, T)
    has_ctx = torch.tensor([True, True, False, True, True, True][:B])
    ctx_mask = token_mask & has_ctx[:, None]
    seq_adv = torch.randn(B, generator=g)
    return seq_adv, t, s, token_mask, ctx_mask


def _reference(seq_adv, t, s, token_mask, ctx_mask, lam, centering, composition):
    """Plain float64 loops over Eq. 1, 4, 5/6 and 10/11."""
    B, T = t.shape
    delta = [[0.0] * T for _ in range(B)]
    for i in range(B):
        for j in range(T):
            if ctx_mask[i, j]:
                u = float(t[i, j]) - float(s[i, j])
                delta[i][j] = -0.5 * (math.log1p(math.exp(u)) - math.log(2.0))
    if centering == "sequence":
        for i in range(B):
            idx = [j for j in range(T) if ctx_mask[i, j]]
            if idx:
                m = sum(delta[i][j] for j in idx) / len(idx)
                for j in idx:
                    delta[i][j] -= m
    elif centering == "batch_cap":
        idx = [(i, j) for i in range(B) for j in range(T) if ctx_mask[i, j]]
        m = max(0.0, sum(delta[i][j] for i, j in idx) / len(idx)) if idx else 0.0
        for i, j in idx:
            delta[i][j] -= m
    out = torch.zeros(B, T, dtype=torch.float64)
    for i in range(B):
        for j in range(T):
            if token_mask[i, j]:
                a = float(seq_adv[i])
                out[i, j] = a + lam * delta[i][j] if composition == "additive" else a * (1 + lam * delta[i][j])
    return out


@pytest.mark.parametrize("centering", ["none", "sequence", "batch_cap"])
@pytest.mark.parametrize("composition", ["additive", "multiplicative"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_token_level_advantages_match_a_float64_loop(centering, composition, seed):
    seq_adv, t, s, token_mask, ctx_mask = _case(seed)
    term = token_level_advantages(seq_adv, t, s, token_mask=token_mask, ctx_mask=ctx_mask, lam=0.5,
                                  composition=composition, centering=centering)
    ref = _reference(seq_adv, t, s, token_mask, ctx_mask, 0.5, centering, composition)
    torch.testing.assert_close(term.advantages.double(), ref, rtol=1e-5, atol=1e-6)
    assert torch.all(term.advantages[~token_mask] == 0)
    assert torch.all(term.delta[~ctx_mask] == 0) and torch.all(term.applied[~ctx_mask] == 0)


def test_sequence_centering_adds_no_net_advantage_per_rollout():
    _, t, s, token_mask, ctx_mask = _case(3, B=6, T=30)
    term = token_level_advantages(torch.zeros(6), t, s, token_mask=token_mask, ctx_mask=ctx_mask, lam=1.0,
                                  centering="sequence")
    sums = (term.advantages * ctx_mask).sum(dim=1)
    torch.testing.assert_close(sums, torch.zeros(6), atol=1e-5, rtol=0)
    # ...while the raw AntiSD term, made of tokens the teacher disfavours, adds positive net advantage
    raw = token_level_advantages(torch.zeros(6), s - 3.0, s, token_mask=token_mask, ctx_mask=ctx_mask, lam=1.0)
    assert (raw.advantages.sum(dim=1)[ctx_mask.any(dim=1)] > 0).all()


def test_batch_cap_removes_only_a_positive_mean():
    mask = torch.ones(2, 3, dtype=torch.bool)
    pos = torch.full((2, 3), 0.2)
    assert center_token_term(pos, mask, "batch_cap").abs().max() < 1e-7
    neg = torch.tensor([[-0.3, 0.1, 0.0], [-0.2, 0.0, 0.1]])
    assert torch.equal(center_token_term(neg, mask, "batch_cap"), neg)
    with pytest.raises(ValueError, match=str(centering_modes()).replace("[", r"\[").replace("]", r"\]")):
        center_token_term(neg, mask, "zscore")


def test_statistics_match_direct_computation():
    seq_adv, t, s, token_mask, ctx_mask = _case(4, B=6, T=40)
    ent = torch.rand(6, 40, generator=torch.Generator().manual_seed(9)) * 3
    term = token_level_advantages(seq_adv, t, s, token_mask=token_mask, ctx_mask=ctx_mask, lam=0.5)
    st = {k: (n / d).item() for k, (n, d) in token_term_statistics(term, token_mask=token_mask,
                                                                    student_entropy=ent).items()}
    u = (t - s)[ctx_mask]
    d = term.delta[ctx_mask]
    assert st["pmi/mean"] == pytest.approx(u.mean().item(), rel=1e-5)
    assert st["pmi/neg_frac"] == pytest.approx((u < 0).float().mean().item())
    assert st["signal/mean"] == pytest.approx(d.mean().item(), rel=1e-5)
    assert st["signal/pos_mass_frac"] == pytest.approx((d.clamp(min=0).sum() / d.abs().sum()).item(), rel=1e-5)
    assert d.max().item() <= ANTISD_SIGNAL_MAX
    e = ent[ctx_mask]
    thr = torch.quantile(e, 0.8)
    fork = e >= thr
    assert st["fork/pmi_mean"] == pytest.approx(u[fork].mean().item(), rel=1e-5)
    assert st["nonfork/signal_mean"] == pytest.approx(d[~fork].mean().item(), rel=1e-5)
    assert st["fork/signal_mass_frac"] == pytest.approx((d[fork].abs().sum() / d.abs().sum()).item(), rel=1e-5)
    assert st["adv/nonzero_token_frac"] == pytest.approx((term.advantages[token_mask] != 0).float().mean().item())


def test_scored_token_mask_honours_tool_mask():
    batch = {"completion_mask": torch.tensor([[1, 1, 0]]), "tool_mask": torch.tensor([[1, 0, 1]])}
    assert scored_token_mask(batch).tolist() == [[True, False, False]]
    assert scored_token_mask({"completion_mask": torch.tensor([[1, 0]])}).tolist() == [[True, False]]


def test_pending_token_term_travels_through_trl_splitting_and_shuffling():
    B, T = 8, 5
    teacher = torch.arange(B * T, dtype=torch.float32).view(B, T)
    ctx = torch.rand(B, T) > 0.3
    batch = {"completion_ids": torch.arange(B)[:, None].expand(B, T).clone(), "advantages": torch.arange(B).float()}
    correct = torch.arange(B) % 3 == 0
    TokenTermStep(teacher_logps=teacher, ctx_mask=ctx, lam=0.25, correct=correct).put(batch)
    for chunk in split_tensor_dict(shuffle_sequence_dict(batch), 4):
        pending = TokenTermStep.take(chunk)
        rows = chunk["completion_ids"][:, 0]
        assert pending.lam == 0.25
        assert torch.equal(pending.teacher_logps, teacher[rows]) and torch.equal(pending.ctx_mask, ctx[rows])
        assert torch.equal(pending.correct, correct[rows])
    assert TokenTermStep.take({"advantages": torch.zeros(2)}) is None


def test_nonfinite_log_probs_never_reach_an_advantage_and_are_counted():
    seq_adv, t, s, token_mask, ctx_mask = _case(5, B=6, T=12)
    t = t.clone()
    t[0, 0] = float("nan")
    t[1, 1] = float("-inf")
    s = s.clone()
    s[3, 2] = float("inf")
    wanted = ctx_mask & token_mask
    bad = int(wanted[0, 0]) + int(wanted[1, 1]) + int(wanted[3, 2])
    for centering in ("none", "sequence", "batch_cap"):
        term = token_level_advantages(seq_adv, t, s, token_mask=token_mask, ctx_mask=ctx_mask, lam=0.5,
                                      centering=centering)
        assert torch.isfinite(term.advantages).all() and torch.isfinite(term.u).all()
        assert int(term.n_nonfinite) == bad
        st = token_term_statistics(term, token_mask=token_mask)
        assert all(torch.isfinite(n) and torch.isfinite(d) for n, d in st.values())
        n, d = st["pmi/nonfinite_frac"]
        assert int(n) == bad and int(d) == int(wanted.sum())
    # without centering, those tokens keep their plain sequence advantage
    term = token_level_advantages(seq_adv, t, s, token_mask=token_mask, ctx_mask=ctx_mask, lam=0.5)
    for i, j in ((0, 0), (1, 1), (3, 2)):
        if token_mask[i, j]:
            assert term.advantages[i, j] == pytest.approx(float(seq_adv[i]))


@pytest.mark.parametrize("composition", ["additive", "multiplicative"])
@pytest.mark.parametrize("centering", ["none", "sequence"])
def test_token_term_size_against_a_float64_loop(composition, centering):
    """token_term/size_ratio = mean |A_{i,t} - A_i^seq| / mean |A_i^seq| over the context tokens, recomputed in
    float64 loops from Eq. 1, 4-6 (lambda delta' under Eq. 5, lambda delta' A_i^seq under Eq. 6); the
    wrong-rollout shares over the scored tokens of rollouts marked incorrect."""
    seq_adv, t, s, token_mask, ctx_mask = _case(6, B=6, T=15)
    seq_adv = seq_adv.clone()
    seq_adv[4] = 0.0  # an all-wrong group's rollout: Eq. 6 leaves it untouched, Eq. 5 does not
    correct = torch.tensor([True, False, False, True, False, True])
    lam = 0.5
    term = token_level_advantages(seq_adv, t, s, token_mask=token_mask, ctx_mask=ctx_mask, lam=lam,
                                  composition=composition, centering=centering)
    st = {k: (n / d).item() for k, (n, d) in token_term_statistics(term, token_mask=token_mask,
                                                                    rollout_correct=correct).items()}
    ref = _reference(seq_adv, t, s, token_mask, ctx_mask, lam, centering, composition)
    num = den = n = 0.0
    wrong_nonzero = wrong_abs = wrong_n = 0.0
    for i in range(6):
        for j in range(15):
            if not token_mask[i, j]:
                continue
            tt = abs(float(ref[i, j]) - float(seq_adv[i])) if ctx_mask[i, j] else 0.0
            if ctx_mask[i, j]:
                num, den, n = num + tt, den + abs(float(seq_adv[i])), n + 1
            if not correct[i]:
                wrong_n += 1
                wrong_abs += tt
                wrong_nonzero += tt > 1e-9
    assert st["token_term/size_ratio"] == pytest.approx(num / den, rel=1e-4)
    assert st["token_term/abs_mean"] == pytest.approx(num / n, rel=1e-4)
    assert st["token_term/active"] == 1.0
    assert st["token_term/wrong_abs_mean"] == pytest.approx(wrong_abs / wrong_n, rel=1e-4)
    assert st["token_term/wrong_nonzero_frac"] == pytest.approx(wrong_nonzero / wrong_n)
    if composition == "multiplicative":  # inert where A_i^seq = 0
        assert torch.all(term.token_term[4] == 0)
    else:
        assert torch.any(term.token_term[4] != 0) or not ctx_mask[4].any()
    # lambda = 0 (the gate off): the term is exactly 0 and inactive, whatever the signal
    off = token_level_advantages(seq_adv, t, s, token_mask=token_mask, ctx_mask=ctx_mask, lam=0.0,
                                 composition=composition, centering=centering)
    st0 = {k: (n / d).item() for k, (n, d) in token_term_statistics(off, token_mask=token_mask).items()}
    assert st0["token_term/active"] == 0.0 and st0["token_term/size_ratio"] == 0.0
    assert "token_term/wrong_abs_mean" not in st0  # only with rollout_correct


def test_token_term_size_is_the_hand_value_on_a_small_case():
    """Two rollouts, additive, lambda 0.5: by hand, u = (-2, 0, 1) and (0,), delta = -phi(u)."""
    t = torch.tensor([[-3.0, -1.0, -0.5], [-1.0, 0.0, 0.0]])
    s = torch.tensor([[-1.0, -1.0, -1.5], [-1.0, 0.0, 0.0]])
    token_mask = torch.tensor([[True, True, True], [True, False, False]])
    seq_adv = torch.tensor([1.0, -0.5])
    term = token_level_advantages(seq_adv, t, s, token_mask=token_mask, ctx_mask=token_mask, lam=0.5)
    st = {k: (n / d).item() for k, (n, d) in token_term_statistics(term, token_mask=token_mask).items()}
    phi = lambda u: 0.5 * (math.log1p(math.exp(u)) - math.log(2.0))  # noqa: E731
    sizes = [abs(0.5 * -phi(u)) for u in (-2.0, 0.0, 1.0, 0.0)]
    assert st["token_term/size_ratio"] == pytest.approx(sum(sizes) / (3 * 1.0 + 0.5), rel=1e-6)
    assert st["token_term/abs_mean"] == pytest.approx(sum(sizes) / 4, rel=1e-6)
