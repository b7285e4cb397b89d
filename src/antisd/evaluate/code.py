"""Code benchmarks of ``antisd eval``: HumanEval+ and MBPP+ (EvalPlus), sampled from a model or read
from an EvalPlus samples file, and scored by running every program in the sandbox (``antisd.rewards.code``).

Presets ``humaneval_plus`` and ``mbpp_plus`` (``antisd.evaluate.benchmarks.CODE_PRESETS``, k = 10
samples per task by default). For each model, k samples per task are drawn with the same generators
and per-sample seeds as the maths presets (``antisd.evaluate.generation``): chat prompts are
EvalPlus's instruction and the task prompt in a fenced block (``antisd.data.code_problems.chat_task_text``;
the maths default system prompt is not used), and a sample's program is the last fenced python block
of its completion; plain prompts are the task prompt, and the program is the prompt + the completion
(EvalPlus's completion style). Each program runs on the base and the plus tests
(``antisd.rewards.code.score_samples``). ``output_dir`` gets

    code/<model>__<benchmark>.samples.jsonl        EvalPlus's samples format (task_id, solution) plus
                                                   sample_index, raw_completion, extraction, n_tokens,
                                                   truncated; appended per chunk of tasks (a rerun resumes)
    code/<model>__<benchmark>.samples.config.json  the settings fingerprint (a rerun must match it)
    code/<model>__<benchmark>.results.json         per task: each sample's base and plus verdict and first
                                                   failure; pass@k for base and base+plus as EvalPlus computes
                                                   it (each task's own number of samples); every skipped row
    summary.md / summary.csv                       rows <benchmark>:base and <benchmark>:base+plus (avg@k is
                                                   pass@1; pass@j; "no answer" = no code block; wrong = a test
                                                   failed; timeout = a test timed out)

``--samples FILE`` scores FILE (samples drawn anywhere: vLLM, an API) on the one code benchmark given,
with the model label taken from the file name. Bad rows (not JSON, no task_id, unknown task id, a
repeated sample_index, neither solution nor completion) are counted, logged skips; a file of which no
row can be scored is an error (exit code 2) before anything is written.

The benchmarks are a task kind of the runner (``antisd.evaluate.tasks``): `CodeKind` loads the tasks and
their prompts, `CodeEvalTask.rows` turns a task's samples into samples-file lines, and
`CodeEvalTask.records` scores the file read once (``antisd.evaluate.samples.SamplesFile``), each
sample's summary record built from the row it was scored from.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from antisd.data.code_problems import chat_task_text
from antisd.data.problems import DEFAULT_SYSTEM_PROMPT
from antisd.evaluate.benchmarks import Benchmark, EvalError
from antisd.evaluate.generation import Sample
from antisd.evaluate.samples import SamplesFile
from antisd.evaluate.summary import summarize
from antisd.files import atomic_write
from antisd.rewards.code import CodeScorer, CodeTask, SamplesReport, extract_code, load_tasks, score_samples
from antisd.rewards.code.score import make_executor

if TYPE_CHECKING:
    from antisd.evaluate.config import EvalConfig

logger = logging.getLogger("antisd.evaluate")  # one logger name for every submodule of the package

NO_CODE = ("no_code", "empty", "unclosed_fence")


def is_code_benchmark(bench: Benchmark) -> bool:
    return bench.kind == "code"


def code_prompt(task: CodeTask, cfg: Any) -> str | list[dict[str, str]]:
    """The prompt of one task: chat messages (EvalPlus's instruction; a system prompt only when set to
    something other than the maths default) or the plain task prompt."""
    if cfg.prompt_format == "plain":
        return task.prompt
    messages = [{"role": "user", "content": chat_task_text(task.prompt)}]
    if cfg.system_prompt and cfg.system_prompt != DEFAULT_SYSTEM_PROMPT:
        messages.insert(0, {"role": "system", "content": cfg.system_prompt})
    return messages


def code_paths(output_dir: str | Path, label: str, bench: str) -> tuple[Path, Path]:
    """(samples file, results file) of one model x code benchmark."""
    folder = Path(output_dir) / "code"
    return folder / f"{label}__{bench}.samples.jsonl", folder / f"{label}__{bench}.results.json"


def sample_row(task: CodeTask, index: int, sample: Sample, mode: str) -> dict[str, Any]:
    """One line of a code samples file: the program extracted from `sample` (fenced or raw `mode`) and how."""
    code, how = extract_code(sample.text, mode)
    solution = "" if code is None else (task.completion_prefix + code if mode == "raw" else code)
    return {"task_id": task.task_id, "sample_index": index, "solution": solution, "raw_completion": sample.text,
            "extraction": how, "n_tokens": sample.n_tokens, "truncated": sample.truncated}


def summary_outcome(ok: bool, status: str | None, extraction: str | None) -> str:
    """A sample's verdict in the summary table's words (antisd.rewards.Outcome values)."""
    if extraction in NO_CODE:
        return "no_answer"
    return "correct" if ok else ("timeout" if status == "timeout" else "wrong")


def summary_records(report: SamplesReport, label: str, bench: str, k: int | None) -> list[dict[str, Any]]:
    """Per-sample records for ``antisd.evaluate.summary.summarize``: benchmarks <bench>:base and
    <bench>:base+plus (each sample's lengths and extraction from the row it was scored from)."""
    out = []
    for tid, scored in report.tasks.items():
        for j, (base, plus, detail, row) in enumerate(zip(scored.base, scored.plus, scored.details, scored.rows)):
            plus_status = detail["base"] if detail["base"] != "pass" else (detail["plus"] or "pass")
            for name, ok, status in (("base", base, detail["base"]), ("base+plus", plus, plus_status)):
                out.append({"model": label, "benchmark": f"{bench}:{name}", "problem_id": tid, "sample_index": j,
                            "n_samples": k or 0, "correct": ok, "n_tokens": row.get("n_tokens") or 0,
                            "truncated": bool(row.get("truncated")),
                            "completion": row.get("raw_completion") or row.get("solution") or row.get("completion") or "",
                            "outcome": summary_outcome(ok, status, row.get("extraction"))})
    return out


def most_rows_per_task(samples: SamplesFile) -> int:
    """The largest number of JSON-object lines that name one task (pass@j is reported for j up to it)."""
    counts: dict[str, int] = {}
    for line in samples.lines():
        if isinstance(line.value, dict):
            tid = str(line.value.get("task_id"))
            counts[tid] = counts.get(tid, 0) + 1
    return max(counts.values(), default=1)


def score_file(samples: SamplesFile, tasks: Sequence[CodeTask], scorer: CodeScorer, *, label: str, bench: str,
               k: int | None, results: Path) -> list[dict[str, Any]]:
    """Score a samples file, write the per-task results (`results`), return the summary records.
    Raises EvalError (nothing written) when no row can be scored."""
    n = k or most_rows_per_task(samples)
    report = score_samples(samples.lines(), tasks, scorer, ks=range(1, n + 1), n_samples=k)
    if report.n_scored == 0:
        reasons = "; ".join(report.skipped[:3]) or "it has no rows"
        raise EvalError(f"no sample of {str(samples.path)!r} could be scored on {bench} ({len(report.skipped)} "
                        f"skipped: {reasons})")
    for kind in ("base", "base+plus"):
        logger.info("%s %s (%s): %s over %d tasks", bench, kind, label,
                    ", ".join(f"pass@{j} {v:.3f}" for j, v in report.pass_at_k[kind].items()), len(report.tasks))
    payload = {"model": label, "benchmark": bench, "samples_file": str(samples.path), "n_rows": report.n_rows,
               "n_scored": report.n_scored, "pass_at_k": report.pass_at_k, "n_tasks_below_k": report.n_tasks_below_k,
               "n_tasks_without_samples": report.n_tasks_without_samples, "skipped": report.skipped,
               "tasks": {tid: {"n": len(s.base), "base_passed": sum(s.base), "plus_passed": sum(s.plus),
                               "samples": s.details} for tid, s in report.tasks.items()}}
    results.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(results, json.dumps(payload, indent=1, default=str) + "\n")
    return summary_records(report, label, bench, k)


def open_scorer(cfg: Any) -> CodeScorer:
    """The sandbox pool of ``code_sandbox`` / ``code_workers`` (a context manager; its workers start at the first
    program); EvalError when the sandbox asked for cannot run."""
    try:
        return CodeScorer(make_executor(cfg.code_sandbox), workers=cfg.code_workers)
    except RuntimeError as e:  # isolation=bwrap without a working bubblewrap
        raise EvalError(f"code_sandbox={cfg.code_sandbox!r}: {' '.join(str(e).split())}") from None


def summary_rows(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One summary row per model x <benchmark>:base / :base+plus (no "mean" row: that is the maths headline)."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for record in records:
        groups.setdefault((record["model"], record["benchmark"]), []).append(record)
    return [row for group in groups.values() for row in summarize(group)]


@dataclass
class CodeEvalTask:
    """One model x code benchmark (``antisd.evaluate.tasks.EvalTask``)."""

    label: str
    bench: Benchmark
    k: int
    samples: SamplesFile
    problems: Sequence[Mapping[str, Any]]  # problem_id (the task id), prompt and the CodeTask itself ("task")
    scorer: CodeScorer
    results: Path
    mode: str  # "fenced": the last fenced python block of a completion; "raw": the prompt + the completion

    def rows(self, problem: Mapping[str, Any], samples: Sequence[Sample]) -> list[dict[str, Any]]:
        """One task's samples-file lines (EvalPlus's task_id and solution, and how the program was found)."""
        return [sample_row(problem["task"], i, s, self.mode) for i, s in enumerate(samples)]

    def records(self) -> list[dict[str, Any]]:
        """Run every program of the samples file; write the per-task results; the summary records."""
        return score_file(self.samples, [p["task"] for p in self.problems], self.scorer, label=self.label,
                          bench=self.bench.name, k=self.k, results=self.results)

    def files(self) -> dict[str, Path]:
        return {f"samples:{self.label}:{self.bench.name}": self.samples.path,
                f"results:{self.label}:{self.bench.name}": self.results}


class CodeKind:
    """The code benchmarks of a run (``antisd.evaluate.tasks.EvalKind``), scored with `scorer`: their tasks are
    loaded once (the first ``limit``), with their prompts, before any model."""

    def __init__(self, cfg: EvalConfig, benches: Sequence[Benchmark], scorer: CodeScorer) -> None:
        self.cfg, self.benches, self.scorer = cfg, list(benches), scorer
        self.problems: dict[str, list[dict[str, Any]]] = {}
        for bench in self.benches:
            tasks = load_tasks(bench.source)
            self.problems[bench.name] = [{"problem_id": t.task_id, "prompt": code_prompt(t, cfg), "task": t}
                                         for t in (tasks[:cfg.limit] if cfg.limit else tasks)]

    def task(self, label: str, model_path: str, bench: Benchmark) -> CodeEvalTask:
        samples, results = code_paths(self.cfg.output_dir, label, bench.name)
        return CodeEvalTask(label, bench, self.cfg.samples_for(bench), SamplesFile.code(samples),
                            self.problems[bench.name], self.scorer, results,
                            "raw" if self.cfg.prompt_format == "plain" else "fenced")

    def summarize(self, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return summary_rows(records)


def score_samples_file(cfg: EvalConfig, bench: Benchmark) -> tuple[list[dict[str, Any]], dict[str, Path]]:
    """``antisd eval --benchmarks PRESET --samples FILE``: (summary rows, files written)."""
    path = Path(str(cfg.samples)).expanduser().resolve()
    label = re.sub(r"[^A-Za-z0-9._-]", "_", path.name.removesuffix(".jsonl").removesuffix(".samples")) or "samples"
    if cfg.limit:
        logger.warning("limit=%d does not apply to --samples: every task of the file is scored", cfg.limit)
    results = code_paths(cfg.output_dir, label, bench.name)[1]
    with open_scorer(cfg) as scorer:
        records = score_file(SamplesFile.code(path), load_tasks(bench.source), scorer, label=label, bench=bench.name,
                             k=cfg.n_samples, results=results)
    return summary_rows(records), {f"results:{label}:{bench.name}": results}
