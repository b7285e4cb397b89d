"""antisd.pmi.aggregate: exact aggregates on a hand-built example, deterministic bootstrap."""

from __future__ import annotations

import json
import math

import pytest
import torch

from antisd.pmi import PMIRecord, TokenClass, aggregate, bootstrap_ci, boxed_mask, parse_token_classes


def hand_records() -> list[PMIRecord]:
    """Known u values (exact binary fractions): u = t - s."""
    r1 = PMIRecord("h1", list(range(7)), ["Wait", ",", " so", " \\boxed{", "4", "2", "}"],
                   [-1.0] * 7, [-3.0, -1.0, 0.0, -0.5, -0.75, -1.0, -1.0])  # u = -2, 0, 1, .5, .25, 0, 0
    r2 = PMIRecord("h2", list(range(4)), [" Wait", " Hmm", ",", " so"],
                   [-2.0] * 4, [-3.0, -2.5, -2.0, -1.0])  # u = -1, -.5, 0, 1
    return [r1, r2]


def test_aggregates_exact_on_hand_built_example():
    classes = parse_token_classes(["commit=so", "answer=@boxed"])
    t = aggregate(hand_records(), classes, n_boot=0)
    rows = {r["token"]: r for r in t.tokens}
    assert rows[","]["n"] == 2 and rows[","]["mean_u"] == 0.0
    assert rows[" so"]["n"] == 2 and rows[" so"]["mean_u"] == 1.0 and rows[" so"]["neg_frac"] == 0.0
    assert rows["Wait"]["mean_u"] == -2.0 and rows[" Wait"]["mean_u"] == -1.0
    assert [r["token"] for r in t.tokens][:2] == [" so", " \\boxed{"]  # ranked by mean u
    assert t.tokens[-1]["token"] == "Wait"
    c = {r["class"]: r for r in t.classes}
    assert c["deliberation"]["n"] == 3 and c["deliberation"]["mean_u"] == (-2.0 - 1.0 - 0.5) / 3
    assert c["deliberation"]["n_rollouts"] == 2
    assert c["commit"]["n"] == 2 and c["commit"]["mean_u"] == 1.0
    assert c["answer"]["n"] == 2 and c["answer"]["mean_u"] == 0.125  # "4", "2" inside \boxed{}
    assert c["connective"]["n"] == 2 and c["connective"]["mean_u"] == 1.0  # "so" is a connective too
    s = t.summary
    assert s["n_tokens"] == 11 and s["n_rollouts"] == 2
    assert s["neg_frac"] == 3 / 11 and s["pos_frac"] == 4 / 11 and s["zero_frac"] == 4 / 11
    assert s["mean_u"] == (-2 + 0 + 1 + .5 + .25 + 0 + 0 - 1 - .5 + 0 + 1) / 11
    assert s["median_u"] == 0.0
    assert [r["sum_u"] for r in t.rollouts] == [-0.25, -0.5]
    assert s["telescoping_checked"] == 0
    assert t.heatmap.sum() == 11
    assert boxed_mask(["a", "\\box", "ed{", "x", "{1}", "}", " b"]) == [False, False, False, True, True, False, False]
    assert boxed_mask(["\\boxed{", "7"]) == [False, True]  # unclosed box runs to the end
    assert boxed_mask([" yes", " \\boxed{", " 6", " }"]) == [False, False, True, False]  # word-level: spaces ignored
    assert TokenClass("d", frozenset({"Wait"})).members([" Wait", "Wait,", "W"]) == [True, False, False]
    with pytest.raises(ValueError, match="NAME=word1"):
        parse_token_classes(["nonsense"])


def test_bootstrap_deterministic_and_contains_mean():
    g = torch.Generator().manual_seed(1)
    sums = (torch.randn(40, generator=g) * 3).tolist()
    counts = torch.randint(1, 6, (40,), generator=g).double().tolist()
    mean = sum(sums) / sum(counts)
    a = bootstrap_ci(sums, counts, n_boot=500, seed=3)
    assert a == bootstrap_ci(sums, counts, n_boot=500, seed=3)
    assert a != bootstrap_ci(sums, counts, n_boot=500, seed=4)
    assert a[0] < mean < a[1]
    t1 = aggregate(hand_records(), n_boot=200, seed=0, unit="token")
    t2 = aggregate(hand_records(), n_boot=200, seed=0, unit="token")
    assert json.dumps(t1.classes) == json.dumps(t2.classes)  # (NaN != NaN, so compare the text)
    d = {r["class"]: r for r in t1.classes}["deliberation"]
    assert d["ci_low"] <= d["mean_u"] <= d["ci_high"]
    assert all(math.isnan(x) for x in bootstrap_ci([], [], n_boot=10))


def test_entropy_split_against_a_direct_computation():
    """Quintiles and fork (top 20%) vs rest of u and -phi(u) by student entropy, checked by brute force."""
    import numpy as np

    g = torch.Generator().manual_seed(3)
    recs, all_u, all_h = [], [], []
    for i in range(12):
        n = 5 + i
        s = (-torch.rand(n, generator=g) * 3).tolist()
        t = (-torch.rand(n, generator=g) * 3).tolist()
        h = (torch.rand(n, generator=g) * 2).tolist()
        recs.append(PMIRecord(f"r{i}", list(range(n)), ["x"] * n, s, t, student_entropy=h))
        all_u += [b - a for a, b in zip(s, t)]
        all_h += h
    recs.append(PMIRecord("no-entropy", [0], ["x"], [-1.0], [-2.0]))  # left out of the split
    rows = {r["group"]: r for r in aggregate(recs, n_boot=200).entropy}
    u, h = np.array(all_u), np.array(all_h)
    term = -0.5 * (np.log1p(np.exp(u)) - math.log(2))
    fork = h >= np.quantile(h, 0.8)
    assert rows["fork (top 20%)"]["n"] == fork.sum() and rows["rest"]["n"] == (~fork).sum()
    assert rows["fork (top 20%)"]["mean_u"] == pytest.approx(u[fork].mean())
    assert rows["rest"]["mean_antisd_term"] == pytest.approx(term[~fork].mean())
    assert rows["fork (top 20%)"]["term_mass_frac"] == pytest.approx(np.abs(term[fork]).sum() / np.abs(term).sum())
    assert sum(rows[f"entropy quintile {q}"]["n"] for q in range(1, 6)) == len(u)
    lo, hi = rows["fork (top 20%)"]["ci_low"], rows["fork (top 20%)"]["ci_high"]
    assert lo <= rows["fork (top 20%)"]["mean_u"] <= hi
    assert aggregate(hand_records(), n_boot=0).entropy == []  # no student entropies, no split
