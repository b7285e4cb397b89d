"""antisd.data.problems: loading local files, column mapping, row validation, prompt formats."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

import datasets

from antisd.data.problems import (
    DEFAULT_SYSTEM_PROMPT,
    DataConfig,
    DataError,
    DataValidationError,
    check_prompt_format,
    load_problems,
    problems_dataset,
    text_id,
)

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
    with pytest.raises(DataValidationError, match="row 2 \\(id q0\\): id 'q0' is also row 0 \\(a different problem\\)"):
        load_problems(DataConfig(dataset_name=str(path), id_column="id"))


def test_a_repeated_id_is_rejected_even_for_the_same_problem(tmp_path):
    data = rows(3)
    data[2] = dict(data[0])
    path = write_jsonl(tmp_path / "p.jsonl", data)
    with pytest.raises(DataValidationError, match="id 'q0' is also row 0 \\(the same problem\\); expected unique ids"):
        load_problems(DataConfig(dataset_name=str(path), id_column="id"))


@pytest.mark.parametrize("column, value, expected", [
    ("problem", 3, "column 'problem' is a int ('3'); expected a non-empty problem text"),
    ("answer", [1, 2], "column 'answer' is a list ('[1, 2]'); expected a string or number"),
    ("answer", True, "column 'answer' is a bool ('True'); expected a string or number"),
    ("answer", {"x": 1}, "column 'answer' is a dict"),
    ("solution", 7, "column 'solution' is a int ('7'); expected a worked solution text (or nothing)"),
    ("id", 1.5, "column 'id' is a float ('1.5'); expected a string or integer id"),
])
def test_wrongly_typed_cells_are_named(tmp_path, column, value, expected):
    data = rows(3)
    data[1][column] = value  # one JSON file with mixed types: reported, not an Arrow error
    path = write_jsonl(tmp_path / "p.jsonl", data)
    with pytest.raises(DataValidationError) as e:
        load_problems(DataConfig(dataset_name=str(path), id_column="id"))
    assert f"row 1" in str(e.value) and expected in str(e.value) and "\n" not in str(e.value)


def test_mixed_number_and_text_answers_and_ids_are_fine(tmp_path):
    data = rows(3)
    data[0]["answer"], data[1]["answer"], data[0]["id"] = "\\frac{1}{2}", 7, 11
    ds = load_problems(DataConfig(dataset_name=str(write_jsonl(tmp_path / "p.jsonl", data)), id_column="id"))
    assert ds["answer"] == ["\\frac{1}{2}", "7", "3"] and ds["problem_id"] == ["11", "q1", "q2"]


# ---------------------------------------------------------------------------------------- JSON files


@pytest.mark.parametrize("content, expected", [
    (b"", "is empty; expected one JSON object per line"),
    (b"\n  \n", "is empty"),
    (b'{"problem": "p", "answer": "1"}\n{"problem": "q", "ans', "line 2 is not valid JSON"),
    (b'{"problem": "p", "answer": "1"}\n[1, 2]\n', "line 2 is a JSON list, not an object"),
    (b'{"problem": "caf\xe9", "answer": "1"}\n', "is not UTF-8 text: byte 0xe9 at line 1"),
    (b'[{"problem": "p", "answer": "1"}, 3]', "element 1 of the array is a JSON int"),
])
def test_bad_json_files_are_one_line_errors(tmp_path, content, expected):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError) as e:
        load_problems(DataConfig(dataset_name=str(path)))
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_json_array_gzip_and_split_slices(tmp_path):
    import gzip

    (tmp_path / "a.json").write_text(json.dumps(rows(4)), encoding="utf-8")
    assert len(load_problems(DataConfig(dataset_name=str(tmp_path / "a.json")))) == 4
    gz = tmp_path / "p.jsonl.gz"
    gz.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows(6)).encode()))
    ds = load_problems(DataConfig(dataset_name=str(gz), id_column="id", dataset_split="train[2:5]"))
    assert ds["problem_id"] == ["q2", "q3", "q4"]
    with pytest.raises(DataError, match="not a slice"):
        load_problems(DataConfig(dataset_name=str(gz), dataset_split="train[2]"))


# ---------------------------------------------------------------------------------------- in memory


def test_problems_dataset_takes_any_table_and_validates_like_the_cli(tmp_path):
    table = [{"question": "What is 1 + 1?", "final": 2, "worked": "1 + 1 = 2", "uid": "a"},
             {"question": "What is 2 + 2?", "final": "4", "worked": None, "uid": "b"}]
    names = dict(problem_column="question", answer_column="final", solution_column="worked", id_column="uid")
    expected = {"answer": ["2", "4"], "solution": ["1 + 1 = 2", None], "problem_id": ["a", "b"]}
    path = write_jsonl(tmp_path / "t.jsonl", table)
    typed = datasets.Dataset.from_list([{**row, "final": str(row["final"])} for row in table])  # Arrow: one type
    for data in (table, pd.DataFrame(table), typed, path, str(path)):
        ds = problems_dataset(data, **names)
        assert ds.column_names == CANONICAL and {k: ds[k] for k in expected} == expected, type(data)
        assert ds[0]["prompt"][-1] == {"role": "user", "content": "What is 1 + 1?"}
    assert problems_dataset(table, prompt_format="plain", **names)["prompt"] == ["What is 1 + 1?", "What is 2 + 2?"]
    with pytest.raises(DataValidationError, match="row 1 \\(id b\\): column 'final' is empty"):
        problems_dataset([table[0], {**table[1], "final": ""}], **names)
    with pytest.raises(DataError, match="column 'problem' \\(problem_column\\) is not in the dataset"):
        problems_dataset(table)
    with pytest.raises(DataError, match="row 0 is a str"):
        problems_dataset(["not a dict"])


# ---------------------------------------------------------------------------------------- prompt format


def test_check_prompt_format():
    with_template = SimpleNamespace(chat_template="{{ messages }}", name_or_path="tok")
    without = SimpleNamespace(chat_template=None, name_or_path="toy-tokenizer")
    check_prompt_format(with_template, DataConfig(dataset_name="x.jsonl"))
    check_prompt_format(without, DataConfig(dataset_name="x.jsonl", prompt_format="plain"))
    with pytest.raises(ValueError, match="'toy-tokenizer' has none; set prompt_format: plain"):
        check_prompt_format(without, DataConfig(dataset_name="x.jsonl"))


# ---------------------------------------------------------------------------------------- shipped files


@pytest.mark.parametrize("name, n", [("math500", 500), ("aime2024", 30)])
def test_shipped_eval_files_load_with_solutions(name, n, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a built-in name, found from any folder
    ds = load_problems(DataConfig(dataset_name=name, id_column="id"))
    assert len(ds) == n
    assert all(s for s in ds["solution"])
    assert len(set(ds["problem_id"])) == n


def test_a_local_file_wins_over_a_builtin_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "math500").mkdir()
    write_jsonl(tmp_path / "math500" / "mine.jsonl", rows(2))
    assert len(load_problems(DataConfig(dataset_name="math500"))) == 2


def test_shipped_dapo_loads_without_solutions():
    ds = load_problems(DataConfig(dataset_name="dapo_math_17k", id_column="id", max_samples=200))
    assert len(ds) == 200
    assert ds["solution"] == [None] * 200
    assert ds[0]["problem_id"] == "dapo17k-00000" and ds[0]["answer"] == "34"


def test_unreachable_hub_dataset_is_a_data_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="could not be loaded from the hub"):
        load_problems(DataConfig(dataset_name="antisd-test-org/no-such-dataset"))
