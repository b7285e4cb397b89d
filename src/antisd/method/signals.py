"""Token signals: the PMI between a rollout token and the privileged context, and the
per-token advantage terms built from it (docs/method.md, Eq. 1 and 3-6; guards Eq. 10-11).

Notation (shape letters: B sequences, T completion tokens):

    s_t = log pi(y_t | x, y_<t)            student log-prob          (B, T)
    t_t = log pi(y_t | x, c, y_<t)         teacher log-prob          (B, T)
    u_t = t_t - s_t                        PMI(y_t ; c | x, y_<t)    (B, T)

Token-signal registry (``kind`` -> delta_t, each ``(teacher_logps, student_logps) -> delta``):

    "antisd"      -phi(u)   ascent of the JSD f-divergence D_f(pi_S || pi_T)   (canonical)
    "sd"          +u        descent of KL(pi_S || sg[pi_T])                   (paper's SD)
    "sd_jsd"      +phi(u)   descent of the JSD f-divergence
    "antisd_rkl"  -u        ascent of KL(pi_S || sg[pi_T])                    (ablation)

with phi(u) = 1/2 (softplus(u) - log 2), the negative of the JSD generator's derivative
f'(r) at r = pi_S / pi_T = exp(-u).

Composition registry (``mode`` -> A_{i,t}):

    "additive"        A_i^seq + lam * delta_{i,t}           (canonical; lam=0.5, delta=-phi(u))
    "multiplicative"  A_i^seq * (1 + lam * delta_{i,t})     (project choice for the ablation)

Token-term centering registry (``mode`` -> delta'; project additions, the "guards" of
docs/method.md Eq. 10-11; applied to the masked token term before composition):

    "none"        delta                                              (the paper)
    "sequence"    delta_{i,t} - mean_{s in M_i} delta_{i,s}         per-rollout zero mean
    "batch_cap"   delta - max(0, mean_{(i,s) in M} delta_{i,s})      batch mean at most 0

Everything here is pure torch: no TRL, no I/O, no logging. Inputs may be float32 or bfloat16;
all arithmetic is done in float32 and float32 is returned.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

LOG2 = math.log(2.0)
# Upper bound of -phi(u), reached as u -> -inf: log(2)/2 ~= 0.3466.
ANTISD_SIGNAL_MAX = 0.5 * LOG2

SignalFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
ComposeFn = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]

CenterFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_SIGNALS: dict[str, SignalFn] = {}
_COMPOSITIONS: dict[str, ComposeFn] = {}
_CENTERINGS: dict[str, CenterFn] = {}


def _f32(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float32) if x.dtype != torch.float32 else x


def pmi(teacher_logps: torch.Tensor, student_logps: torch.Tensor) -> torch.Tensor:
    """Eq. 1: u_t = t_t - s_t = log pi(y_t|x,c,y<t) - log pi(y_t|x,y<t). Any shape -> same shape."""
    if teacher_logps.shape != student_logps.shape:
        raise ValueError(
            f"teacher_logps shape {tuple(teacher_logps.shape)} != student_logps shape "
            f"{tuple(student_logps.shape)}: both must hold log-probs of the same completion tokens"
        )
    return _f32(teacher_logps) - _f32(student_logps)


def phi(u: torch.Tensor) -> torch.Tensor:
    """Eq. 3: phi(u) = 1/2 (softplus(u) - log 2) = -f'_JSD(e^{-u}). Any shape -> same shape (float32).

    ``F.softplus`` switches to the identity above its threshold (u > 20), so the result is
    finite and exact to float32 precision for |u| up to 1e4 and beyond: phi(u) -> u/2 for large
    u, and -> -log(2)/2 for very negative u.
    """
    return 0.5 * (F.softplus(_f32(u)) - LOG2)


def register_signal(name: str) -> Callable[[SignalFn], SignalFn]:
    """Register a token signal ``(teacher_logps, student_logps) -> delta`` under ``name``."""

    def deco(fn: SignalFn) -> SignalFn:
        if name in _SIGNALS:
            raise ValueError(f"token signal {name!r} is already registered")
        _SIGNALS[name] = fn
        return fn

    return deco


def register_composition(name: str) -> Callable[[ComposeFn], ComposeFn]:
    """Register a composition ``(seq_adv (B, 1), delta (B, T), lam) -> (B, T)`` under ``name``."""

    def deco(fn: ComposeFn) -> ComposeFn:
        if name in _COMPOSITIONS:
            raise ValueError(f"composition {name!r} is already registered")
        _COMPOSITIONS[name] = fn
        return fn

    return deco


def register_centering(name: str) -> Callable[[CenterFn], CenterFn]:
    """Register a token-term centering ``(delta (B, T), mask (B, T) bool) -> (B, T)`` under ``name``."""

    def deco(fn: CenterFn) -> CenterFn:
        if name in _CENTERINGS:
            raise ValueError(f"token-term centering {name!r} is already registered")
        _CENTERINGS[name] = fn
        return fn

    return deco


def centering_modes() -> list[str]:
    """Sorted names of the registered token-term centerings."""
    return sorted(_CENTERINGS)


def signal_kinds() -> list[str]:
    """Sorted names of the registered token signals."""
    return sorted(_SIGNALS)


def composition_modes() -> list[str]:
    """Sorted names of the registered advantage compositions."""
    return sorted(_COMPOSITIONS)


@register_signal("antisd")
def _antisd(teacher_logps: torch.Tensor, student_logps: torch.Tensor) -> torch.Tensor:
    """Eq. 4, antisd: delta = -phi(u), the per-token advantage of JSD ascent. Bounded above by log(2)/2."""
    return -phi(pmi(teacher_logps, student_logps))


@register_signal("sd")
def _sd(teacher_logps: torch.Tensor, student_logps: torch.Tensor) -> torch.Tensor:
    """Eq. 4, sd: delta = +u, the per-token reward of reverse-KL descent (default self-distillation)."""
    return pmi(teacher_logps, student_logps)


@register_signal("sd_jsd")
def _sd_jsd(teacher_logps: torch.Tensor, student_logps: torch.Tensor) -> torch.Tensor:
    """Eq. 4, sd_jsd: delta = +phi(u), JSD descent (the SD counterpart of AntiSD)."""
    return phi(pmi(teacher_logps, student_logps))


@register_signal("antisd_rkl")
def _antisd_rkl(teacher_logps: torch.Tensor, student_logps: torch.Tensor) -> torch.Tensor:
    """Eq. 4, antisd_rkl: delta = -u, reverse-KL ascent (ablation; unbounded in both directions)."""
    return -pmi(teacher_logps, student_logps)


def get_signal_fn(kind: str) -> SignalFn:
    """Look up a token signal by name; unknown names raise ValueError listing the valid ones."""
    try:
        return _SIGNALS[kind]
    except KeyError:
        raise ValueError(f"unknown token signal kind={kind!r}; valid kinds: {signal_kinds()}") from None


def token_signal(teacher_logps: torch.Tensor, student_logps: torch.Tensor, kind: str = "antisd") -> torch.Tensor:
    """delta_t for the given ``kind`` (see the module docstring). Any shape -> same shape, float32."""
    return get_signal_fn(kind)(teacher_logps, student_logps)


@register_composition("additive")
def _additive(seq_adv: torch.Tensor, delta: torch.Tensor, lam: float) -> torch.Tensor:
    """Eq. 5: A_{i,t} = A_i^seq + lam * delta_{i,t}."""
    return seq_adv + lam * delta


@register_composition("multiplicative")
def _multiplicative(seq_adv: torch.Tensor, delta: torch.Tensor, lam: float) -> torch.Tensor:
    """Eq. 6: A_{i,t} = A_i^seq * (1 + lam * delta_{i,t}); inert where A_i^seq = 0."""
    return seq_adv * (1.0 + lam * delta)


def compose_advantages(
    seq_adv: torch.Tensor,
    delta: torch.Tensor,
    mask: torch.Tensor,
    lam: float,
    mode: str = "additive",
) -> torch.Tensor:
    """Per-token advantages from sequence advantages and a token term.

    seq_adv (B,), delta (B, T), mask (B, T) (bool or 0/1) -> (B, T) float32. Positions where
    ``mask`` is 0 are exactly 0. ``lam`` is a plain float (the gate's output, already
    stop-gradient by construction); ``delta`` is detached here so that the token term never
    carries gradient (the stop-gradient of docs/method.md).
    """
    if mode not in _COMPOSITIONS:
        raise ValueError(f"unknown composition mode={mode!r}; valid modes: {composition_modes()}")
    if seq_adv.dim() != 1:
        raise ValueError(f"seq_adv must have shape (B,), got {tuple(seq_adv.shape)}")
    if delta.dim() != 2 or delta.shape[0] != seq_adv.shape[0]:
        raise ValueError(
            f"delta must have shape (B, T) with B={seq_adv.shape[0]}, got {tuple(delta.shape)}"
        )
    if mask.shape != delta.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} != delta shape {tuple(delta.shape)}")
    lam = float(lam)
    if not math.isfinite(lam):
        raise ValueError(f"lam={lam} must be finite")
    keep_mask = mask.to(torch.bool)  # (B, T)
    delta = _f32(delta.detach())
    # Zero the token term outside the mask before composing so that a NaN/inf at a padded
    # position can never leak into a kept one.
    delta = torch.where(keep_mask, delta, torch.zeros_like(delta))  # (B, T)
    adv = _COMPOSITIONS[mode](_f32(seq_adv).unsqueeze(1), delta, lam)  # (B, T)
    return torch.where(keep_mask, adv, torch.zeros_like(adv))


@register_centering("none")
def _center_none(delta: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Eq. 4: the token term as it is (the paper's AntiSD)."""
    return delta


@register_centering("sequence")
def _center_sequence(delta: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Eq. 10: delta_{i,t} - mean over the rollout's masked tokens; the token term then adds no net
    advantage to any rollout, it only moves credit between its tokens. Rows without masked tokens
    are returned as they are."""
    w = mask.to(delta.dtype)  # (B, T)
    n = w.sum(dim=1, keepdim=True)  # (B, 1)
    mean = (delta * w).sum(dim=1, keepdim=True) / n.clamp(min=1.0)  # (B, 1)
    return delta - mean


@register_centering("batch_cap")
def _center_batch_cap(delta: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Eq. 11: delta - max(0, mean over the batch's masked tokens): the token term's batch mean is
    at most 0 (a net positive push is removed, a net negative one is kept)."""
    w = mask.to(delta.dtype)  # (B, T)
    n = w.sum()
    if n == 0:
        return delta
    return delta - ((delta * w).sum() / n).clamp(min=0.0)


def center_token_term(delta: torch.Tensor, mask: torch.Tensor, mode: str = "none") -> torch.Tensor:
    """delta (B, T), mask (B, T) bool -> centred delta (B, T), 0 outside ``mask``. See the registry above."""
    try:
        fn = _CENTERINGS[mode]
    except KeyError:
        raise ValueError(f"unknown token-term centering={mode!r}; valid: {centering_modes()}") from None
    if mask.shape != delta.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} != delta shape {tuple(delta.shape)}")
    keep_mask = mask.to(torch.bool)  # (B, T)
    delta = torch.where(keep_mask, _f32(delta), torch.zeros((), dtype=torch.float32, device=delta.device))
    out = fn(delta, keep_mask)  # (B, T)
    return torch.where(keep_mask, out, torch.zeros_like(out))
