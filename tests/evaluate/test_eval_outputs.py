"""What ``antisd eval`` writes says what ran: a duplicate line in a samples file is a counted, logged skip (not a
second sample), and the pass@k plot's axes fit its data (k on a log-2 axis only with several k, no negative %)."""

from __future__ import annotations

import logging

import pytest

from antisd.cli.main import main as antisd_main
from antisd.evaluate import read_records
from antisd.evaluate.summary import pass_at_k_figure

from eval_helpers import record, write_jsonl


def test_a_duplicate_sample_line_is_skipped_counted_and_logged(tmp_path, caplog):
    out = tmp_path / "run"
    (out / "samples").mkdir(parents=True)
    rows = [record("m", "b", "p1", 0, True, k=2, completion="so \\boxed{1}"),
            record("m", "b", "p1", 1, False, k=2, completion="so \\boxed{2}")]
    path = write_jsonl(out / "samples" / "m__b.jsonl", [rows[0], rows[1], rows[1]])  # line 3 repeats line 2
    with caplog.at_level(logging.WARNING, logger="antisd"):
        records = read_records(path)
    assert [(r["problem_id"], r["sample_index"]) for r in records] == [("p1", 0), ("p1", 1)]
    assert "skipped 1 duplicate line(s), each a sample already read: line 3 (problem p1 sample 1, first on line 2)" \
           in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="antisd"):  # re-scoring as a user runs it: one problem, 2 samples
        assert antisd_main(["eval", "--rescore", "--output_dir", str(out), "--plot", "false"]) == 0
    assert "| m | b | 1 | 2 | 50.0 |" in (out / "summary.md").read_text()  # not 3 samples, not 33.3%
    assert "duplicate line(s)" in caplog.text


def _visible(fig):
    return [ax for ax in fig.axes if ax.get_visible()]


def test_pass_at_k_axes():
    rows = [{"model": "base", "benchmark": "one_k", "n_problems": 3, "pass@1": 0.0},
            {"model": "base", "benchmark": "many_k", "n_problems": 3, "pass@1": 0.25, "pass@2": 0.4, "pass@8": 0.7},
            {"model": "tuned", "benchmark": "many_k", "n_problems": 3, "pass@1": 0.3, "pass@2": 0.5, "pass@8": 1.0}]
    one, many = _visible(pass_at_k_figure(rows))
    assert one.get_xscale() == "linear" and list(one.get_xticks()) == [1]  # one k: no log axis around one point
    assert one.get_ylim()[0] == 0 and one.get_ylim()[1] > 0  # all zero: still no negative percent
    assert many.get_xscale() == "log" and many.xaxis.get_transform().base == 2
    assert list(many.get_xticks()) == [1, 2, 8]
    low, high = many.get_ylim()
    assert low == 0 and high == pytest.approx(100.0)
    assert pass_at_k_figure([]) is None
