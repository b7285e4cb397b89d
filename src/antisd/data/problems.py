"""Training problems: load a math dataset, map it to the trainer's columns, validate every row.

``load_problems(DataConfig(...))`` returns a ``datasets.Dataset`` with exactly these columns:

    prompt      chat: a list of messages ``[{"role": "system", ...}?, {"role": "user", ...}]``
                plain: the problem text as is (for tokenizers without a chat template)
    answer      the final answer, a non-empty string (numbers are converted with ``str``)
    solution    a worked solution (string) or None (DAPO-Math-17k has none)
    problem_id  the id column as a string; without one, ``p-`` + 12 hex digits of the problem
                text's SHA-1, so that a problem repeated in the data keeps one id

The trainer reads ``answer``, ``solution`` and ``problem_id`` (AntiSDConfig's
``answer_column``, ``solution_column``, ``problem_id_column``); TRL applies the tokenizer's
chat template to ``prompt``. Other columns of the source are dropped.

Sources: a local ``.jsonl``/``.json`` (optionally ``.gz``), ``.parquet`` or ``.csv`` file, a
directory of files of one of those types, a built-in name (``dapo_math_17k``, ``math500``, ...:
the maths data shipped with antisd, ``antisd.data.shipped``; a local file of that name wins), or a
Hugging Face hub name (``load_dataset(name, dataset_config, split=...)``). JSON files are read by
``antisd.cli.validate.read_json_rows`` (a malformed line is reported with its number, bytes that are
not UTF-8 and empty files are refused). The hub's BytedTsinghua-SIA/DAPO-Math-17k is in verl's
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import datasets

from antisd.data.shipped import MATH_FILES, builtin_dataset
from antisd.cli.validate import InputError, looks_local, one_line, read_json_rows

logger = logging.getLogger(__name__)

DEFAULT_SYSTEM_PROMPT = (
    "Please reason step by step, and put your final answer within \\boxed{}."
)
BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
MAX_LISTED_ERRORS = 10


@dataclass
class DataConfig:
    """Where the training problems come from and how they become prompts."""

    dataset_name: str = field(
        metadata={"help": "A local .jsonl/.json (optionally .gz), .parquet or .csv file, a directory of such files, a "
                          "built-in name (dapo_math_17k, math500, gsm8k_test, aime2024, ...: shipped with antisd; "
                          "mbpp_train: 594 Python tasks for the code reward; toyworld: the toy world's problems) or a "
                          "hub dataset name."},
    )
    dataset_config: str | None = field(
        default=None, metadata={"help": "Hub dataset configuration (the `name` of datasets.load_dataset); hub only."},
    )
    dataset_split: str = field(
        default="train",
        metadata={"help": "Split to load, slicing allowed (train[:1000]). Local files have a single split, train."},
    )
    problem_column: str = field(default="problem", metadata={"help": "Column holding the problem text."})
    answer_column: str = field(default="answer", metadata={"help": "Column holding the final answer (numbers become strings)."})
    solution_column: str | None = field(
        default="solution",
        metadata={"help": "Column holding worked solutions; optional: when absent, every solution is None."},
    )
    id_column: str | None = field(
        default=None,
        metadata={"help": "Column holding a problem id (optional; default: a hash of the problem text)."},
    )
    tests_column: str = field(
        default="tests",
        metadata={"help": "Code data: column holding each task's tests (a list of assert statements, or "
                          '{"entry_point", "inputs"} in EvalPlus style; antisd.data.code_problems). Its presence makes '
                          "--reward auto choose the code reward."},
    )
    system_prompt: str | None = field(
        default=DEFAULT_SYSTEM_PROMPT,
        metadata={"help": "System message of chat prompts ('' or null: no system message). Unused by plain prompts."},
    )
    prompt_format: Literal["chat", "plain"] = field(
        default="chat",
        metadata={"help": "chat: a list of messages, templated later by the tokenizer; plain: the problem text as a "
                          "string, for tokenizers without a chat template (the toy world).",
                  "choices": ["chat", "plain"]},
    )
    max_samples: int | None = field(
        default=None, metadata={"help": "Keep only this many problems (after shuffling when shuffle_seed is set)."},
    )
    shuffle_seed: int | None = field(
        default=None, metadata={"help": "Shuffle the problems with this seed before max_samples (default: file order)."},
    )

    def __post_init__(self) -> None:
        if self.prompt_format not in ("chat", "plain"):
            raise ValueError(f"prompt_format={self.prompt_format!r} is not valid; choose one of ['chat', 'plain']")
        if self.max_samples is not None and self.max_samples < 1:
            raise ValueError(f"max_samples={self.max_samples} must be >= 1 (or null for all problems)")
        if not self.dataset_name:
            raise ValueError("dataset_name is empty; give a hub name or a local .jsonl/.json/.parquet/.csv path")
        for name in ("problem_column", "answer_column"):
            if not getattr(self, name):
                raise ValueError(f"{name} is empty; give the name of the dataset column")


class DataError(InputError):
    """The data cannot be used as configured: a missing or unreadable file, a missing column, a tokenizer
    mismatch. An ``antisd.cli.validate.InputError``: the commands report it on one line, exit code 2."""


class DataValidationError(DataError):
    """Bad rows in the training data; the message lists them."""


class Rows(list):
    """The rows of a JSON file (dicts), with the two ``datasets.Dataset`` members antisd uses on a
    raw table: ``column_names`` (every key, in first-seen order) and ``select``. Values stay as the
    file wrote them, so a wrongly typed cell is reported as such instead of failing in Arrow."""

    @property
    def column_names(self) -> list[str]:
        return list(dict.fromkeys(key for row in self for key in row))

    def select(self, indices: Any) -> Rows:
        return Rows(self[i] for i in indices)


# ---------------------------------------------------------------------------------------- loading


def _builder(path: Path) -> str | None:
    """The datasets builder of a data file's name (JSON files may be gzipped), or None."""
    if path.name.endswith(".gz"):
        return "json" if path.name.endswith((".jsonl.gz", ".json.gz")) else None
    return BUILDERS.get(path.suffix)


def _local_files(path: Path) -> tuple[str, list[Path]]:
    """(builder, files) for a local file or a directory of files of one type."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if _builder(p) and p.is_file())
        if not files:
            raise DataError(f"dataset_name={str(path)!r} is a directory with no {sorted(BUILDERS)} files")
        builders = {_builder(p) for p in files}
        if len(builders) > 1:
            raise DataError(f"dataset_name={str(path)!r} mixes file types {sorted({p.suffix for p in files})}; keep one type")
        return builders.pop(), files
    builder = _builder(path)
    if builder is None:
        raise DataError(f"dataset_name={str(path)!r}: unsupported file type {path.suffix!r}; use one of "
                        f"{sorted(BUILDERS)} (JSON optionally .gz)")
    return builder, [path]


def _looks_local(name: str) -> bool:
    return looks_local(name) or _builder(Path(name)) is not None


def _split_rows(rows: list[Any], split: str, name: str) -> list[Any]:
    """``train`` or a slice of it (``train[:100]``, ``train[10:20]``) of a local file's rows."""
    if split == "train":
        return rows
    if not (split.startswith("train[") and split.endswith("]")):
        raise DataError(f"dataset_split={split!r}: local files have one split, 'train' (slices like 'train[:100]' work)")
    parts = split[len("train["):-1].split(":")
    try:
        bounds = [int(p) if p.strip() else None for p in parts]
    except ValueError:
        bounds = []
    if len(bounds) != 2:
        raise DataError(f"dataset_split={split!r} is not a slice; write train[START:STOP], e.g. train[:100]")
    out = rows[bounds[0]:bounds[1]]
    logger.info("%s: split %s keeps %d of %d rows", name, split, len(out), len(rows))
    return out


def _check_csv_rows(path: Path, files: list[Path]) -> None:
    """A DataError naming the file when no CSV file has a row under its header (the csv builder would report
    a library internal: 'Instruction "train" corresponds to no data!')."""
    import csv

    header: list[str] = []
    for f in files:
        try:
            with open(f, encoding="utf-8", errors="replace", newline="") as fh:
                reader = csv.reader(fh)
                header = header or next(reader, [])
                if any(any(cell.strip() for cell in row) for row in reader):
                    return
        except (OSError, csv.Error):
            return  # the builder reports an unreadable or malformed file itself
    if not header:
        raise DataError(f"dataset_name={str(path)!r} is empty; expected a header line of column names and one row "
                        "per problem")
    raise DataError(f"dataset_name={str(path)!r} has a header ({', '.join(header)}) but no rows; expected one row "
                    "per problem under it")


def _load_local(path: Path, cfg: DataConfig) -> Rows | datasets.Dataset:
    builder, files = _local_files(path)
    if builder == "json":
        try:
            rows = Rows(row for f in files for row in read_json_rows(f, what="dataset_name"))
        except InputError as e:
            raise DataError(str(e)) from None
        logger.info("Loaded %d rows from %d JSON file(s) at %s", len(rows), len(files), path)
        return Rows(_split_rows(rows, cfg.dataset_split, str(path)))
    if not cfg.dataset_split.startswith("train"):
        raise DataError(f"dataset_split={cfg.dataset_split!r}: local files have one split, 'train' (slices like 'train[:100]' work)")
    if builder == "csv":
        _check_csv_rows(path, files)
    logger.info("Loading %d %s file(s) from %s", len(files), builder, path)
    try:
        if builder == "parquet":  # a broken file: one DataError, not the builder's own error log
            import pyarrow.parquet as pq

            for f in files:
                pq.read_schema(f)
        return datasets.load_dataset(builder, data_files=[str(f) for f in files], split=cfg.dataset_split)
    except Exception as e:  # the builders raise many types (Arrow, pandas, parser errors)
        raise DataError(f"dataset_name={str(path)!r} cannot be read as {builder}: {type(e).__name__}: "
                        f"{one_line(e)[:300]}") from None


def load_raw(cfg: DataConfig) -> Rows | datasets.Dataset:
    """The source table, unmapped: a local file/directory, a built-in name or a hub dataset.

    JSON files give ``Rows`` (their values as written), other sources a ``datasets.Dataset``."""
    path = Path(cfg.dataset_name).expanduser()
    if not path.exists() and (packaged := builtin_dataset(cfg.dataset_name)) is not None:
        logger.info("Built-in dataset %s: %s (shipped with antisd)", cfg.dataset_name, packaged.name)
        path = packaged
    if path.exists():
        return _load_local(path, cfg)
    if _looks_local(cfg.dataset_name):
        raise DataError(f"dataset_name={cfg.dataset_name!r}: no such file or directory")
    logger.info("Loading hub dataset %s (config %s, split %s)", cfg.dataset_name, cfg.dataset_config, cfg.dataset_split)
    try:
        return datasets.load_dataset(cfg.dataset_name, cfg.dataset_config, split=cfg.dataset_split)
    except Exception as e:  # hub errors have many types (not found, offline, gated, bad config or split)
        raise DataError(
            f"dataset_name={cfg.dataset_name!r} is not a local file or a built-in name ({', '.join(MATH_FILES)}) "
            f"and could not be loaded from the hub ({type(e).__name__}: {one_line(e)[:300]}); with "
            "HF_HUB_OFFLINE=1 only cached datasets load"
        ) from e


# ---------------------------------------------------------------------------------------- mapping


def column_values(ds: Rows | datasets.Dataset, name: str, field_name: str) -> list[Any]:
    """The values of column `name` (the table's own types); DataError naming `field_name` when it is absent."""
    if name not in ds.column_names:
        raise DataError(
            f"column {name!r} ({field_name}) is not in the dataset; its columns are {ds.column_names}. "
            f"Set {field_name} to one of them."
        )
    if isinstance(ds, Rows):
        return [row.get(name) for row in ds]
    if isinstance(ds.features[name], datasets.Value):
        return ds.with_format("arrow")[name].to_pylist()  # fast path: plain arrow values
    return list(ds[name])  # decoded by the feature (a JSON column of mixed types, nested values)


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


def _describe(value: Any) -> str:
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
        errors.append(f"{where}: column {cfg.problem_column!r} {_describe(problem)}; expected a non-empty problem text")
    if _text(answer) is None:
        expected = "a non-empty final answer" if _missing(answer) or isinstance(answer, str) else "a string or number"
        errors.append(f"{where}: column {cfg.answer_column!r} {_describe(answer)}; expected {expected}")
    if not (_missing(solution) or isinstance(solution, str)):
        errors.append(f"{where}: column {cfg.solution_column!r} {_describe(solution)}; expected a worked solution "
                      "text (or nothing)")
    if cfg.id_column and _id(rid) is None:
        expected = "a problem id" if _missing(rid) or isinstance(rid, str) else "a string or integer id"
        errors.append(f"{where}: column {cfg.id_column!r} {_describe(rid)}; expected {expected}")
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


def _in_memory_table(data: Any) -> Rows | datasets.Dataset:
    """A list of dicts, a pandas DataFrame or a datasets.Dataset as a raw table."""
    if isinstance(data, datasets.Dataset):
        return data
    if type(data).__name__ == "DataFrame" and hasattr(data, "to_dict"):
        return Rows(data.to_dict("records"))
    if isinstance(data, list | tuple):
        for i, row in enumerate(data):
            if not isinstance(row, dict):
                raise DataError(f"row {i} is a {type(row).__name__}; expected a dict of column: value")
        return Rows(data)
    raise DataError(f"cannot read problems from a {type(data).__name__}; give a path, a list of dicts, a pandas "
                    "DataFrame or a datasets.Dataset")


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
    ds = map_problems(_in_memory_table(data), cfg)
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
