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
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from antisd.rewards.code.harness import ProgramResult
from antisd.rewards.code.score import CodeScorer
from antisd.rewards.code.tasks import CodeTask
from antisd.method.passk import pass_at_k

logger = logging.getLogger(__name__)


@dataclass
class TaskSamples:
    """Scored samples of one task: per sample (base passed, base+plus passed, result)."""

    task_id: str
    base: list[bool] = field(default_factory=list)
    plus: list[bool] = field(default_factory=list)
    details: list[dict[str, Any]] = field(default_factory=list)


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


def _parse_rows(lines: Iterable[str], known: dict[str, CodeTask],
                n_samples: int | None) -> tuple[list[tuple[int, CodeTask, str]], list[str], int]:
    rows, skipped, seen = [], [], defaultdict(int)
    indexed: dict[tuple[str, int], int] = {}
    n_rows = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        n_rows += 1
        try:
            row = json.loads(line)
        except ValueError as exc:
            skipped.append(f"line {number}: not JSON ({exc})")
            continue
        if not isinstance(row, dict) or not isinstance(row.get("task_id"), str):
            skipped.append(f"line {number}: no string task_id")
            continue
        task = known.get(row["task_id"])
        if task is None:
            skipped.append(f"line {number}: unknown task_id {row['task_id']!r}")
            continue
        if isinstance(row.get("solution"), str):
            program = row["solution"]
        elif isinstance(row.get("completion"), str):
            program = task.completion_prefix + row["completion"]
        else:
            skipped.append(f"line {number}: {row['task_id']} has neither a string 'solution' nor 'completion'")
            continue
        index = row.get("sample_index")
        if type(index) is int:
            if (task.task_id, index) in indexed:
                skipped.append(f"line {number}: {task.task_id} sample_index {index} repeats line "
                               f"{indexed[(task.task_id, index)]}")
                continue
            indexed[(task.task_id, index)] = number
        seen[task.task_id] += 1
        if n_samples is not None and seen[task.task_id] > n_samples:
            skipped.append(f"line {number}: {task.task_id} sample {seen[task.task_id]} exceeds n_samples={n_samples}")
            continue
        rows.append((number, task, program))
    return rows, skipped, n_rows


def _pass_at(per_task: dict[str, list[bool]], ks: Sequence[int]) -> tuple[dict[int, float], dict[int, int]]:
    table, below = {}, {}
    for k in ks:
        eligible = {tid: v for tid, v in per_task.items() if len(v) >= k}
        below[k] = len(per_task) - len(eligible)
        if eligible:
            table[k] = sum(pass_at_k(len(v), sum(v), k) for v in eligible.values()) / len(eligible)
    return table, below


def score_samples(source: str | Path | Iterable[str], tasks: Sequence[CodeTask], scorer: CodeScorer, *,
                  ks: Sequence[int] = (1,), n_samples: int | None = None) -> SamplesReport:
    """Score a samples file (path, or an iterable of JSONL lines) against `tasks` (module docstring)."""
    if any(int(k) < 1 for k in ks):
        raise ValueError(f"ks={list(ks)}: every k must be >= 1")
    known = {task.task_id: task for task in tasks}
    if isinstance(source, (str, Path)):
        with open(source, encoding="utf-8") as handle:
            rows, skipped, n_rows = _parse_rows(handle, known, n_samples)
    else:
        rows, skipped, n_rows = _parse_rows(source, known, n_samples)
    unusable = scorer.prepare([task for _, task, _ in rows])
    for task_id, error in sorted(unusable.items()):
        count = sum(1 for _, task, _ in rows if task.task_id == task_id)
        skipped.append(f"task {task_id}: reference fails its own tests ({error}); {count} rows skipped")
    rows = [row for row in rows if row[1].task_id not in unusable]
    results: list[ProgramResult | None] = scorer.score_programs([(task, program) for _, task, program in rows])
    per_task: dict[str, TaskSamples] = {}
    for (number, task, _), result in zip(rows, results):
        if result is None or result.sandbox_error:
            skipped.append(f"line {number}: {task.task_id} could not be run by the sandbox")
            continue
        entry = per_task.setdefault(task.task_id, TaskSamples(task.task_id))
        entry.base.append(result.passed(plus=False))
        entry.plus.append(result.passed(plus=True))
        entry.details.append({"line": number, "base": result.base.status, "base_failure": result.base.failure,
                              "plus": None if result.plus is None else result.plus.status,
                              "plus_failure": None if result.plus is None else result.plus.failure})
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
