"""``CodeReward``: the execution reward for TRL's GRPOTrainer (docs/code.md).

Each completion is paired with its task through the dataset's ``tests`` column (the canonical spec
of ``antisd.data.code_problems``; TRL passes the dataset's columns to reward functions as keyword
arguments). Its code is extracted (``antisd.rewards.code.extract_code``: the last fenced python block, or
in raw mode the completion appended to the task's completion prefix), run in the sandbox against
the task's tests by one ``CodeScorer`` per process, and judged in the trusted process.

Reward per completion:

    1.0                      every test passes (base and plus tests)
    0.0                      otherwise (no code, a failing test, a timeout)
    passed / total           with ``fraction=True``: the share of the task's tests (base and plus
                             together) that passed; 1.0 exactly when every test passes
    None                     the sandbox failed (the machine, not the program) or the task is
                             unusable (its reference fails its tests): TRL gives the rollout no
                             reward and no learning signal; counted and warned about, never a 0 or 1

A rollout is "correct" for the privileged context (``AntiSDConfig.correct_threshold``) when its
reward reaches the threshold: 0.5 (the default) with 0/1 rewards, and it must be 1.0 with
``fraction=True`` (``antisd train`` sets it), so that only a rollout that passes every test is
shown to the teacher as a solution.

Metrics of each batch through TRL's ``log_metric``: ``code_reward/n_calls``, ``/accuracy``,
``/extracted_frac`` and ``/<outcome>_frac`` for every ``CodeOutcome`` (``CodeStats.as_dict``),
and ``code_reward/tests_passed_frac`` (mean share of tests passed); each completion's outcome goes
to the ``code_outcome`` column of ``log_extra``. Cumulative counts are in ``self.stats``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from antisd.rewards.code.spec import task_from_spec
from antisd.rewards.code.extract import EXTRACTED, CodeOutcome, CodeStats
from antisd.rewards.code.executor import Executor
from antisd.rewards.code.harness import ProgramResult
from antisd.rewards.code.score import CodeScorer, default_workers, outcome_of
from antisd.rewards.code.tasks import CodeTask
from antisd.rewards.reward import completion_text

logger = logging.getLogger(__name__)

NO_REWARD = (CodeOutcome.SANDBOX_ERROR, CodeOutcome.UNUSABLE_TASK)


def tests_passed(result: ProgramResult, plus: bool = True) -> tuple[int, int]:
    """(tests passed, tests run) of a scored program: base, and plus when `plus` and the task has it."""
    suites = [result.base] + ([result.plus] if plus and result.plus is not None else [])
    return sum(s.n_passed for s in suites), sum(s.n_tests for s in suites)


def process_workers() -> int:
    """Sandbox workers for one training process: the CPUs shared among the node's processes
    (``LOCAL_WORLD_SIZE``, set by accelerate and torchrun), at least 1."""
    return max(1, default_workers() // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


class CodeReward:
    """TRL GRPOTrainer reward function: runs each completion's code against its task's tests.

    `fraction`: the share of tests passed instead of 1.0/0.0. `mode`: "fenced" (chat prompts) or
    "raw" (completion-style prompts). `plus`: the plus tests count too (the default). `scorer`: a
    ``CodeScorer`` to use (default: one made on first use with `executor` and `workers`, default
    ``process_workers()``; close it with ``close()``).
    """

    def __init__(self, *, fraction: bool = False, mode: str = "fenced", plus: bool = True,
                 scorer: CodeScorer | None = None, executor: Executor | None = None, workers: int | None = None,
                 metric_prefix: str = "code_reward") -> None:
        if mode not in ("fenced", "raw"):
            raise ValueError(f"mode={mode!r}; expected 'fenced' or 'raw'")
        self.__name__ = "code_reward"  # TRL reads reward_func.__name__
        self.fraction, self.mode, self.plus, self.metric_prefix = fraction, mode, plus, metric_prefix
        self._scorer, self._executor, self._workers = scorer, executor, workers
        self._owns_scorer = scorer is None
        self._tasks: dict[str, CodeTask] = {}
        self.unusable: dict[str, str] = {}  # spec -> why its task is unusable
        self.stats = CodeStats()
        self._warned: set[str] = set()

    @property
    def scorer(self) -> CodeScorer:
        if self._scorer is None:
            workers = process_workers() if self._workers is None else self._workers
            self._scorer = CodeScorer(self._executor, workers=workers)
            logger.info("Code reward: %d sandbox worker(s) in this process", self._scorer.workers)
        return self._scorer

    def task(self, spec: str, task_id: Any = None) -> CodeTask:
        """The `CodeTask` of a tests spec (made once per distinct spec)."""
        if spec not in self._tasks:
            self._tasks[spec] = task_from_spec(spec, str(task_id) if task_id is not None else f"task-{len(self._tasks)}")
        return self._tasks[spec]

    def prepare(self, specs: Sequence[str], ids: Sequence[Any] | None = None) -> dict[str, str]:
        """Compute (or load) every task's expected results once; {problem id: why} of the unusable tasks
        (no tests, or a reference that fails them)."""
        ids = list(ids) if ids is not None else [None] * len(specs)
        tasks = {spec: self.task(spec, pid) for spec, pid in zip(specs, ids)}
        broken = self.scorer.prepare(list(tasks.values()))
        by_task_id = {task.task_id: spec for spec, task in tasks.items()}
        for task_id, error in broken.items():
            self.unusable[by_task_id[task_id]] = error
        return {str(pid if pid is not None else self.task(spec).task_id): self.unusable[spec]
                for spec, pid in zip(specs, ids) if spec in self.unusable}

    def score(self, completions: Sequence[Any], specs: Sequence[str],
              ids: Sequence[Any] | None = None) -> tuple[list[float | None], list[CodeOutcome], CodeStats, list[float]]:
        """(rewards, outcomes, their `CodeStats`, share of tests passed) of a batch (the module docstring)."""
        if len(completions) != len(specs):
            raise ValueError(f"got {len(completions)} completions but {len(specs)} tests cells; they must pair up")
        ids = list(ids) if ids is not None else [None] * len(specs)
        tasks = [self.task(spec, pid) for spec, pid in zip(specs, ids)]
        texts = [completion_text(c) for c in completions]
        judged = self.scorer.judge_completions(tasks, texts, mode=self.mode)
        rewards: list[float | None] = []
        outcomes, shares, stats = [], [], CodeStats()
        for (how, result), task in zip(judged, tasks):
            outcome = outcome_of(result, plus=self.plus) if how == EXTRACTED else CodeOutcome(how)
            passed, total = tests_passed(result, self.plus) if result is not None else (0, 1)
            share = passed / max(total, 1)
            stats.record(outcome, how == EXTRACTED)
            outcomes.append(outcome)
            shares.append(share)
            if outcome in NO_REWARD:
                rewards.append(None)
                self._warn(task, outcome)
            elif self.fraction:
                rewards.append(1.0 if outcome is CodeOutcome.PASSED else min(share, 1.0 - 1e-9))
            else:
                rewards.append(1.0 if outcome is CodeOutcome.PASSED else 0.0)
        return rewards, outcomes, stats, shares

    def _warn(self, task: CodeTask, outcome: CodeOutcome) -> None:
        key = f"{outcome.value}:{task.task_id}"
        if key not in self._warned:
            self._warned.add(key)
            why = "the sandbox could not run its programs" if outcome is CodeOutcome.SANDBOX_ERROR else \
                "its reference fails its own tests"
            logger.warning("code reward: task %s gets no reward (%s); counted in %s/%s_frac", task.task_id, why,
                           self.metric_prefix, outcome.value)

    def __call__(self, prompts: list[Any], completions: list[Any], tests: list[str] | None = None,
                 **kwargs: Any) -> list[float | None]:
        if tests is None:
            raise ValueError("the code reward needs the dataset's 'tests' column (load code data with "
                             "antisd.data.code_problems.load_code_problems or code_problems_dataset)")
        rewards, outcomes, batch, shares = self.score(completions, tests, kwargs.get("problem_id"))
        self.stats.merge(batch)
        if callable(log_metric := kwargs.get("log_metric")):
            for name, value in batch.as_dict(self.metric_prefix).items():
                log_metric(name, value)
            log_metric(f"{self.metric_prefix}/tests_passed_frac", sum(shares) / max(len(shares), 1))
        if callable(log_extra := kwargs.get("log_extra")):
            log_extra("code_outcome", [outcome.value for outcome in outcomes])
        return rewards

    def close(self) -> None:
        """Stop the scorer's worker processes (a scorer passed in is the caller's to close)."""
        if self._scorer is not None and self._owns_scorer:
            self._scorer.close()
            self._scorer = None
