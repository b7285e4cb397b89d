"""antisd.data: loading local files, column mapping, row validation, prompt formats."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from antisd.data import (
    DEFAULT_SYSTEM_PROMPT,
    DataConfig,
    DataError,
    DataValidationError,
    check_prompt_format,
    load_problems,
    text_id,
)

from paths import SHARED_DATA  # noqa: E402

SHARED = SHARED_DATA
CANONICAL = ["prompt", "answer", "solution", "problem_id"]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def rows(n: int = 5) -> list[dict]:
    return [{"id": f"q{i}", "problem": f"What is {i} + 1?", "answer": i + 1, "solution": f"{i} + 1 = {i + 1}"}
            for i in range(n)]


# ---------------------------------------------------------------------------------------- loading


def test_jsonl_loads_and_maps_to_canonical_columns(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", rows())
    ds = load_problems(DataConfig(dataset_name=str(path), id_column="id"))
    assert ds.column_names == CANONICAL
    assert len(ds) == 5
    row = ds[2]
    assert row["prompt"] == [
        {"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
        {"role": "user", "content": "What is 2 + 1?"},
    ]
    assert row["answer"] == "3"  # numbers become strings
    assert row["solution"] == "2 + 1 = 3"
    assert row["problem_id"] == "q2"


def test_parquet_loads_with_renamed_columns_and_no_solution(tmp_path):
    df = pd.DataFrame({"question": ["Add 2 and 2.", "Halve 9."], "gt": [4.0, 4.5], "uid": [10, 11]})
    path = tmp_path / "p.parquet"
    df.to_parquet(path)
    cfg = DataConfig(dataset_name=str(path), problem_column="question", answer_column="gt", id_column="uid")
    ds = load_problems(cfg)
    assert ds["answer"] == ["4", "4.5"]  # an integral float prints as an integer
    assert ds["solution"] == [None, None]  # no 'solution' column: optional
    assert ds["problem_id"] == ["10", "11"]
    assert ds[0]["prompt"][-1] == {"role": "user", "content": "Add 2 and 2."}


def test_csv_and_directory_of_files(tmp_path):
    d = tmp_path / "dir"
    d.mkdir()
    write_jsonl(d / "a.jsonl", rows(3))
    write_jsonl(d / "b.jsonl", rows(2))
    assert len(load_problems(DataConfig(dataset_name=str(d)))) == 5
    pd.DataFrame({"problem": ["p1", "p2"], "answer": [1, 2]}).to_csv(tmp_path / "c.csv", index=False)
    ds = load_problems(DataConfig(dataset_name=str(tmp_path / "c.csv")))
    assert ds["answer"] == ["1", "2"]


def test_mixed_directory_and_missing_path_are_rejected(tmp_path):
    d = tmp_path / "mixed"
    d.mkdir()
    write_jsonl(d / "a.jsonl", rows(1))
    pd.DataFrame({"problem": ["p"], "answer": [1]}).to_csv(d / "b.csv", index=False)
    with pytest.raises(ValueError, match="mixes file types"):
        load_problems(DataConfig(dataset_name=str(d)))
    with pytest.raises(DataError, match="no such file"):
        load_problems(DataConfig(dataset_name=str(tmp_path / "nope.jsonl")))


def test_plain_prompt_format_is_the_problem_text(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", rows(2))
    ds = load_problems(DataConfig(dataset_name=str(path), prompt_format="plain"))
    assert ds["prompt"] == ["What is 0 + 1?", "What is 1 + 1?"]


def test_chat_without_system_prompt(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", rows(1))
    ds = load_problems(DataConfig(dataset_name=str(path), system_prompt=""))
    assert ds[0]["prompt"] == [{"role": "user", "content": "What is 0 + 1?"}]


def test_ids_default_to_a_hash_of_the_problem(tmp_path):
    data = rows(2) + [rows(1)[0]]  # row 2 repeats row 0
    path = write_jsonl(tmp_path / "p.jsonl", [{k: v for k, v in r.items() if k != "id"} for r in data])
    ds = load_problems(DataConfig(dataset_name=str(path)))
    assert ds["problem_id"][0] == ds["problem_id"][2] == text_id("What is 0 + 1?")
    assert ds["problem_id"][1] != ds["problem_id"][0]


def test_max_samples_and_shuffle_seed(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", rows(20))
    first = load_problems(DataConfig(dataset_name=str(path), id_column="id", max_samples=4))
    assert first["problem_id"] == ["q0", "q1", "q2", "q3"]
    a = load_problems(DataConfig(dataset_name=str(path), id_column="id", max_samples=4, shuffle_seed=1))
    b = load_problems(DataConfig(dataset_name=str(path), id_column="id", max_samples=4, shuffle_seed=1))
    assert a["problem_id"] == b["problem_id"] != first["problem_id"]


def test_config_checks():
    with pytest.raises(ValueError, match="prompt_format='html'.*chat"):
        DataConfig(dataset_name="x.jsonl", prompt_format="html")
    with pytest.raises(ValueError, match="max_samples=0"):
        DataConfig(dataset_name="x.jsonl", max_samples=0)


# ---------------------------------------------------------------------------------------- validation


def test_missing_column_names_the_column_and_the_existing_ones(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", rows(2))
    with pytest.raises(ValueError) as e:
        load_problems(DataConfig(dataset_name=str(path), answer_column="final"))
    msg = str(e.value)
    assert "'final'" in msg and "answer_column" in msg
    assert "['id', 'problem', 'answer', 'solution']" in msg
    with pytest.raises(ValueError, match="'uid' \\(id_column\\)"):
        load_problems(DataConfig(dataset_name=str(path), id_column="uid"))


def test_bad_rows_are_listed_with_index_id_and_column(tmp_path):
    data = rows(20)
    data[17]["answer"] = ""
    data[3]["problem"] = "   "
    data[5]["answer"] = None
    path = write_jsonl(tmp_path / "p.jsonl", data)
    with pytest.raises(DataValidationError) as e:
        load_problems(DataConfig(dataset_name=str(path), id_column="id"))
    msg = str(e.value)
    assert msg.startswith("3 bad row(s)")
    assert "row 17 (id q17): column 'answer' is empty; expected a non-empty final answer" in msg
    assert "row 3 (id q3): column 'problem' is empty; expected a non-empty problem text" in msg
    assert "row 5 (id q5): column 'answer' is missing" in msg


def test_many_bad_rows_list_ten_and_count(tmp_path):
    data = [{"problem": f"p{i}", "answer": ""} for i in range(25)]
    path = write_jsonl(tmp_path / "p.jsonl", data)
    with pytest.raises(DataValidationError) as e:
        load_problems(DataConfig(dataset_name=str(path)))
    msg = str(e.value)
    assert msg.startswith("25 bad row(s)")
    assert "row 9:" in msg and "row 10:" not in msg
    assert "and 15 more" in msg


def test_only_selected_rows_are_validated(tmp_path):
    data = rows(10)
    data[8]["answer"] = ""
    path = write_jsonl(tmp_path / "p.jsonl", data)
    assert len(load_problems(DataConfig(dataset_name=str(path), max_samples=5))) == 5


def test_nan_answer_in_parquet_is_missing(tmp_path):
    path = tmp_path / "p.parquet"
    pd.DataFrame({"problem": ["a", "b"], "answer": [1.0, float("nan")]}).to_parquet(path)
    with pytest.raises(DataValidationError, match="row 1: column 'answer' is missing"):
        load_problems(DataConfig(dataset_name=str(path)))


def test_one_id_for_two_problems_is_rejected(tmp_path):
    data = rows(3)
    data[2]["id"] = "q0"
    path = write_jsonl(tmp_path / "p.jsonl", data)
    with pytest.raises(DataValidationError, match="row 2 \\(id q0\\): id 'q0' is also row 0 with a different problem"):
        load_problems(DataConfig(dataset_name=str(path), id_column="id"))


# ---------------------------------------------------------------------------------------- prompt format


def test_check_prompt_format():
    with_template = SimpleNamespace(chat_template="{{ messages }}", name_or_path="tok")
    without = SimpleNamespace(chat_template=None, name_or_path="toy-tokenizer")
    check_prompt_format(with_template, DataConfig(dataset_name="x.jsonl"))
    check_prompt_format(without, DataConfig(dataset_name="x.jsonl", prompt_format="plain"))
    with pytest.raises(ValueError, match="'toy-tokenizer' has none; set prompt_format: plain"):
        check_prompt_format(without, DataConfig(dataset_name="x.jsonl"))


# ---------------------------------------------------------------------------------------- shared files


@pytest.mark.parametrize("name, n", [("math500", 500), ("aime2024", 30)])
def test_shared_eval_files_load_with_solutions(name, n):
    path = SHARED / f"{name}.jsonl"
    if not path.exists():
        pytest.skip(f"{path} missing")
    ds = load_problems(DataConfig(dataset_name=str(path), id_column="id"))
    assert len(ds) == n
    assert all(s for s in ds["solution"])
    assert len(set(ds["problem_id"])) == n


def test_shared_dapo_loads_without_solutions():
    path = SHARED / "dapo_math_17k.jsonl"
    if not path.exists():
        pytest.skip(f"{path} missing")
    ds = load_problems(DataConfig(dataset_name=str(path), id_column="id", max_samples=200))
    assert len(ds) == 200
    assert ds["solution"] == [None] * 200
    assert ds[0]["problem_id"] == "dapo17k-00000" and ds[0]["answer"] == "34"


def test_unreachable_hub_dataset_is_a_data_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="could not be loaded from the hub"):
        load_problems(DataConfig(dataset_name="antisd-test-org/no-such-dataset"))
