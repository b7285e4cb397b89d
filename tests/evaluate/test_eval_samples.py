"""antisd.evaluate.samples.SamplesFile: one read, the samples each once, finished problems, resume (one rule for maths
and code files), appends that keep the parsed lines equal to a new read, atomic rewrites, leftovers."""

from __future__ import annotations

import json
import logging

import pytest

from antisd.evaluate import EvalError, SamplesFile
from antisd.evaluate.samples import finished_groups

from eval_helpers import record, write_jsonl


def _lines(path):
    return [(line.number, line.value, line.terminated) for line in SamplesFile(path).lines()]


def test_a_maths_file_is_read_once_and_resumes_to_its_finished_problems(tmp_path, caplog, monkeypatch):
    path = write_jsonl(tmp_path / "m__b.jsonl", [record("m", "b", "p1", 0, True, k=2), record("m", "b", "p2", 0, False, k=2),
                                                 record("m", "b", "p1", 1, False, k=2), record("m", "b", "p1", 1, True, k=2)])
    with path.open("a", encoding="utf-8") as f:
        f.write("\n{not json\n" + json.dumps(record("m", "b", "p3", 0, True, k=2)))  # a blank line, junk, a torn last line
    samples = SamplesFile(path)
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda *a, **kw: opened.append(str(a[0])) or real_open(*a, **kw))
    assert [line.number for line in samples.lines()] == [1, 2, 3, 4, 6, 7]
    assert not samples.lines()[-1].terminated and samples.lines()[-2].error
    with caplog.at_level(logging.INFO, logger="antisd"):
        assert [(r["problem_id"], r["sample_index"]) for r in samples.records()] == [("p1", 0), ("p2", 0), ("p1", 1)]
        assert list(samples.finished(2)) == ["p1"]
        assert samples.resume(2) == {"p1"}
    assert opened.count(str(path)) == 1  # read once (the rewrite opens a temporary file)
    assert "skipped 2 unreadable line(s)" in caplog.text and "line 4 (problem p1 sample 1, first on line 3)" in caplog.text
    assert "dropping 1 sample(s) of unfinished problems and 3 broken line(s)" in caplog.text
    assert [(r["problem_id"], r["sample_index"], r["correct"]) for r in SamplesFile(path).records()] == [
        ("p1", 0, True), ("p1", 1, False)]
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_appends_keep_the_parsed_lines_equal_to_a_new_read(tmp_path):
    path = tmp_path / "c.samples.jsonl"
    samples = SamplesFile.code(path)
    assert samples.lines() == [] and samples.resume(2) == set() and not path.exists()  # nothing to resume
    samples.append([{"task_id": "T/0", "sample_index": i, "solution": "x = '\u2028\r'"} for i in range(2)])
    samples.append([{"task_id": "T/1", "sample_index": 0, "solution": "y"}])
    assert _lines(path) == [(line.number, line.value, line.terminated) for line in samples.lines()]
    assert samples.finished(2) == {"T/0": samples.records()[:2]}
    assert samples.resume(2) == {"T/0"} and len(SamplesFile.code(path).lines()) == 2  # T/1 unfinished: dropped


def test_code_files_resume_by_the_maths_rule(tmp_path):
    """A repeated sample of a code task is dropped like a maths one (score_samples would skip it anyway); a last
    line without its newline may be a write cut short, so its task is drawn again, and nothing is appended to it."""
    rows = [{"task_id": "T/0", "sample_index": i, "solution": "s"} for i in (0, 1, 1)]
    path = write_jsonl(tmp_path / "m__x.samples.jsonl", rows)
    assert SamplesFile.code(path).resume(2) == {"T/0"} and len(path.read_text().splitlines()) == 2
    path.write_text(path.read_text() + json.dumps({"task_id": "T/1", "sample_index": 0, "solution": "s"}))
    samples = SamplesFile.code(path)
    assert samples.resume(2) == {"T/0"} and path.read_text().endswith("}\n") and len(samples.lines()) == 2
    samples.append([{"task_id": "T/1", "sample_index": i, "solution": "s"} for i in (0, 1)])
    assert [r["task_id"] for r in SamplesFile.code(path).records()] == ["T/0", "T/0", "T/1", "T/1"]


def test_append_refuses_a_file_that_ends_in_half_a_line(tmp_path):
    path = tmp_path / "m__b.jsonl"
    path.write_text(json.dumps(record("m", "b", "p1", 0, True, k=1)) + "\n" + '{"model": "m", "probl')
    samples = SamplesFile(path)
    samples.lines()
    with pytest.raises(ValueError, match="ends in a line without its newline; resume"):
        samples.append([record("m", "b", "p2", 0, True, k=1)])


def test_leftovers_and_unreadable_files(tmp_path):
    path = write_jsonl(tmp_path / "m__b.jsonl", [record("m", "b", "p1", 0, True, k=1)])
    (tmp_path / ".m__b.jsonl.tmp-99").write_text("half a rewrite")
    (tmp_path / ".other.jsonl.tmp-99").write_text("not ours")
    SamplesFile(path).clean_leftovers()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.jsonl.tmp-99", "m__b.jsonl"]
    path.write_bytes(b'{"problem_id": "\xe9"}\n')
    with pytest.raises(EvalError, match="samples file .* cannot be read: 'utf-8' codec"):
        SamplesFile(path).records()


def test_finished_groups_need_exactly_the_indices_0_to_k_minus_1():
    records = [{"problem_id": "a", "sample_index": i} for i in (0, 1)] + [{"problem_id": "b", "sample_index": 1},
                                                                       {"problem_id": "c", "sample_index": "x"},
                                                                       {"problem_id": "c", "sample_index": 0}]
    assert list(finished_groups(records, 2)) == ["a"]
    assert list(finished_groups(records, 1)) == []  # a has two samples, b lacks 0, c has a junk index
