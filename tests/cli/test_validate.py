"""antisd.cli.validate: every bad input of tests/bad_inputs/ gets one line and exit code 2 from
`antisd train`, `antisd eval` and `antisd pmi`, before anything is written; the checks themselves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from antisd.cli.main import main
from antisd.cli.validate import InputError, check_model, check_tokenizer, looks_local, one_line, read_json_rows

BAD = Path(__file__).resolve().parents[1] / "bad_inputs"

# file in tests/bad_inputs (or a path that does not exist) -> what the one-line error must say
DATA_CASES = {
    "no_such_file.jsonl": "no such file",
    "empty.jsonl": "is empty; expected one JSON object per line",
    "blank_lines.jsonl": "is empty; expected one JSON object per line",
    "truncated_last_line.jsonl": "line 3 is not valid JSON",
    "garbage_line.jsonl": "line 2 is not valid JSON (Expecting value at column 1): 'this is not json'",
    "list_line.jsonl": "line 2 is a JSON list, not an object",
    "latin1.jsonl": "is not UTF-8 text: byte 0xe9 at line 2",
    "array_of_numbers.json": "element 0 of the array is a JSON int, not an object",
    "not_gzip.jsonl.gz": "cannot be read: Not a gzipped file",
    "not_parquet.parquet": "cannot be read as parquet",
    "problems.txt": "unsupported file type '.txt'",
    "answer_column_missing.jsonl": "column 'answer' (answer_column) is not in the dataset; its columns are ['id', "
                                   "'problem', 'final']",
    "problem_is_a_number.jsonl": "row 1 (id q2): column 'problem' is a int ('42'); expected a non-empty problem text",
    "answer_is_a_list.jsonl": "row 1 (id q2): column 'answer' is a list ('[2, 3]'); expected a string or number",
    "answer_is_null.jsonl": "row 1 (id q2): column 'answer' is missing; expected a non-empty final answer",
    "answer_is_empty.jsonl": "row 1 (id q2): column 'answer' is empty; expected a non-empty final answer",
    "duplicate_ids.jsonl": "row 1 (id q1): id 'q1' is also row 0 (a different problem); expected unique ids",
    "header_only.csv": "header_only.csv' has a header (id, problem, answer) but no rows; expected one row per problem",
}
MODEL_CASES = {
    "./no_such_model": "no such local directory",
    "model_is_a_file.bin": "is a file; expected a model folder",
    "model_not_a_model": "is not a model: the folder has no config.json",
    "model_without_tokenizer": "has no tokenizer",
    "model_bad_config": "config.json is not valid JSON",
    "runs/x/checkpoint-5": "checkpoint-5'), and not a built-in name (toyworld, toyworld:<recipe>",
    "no-org/no-such-model": "no such local directory, and the local hub cache (HF_HUB_OFFLINE is set) has no "
                            "config.json for it",
}


def _bad(name: str) -> str:
    return str(BAD / name) if (BAD / name).exists() else name


def _commands(tmp_path: Path, model: str, data: str) -> dict[str, list[str]]:
    return {
        "train": ["train", "--model_name_or_path", model, "--dataset_name", data, "--id_column", "id",
                  "--output_dir", str(tmp_path / "train"), "--bf16", "false", "--report_to", "none"],
        "eval": ["eval", "--models", model, "--benchmarks", f"b={data}?id=id", "--output_dir", str(tmp_path / "eval")],
        "pmi": ["pmi", "--model", model, "--dataset", data, "--id_column", "id", "--output_dir", str(tmp_path / "pmi"),
                "--progress", "false"],
    }


def _assert_one_line_exit_2(commands: dict[str, list[str]], expected: str, tmp_path: Path, capsys) -> None:
    for command, argv in commands.items():
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2, (command, err)
        assert err.startswith(f"antisd {command}: error: ") and err.count("\n") == 1, (command, err)
        assert expected in err, (command, err)
        assert "Traceback" not in err
        assert not (tmp_path / command).exists(), f"antisd {command} wrote its output folder before failing"


@pytest.mark.parametrize("name", sorted(DATA_CASES))
def test_bad_dataset(name, tiny_model_path, tmp_path, capsys):
    _assert_one_line_exit_2(_commands(tmp_path, str(tiny_model_path), _bad(name)), DATA_CASES[name], tmp_path, capsys)


@pytest.mark.parametrize("name", sorted(MODEL_CASES))
def test_bad_model(name, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(BAD)  # the relative names resolve inside the corpus
    commands = _commands(tmp_path, name, str(BAD / "good.jsonl"))
    _assert_one_line_exit_2(commands, MODEL_CASES[name], tmp_path, capsys)


def test_the_corpus_is_what_the_tests_name():
    on_disk = {p.name for p in BAD.iterdir()} - {"good.jsonl", "README.md"}
    named = {n for n in [*DATA_CASES, *MODEL_CASES] if (BAD / n).exists()}
    assert on_disk == named
    assert read_json_rows(BAD / "good.jsonl")[1] == {"id": "q2", "problem": "What is 2 + 3?", "answer": "5"}


# ---------------------------------------------------------------------------------------- the checks


def test_json_rows_accept_arrays_gzip_and_blank_lines(tmp_path):
    import gzip

    rows = [{"a": 1}, {"a": 2}]
    (tmp_path / "a.json").write_text(json.dumps(rows), encoding="utf-8")
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(b'{"a": 1}\n\n{"a": 2}\n'))
    assert read_json_rows(tmp_path / "a.json") == read_json_rows(tmp_path / "b.jsonl.gz") == rows
    (tmp_path / "c.json").write_text('{"a": 1', encoding="utf-8")  # not an array: read as JSON lines
    with pytest.raises(InputError, match="src='.*c.json': line 1 is not valid JSON"):
        read_json_rows(tmp_path / "c.json", what="src")
    (tmp_path / "d.json").write_text('[{"a": 1},', encoding="utf-8")
    with pytest.raises(InputError, match="not valid JSON at line 1 column 11"):
        read_json_rows(tmp_path / "d.json")


def test_model_checks_accept_models_adapters_and_tokenizers(tiny_model_path, tmp_path):
    check_model(str(tiny_model_path))
    check_tokenizer(str(tiny_model_path))
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tiny_model_path)}))
    check_model(str(adapter))  # a PEFT adapter: the tokenizer may come from its base model
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tmp_path / "gone")}))
    with pytest.raises(InputError, match="the adapter's base model"):
        check_model(str(adapter))
    with pytest.raises(InputError, match="tokenizer='.*model_without_tokenizer' is not a tokenizer folder"):
        check_tokenizer(str(BAD / "model_without_tokenizer"))
    with pytest.raises(InputError, match="model_name_or_path is empty"):
        check_model("")


def test_helpers():
    assert one_line("a\n  b\tc ") == "a b c"
    assert looks_local("./m") and looks_local("~/m") and looks_local("data.jsonl.gz") and not looks_local("org/model")
