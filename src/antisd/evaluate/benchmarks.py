"""Benchmarks: the presets, ``NAME=SOURCE?key=value`` specs, and loading their problems.

A preset (``aime24``, ``math500``, ...) reads the copy shipped with antisd (``antisd.data.shipped``;
provenance in ``antisd/resources/data/SOURCES.md``), offline and from any folder, unless
``data_dir`` (``$ANTISD_DATA_DIR``) holds a file of the same name (``aime2024.jsonl`` or
``.jsonl.gz``). The hub datasets the presets were built from stay reachable as
``NAME=HUB_NAME?like=PRESET`` (the preset's hub columns).

The code presets ``humaneval_plus`` and ``mbpp_plus`` (``CODE_PRESETS``; ``kind="code"``) read the
EvalPlus data shipped with antisd (``antisd.data.code_benchmarks``) and are run by ``antisd.evaluate.code``;
their only option is ``k`` (``mbpp_plus?k=4``).
"""

from __future__ import annotations

import dataclasses
import logging
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from antisd.data.problems import DEFAULT_SYSTEM_PROMPT, DataConfig, DataError, Rows, load_raw, map_problems

logger = logging.getLogger("antisd.evaluate")  # one logger name for every submodule of the package

DATA_DIR_ENV = "ANTISD_DATA_DIR"
PAPER_BENCHMARKS = ("aime24", "aime25", "aime26", "hmmt25", "minerva")
GSM8K_FINAL_COLUMN = "_gsm8k_final_answer"
_NAME_RE = re.compile(r"^[A-Za-z0-9._-]+$")


class EvalError(ValueError):
    """A usage error found before or instead of generation (mixed settings, bad spec)."""


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: where its problems live and how its columns map to problem/answer/id."""

    name: str
    source: str  # hub dataset name, or a local .jsonl/.json/.parquet/.csv file or directory
    split: str = "train"
    config: str | None = None
    problem_column: str = "problem"
    answer_column: str = "answer"
    id_column: str | None = None
    solution_column: str | None = "solution"
    answer_format: Literal["plain", "gsm8k"] = "plain"  # gsm8k: the answer is the text after "####"
    k: int = 4  # samples per problem unless EvalConfig.n_samples says otherwise
    kind: Literal["math", "code"] = "math"  # code: a CODE_PRESETS benchmark, scored by running programs


@dataclass(frozen=True)
class Preset:
    hub: Benchmark  # the usual hub dataset and its columns (NAME=HUB_NAME?like=PRESET)
    data: str  # the shipped file (an antisd.data.shipped name): columns id, problem, answer[, solution]


PRESETS: dict[str, Preset] = {
    "aime24": Preset(Benchmark("aime24", "HuggingFaceH4/aime_2024", "train", id_column="id", k=32), "aime2024"),
    "aime25": Preset(Benchmark("aime25", "MathArena/aime_2025", "train", id_column="problem_idx",
                               solution_column=None, k=32), "aime2025"),
    "aime26": Preset(Benchmark("aime26", "math-ai/aime26", "test", id_column="id", solution_column=None, k=32),
                     "aime2026"),
    "hmmt25": Preset(Benchmark("hmmt25", "MathArena/hmmt_feb_2025", "train", id_column="problem_idx",
                               solution_column=None, k=32), "hmmt_feb2025"),
    "minerva": Preset(Benchmark("minerva", "math-ai/minervamath", "test", problem_column="question",
                                solution_column=None, k=4), "minerva_math"),
    "math500": Preset(Benchmark("math500", "HuggingFaceH4/MATH-500", "test", id_column="unique_id", k=4), "math500"),
    "gsm8k": Preset(Benchmark("gsm8k", "openai/gsm8k", "test", config="main", problem_column="question",
                              solution_column="answer", answer_format="gsm8k", k=4), "gsm8k_test"),
}

CODE_PRESETS: dict[str, Benchmark] = {
    name: Benchmark(name, name, "train", id_column="task_id", solution_column=None, k=10, kind="code")
    for name in ("humaneval_plus", "mbpp_plus")
}
"""EvalPlus's HumanEval+ and MBPP+ (antisd.data.code_benchmarks; pass@1 and pass@k, base and base+plus tests)."""

_SPEC_KEYS = {"problem": "problem_column", "answer": "answer_column", "id": "id_column",
              "solution": "solution_column", "split": "split", "config": "config", "k": "k",
              "answer_format": "answer_format", "like": None}


def _preset(name: str) -> Preset:
    if name not in PRESETS:
        raise EvalError(f"benchmark {name!r} is not a preset; presets: {sorted(PRESETS)}, code: {sorted(CODE_PRESETS)} "
                        "(other data: NAME=PATH_OR_HUB_NAME?problem=COL&answer=COL)")
    return PRESETS[name]


def preset_benchmark(name: str, data_dir: str | None = None) -> Benchmark:
    """A preset: ``<data>.jsonl`` (or ``.jsonl.gz``) in `data_dir` when it is there, else the shipped copy."""
    preset = _preset(name)
    if data_dir:
        for file_name in (f"{preset.data}.jsonl", f"{preset.data}.jsonl.gz"):
            path = Path(data_dir).expanduser() / file_name
            if path.is_file():
                return Benchmark(name, str(path.resolve()), "train", id_column="id", k=preset.hub.k)
        logger.warning("%s.jsonl is not in data_dir %s: %s uses the copy shipped with antisd", preset.data, data_dir,
                       name)
    return Benchmark(name, preset.data, "train", id_column="id", k=preset.hub.k)


def parse_benchmark(spec: str, data_dir: str | None = None) -> Benchmark:
    """A benchmark from ``PRESET`` or ``NAME=SOURCE``, optionally followed by ``?key=value&...``.

    Keys: problem, answer, id, solution (column names; empty = none), split, config, k,
    answer_format (plain|gsm8k), like=PRESET (start from that preset's hub columns: the hub dataset
    itself, or a downloaded copy of the hub file).
    """
    head, _, query = spec.partition("?")
    opts = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(opts) - set(_SPEC_KEYS))
    if unknown:
        raise EvalError(f"benchmark {spec!r}: unknown option(s) {unknown}; valid: {sorted(_SPEC_KEYS)}")
    name, eq, source = (s.strip() for s in head.partition("="))
    if not _NAME_RE.match(name):
        raise EvalError(f"benchmark {spec!r}: the name {name!r} must match [A-Za-z0-9._-]+ (it names result files)")
    if not eq and name in CODE_PRESETS:
        return _code_preset(spec, name, opts)
    if not eq:
        bench = preset_benchmark(name, data_dir)
    elif not source:
        raise EvalError(f"benchmark {spec!r}: give a source after '=' (a local file or a hub dataset name)")
    elif "like" in opts:
        bench = dataclasses.replace(_preset(opts["like"]).hub, name=name, source=source)
    else:
        bench = Benchmark(name, source)
    if eq and Path(source).expanduser().exists():  # one spelling per file, for the fingerprint
        bench = dataclasses.replace(bench, source=str(Path(source).expanduser().resolve()))
    changes: dict[str, Any] = {}
    for key, value in opts.items():
        if key == "like":
            continue
        if key == "k":
            if not value.isdigit() or int(value) < 1:
                raise EvalError(f"benchmark {spec!r}: k={value!r} must be a positive integer")
            changes["k"] = int(value)
        elif key == "answer_format" and value not in ("plain", "gsm8k"):
            raise EvalError(f"benchmark {spec!r}: answer_format={value!r}; choose plain or gsm8k")
        else:
            changes[_SPEC_KEYS[key]] = value or None
    return dataclasses.replace(bench, **changes)


def _code_preset(spec: str, name: str, opts: dict[str, str]) -> Benchmark:
    """A code preset with its ``k`` option (the only one it takes)."""
    if set(opts) - {"k"}:
        raise EvalError(f"benchmark {spec!r}: the code preset {name} takes only k=N (got {sorted(opts)})")
    bench = CODE_PRESETS[name]
    if "k" in opts:
        if not opts["k"].isdigit() or int(opts["k"]) < 1:
            raise EvalError(f"benchmark {spec!r}: k={opts['k']!r} must be a positive integer")
        bench = dataclasses.replace(bench, k=int(opts["k"]))
    return bench


def gsm8k_final_answer(text: Any) -> str | None:
    """GSM8K's answer field ends in ``#### N``: N, or None when there is no ``####``."""
    if not isinstance(text, str) or "####" not in text:
        return None
    return text.rsplit("####", 1)[1].strip() or None


def load_benchmark(bench: Benchmark, *, limit: int | None = None, prompt_format: str = "chat",
                   system_prompt: str | None = DEFAULT_SYSTEM_PROMPT) -> Any:
    """Canonical columns (prompt, answer, solution, problem_id) of the first `limit` problems,
    validated by ``antisd.data.problems`` (file order, no shuffle)."""
    dcfg = DataConfig(
        dataset_name=bench.source, dataset_config=bench.config, dataset_split=bench.split,
        problem_column=bench.problem_column, answer_column=bench.answer_column,
        solution_column=bench.solution_column, id_column=bench.id_column, system_prompt=system_prompt,
        prompt_format=prompt_format, max_samples=limit,  # type: ignore[arg-type]
    )
    try:
        raw = load_raw(dcfg)
    except DataError as e:
        hub = {p.hub.source: preset for preset, p in PRESETS.items()}
        if bench.source in hub:
            raise DataError(f"{e}; the preset {hub[bench.source]!r} alone reads the copy shipped with antisd") from e
        raise
    if bench.answer_format == "gsm8k":
        if bench.answer_column not in raw.column_names:
            raise DataError(f"benchmark {bench.name}: answer column {bench.answer_column!r} is not in "
                            f"{raw.column_names}")
        rows = raw if isinstance(raw, Rows) else raw.to_list()
        raw = Rows({**row, GSM8K_FINAL_COLUMN: gsm8k_final_answer(row.get(bench.answer_column))} for row in rows)
        dcfg = dataclasses.replace(dcfg, answer_column=GSM8K_FINAL_COLUMN)
    return map_problems(raw, dcfg)
