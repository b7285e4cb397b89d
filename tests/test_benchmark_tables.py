"""The summary maths of benchmarks/toy_compare.py (the benchmark itself is run by hand, not here)."""

import math

import pytest

from bench_helpers import load_benchmark


@pytest.fixture(scope="module")
def tc():
    return load_benchmark("toy_compare")


def _run(method, seed, accs, gate_on=math.nan):
    return {"method": method, "seed": seed, "seconds": 1.0, "train_len": 40.0, "delib": 0.03, "gate_on": gate_on,
            "curve": [{"step": 10 * i, "acc": a, "len": 40.0, "strict": a} for i, a in enumerate(accs)]}


def test_table_paired_delta_reach_and_peak(tc):
    results = [
        _run("antisd", 0, [0.30, 0.45, 0.50], gate_on=0.5),  # out of order on purpose: rows follow METHODS
        _run("grpo", 0, [0.30, 0.35, 0.40]),
        _run("grpo", 1, [0.30, 0.40, 0.44]),
        _run("antisd", 1, [0.30, 0.38, 0.46], gate_on=0.7),
        _run("sd", 0, [0.30, 0.20, 0.10]),
    ]
    md, summary = tc.table(results)
    lines = md.splitlines()
    assert [ln.split("|")[1].strip() for ln in lines[2:]] == ["grpo", "sd", "antisd"]
    # GRPO's final mean is 0.42; AntiSD's mean curve (0.30, 0.415, 0.48) first reaches it at step 20.
    assert summary["antisd"]["reach"] == 20
    assert summary["sd"]["reach"] is None
    anti = lines[4]
    # paired by seed: (0.50-0.40, 0.46-0.44) = (0.10, 0.02): mean 0.06, s.e. = sd/sqrt(2) = 0.04
    assert "+0.060 ± 0.040" in anti
    assert "0.480 ± 0.028" in anti  # finals 0.50, 0.46: sample sd 0.0283
    assert "| 0.60 |" in anti  # gate on, mean over seeds
    assert "0.480 (20)" in anti  # peak of the mean curve
    assert lines[2].rstrip().endswith("| — |")  # GRPO has no gate
    assert "n/a" in lines[3]  # SD has one seed paired with GRPO: no spread


def test_plot_writes_png(tc, tmp_path):
    results = [_run("grpo", 0, [0.3, 0.4]), _run("antisd", 0, [0.3, 0.5], gate_on=1.0)]
    _, summary = tc.table(results)
    tc.plot(summary, results, tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 1000
