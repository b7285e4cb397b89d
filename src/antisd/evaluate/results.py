"""Results files: scoring completions, the per-sample JSONL files, their settings fingerprint, re-scoring.

Crash safety: samples are appended a chunk at a time and fsynced (``append_records``); a torn last
line or an unfinished problem is dropped on the next run (``antisd.evaluate.samples.SamplesFile``);
whole-file rewrites and the settings file are written atomically (``antisd.files.atomic_write``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from antisd.evaluate.benchmarks import Benchmark, EvalError
from antisd.evaluate.samples import SamplesFile, finished_groups
from antisd.files import atomic_write, leftovers
from antisd.rewards import Outcome, check_answer, extract_answer

if TYPE_CHECKING:
    from antisd.evaluate.config import EvalConfig

logger = logging.getLogger("antisd.evaluate")  # one logger name for every submodule of the package

RESULTS_VERSION = 2  # 2: sample i of problem p seeded by (seed, benchmark, p, i); ids from a file's id column


def score_completion(completion: str, answer: str, timeout_s: float = 5.0, extraction: str = "strict") -> dict[str, Any]:
    """Extracted answer, how it was found, the verifier's outcome and correct (bool). Never raises.
    `extraction`: strict or flexible (``antisd.rewards.extract_answer``)."""
    pred, how = extract_answer(completion, extraction)
    outcome = check_answer(completion, answer, timeout_s=timeout_s, extraction=extraction)
    return {"extracted_answer": pred, "extraction": how, "outcome": outcome.value, "correct": outcome is Outcome.CORRECT}


def check_gold(answer: str, timeout_s: float = 5.0) -> str:
    """"ok" when math-verify parses the reference answer and accepts it boxed as itself;
    "gold_unparseable" when it does not parse (every sample then scores 0);
    "self_check_<outcome>" when it parses but does not verify against itself."""
    if check_answer("\\boxed{0}", answer, timeout_s=timeout_s) is Outcome.GOLD_UNPARSEABLE:
        return "gold_unparseable"
    itself = check_answer(f"\\boxed{{{answer}}}", answer, timeout_s=timeout_s)
    return "ok" if itself is Outcome.CORRECT else f"self_check_{itself.value}"


def results_path(output_dir: str | Path, model: str, benchmark: str) -> Path:
    return Path(output_dir) / "samples" / f"{model}__{benchmark}.jsonl"


def meta_path(results: Path) -> Path:
    return results.with_name(results.name.removesuffix(".jsonl") + ".config.json")


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Records of a results file; a partial last line (a crash mid-write), a bad line or a duplicate (a sample
    already read: the same model, benchmark, problem_id and sample_index) is skipped, counted and logged
    (``SamplesFile.records``)."""
    return SamplesFile(path).records()


def complete_problems(records: Iterable[Mapping[str, Any]], k: int) -> dict[str, list[Mapping[str, Any]]]:
    """problem_id -> its k records in sample order, for problems with exactly samples 0..k-1."""
    return finished_groups(records, k)


def append_records(path: Path, records: Iterable[Mapping[str, Any]]) -> None:
    """Append records to `path` (one JSON line each) and fsync (``SamplesFile.append``)."""
    SamplesFile(path).append(records)


def fingerprint(cfg: EvalConfig, label: str, model_path: str, bench: Benchmark) -> dict[str, Any]:
    """The settings that change which samples a results file holds; a rerun must match them."""
    fp = {"version": RESULTS_VERSION, "model": label, "model_path": model_path, "benchmark": bench.name,
          "source": bench.source, "split": bench.split, "config": bench.config,
          "problem_column": bench.problem_column, "answer_column": bench.answer_column, "id_column": bench.id_column,
          "answer_format": bench.answer_format, "n_samples": cfg.samples_for(bench), "temperature": cfg.temperature,
          "top_p": cfg.top_p, "top_k": cfg.top_k, "max_new_tokens": cfg.max_new_tokens, "seed": cfg.seed,
          "prompt_format": cfg.prompt_format, "system_prompt": cfg.system_prompt if cfg.prompt_format == "chat" else None,
          "chat_template_kwargs": cfg.chat_template_kwargs}
    if cfg.answer_extraction != "strict":  # absent when strict: files written before the setting existed still match
        fp["answer_extraction"] = cfg.answer_extraction
    return json.loads(json.dumps(fp))


def prepare_results(path: Path, fp: Mapping[str, Any], *, overwrite: bool, recorded: Mapping[str, Any]) -> None:
    """Check (or write) the fingerprint beside `path`; raise EvalError naming differing fields.

    `recorded` settings (backend, dtype, batch size) may change between runs, with a warning: samples
    are then drawn from the same seeds, but batched kernels may round differently (docs/reliability.md).
    """
    meta = meta_path(path)
    SamplesFile(path).clean_leftovers()  # rewrites a crash interrupted (the files themselves are whole)
    for leftover in leftovers(meta):
        leftover.unlink(missing_ok=True)
    if overwrite:
        for p in (path, meta):
            p.unlink(missing_ok=True)
    if meta.exists() and not (path.exists() and path.stat().st_size):
        # settings of a start that failed or was stopped before its first sample: nothing to protect
        logger.info("%s: no samples yet; its settings file %s is replaced by this run's", path.name, meta.name)
        meta.unlink()
    if meta.exists():
        try:
            stored = json.loads(meta.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise EvalError(f"{meta} is not valid JSON ({e}); pass --overwrite to discard {path.name} and it") from None
        old = stored.get("fingerprint", {})
        diffs = [f"{key}: {old.get(key)!r} -> {value!r}" for key, value in fp.items() if old.get(key) != value]
        if diffs:
            raise EvalError(f"{path} holds samples drawn with other settings ({'; '.join(diffs)}); "
                            "pass --overwrite to discard them or use another --output_dir")
        changed = {key: (stored.get("recorded", {}).get(key), value) for key, value in recorded.items()
                   if stored.get("recorded", {}).get(key) != value}
        if changed:
            logger.warning("%s: resuming with other %s; new samples come from the same seeds, but may differ in "
                           "rounding from those an unchanged run would draw", path.name,
                           ", ".join(f"{key} ({a!r} -> {b!r})" for key, (a, b) in changed.items()))
        return
    if path.exists():
        raise EvalError(f"{path} exists without its settings file {meta.name}; pass --overwrite to discard it")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(meta, json.dumps({"fingerprint": dict(fp), "recorded": dict(recorded)}, indent=2) + "\n")


def score_results(path: str | Path, *, timeout_s: float = 5.0, write: bool = True,
                  extraction: str = "strict") -> list[dict[str, Any]]:
    """Re-score stored completions (a results file, or every ``*.jsonl`` in a folder or in its
    ``samples/``) with `extraction` and the current verifier; rewrite the files when `write`."""
    path = Path(path)
    files = [path] if path.is_file() else sorted((path / "samples" if (path / "samples").is_dir() else path).glob("*.jsonl"))
    if not files:
        raise EvalError(f"no results files (*.jsonl) at {path}")
    out: list[dict[str, Any]] = []
    gold_cache: dict[str, str] = {}
    for file in files:
        samples = SamplesFile(file)
        records = samples.records()
        for record in records:
            answer = str(record["answer"])
            if answer not in gold_cache:
                gold_cache[answer] = check_gold(answer, timeout_s)
            record.update(score_completion(str(record.get("completion") or ""), answer, timeout_s, extraction),
                          gold_check=gold_cache[answer])
        if write:
            samples.rewrite(records)
        logger.info("Re-scored %d samples in %s", len(records), file)
        out.extend(records)
    return out
