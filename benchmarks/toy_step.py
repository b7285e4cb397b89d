"""Cost of one step of the main job (toy world, canonical AntiSD, 16 problems x 8 rollouts),
by phase, for the default settings and for faster settings that compute the same things.

Variants run alternately (A B A B ...) in one process, each a fresh trainer from the same base
policy and seed for ``--steps`` steps, so that a machine whose load drifts treats them alike; the
first step of every run (warm-up) is dropped. Phases: generation (TRL's ``_generate_single_turn``),
rewards, teacher pass, student/loss forward + backward (the rest of the step). Prints a table of
median seconds per step and the speed-up over the first variant.

    python benchmarks/toy_step.py                        # baseline vs fast, 3 rounds of 6 steps
    python benchmarks/toy_step.py --rounds 5 --threads 1

Variants (flags on top of the built-in default):
    baseline   the main job as it was: transformers' generate, TRL's fused LM head, one full-batch pass
               for the loss and for the teacher
    pruned     baseline + generation_prune_finished (antisd.lm.pruned_generation: finished rows leave the batch)
    fast       the main job now: pruned generation, antisd.lm.logprobs (fast_logprobs), length-sorted
               chunks of 32 rows for the loss, the student and the teacher passes
    fast+lora  fast, training rank-16 LoRA adapters on every linear layer (recipes/toy/lora.yaml)
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

BASELINE = ["--generation_prune_finished", "false", "--logps_batch_rows", "none", "--teacher_batch_size", "none",
            "--fast_logprobs", "false"]
FAST = ["--generation_prune_finished", "true", "--logps_batch_rows", "32", "--teacher_batch_size", "32",
        "--fast_logprobs", "true"]
VARIANTS: dict[str, list[str]] = {
    "baseline": BASELINE,  # the main job before issue 15: transformers' generate, TRL's head, one full-batch pass
    "pruned": ["--generation_prune_finished", "true", *BASELINE[2:]],
    "fast": FAST,  # the main job now (recipes/toy/antisd.yaml; fast_logprobs: auto is true on CPU)
    "fast+lora": [*FAST, "--use_peft", "true", "--lora_r", "16", "--lora_alpha", "32", "--lora_dropout", "0.0"],
}


PHASES = {"_generate_single_turn": "generate", "_calculate_rewards": "rewards", "teacher_pass": "teacher"}
_CALLS: dict[str, list[float]] = defaultdict(list)  # phase -> seconds of each call, this process


def _clock_phases() -> None:
    """Wrap the trainer methods of ``PHASES`` (class level, this benchmark process only) with a clock."""
    from antisd.trainer.core import AntiSDTrainer

    for method, phase in PHASES.items():
        fn = getattr(AntiSDTrainer, method)

        def wrapper(self, *a, _fn=fn, _phase=phase, **k):
            t = time.perf_counter()
            try:
                return _fn(self, *a, **k)
            finally:
                _CALLS[_phase].append(time.perf_counter() - t)

        setattr(AntiSDTrainer, method, wrapper)


def run_variant(name: str, steps: int, base_args: list[str]) -> dict[str, float]:
    from transformers import TrainerCallback

    from antisd.toyworld.defaults import resolve_builtins
    from antisd.cli.main import build_train_args, run_train, train_inputs

    argv = base_args + VARIANTS[name] + ["--max_steps", str(steps), "--save_strategy", "no", "--report_to", "none",
                                         "--logging_steps", "1", "--disable_tqdm", "true",
                                         "--output_dir", f"/tmp/toy_step_{name}"]
    model_args, data_cfg, reward_args, config = build_train_args(train_inputs(argv))
    model_args, data_cfg = resolve_builtins(model_args, data_cfg)
    _CALLS.clear()
    phases = _CALLS
    step_times: list[float] = []

    class StepClock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t = time.perf_counter()

        def on_step_end(self, *a, **k):
            step_times.append(time.perf_counter() - self.t)

    run_train(model_args, data_cfg, config, reward_args, callbacks=[StepClock()], report=False)
    out = {"step": statistics.median(step_times[1:])}
    for phase in PHASES.values():
        xs = phases[phase]
        out[phase] = statistics.median(xs[1:]) if len(xs) > 1 else float("nan")
    out["loss fwd+bwd and rest"] = out["step"] - sum(out[p] for p in PHASES.values())
    return out


def main(argv: list[str] | None = None) -> None:
    import torch

    from antisd.toyworld.defaults import default_train_argv

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=["baseline", "fast"], choices=list(VARIANTS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=6, help="steps per run (the first is dropped)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--model", default="toyworld", help="base policy (built-in name or path)")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    _clock_phases()
    base_args = default_train_argv() + ["--model_name_or_path", a.model]
    results: dict[str, list[dict[str, float]]] = defaultdict(list)
    for r in range(a.rounds):
        for name in a.variants:
            res = run_variant(name, a.steps, base_args)
            results[name].append(res)
            print(f"round {r}: {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in res.items()), flush=True)
    phases = list(results[a.variants[0]][0])
    ref = statistics.median(x["step"] for x in results[a.variants[0]])
    print(f"\nmedian seconds per step over {a.rounds} rounds x {a.steps - 1} steps, torch threads "
          f"{torch.get_num_threads()}\n")
    print("| variant | " + " | ".join(phases) + " | speed-up |")
    print("|---|" + "---|" * (len(phases) + 1))
    for name in a.variants:
        med = {p: statistics.median(x[p] for x in results[name]) for p in phases}
        print(f"| {name} | " + " | ".join(f"{med[p]:.3f}" for p in phases) + f" | {ref / med['step']:.2f}x |")


if __name__ == "__main__":
    main()
