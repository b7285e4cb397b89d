"""Code training data: tests cells -> task specs -> CodeTasks (antisd.rewards.code.spec), the trainer's code dataset
(antisd.data.code_problems) and the built-in mbpp_train, with the bad rows named."""

from __future__ import annotations

import json

import pytest

from antisd.data.code_benchmarks import load_tasks
from antisd.data.code_problems import CODE_BUILTINS, EVALPLUS_INSTRUCTION, builtin_rows, code_problems_dataset
from antisd.rewards.code.harness import check_program
from antisd.rewards.code.spec import parse_tests, task_from_spec
from antisd.rewards.code.tasks import AssertSuite, IOSuite
from antisd.data.problems import DEFAULT_SYSTEM_PROMPT, DataValidationError

SQUARE = "def square(x):\n    return x * x\n"


@pytest.mark.parametrize("cell", [
    ["assert square(2) == 4", "assert square(3) == 9"],
    "assert square(2) == 4\nassert square(3) == 9\n",
    "    assert square(2) == 4\n    assert square(3) == 9\n",  # indented: dedented
    json.dumps(["assert square(2) == 4", "assert square(3) == 9"]),
    str(["assert square(2) == 4", "assert square(3) == 9"]),  # a Python literal in a CSV cell
    {"asserts": ["assert square(2) == 4", "assert square(3) == 9"]},
])
def test_assertion_cells_of_every_shape_give_the_same_task(cell):
    spec = json.loads(parse_tests(cell, SQUARE))
    assert spec["format"] == "asserts" and spec["asserts"] == ["assert square(2) == 4", "assert square(3) == 9"]
    task = task_from_spec(json.dumps(spec), "t1")
    assert isinstance(task.base, AssertSuite) and task.base.targets == frozenset({"square"})
    assert task.entry_point == "square" and task.reference == SQUARE and task.plus is None


def test_evalplus_cells_and_plus_tests():
    spec = parse_tests({"entry_point": "square", "inputs": [[2], [3]], "plus_inputs": [[10**20]], "atol": 1e-6}, SQUARE)
    task = task_from_spec(spec, "t2")
    assert isinstance(task.base, IOSuite) and task.base.inputs == ([2], [3]) and task.plus.inputs == ([10**20],)
    assert task.atol == 1e-6 and task.entry_point == "square"
    spec = parse_tests({"asserts": ["assert square(2) == 4"], "plus_asserts": ["assert square(-1) == 1"],
                        "setup_code": "import math"}, None, completion_prefix="def square(x):\n")
    task = task_from_spec(spec, "t3")
    assert task.plus.asserts == ("assert square(-1) == 1",) and task.setup_code == "import math"
    assert task.reference == "" and task.completion_prefix == "def square(x):\n"


@pytest.mark.parametrize("cell, reference, expected", [
    (None, SQUARE, "is missing"),
    ("  ", SQUARE, "is missing"),
    ([], SQUARE, "has no tests"),
    ({"asserts": []}, SQUARE, "has no tests"),
    ({"entry_point": "square", "inputs": []}, SQUARE, "has no tests"),
    (["square(2) == 4"], SQUARE, "must be exactly one assert statement"),
    (["assert square(2) =="], SQUARE, "does not parse"),
    ("assert square(2) == 4\nprint(1)\n", SQUARE, "line 2 is not an assert statement"),
    ("assert square(2 ==", SQUARE, "does not parse as Python"),
    ("[1, 2", SQUARE, "neither JSON nor a Python literal"),
    (42, SQUARE, "is a int; expected a list of assert statements"),
    ({"entry_point": "square", "inputs": [[2]]}, None, "need a reference solution"),
    ({"entry_point": "square", "inputs": [2, 3]}, SQUARE, "expected a list of argument lists"),
    ({"entry_point": "square", "inputs": "[[2]]"}, SQUARE, "expected a list of argument lists"),
    ({"entry_point": "not a name", "inputs": [[2]]}, SQUARE, "is not a function name"),
    ({"entry_point": "square", "inputs": [[2]], "atol": -1}, SQUARE, "atol -1 must be a finite number"),
    ({"entry_point": "square", "inputs": [[2]], "expected": [4]}, SQUARE, "unknown key(s) ['expected']"),
    ({"tests": ["assert square(2) == 4"]}, SQUARE, "unknown key(s) ['tests']"),
])
def test_bad_tests_cells_are_refused_with_the_reason(cell, reference, expected):
    with pytest.raises(ValueError) as err:
        parse_tests(cell, reference)
    assert expected in str(err.value)


def test_a_reference_that_does_not_parse_still_gives_a_task():
    """Found later by preparing the task (its reference fails its tests), not a crash here."""
    task = task_from_spec(parse_tests(["assert square(2) == 4"], "def square(x) return x"), "t")
    assert task.base.targets == frozenset({"square"})


def test_builtin_mbpp_train_is_the_harness_tasks():
    rows = builtin_rows("mbpp_train")
    tasks = load_tasks("mbpp_train")
    assert CODE_BUILTINS == ("mbpp_train",) and len(rows) == len(tasks) == 594
    first, task = rows[0], tasks[0]
    assert first["id"] == "mbpp-train-1" and first["solution"] == task.reference
    assert first["problem"].startswith('"""\nWrite a function to find the minimum cost path')
    assert first["problem"].rstrip().endswith('assert min_cost([[1, 2, 3], [4, 8, 2], [1, 5, 3]], 2, 2) == 8\n"""')
    rebuilt = task_from_spec(parse_tests(first["tests"], first["solution"]), first["id"])
    assert rebuilt.suite_key("base") == task.suite_key("base")  # the same cached expected results
    with_plus = next(i for i, t in enumerate(tasks) if t.plus is not None)
    rebuilt = task_from_spec(parse_tests(rows[with_plus]["tests"], rows[with_plus]["solution"]), "x")
    assert rebuilt.suite_key("plus") == tasks[with_plus].suite_key("plus")


def test_the_trainer_dataset_of_mbpp_train():
    ds = code_problems_dataset("mbpp_train", dataset_split="train[:3]")
    assert ds.column_names == ["prompt", "tests", "solution", "problem_id"]
    assert list(ds["problem_id"]) == [row["id"] for row in builtin_rows("mbpp_train")[:3]]
    assert "answer" not in ds.column_names  # the teacher's answer-only source has nothing to show on code
    prompt = ds[0]["prompt"]
    assert [m["role"] for m in prompt] == ["user"]  # the maths default system prompt is dropped
    assert prompt[0]["content"].startswith(EVALPLUS_INSTRUCTION + "\n```\n\"\"\"\nWrite a function")
    system = code_problems_dataset("mbpp_train", max_samples=1, system_prompt="Be brief.")[0]["prompt"][0]
    assert system == {"role": "system", "content": "Be brief."}
    plain = code_problems_dataset("mbpp_train", max_samples=1, prompt_format="plain")[0]
    assert plain["prompt"].startswith('"""\nWrite') and json.loads(plain["tests"])["completion_prefix"] == plain["prompt"]
    assert DEFAULT_SYSTEM_PROMPT not in json.dumps(ds[0])


def test_user_rows_map_with_their_columns():
    rows = [{"uid": 7, "question": "Square a number.", "checks": ["assert square(3) == 9"], "ref": SQUARE},
            {"uid": 8, "question": "Square it.", "checks": {"entry_point": "square", "inputs": [[4]]}, "ref": SQUARE},
            {"uid": 9, "question": "No reference.", "checks": "assert square(5) == 25", "ref": None}]
    ds = code_problems_dataset(rows, problem_column="question", tests_column="checks", solution_column="ref",
                               id_column="uid")
    assert list(ds["problem_id"]) == ["7", "8", "9"] and list(ds["solution"]) == [SQUARE, SQUARE, None]
    assert [json.loads(t)["format"] for t in ds["tests"]] == ["asserts", "io", "asserts"]


def test_bad_rows_are_named_in_one_error():
    rows = [{"id": "a", "problem": "ok", "tests": ["assert f(1) == 1"]},
            {"id": "b", "problem": "no tests", "tests": []},
            {"id": "c", "problem": "", "tests": ["assert f(1) == 1"]},
            {"id": "d", "problem": "io without a reference", "tests": {"entry_point": "f", "inputs": [[1]]}},
            {"id": "a", "problem": "again", "tests": ["assert f(1) == 1"]},
            {"id": "e", "problem": "bad solution", "tests": ["assert f(1) == 1"], "solution": 3}]
    with pytest.raises(DataValidationError) as err:
        code_problems_dataset(rows, id_column="id")
    message = str(err.value)
    assert "\n" not in message and message.startswith("5 bad row(s) in <list>")
    for part in ("row 1 (id b): column 'tests' has no tests", "row 2 (id c): column 'problem' is empty",
                 "row 3 (id d): column 'tests' EvalPlus-style inputs need a reference solution",
                 "row 4 (id a): id 'a' is also row 0", "row 5 (id e): column 'solution' is a int"):
        assert part in message


def test_a_table_without_the_tests_column_names_it():
    from antisd.data.problems import DataError

    with pytest.raises(DataError, match="column 'tests' \\(tests_column\\) is not in the dataset"):
        code_problems_dataset([{"problem": "p", "answer": "1"}])


def test_tasks_without_a_reference_take_the_assertions_as_written(executor, harness_config):
    task = task_from_spec(parse_tests(["assert square(2) == 4", "assert square(3) == 9"], None), "t")
    assert check_program(task, SQUARE, executor, harness_config).passed()
    wrong = check_program(task, "def square(x):\n    return 4\n", executor, harness_config)
    assert not wrong.passed() and wrong.base.n_passed == 1 and wrong.base.n_tests == 2
