"""antisd.evaluate.summary: avg@k, pass@k, counted failures, the tables and the plot, on a hand-built file."""

from __future__ import annotations

import csv

import pytest

import antisd.evaluate as ev
from antisd.evaluate import read_records, summarize, write_summary

from eval_helpers import hand_built


def test_pass_at_k_table_on_a_hand_built_results_file(tmp_path):
    rows = summarize(read_records(hand_built(tmp_path / "r.jsonl")))
    b1, b2, mean = rows
    assert (b1["benchmark"], b1["n_problems"], b1["k"], b1["n_incomplete_problems"]) == ("b1", 2, 4, 1)
    # p1: n=4, c=1: pass@1 1/4, pass@2 1 - C(3,2)/C(4,2) = 1/2, pass@3 1 - C(3,3)/C(4,3) = 3/4, pass@4 1
    # p2: n=4, c=3: pass@1 3/4, pass@j>=2 = 1
    assert b1["avg@k"] == pytest.approx(0.5)
    assert [b1[f"pass@{j}"] for j in range(1, 5)] == pytest.approx([0.5, 0.75, 0.875, 1.0])
    assert b1["mean_tokens"] == pytest.approx((10 + 20 + 30 + 40 + 4 * 10) / 8)
    assert b1["truncation_rate"] == pytest.approx(1 / 8)
    assert [b2["avg@k"], b2["pass@1"], b2["pass@2"]] == pytest.approx([0.5, 0.5, 0.5])
    assert (b2["n_empty"], b2["n_no_answer"], b2["n_gold_unparseable"], b2["n_gold_unparseable_problems"]) == (1, 1, 1, 1)
    assert b2["no_answer_rate"] == pytest.approx(0.25)
    assert mean["benchmark"] == "mean" and mean["avg@k"] == pytest.approx(0.5)  # the paper's mean over benchmarks
    assert mean["pass@2"] == pytest.approx((0.75 + 0.5) / 2) and "pass@3" not in mean
    files = write_summary(rows, tmp_path)
    table = list(csv.DictReader(files["csv"].open()))
    assert [r["benchmark"] for r in table] == ["b1", "b2", "mean"] and float(table[0]["pass@3"]) == 0.875
    assert table[1]["pass@3"] == "" and table[1]["n_incomplete_problems"] == "0"
    md = files["markdown"].read_text()
    assert "| m | b1 | 2 | 4 | 50.0 | 50.0 | 75.0 | 100.0 | 18 | 12.5 | 0.0 |" in md  # pass@1, 2, 4 (powers of 2, k)
    png = ev.plot_pass_at_k(rows, tmp_path / "p.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
