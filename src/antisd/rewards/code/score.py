"""Parallel scoring: many (task, program) pairs over a process pool sized to the machine.

`CodeScorer` owns an `Executor` (default `LocalExecutor()`), a `HarnessConfig` and a pool of
``workers`` processes (default: the CPUs this process may run on; ``workers=0`` scores in the
calling thread). Pool workers are trusted: each runs one sandboxed program at a time and judges
it (`harness.check_program`). The pool uses the ``forkserver`` start method, so it is safe to
create from a multi-threaded trainer; workers import antisd.rewards.code only (no torch).

- `prepare(tasks)`: compute (or load) every suite's expected outputs in parallel, once; returns
  {task_id: error} for tasks whose reference fails (unusable: score them and you get
  `CodeOutcome.UNUSABLE_TASK`).
- `score_programs(pairs)` -> [`ProgramResult` | None (unusable task)], in order.
- `judge_completions(tasks, completions, mode)` -> [(extraction, `ProgramResult` | None)]:
  extraction, the completion prefix for raw mode, scoring (``antisd.rewards.CodeReward``).
- `score_completions(tasks, completions, mode)` -> ([`CodeOutcome`], `CodeStats`). Rewards are
  ``outcome is PASSED``.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import os
from concurrent.futures.process import BrokenProcessPool
from collections.abc import Sequence
from typing import Any

from antisd.rewards.code.extract import EXTRACTED, CodeOutcome, CodeStats, extract_code
from antisd.rewards.code.harness import (HarnessConfig, ProgramResult, SuiteResult, UnusableTaskError, check_program,
                                 expected_for)
from antisd.rewards.code.sandbox import Executor, LocalExecutor
from antisd.rewards.code.tasks import CodeTask

logger = logging.getLogger(__name__)

_worker_state: dict[str, Any] = {}


def _init_worker(executor: Executor, config: HarnessConfig) -> None:
    _worker_state["executor"], _worker_state["config"] = executor, config


def _prepare_one(task: CodeTask) -> tuple[str, str | None]:
    errors = [f"{name}: {e.error}" for name in task.suites()
              if (e := expected_for(task, name, _worker_state["executor"], _worker_state["config"])).error]
    return task.task_id, "; ".join(errors) or None


def _score_one(task: CodeTask, program: str) -> ProgramResult | None:
    try:
        return check_program(task, program, _worker_state["executor"], _worker_state["config"])
    except UnusableTaskError as exc:
        logger.warning("%s", exc)
        return None


def _broken_prepare(task: CodeTask) -> tuple[str, str | None]:
    return task.task_id, "the scoring worker died while computing the expected outputs"


def _broken_score(task: CodeTask, program: str) -> ProgramResult:
    why = "the scoring worker died while scoring this program"
    suites = task.suites()
    plus = SuiteResult("sandbox_error", len(suites["plus"]), failure=why) if "plus" in suites else None
    return ProgramResult(task.task_id, SuiteResult("sandbox_error", len(suites["base"]), failure=why), plus,
                         "sandbox_error", 0.0)


def make_executor(sandbox: str = "auto") -> Executor:
    """The executor a ``code_sandbox`` setting names: "auto", "bwrap" or "none" (`LocalExecutor` isolation), or
    the http(s) URL of a Sandbox Fusion service (`SandboxFusionExecutor`)."""
    if sandbox.startswith(("http://", "https://")):
        from antisd.rewards.code.fusion import SandboxFusionExecutor

        return SandboxFusionExecutor(sandbox)
    return LocalExecutor(sandbox)


def default_workers() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def outcome_of(result: ProgramResult | None, *, plus: bool = True) -> CodeOutcome:
    """The `CodeOutcome` of a scored program (base, and plus when `plus` and the task has one)."""
    if result is None:
        return CodeOutcome.UNUSABLE_TASK
    suites = [result.base] + ([result.plus] if plus and result.plus is not None else [])
    if any(s.status == "sandbox_error" for s in suites):
        return CodeOutcome.SANDBOX_ERROR
    if all(s.passed for s in suites):
        return CodeOutcome.PASSED
    first_bad = next(s for s in suites if not s.passed)
    return CodeOutcome.TIMEOUT if first_bad.status == "timeout" else CodeOutcome.FAILED


class CodeScorer:
    """Scores programs in parallel (see the module docstring). Use as a context manager or `close()`."""

    def __init__(self, executor: Executor | None = None, config: HarnessConfig | None = None,
                 workers: int | None = None) -> None:
        self.executor = executor if executor is not None else LocalExecutor()
        self.config = config or HarnessConfig()
        self.workers = default_workers() if workers is None else int(workers)
        if self.workers < 0:
            raise ValueError(f"workers={workers} must be >= 0 (0: score in the calling thread)")
        self._pool: cf.ProcessPoolExecutor | None = None
        if isinstance(self.executor, LocalExecutor):
            _ = self.executor.isolation  # probe and log once, in the parent

    def _pool_now(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(
                max_workers=self.workers, mp_context=multiprocessing.get_context("forkserver"),
                initializer=_init_worker, initargs=(self.executor, self.config))
        return self._pool

    def _map(self, fn: Any, *iterables: Sequence[Any], broken: Any = None) -> list[Any]:
        """fn over the items in the pool, in order. A worker that dies (killed by the kernel, say) breaks
        the pool: its items are retried one at a time in a fresh pool, and an item that breaks that
        one too gets `broken(*args)`, so one item never ends the whole call."""
        items = list(zip(*iterables))
        if self.workers == 0:
            _init_worker(self.executor, self.config)
            return [fn(*args) for args in items]
        futures = [self._pool_now().submit(fn, *args) for args in items]
        results: list[Any] = []
        for args, future in zip(items, futures):
            try:
                results.append(future.result())
            except BrokenProcessPool:
                self.close()
                try:
                    results.append(self._pool_now().submit(fn, *args).result())
                except BrokenProcessPool:
                    self.close()
                    logger.warning("a scoring worker died twice on one item; it is scored as a sandbox error")
                    results.append(broken(*args) if broken is not None else None)
        return results

    def prepare(self, tasks: Sequence[CodeTask]) -> dict[str, str]:
        """Expected outputs of every suite of `tasks` (computed once, cached); {task_id: error} of unusable ones."""
        unique = list({task.task_id: task for task in tasks}.values())
        return {tid: err for tid, err in self._map(_prepare_one, unique, broken=_broken_prepare) if err}

    def score_programs(self, pairs: Sequence[tuple[CodeTask, str]]) -> list[ProgramResult | None]:
        """One `ProgramResult` per (task, program), in order; None where the task is unusable."""
        if not pairs:
            return []
        self.prepare([task for task, _ in pairs])
        return self._map(_score_one, [task for task, _ in pairs], [program for _, program in pairs],
                         broken=_broken_score)

    def judge_completions(self, tasks: Sequence[CodeTask], completions: Sequence[str], *,
                          mode: str = "fenced") -> list[tuple[str, ProgramResult | None]]:
        """Extract, build programs (raw mode: `task.completion_prefix` + completion), score.

        Returns (how, result) per completion: how is ``"extracted"`` with the program's
        `ProgramResult` (None: unusable task), or the extraction failure (a `CodeOutcome` value:
        no_code, empty, unclosed_fence) with None.
        """
        if len(tasks) != len(completions):
            raise ValueError(f"got {len(completions)} completions but {len(tasks)} tasks; they must pair up")
        judged: list[tuple[str, ProgramResult | None]] = []
        pairs, slots = [], []
        for index, (task, completion) in enumerate(zip(tasks, completions)):
            code, how = extract_code(completion, mode)
            judged.append((how, None))
            if code is not None:
                pairs.append((task, task.completion_prefix + code if mode == "raw" else code))
                slots.append(index)
        for index, result in zip(slots, self.score_programs(pairs)):
            judged[index] = (EXTRACTED, result)
        return judged

    def score_completions(self, tasks: Sequence[CodeTask], completions: Sequence[str], *, mode: str = "fenced",
                          plus: bool = True) -> tuple[list[CodeOutcome], CodeStats]:
        """`judge_completions` as one `CodeOutcome` per completion and their `CodeStats`; a reward is
        ``1.0 if outcome is CodeOutcome.PASSED else 0.0``."""
        stats = CodeStats()
        outcomes = []
        for how, result in self.judge_completions(tasks, completions, mode=mode):
            outcome = outcome_of(result, plus=plus) if how == EXTRACTED else CodeOutcome(how)
            stats.record(outcome, how == EXTRACTED)
            outcomes.append(outcome)
        return outcomes, stats

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> CodeScorer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

