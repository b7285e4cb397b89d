"""The shipped code benchmarks: counts and checksums, train/test disjointness, MBPP+ quirks."""

from __future__ import annotations

import math

import pytest

from antisd.data.code_benchmarks import (EXPECTED_FILES, file_digest, load_tasks, mbpp_deserialize_inputs, mbpp_plus_description,
                              normalise_text, read_rows)
from antisd.rewards.code.tasks import AssertSuite, IOSuite


@pytest.mark.parametrize("name", sorted(EXPECTED_FILES))
def test_row_counts_and_checksums(name):
    rows, digest = file_digest(name)
    assert (rows, digest) == EXPECTED_FILES[name]
    ids = [row["id"] for row in read_rows(name)]
    assert len(ids) == len(set(ids)) == rows


def test_mbpp_train_is_disjoint_from_both_test_sets():
    train = read_rows("mbpp_train")
    mbpp_plus = read_rows("mbpp_plus")
    humaneval = read_rows("humaneval_plus")
    plus_ids = {int(row["task_id"].split("/")[1]) for row in mbpp_plus}
    assert not plus_ids & {row["task_id"] for row in train}
    plus_texts = {normalise_text(mbpp_plus_description(row["prompt"])) for row in mbpp_plus}
    assert len(plus_texts) > 370  # the descriptions were really extracted
    assert not plus_texts & {normalise_text(row["text"]) for row in train}
    prompts = [normalise_text(row["prompt"]) for row in humaneval]
    assert not [row["id"] for row in train if any(normalise_text(row["text"]) in p for p in prompts)]


def test_the_two_text_duplicates_named_in_sources_are_gone():
    plus = {row["task_id"]: normalise_text(mbpp_plus_description(row["prompt"])) for row in read_rows("mbpp_plus")}
    train_ids = {row["task_id"] for row in read_rows("mbpp_train")}
    assert 217 not in train_ids and 928 not in train_ids
    assert "first repeated character" in plus["Mbpp/602"]


def test_mbpp_plus_argument_types_follow_the_evalplus_table():
    tasks = {t.task_id: t for t in load_tasks("mbpp_plus")}
    assert isinstance(tasks["Mbpp/106"].base.inputs[0][1], tuple)
    assert isinstance(tasks["Mbpp/720"].base.inputs[0][0], tuple)
    first = tasks["Mbpp/580"].base.inputs[0]
    assert isinstance(first, tuple) and isinstance(first[0][2], tuple)
    a, b = tasks["Mbpp/124"].base.inputs[1]
    assert type(a) is float and type(b) is complex
    assert all(type(args[0]) is complex for args in tasks["Mbpp/252"].plus.inputs)
    assert isinstance(tasks["Mbpp/2"].base.inputs[0][0], tuple)  # not one of the 5 that raise, but converted too
    assert mbpp_deserialize_inputs("Mbpp/3", [[1]]) == [[1]]


def test_mbpp_plus_quirks_are_represented():
    tasks = {t.task_id: t for t in load_tasks("mbpp_plus")}
    assert len(tasks["Mbpp/793"].plus) == 0 and list(tasks["Mbpp/793"].suites()) == ["base"]
    values = [v for args in tasks["Mbpp/404"].plus.inputs for v in args if isinstance(v, float)]
    assert math.inf in values and -math.inf in values
    assert "import math" not in tasks["Mbpp/120"].meta["assertion"]
    assert tasks["Mbpp/2"].oracle == "set_eq" and tasks["Mbpp/581"].oracle == "surface_Area"
    assert sum(t.not_none for t in tasks.values()) == 3


def test_task_shapes():
    humaneval = load_tasks("humaneval_plus")
    assert len(humaneval) == 164 and all(isinstance(t.base, IOSuite) for t in humaneval)
    assert sum(len(t.base) for t in humaneval) == 1570 and sum(len(t.plus) for t in humaneval) == 122683
    assert humaneval[32].oracle == "find_zero"
    mbpp_plus = load_tasks("mbpp_plus")
    assert sum(len(t.base) for t in mbpp_plus) == 1174 and sum(len(t.plus) for t in mbpp_plus) == 39841
    train = load_tasks("mbpp_train")
    assert all(isinstance(t.base, AssertSuite) and t.entry_point for t in train)
    assert sum(t.plus is not None for t in train) == 8
    tree = next(t for t in train if t.meta["mbpp_task_id"] == 927)
    assert "Node(" in tree.setup_code and tree.base.targets == frozenset({"max_height"})


def test_unknown_benchmark_is_named():
    with pytest.raises(ValueError, match="unknown code benchmark 'humaneval'"):
        load_tasks("humaneval")
