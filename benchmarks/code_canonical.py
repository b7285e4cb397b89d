"""Canonical solutions against their own tests, and samples files scored by antisd and EvalPlus.

    # every task of HumanEval+ / MBPP+ (base + plus) and MBPP train, canonical program only
    python benchmarks/code_canonical.py [--benchmarks humaneval_plus mbpp_plus mbpp_train]
                                        [--workers N] [--isolation auto|bwrap|none] [--cache-dir DIR]

    # three samples per task in EvalPlus's format: canonical, `return None`, an object equal to anything
    python benchmarks/code_canonical.py --write-samples DIR
    # scoring throughput: N completions on MBPP train (half the reference in a fence, half wrong), against a
    # bare interpreter start and (--vs-toy-step) a step of the main job, measured in the same run
    python benchmarks/code_canonical.py --throughput 128 [--vs-toy-step]
    # score a samples file (per-task results to JSON); compare with EvalPlus's eval_results.json
    python benchmarks/code_canonical.py --samples FILE --benchmark mbpp_plus [--results-out OUT.json]
                                        [--evalplus-results eval_results.json]

Prints per benchmark: tasks, passed (base, base+plus), failing task ids with the first failure,
time to compute expected outputs (first run; later runs read the cache) and time to score. Exit
status 1 if a canonical solution fails. Results: docs/code.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import time
from pathlib import Path

from antisd.rewards.code import CodeScorer, HarnessConfig, LocalExecutor, load_tasks, score_samples
from antisd.data.code_benchmarks import BENCHMARKS

ALWAYS_EQUAL = "class _A:\n    def __eq__(self, o):\n        return True\n    def __ne__(self, o):\n        return False\n"


def canonical(scorer: CodeScorer, names: list[str]) -> bool:
    ok = True
    for name in names:
        tasks = load_tasks(name)
        start = time.monotonic()
        unusable = scorer.prepare(tasks)
        prepared = time.monotonic() - start
        results = scorer.score_programs([(task, task.reference) for task in tasks])
        scored = time.monotonic() - start - prepared
        base = sum(1 for r in results if r is not None and r.passed(plus=False))
        plus = sum(1 for r in results if r is not None and r.passed(plus=True))
        print(f"{name}: {len(tasks)} tasks, base {base}/{len(tasks)}, base+plus {plus}/{len(tasks)}, "
              f"expected outputs {prepared:.1f} s, scoring {scored:.1f} s", flush=True)
        for task, result in zip(tasks, results):
            if result is None:
                print(f"  {task.task_id}: unusable: {unusable.get(task.task_id)}")
            elif not result.passed():
                bad = result.base if not result.base.passed else result.plus
                print(f"  {task.task_id}: {bad.status}: {bad.failure}")
        ok = ok and plus == len(tasks)
    return ok


def write_samples(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("humaneval_plus", "mbpp_plus"):
        with open(directory / f"{name}_samples.jsonl", "w", encoding="utf-8") as handle:
            for task in load_tasks(name):
                for program in (task.reference, f"def {task.entry_point}(*args):\n    return None\n",
                                ALWAYS_EQUAL + f"def {task.entry_point}(*args):\n    return _A()\n"):
                    handle.write(json.dumps({"task_id": task.task_id, "solution": program}) + "\n")
        print(f"wrote {directory / f'{name}_samples.jsonl'}")


def _evalplus_verdicts(path: Path) -> dict[str, list[tuple[bool, bool]]]:
    data = json.loads(path.read_text())
    return {task_id: [(s["base_status"] == "pass", s["base_status"] == "pass" and s["plus_status"] == "pass")
                      for s in samples] for task_id, samples in data["eval"].items()}


def samples(scorer: CodeScorer, path: Path, benchmark: str, out: Path | None, evalplus: Path | None) -> None:
    start = time.monotonic()
    report = score_samples(path, load_tasks(benchmark), scorer, ks=(1,))
    print(f"{path.name}: {report.n_scored} samples scored in {time.monotonic() - start:.1f} s, "
          f"{len(report.skipped)} skipped; pass@1 base {report.pass_at_k['base'].get(1, float('nan')):.4f}, "
          f"base+plus {report.pass_at_k['base+plus'].get(1, float('nan')):.4f}")
    ours = {tid: list(zip(t.base, t.plus)) for tid, t in report.tasks.items()}
    if out is not None:
        out.write_text(json.dumps({tid: {"base": t.base, "plus": t.plus, "details": t.details}
                                   for tid, t in report.tasks.items()}, indent=1))
    if evalplus is None:
        return
    theirs = _evalplus_verdicts(evalplus)
    same = differ = 0
    for task_id in sorted(set(ours) | set(theirs)):
        a, b = ours.get(task_id, []), theirs.get(task_id, [])
        if a == b:
            same += 1
        else:
            differ += 1
            print(f"  {task_id}: antisd (base, base+plus) per sample {a}, evalplus {b}")
    print(f"agreement: {same} tasks identical, {differ} differ (per sample, base and base+plus)")


def toy_step_seconds(steps: int = 4) -> float:
    """Median seconds of a step of the main job (toy world, 16 problems x 8 rollouts), in this process."""
    sys.path.insert(0, str(Path(__file__).parent))
    import toy_step

    from antisd.toyworld.defaults import default_train_argv

    return toy_step.run_variant("fast", steps, default_train_argv() + ["--model_name_or_path", "toyworld"])["step"]


def throughput(scorer: CodeScorer, n: int, with_toy_step: bool = False) -> None:
    fence = "`" * 3
    tasks = load_tasks("mbpp_train")[: max(1, n // 2)]
    pairs = [(task, f"Solution:\n{fence}python\n{task.reference}\n{fence}") for task in tasks]
    pairs += [(task, f"{fence}python\ndef {task.entry_point}(*args):\n    return 0\n{fence}") for task in tasks]
    pairs = pairs[:n]
    scorer.prepare([task for task, _ in pairs])  # expected values are computed once, not per step
    bare = bare_python_start_ms(scorer.executor.python)
    print(f"bare `python -I -S -c pass` start-up: {bare:.1f} ms (median of 20, one at a time)", flush=True)
    workers = max(scorer.workers, 1)
    for attempt in (1, 2):
        start = time.monotonic()
        outcomes, stats = scorer.score_completions([t for t, _ in pairs], [c for _, c in pairs])
        elapsed = time.monotonic() - start
        per_program = 1000 * elapsed * workers / max(stats.n_extracted, 1)
        print(f"run {attempt}: {len(pairs)} completions in {elapsed:.2f} s = {100 * elapsed / len(pairs):.2f} s per 100 "
              f"({stats.n_passed} passed, {stats.n_failed} failed, {stats.n_timeout} timeouts); "
              f"{per_program:.1f} ms of a worker per program = {per_program / bare:.2f}x a bare interpreter start",
              flush=True)
        if with_toy_step:
            step = toy_step_seconds()
            print(f"run {attempt}: a toy step (main job, median of 3) takes {step:.2f} s: scoring its {len(pairs)} "
                  f"completions is {elapsed / step:.2f} of it", flush=True)


def bare_python_start_ms(python: str, n: int = 20) -> float:
    """Median wall time of starting and ending ``python -I -S -c pass`` (the floor of a one-process-per-program sandbox)."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        subprocess.run([python, "-I", "-S", "-c", "pass"], check=True)
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--benchmarks", nargs="+", default=list(BENCHMARKS), choices=BENCHMARKS)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--isolation", default="auto", choices=("auto", "bwrap", "none"))
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--write-samples", type=Path, default=None)
    parser.add_argument("--samples", type=Path, default=None)
    parser.add_argument("--benchmark", choices=("humaneval_plus", "mbpp_plus"), default="mbpp_plus")
    parser.add_argument("--results-out", type=Path, default=None)
    parser.add_argument("--evalplus-results", type=Path, default=None)
    parser.add_argument("--throughput", type=int, default=None)
    parser.add_argument("--vs-toy-step", action="store_true",
                        help="with --throughput: also time a step of the main job in the same run and print the share")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.write_samples is not None:
        write_samples(args.write_samples)
        return 0
    with CodeScorer(LocalExecutor(args.isolation), HarnessConfig(cache_dir=args.cache_dir), workers=args.workers) as scorer:
        print(f"isolation: {scorer.executor.isolation}, workers: {scorer.workers}", flush=True)
        if args.throughput is not None:
            throughput(scorer, args.throughput, args.vs_toy_step)
            return 0
        if args.samples is not None:
            samples(scorer, args.samples, args.benchmark, args.results_out, args.evalplus_results)
            return 0
        return 0 if canonical(scorer, args.benchmarks) else 1


if __name__ == "__main__":
    sys.exit(main())
