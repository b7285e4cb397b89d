"""The public checks (`check_answer`, `math_reward`), outcome counts and TRL's reward function.

`check_answer` extracts the final answer (``antisd.rewards.extract``) and compares it with the
gold answer: in the main thread (and when no `VerifierPool` is passed) in-process under a
SIGALRM deadline (``antisd.rewards.checker``), elsewhere, or whenever a pool is passed, in a
worker process (``antisd.rewards.pool``). Every call ends in exactly one `Outcome`;
`RewardStats` counts them. Nothing raises: every exception becomes ``Outcome.ERROR``
(KeyboardInterrupt and SystemExit still pass).
"""

from __future__ import annotations

import enum
import logging
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from antisd.rewards.checker import MAX_ANSWER_CHARS, Outcome, verify_inline
from antisd.rewards.counts import OutcomeCounts
from antisd.rewards.extract import EXTRACTIONS, extract_answer, is_strict_format
from antisd.rewards.pool import VerifierPool, default_pool

logger = logging.getLogger(__name__)


_COUNTER_OF = {
    Outcome.CORRECT: "n_correct",
    Outcome.WRONG: "n_wrong",
    Outcome.NO_ANSWER: "n_no_answer",
    Outcome.UNCLOSED_BOX: "n_unclosed_box",
    Outcome.FORMAT_VIOLATION: "n_format_violations",
    Outcome.GOLD_UNPARSEABLE: "n_gold_unparseable",
    Outcome.PRED_UNPARSEABLE: "n_pred_unparseable",
    Outcome.TIMEOUT: "n_timeouts",
    Outcome.ERROR: "n_errors",
}


@dataclass
class RewardStats(OutcomeCounts):
    """Counts of `Outcome`s (``antisd.rewards.counts``): every counter but n_calls counts one `Outcome`, and they
    sum to n_calls; ``as_dict`` logs ``{prefix}/n_calls``, ``{prefix}/accuracy`` and ``{prefix}/<outcome>_frac``
    (prefix ``reward``). Not locked: give each thread its own and `merge` them."""

    OUTCOMES: ClassVar[Mapping[enum.Enum, str]] = _COUNTER_OF
    SUCCESS: ClassVar[enum.Enum | None] = Outcome.CORRECT
    PREFIX: ClassVar[str] = "reward"

    n_correct: int = 0
    n_wrong: int = 0
    n_no_answer: int = 0
    n_unclosed_box: int = 0
    n_format_violations: int = 0
    n_gold_unparseable: int = 0
    n_pred_unparseable: int = 0
    n_timeouts: int = 0
    n_errors: int = 0


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def check_answer(
    completion: str,
    answer: str,
    *,
    timeout_s: float = 5.0,
    pool: VerifierPool | None = None,
    extraction: str = "strict",
) -> Outcome:
    """Outcome of extracting an answer from `completion` (``extract_answer`` with `extraction`: strict or
    flexible) and comparing it with gold `answer`.

    Uses `pool` if given, else in-process math-verify in the main thread and `default_pool()`
    elsewhere (see the module docstring). Never raises on any `completion` or `answer`
    (KeyboardInterrupt/SystemExit aside); a `timeout_s` that is not a positive finite number
    is a programming error and raises ValueError.
    """
    if not 0 < timeout_s < math.inf:
        raise ValueError(f"timeout_s={timeout_s} must be a positive finite number of seconds")
    try:
        if not isinstance(answer, str):
            answer = str(answer)  # datasets sometimes store integer answers
        if not answer.strip() or len(answer) > MAX_ANSWER_CHARS:
            return Outcome.GOLD_UNPARSEABLE  # never parsed: no reward, whatever the completion
        pred, how = extract_answer(completion, extraction)
        if pred is None:
            return Outcome.UNCLOSED_BOX if how == "unclosed_box" else Outcome.NO_ANSWER
        if len(pred) > MAX_ANSWER_CHARS:
            return Outcome.PRED_UNPARSEABLE
        if pool is None and _in_main_thread():
            return verify_inline(answer, pred, timeout_s)
        return (pool or default_pool()).verify(answer, pred, timeout_s)
    except Exception:  # noqa: BLE001 - a reward must never raise
        logger.warning("answer check failed", exc_info=True)
        return Outcome.ERROR


def gold_parses(answer: str, *, timeout_s: float = 5.0, pool: VerifierPool | None = None) -> bool:
    """Whether math-verify parses the gold `answer` (strictly; ``antisd.rewards.checker``): the
    gold side of `check_answer` with a probe prediction. False also for an empty answer or one
    longer than `MAX_ANSWER_CHARS`; a timeout counts as parsed (it is counted as a timeout)."""
    return check_answer("\\boxed{0}", answer, timeout_s=timeout_s, pool=pool) is not Outcome.GOLD_UNPARSEABLE


def math_reward(
    completion: str,
    answer: str,
    *,
    timeout_s: float = 5.0,
    stats: RewardStats | None = None,
    pool: VerifierPool | None = None,
    extraction: str = "strict",
) -> float:
    """1.0 if math-verify judges the extracted answer equal to gold `answer`, else 0.0.

    Records the `Outcome` in `stats` if given. Never raises, never hangs (see `check_answer`).
    """
    outcome = check_answer(completion, answer, timeout_s=timeout_s, pool=pool, extraction=extraction)
    if stats is not None:
        stats.record(outcome)
    return 1.0 if outcome is Outcome.CORRECT else 0.0


def completion_text(completion: Any) -> str:
    """Text of a TRL completion: a string, or chat messages (the last assistant message's
    content, a string or a list of ``{"type": "text", "text": ...}`` parts). Else ""."""
    if isinstance(completion, str):
        return completion
    if not isinstance(completion, (list, tuple)) or not completion:
        return ""
    messages = [m for m in completion if isinstance(m, dict)]
    assistant = [m for m in messages if m.get("role") == "assistant"] or messages
    content = assistant[-1].get("content") if assistant else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


class MathReward:
    """TRL GRPOTrainer reward function: 1.0 for a correct final answer, else 0.0.

    `answer_extraction="flexible"` also takes the last number of a response that has no box and no answer
    line (``antisd.rewards.extract``), for small models that answer ``2 + 3 = 5``.
    `format_strict=True` also requires `is_strict_format` (exactly one box, nothing but
    whitespace, a closing math delimiter, a period and `end_token` after it), so a policy
    cannot pad text after its answer or hedge with several boxes; a correct answer in the
    wrong format scores 0 and counts as ``format_violation``. Cumulative counts are in
    ``self.stats``; under TRL each batch's fractions also go to ``log_metric`` and each
    completion's outcome to the ``math_outcome`` column of ``log_extra``.

    Gold answers are checked before they are trusted (`gold_parses`, once per distinct
    answer): every completion of a row whose gold does not parse is ``gold_unparseable``
    (reward 0), the batch's fraction of such completions is logged as
    ``reward/gold_unparseable_frac``, and their problem ids (the ``problem_id`` column, else
    the answers) are warned about once each.
    """

    def __init__(
        self,
        *,
        timeout_s: float = 5.0,
        format_strict: bool = False,
        end_token: str | None = None,
        pool: VerifierPool | None = None,
        metric_prefix: str = "math_reward",
        answer_extraction: str = "strict",
    ) -> None:
        if not 0 < timeout_s < math.inf:
            raise ValueError(f"timeout_s={timeout_s} must be a positive finite number of seconds per completion")
        if answer_extraction not in EXTRACTIONS:
            raise ValueError(f"answer_extraction={answer_extraction!r}: expected one of {list(EXTRACTIONS)}")
        self.answer_extraction = answer_extraction
        self.__name__ = "math_reward"  # TRL reads reward_func.__name__
        self.timeout_s = timeout_s
        self.format_strict = format_strict
        self.end_token = end_token
        self.pool = pool
        self.metric_prefix = metric_prefix
        self.stats = RewardStats()
        self._gold_ok: dict[str, bool] = {}
        self._warned: set[str] = set()

    def gold_ok(self, answer: Any) -> bool:
        """`gold_parses` of `answer`, computed once per distinct answer."""
        answer = str(answer)
        if answer not in self._gold_ok:
            self._gold_ok[answer] = gold_parses(answer, timeout_s=self.timeout_s, pool=self.pool)
        return self._gold_ok[answer]

    def score(self, completion: Any, answer: str) -> Outcome:
        if not self.gold_ok(answer):
            return Outcome.GOLD_UNPARSEABLE
        text = completion_text(completion)
        if self.format_strict and not is_strict_format(text, self.end_token):
            return Outcome.FORMAT_VIOLATION
        return check_answer(text, answer, timeout_s=self.timeout_s, pool=self.pool, extraction=self.answer_extraction)

    def _warn_unparseable(self, answers: list[str], ids: list[Any] | None) -> None:
        bad = [str(ids[i]) if ids is not None and i < len(ids) else repr(str(a)[:40])
               for i, a in enumerate(answers) if not self.gold_ok(a)]
        new = sorted(set(bad) - self._warned)
        if new:
            self._warned.update(new)
            logger.warning("%d problem(s) with a gold answer math-verify cannot parse: their completions never earn "
                           "reward (counted in reward/gold_unparseable_frac): %s%s. antisd data check FILE lists "
                           "every such row.", len(new), ", ".join(new[:20]), " ..." if len(new) > 20 else "")

    def __call__(self, prompts: list[Any], completions: list[Any], answer: list[str], **kwargs: Any) -> list[float]:
        if len(completions) != len(answer):
            raise ValueError(f"got {len(completions)} completions but {len(answer)} answers; they must pair up")
        outcomes = [self.score(completion, gold) for completion, gold in zip(completions, answer)]
        self._warn_unparseable(answer, kwargs.get("problem_id"))
        batch = RewardStats()
        for outcome in outcomes:
            batch.record(outcome)
        self.stats.merge(batch)
        if callable(log_metric := kwargs.get("log_metric")):
            for name, value in batch.as_dict(self.metric_prefix).items():
                log_metric(name, value)
            unparseable = sum(not self.gold_ok(a) for a in answer) / max(len(answer), 1)
            log_metric("reward/gold_unparseable_frac", unparseable)
        if callable(log_extra := kwargs.get("log_extra")):
            log_extra("math_outcome", [outcome.value for outcome in outcomes])
        return [1.0 if outcome is Outcome.CORRECT else 0.0 for outcome in outcomes]
