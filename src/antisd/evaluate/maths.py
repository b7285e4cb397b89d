"""The maths benchmarks of ``antisd eval`` as a task kind (``antisd.evaluate.tasks``): `MathsKind`, `MathsTask`.

Each sample is scored by math-verify as it is drawn (``antisd.evaluate.generation.MathRows``) and
written to ``samples/<model>__<benchmark>.jsonl`` with the model, benchmark, problem id, k and the
reference answer; the summary rows are ``antisd.evaluate.summary.summarize``'s (with a "mean" row per
model over its maths benchmarks, the paper's headline number).

Problem identity: a local file's ``id`` column is used when no id column was named
(``resolve_id_column``); without ids, a problem is named by a hash of its text, and a text repeated
in the file is kept as a separate problem (``distinct_problem_ids``: ``p-<hash>``, ``p-<hash>#2``, ...);
an id column that repeats an id is refused.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from antisd.data.problems import DataConfig, load_raw
from antisd.evaluate.benchmarks import Benchmark, EvalError, load_benchmark
from antisd.evaluate.generation import MathRows, Sample
from antisd.evaluate.results import results_path
from antisd.evaluate.samples import SamplesFile
from antisd.evaluate.summary import summarize

if TYPE_CHECKING:
    from antisd.evaluate.config import EvalConfig

logger = logging.getLogger("antisd.evaluate")  # one logger name for every submodule of the package


def resolve_id_column(bench: Benchmark) -> Benchmark:
    """`bench` with ``id_column="id"`` when none was named and its source is a local file (or folder) that has
    an ``id`` column; else `bench` unchanged."""
    if bench.id_column is not None or not Path(bench.source).expanduser().exists():
        return bench
    columns = load_raw(DataConfig(dataset_name=bench.source, dataset_split=bench.split)).column_names
    if "id" not in columns:
        return bench
    logger.info("%s: problems are named by the file's id column", bench.name)
    return dataclasses.replace(bench, id_column="id")


def distinct_problem_ids(problems: list[dict[str, Any]], bench: Benchmark) -> list[dict[str, Any]]:
    """`problems` with one id each: without an id column, the n-th repeat (n >= 2, file order) of a problem
    text gets ``<text id>#n``; an id column that repeats an id raises EvalError naming it."""
    seen: dict[str, int] = {}
    out = []
    for i, problem in enumerate(problems):
        pid = str(problem["problem_id"])
        count = seen[pid] = seen.get(pid, 0) + 1
        if count > 1:
            if bench.id_column is not None:
                raise EvalError(f"benchmark {bench.name}: id {pid!r} (column {bench.id_column!r}) is used by more "
                                f"than one row (again at problem {i}); give every problem its own id")
            problem = {**problem, "problem_id": f"{pid}#{count}"}
        out.append(problem)
    repeats = len(problems) - len(seen)
    if repeats:
        logger.warning("%s: %d problem text(s) repeat an earlier one; each repeat is a separate problem (<id>#2, ...)",
                       bench.name, repeats)
    return out


@dataclass
class MathsTask:
    """One model x maths benchmark (``antisd.evaluate.tasks.EvalTask``)."""

    label: str
    bench: Benchmark
    k: int
    samples: SamplesFile
    problems: Sequence[Mapping[str, Any]]
    scorer: MathRows

    def rows(self, problem: Mapping[str, Any], samples: Sequence[Sample]) -> list[dict[str, Any]]:
        """One problem's scored records, as the samples file holds them."""
        head = {"model": self.label, "benchmark": self.bench.name, "problem_id": str(problem["problem_id"]),
                "n_samples": self.k, "answer": str(problem["answer"])}
        return [{**head, **row} for row in self.scorer(problem, samples)]

    def records(self) -> list[dict[str, Any]]:
        """The records of this run's problems (a file may hold more: a run with a larger --limit) that are finished."""
        wanted = {str(p["problem_id"]) for p in self.problems}
        return [dict(r) for pid, rows in self.samples.finished(self.k).items() if pid in wanted for r in rows]

    def files(self) -> dict[str, Path]:
        return {f"samples:{self.label}:{self.bench.name}": self.samples.path}


class MathsKind:
    """The maths benchmarks of a run (``antisd.evaluate.tasks.EvalKind``): their problems are loaded once, in
    file order, before any model (``load_benchmark``, ids made distinct)."""

    def __init__(self, cfg: EvalConfig, benches: Sequence[Benchmark]) -> None:
        self.cfg = cfg
        self.benches = [resolve_id_column(b) for b in benches]
        self.problems = {b.name: distinct_problem_ids([dict(r) for r in load_benchmark(
            b, limit=cfg.limit, prompt_format=cfg.prompt_format, system_prompt=cfg.system_prompt)], b)
            for b in self.benches}

    def task(self, label: str, model_path: str, bench: Benchmark) -> MathsTask:
        path = results_path(self.cfg.output_dir, label, bench.name)
        return MathsTask(label, bench, self.cfg.samples_for(bench), SamplesFile(path), self.problems[bench.name],
                         MathRows(self.cfg.verify_timeout_s, self.cfg.answer_extraction))

    def summarize(self, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """One row per model x benchmark, then a "mean" row per model with two or more benchmarks."""
        return summarize(records)
