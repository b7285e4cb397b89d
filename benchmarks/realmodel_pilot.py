"""A real-model RL pilot: GRPO, canonical AntiSD and the guarded default from SmolLM2-135M-Instruct (issue 23).

The task is the shipped single-digit arithmetic (``arith_small_train``, held out ``arith_small_test``; the base
model is right about a third of the time at temperature 0.7 with ``--answer_extraction flexible``,
docs/realmodel.md). Every run starts from the same base with one arm (below) and one seed, samples at
temperature 0.7 with at most ``--max_new_tokens`` tokens and the system prompt "Answer in one short sentence.",
and measures held-out accuracy every ``--eval_every`` steps (``--eval_k`` samples of each of the 64 held-out
problems, a fixed sampling seed: common random numbers across steps and arms; the global RNG is untouched).
Each finished run writes its per-run record (``antisd.trainer.records``: settings and their hash, the base's weights
checksum, machine, the held-out curve with one bit per sample, gate / token-term / PMI / monitor summaries
from the logged history) to ``--results/realmodel_pilot/<arm>-s<seed>.json``. Chunked and resumable like
``toy_robustness.py``: checkpoints every ``--save_steps``; a rerun skips finished runs and resumes the others.

    python benchmarks/realmodel_pilot.py --arms grpo antisd antisd_correct --seeds 0 1      # one thread each
    python benchmarks/realmodel_pilot.py --arms grpo --seeds 0 --steps 2 --eval_every 1 --eval_k 1 --out /tmp/p

It is a pilot: 2 seeds per arm cannot separate arms that differ by less than several points of accuracy.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

logger = logging.getLogger("realmodel_pilot")

SYSTEM_PROMPT = "Answer in one short sentence."
ARMS: dict[str, list[str]] = {
    "grpo": ["--method", "grpo"],
    "antisd": ["--method", "antisd", "--token_term_rollouts", "all", "--token_term_centering", "none"],  # canonical
    "antisd_correct": ["--method", "antisd", "--token_term_rollouts", "correct", "--token_term_centering", "none"],
}


def heldout_problems(a) -> list[dict]:
    from antisd.data.problems import DataConfig, load_problems

    ds = load_problems(DataConfig(dataset_name=a.eval_dataset, id_column="id", system_prompt=SYSTEM_PROMPT))
    return [{"problem_id": r["problem_id"], "prompt": r["prompt"], "answer": r["answer"]} for r in ds]


def make_eval_callback(run_dir: Path, problems: list[dict], a, resumed_step: int):
    """A callback that scores the held-out problems at the start and every ``eval_every`` steps into curve.json."""
    from transformers import TrainerCallback

    from antisd.files import atomic_write_json
    from antisd.evaluate import EvalCallback
    from antisd.trainer.records import pack_bits

    curve_path = run_dir / "curve.json"
    curve = [p for p in (json.loads(curve_path.read_text()) if curve_path.exists() else []) if p["step"] <= resumed_step]
    heldout = EvalCallback(problems, eval_steps=a.eval_every, k=a.eval_k, max_new_tokens=a.max_new_tokens,
                           temperature=a.temperature, top_p=1.0, top_k=0, batch_size=a.eval_batch_size, seed=1234,
                           answer_extraction="flexible")  # its sampler: a fixed seed, the global RNG untouched

    class HeldoutEval(TrainerCallback):
        def _eval(self, step: int, model, tok) -> None:
            if any(p["step"] == step for p in curve):
                return
            scored = heldout.sample(model, tok)
            rows = [r for p in problems for r in scored[str(p["problem_id"])]]
            bits = [bool(r["correct"]) for r in rows]
            curve.append({"step": step, "kind": "acc", "n": len(rows), "acc": sum(bits) / len(bits),
                          "len": sum(r["n_tokens"] for r in rows) / len(rows),
                          "truncated": sum(bool(r["truncated"]) for r in rows) / len(rows),
                          "no_answer": sum(r["outcome"] == "no_answer" for r in rows) / len(rows),
                          "correct": pack_bits(bits)})
            atomic_write_json(curve_path, curve)
            logger.info("%s step %d: held-out %.3f (n=%d samples, %.1f tokens)", run_dir.name, step,
                        curve[-1]["acc"], len(rows), curve[-1]["len"])

        def on_train_begin(self, args, state, control, model=None, processing_class=None, **kw):
            self._eval(state.global_step, model, processing_class)

        def on_step_end(self, args, state, control, model=None, processing_class=None, **kw):
            if state.global_step % a.eval_every == 0 or state.global_step == state.max_steps:
                self._eval(state.global_step, model, processing_class)

    return HeldoutEval(), curve


def train_argv(arm: str, seed: int, run_dir: Path, a, resume: str | None) -> list[str]:
    argv = ["--model_name_or_path", a.model, "--dataset_name", a.dataset, "--id_column", "id",
            "--system_prompt", SYSTEM_PROMPT, "--answer_extraction", "flexible", "--reward", "math",
            "--temperature", str(a.temperature), "--top_p", "1.0", "--top_k", "0",
            "--max_completion_length", str(a.max_new_tokens), "--num_generations", str(a.generations),
            "--per_device_train_batch_size", str(a.problems * a.generations), "--max_steps", str(a.steps),
            "--learning_rate", str(a.learning_rate), "--seed", str(seed), "--output_dir", str(run_dir),
            "--save_strategy", "steps", "--save_steps", str(a.save_steps), "--report_to", "none",
            "--logging_steps", "1", "--disable_tqdm", "true", *ARMS[arm]]
    if a.lora_r:
        argv += ["--use_peft", "true", "--lora_r", str(a.lora_r), "--lora_alpha", str(2 * a.lora_r)]
    return argv + (["--resume_from_checkpoint", resume] if resume else []) + list(a.extra)


def run_one(arm: str, seed: int, a, problems: list[dict]) -> Path | None:
    from antisd.files import atomic_write_json
    from antisd.cli.main import build_train_args, run_train, train_inputs
    from antisd.lm.names import resolve_model
    from antisd.trainer.records import base_identity, make_record, training_settings, write_record
    from antisd.trainer.checkpoints import last_complete_checkpoint

    record_path = Path(a.results) / a.study / f"{arm}-s{seed}.json"
    run_dir = Path(a.out) / f"{arm}-s{seed}"
    if (run_dir / "result.json").exists() and record_path.exists():
        logger.info("%s: finished (%s)", run_dir.name, record_path)
        return record_path
    run_dir.mkdir(parents=True, exist_ok=True)
    resume = last_complete_checkpoint(run_dir)
    resumed_step = int(Path(resume).name.split("-")[-1]) if resume else 0
    model_args, data_cfg, reward_args, config = build_train_args(train_inputs(train_argv(arm, seed, run_dir, a, resume)))
    cb, curve = make_eval_callback(run_dir, problems, a, resumed_step)
    logger.info("=== %s seed %d: %s ===", arm, seed, f"resuming from {resume}" if resume else "fresh")
    t0 = time.time()
    trainer = run_train(model_args, data_cfg, config, reward_args, callbacks=[cb], report=False)
    history = [h for h in trainer.state.log_history if "loss" in h]
    settings = {"train": training_settings(config), "dataset": a.dataset, "lora_r": a.lora_r,
                "eval": {"dataset": a.eval_dataset, "every": a.eval_every, "k": a.eval_k,
                         "temperature": a.temperature, "max_new_tokens": a.max_new_tokens, "extraction": "flexible"}}
    rec = make_record(study=a.study, run=f"{arm}-s{seed}", seed=seed, steps=a.steps, settings=settings,
                      base=base_identity(resolve_model(a.model).path), curve=curve, history=history,
                      heldout={str(len(problems) * a.eval_k): {"rows": len(problems) * a.eval_k,
                                                               "distinct_prompts": len(problems),
                                                               "distinct_equations": len(problems)}},
                      runtime_s=time.time() - t0, resumed_from=resume,
                      extra={"arm": arm, "arm_flags": ARMS[arm], "base_label": a.model,
                             "runner": "benchmarks/realmodel_pilot.py"})
    path = write_record(record_path, rec)
    atomic_write_json(run_dir / "result.json", {"arm": arm, "seed": seed, "record": str(path)})
    logger.info("record written: %s (held-out %s)", path, [round(p["acc"], 3) for p in curve])
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--dataset", default="arith_small_train")
    ap.add_argument("--eval_dataset", default="arith_small_test")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--problems", type=int, default=2, help="problems per step")
    ap.add_argument("--generations", type=int, default=8, help="rollouts per problem (the group)")
    ap.add_argument("--learning_rate", type=float, default=1e-6)
    ap.add_argument("--lora_r", type=int, default=0, help="LoRA rank (0: full fine-tuning)")
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--max_new_tokens", type=int, default=32)
    ap.add_argument("--eval_every", type=int, default=20)
    ap.add_argument("--eval_k", type=int, default=4, help="held-out samples per problem")
    ap.add_argument("--eval_batch_size", type=int, default=64)
    ap.add_argument("--save_steps", type=int, default=20)
    ap.add_argument("--out", default="runs/realmodel_pilot")
    ap.add_argument("--study", default="realmodel_pilot")
    ap.add_argument("--results", default="results")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="further antisd train flags for every run")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(a.threads)
    problems = heldout_problems(a)
    for seed in a.seeds:  # every arm of a seed before the next seed: a partial pilot stays balanced
        for arm in a.arms:
            run_one(arm, seed, a, problems)
    return 0


if __name__ == "__main__":
    sys.exit(main())
