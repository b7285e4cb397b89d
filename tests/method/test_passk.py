"""pass@k against brute-force enumeration of subsets; avg@k by hand."""

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from antisd.method.passk import avg_at_k, mean_over_benchmarks, pass_at_k, pass_at_k_table


def brute_force_pass_at_k(n, c, k):
    """Fraction of the k-subsets of n samples (c correct) that contain a correct one."""
    outcomes = [1] * c + [0] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(outcomes[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_equals_subset_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(n, c, k), abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 300).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_pass_at_k_matches_exact_binomials_for_large_n(nck):
    n, c, k = nck
    exact = 1.0 - math.comb(n - c, k) / math.comb(n, k) if n - c >= k else 1.0
    assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-9)
    assert 0.0 <= pass_at_k(n, c, k) <= 1.0


def test_pass_at_1_is_the_accuracy():
    assert pass_at_k(32, 7, 1) == pytest.approx(7 / 32)


def test_k_greater_than_n_is_an_error():
    with pytest.raises(ValueError, match="k=5 must be between 1 and n=4"):
        pass_at_k(4, 2, 5)
    with pytest.raises(ValueError, match="c=5"):
        pass_at_k(4, 5, 1)


def test_tables():
    samples = {"a": [1, 0, 0, 1], "b": [0, 0, 0, 0], "c": [True, True, True, False]}
    assert avg_at_k(samples) == pytest.approx((0.5 + 0.0 + 0.75) / 3)
    table = pass_at_k_table(samples)
    assert set(table) == {1, 2, 3, 4}
    assert table[1] == pytest.approx(avg_at_k(samples))
    assert table[4] == pytest.approx(2 / 3)
    assert table[2] == pytest.approx((brute_force_pass_at_k(4, 2, 2) + 0 + 1.0) / 3)
    with pytest.raises(ValueError, match="k=5 exceeds the sample count n=4"):
        pass_at_k_table(samples, ks=[5])
    with pytest.raises(ValueError, match="0/1"):
        avg_at_k({"a": [0.5]})
    with pytest.raises(ValueError, match="no samples"):
        avg_at_k({"a": []})
    assert mean_over_benchmarks({"aime24": 0.5, "hmmt25": 0.25}) == pytest.approx(0.375)
