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
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from antisd.rewards.code import CodeScorer, CodeTask, SamplesReport, extract_code, load_tasks, score_samples
from antisd.data.code_problems import chat_task_text
from antisd.rewards.code.extract import EXTRACTED
from antisd.rewards.code.score import make_executor
from antisd.data.problems import DEFAULT_SYSTEM_PROMPT
from antisd.evaluate.benchmarks import Benchmark, EvalError
from antisd.evaluate.generation import _draw, load_tokenizer, make_generator, release_generator
from antisd.evaluate.results import _write_atomic, _write_jsonl, append_records, fingerprint, prepare_results
from antisd.evaluate.summary import summarize

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


def _read_rows(path: Path) -> tuple[dict[int, dict[str, Any]], int]:
    """(line number -> row, number of non-blank lines) of a samples file; lines that are not a JSON object
    are left out here (score_samples counts them as skips)."""
    rows = {}
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as e:
        raise EvalError(f"samples file {str(path)!r} cannot be read: {e}") from None
    for number, line in enumerate(lines, start=1):
        try:
            row = json.loads(line) if line.strip() else None
        except ValueError:
            row = None
        if isinstance(row, dict):
            rows[number] = row
    return rows, sum(1 for line in lines if line.strip())


def _existing(path: Path, k: int) -> set[str]:
    """Task ids with all k samples in `path`; rewrites it without partial tasks or broken lines."""
    if not path.exists():
        return set()
    rows, n_lines = _read_rows(path)
    by_task: dict[str, set[Any]] = {}
    for row in rows.values():
        by_task.setdefault(str(row.get("task_id")), set()).add(row.get("sample_index"))
    done = {tid for tid, indices in by_task.items() if indices == set(range(k))}
    kept = [row for row in rows.values() if str(row.get("task_id")) in done]
    if len(kept) != n_lines:
        logger.info("%s: dropping %d sample(s) of unfinished tasks and broken lines", path, n_lines - len(kept))
        _write_jsonl(path, kept)
    return done


def _sample_row(task: CodeTask, index: int, sample: Any, mode: str) -> dict[str, Any]:
    code, how = extract_code(sample.text, mode)
    solution = "" if code is None else (task.completion_prefix + code if mode == "raw" else code)
    return {"task_id": task.task_id, "sample_index": index, "solution": solution, "raw_completion": sample.text,
            "extraction": how, "n_tokens": sample.n_tokens, "truncated": sample.truncated}


def generate_samples(cfg: Any, generator: Any, bench: Benchmark, tasks: Sequence[CodeTask], path: Path,
                     done: set[str], batch_size: int) -> None:
    """Sample the unfinished tasks, appending each chunk of tasks to `path` (fixed chunks, as the maths
    presets: a resumed run forms the batches of an uninterrupted one)."""
    k = cfg.samples_for(bench)
    mode = "raw" if cfg.prompt_format == "plain" else "fenced"
    per_chunk = max(1, batch_size // k)
    for first in range(0, len(tasks), per_chunk):
        chunk = list(tasks[first:first + per_chunk])
        todo = [t.task_id not in done for t in chunk]
        if not any(todo):
            continue
        ids = [generator.encode(code_prompt(t, cfg)) for t in chunk]
        samples = _draw(generator, ids, [t.task_id for t in chunk], k=k, batch_size=batch_size, seed=cfg.seed,
                        tag=bench.name, progress=None, counted=sum(todo))
        append_records(path, [_sample_row(t, i, s, mode) for t, ss, go in zip(chunk, samples, todo) if go
                              for i, s in enumerate(ss)])
        logger.info("%s: sampled %d of %d tasks", bench.name, min(first + per_chunk, len(tasks)), len(tasks))


def _summary_outcome(ok: bool, status: str | None, extraction: str | None) -> str:
    """A sample's verdict in the summary table's words (antisd.rewards.Outcome values)."""
    if extraction in NO_CODE:
        return "no_answer"
    return "correct" if ok else ("timeout" if status == "timeout" else "wrong")


def summary_records(report: SamplesReport, rows: Mapping[int, dict[str, Any]], label: str, bench: str,
                    k: int | None) -> list[dict[str, Any]]:
    """Per-sample records for ``antisd.evaluate.summary.summarize``: benchmarks <bench>:base and
    <bench>:base+plus."""
    out = []
    for tid, scored in report.tasks.items():
        for j, (base, plus, detail) in enumerate(zip(scored.base, scored.plus, scored.details)):
            row = rows.get(detail["line"], {})
            plus_status = detail["base"] if detail["base"] != "pass" else (detail["plus"] or "pass")
            for name, ok, status in (("base", base, detail["base"]), ("base+plus", plus, plus_status)):
                out.append({"model": label, "benchmark": f"{bench}:{name}", "problem_id": tid, "sample_index": j,
                            "n_samples": k or 0, "correct": ok, "n_tokens": row.get("n_tokens") or 0,
                            "truncated": bool(row.get("truncated")),
                            "completion": row.get("raw_completion") or row.get("solution") or row.get("completion") or "",
                            "outcome": _summary_outcome(ok, status, row.get("extraction"))})
    return out


def score_file(path: Path, tasks: Sequence[CodeTask], scorer: CodeScorer, *, label: str, bench: str,
               k: int | None, results: Path) -> list[dict[str, Any]]:
    """Score a samples file, write the per-task results (`results`), return the summary records.
    Raises EvalError (nothing written) when no row can be scored."""
    rows, _ = _read_rows(path)
    n = k or max([len(v) for v in _per_task(rows).values()] or [1])
    report = score_samples(path, tasks, scorer, ks=range(1, n + 1), n_samples=k)
    if report.n_scored == 0:
        reasons = "; ".join(report.skipped[:3]) or "it has no rows"
        raise EvalError(f"no sample of {str(path)!r} could be scored on {bench} ({len(report.skipped)} skipped: "
                        f"{reasons})")
    for kind in ("base", "base+plus"):
        logger.info("%s %s (%s): %s over %d tasks", bench, kind, label,
                    ", ".join(f"pass@{j} {v:.3f}" for j, v in report.pass_at_k[kind].items()), len(report.tasks))
    payload = {"model": label, "benchmark": bench, "samples_file": str(path), "n_rows": report.n_rows,
               "n_scored": report.n_scored, "pass_at_k": report.pass_at_k, "n_tasks_below_k": report.n_tasks_below_k,
               "n_tasks_without_samples": report.n_tasks_without_samples, "skipped": report.skipped,
               "tasks": {tid: {"n": len(s.base), "base_passed": sum(s.base), "plus_passed": sum(s.plus),
                               "samples": s.details} for tid, s in report.tasks.items()}}
    results.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(results, json.dumps(payload, indent=1, default=str) + "\n")
    return summary_records(report, rows, label, bench, k)


def _per_task(rows: Mapping[int, dict[str, Any]]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for number, row in rows.items():
        out.setdefault(str(row.get("task_id")), []).append(number)
    return out


def _scorer(cfg: Any) -> CodeScorer:
    """The sandbox pool of ``code_sandbox`` / ``code_workers``; EvalError when the sandbox asked for cannot run."""
    try:
        return CodeScorer(make_executor(cfg.code_sandbox), workers=cfg.code_workers)
    except RuntimeError as e:  # isolation=bwrap without a working bubblewrap
        raise EvalError(f"code_sandbox={cfg.code_sandbox!r}: {' '.join(str(e).split())}") from None


def _tasks(bench: Benchmark, limit: int | None) -> list[CodeTask]:
    tasks = load_tasks(bench.source)
    return tasks[:limit] if limit else tasks


def run_code_benchmarks(cfg: Any, benches: Sequence[Benchmark], backend: str,
                        batch_size: int) -> tuple[list[dict[str, Any]], dict[str, Path]]:
    """Sample (resuming) and score every model x code benchmark; (summary rows, files written)."""
    if not benches:
        return [], {}
    tasks = {b.name: _tasks(b, cfg.limit) for b in benches}
    records: list[dict[str, Any]] = []
    files: dict[str, Path] = {}
    with _scorer(cfg) as scorer:
        for label, model_path in cfg.model_specs():
            paths = {b.name: code_paths(cfg.output_dir, label, b.name) for b in benches}
            for b in benches:  # every fingerprint is checked before the model loads
                prepare_results(paths[b.name][0], fingerprint(cfg, label, model_path, b), overwrite=cfg.overwrite,
                                recorded={"backend": backend, "dtype": cfg.dtype, "batch_size": batch_size})
            done = {b.name: _existing(paths[b.name][0], cfg.samples_for(b)) for b in benches}
            todo = [b for b in benches if any(t.task_id not in done[b.name] for t in tasks[b.name])]
            if todo:
                logger.info("Model %s (%s): %d code benchmark(s) to sample with %s", label, model_path, len(todo),
                            backend)
                generator = make_generator(cfg, backend, model_path, load_tokenizer(model_path, cfg.trust_remote_code))
                for b in todo:
                    generate_samples(cfg, generator, b, tasks[b.name], paths[b.name][0], done[b.name], batch_size)
                release_generator(generator)
            for b in benches:
                samples, results = paths[b.name]
                records += score_file(samples, tasks[b.name], scorer, label=label, bench=b.name,
                                      k=cfg.samples_for(b), results=results)
                files[f"samples:{label}:{b.name}"], files[f"results:{label}:{b.name}"] = samples, results
    return summary_rows(records), files


def summary_rows(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One summary row per model x <benchmark>:base / :base+plus (no "mean" row: that is the maths headline)."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for record in records:
        groups.setdefault((record["model"], record["benchmark"]), []).append(record)
    return [row for group in groups.values() for row in summarize(group)]


def score_samples_file(cfg: Any, bench: Benchmark) -> tuple[list[dict[str, Any]], dict[str, Path]]:
    """``antisd eval --benchmarks PRESET --samples FILE``: (summary rows, files written)."""
    path = Path(cfg.samples).expanduser().resolve()
    label = re.sub(r"[^A-Za-z0-9._-]", "_", path.name.removesuffix(".jsonl").removesuffix(".samples")) or "samples"
    if cfg.limit:
        logger.warning("limit=%d does not apply to --samples: every task of the file is scored", cfg.limit)
    results = code_paths(cfg.output_dir, label, bench.name)[1]
    with _scorer(cfg) as scorer:
        records = score_file(path, load_tasks(bench.source), scorer, label=label, bench=bench.name,
                             k=cfg.n_samples, results=results)
    return summary_rows(records), {f"results:{label}:{bench.name}": results}
