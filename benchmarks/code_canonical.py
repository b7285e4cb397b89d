"""Canonical solutions against their own tests: every task of HumanEval+ and MBPP+ (base + plus)
and of the MBPP train split, scored through the sandbox like any candidate program.

    python benchmarks/code_canonical.py [--benchmarks humaneval_plus mbpp_plus mbpp_train]
                                        [--workers N] [--isolation auto|bwrap|none] [--cache-dir DIR]

Prints, per benchmark: tasks, passed (base, base+plus), the failing task ids with the first
failure, the time to compute expected outputs (the first run; later runs read the cache) and the
time to score. Exit status 1 if any canonical solution fails. Results: docs/code.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from antisd.code import CodeScorer, HarnessConfig, LocalExecutor, load_tasks
from antisd.code.data import BENCHMARKS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--benchmarks", nargs="+", default=list(BENCHMARKS), choices=BENCHMARKS)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--isolation", default="auto", choices=("auto", "bwrap", "none"))
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    failed_any = False
    with CodeScorer(LocalExecutor(args.isolation), HarnessConfig(cache_dir=args.cache_dir), workers=args.workers) as scorer:
        print(f"isolation: {scorer.executor.isolation}, workers: {scorer.workers}")
        for name in args.benchmarks:
            tasks = load_tasks(name)
            start = time.monotonic()
            unusable = scorer.prepare(tasks)
            prepared = time.monotonic() - start
            results = scorer.score_programs([(task, task.reference) for task in tasks])
            scored = time.monotonic() - start - prepared
            base = sum(1 for r in results if r is not None and r.passed(plus=False))
            plus = sum(1 for r in results if r is not None and r.passed(plus=True))
            print(f"{name}: {len(tasks)} tasks, base {base}/{len(tasks)}, base+plus {plus}/{len(tasks)}, "
                  f"expected outputs {prepared:.1f} s, scoring {scored:.1f} s")
            for task, result in zip(tasks, results):
                if result is None:
                    print(f"  {task.task_id}: unusable: {unusable.get(task.task_id)}")
                elif not result.passed():
                    bad = result.base if not result.base.passed else result.plus
                    print(f"  {task.task_id}: {bad.status}: {bad.failure}")
            failed_any = failed_any or plus < len(tasks)
    return 1 if failed_any else 0


if __name__ == "__main__":
    sys.exit(main())
