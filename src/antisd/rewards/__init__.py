"""Rewards for RL and evaluation: math answer checking (math-verify 0.9.0 underneath) and code execution.

    extract   answer extraction (last box; ``Answer:`` lines and "final answer is" phrases when
              the text has no box) and the strict format; pure, no math-verify
    checker   the timed in-process math-verify check of one pair, its `Outcome`; run as a
              script it is a verification worker (imports neither antisd nor torch)
    pool      `VerifierPool`: worker processes with a hard deadline, for other threads
    reward    `check_answer`, `math_reward`, `gold_parses`, `RewardStats`, `completion_text` and
              `MathReward`, the TRL GRPOTrainer reward function (gold answers checked first)
    code      `CodeReward`, the execution reward for code: each completion's program run in the
              sandbox against its task's tests (``antisd.rewards.code``; docs/code.md)

Every math check ends in exactly one `Outcome`; `RewardStats` counts them. Nothing raises: every
exception becomes ``Outcome.ERROR`` (KeyboardInterrupt and SystemExit still pass).
"""

from __future__ import annotations

from antisd.lazy import lazy_exports

_EXPORTS = {  # public name -> the module that defines it, imported on first use (so that importing one
    # submodule, as the sandbox's worker processes do, does not import the others)
    "MAX_ANSWER_CHARS": "antisd.rewards.checker",
    "Outcome": "antisd.rewards.checker",
    "CodeReward": "antisd.rewards.code.reward",
    "EXTRACTIONS": "antisd.rewards.extract",
    "extract_answer": "antisd.rewards.extract",
    "extract_boxed": "antisd.rewards.extract",
    "is_strict_format": "antisd.rewards.extract",
    "last_number": "antisd.rewards.extract",
    "VerifierPool": "antisd.rewards.pool",
    "default_pool": "antisd.rewards.pool",
    "MathReward": "antisd.rewards.reward",
    "RewardStats": "antisd.rewards.reward",
    "check_answer": "antisd.rewards.reward",
    "completion_text": "antisd.rewards.reward",
    "gold_parses": "antisd.rewards.reward",
    "math_reward": "antisd.rewards.reward",
}

__all__ = [
    "MAX_ANSWER_CHARS", "CodeReward", "MathReward", "Outcome", "RewardStats", "VerifierPool", "check_answer",
    "EXTRACTIONS", "completion_text", "default_pool", "extract_answer", "extract_boxed", "gold_parses",
    "is_strict_format", "last_number", "math_reward",
]


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
