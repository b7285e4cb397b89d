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

Sources: a local ``.jsonl``/``.json``/``.parquet``/``.csv`` file, a directory of files of one
of those types, or a Hugging Face hub name (``load_dataset(name, dataset_config, split=...)``).
A local deduplicated copy (e.g. ../shared/data/dapo_math_17k.jsonl) (columns id, problem, answer) is the
deduplicated DAPO-Math-17k. The hub's BytedTsinghua-SIA/DAPO-Math-17k is in verl's nested
format (``prompt`` holds chat messages with DAPO's own instruction, ``reward_model.ground_truth``
the answer; every prompt is repeated many times) and is not a flat problem/answer table.

Every selected row is validated before any model loads: a missing or empty problem or answer,
or one id used for two different problems, raises one ``DataValidationError`` that lists the
first 10 bad rows (row index in the source, id when there is one) and the total count.
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
        metadata={"help": "Hub dataset name, or a local .jsonl/.json/.parquet/.csv file, or a directory of such files."},
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


class DataError(ValueError):
    """The data cannot be used as configured: a missing file or column, a tokenizer mismatch."""


class DataValidationError(DataError):
    """Bad rows in the training data; the message lists them."""


# ---------------------------------------------------------------------------------------- loading


def _local_files(path: Path) -> tuple[str, list[str]]:
    """(builder, files) for a local file or a directory of files of one type."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in BUILDERS and p.is_file())
        if not files:
            raise DataError(f"dataset_name={str(path)!r} is a directory with no {sorted(BUILDERS)} files")
        builders = {BUILDERS[p.suffix] for p in files}
        if len(builders) > 1:
            raise DataError(f"dataset_name={str(path)!r} mixes file types {sorted({p.suffix for p in files})}; keep one type")
        return builders.pop(), [str(p) for p in files]
    if path.suffix not in BUILDERS:
        raise DataError(f"dataset_name={str(path)!r}: unsupported file type {path.suffix!r}; use one of {sorted(BUILDERS)}")
    return BUILDERS[path.suffix], [str(path)]


def _looks_local(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or Path(name).suffix in BUILDERS


def load_raw(cfg: DataConfig) -> datasets.Dataset:
    """The source table, unmapped: a local file/directory or a hub dataset."""
    path = Path(cfg.dataset_name).expanduser()
    if path.exists():
        builder, files = _local_files(path)
        if not cfg.dataset_split.startswith("train"):
            raise DataError(f"dataset_split={cfg.dataset_split!r}: local files have one split, 'train' (slices like 'train[:100]' work)")
        logger.info("Loading %d %s file(s) from %s", len(files), builder, path)
        return datasets.load_dataset(builder, data_files=files, split=cfg.dataset_split)
    if _looks_local(cfg.dataset_name):
        raise DataError(f"dataset_name={cfg.dataset_name!r}: no such file or directory")
    logger.info("Loading hub dataset %s (config %s, split %s)", cfg.dataset_name, cfg.dataset_config, cfg.dataset_split)
    try:
        return datasets.load_dataset(cfg.dataset_name, cfg.dataset_config, split=cfg.dataset_split)
    except Exception as e:  # hub errors have many types (not found, offline, gated, bad config or split)
        raise DataError(
            f"dataset_name={cfg.dataset_name!r} could not be loaded from the hub ({type(e).__name__}: "
            f"{' '.join(str(e).split())[:300]}); with HF_HUB_OFFLINE=1 only cached datasets load"
        ) from e


# ---------------------------------------------------------------------------------------- mapping


def _column(ds: datasets.Dataset, name: str, field_name: str) -> list[Any]:
    if name not in ds.column_names:
        raise DataError(
            f"column {name!r} ({field_name}) is not in the dataset; its columns are {ds.column_names}. "
            f"Set {field_name} to one of them."
        )
    if isinstance(ds.features[name], datasets.Value):
        return ds.with_format("arrow")[name].to_pylist()  # fast path: plain arrow values
    return list(ds[name])  # decoded by the feature (a JSON column of mixed types, nested values)


def _text(value: Any) -> str | None:
    """A cell as non-empty text: numbers become strings (3.0 -> "3"); None, NaN, "" -> None."""
    if isinstance(value, float):
        if math.isnan(value):
            return None
        value = int(value) if value.is_integer() else value
    if isinstance(value, int | float):
        return str(value)
    return value if isinstance(value, str) and value.strip() else None


def text_id(problem: str) -> str:
    """Stable id of a problem text: ``p-`` + 12 hex digits of its SHA-1."""
    return "p-" + hashlib.sha1(problem.encode("utf-8")).hexdigest()[:12]


def _describe(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "is missing"
    if isinstance(value, str):
        return "is empty"
    return f"is a {type(value).__name__} ({str(value)[:40]!r})"


def _select(n: int, cfg: DataConfig) -> list[int]:
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


def map_problems(raw: datasets.Dataset, cfg: DataConfig) -> datasets.Dataset:
    """Canonical columns (prompt, answer, solution, problem_id) from a raw table; validates rows."""
    problems = _column(raw, cfg.problem_column, "problem_column")
    answers = _column(raw, cfg.answer_column, "answer_column")
    ids = _column(raw, cfg.id_column, "id_column") if cfg.id_column else None
    if cfg.solution_column and cfg.solution_column in raw.column_names:
        solutions = _column(raw, cfg.solution_column, "solution_column")
    else:
        solutions = None
        logger.info("No %r column: solutions are None (the teacher falls back to the answer)", cfg.solution_column)

    rows = _select(len(problems), cfg)
    errors: list[str] = []
    out: dict[str, list[Any]] = {"prompt": [], "answer": [], "solution": [], "problem_id": []}
    seen: dict[str, tuple[int, str]] = {}
    for i in rows:
        rid = None if ids is None or ids[i] is None else str(ids[i])
        where = f"row {i}" + (f" (id {rid})" if rid is not None else "")
        problem = problems[i] if isinstance(problems[i], str) and problems[i].strip() else None
        answer = _text(answers[i])
        if problem is None:
            errors.append(f"{where}: column {cfg.problem_column!r} {_describe(problems[i])}; expected a non-empty problem text")
        if answer is None:
            errors.append(f"{where}: column {cfg.answer_column!r} {_describe(answers[i])}; expected a non-empty final answer")
        if ids is not None and rid is None:
            errors.append(f"{where}: column {cfg.id_column!r} is missing; expected a problem id")
        if problem is None or answer is None or (ids is not None and rid is None):
            continue
        pid = rid if rid is not None else text_id(problem)
        if pid in seen and seen[pid][1] != problem:
            errors.append(f"{where}: id {pid!r} is also row {seen[pid][0]} with a different problem; expected unique ids")
            continue
        seen.setdefault(pid, (i, problem))
        out["prompt"].append(make_prompt(problem, cfg))
        out["answer"].append(answer)
        out["solution"].append(_text(solutions[i]) if solutions is not None else None)
        out["problem_id"].append(pid)
    if errors:
        listed = "\n  ".join(errors[:MAX_LISTED_ERRORS])
        more = f"\n  ... and {len(errors) - MAX_LISTED_ERRORS} more" if len(errors) > MAX_LISTED_ERRORS else ""
        raise DataValidationError(
            f"{len(errors)} bad row(s) in {cfg.dataset_name} (problem_column={cfg.problem_column!r}, "
            f"answer_column={cfg.answer_column!r}):\n  {listed}{more}"
        )
    if not rows:
        raise DataValidationError(f"{cfg.dataset_name} has no rows (split {cfg.dataset_split!r})")
    return datasets.Dataset.from_dict(out, features=_features(cfg))


def _features(cfg: DataConfig) -> datasets.Features:
    string = datasets.Value("string")
    prompt = string if cfg.prompt_format == "plain" else datasets.List({"role": string, "content": string})
    return datasets.Features({"prompt": prompt, "answer": string, "solution": string, "problem_id": string})


def load_problems(cfg: DataConfig) -> datasets.Dataset:
    """Load, map to the canonical columns and validate. See the module docstring."""
    raw = load_raw(cfg)
    ds = map_problems(raw, cfg)
    n_sol = sum(s is not None for s in ds["solution"])
    logger.info("Loaded %d problems from %s (%d with a worked solution, prompt format %s)",
                len(ds), cfg.dataset_name, n_sol, cfg.prompt_format)
    return ds


def check_prompt_format(tokenizer: Any, cfg: DataConfig) -> None:
    """Raise when chat prompts meet a tokenizer without a chat template (TRL would fail later)."""
    if cfg.prompt_format == "chat" and not getattr(tokenizer, "chat_template", None):
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        raise DataError(
            f"prompt_format='chat' needs a tokenizer with a chat template, and {name!r} has none; "
            "set prompt_format: plain (the prompt is then the problem text as is) or use a tokenizer with a chat template"
        )
