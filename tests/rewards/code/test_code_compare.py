"""EvalPlus comparison on plain data, and the plain-data codec between sandbox and parent."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from antisd.rewards.code.driver.wire import EncodeError, decode, encode
from antisd.rewards.code.compare import allclose, is_floats, outputs_match

plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=2**63, max_value=2**200) | st.text()
    | st.floats(allow_nan=False) | st.complex_numbers(allow_nan=False) | st.binary(),
    lambda children: st.lists(children, max_size=4) | st.lists(children, max_size=4).map(tuple)
    | st.dictionaries(st.integers() | st.text(), children, max_size=3),
    max_leaves=12)


@given(plain)
def test_codec_round_trips_values_and_types(value):
    import json

    back = decode(json.loads(json.dumps(encode(value))))
    assert back == value and type(back) is type(value)


def test_codec_special_values():
    for value in (math.inf, -math.inf, 2**4000, -(2**4000), {1, 2}, frozenset({(1, 2)}), {(1, 2): [3]}, 1 + 2j):
        assert decode(encode(value)) == value
    assert math.isnan(decode(encode(math.nan)))
    with pytest.raises(EncodeError):
        encode(object())
    with pytest.raises(EncodeError):
        encode(iter([1]))
    nested: list = []
    for _ in range(200):
        nested = [nested]
    with pytest.raises(EncodeError):
        encode(nested)


def test_decode_rejects_malformed_data():
    for bad in ({"x": 1}, {"t": 1}, {"d": [[[1], 2]]}, {"S": [[1]]}, {"i": "zz"}, {"t": [1], "S": [2]}):
        with pytest.raises((ValueError, TypeError)):
            decode(bad)


def test_exact_and_tolerance_rules():
    assert outputs_match(3, 3, 0) and not outputs_match(3, 4, 0)
    assert outputs_match(1.0, 1, 0)  # Python equality, as EvalPlus's ``out == exp``
    assert not outputs_match([1, 2], (1, 2), 0)
    assert outputs_match(0.1 + 0.2, 0.3, 0)  # atol 0 with float expected: 1e-6 is enforced
    assert not outputs_match(0.3 + 2e-6, 0.3, 0)
    assert outputs_match([0.1 + 0.2, 1.0], [0.3, 1.0], 0)
    assert not outputs_match((0.30000001, 1.0), [0.3, 1.0], 1e-4)  # types must match once inexact
    assert outputs_match(1.00005, 1.0, 1e-4) and not outputs_match(1.0002, 1.0, 1e-4)
    assert not outputs_match(math.nan, math.nan, 1e-6)
    assert outputs_match(math.inf, math.inf, 1e-6) and not outputs_match(math.inf, -math.inf, 1e-6)
    assert not outputs_match("a", "b", 1e-6) and not outputs_match(None, 1.0, 1e-6)
    assert is_floats([1.0, 2.0]) and not is_floats([1.0, 2]) and not is_floats([])


def test_allclose_matches_numpy_where_numpy_is_available():
    np = pytest.importorskip("numpy")
    cases = [(1.0, 1.0 + 1e-7, 1e-6), ([1.0, 2.0], [1.0, 2.00001], 1e-6), (1e10, 1e10 + 1e3, 1e-6),
             ([math.inf, 1.0], [math.inf, 1.0], 1e-6), (2 + 1j, 2 + 1.0000001j, 1e-6)]
    for out, exp, atol in cases:
        assert allclose(out, exp, atol) == bool(np.allclose(out, exp, rtol=1e-7, atol=atol)), (out, exp)


def test_special_oracles():
    xs = [-6, 11, -6, 1]  # roots 1, 2, 3
    assert outputs_match(3.0, 1.0, 1e-4, oracle="find_zero", args=[xs])
    assert not outputs_match(2.5, 1.0, 1e-4, oracle="find_zero", args=[xs])
    assert outputs_match((5, 4), (4, 5), 0, oracle="set_eq") and not outputs_match((5,), (4, 5), 0, oracle="set_eq")
    assert not outputs_match([[1]], [[1], [2]], 0, oracle="set_eq")  # unhashable: a failure, not a crash
    assert outputs_match(0, 7, 0, oracle="sum_div") and not outputs_match(3, 7, 0, oracle="sum_div")
    assert outputs_match(False, True, 0, oracle="are_equivalent")
    assert outputs_match(35, 0, 0, oracle="surface_Area", args=[3, 4]) and not outputs_match(34, 0, 0, oracle="surface_Area", args=[3, 4])
    assert outputs_match(9, 0, 0, oracle="digit_distance_nums", args=[123, 456])
    assert not outputs_match(6, 0, 0, oracle="digit_distance_nums", args=[123, 456])
