"""Token signals against independent references: autograd of the divergences they claim to be
the gradients of, float64 re-computation, and properties from docs/method.md."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from antisd.method.signals import (
    ANTISD_SIGNAL_MAX,
    compose_advantages,
    composition_modes,
    phi,
    pmi,
    signal_kinds,
    token_signal,
)

torch.manual_seed(0)


def jsd_generator(r: torch.Tensor) -> torch.Tensor:
    """f(r) = 1/2 [ r log r - (1 + r) log((1 + r) / 2) ] (docs/method.md, AntiSD)."""
    return 0.5 * (r * torch.log(r) - (1 + r) * torch.log((1 + r) / 2))


def f_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """D_f(P || Q) = sum_v Q(v) f(P(v) / Q(v))."""
    return (q * jsd_generator(p / q)).sum(-1)


def reverse_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(P || Q) = sum_v P(v) log(P(v) / Q(v))."""
    return (p * (p.log() - q.log())).sum(-1)


def policy_gradient_on_logits(p: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """E_{v~P}[delta_v grad_z log P(v)] = P * (delta - <P, delta>) for P = softmax(z)."""
    return p * (delta - (p * delta).sum(-1, keepdim=True))


def _dists(V=7, B=5, dtype=torch.float64):
    zs = torch.randn(B, V, dtype=dtype) * 2
    zt = torch.randn(B, V, dtype=dtype) * 2
    return zs, zt


def test_antisd_signal_is_jsd_generator_derivative_wrt_student_probs():
    zs, zt = _dists()
    p = torch.softmax(zs, -1).requires_grad_(True)
    q = torch.softmax(zt, -1)
    (grad,) = torch.autograd.grad(f_divergence(p, q).sum(), p)
    delta = token_signal(q.log(), p.detach().log(), "antisd")
    torch.testing.assert_close(delta.double(), grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "kind,divergence,sign",
    [
        ("antisd", f_divergence, +1),   # ascent of JSD
        ("sd_jsd", f_divergence, -1),   # descent of JSD
        ("sd", reverse_kl, -1),         # descent of KL(pi_S || pi_T)
        ("antisd_rkl", reverse_kl, +1), # ascent of KL(pi_S || pi_T)
    ],
)
def test_signal_policy_gradient_equals_divergence_gradient_on_logits(kind, divergence, sign):
    zs, zt = _dists()
    zs.requires_grad_(True)
    q = torch.softmax(zt, -1)
    (g,) = torch.autograd.grad(divergence(torch.softmax(zs, -1), q).sum(), zs)
    p = torch.softmax(zs.detach(), -1)
    delta = token_signal(q.log(), p.log(), kind).double()
    torch.testing.assert_close(policy_gradient_on_logits(p, delta), sign * g, rtol=1e-5, atol=1e-7)


def test_pmi_and_phi_match_float64_recomputation():
    t = torch.randn(4, 9) * 5
    s = torch.randn(4, 9) * 5
    u64 = t.double() - s.double()
    ref = 0.5 * (torch.log1p(torch.exp(-u64.abs())) + u64.clamp(min=0) - math.log(2))
    torch.testing.assert_close(pmi(t, s).double(), u64, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(phi(pmi(t, s)).double(), ref, rtol=1e-6, atol=1e-6)


def test_bfloat16_inputs_compute_in_float32():
    t = torch.randn(3, 5).bfloat16()
    s = torch.randn(3, 5).bfloat16()
    for kind in signal_kinds():
        out = token_signal(t, s, kind)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, token_signal(t.float(), s.float(), kind))


def test_extreme_u_is_finite_and_has_the_right_limits():
    u = torch.tensor([-1e4, -100.0, 0.0, 100.0, 1e4])
    out = phi(u)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[0], torch.tensor(-math.log(2) / 2))
    assert out[2] == 0.0
    torch.testing.assert_close(out[4], torch.tensor(5e3 - math.log(2) / 2))


def test_unknown_kind_lists_valid_kinds():
    with pytest.raises(ValueError, match=r"antisd.*antisd_rkl.*sd.*sd_jsd"):
        token_signal(torch.zeros(2), torch.zeros(2), "jsd")
    assert signal_kinds() == ["antisd", "antisd_rkl", "sd", "sd_jsd"]


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="same completion tokens"):
        pmi(torch.zeros(2, 3), torch.zeros(2, 4))


finite = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, width=32)


@settings(max_examples=300, deadline=None)
@given(st.lists(finite, min_size=1, max_size=16), st.lists(finite, min_size=1, max_size=16))
def test_signals_finite_signed_and_bounded(ts, ss):
    n = min(len(ts), len(ss))
    t = torch.tensor(ts[:n])
    s = torch.tensor(ss[:n])
    u = pmi(t, s)
    d = token_signal(t, s, "antisd")
    assert torch.isfinite(d).all()
    assert (d <= ANTISD_SIGNAL_MAX + 1e-6).all()
    # positive exactly where the teacher lowers the token (u < 0), negative where it raises it
    assert (d[u > 1e-5] < 0).all() and (d[u < -1e-5] > 0).all()
    # ~ -u/2 for large u: for u >= 0, -phi(u) + u/2 = log(2)/2 - softplus(-u)/2 lies in [0, log(2)/2)
    gap = (d + u / 2)[u >= 0]
    assert ((gap > -1e-3) & (gap <= ANTISD_SIGNAL_MAX + 1e-3)).all()
    for kind in signal_kinds():
        assert torch.isfinite(token_signal(t, s, kind)).all()


@settings(max_examples=200, deadline=None)
@given(finite, finite)
def test_phi_is_monotone(a, b):
    lo, hi = sorted([a, b])
    assert phi(torch.tensor(lo)) <= phi(torch.tensor(hi))


# ----------------------------------------------------------------------------- composition
def test_compose_additive_and_multiplicative():
    seq = torch.tensor([1.0, -0.5, 0.0])
    delta = torch.tensor([[0.1, -0.2, 0.3], [0.2, 0.2, 0.2], [1.0, -1.0, 0.5]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 1]])
    add = compose_advantages(seq, delta, mask, 0.5, "additive")
    mul = compose_advantages(seq, delta, mask, 0.5, "multiplicative")
    exp_add = (seq[:, None] + 0.5 * delta) * mask
    exp_mul = (seq[:, None] * (1 + 0.5 * delta)) * mask
    torch.testing.assert_close(add, exp_add)
    torch.testing.assert_close(mul, exp_mul)
    assert (mul[2] == 0).all()  # inert where A_seq = 0
    assert add.dtype == torch.float32


def test_compose_masked_positions_are_exactly_zero_even_with_nan_delta():
    seq = torch.tensor([2.0, 1.0])
    delta = torch.tensor([[float("nan"), 0.1], [float("inf"), -float("inf")]])
    mask = torch.tensor([[False, True], [False, False]])
    for mode in composition_modes():
        out = compose_advantages(seq, delta, mask, 0.5, mode)
        assert torch.isfinite(out).all()
        assert out[0, 0] == 0 and (out[1] == 0).all()


def test_compose_detaches_the_token_term():
    delta = torch.randn(2, 3, requires_grad=True)
    out = compose_advantages(torch.ones(2), delta, torch.ones(2, 3), 0.5)
    assert not out.requires_grad


def test_compose_errors_name_the_problem():
    with pytest.raises(ValueError, match="valid modes"):
        compose_advantages(torch.ones(2), torch.ones(2, 3), torch.ones(2, 3), 0.5, "sum")
    with pytest.raises(ValueError, match=r"seq_adv must have shape \(B,\)"):
        compose_advantages(torch.ones(2, 1), torch.ones(2, 3), torch.ones(2, 3), 0.5)
    with pytest.raises(ValueError, match="mask shape"):
        compose_advantages(torch.ones(2), torch.ones(2, 3), torch.ones(2, 4), 0.5)
    with pytest.raises(ValueError, match="finite"):
        compose_advantages(torch.ones(2), torch.ones(2, 3), torch.ones(2, 3), float("nan"))
