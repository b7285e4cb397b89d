"""The task protocol of ``antisd eval``: what a kind of benchmark supplies to the one runner loop.

``antisd.evaluate.run.run_models`` drives every model x benchmark the same way, whatever the kind:

1. ``kind.task(label, model_path, bench)`` gives the `EvalTask` of one model x benchmark: its problems
   (loaded once per run, before any model) and its `SamplesFile`;
2. the runner checks the file's settings fingerprint (``antisd.evaluate.results.prepare_results``) and resumes the
   file (``SamplesFile.resume``: the finished problems), for every benchmark before the model loads;
3. it samples the unfinished problems (``antisd.evaluate.generation.sample_problems``), each problem's
   records made by ``task.rows`` and appended to the samples file a chunk at a time;
4. ``task.records()`` scores what the file holds (maths: scored while sampling; code: every program
   run in the sandbox) into per-sample summary records, and ``kind.summarize`` turns the records of
   every model into summary rows.

The kinds: ``antisd.evaluate.maths.MathsKind`` (math-verify scoring) and ``antisd.evaluate.code.CodeKind``
(HumanEval+ / MBPP+, programs run on the base and plus tests).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from antisd.evaluate.benchmarks import Benchmark
from antisd.evaluate.generation import Sample
from antisd.evaluate.samples import SamplesFile


class EvalTask(Protocol):
    """One model x benchmark (module docstring)."""

    bench: Benchmark
    k: int  # samples per problem
    samples: SamplesFile
    problems: Sequence[Mapping[str, Any]]  # each with problem_id and prompt (chat messages or text)

    def rows(self, problem: Mapping[str, Any], samples: Sequence[Sample]) -> list[dict[str, Any]]:
        """The k records to append for one problem's k samples."""
        ...

    def records(self) -> list[dict[str, Any]]:
        """Per-sample summary records (model, benchmark, problem_id, sample_index, correct, outcome, ...) of the
        finished problems, for ``summarize``."""
        ...

    def files(self) -> dict[str, Path]:
        """The files it wrote, by name (``samples:<model>:<benchmark>``, ...)."""
        ...


class EvalKind(Protocol):
    """The benchmarks of one kind in a run (module docstring)."""

    benches: Sequence[Benchmark]

    def task(self, label: str, model_path: str, bench: Benchmark) -> EvalTask:
        """The task of model `label` (loaded from `model_path`) on `bench`, one of ``benches``."""
        ...

    def summarize(self, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Summary rows of the records of every model on these benchmarks."""
        ...
