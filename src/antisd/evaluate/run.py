"""run_eval: every model x benchmark, maths and code, through one runner loop (``run_models``), and ``main``,
the ``antisd eval`` command.

The loop (``antisd.evaluate.tasks`` has the protocol): per model, every benchmark's settings
fingerprint is checked and its samples file resumed (the finished problems are kept) before the
model loads; the model is loaded once for all its unfinished benchmarks, which are sampled a chunk
at a time (``antisd.evaluate.generation.sample_problems``, each chunk appended and fsynced); then
every benchmark is scored into summary records. Maths problem identity: ``antisd.evaluate.maths``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from antisd.cli.interrupt import install as install_sigint
from antisd.cli.interrupt import interrupted
from antisd.cli.validate import InputError, check_output_dir, one_line
from antisd.data.problems import DataError
from antisd.evaluate.benchmarks import EvalError
from antisd.evaluate.code import CodeKind, is_code_benchmark, open_scorer, score_samples_file
from antisd.evaluate.config import EvalConfig, parse_args
from antisd.evaluate.generation import (
    load_tokenizer,
    make_generator,
    release_generator,
    resolve_backend,
    sample_problems,
)
from antisd.evaluate.maths import MathsKind, distinct_problem_ids, resolve_id_column
from antisd.evaluate.results import fingerprint, prepare_results, score_results
from antisd.evaluate.summary import format_markdown, plot_pass_at_k, summarize, write_summary
from antisd.evaluate.tasks import EvalKind, EvalTask

logger = logging.getLogger("antisd.evaluate")  # one logger name for every submodule of the package

__all__ = ["EvalSummary", "check_chat_templates", "distinct_problem_ids", "eval_kept", "main", "resolve_id_column",
           "run_eval", "run_models", "sample_task"]


@dataclass
class EvalSummary:
    """What run_eval returns: the summary rows and the files written."""

    rows: list[dict[str, Any]]
    files: dict[str, Path]

    def row(self, model: str, benchmark: str) -> dict[str, Any]:
        for r in self.rows:
            if r["model"] == model and r["benchmark"] == benchmark:
                return r
        raise KeyError(f"no summary row for model {model!r}, benchmark {benchmark!r}")


def _finish(rows: list[dict[str, Any]], cfg: EvalConfig, files: dict[str, Path]) -> EvalSummary:
    files.update(write_summary(rows, cfg.output_dir))
    if cfg.plot and (plot := plot_pass_at_k(rows, Path(cfg.output_dir) / "pass_at_k.png")):
        files["plot"] = plot
    logger.info("Summary: %s", ", ".join(str(p) for p in files.values()))
    return EvalSummary(rows, files)


def sample_task(cfg: EvalConfig, generator: Any, label: str, task: EvalTask, done: set[str], batch_size: int) -> None:
    """Sample the unfinished problems of one model x benchmark, appending each chunk to its samples file."""
    from tqdm.auto import tqdm

    pending = sum(str(p["problem_id"]) not in done for p in task.problems)
    with tqdm(total=pending * task.k, desc=f"{label} {task.bench.name}", unit="sample", disable=not cfg.show_progress,
              dynamic_ncols=True) as bar:
        def append(chunk: list[tuple[Mapping[str, Any], list[dict[str, Any]]]]) -> None:
            task.samples.append([record for _, records in chunk for record in records])

        sample_problems(generator, task.problems, k=task.k, batch_size=batch_size, seed=cfg.seed, tag=task.bench.name,
                        done=done, on_chunk=append, progress=bar, rows=task.rows)


def run_models(cfg: EvalConfig, kinds: Sequence[EvalKind], backend: str,
               batch_size: int) -> tuple[list[dict[str, Any]], dict[str, Path]]:
    """Every model x benchmark of every kind: check, resume, sample (one model load per model), score;
    (summary rows of each kind in turn, files written)."""
    records: list[list[dict[str, Any]]] = [[] for _ in kinds]
    files: list[dict[str, Path]] = [{} for _ in kinds]
    for label, model_path in cfg.model_specs():
        tasks = [(i, kind.task(label, model_path, bench)) for i, kind in enumerate(kinds) for bench in kind.benches]
        for _, task in tasks:  # every fingerprint is checked before the model loads
            prepare_results(task.samples.path, fingerprint(cfg, label, model_path, task.bench), overwrite=cfg.overwrite,
                            recorded={"backend": backend, "dtype": cfg.dtype, "batch_size": batch_size})
        done = [task.samples.resume(task.k) for _, task in tasks]
        todo = [(task, finished) for (_, task), finished in zip(tasks, done)
                if any(str(p["problem_id"]) not in finished for p in task.problems)]
        if todo:
            logger.info("Model %s (%s): %d benchmark(s) to sample with %s", label, model_path, len(todo), backend)
            generator = make_generator(cfg, backend, model_path, load_tokenizer(model_path, cfg.trust_remote_code))
            for task, finished in todo:
                sample_task(cfg, generator, label, task, finished, batch_size)
            release_generator(generator)
        for i, task in tasks:
            records[i].extend(task.records())
            files[i].update(task.files())
    rows = [row for kind, mine in zip(kinds, records) for row in kind.summarize(mine)]
    return rows, {name: path for mine in files for name, path in mine.items()}


def check_chat_templates(cfg: EvalConfig) -> None:
    """With chat prompts, every model's tokenizer needs a chat template (the toy model's is supplied:
    ``antisd.lm.names``); raises EvalError (one line) before any settings file or sample is written."""
    if cfg.prompt_format != "chat":
        return
    for label, path in cfg.model_specs():
        try:
            tokenizer = load_tokenizer(path, cfg.trust_remote_code)
        except (OSError, ValueError) as e:
            raise EvalError(f"models ({label})={path!r}: the tokenizer could not be loaded ({one_line(e)[:300]})") from None
        if not getattr(tokenizer, "chat_template", None):
            raise EvalError(f"models ({label})={path!r}: its tokenizer has no chat template, and prompt_format is chat; "
                            "give --prompt_format plain (the problem text as the prompt) or a model with a chat template")


def run_eval(cfg: EvalConfig) -> EvalSummary:
    """Evaluate every model on every benchmark (resuming finished problems); write and return the summary.
    The start checks (output folder, chat templates, every settings fingerprint) run before any model loads."""
    try:
        check_output_dir(cfg.output_dir)
    except InputError as e:
        raise EvalError(str(e)) from None
    if cfg.rescore:
        return _finish(summarize(score_results(cfg.output_dir, timeout_s=cfg.verify_timeout_s,
                                               extraction=cfg.answer_extraction)), cfg, {})
    if cfg.samples:  # an EvalPlus samples file on a code preset (antisd.evaluate.code)
        rows, files = score_samples_file(cfg, cfg.benchmark_specs()[0])
        return _finish(rows, cfg, files)
    backend = resolve_backend(cfg.backend)
    check_chat_templates(cfg)
    batch_size = cfg.batch_size or (4096 if backend == "vllm" else 64)
    benches = cfg.benchmark_specs()
    maths = [b for b in benches if not is_code_benchmark(b)]
    code = [b for b in benches if is_code_benchmark(b)]
    with ExitStack() as stack:  # the code sandbox's pool, closed at the end
        kinds: list[EvalKind] = [MathsKind(cfg, maths)] if maths else []
        if code:
            kinds.append(CodeKind(cfg, code, stack.enter_context(open_scorer(cfg))))
        rows, files = run_models(cfg, kinds, backend, batch_size)
    return _finish(rows, cfg, files)


def main(argv: Sequence[str] | None = None) -> int:
    """``antisd eval`` / ``python -m antisd.evaluate``. Returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                            datefmt="%H:%M:%S")
        logging.getLogger("antisd").setLevel(logging.INFO)
    install_sigint()
    cfg = None
    try:
        cfg = parse_args(argv)  # config checks raise ValueError
        summary = run_eval(cfg)
    except (EvalError, DataError) as e:
        print(f"antisd eval: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return interrupted("eval", eval_kept(cfg))
    print(format_markdown(summary.rows))
    return 0


def eval_kept(cfg: EvalConfig | None) -> str:
    """What an interrupted ``antisd eval`` kept (the samples of finished problems, appended as they finish) and
    how to go on (the same command resumes: finished problems are skipped, an unfinished one is drawn anew)."""
    if cfg is None:
        return "before any sample was drawn; nothing was written"
    folder = Path(cfg.output_dir)
    files = sorted((folder / "samples").glob("*.jsonl")) + sorted((folder / "code").glob("*.samples.jsonl"))
    kept = 0
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as f:
            kept += sum(1 for line in f if line.endswith("\n") and line.strip())
    if not kept:
        return f"no sample was finished, so none was kept in {folder}; run the same command again to start"
    return (f"{kept} samples kept in {folder} ({len(files)} file(s)); run the same command again to resume "
            "(finished problems are skipped)")
