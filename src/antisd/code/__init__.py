"""Code-execution rewards and evaluation: extraction, sandboxed execution, EvalPlus-style tests.

Layout (details in each module and in docs/code.md):

- `extract`: code from a completion (last fenced python block, or raw), `CodeOutcome`, `CodeStats`.
- `tasks`: `CodeTask` with `IOSuite` (EvalPlus inputs) or `AssertSuite` (MBPP assertions).
- `data`: the shipped HumanEval+, MBPP+ and MBPP-train tasks (`load_tasks`).
- `sandbox`: the `Executor` interface, `LocalExecutor` (bubblewrap or a logged fallback), `Limits`.
- `fusion`: `SandboxFusionExecutor`, the same interface over a Sandbox Fusion service.
- `compare`: EvalPlus's output comparison on plain data; `harness`: expected outputs and verdicts.
- `score`: `CodeScorer`, a process pool; `samples`: EvalPlus-format samples files and pass@k.
- `spec` and `dataset` (not imported here: the pool's workers stay free of ``datasets``): user
  tests cells -> task specs -> `CodeTask`; the trainer's code dataset and built-in ``mbpp_train``.

The reward for training is ``antisd.rewards.CodeReward``; the eval presets ``antisd.evaluate.code``.
"""

from antisd.code.data import BENCHMARKS, load_tasks, read_rows
from antisd.code.extract import CodeOutcome, CodeStats, extract_code
from antisd.code.fusion import SandboxFusionExecutor
from antisd.code.harness import HarnessConfig, ProgramResult, SuiteResult, UnusableTaskError, check_program
from antisd.code.sandbox import Executor, Limits, LocalExecutor, RunResult
from antisd.code.samples import SamplesReport, score_samples
from antisd.code.score import CodeScorer, outcome_of
from antisd.code.tasks import AssertSuite, CodeTask, IOSuite

__all__ = [
    "BENCHMARKS", "AssertSuite", "CodeOutcome", "CodeScorer", "CodeStats", "CodeTask", "Executor", "HarnessConfig",
    "IOSuite", "Limits", "LocalExecutor", "ProgramResult", "RunResult", "SamplesReport", "SandboxFusionExecutor",
    "SuiteResult", "UnusableTaskError", "check_program", "extract_code", "load_tasks", "outcome_of", "read_rows",
    "score_samples",
]
