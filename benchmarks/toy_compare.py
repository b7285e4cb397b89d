"""GRPO vs SD vs AntiSD (and the no-gate and reverse-KL ablations) on the toy world.

Same base policy, same budget and seeds for every method; held-out accuracy is measured every
``--eval_every`` steps on the same held-out problems (one sample each at temperature 1).
Prints and writes a table (final held-out accuracy mean and spread over seeds, peak and step of
peak, steps for AntiSD to reach GRPO's final accuracy, response length, deliberation-token
rate) to ``OUT/compare.md`` and ``OUT/compare.json``, and the curves to ``OUT/compare.png``.

CPU:  python benchmarks/toy_compare.py --out runs/compare            (defaults below)
      python benchmarks/toy_compare.py --out runs/compare --jobs 2   (2 runs at a time, 1 thread each:
                                                  ~1.5x the throughput of one 2-thread run on 2 cores)
      python benchmarks/toy_compare.py --steps 30 --seeds 0 1 2 --base tiny   (smoke)
GPU:  the same; the toy world is CPU-sized.

Runs already in ``OUT/compare.json`` are skipped, so an interrupted benchmark resumes where it
stopped and extra seeds can be added later.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from transformers import TrainerCallback

from antisd.cli.main import build_train_args, run_train, train_inputs
from antisd.toyworld.defaults import TOY_TRAIN, default_train_argv, evaluate_toy_policy, resolve_builtins

logger = logging.getLogger("toy_compare")

METHODS: dict[str, list[str]] = {
    "grpo": ["--method", "grpo"],
    "sd": ["--method", "sd"],
    # the paper's configurations: the built-in default carries a guard (token_term_rollouts: correct)
    "antisd": ["--method", "antisd", "--token_term_rollouts", "all"],
    "antisd_nogate": ["--method", "antisd", "--token_term_rollouts", "all", "--gate", "none"],
    "antisd_rkl": ["--method", "antisd", "--token_term_rollouts", "all", "--token_signal", "antisd_rkl"],
}


class HeldoutEval(TrainerCallback):
    """Held-out accuracy every N steps (and at step 0) on the base policy's evaluation problems."""

    def __init__(self, base_path: str, every: int, n: int, max_new_tokens: int):
        self.base_path, self.every, self.n, self.max_new_tokens = base_path, every, n, max_new_tokens
        self.curve: list[dict] = []

    def _eval(self, step: int, model, tok) -> None:
        ev = evaluate_toy_policy(model, tok, self.base_path, max_new_tokens=self.max_new_tokens, n=self.n)
        self.curve.append({"step": step, "acc": ev["eval/accuracy"], "len": ev["eval/mean_tokens"],
                           "strict": ev["eval/strict_accuracy"], "n": self.n})
        logger.info("step %d: held-out accuracy %.3f (strict %.3f, %.1f tokens)", step, ev["eval/accuracy"],
                    ev["eval/strict_accuracy"], ev["eval/mean_tokens"])

    def on_train_begin(self, args, state, control, model=None, processing_class=None, **kw):
        self._eval(0, model, processing_class)

    def on_step_end(self, args, state, control, model=None, processing_class=None, **kw):
        if state.global_step % self.every == 0:
            self._eval(state.global_step, model, processing_class)


def run_one(method: str, seed: int, a) -> dict:
    out = Path(a.out) / f"{method}-s{seed}"
    argv = default_train_argv() + METHODS[method] + [
        "--model_name_or_path", f"toyworld:{a.base}", "--seed", str(seed), "--max_steps", str(a.steps),
        "--per_device_train_batch_size", str(a.problems * TOY_TRAIN["num_generations"]), "--output_dir", str(out), "--save_strategy", "no",
        "--report_to", "none", "--logging_steps", "1", "--disable_tqdm", "true",
    ]
    model_args, data_cfg, reward_args, config = build_train_args(train_inputs(argv))
    model_args, data_cfg = resolve_builtins(model_args, data_cfg)
    cb = HeldoutEval(model_args.model_name_or_path, a.eval_every, a.eval_n, config.max_completion_length)
    t0 = time.time()
    trainer = run_train(model_args, data_cfg, config, reward_args, callbacks=[cb], report=False)
    logs = [h for h in trainer.state.log_history if "loss" in h]
    tail = logs[-max(1, len(logs) // 5):]
    gate_on = [h["gate/on"] for h in logs if "gate/on" in h]
    return {
        "method": method, "seed": seed, "curve": cb.curve, "seconds": time.time() - t0,
        "train_len": statistics.fmean(h["completions/mean_length"] for h in tail),
        "delib": statistics.fmean(h.get("deliberation/token_frac", math.nan) for h in tail),
        "gate_on": statistics.fmean(gate_on) if gate_on else math.nan,
    }


def _init_worker(threads: int) -> None:
    """Worker-process set-up: logging, and a fixed torch thread count (so parallel runs do not
    oversubscribe the cores)."""
    import torch

    if sys.platform == "linux":  # die with the parent (a killed parent would otherwise leave workers training)
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s[%(process)d]: %(message)s")


def _mean_sd(xs: list[float]) -> str:
    return f"{statistics.fmean(xs):.3f} ± {statistics.stdev(xs):.3f}" if len(xs) > 1 else f"{xs[0]:.3f}"


def _paired_delta(rs: list[dict], base: list[dict]) -> str:
    """Final accuracy minus GRPO's, paired by seed: mean ± standard error over seeds."""
    ref = {r["seed"]: r["curve"][-1]["acc"] for r in base}
    d = [r["curve"][-1]["acc"] - ref[r["seed"]] for r in rs if r["seed"] in ref]
    if len(d) < 2:
        return "n/a"
    return f"{statistics.fmean(d):+.3f} ± {statistics.stdev(d) / math.sqrt(len(d)):.3f}"


def _gate_on(rs: list[dict]) -> str:
    """Share of logged steps with the gate on (``—`` for methods without a gate)."""
    xs = [r["gate_on"] for r in rs if not math.isnan(r["gate_on"])]
    return f"{statistics.fmean(xs):.2f}" if xs else "—"


def table(results: list[dict]) -> tuple[str, dict]:
    by: dict[str, list[dict]] = {}
    for r in sorted(results, key=lambda r: (list(METHODS).index(r["method"]), r["seed"])):
        by.setdefault(r["method"], []).append(r)
    grpo_final = statistics.fmean(r["curve"][-1]["acc"] for r in by.get("grpo", [])) if "grpo" in by else None
    rows = ["| method | seeds | held-out acc, start | final (mean ± sd over seeds) | final − GRPO (paired, ± s.e.) "
            "| peak of mean curve (step) | steps to GRPO's final | response tokens (train, last 20%) "
            "| deliberation rate | gate on |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    summary = {}
    for m, rs in by.items():
        steps = [p["step"] for p in rs[0]["curve"]]
        mean_curve = [statistics.fmean(r["curve"][i]["acc"] for r in rs) for i in range(len(steps))]
        peak = max(range(len(steps)), key=lambda i: mean_curve[i])
        reach = next((steps[i] for i, v in enumerate(mean_curve) if i > 0 and grpo_final is not None and v >= grpo_final), None)
        finals = [r["curve"][-1]["acc"] for r in rs]
        summary[m] = {"steps": steps, "mean_curve": mean_curve, "finals": finals, "reach": reach}
        delta = _paired_delta(rs, by["grpo"]) if "grpo" in by and m != "grpo" else "—"
        rows.append(
            f"| {m} | {len(rs)} | {mean_curve[0]:.3f} | {_mean_sd(finals)} | {delta} | {mean_curve[peak]:.3f} ({steps[peak]}) "
            f"| {reach if reach is not None else 'not reached'} | {statistics.fmean(r['train_len'] for r in rs):.1f} "
            f"| {statistics.fmean(r['delib'] for r in rs):.3f} | {_gate_on(rs)} |")
    return "\n".join(rows), summary


def plot(summary: dict, results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for i, m in enumerate(summary):
        color = f"C{i}"
        rs = [r for r in results if r["method"] == m]
        for ax, key in zip(axes, ("acc", "len")):
            for r in rs:  # thin: each seed; thick: the mean over seeds
                ax.plot([p["step"] for p in r["curve"]], [p[key] for p in r["curve"]], color=color, alpha=0.25, lw=0.8)
            mean = [statistics.fmean(r["curve"][j][key] for r in rs) for j in range(len(summary[m]["steps"]))]
            ax.plot(summary[m]["steps"], mean, color=color, lw=2, label=m)
    axes[0].set_ylabel("held-out accuracy")
    axes[1].set_ylabel("held-out response tokens")
    for ax in axes:
        ax.set_xlabel("RL step")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/compare")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=100, help="RL steps per run (same for every method)")
    ap.add_argument("--problems", type=int, default=8, help="problems per step (x num_generations of the default, 8)")
    ap.add_argument("--eval_every", type=int, default=20)
    ap.add_argument("--eval_n", type=int, default=512, help="held-out problems per evaluation")
    ap.add_argument("--base", default="default", help="toy base-policy recipe: default or tiny")
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time, each in its own process")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads per run (0: torch's default for --jobs 1, cores // jobs otherwise)")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "compare.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else []
    done = {(r["method"], r["seed"]) for r in results}
    # seed-major order: a partial run still compares methods
    todo = [(m, seed) for seed in a.seeds for m in a.methods if (m, seed) not in done]
    logger.info("%d runs to do (%d already in %s), %d at a time", len(todo), len(done), results_path, a.jobs)

    total = len(done) + len(todo)

    def record(r: dict) -> None:
        results.append(r)
        results_path.write_text(json.dumps(results, indent=1))
        logger.info("=== done: %s, seed %d in %.0f s (%d of %d runs) ===", r["method"], r["seed"], r["seconds"],
                    len(results), total)

    if a.jobs == 1:
        if a.threads:
            import torch

            torch.set_num_threads(a.threads)
        for m, seed in todo:
            logger.info("=== %s, seed %d ===", m, seed)
            record(run_one(m, seed, a))
    else:
        threads = a.threads or max(1, (os.cpu_count() or 1) // a.jobs)
        ctx = multiprocessing.get_context("spawn")  # fresh interpreters: no torch state shared with the parent
        with ProcessPoolExecutor(a.jobs, mp_context=ctx, initializer=_init_worker, initargs=(threads,)) as pool:
            for fut in as_completed([pool.submit(run_one, m, seed, a) for m, seed in todo]):
                record(fut.result())
    selected = [r for r in results if r["method"] in a.methods and r["seed"] in a.seeds]
    md, summary = table(selected)
    plot(summary, selected, out / "compare.png")
    n_eval = selected[0]["curve"][0].get("n", a.eval_n) if selected else a.eval_n
    acc0 = statistics.fmean(r["curve"][0]["acc"] for r in selected) if selected else 0.0
    note = (f"\nOne evaluation: {n_eval} held-out problems, one sample each; its binomial standard error "
            f"at accuracy {acc0:.2f} is ±{math.sqrt(acc0 * (1 - acc0) / n_eval):.3f}.")
    (out / "compare.md").write_text(md + "\n" + note + "\n")
    print(md + "\n" + note)


if __name__ == "__main__":
    main()
