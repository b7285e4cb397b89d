"""Held-out accuracy of a toy policy: batched sampling at temperature 1, scored by the math reward.

``accuracy`` uses ``antisd.rewards.math_reward`` (math-verify on the last ``\\boxed{}``), the
reward real data gets. ``strict_accuracy`` also asks ``antisd.rewards.is_strict_format``
(exactly one box and nothing after it, a format rule many math-RL setups use), so answer-after-answer
exploits show.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence

import torch

from antisd.lm.sampling import eos_token_ids, generate_completions

logger = logging.getLogger(__name__)


def get_reward_fn() -> Callable[[str, str], float]:
    """The project's math reward, ``antisd.rewards.math_reward`` (math-verify, last box)."""
    from antisd.rewards import math_reward

    return math_reward


def strict_reward(completion: str, answer: str) -> float:
    """``math_reward`` times the strict format rule: exactly one box, and nothing after it."""
    from antisd.rewards import is_strict_format, math_reward

    return float(is_strict_format(completion)) * math_reward(completion, answer)


def _batch_seeds(seed: int) -> Iterator[int]:
    """The seed of each sampling batch: successive draws from ``torch.Generator().manual_seed(seed)``."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        yield int(torch.randint(0, 2**31 - 1, (1,), generator=gen))


def sample_completions(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    batch_size: int = 128,
    seed: int = 0,
) -> tuple[list[str], list[list[int]]]:
    """Sample one completion per prompt (``antisd.lm.sampling.generate_completions``, batches of
    ``batch_size`` seeded by ``_batch_seeds(seed)``); returns texts and the completion token ids
    with eos/padding removed (eos itself excluded).

    The global torch RNG is left seeded by the last batch (not restored): training runs that
    evaluate between steps have always continued from that state.
    """
    pad = tokenizer.pad_token_id
    prompt_ids = tokenizer(list(prompts))["input_ids"] if len(prompts) else []
    completions = generate_completions(
        model, prompt_ids, batch_seeds=_batch_seeds(seed), batch_size=batch_size,
        max_new_tokens=max_new_tokens, temperature=temperature, eos_ids=eos_token_ids(model, tokenizer), pad_id=pad,
        isolate_rng=False,
    )
    ids_out = [[t for t in c.ids if t != pad] for c in completions]
    return [tokenizer.decode(ids, skip_special_tokens=True) for ids in ids_out], ids_out


def evaluate_accuracy(
    model,
    tokenizer,
    rows: Sequence[dict],
    *,
    max_new_tokens: int = 96,
    temperature: float = 1.0,
    batch_size: int = 128,
    seed: int = 0,
    reward_fn: Callable[[str, str], float] | None = None,
    samples_out: list[dict] | None = None,
) -> dict[str, float]:
    """Accuracy over ``rows`` (dicts with prompt, answer, family), one sample each.

    ``samples_out``, when given, is extended with one dict per row (prompt, answer, completion,
    score, strict), so that what the policy writes can be read next to the figures.

    Returns ``eval/accuracy``, ``eval/strict_accuracy``, ``eval/stderr``, per-family accuracies,
    ``eval/mean_tokens``, ``eval/truncated_frac`` (no eos within the budget), ``eval/n`` and
    ``eval/seconds``.
    """
    reward_fn = reward_fn or get_reward_fn()
    t0 = time.perf_counter()
    texts, ids = sample_completions(
        model, tokenizer, [r["prompt"] for r in rows], max_new_tokens=max_new_tokens,
        temperature=temperature, batch_size=batch_size, seed=seed,
    )
    scores = [reward_fn(t, r["answer"]) for t, r in zip(texts, rows)]
    from antisd.rewards import is_strict_format

    strict = [float(is_strict_format(t)) * s for t, s in zip(texts, scores)]
    if samples_out is not None:
        samples_out.extend({"prompt": r["prompt"], "answer": r["answer"], "completion": t, "score": s, "strict": st}
                           for r, t, s, st in zip(rows, texts, scores, strict))
    fam: dict[str, list[float]] = defaultdict(list)
    for s, r in zip(scores, rows):
        fam[r.get("family", "all")].append(s)
    n = len(rows)
    acc = sum(scores) / n
    out = {
        "eval/accuracy": acc,
        "eval/strict_accuracy": sum(strict) / n,
        "eval/stderr": (acc * (1 - acc) / n) ** 0.5,
        "eval/mean_tokens": sum(len(i) for i in ids) / n,
        "eval/truncated_frac": sum(len(i) >= max_new_tokens for i in ids) / n,
        "eval/n": float(n),
        "eval/seconds": time.perf_counter() - t0,
    }
    for f, v in sorted(fam.items()):
        out[f"eval/accuracy_{f}"] = sum(v) / len(v)
    return out
