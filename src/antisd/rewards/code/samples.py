"""Score an EvalPlus-format samples file: JSONL rows ``{"task_id", "solution" | "completion"}``.

``solution`` is a whole program; ``completion`` is appended to the task's prompt
(`CodeTask.completion_prefix`), as EvalPlus does. Returns per-task results and pass@k for base
and base+plus with the unbiased estimator (`antisd.method.passk.pass_at_k`).

Bad input never crashes the run and never silently scores 0 or 1: every problem is a counted skip
with a one-line, logged reason naming the row (line number) or task:

- a line that is not a JSON object, a row without a string ``task_id``, or with neither a string
  ``solution`` nor ``completion``;
- an unknown task id;
- a row whose integer ``sample_index`` (written by ``antisd eval``) repeats an earlier row's for
  the same task (a duplicate);
- a row beyond ``n_samples`` for its task (when ``n_samples`` is given);
- a task whose reference fails its own tests (unusable: all its rows are skipped);
- a program the sandbox could not run (sandbox_error: a machine problem, not the program's).

pass@k is computed for each requested k over the tasks with at least k scored samples; the tasks
left out are counted (``n_tasks_below_k``) and logged.

Each line is parsed once (`parse_jsonl`: `SampleLine`s); a caller that has read the file already
(``antisd.evaluate.samples.SamplesFile``) passes its lines, and every scored sample keeps the row it
was read from (`TaskSamples.rows`), so nothing is read twice or joined back by line number.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from antisd.method.passk import pass_at_k

if TYPE_CHECKING:  # annotations only: reading a samples file needs neither the harness nor the scorer's pool
    from antisd.rewards.code.harness import ProgramResult
    from antisd.rewards.code.score import CodeScorer
    from antisd.rewards.code.tasks import CodeTask

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SampleLine:
    """One non-blank line of a JSONL samples file, parsed once: its number (from 1), its JSON value (None when
    the line is not JSON, then `error` says why), and whether it ends with a newline (only a file's last line
    may not: a crash cut it short, or its writer left the newline out)."""

    number: int
    value: Any
    error: str | None = None
    terminated: bool = True


def parse_line(number: int, text: str) -> SampleLine:
    """`text` (line `number`, with or without its newline) as a `SampleLine`."""
    try:
        value, error = json.loads(text), None
    except (ValueError, RecursionError) as exc:  # RecursionError: a line of deeply nested brackets
        value, error = None, str(exc)
    return SampleLine(number, value, error, text.endswith("\n"))


def parse_jsonl(lines: Iterable[str]) -> Iterator[SampleLine]:
    """The non-blank lines of `lines` (numbered from 1, blank lines counted), each parsed once."""
    for number, text in enumerate(lines, start=1):
        if text.strip():
            yield parse_line(number, text)


@dataclass
class TaskSamples:
    """Scored samples of one task: per sample (base passed, base+plus passed, result, the samples-file row)."""

    task_id: str
    base: list[bool] = field(default_factory=list)
    plus: list[bool] = field(default_factory=list)
    details: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)  # the JSON object each sample was read from


@dataclass
class SamplesReport:
    """pass@k per k for "base" and "base+plus", per-task results, and every skip with its reason."""

    pass_at_k: dict[str, dict[int, float]]
    tasks: dict[str, TaskSamples]
    skipped: list[str]
    n_rows: int
    n_scored: int
    n_tasks_below_k: dict[int, int]
    n_tasks_without_samples: int


@dataclass(frozen=True)
class _Program:
    line: SampleLine
    task: CodeTask
    program: str


def _program(line: SampleLine, known: dict[str, CodeTask]) -> _Program | str:
    """The program of one row, or why the row is skipped."""
    number, row = line.number, line.value
    if line.error is not None:
        return f"line {number}: not JSON ({line.error})"
    if not isinstance(row, dict) or not isinstance(row.get("task_id"), str):
        return f"line {number}: no string task_id"
    task = known.get(row["task_id"])
    if task is None:
        return f"line {number}: unknown task_id {row['task_id']!r}"
    if isinstance(row.get("solution"), str):
        return _Program(line, task, row["solution"])
    if isinstance(row.get("completion"), str):
        return _Program(line, task, task.completion_prefix + row["completion"])
    return f"line {number}: {row['task_id']} has neither a string 'solution' nor 'completion'"


def _parse_rows(lines: Iterable[SampleLine], known: dict[str, CodeTask],
                n_samples: int | None) -> tuple[list[_Program], list[str], int]:
    rows: list[_Program] = []
    skipped: list[str] = []
    seen: dict[str, int] = defaultdict(int)
    indexed: dict[tuple[str, int], int] = {}
    n_rows = 0
    for line in lines:
        n_rows += 1
        program = _program(line, known)
        if isinstance(program, str):
            skipped.append(program)
            continue
        number, tid, index = line.number, program.task.task_id, line.value.get("sample_index")
        if type(index) is int:
            if (tid, index) in indexed:
                skipped.append(f"line {number}: {tid} sample_index {index} repeats line {indexed[(tid, index)]}")
                continue
            indexed[(tid, index)] = number
        seen[tid] += 1
        if n_samples is not None and seen[tid] > n_samples:
            skipped.append(f"line {number}: {tid} sample {seen[tid]} exceeds n_samples={n_samples}")
            continue
        rows.append(program)
    return rows, skipped, n_rows


def _pass_at(per_task: dict[str, list[bool]], ks: Sequence[int]) -> tuple[dict[int, float], dict[int, int]]:
    table, below = {}, {}
    for k in ks:
        eligible = {tid: v for tid, v in per_task.items() if len(v) >= k}
        below[k] = len(per_task) - len(eligible)
        if eligible:
            table[k] = sum(pass_at_k(len(v), sum(v), k) for v in eligible.values()) / len(eligible)
    return table, below


def _source_lines(source: str | Path | Iterable[str] | Iterable[SampleLine]) -> list[SampleLine]:
    if isinstance(source, (str, Path)):
        with open(source, encoding="utf-8") as handle:
            return list(parse_jsonl(handle))
    items = list(source)
    if items and isinstance(items[0], SampleLine):
        return items  # type: ignore[return-value]
    return list(parse_jsonl(items))  # type: ignore[arg-type]


def _score_programs(programs: list[_Program], scorer: CodeScorer, skipped: list[str]) -> dict[str, TaskSamples]:
    """Run every program (tasks whose reference fails its own tests are skipped); task id -> its scored samples."""
    unusable = scorer.prepare([p.task for p in programs])
    for task_id, error in sorted(unusable.items()):
        count = sum(1 for p in programs if p.task.task_id == task_id)
        skipped.append(f"task {task_id}: reference fails its own tests ({error}); {count} rows skipped")
    programs = [p for p in programs if p.task.task_id not in unusable]
    results: list[ProgramResult | None] = scorer.score_programs([(p.task, p.program) for p in programs])
    per_task: dict[str, TaskSamples] = {}
    for p, result in zip(programs, results):
        if result is None or result.sandbox_error:
            skipped.append(f"line {p.line.number}: {p.task.task_id} could not be run by the sandbox")
            continue
        entry = per_task.setdefault(p.task.task_id, TaskSamples(p.task.task_id))
        entry.base.append(result.passed(plus=False))
        entry.plus.append(result.passed(plus=True))
        entry.details.append({"line": p.line.number, "base": result.base.status, "base_failure": result.base.failure,
                              "plus": None if result.plus is None else result.plus.status,
                              "plus_failure": None if result.plus is None else result.plus.failure})
        entry.rows.append(p.line.value)
    return per_task


def score_samples(source: str | Path | Iterable[str] | Iterable[SampleLine], tasks: Sequence[CodeTask],
                  scorer: CodeScorer, *, ks: Sequence[int] = (1,), n_samples: int | None = None) -> SamplesReport:
    """Score a samples file against `tasks` (module docstring). `source`: a path, an iterable of JSONL lines,
    or the `SampleLine`s of a file read once (``antisd.evaluate.samples.SamplesFile.lines``)."""
    if any(int(k) < 1 for k in ks):
        raise ValueError(f"ks={list(ks)}: every k must be >= 1")
    known = {task.task_id: task for task in tasks}
    programs, skipped, n_rows = _parse_rows(_source_lines(source), known, n_samples)
    per_task = _score_programs(programs, scorer, skipped)
    for reason in skipped:
        logger.warning("samples: skipped %s", reason)
    base_table, below = _pass_at({t: s.base for t, s in per_task.items()}, ks)
    plus_table, _ = _pass_at({t: s.plus for t, s in per_task.items()}, ks)
    for k, count in below.items():
        if count:
            logger.warning("samples: pass@%d leaves out %d tasks with fewer than %d samples", k, count, k)
    missing = len(known) - len(per_task)
    if missing:
        logger.warning("samples: %d of %d tasks have no scored sample; pass@k is over the %d that do",
                       missing, len(known), len(per_task))
    return SamplesReport(pass_at_k={"base": base_table, "base+plus": plus_table}, tasks=per_task, skipped=skipped,
                         n_rows=n_rows, n_scored=sum(len(s.base) for s in per_task.values()),
                         n_tasks_below_k=below, n_tasks_without_samples=missing)
