"""Rewards for RL and evaluation: math answer checking (math-verify 0.9.0 underneath) and code execution.

    extract   answer extraction (last box; ``Answer:`` lines and "final answer is" phrases when
              the text has no box) and the strict format; pure, no math-verify
    checker   the timed in-process math-verify check of one pair, its `Outcome`; run as a
              script it is a verification worker (imports neither antisd nor torch)
    pool      `VerifierPool`: worker processes with a hard deadline, for other threads
    reward    `check_answer`, `math_reward`, `gold_parses`, `RewardStats`, `completion_text` and
              `MathReward`, the TRL GRPOTrainer reward function (gold answers checked first)
    code      `CodeReward`, the execution reward for code: each completion's program run in the
              sandbox against its task's tests (``antisd.code``; docs/code.md)

Every math check ends in exactly one `Outcome`; `RewardStats` counts them. Nothing raises: every
exception becomes ``Outcome.ERROR`` (KeyboardInterrupt and SystemExit still pass).
"""

from antisd.rewards.checker import MAX_ANSWER_CHARS, Outcome
from antisd.rewards.code import CodeReward
from antisd.rewards.extract import EXTRACTIONS, extract_answer, extract_boxed, is_strict_format, last_number
from antisd.rewards.pool import VerifierPool, default_pool
from antisd.rewards.reward import (
    MathReward,
    RewardStats,
    check_answer,
    completion_text,
    gold_parses,
    math_reward,
)

__all__ = [
    "MAX_ANSWER_CHARS", "CodeReward", "MathReward", "Outcome", "RewardStats", "VerifierPool", "check_answer",
    "EXTRACTIONS", "completion_text", "default_pool", "extract_answer", "extract_boxed", "gold_parses",
    "is_strict_format", "last_number", "math_reward",
]
