"""The statistics of benchmarks/toy_robustness_report.py against hand-worked values and brute force."""

import itertools
import json
import math
import statistics
from pathlib import Path

import pytest

from bench_helpers import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rep():
    return load_benchmark("toy_robustness_report")


def _run(base, arm, seed, accs, big=None):
    curve = [{"step": 100 * i, "kind": "acc", "n": 512, "acc": a} for i, a in enumerate(accs)]
    for step, a in (big or {}).items():
        curve.append({"step": step, "kind": "big", "n": 2048, "acc": a})
    return {"base": base, "arm": arm, "seed": seed, "curve": curve, "history": []}


def test_t_interval_and_wilson_against_hand_values(rep):
    m, lo, hi = rep.t_interval([0.1, 0.2, 0.3])
    half = 4.303 * 0.1 / math.sqrt(3)
    assert (m, lo, hi) == pytest.approx((0.2, 0.2 - half, 0.2 + half))
    assert math.isnan(rep.t_interval([0.5])[1])
    lo, hi = rep.wilson(0, 10)
    assert lo == pytest.approx(0.0, abs=1e-12) and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = rep.wilson(5, 10)
    assert (lo, hi) == pytest.approx((0.2366, 0.7634), abs=1e-4)


def test_collapse_auc_and_endpoints(rep):
    r = _run("A", "antisd", 0, [0.2, 0.4, 0.1], big={0: 0.20, 200: 0.12})
    assert rep.endpoint(r, 200) == 0.12 and rep.endpoint(r, 100) == 0.4
    assert rep.collapsed(r)  # 0.12 < 0.20 - 0.03
    assert not rep.collapsed(_run("A", "grpo", 0, [0.2, 0.3, 0.19], big={0: 0.20, 200: 0.18}))
    assert rep.auc(r) == pytest.approx(((0.2 + 0.4) / 2 + (0.4 + 0.1) / 2) / 2)


def test_steps_to_interval_matches_brute_force_over_all_resamples(rep):
    pairs = [(_run("A", "antisd", s, a, big={0: a[0], 300: a[-1]}), _run("A", "grpo", s, g, big={0: g[0], 300: g[-1]}))
             for s, (a, g) in enumerate([([0.2, 0.4, 0.5, 0.5], [0.2, 0.3, 0.4, 0.45]),
                                          ([0.2, 0.3, 0.5, 0.6], [0.2, 0.3, 0.4, 0.5]),
                                          ([0.2, 0.2, 0.3, 0.4], [0.2, 0.3, 0.5, 0.5])])]
    point, lo, hi = rep.steps_to_interval(pairs, n_boot=4000)
    # point: mean GRPO final 0.4833; mean antisd curve 0.2, 0.3, 0.433, 0.5 -> reached at step 300
    assert point == 300
    # every resample's statistic lies in the set brute force gives over all 27 ordered resamples
    values = set()
    for sample in itertools.product(pairs, repeat=3):
        target = statistics.fmean(g["curve"][3]["acc"] for _, g in sample)
        s = rep.steps_to([a for a, _ in sample], target)
        values.add(301 if s is None else s)
    assert lo in values and hi in values and lo <= 300 <= hi


def test_report_end_to_end_on_synthetic_runs(rep, tmp_path):
    for s in range(3):
        for arm, accs in (("grpo", [0.2, 0.3, 0.35]), ("antisd", [0.2, 0.32, 0.1 if s == 0 else 0.4])):
            d = tmp_path / "A" / f"{arm}-s{s}"
            d.mkdir(parents=True)
            run = _run("A", arm, s, accs, big={0: 0.2, 200: accs[-1]})
            (d / "result.json").write_text(json.dumps({k: v for k, v in run.items() if k != "history"}))
            # the monitor flags the collapsing run from step 150 and one healthy GRPO-paired run at step 200
            flag = (lambda i: i >= 150) if (arm, s) == ("antisd", 0) else (lambda i: i == 200) if (arm, s) == ("antisd", 1) else (lambda i: False)
            (d / "log_history.json").write_text(json.dumps(
                [{"step": i, "loss": 0.0, "pmi/mean": -0.1 * i, "gate/on": 1.0, "monitor/exploit": float(flag(i))}
                 for i in range(1, 201)]))
    rep.main(["--out", str(tmp_path)])
    text = (tmp_path / "report.md").read_text()
    assert "| A | antisd | 3 |" in text and "1/3" in text  # seed 0 collapsed
    # verdicts: finals - GRPO = -0.25, -0.05 (s1: 0.4 vs 0.35 -> +0.05), +0.05: mean -0.05, interval spans 0
    assert "| A | antisd | 3 | inconclusive: -0.050 [" in text
    # monitor: the collapsed run flagged at 150, its curve peaked at step 100; 1 of 2 healthy runs flagged, 1 of 200 steps
    assert "| A | antisd | 1/1 | 150 | 100 | 1/2 | 0.003 |" in text
    assert (tmp_path / "curves.png").exists() and (tmp_path / "mechanism_A_antisd.png").exists()


def test_peak_step_is_the_first_highest_curve_point(rep):
    assert rep.peak_step(_run("A", "antisd", 0, [0.2, 0.5, 0.1, 0.5])) == 100
    assert rep.peak_step(_run("A", "antisd", 0, [0.6, 0.5, 0.1])) == 0


def test_continual_rows_pair_by_seed_at_each_step(rep):
    def run(arm, seed, a250, a300):
        r = _run("A", arm, seed, [])
        r["curve"] = [{"step": 250, "kind": "acc", "n": 512, "acc": a250},
                      {"step": 300, "kind": "acc", "n": 512, "acc": 0.0},
                      {"step": 300, "kind": "big", "n": 2048, "acc": a300}]
        return r
    runs = {("A", "grpo"): {0: run("grpo", 0, 0.30, 0.40), 1: run("grpo", 1, 0.32, 0.42), 2: run("grpo", 2, 0.5, 0.5)},
            ("A", "antisd_from_grpo200"): {0: run("c", 0, 0.31, 0.38), 1: run("c", 1, 0.35, 0.40)}}
    rows = rep.continual_rows(runs, ["A"])[2:]
    assert len(rows) == 2 and rows[0].startswith("| A | 250 | 2 | 0.330 | 0.310 |")
    # step 300 reads the n = 2,048 point, not the curve's 0.0; paired differences -0.02, -0.02
    assert rows[1].startswith("| A | 300 | 2 | 0.390 | 0.410 |") and "-0.020" in rows[1]


def test_the_runner_skips_runs_whose_record_is_in_the_repository(tmp_path, caplog):
    """Run folders are not committed: on another machine a run with a committed record is finished, not redone."""
    import logging
    import shutil

    runner = load_benchmark("toy_robustness")
    results = tmp_path / "results" / "guard_control"
    results.mkdir(parents=True)
    shutil.copy(ROOT / "results" / "guard_control" / "S-grpo-s0.json", results)
    argv = ["--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results"), "--study", "guard_control",
            "--bases", "S=default", "--arms", "grpo", "--seeds", "0", "--jobs", "1"]
    with caplog.at_level(logging.INFO, logger="toy_robustness"):
        runner.main(argv)
    assert "0 runs to do" in caplog.text
