"""AntiSD vs GRPO on several toy base policies and seeds: robustness, mechanism, guards (issue 15).

Every run is the main job's budget (400 steps x 16 problems x 8 rollouts, ``antisd.toyworld.defaults.TOY_TRAIN``)
with one *arm* (method / guard settings) on one *base policy* (a toy recipe, e.g. another SFT
seed) and one RL seed. Held-out accuracy is measured on the base policy's held-out problems every
``--eval_every`` steps (``--eval_n`` problems, one sample each; the global RNG is untouched) and
on ``--big_eval_n`` problems at the steps in ``--big_eval_steps`` (their completions are kept, to
read what the policy writes). Rollouts with per-token s, t, u and both entropies are dumped every
``--dump_every`` generation batches. The pre-stated analysis is ``benchmarks/toy_robustness_report.py``.

Chunked and resumable: each run writes ``checkpoint-N`` every ``--save_steps`` steps and
``result.json`` when it ends, and its per-run record (``antisd.trainer.records``: settings and their hash, base
checksum, machine, the held-out curve with one bit per problem, gate / token-term / PMI / monitor summaries)
into ``--results/--study/<base>-<arm>-s<seed>.json``, from which ``benchmarks/results_report.py``
regenerates the documented tables; a rerun skips finished runs and resumes the others from their newest
complete checkpoint (``antisd.trainer.checkpoints.last_complete_checkpoint``), keeping the held-out curve up
to that step. One torch thread per run; ``--jobs`` runs at a time.

    python benchmarks/toy_robustness.py --out runs/robust --bases A=default B=default:seed=1 \\
        --arms grpo antisd --seeds 0 1 2 3 4 --jobs 2
    python benchmarks/toy_robustness.py --out runs/robust --bases A=default --arms antisd_from_grpo200 --seeds 0 1 2
    python benchmarks/toy_robustness.py --out runs/issue25 --study guard_control --bases S=default A0=a0 \
        --arms grpo antisd_correct antisd_correct_nogate antisd_mult --seeds 0 1 2 3 4 --jobs 1

A base spec is ``NAME=RECIPE[:field=value,...]`` (``antisd.toyworld.recipe``: ``default`` is S, ``a0`` the
shipped weak base A0, ``search`` the search-style base; ``privileged_style`` is accepted as a field). Runs
go base by base, and within a base seed by seed with every arm of a seed before the next seed, so that a
partial study is balanced. ``antisd_from_grpo200`` is the continual arm: the GRPO run's
checkpoint-200 of the same base and seed, then AntiSD with a fresh gate warm-up up to step 300.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

logger = logging.getLogger("toy_robustness")

# arm -> extra `antisd train` flags on top of the built-in default. Every arm states the settings it is
# about (the built-in default may carry a guard: recipes/toy/antisd.yaml), so "antisd" stays canonical.


def _antisd(rollouts: str = "all", centering: str = "none", *extra: str, method: str = "antisd") -> list[str]:
    """Flags of a token-term arm: which rollouts carry the term (Eq. 12), its centering (Eq. 10-11), extras."""
    return ["--method", method, "--token_term_rollouts", rollouts, "--token_term_centering", centering, *extra]


CANONICAL = _antisd()
ARMS: dict[str, list[str]] = {
    "grpo": ["--method", "grpo"],
    "antisd": CANONICAL,
    "antisd_nogate": _antisd("all", "none", "--gate", "none"),
    "sd": _antisd(method="sd"),
    # guards (docs/method.md Eq. 9-11), as pre-stated in docs/benchmarks.md
    "antisd_2sided": _antisd("all", "none", "--gate_ceiling_ratio", str(1 / 0.93)),
    "antisd_seqcenter": _antisd("all", "sequence"),
    "antisd_batchcap": _antisd("all", "batch_cap"),
    # added after the mechanism was measured (docs/method.md Eq. 12); the built-in main job's configuration
    "antisd_correct": _antisd("correct"),
    # issue 25, pre-stated in docs/benchmarks.md: the guard with the gate off; the paper's multiplicative
    # composition (Eq. 6), canonical otherwise
    "antisd_correct_nogate": _antisd("correct", "none", "--gate", "none"),
    "antisd_mult": _antisd("all", "none", "--composition", "multiplicative"),
}
CONTINUAL = {"antisd_from_grpo200": ("grpo", 200, _antisd("all", "none", "--reset_gate_on_resume", "true"))}


def parse_base(spec: str) -> tuple[str, str, dict]:
    """``NAME=RECIPE[:k=v,...]`` -> (name, recipe, overrides)."""
    name, _, rest = spec.partition("=")
    if not rest:
        raise SystemExit(f"--bases {spec!r}: expected NAME=RECIPE[:field=value,...]")
    recipe_name, _, kvs = rest.partition(":")
    overrides: dict = {}
    for kv in filter(None, kvs.split(",")):
        k, _, v = kv.partition("=")
        overrides[k] = v if k == "privileged_style" else (float(v) if "." in v else int(v))
    return name, recipe_name, overrides


def base_path(spec: str) -> str:
    from antisd.toyworld import ensure_base_policy, recipe

    _, recipe_name, overrides = parse_base(spec)
    style = overrides.pop("privileged_style", None)
    return str(ensure_base_policy(recipe(recipe_name, privileged_style=style, **overrides)))


def make_eval_callback(run_dir: Path, base: str, a, resumed_step: int):
    import torch
    from transformers import TrainerCallback

    from antisd.toyworld.defaults import evaluate_toy_policy
    from antisd.files import atomic_write_json
    from antisd.trainer.records import pack_bits

    curve_path, samples_path = run_dir / "curve.json", run_dir / "samples.json"
    curve = json.loads(curve_path.read_text()) if curve_path.exists() else []
    curve = [p for p in curve if p["step"] <= resumed_step]
    samples = json.loads(samples_path.read_text()) if samples_path.exists() else {}
    samples = {k: v for k, v in samples.items() if int(k) <= resumed_step}

    class HeldoutEval(TrainerCallback):
        def _eval(self, step: int, model, tok) -> None:
            for n, kind in ((a.eval_n, "acc"), (a.big_eval_n, "big")):
                if kind == "big" and step not in a.big_eval_steps:
                    continue
                if any(p["step"] == step and p["kind"] == kind for p in curve):
                    continue
                kept: list[dict] = []
                with torch.random.fork_rng(devices=[]):  # the evaluation never moves training's RNG
                    ev = evaluate_toy_policy(model, tok, base, max_new_tokens=a.max_new_tokens, n=n,
                                             samples_out=kept)
                curve.append({"step": step, "kind": kind, "n": n, "acc": ev["eval/accuracy"],
                              "strict": ev["eval/strict_accuracy"], "len": ev["eval/mean_tokens"],
                              "truncated": ev["eval/truncated_frac"],
                              "correct": pack_bits([r["score"] > 0.5 for r in kept])})  # one bit per problem
                if kind == "big":
                    samples[str(step)] = kept[:64]
                    atomic_write_json(samples_path, samples)
                atomic_write_json(curve_path, curve)
                logger.info("%s step %d: held-out %s %.3f (n=%d, strict %.3f, %.1f tokens)", run_dir.name, step, kind,
                            ev["eval/accuracy"], n, ev["eval/strict_accuracy"], ev["eval/mean_tokens"])

        def on_train_begin(self, args, state, control, model=None, processing_class=None, **kw):
            self._eval(state.global_step, model, processing_class)

        def on_step_end(self, args, state, control, model=None, processing_class=None, **kw):
            if state.global_step % a.eval_every == 0 or state.global_step in a.big_eval_steps:
                self._eval(state.global_step, model, processing_class)

    return HeldoutEval(), curve


def run_one(base_spec: str, arm: str, seed: int, a) -> dict:
    from antisd.toyworld.defaults import TOY_TRAIN, default_train_argv, resolve_builtins
    from antisd.files import atomic_write_json
    from antisd.cli.main import build_train_args, run_train, train_inputs
    from antisd.trainer.checkpoints import last_complete_checkpoint

    base_name = base_spec.partition("=")[0]
    run_dir = Path(a.out) / base_name / f"{arm}-s{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    base = base_path(base_spec)
    max_steps = a.steps
    extra = list(ARMS[arm]) if arm in ARMS else list(CONTINUAL[arm][2])
    resume = last_complete_checkpoint(run_dir)
    if resume is None and arm in CONTINUAL:
        src_arm, src_step, _ = CONTINUAL[arm]
        resume = str(Path(a.out) / base_name / f"{src_arm}-s{seed}" / f"checkpoint-{src_step}")
        if not Path(resume).exists():
            raise FileNotFoundError(f"{arm} needs {resume} (run {src_arm} with seed {seed} on base {base_name} first)")
        max_steps = src_step + a.continual_steps
    elif arm in CONTINUAL:
        max_steps = CONTINUAL[arm][1] + a.continual_steps
    resumed_step = int(Path(resume).name.split("-")[-1]) if resume else 0
    argv = default_train_argv() + extra + [
        "--model_name_or_path", base, "--seed", str(seed), "--max_steps", str(max_steps),
        "--per_device_train_batch_size", str(a.problems * TOY_TRAIN["num_generations"]),
        "--output_dir", str(run_dir), "--save_strategy", "steps", "--save_steps", str(a.save_steps),
        "--report_to", "none", "--logging_steps", "1", "--disable_tqdm", "true",
        "--dump_rollouts_every", str(a.dump_every),
    ] + (["--resume_from_checkpoint", resume] if resume else []) + list(a.extra)
    model_args, data_cfg, reward_args, config = build_train_args(train_inputs(argv))
    model_args, data_cfg = resolve_builtins(model_args, data_cfg)
    cb, curve = make_eval_callback(run_dir, base, a, resumed_step)
    logger.info("=== %s/%s seed %d: base %s, %s ===", base_name, arm, seed, base,
                f"resuming from {resume}" if resume else "fresh")
    t0 = time.time()
    trainer = run_train(model_args, data_cfg, config, reward_args, callbacks=[cb], report=False)
    logs = [h for h in trainer.state.log_history if "loss" in h]
    atomic_write_json(run_dir / "log_history.json", logs)
    result = {"base": base_name, "base_spec": base_spec, "base_path": base, "arm": arm, "seed": seed,
              "steps": max_steps, "curve": curve, "seconds_this_session": time.time() - t0,
              "resumed_from": resume, "argv": argv}
    # the record before result.json: a run whose record failed is not finished, and a rerun resumes it
    rec = write_run_record(a, base_spec, arm, seed, max_steps, config, data_cfg, base, curve, logs,
                           time.time() - t0, resume)
    logger.info("record written: %s", rec)
    atomic_write_json(run_dir / "result.json", result)
    return result


def heldout_sets(base: str, sizes: list[int]) -> dict[str, dict[str, int]]:
    """Rows, distinct prompts and distinct equations of the held-out evaluation sets of ``base`` (the problems
    ``evaluate_toy_policy`` scores: the first n of the held-out split, seed EVAL_SEED)."""
    from antisd.trainer.records import heldout_description
    from antisd.toyworld import make_problems
    from antisd.toyworld.base_policy import EVAL_SEED, ToyBaseConfig, load_build_info

    cfg = ToyBaseConfig.from_dict(load_build_info(base)["recipe"])
    out = {}
    for n in sorted(set(sizes)):
        probs = make_problems(n, split="heldout", seed=EVAL_SEED, config=cfg.task)
        out[str(n)] = heldout_description([p.row() for p in probs], [p.split_key for p in probs])
    return out


def write_run_record(a, base_spec: str, arm: str, seed: int, steps: int, config, data_cfg, base: str,
                     curve: list[dict], history: list[dict], seconds: float, resume: str | None) -> Path:
    """The run's record (``antisd.trainer.records``) as ``<results>/<study>/<base>-<arm>-s<seed>.json``."""
    from antisd.trainer.records import base_identity, make_record, training_settings, write_record

    base_name = base_spec.partition("=")[0]
    settings = {"train": training_settings(config), "dataset": Path(data_cfg.dataset_name).name,
                "eval": {"every": a.eval_every, "n": a.eval_n, "big_n": a.big_eval_n,
                         "big_steps": sorted(a.big_eval_steps), "max_new_tokens": a.max_new_tokens}}
    run = f"{base_name}-{arm}-s{seed}"
    rec = make_record(study=a.study, run=run, seed=seed, steps=steps, settings=settings, base=base_identity(base),
                      curve=curve, history=history, heldout=heldout_sets(base, [a.eval_n, a.big_eval_n]),
                      runtime_s=seconds, resumed_from=resume,
                      extra={"arm": arm, "base_label": base_name, "base_spec": base_spec,
                             "arm_flags": list(ARMS[arm]) if arm in ARMS else list(CONTINUAL[arm][2]),
                             "runner": "benchmarks/toy_robustness.py"})
    return write_record(Path(a.results) / a.study / f"{run}.json", rec)


def _init_worker(threads: int) -> None:
    import torch

    if sys.platform == "linux":  # die with the parent
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s[%(process)d]: %(message)s")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/robust")
    ap.add_argument("--study", default="robustness", help="the records go to --results/--study/")
    ap.add_argument("--results", default="results", help="folder of the per-run records (in the repository)")
    ap.add_argument("--bases", nargs="+", default=["A=default"], help="NAME=RECIPE[:field=value,...]")
    ap.add_argument("--arms", nargs="+", default=["grpo", "antisd"], choices=[*ARMS, *CONTINUAL])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--problems", type=int, default=16, help="problems per step (x 8 rollouts)")
    ap.add_argument("--continual_steps", type=int, default=100)
    ap.add_argument("--eval_every", type=int, default=25)
    ap.add_argument("--eval_n", type=int, default=512)
    ap.add_argument("--big_eval_n", type=int, default=2048)
    ap.add_argument("--big_eval_steps", nargs="*", type=int, default=[0, 200, 300, 400])
    ap.add_argument("--max_new_tokens", type=int, default=96)
    ap.add_argument("--save_steps", type=int, default=50)
    ap.add_argument("--dump_every", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rerun_recorded", action="store_true",
                    help="also run the runs whose record is already in --results/--study (default: skip them)")
    ap.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="further antisd train flags for every run")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    # base by base; within a base seed by seed, every arm of a seed before the next seed (a partial study is balanced)
    # A run is finished when its run folder says so, or when its record is in the repository (another machine ran
    # it: the run folders are not committed); --rerun_recorded runs those again and overwrites their records.
    def finished(b: str, arm: str, s: int) -> bool:
        name = f"{b.partition('=')[0]}-{arm}-s{s}"
        return (Path(a.out) / b.partition("=")[0] / f"{arm}-s{s}" / "result.json").exists() or (
            not a.rerun_recorded and (Path(a.results) / a.study / f"{name}.json").exists())

    todo = [(b, arm, s) for b in a.bases for s in a.seeds for arm in a.arms if not finished(b, arm, s)]
    logger.info("%d runs to do, %d at a time", len(todo), a.jobs)
    for b in a.bases:  # build (or find) the bases once, before the workers start
        logger.info("base %s: %s", b, base_path(b))
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(a.jobs, mp_context=ctx, initializer=_init_worker, initargs=(a.threads,)) as pool:
        futs = {pool.submit(run_one, b, arm, s, a): (b, arm, s) for b, arm, s in todo}
        for fut in as_completed(futs):
            b, arm, s = futs[fut]
            try:
                r = fut.result()
                logger.info("=== done %s %s seed %d: final %s ===", b, arm, s, r["curve"][-1] if r["curve"] else None)
            except Exception:  # keep the other runs going; the failed one resumes on the next call
                logger.exception("run %s %s seed %d failed", b, arm, s)


if __name__ == "__main__":
    main()
