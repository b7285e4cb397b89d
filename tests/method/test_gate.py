"""The Schmitt gate against hand-worked sequences and a plain-loop reference."""

import math
import random
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from antisd.method.gate import SchmittGate, gate_kinds, gate_statistic, make_gate


def EntropyGate(**params):
    return make_gate("teacher_entropy", **params)


def PerplexityGate(**params):
    return make_gate("student_perplexity", **params)


def reference_gate(stats, warmup=5, down=0.93, up=1.0, lam=0.5, direction="below", ceiling=None):
    """Independent plain-loop statement of docs/method.md's rules (Eq. 7; the ceiling of Eq. 9)."""
    out, warm, ref, on, left_high = [], [], None, False, False
    for h in stats:
        if not math.isfinite(h):
            out.append(lam if on else 0.0)
            continue
        if ref is None:
            warm.append(h)
            if len(warm) == warmup:
                ref, on = statistics.median(warm), True
            out.append(0.0)
            continue
        if direction == "below":
            if on and h < down * ref:
                on = False
            elif on and ceiling is not None and h > ceiling * ref:
                on, left_high = False, True
            elif not on and left_high and h <= ref / up:
                on, left_high = True, False
            elif not on and not left_high and h >= up * ref:
                on = True
        else:
            if on and h > ref / down:
                on = False
            elif not on and h <= ref / up:
                on = True
        out.append(lam if on else 0.0)
    return out


def test_hand_worked_entropy_sequence():
    g = EntropyGate()  # warm-up 5, down 0.93, up 1.0, lambda 0.5
    warm = [1.0, 0.8, 1.2, 1.1, 0.9]  # median 1.0
    assert [g.update(h) for h in warm] == [0.0] * 5
    assert g.reference == 1.0 and g.on
    # 0.95 >= 0.93 -> stays on; 0.92 < 0.93 -> off; 0.99 < 1.0 -> stays off (hysteresis);
    # 1.0 >= 1.0 -> on; 0.94 -> on; 0.5 -> off
    seq = [0.95, 0.92, 0.99, 1.0, 0.94, 0.5]
    assert [g.update(h) for h in seq] == [0.5, 0.0, 0.0, 0.5, 0.5, 0.0]
    assert not g.on and g.n_switches == 3


def test_first_post_warmup_step_is_evaluated_against_the_band():
    g = EntropyGate(warmup_steps=3)
    for h in (2.0, 2.0, 2.0):
        assert g.update(h) == 0.0
    assert g.update(1.0) == 0.0  # immediately below 0.93 * 2
    assert not g.on


def test_reference_is_none_during_warmup():
    g = EntropyGate(warmup_steps=2)
    assert g.reference is None and not g.on and g.in_warmup
    g.update(1.0)
    assert g.reference is None
    g.update(3.0)
    assert g.reference == 2.0


def test_nonfinite_statistics_hold_state_and_are_counted():
    g = EntropyGate(warmup_steps=2)
    assert g.update(float("nan")) == 0.0
    assert g.update(1.0) == 0.0
    assert g.update(float("inf")) == 0.0
    assert g.in_warmup  # non-finite values do not count as warm-up steps
    assert g.update(1.0) == 0.0
    assert g.on
    assert g.update(float("nan")) == 0.5  # holds "on", lambda never NaN
    g.update(0.1)
    assert g.update(float("-inf")) == 0.0  # holds "off"
    assert g.n_nonfinite == 4


def test_perplexity_gate_turns_off_when_perplexity_rises():
    g = PerplexityGate(warmup_steps=1, down_ratio=0.9)
    assert g.update(10.0) == 0.0
    assert g.update(11.0) == 0.5  # 11 <= 10/0.9 = 11.11
    assert g.update(11.2) == 0.0  # above the band
    assert g.update(10.5) == 0.0  # hysteresis: must come back to <= 10/1.0
    assert g.update(10.0) == 0.5


def test_no_gate_is_always_lambda_max():
    g = make_gate("none", lambda_max=0.3)
    assert [g.update(h) for h in (1.0, float("nan"), 0.0, 5.0)] == [0.3] * 4
    assert g.kind == "none" and g.on


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(st.floats(0.0, 5.0), st.just(float("nan"))), min_size=0, max_size=40),
    st.integers(1, 6),
    st.floats(0.5, 1.0),
    st.sampled_from(["below", "above"]),
)
def test_gate_matches_plain_loop_reference(stats, warmup, down, direction):
    g = SchmittGate(warmup_steps=warmup, down_ratio=down, up_ratio=1.0, direction=direction)
    got = [g.update(h) for h in stats]
    assert got == reference_gate(stats, warmup, down, 1.0, 0.5, direction)


@pytest.mark.parametrize("kind", gate_kinds())
def test_resume_from_state_dict_mid_run_continues_exactly(kind):
    rng = random.Random(0)
    stats = [rng.uniform(0.5, 1.5) for _ in range(40)] + [float("nan")] + [rng.uniform(0.5, 1.5) for _ in range(20)]
    full = make_gate(kind)
    expected = [full.update(h) for h in stats]
    for cut in (0, 3, 5, 6, 25, 41):
        first = make_gate(kind)
        got = [first.update(h) for h in stats[:cut]]
        resumed = make_gate(kind)
        resumed.load_state_dict(first.state_dict())
        got += [resumed.update(h) for h in stats[cut:]]
        assert got == expected, f"cut={cut}"
        assert resumed.state_dict() == full.state_dict()


def test_state_dict_mismatch_is_a_clear_error():
    g = EntropyGate(down_ratio=0.9)
    with pytest.raises(ValueError, match="down_ratio: checkpoint=0.93 config=0.9"):
        g.load_state_dict(EntropyGate().state_dict())


def test_reset_starts_a_fresh_warmup():
    g = EntropyGate(warmup_steps=1)
    g.update(1.0)
    g.update(0.1)
    g.reset()
    assert g.in_warmup and not g.on and g.n_updates == 0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(down_ratio=1.2), "down_ratio=1.2 must satisfy"),
        (dict(warmup_steps=0), "warmup_steps=0"),
        (dict(lambda_max=float("nan")), "lambda_max"),
        (dict(direction="sideways"), "direction"),
    ],
)
def test_bad_parameters_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SchmittGate(**kwargs)


def test_unknown_gate_lists_valid_gates():
    with pytest.raises(ValueError, match=r"\['none', 'student_perplexity', 'teacher_entropy'\]"):
        make_gate("median")


def test_metrics_are_finite_or_nan_and_namespaced():
    g = EntropyGate(warmup_steps=1)
    m = g.metrics()
    assert all(k.startswith("gate/") for k in m)
    assert math.isnan(m["gate/reference"])
    g.update(2.0)
    assert g.metrics()["gate/reference"] == 2.0
    assert g.metrics()["gate/off_threshold"] == pytest.approx(1.86)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(st.floats(0.0, 5.0), st.just(float("nan"))), min_size=0, max_size=40),
    st.integers(1, 6),
    st.floats(0.5, 1.0),
    st.floats(1.01, 3.0),
)
def test_two_sided_gate_matches_plain_loop_reference(stats, warmup, down, ceiling):
    g = SchmittGate(warmup_steps=warmup, down_ratio=down, up_ratio=1.0, ceiling_ratio=ceiling)
    got = [g.update(h) for h in stats]
    assert got == reference_gate(stats, warmup, down, 1.0, 0.5, "below", ceiling)


def test_two_sided_gate_turns_off_when_entropy_rises_and_back_on_at_h_warm():
    g = make_gate("teacher_entropy", warmup_steps=1, ceiling_ratio=1.5)
    assert g.update(1.0) == 0.0  # warm-up: H_warm = 1.0
    assert g.update(1.4) == 0.5  # inside [0.93, 1.5]
    assert g.update(1.6) == 0.0  # above the ceiling
    assert g.metrics()["gate/off_high"] == 1.0
    assert g.update(1.2) == 0.0  # still above H_warm: stays off (hysteresis)
    assert g.update(1.0) == 0.5  # back at H_warm
    assert g.update(0.9) == 0.0  # the canonical lower edge still applies


def test_two_sided_gate_resumes_exactly_and_refuses_a_one_sided_state():
    rng = random.Random(1)
    stats = [rng.uniform(0.5, 2.0) for _ in range(50)]
    full = make_gate("teacher_entropy", ceiling_ratio=1.2)
    expected = [full.update(h) for h in stats]
    for cut in (0, 5, 17, 33):
        first = make_gate("teacher_entropy", ceiling_ratio=1.2)
        got = [first.update(h) for h in stats[:cut]]
        resumed = make_gate("teacher_entropy", ceiling_ratio=1.2)
        resumed.load_state_dict(first.state_dict())
        assert got + [resumed.update(h) for h in stats[cut:]] == expected
    with pytest.raises(ValueError, match="ceiling_ratio: checkpoint=None config=1.2"):
        make_gate("teacher_entropy", ceiling_ratio=1.2).load_state_dict(make_gate("teacher_entropy").state_dict())


@pytest.mark.parametrize("kwargs,match", [
    (dict(direction="above", ceiling_ratio=1.5), "direction='below'"),
    (dict(ceiling_ratio=0.99), "ceiling_ratio=0.99 must be above"),
])
def test_bad_ceiling_names_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SchmittGate(**kwargs)


def test_gate_kinds_carry_their_statistic():
    assert gate_statistic("teacher_entropy") == "teacher_entropy"
    assert gate_statistic("student_perplexity") == "student_perplexity"
    assert gate_statistic("none") is None
