"""Code training problems for ``antisd train``: a prompt, tests and an optional reference solution per row.

``load_code_problems(DataConfig)`` and ``code_problems_dataset(table, **fields)`` return a
``datasets.Dataset`` with the columns

    prompt      chat messages whose user message is EvalPlus's instruction and the problem in a fenced
                block (``chat_task_text``; the maths default system prompt is dropped), or the plain
                problem text (``prompt_format: plain``, completion style)
    tests       the task as one canonical JSON string (``antisd.rewards.code.spec.parse_tests``), which
                ``antisd.rewards.CodeReward`` turns into a ``CodeTask`` (``task_from_spec``)
    solution    the reference solution, or None: the teacher's ``dataset`` context source
    problem_id  the id column as a string, else ``p-`` + a hash of the problem text

There is no ``answer`` column: a program has no final answer line to show, so the teacher's
answer-only context source never fires on code; the order is a passing sibling rollout, then the
reference solution, then none (masked).

Tests cells (``DataConfig.tests_column``, default ``tests``): a list of assert statements or
EvalPlus-style inputs (``antisd.rewards.code.spec``; the reference solution is optional with assertions
and required with inputs). A row with no tests, a cell of another shape, an assertion that does not parse, inputs that are
not lists of argument lists, inputs without a reference: one ``DataValidationError`` naming the
rows (``antisd train`` exits with code 2 before anything is written). Whether each reference
passes its own tests is found by running them (``CodeReward.prepare``; ``antisd train`` does it
before the model loads): such rows are dropped, counted and logged.

Built-in ``mbpp_train`` (594 MBPP tasks disjoint from MBPP+ and HumanEval+, ``antisd.data.code_benchmarks``):
problem = the MBPP+ prompt layout (the task text and its first assertion in a docstring), tests =
``test_list`` (``challenge_test_list`` as plus tests, ``test_setup_code``), solution = the MBPP
reference program, id = ``mbpp-train-N``. A local file or folder of that name wins.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import datasets

from antisd.data.code_benchmarks import load_tasks, read_rows
from antisd.rewards.code.spec import parse_tests
from antisd.rewards.code.tasks import AssertSuite
from antisd.data.config import DEFAULT_SYSTEM_PROMPT, DataConfig
from antisd.data.problems import (
    describe_cell,
    make_prompt,
    raise_row_errors,
    row_label,
    select_rows,
    solution_text,
    unique_id,
)
from antisd.data.tables import Rows, column_values, in_memory_table, load_raw, split_rows

logger = logging.getLogger(__name__)

CODE_BUILTINS = ("mbpp_train",)
EVALPLUS_INSTRUCTION = ("Please provide a self-contained Python script that solves the following problem in a "
                        "markdown code block:")
"""EvalPlus's instruction for chat models (evalplus v0.3.1, ``make_raw_chat_prompt``)."""


def is_code_builtin(name: str) -> bool:
    """Whether `name` is a built-in code dataset (and no local file or folder of that name exists)."""
    return name in CODE_BUILTINS and not Path(name).expanduser().exists()


def chat_task_text(problem: str) -> str:
    """The user message of a code task for chat models, as EvalPlus writes it: the instruction, then the
    problem in a fenced block."""
    return f"{EVALPLUS_INSTRUCTION}\n```\n{problem.strip()}\n```\n"


def mbpp_prompt(text: str, example: str) -> str:
    """The MBPP+ prompt layout: the task text and one example assertion in a docstring."""
    return f'"""\n{text.strip()}\n{example.strip()}\n"""\n'


def builtin_rows(name: str) -> Rows:
    """The rows of built-in code dataset `name` in the layout above (id, problem, tests, solution)."""
    if name not in CODE_BUILTINS:
        raise ValueError(f"no built-in code dataset named {name!r}; expected one of {', '.join(CODE_BUILTINS)}")
    rows = Rows()
    for task, row in zip(load_tasks(name), read_rows(name)):
        assert isinstance(task.base, AssertSuite)
        tests = {"asserts": list(task.base.asserts), "plus_asserts": list(task.plus.asserts) if task.plus else [],
                 "setup_code": task.setup_code}
        rows.append({"id": task.task_id, "problem": mbpp_prompt(row["text"], row["test_list"][0]), "tests": tests,
                     "solution": task.reference})
    return rows


# ---------------------------------------------------------------------------------------- datasets


def code_prompt_config(cfg: DataConfig) -> DataConfig:
    """`cfg` without the maths default system prompt (logged): a code prompt's instruction is in its user
    message (``chat_task_text``); a system prompt set by the user is kept."""
    if cfg.prompt_format == "chat" and cfg.system_prompt == DEFAULT_SYSTEM_PROMPT:
        logger.info("Code data: no system prompt (the maths default asks for \\boxed{}); the user message carries "
                    "EvalPlus's instruction")
        return dataclasses.replace(cfg, system_prompt=None)
    return cfg


def code_prompt(problem: str, cfg: DataConfig) -> str | list[dict[str, str]]:
    """The prompt of a code task: chat messages whose user message is ``chat_task_text(problem)``, or the
    plain problem text (completion style: the completion is appended to it)."""
    return make_prompt(problem if cfg.prompt_format == "plain" else chat_task_text(problem), cfg)


def _features(cfg: DataConfig) -> datasets.Features:
    string = datasets.Value("string")
    prompt = string if cfg.prompt_format == "plain" else datasets.List({"role": string, "content": string})
    return datasets.Features({"prompt": prompt, "tests": string, "solution": string, "problem_id": string})


def map_code_problems(raw: Rows | datasets.Dataset, cfg: DataConfig) -> datasets.Dataset:
    """Canonical code columns (prompt, tests, solution, problem_id) from a raw table; validates every row."""
    cfg = code_prompt_config(cfg)
    problems = column_values(raw, cfg.problem_column, "problem_column")
    tests = column_values(raw, cfg.tests_column, "tests_column")
    ids = column_values(raw, cfg.id_column, "id_column") if cfg.id_column else [None] * len(problems)
    has_solutions = bool(cfg.solution_column) and cfg.solution_column in raw.column_names
    solutions = column_values(raw, cfg.solution_column, "solution_column") if has_solutions else [None] * len(problems)
    rows = select_rows(len(problems), cfg)
    errors: list[str] = []
    out: dict[str, list[Any]] = {"prompt": [], "tests": [], "solution": [], "problem_id": []}
    seen: dict[str, tuple[int, str]] = {}
    for i in rows:
        where = row_label(i, ids[i])
        if not (isinstance(problems[i], str) and problems[i].strip()):
            errors.append(f"{where}: column {cfg.problem_column!r} {describe_cell(problems[i])}; expected a non-empty "
                          "problem text")
            continue
        if not (solutions[i] is None or isinstance(solutions[i], str)):
            errors.append(f"{where}: column {cfg.solution_column!r} is a {type(solutions[i]).__name__}; "
                          "expected a reference solution (Python source) or nothing")
            continue
        reference = solution_text(solutions[i])
        try:
            spec = parse_tests(tests[i], reference, problems[i] if cfg.prompt_format == "plain" else "")
        except ValueError as exc:
            errors.append(f"{where}: column {cfg.tests_column!r} {exc}")
            continue
        pid = unique_id(i, where, problems[i], ids[i], seen, errors)
        if pid is None:
            continue
        out["prompt"].append(code_prompt(problems[i], cfg))
        out["tests"].append(spec)
        out["solution"].append(reference)
        out["problem_id"].append(pid)
    raise_row_errors(errors, rows, cfg, f"tests_column={cfg.tests_column!r}")
    return datasets.Dataset.from_dict(out, features=_features(cfg))


def builtin_config(cfg: DataConfig) -> DataConfig:
    """`cfg` with the columns of a built-in code dataset (id, problem, tests, solution)."""
    return dataclasses.replace(cfg, problem_column="problem", tests_column="tests", solution_column="solution",
                               id_column="id")


def load_code_raw(cfg: DataConfig) -> tuple[Rows | datasets.Dataset, DataConfig]:
    """(raw table, the config its columns are read with): a built-in code dataset or ``antisd.data.problems.load_raw``."""
    if is_code_builtin(cfg.dataset_name):
        logger.info("Built-in code dataset %s (shipped with antisd)", cfg.dataset_name)
        return Rows(split_rows(builtin_rows(cfg.dataset_name), cfg.dataset_split, cfg.dataset_name)), builtin_config(cfg)
    return load_raw(cfg), cfg


def load_code_problems(cfg: DataConfig) -> datasets.Dataset:
    """Load, map to the canonical code columns and validate (the module docstring)."""
    raw, cfg = load_code_raw(cfg)
    ds = map_code_problems(raw, cfg)
    logger.info("Loaded %d code tasks from %s (%d with a reference solution, prompt format %s)", len(ds),
                cfg.dataset_name, sum(s is not None for s in ds["solution"]), cfg.prompt_format)
    return ds


def code_problems_dataset(data: Any, **fields: Any) -> datasets.Dataset:
    """The trainer's code dataset from a path or built-in name, a list of dicts, a pandas DataFrame or a
    ``datasets.Dataset``; `fields` are ``DataConfig`` fields (``tests_column="checks"``, ...)."""
    if isinstance(data, str | Path):
        return load_code_problems(DataConfig(dataset_name=str(data), **fields))
    cfg = DataConfig(dataset_name=fields.pop("dataset_name", f"<{type(data).__name__}>"), **fields)
    return map_code_problems(in_memory_table(data), cfg)
