"""run_eval (every model x benchmark, resuming finished problems) and ``main``, the ``antisd eval`` command.

Problem identity: a local file's ``id`` column is used when no id column was named
(``resolve_id_column``); without ids, a problem is named by a hash of its text, and a text repeated
in the file is kept as a separate problem (``distinct_problem_ids``: ``p-<hash>``, ``p-<hash>#2``, ...);
an id column that repeats an id is refused.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from antisd.data.problems import DataConfig, DataError, load_raw
from antisd.evaluate.benchmarks import Benchmark, EvalError, load_benchmark
from antisd.evaluate.code import is_code_benchmark, run_code_benchmarks, score_samples_file
from antisd.evaluate.config import EvalConfig, parse_args
from antisd.evaluate.generation import (
    load_tokenizer,
    make_generator,
    release_generator,
    resolve_backend,
    sample_problems,
)
from antisd.evaluate.results import (
    _read_records,
    _write_jsonl,
    append_records,
    complete_problems,
    fingerprint,
    prepare_results,
    read_records,
    results_path,
    score_results,
)
from antisd.evaluate.summary import format_markdown, plot_pass_at_k, summarize, write_summary
from antisd.cli.interrupt import install as install_sigint
from antisd.cli.interrupt import interrupted
from antisd.cli.validate import InputError, check_output_dir, one_line

logger = logging.getLogger("antisd.evaluate")  # one logger name for every submodule of the package


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


def _eval_benchmark(cfg: EvalConfig, generator: Any, label: str, bench: Benchmark, problems: list[dict[str, Any]],
                    path: Path, done: set[str], batch_size: int) -> None:
    """Sample the unfinished problems of one model x benchmark, appending each chunk to `path`."""
    from tqdm.auto import tqdm

    k = cfg.samples_for(bench)
    pending = sum(str(p["problem_id"]) not in done for p in problems)
    with tqdm(total=pending * k, desc=f"{label} {bench.name}", unit="sample", disable=not cfg.show_progress,
              dynamic_ncols=True) as bar:
        def append(chunk: list[tuple[Mapping[str, Any], list[dict[str, Any]]]]) -> None:
            append_records(path, [{"model": label, "benchmark": bench.name, "problem_id": str(problem["problem_id"]),
                                   "n_samples": k, "answer": str(problem["answer"]), **row}
                                  for problem, rows in chunk for row in rows])

        sample_problems(generator, problems, k=k, batch_size=batch_size, seed=cfg.seed, tag=bench.name,
                        timeout_s=cfg.verify_timeout_s, done=done, on_chunk=append, progress=bar,
                        extraction=cfg.answer_extraction)


def _existing(path: Path, k: int) -> set[str]:
    """Finished problem ids in `path`; rewrites it without partial problems or broken lines."""
    if not path.exists():
        return set()
    records, bad = _read_records(path)
    complete = complete_problems(records, k)
    kept = [r for rows in complete.values() for r in rows]
    if bad or len(kept) != len(records):
        logger.info("%s: dropping %d sample(s) of unfinished problems and %d broken line(s)", path,
                    len(records) - len(kept), bad)
        _write_jsonl(path, kept)
    return set(complete)


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
    code_benches = [b for b in cfg.benchmark_specs() if is_code_benchmark(b)]
    benches = [resolve_id_column(b) for b in cfg.benchmark_specs() if not is_code_benchmark(b)]
    data = {b.name: distinct_problem_ids([dict(r) for r in load_benchmark(
        b, limit=cfg.limit, prompt_format=cfg.prompt_format, system_prompt=cfg.system_prompt)], b) for b in benches}
    files: dict[str, Path] = {}
    records: list[Mapping[str, Any]] = []
    for label, model_path in cfg.model_specs():
        paths = {b.name: results_path(cfg.output_dir, label, b.name) for b in benches}
        for b in benches:  # every fingerprint is checked before the model loads
            prepare_results(paths[b.name], fingerprint(cfg, label, model_path, b), overwrite=cfg.overwrite,
                            recorded={"backend": backend, "dtype": cfg.dtype, "batch_size": batch_size})
        done = {b.name: _existing(paths[b.name], cfg.samples_for(b)) for b in benches}
        todo = [b for b in benches if any(str(p["problem_id"]) not in done[b.name] for p in data[b.name])]
        if todo:
            logger.info("Model %s (%s): %d benchmark(s) to sample with %s", label, model_path, len(todo), backend)
            tokenizer = load_tokenizer(model_path, cfg.trust_remote_code)
            generator = make_generator(cfg, backend, model_path, tokenizer)
            for b in todo:
                _eval_benchmark(cfg, generator, label, b, data[b.name], paths[b.name], done[b.name], batch_size)
            release_generator(generator)
        for b in benches:
            wanted = {str(p["problem_id"]) for p in data[b.name]}
            finished = complete_problems(read_records(paths[b.name]), cfg.samples_for(b))
            records.extend(r for pid, rows in finished.items() if pid in wanted for r in rows)
            files[f"samples:{label}:{b.name}"] = paths[b.name]
    code_rows, code_files = run_code_benchmarks(cfg, code_benches, backend, batch_size)
    return _finish(summarize(records) + code_rows, cfg, {**files, **code_files})


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
