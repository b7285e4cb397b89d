"""Evaluation estimators: pass@k (unbiased) and avg@k over per-problem samples.

pass@k for a problem with n samples of which c are correct (Chen et al. 2021, "Evaluating Large
Language Models Trained on Code", Eq. 1):

    pass@k = 1 - C(n - c, k) / C(n, k) = 1 - prod_{i = n-c+1}^{n} (1 - k / i)

computed in the product form (binomials overflow or lose precision for n ~ 100s).
avg@k = mean over problems of the mean accuracy of the problem's k samples; the paper's
headline number averages avg@k over benchmarks.

Pure Python + math: no torch, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k estimate for one problem: n samples, c correct, k <= n."""
    for name, v in (("n", n), ("c", c), ("k", k)):
        if int(v) != v:
            raise ValueError(f"{name}={v} must be an integer")
    n, c, k = int(n), int(c), int(k)
    if n < 1:
        raise ValueError(f"n={n} must be >= 1 (number of samples)")
    if not 0 <= c <= n:
        raise ValueError(f"c={c} must be between 0 and n={n} (number of correct samples)")
    if not 1 <= k <= n:
        raise ValueError(f"k={k} must be between 1 and n={n}: pass@k needs at least k samples per problem")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def _as_counts(samples: Mapping[str, Sequence[bool | float | int]]) -> dict[str, tuple[int, int]]:
    counts: dict[str, tuple[int, int]] = {}
    for pid, outcomes in samples.items():
        vals = [float(x) for x in outcomes]
        if not vals:
            raise ValueError(f"problem {pid!r} has no samples")
        bad = [x for x in vals if x not in (0.0, 1.0)]
        if bad:
            raise ValueError(f"problem {pid!r}: sample outcomes must be 0/1 or booleans, got {bad[:3]}")
        counts[str(pid)] = (len(vals), int(sum(vals)))
    if not counts:
        raise ValueError("no problems given")
    return counts


def avg_at_k(samples: Mapping[str, Sequence[bool | float | int]]) -> float:
    """avg@k: mean over problems of each problem's mean accuracy over its samples."""
    counts = _as_counts(samples)
    return sum(c / n for n, c in counts.values()) / len(counts)


def pass_at_k_table(
    samples: Mapping[str, Sequence[bool | float | int]], ks: Iterable[int] | None = None
) -> dict[int, float]:
    """Mean unbiased pass@k over problems for each k (default 1..min n).

    Every k must be <= the smallest per-problem sample count.
    """
    counts = _as_counts(samples)
    n_min = min(n for n, _ in counts.values())
    ks = list(range(1, n_min + 1)) if ks is None else sorted(set(int(k) for k in ks))
    for k in ks:
        if k > n_min:
            smallest = min(counts, key=lambda p: counts[p][0])
            raise ValueError(f"k={k} exceeds the sample count n={n_min} of problem {smallest!r}")
    return {k: sum(pass_at_k(n, c, k) for n, c in counts.values()) / len(counts) for k in ks}


def mean_over_benchmarks(per_benchmark: Mapping[str, float]) -> float:
    """The paper's headline figure: the unweighted mean of per-benchmark scores."""
    vals = [float(v) for v in per_benchmark.values()]
    if not vals:
        raise ValueError("no benchmarks given")
    if any(math.isnan(v) for v in vals):
        raise ValueError(f"NaN benchmark score in {dict(per_benchmark)}")
    return sum(vals) / len(vals)
