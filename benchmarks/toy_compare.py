"""GRPO vs SD vs AntiSD (and the no-gate and reverse-KL ablations) on the toy world.

Same base policy, same budget and seeds for every method; held-out accuracy is measured every
``--eval_every`` steps on the same held-out problems (one sample each at temperature 1).
Prints and writes a table (final held-out accuracy mean and spread over seeds, peak and step of
peak, steps for AntiSD to reach GRPO's final accuracy, response length, deliberation-token
rate) to ``OUT/compare.md`` and ``OUT/compare.json``, and the curves to ``OUT/compare.png``.

CPU:  python benchmarks/toy_compare.py --out runs/compare            (defaults below)
      python benchmarks/toy_compare.py --steps 30 --seeds 0 1 2 --base tiny   (smoke)
GPU:  the same; the toy world is CPU-sized.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import time
from pathlib import Path

from transformers import TrainerCallback

from antisd.cli import ModelArgs, build_train_args, run_train, train_inputs
from antisd.defaults import default_train_argv, evaluate_toy_policy

logger = logging.getLogger("toy_compare")

METHODS: dict[str, list[str]] = {
    "grpo": ["--method", "grpo"],
    "sd": ["--method", "sd"],
    "antisd": ["--method", "antisd"],
    "antisd_nogate": ["--method", "antisd", "--gate", "none"],
    "antisd_rkl": ["--method", "antisd", "--token_signal", "antisd_rkl"],
}


class HeldoutEval(TrainerCallback):
    """Held-out accuracy every N steps (and at step 0) on the base policy's evaluation problems."""

    def __init__(self, base_path: str, every: int, n: int, max_new_tokens: int):
        self.base_path, self.every, self.n, self.max_new_tokens = base_path, every, n, max_new_tokens
        self.curve: list[dict] = []

    def _eval(self, step: int, model, tok) -> None:
        ev = evaluate_toy_policy(model, tok, self.base_path, max_new_tokens=self.max_new_tokens, n=self.n)
        self.curve.append({"step": step, "acc": ev["eval/accuracy"], "len": ev["eval/mean_tokens"],
                           "strict": ev["eval/strict_accuracy"]})
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
        "--per_device_train_batch_size", str(a.problems * 8), "--output_dir", str(out), "--save_strategy", "no",
        "--report_to", "none", "--logging_steps", "1", "--disable_tqdm", "true",
    ]
    model_args, data_cfg, reward_args, config = build_train_args(train_inputs(argv))
    from antisd.defaults import resolve_builtins

    model_args, data_cfg = resolve_builtins(model_args, data_cfg)
    cb = HeldoutEval(model_args.model_name_or_path, a.eval_every, a.eval_n, config.max_completion_length)
    t0 = time.time()
    trainer = run_train(model_args, data_cfg, config, reward_args, callbacks=[cb], report=False)
    logs = [h for h in trainer.state.log_history if "loss" in h]
    tail = logs[-max(1, len(logs) // 5):]
    return {
        "method": method, "seed": seed, "curve": cb.curve, "seconds": time.time() - t0,
        "train_len": statistics.fmean(h["completions/mean_length"] for h in tail),
        "delib": statistics.fmean(h.get("deliberation/token_frac", math.nan) for h in tail),
        "gate_on": statistics.fmean(h["gate/on"] for h in logs if "gate/on" in h) if any("gate/on" in h for h in logs) else math.nan,
    }


def _mean_sd(xs: list[float]) -> str:
    return f"{statistics.fmean(xs):.3f} ± {statistics.stdev(xs):.3f}" if len(xs) > 1 else f"{xs[0]:.3f}"


def table(results: list[dict]) -> tuple[str, dict]:
    by: dict[str, list[dict]] = {}
    for r in results:
        by.setdefault(r["method"], []).append(r)
    grpo_final = statistics.fmean(r["curve"][-1]["acc"] for r in by.get("grpo", [])) if "grpo" in by else None
    rows = ["| method | seeds | held-out acc, start | final (mean ± sd) | peak mean (step) | steps to GRPO's final "
            "| response tokens (train, last 20%) | deliberation rate | gate on |",
            "|---|---|---|---|---|---|---|---|---|"]
    summary = {}
    for m, rs in by.items():
        steps = [p["step"] for p in rs[0]["curve"]]
        mean_curve = [statistics.fmean(r["curve"][i]["acc"] for r in rs) for i in range(len(steps))]
        peak = max(range(len(steps)), key=lambda i: mean_curve[i])
        reach = next((steps[i] for i, v in enumerate(mean_curve) if i > 0 and grpo_final is not None and v >= grpo_final), None)
        finals = [r["curve"][-1]["acc"] for r in rs]
        summary[m] = {"steps": steps, "mean_curve": mean_curve, "finals": finals, "reach": reach}
        rows.append(
            f"| {m} | {len(rs)} | {mean_curve[0]:.3f} | {_mean_sd(finals)} | {mean_curve[peak]:.3f} ({steps[peak]}) "
            f"| {reach if reach is not None else 'not reached'} | {statistics.fmean(r['train_len'] for r in rs):.1f} "
            f"| {statistics.fmean(r['delib'] for r in rs):.3f} | {statistics.fmean(r['gate_on'] for r in rs):.2f} |")
    return "\n".join(rows), summary


def plot(summary: dict, results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (m, s) in enumerate(summary.items()):
        color = f"C{i}"
        for r in (r for r in results if r["method"] == m):
            ax.plot([p["step"] for p in r["curve"]], [p["acc"] for p in r["curve"]], color=color, alpha=0.25, lw=0.8)
        ax.plot(s["steps"], s["mean_curve"], color=color, lw=2, label=m)
    ax.set_xlabel("RL step")
    ax.set_ylabel("held-out accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/compare")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=100, help="RL steps per run (same for every method)")
    ap.add_argument("--problems", type=int, default=8, help="problems per step (x 8 rollouts)")
    ap.add_argument("--eval_every", type=int, default=20)
    ap.add_argument("--eval_n", type=int, default=512, help="held-out problems per evaluation")
    ap.add_argument("--base", default="default", help="toy base-policy recipe: default or tiny")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "compare.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else []
    done = {(r["method"], r["seed"]) for r in results}
    for seed in a.seeds:  # seed-major order: a partial run still compares methods
        for m in a.methods:
            if (m, seed) in done:
                continue
            logger.info("=== %s, seed %d ===", m, seed)
            results.append(run_one(m, seed, a))
            results_path.write_text(json.dumps(results, indent=1))
    md, summary = table([r for r in results if r["method"] in a.methods and r["seed"] in a.seeds])
    plot(summary, results, out / "compare.png")
    (out / "compare.md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
