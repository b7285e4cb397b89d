"""Code-execution rewards and evaluation: extraction, sandboxed execution, EvalPlus-style tests.

Layout (details in each module and in docs/code.md):

- `extract`: code from a completion (last fenced python block, or raw), `CodeOutcome`, `CodeStats`.
- `tasks`: `CodeTask` with `IOSuite` (EvalPlus inputs) or `AssertSuite` (MBPP assertions).
- `executor`: the `Executor` interface, `Limits`, `RunResult`.
- `sandbox`: `LocalExecutor` (bubblewrap or a logged fallback), over `forkserver` (the trusted side of a
  warm fork server), `bwrap`, `cgroup`, `seccomp` and `records` (the capped record reader).
- `driver`: the program that runs inside the sandbox (stdlib only), shipped as one text by `bundle`;
  `driver.wire` is the plain-data codec both sides share.
- `fusion`: `SandboxFusionExecutor`, the same interface over a Sandbox Fusion service.
- `compare`: EvalPlus's output comparison on plain data; `harness`: expected outputs and verdicts.
- `score`: `CodeScorer`, a process pool; `samples`: EvalPlus-format samples files and pass@k.
- `spec`: user tests cells -> task specs -> `CodeTask`; `reward`: `CodeReward`, the reward for training.

The shipped HumanEval+, MBPP+ and MBPP-train tasks are ``antisd.data.code_benchmarks`` (`load_tasks`), the
trainer's code dataset ``antisd.data.code_problems``.

The reward for training is ``antisd.rewards.CodeReward``; the eval presets ``antisd.evaluate.code``.
"""

from __future__ import annotations

from antisd.lazy import lazy_exports

_EXPORTS = {  # public name -> the module that defines it, imported on first use (so that importing one
    # submodule, as the sandbox's worker processes do, does not import the others)
    "BENCHMARKS": "antisd.data.code_benchmarks",
    "load_tasks": "antisd.data.code_benchmarks",
    "read_rows": "antisd.data.code_benchmarks",
    "CodeOutcome": "antisd.rewards.code.extract",
    "CodeStats": "antisd.rewards.code.extract",
    "extract_code": "antisd.rewards.code.extract",
    "SandboxFusionExecutor": "antisd.rewards.code.fusion",
    "HarnessConfig": "antisd.rewards.code.harness",
    "ProgramResult": "antisd.rewards.code.harness",
    "SuiteResult": "antisd.rewards.code.harness",
    "UnusableTaskError": "antisd.rewards.code.harness",
    "check_program": "antisd.rewards.code.harness",
    "Executor": "antisd.rewards.code.executor",
    "Limits": "antisd.rewards.code.executor",
    "LocalExecutor": "antisd.rewards.code.sandbox",
    "RunResult": "antisd.rewards.code.executor",
    "SamplesReport": "antisd.rewards.code.samples",
    "score_samples": "antisd.rewards.code.samples",
    "CodeScorer": "antisd.rewards.code.score",
    "outcome_of": "antisd.rewards.code.score",
    "AssertSuite": "antisd.rewards.code.tasks",
    "CodeTask": "antisd.rewards.code.tasks",
    "IOSuite": "antisd.rewards.code.tasks",
}

__all__ = [
    "BENCHMARKS", "AssertSuite", "CodeOutcome", "CodeScorer", "CodeStats", "CodeTask", "Executor", "HarnessConfig",
    "IOSuite", "Limits", "LocalExecutor", "ProgramResult", "RunResult", "SamplesReport", "SandboxFusionExecutor",
    "SuiteResult", "UnusableTaskError", "check_program", "extract_code", "load_tasks", "outcome_of", "read_rows",
    "score_samples",
]


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
