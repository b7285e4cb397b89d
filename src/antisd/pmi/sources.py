"""Where rollouts come from: a file of rollouts (streamed), or completions sampled on problems.

``read_rollouts`` streams a .jsonl or .parquet file. The trainer's dump
(``<output_dir>/rollouts/rollouts.jsonl``) gives ``completion_ids`` and the ``teacher_prompt``
training used (kept as is); other files may give only ``completion`` text (tokenized once) and
``answer``/``solution``/``reward`` columns, from which the context is chosen as in training.

``sample_rollouts`` samples ``samples_per_problem`` completions per problem with
``antisd.lm.sampling.generate_completions`` (temperature T, top_k 0, top_p 1: the full tempered
distribution, as TRL's defaults), keeps the ids up to and including the first eos (TRL's
completion mask),
scores them with ``antisd.rewards.math_reward`` and chooses each rollout's privileged prompt
with ``antisd.method.context.build_teacher_contexts`` over the batch, with the problems' rollouts as
GRPO groups: a successful sibling, else the dataset solution, else the answer line.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from antisd.method.context import ContextConfig, build_teacher_contexts
from antisd.pmi.compute import PromptError, Rollout, SkipLog, tokenize_prompt
from antisd.lm.sampling import eos_token_ids, generate_completions, pad_token_id

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------ files


def _iter_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(row number, row) pairs; a row that cannot be parsed is returned as an error string."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        n = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=256):
            for row in batch.to_pylist():
                yield n, row
                n += 1
        return
    if path.suffix not in (".jsonl", ".json"):
        raise ValueError(f"rollouts={str(path)!r}: unsupported file type {path.suffix!r}; use .jsonl or .parquet")
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                yield n, f"line {n + 1} is not valid JSON ({e.msg})"
                continue
            yield n, row if isinstance(row, dict) else f"line {n + 1} is a JSON {type(row).__name__}, not an object"


def _text_or_none(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and v != v):
        return None
    s = str(v)
    return s if s.strip() else None


def row_to_rollout(row: dict[str, Any], n: int, name: str, *, data_cfg: Any, use_stored: bool = False) -> Rollout:
    """One file row as a Rollout. Raises ValueError with the reason for an unusable row."""
    from antisd.data.problems import make_prompt, text_id
    from antisd.rewards import completion_text

    prompt = row.get("prompt")
    problem = row.get(data_cfg.problem_column) if data_cfg.problem_column != "prompt" else None
    if prompt is None and isinstance(problem, str) and problem.strip():
        prompt = make_prompt(problem, data_cfg)
    if prompt is None or (isinstance(prompt, str) and not prompt.strip()):
        raise ValueError(f"has no prompt (a 'prompt' or {data_cfg.problem_column!r} column)")
    ids = row.get("completion_ids")
    completion = row.get("completion")
    completion = None if completion is None else completion_text(completion)
    reward = row.get("reward")
    if reward is None and isinstance(row.get("correct"), bool):
        reward = float(row["correct"])
    pid = _text_or_none(row.get(data_cfg.id_column or "problem_id")) or _text_or_none(row.get("problem_id"))
    stored = None
    if use_stored:
        stored = {k: row.get(k) for k in ("student_logps", "teacher_logps", "teacher_entropy", "tokens")}
    return Rollout(
        prompt=prompt, completion_ids=None if ids is None else [int(i) for i in ids], completion=completion,
        reward=None if reward is None else float(reward),
        answer=_text_or_none(row.get(data_cfg.answer_column)) or _text_or_none(row.get("answer")),
        solution=_text_or_none(row.get(data_cfg.solution_column or "solution")),
        problem_id=pid or text_id(json.dumps(prompt, sort_keys=True)),
        teacher_prompt=row.get("teacher_prompt"), context_given="teacher_prompt" in row,
        source=row.get("source"), correct=row.get("correct"),
        rollout_id=str(row.get("rollout_id") or (f"step{row['step']}-{name}:{n + 1}" if "step" in row else f"{name}:{n + 1}")),
        stored=stored,
    )


def read_rollouts(path: str | Path, *, data_cfg: Any, skips: SkipLog, use_stored: bool = False) -> Iterator[Rollout]:
    """Stream the rollouts of a .jsonl/.parquet file; unusable rows are skipped and counted.

    The path and file type are checked now (FileNotFoundError, ValueError), the rows lazily."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"rollouts={str(path)!r}: no such file")
    if path.suffix not in (".jsonl", ".json", ".parquet"):
        raise ValueError(f"rollouts={str(path)!r}: unsupported file type {path.suffix!r}; use .jsonl or .parquet")
    return _read_rollouts(path, data_cfg, skips, use_stored)


def _read_rollouts(path: Path, data_cfg: Any, skips: SkipLog, use_stored: bool) -> Iterator[Rollout]:
    warned = False
    for n, row in _iter_rows(path):
        if isinstance(row, str):
            skips.add("bad_row", f"{path.name}: {row}")
            continue
        if not warned and "teacher_prompt" not in row and (data_cfg.solution_column or "solution") not in row:
            logger.warning(
                "%s: rows have no %r column (worked solutions): the teacher's verified solution is a successful "
                "sibling in the same window or the answer line; rows with neither are skipped",
                path.name, data_cfg.solution_column or "solution",
            )
            warned = True
        try:
            yield row_to_rollout(row, n, path.name, data_cfg=data_cfg, use_stored=use_stored)
        except ValueError as e:
            skips.add("bad_row", f"{path.name} row {n + 1} {e}")


# ------------------------------------------------------------------------------------ problems


def load_problem_rows(data_cfg: Any, skips: SkipLog) -> list[dict[str, Any]]:
    """Problems via antisd.data.problems.load_problems; if some rows are bad, they are skipped (listed) and
    the others kept."""
    from antisd.data.problems import DataValidationError, load_problems, load_raw, map_problems

    try:
        ds = load_problems(data_cfg)
        rows = ds.to_list()
    except DataValidationError as e:
        logger.warning("%s; skipping those rows and keeping the others", e)
        raw = load_raw(data_cfg)
        one = dataclasses.replace(data_cfg, max_samples=None, shuffle_seed=None)
        order = list(range(len(raw)))
        if data_cfg.shuffle_seed is not None:
            import random

            random.Random(data_cfg.shuffle_seed).shuffle(order)
        rows = []
        for i in order:
            if data_cfg.max_samples is not None and len(rows) >= data_cfg.max_samples:
                break
            try:
                rows.extend(map_problems(raw.select([i]), one).to_list())
            except DataValidationError as err:
                skips.add("bad_row", " ".join(str(err).split("\n", 1)[-1].split()))
    if rows and all(r.get("solution") is None for r in rows):
        logger.warning(
            "%s: no worked solutions (column %r missing or empty): the teacher's verified solution is a "
            "successful sibling or the answer line (answer_template)", data_cfg.dataset_name, data_cfg.solution_column,
        )
    return rows


def sample_rollouts(
    model: torch.nn.Module, tokenizer: Any, problems: Sequence[dict[str, Any]], context_cfg: ContextConfig, *,
    samples_per_problem: int, max_new_tokens: int, temperature: float, batch_size: int,
    problems_per_batch: int, seed: int, skips: SkipLog, answer_extraction: str = "strict",
) -> Iterator[Rollout]:
    """Sample, score and contextualise rollouts, ``problems_per_batch`` problems at a time.

    Completions are generated ``batch_size`` at a time; the batch starting at rollout g0 of the
    problem batch starting at problem b0 is seeded ``seed * 1_000_003 + b0 * 1009 + g0``.
    """
    from antisd.rewards import math_reward

    eos = eos_token_ids(model, tokenizer)
    pad = pad_token_id(tokenizer, eos)
    for b0 in range(0, len(problems), problems_per_batch):
        batch: list[tuple[int, dict[str, Any], list[int]]] = []
        for k, row in enumerate(problems[b0:b0 + problems_per_batch], start=b0):
            try:
                batch.append((k, row, tokenize_prompt(tokenizer, row["prompt"])))
            except PromptError as e:
                skips.add("no_chat_template" if "chat template" in str(e) else "bad_prompt",
                          f"problem {row.get('problem_id', k)}: {e}")
        flat = [(k, row, p) for k, row, p in batch for _ in range(samples_per_problem)]
        if not flat:
            continue
        seeds = (seed * 1_000_003 + b0 * 1009 + g0 for g0 in range(0, len(flat), batch_size))
        comps = [c.ids_with_eos for c in generate_completions(
            model, [p for _, _, p in flat], batch_seeds=seeds, batch_size=batch_size, max_new_tokens=max_new_tokens,
            temperature=temperature, eos_ids=eos, pad_id=pad)]
        texts = [tokenizer.decode(c, skip_special_tokens=True) for c in comps]
        rewards = [math_reward(t, row["answer"], extraction=answer_extraction) for t, (_, row, _) in zip(texts, flat)]
        contexts = build_teacher_contexts(
            [row["prompt"] for _, row, _ in flat], texts, rewards, [k for k, _, _ in flat],
            problem_ids=[row.get("problem_id", k) for k, row, _ in flat],
            solutions=[row.get("solution") for _, row, _ in flat], answers=[row.get("answer") for _, row, _ in flat],
            config=context_cfg, seed=seed + b0,
        )
        for j, ((k, row, _), ids, text, rew, ctx) in enumerate(zip(flat, comps, texts, rewards, contexts)):
            yield Rollout(
                prompt=row["prompt"], completion_ids=ids, completion=text, reward=rew, answer=row.get("answer"),
                solution=row.get("solution"), problem_id=str(row.get("problem_id", k)),
                teacher_prompt=ctx.prompt, context_given=True, source=ctx.source, correct=ctx.correct,
                rollout_id=f"{row.get('problem_id', k)}#{j % samples_per_problem}",
            )
