"""Training problems: load a math dataset, map it to the trainer's columns, validate every row.

``load_problems(DataConfig(...))`` returns a ``datasets.Dataset`` with exactly these columns:

    prompt      chat: a list of messages ``[{"role": "system", ...}?, {"role": "user", ...}]``
                plain: the problem text as is (for tokenizers without a chat template)
    answer      the final answer, a non-empty string (numbers are converted with ``str``)
    solution    a worked solution (string) or None (DAPO-Math-17k has none)
    problem_id  the id column as a string; without one, ``p-`` + 12 hex digits of the problem
                text's SHA-1, so that a problem repeated in the data keeps one id

``DataConfig``'s column fields name the source's columns; the trainer reads the canonical ``answer``,
``solution`` and ``problem_id`` (the defaults of AntiSDConfig's ``answer_column``, ``solution_column``,
``problem_id_column``, which ``antisd train`` always uses); TRL applies the tokenizer's chat template to
``prompt``. Other columns of the source are dropped.

Sources: a local ``.jsonl``/``.json`` (optionally ``.gz``), ``.parquet`` or ``.csv`` file, a
directory of files of one of those types, a built-in name (``dapo_math_17k``, ``math500``, ...:
the maths data shipped with antisd, ``antisd.data.shipped``; a local file of that name wins), or a
Hugging Face hub name (``load_dataset(name, dataset_config, split=...)``). JSON files are read by
``antisd.cli.validate.read_json_rows`` (a malformed line is reported with its number, bytes that are
not UTF-8 and empty files are refused); reading a source is ``antisd.data.tables``, the settings are
``antisd.data.config.DataConfig``. The hub's BytedTsinghua-SIA/DAPO-Math-17k is in verl's
nested format (``prompt`` holds chat messages with DAPO's own instruction,
``reward_model.ground_truth`` the answer; every prompt is repeated many times): convert it with
``antisd data convert-verl`` (``antisd.data.shipped.convert_verl``) or use ``dapo_math_17k``.

In Python, ``problems_dataset(table, problem_column=..., answer_column=...)`` does the same for a
list of dicts, a pandas DataFrame, a ``datasets.Dataset`` or a path: the trainer's dataset.

Every selected row is validated before any model loads: a missing, empty or wrongly typed
problem, answer, solution or id, or an id used twice, raises one ``DataValidationError`` (one
line) that lists the first 10 bad rows (row index in the source, id when there is one) and the
total count.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
from pathlib import Path
from typing import Any

import datasets

from antisd.data.config import DEFAULT_SYSTEM_PROMPT, DataConfig  # noqa: F401 - DEFAULT_SYSTEM_PROMPT: re-exported
from antisd.data.tables import (  # noqa: F401 - DataError, Rows, load_raw: re-exported (their long-standing home)
    DataError,
    DataValidationError,
    Rows,
    column_values,
    in_memory_table,
    load_raw,
)

logger = logging.getLogger(__name__)

MAX_LISTED_ERRORS = 10


# ---------------------------------------------------------------------------------------- mapping


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _text(value: Any) -> str | None:
    """A cell as non-empty text: numbers become strings (3.0 -> "3"); None, NaN, "", bools, lists -> None."""
    if isinstance(value, bool) or _missing(value):
        return None
    if isinstance(value, float):
        value = int(value) if value.is_integer() else value
    if isinstance(value, int | float):
        return str(value)
    return value if isinstance(value, str) and value.strip() else None


def _id(value: Any) -> str | None:
    """An id cell as a string: a non-empty string or an integer (bools, floats, lists -> None)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    return value if isinstance(value, str) and value.strip() else None


def text_id(problem: str) -> str:
    """Stable id of a problem text: ``p-`` + 12 hex digits of its SHA-1."""
    return "p-" + hashlib.sha1(problem.encode("utf-8")).hexdigest()[:12]


def describe_cell(value: Any) -> str:
    """How a bad cell reads in an error message: ``is missing``, ``is empty``, ``is a list ([1, 2])``."""
    if _missing(value):
        return "is missing"
    if isinstance(value, str):
        return "is empty"
    return f"is a {type(value).__name__} ({str(value)[:40]!r})"


def select_rows(n: int, cfg: DataConfig) -> list[int]:
    """The row indices to use: file order, or shuffled by ``shuffle_seed``; the first ``max_samples``."""
    order = list(range(n))
    if cfg.shuffle_seed is not None:
        random.Random(cfg.shuffle_seed).shuffle(order)
    return order[: cfg.max_samples] if cfg.max_samples is not None else order


def make_prompt(problem: str, cfg: DataConfig) -> str | list[dict[str, str]]:
    """The prompt for one problem: chat messages [system?, user] or the plain problem text."""
    if cfg.prompt_format == "plain":
        return problem
    messages = [{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []
    return messages + [{"role": "user", "content": problem}]


def row_errors(where: str, problem: Any, answer: Any, solution: Any, rid: Any, cfg: DataConfig) -> list[str]:
    """What is wrong with one row's cells, one message each naming `where` and the column (empty: nothing)."""
    errors = []
    if not (isinstance(problem, str) and problem.strip()):
        errors.append(f"{where}: column {cfg.problem_column!r} {describe_cell(problem)}; expected a non-empty problem text")
    if _text(answer) is None:
        expected = "a non-empty final answer" if _missing(answer) or isinstance(answer, str) else "a string or number"
        errors.append(f"{where}: column {cfg.answer_column!r} {describe_cell(answer)}; expected {expected}")
    if not (_missing(solution) or isinstance(solution, str)):
        errors.append(f"{where}: column {cfg.solution_column!r} {describe_cell(solution)}; expected a worked solution "
                      "text (or nothing)")
    if cfg.id_column and _id(rid) is None:
        expected = "a problem id" if _missing(rid) or isinstance(rid, str) else "a string or integer id"
        errors.append(f"{where}: column {cfg.id_column!r} {describe_cell(rid)}; expected {expected}")
    return errors


def map_problems(raw: Rows | datasets.Dataset, cfg: DataConfig) -> datasets.Dataset:
    """Canonical columns (prompt, answer, solution, problem_id) from a raw table; validates rows."""
    problems = column_values(raw, cfg.problem_column, "problem_column")
    answers = column_values(raw, cfg.answer_column, "answer_column")
    ids = column_values(raw, cfg.id_column, "id_column") if cfg.id_column else [None] * len(problems)
    if cfg.solution_column and cfg.solution_column in raw.column_names:
        solutions = column_values(raw, cfg.solution_column, "solution_column")
    else:
        solutions = [None] * len(problems)
        logger.info("No %r column: solutions are None (the teacher falls back to the answer)", cfg.solution_column)

    rows = select_rows(len(problems), cfg)
    errors: list[str] = []
    out: dict[str, list[Any]] = {"prompt": [], "answer": [], "solution": [], "problem_id": []}
    seen: dict[str, tuple[int, str]] = {}
    for i in rows:
        where = row_label(i, ids[i])
        found = row_errors(where, problems[i], answers[i], solutions[i], ids[i], cfg)
        errors.extend(found)
        pid = None if found else unique_id(i, where, problems[i], ids[i], seen, errors)
        if pid is None:
            continue
        out["prompt"].append(make_prompt(problems[i], cfg))
        out["answer"].append(_text(answers[i]))
        out["solution"].append(solution_text(solutions[i]))
        out["problem_id"].append(pid)
    raise_row_errors(errors, rows, cfg, f"answer_column={cfg.answer_column!r}")
    return datasets.Dataset.from_dict(out, features=_features(cfg))


def row_label(i: int, rid: Any) -> str:
    """``row i`` or ``row i (id X)``: how error messages name a row."""
    pid = _id(rid)
    return f"row {i}" + (f" (id {pid})" if pid is not None else "")


def solution_text(value: Any) -> str | None:
    """A solution cell as text, or None when missing or blank (checked by ``row_errors`` first)."""
    return None if _missing(value) or not value.strip() else value


def unique_id(i: int, where: str, problem: str, rid: Any, seen: dict[str, tuple[int, str]],
              errors: list[str]) -> str | None:
    """The problem id of row `i` (the id cell, else ``text_id``), recorded in `seen`; None (and a message
    appended to `errors`) when an id cell repeats an earlier row's id."""
    pid = _id(rid)
    if pid is not None and pid in seen:
        same = "the same problem" if seen[pid][1] == problem else "a different problem"
        errors.append(f"{where}: id {pid!r} is also row {seen[pid][0]} ({same}); expected unique ids")
        return None
    pid = pid if pid is not None else text_id(problem)
    seen.setdefault(pid, (i, problem))
    return pid


def raise_row_errors(errors: list[str], rows: list[int], cfg: DataConfig, columns: str) -> None:
    """One ``DataValidationError`` listing the first ``MAX_LISTED_ERRORS`` of `errors` and their count (or for
    a selection without rows); nothing when all is well. `columns` names the mapped columns in the message."""
    if errors:
        listed = "; ".join(errors[:MAX_LISTED_ERRORS])
        more = f"; ... and {len(errors) - MAX_LISTED_ERRORS} more" if len(errors) > MAX_LISTED_ERRORS else ""
        raise DataValidationError(
            f"{len(errors)} bad row(s) in {cfg.dataset_name} (problem_column={cfg.problem_column!r}, "
            f"{columns}): {listed}{more}"
        )
    if not rows:
        raise DataValidationError(f"{cfg.dataset_name} has no rows (split {cfg.dataset_split!r})")


def _features(cfg: DataConfig) -> datasets.Features:
    string = datasets.Value("string")
    prompt = string if cfg.prompt_format == "plain" else datasets.List({"role": string, "content": string})
    return datasets.Features({"prompt": prompt, "answer": string, "solution": string, "problem_id": string})


def load_problems(cfg: DataConfig, raw: Rows | datasets.Dataset | None = None) -> datasets.Dataset:
    """Load (unless the `raw` table of ``load_raw`` is given), map to the canonical columns and validate.
    See the module docstring."""
    raw = load_raw(cfg) if raw is None else raw
    ds = map_problems(raw, cfg)
    n_sol = sum(s is not None for s in ds["solution"])
    logger.info("Loaded %d problems from %s (%d with a worked solution, prompt format %s)",
                len(ds), cfg.dataset_name, n_sol, cfg.prompt_format)
    return ds




def problems_dataset(data: Any, **fields: Any) -> datasets.Dataset:
    """The trainer's dataset (prompt, answer, solution, problem_id) from a problem table.

    `data`: a path or built-in name (as ``--dataset_name``), a list of dicts, a pandas
    DataFrame or a ``datasets.Dataset``. `fields`: any ``DataConfig`` field, e.g.
    ``problem_column="question"``, ``answer_column="final"``, ``id_column="uid"``,
    ``prompt_format="plain"``. The same validation as ``antisd train``: a bad row raises
    ``DataValidationError`` naming it; a missing column, ``DataError``.
    """
    if isinstance(data, str | Path):
        return load_problems(DataConfig(dataset_name=str(data), **fields))
    cfg = DataConfig(dataset_name=fields.pop("dataset_name", f"<{type(data).__name__}>"), **fields)
    ds = map_problems(in_memory_table(data), cfg)
    logger.info("Prepared %d problems from %s (prompt format %s)", len(ds), cfg.dataset_name, cfg.prompt_format)
    return ds


def check_prompt_format(tokenizer: Any, cfg: DataConfig) -> None:
    """Raise when chat prompts meet a tokenizer without a chat template (TRL would fail later)."""
    if cfg.prompt_format == "chat" and not getattr(tokenizer, "chat_template", None):
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        raise DataError(
            f"prompt_format='chat' needs a tokenizer with a chat template, and {name!r} has none; "
            "set prompt_format: plain (the prompt is then the problem text as is) or use a tokenizer with a chat template"
        )
