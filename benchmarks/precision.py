"""The noise floor of u = t - s in bf16, against the size of the AntiSD signal (issue 16, item 2).

True u is 0 when the teacher's prompt is exactly the student's own prompt: the teacher pass then
scores the same tokens after the same prefix, and whatever |u| the trainer measures is numerical
noise. This script trains the toy world's recipe (``recipes/toy/antisd.yaml``, the shipped toy
base policy, its real batching: 8 rollouts per problem, teacher batches of 32 rows sorted by
length, loss forwards in length-sorted chunks of 32 rows, left-padded prompts) for a few steps at
learning rate 0 in each precision setting, with every rollout's privileged prompt replaced by its
own prompt, and records u and delta = -phi(u) on every scored token (``AntiSDTrainer.token_term``
is wrapped on the instance; nothing else changes). The signal's scale is the same measurement
with the real privileged context in float32: |delta| of the canonical -phi(u) on the same model.

Settings: float32; bf16 mixed precision (float32 weights, bf16 autocast: what ``bf16=True``
gives) and bf16 weights (the model loaded in bfloat16, ``bf16=True``), each with the log-probs
from ``antisd.lm.logprobs`` (``fast_logprobs=true``: the output layer in float32), from TRL's fused
LM head in the compute dtype (``fast_logprobs=false``) and from TRL's head with
``cast_lm_head_to_fp32=true``.

    .venv/bin/python benchmarks/precision.py                  # ~6 minutes on 2 shared cores
    .venv/bin/python benchmarks/precision.py --steps 1 --problems 2 --settings fp32 amp-trl   # a smoke run

It prints one table (|u| and |delta| quantiles per setting, and the noise as a share of the
signal), then INFO lines. Results: docs/benchmarks.md, "Precision".
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, replace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import PrinterCallback  # noqa: E402

from antisd.cli.options import parse_train_args  # noqa: E402
from antisd.cli.options import RECIPES_DIR  # noqa: E402

RECIPE = RECIPES_DIR / "toy" / "antisd.yaml"
EXACT_KEY = "bench_teacher_logps_float32"
NOISE_FRACTION = 0.02  # the line docs/benchmarks.md and AntiSDTrainer's warning state


@dataclass(frozen=True)
class Setting:
    name: str
    bf16: bool  # TrainingArguments.bf16 (autocast)
    weights: str  # float32 | bfloat16
    fast_logprobs: str  # "true": antisd.lm.logprobs (float32 head); "false": TRL's fused head
    cast_head: bool  # cast_lm_head_to_fp32
    label: str


SETTINGS = {s.name: s for s in [
    Setting("fp32", False, "float32", "true", False, "float32, antisd.lm.logprobs"),
    Setting("fp32-trl", False, "float32", "false", False, "float32, TRL head"),
    Setting("amp", True, "float32", "true", False, "bf16 mixed, antisd.lm.logprobs (fp32 head)"),
    Setting("amp-trl", True, "float32", "false", False, "bf16 mixed, TRL head in bf16"),
    Setting("amp-trl-fp32", True, "float32", "false", True, "bf16 mixed, TRL head cast_lm_head_to_fp32"),
    Setting("bf16", True, "bfloat16", "true", False, "bf16 weights, antisd.lm.logprobs (fp32 head)"),
    Setting("bf16-trl", True, "bfloat16", "false", False, "bf16 weights, TRL head in bf16"),
    Setting("bf16-trl-fp32", True, "bfloat16", "false", True, "bf16 weights, TRL head cast_lm_head_to_fp32"),
]}


def token_stats(values: torch.Tensor) -> dict[str, float]:
    """mean, median, p90, p99 and max of |values| (1-D)."""
    a = values.abs().double()
    if a.numel() == 0:
        return {k: float("nan") for k in ("mean", "median", "p90", "p99", "max")}
    q = torch.quantile(a, torch.tensor([0.5, 0.9, 0.99], dtype=torch.float64))
    return {"mean": float(a.mean()), "median": float(q[0]), "p90": float(q[1]), "p99": float(q[2]),
            "max": float(a.max())}


def build_trainer(setting: Setting, args, out_dir: str, use_cpu: bool = True):
    """The toy recipe's AntiSDTrainer in ``setting`` (learning rate 0) and the model's path."""
    from transformers import AutoModelForCausalLM

    from antisd.toyworld.defaults import resolve_model
    from antisd.lm.sampling import load_tokenizer
    from antisd.trainer.run import load_training_data, make_reward
    from antisd.trainer.core import AntiSDTrainer

    argv = ["--config", str(RECIPE), "--output_dir", out_dir, "--max_steps", str(args.steps),
            "--per_device_train_batch_size", str(8 * args.problems), "--learning_rate", "0", "--logging_steps", "1",
            "--report_to", "none", "--save_strategy", "no", "--seed", str(args.seed),
            "--bf16", str(setting.bf16).lower(), "--fast_logprobs", setting.fast_logprobs,
            "--cast_lm_head_to_fp32", str(setting.cast_head).lower(), "--generation_prune_finished", "false",
            "--use_cpu", str(use_cpu).lower(), "--teacher_batch_size", str(args.teacher_batch_size),
            "--logps_batch_rows", str(args.logps_batch_rows)]
    model_args, data_cfg, reward_args, config = parse_train_args(argv)
    dataset, data_cfg, kind, _ = load_training_data(data_cfg, reward_args)
    reward, dataset = make_reward(kind, reward_args, data_cfg, config, dataset)
    config.use_canonical_columns()
    name = resolve_model(model_args).model_name_or_path
    model = AutoModelForCausalLM.from_pretrained(name, dtype=getattr(torch, setting.weights))
    trainer = AntiSDTrainer(model=model, reward_funcs=[reward], args=config, train_dataset=dataset,
                            processing_class=load_tokenizer(name))
    trainer.remove_callback(PrinterCallback)  # the per-step log dicts
    return trainer


def own_prompt_contexts(trainer) -> None:
    """Every rollout with a privileged context gets its own prompt instead: true u = 0."""
    original = trainer.global_contexts

    def global_contexts(inputs, stash):
        contexts, rewards = original(inputs, stash)
        return [c if c.prompt is None else replace(c, prompt=x["prompt"]) for c, x in zip(contexts, inputs)], rewards

    trainer.global_contexts = global_contexts


def shadow_in_float32(trainer, seen: dict[str, list]) -> None:
    """Wrap the trainer's log-prob passes (on the instance) so that every u the token term sees is also computed
    in float32 on the same rows: a float32 copy of the model (the same weights; bf16 weights upcast, so the
    reference is that model's exact value) through ``antisd.lm.logprobs`` without autocast. Records, per scored
    context token, u and delta as the trainer computed them and their float32 counterparts."""
    import copy

    from antisd.lm.logprobs import per_token_logps_and_entropies
    from antisd.method.signals import token_signal

    reference = copy.deepcopy(trainer.model).float().eval()
    temperature = trainer.temperature
    logps_fn, teacher_fn, term_fn, apply_fn = (trainer._get_per_token_logps_and_entropies, trainer.teacher_pass,
                                               trainer.token_term, trainer.apply_token_term)
    shadow = {"teacher": False}

    @torch.no_grad()
    def exact(input_ids, attention_mask, k):
        return per_token_logps_and_entropies(reference, input_ids, attention_mask, k, temperature=temperature,
                                             compute_entropy=True)

    def get_logps(model, input_ids, attention_mask, logits_to_keep, *a, **kw):
        if shadow["teacher"]:  # the teacher pass run again, in float32
            lp, ent = exact(input_ids, attention_mask, logits_to_keep)
            return lp, ent, None
        waiting = trainer.waiting_token_term  # (pending, the loss's batch) when this is the loss's forward
        if waiting is not None:  # the loss's rows (B, K), before the token term reads them
            seen["s_exact"] = exact(input_ids, attention_mask, logits_to_keep)[0]
            seen["t_exact_rows"] = waiting[1][EXACT_KEY]
        return logps_fn(model, input_ids, attention_mask, logits_to_keep, *a, **kw)

    def teacher_pass(contexts, completion_ids, completion_mask, scored=None):
        out = teacher_fn(contexts, completion_ids, completion_mask, scored)
        shadow["teacher"] = True
        try:
            seen["t_exact"] = teacher_fn(contexts, completion_ids, completion_mask, scored)[0]
        finally:
            shadow["teacher"] = False
        return out

    def token_term(seq_adv, pending, s_logps, s_ent, token_mask):
        mask = pending.ctx_mask.bool() & token_mask.bool()
        t, s = pending.teacher_logps.float(), s_logps.detach().float()
        te, se = seen["t_exact_rows"].float(), seen["s_exact"].float()
        seen["u"].append((t - s)[mask].cpu())
        seen["u_exact"].append((te - se)[mask].cpu())
        seen["delta"].append(token_signal(t, s, "antisd")[mask].cpu())
        seen["delta_exact"].append(token_signal(te, se, "antisd")[mask].cpu())
        return term_fn(seq_adv, pending, s_logps, s_ent, token_mask)

    def apply_token_term(inputs, output, stash):
        output = apply_fn(inputs, output, stash)
        output[EXACT_KEY] = seen["t_exact"]  # shuffled and split by TRL with the batch, as the teacher log-probs are
        return output

    trainer._get_per_token_logps_and_entropies = get_logps
    trainer.teacher_pass = teacher_pass
    trainer.apply_token_term = apply_token_term
    trainer.token_term = token_term


def run(setting: Setting, args, own_prompt: bool, use_cpu: bool = True) -> dict[str, torch.Tensor]:
    """u, delta (as trained) and u_exact, delta_exact (float32) on every scored context token of the run."""
    seen: dict[str, list] = {"u": [], "u_exact": [], "delta": [], "delta_exact": []}
    with tempfile.TemporaryDirectory(prefix=f"precision_{setting.name}_") as tmp:
        trainer = build_trainer(setting, args, tmp, use_cpu)
        if own_prompt:
            own_prompt_contexts(trainer)
        shadow_in_float32(trainer, seen)
        trainer.train()
    return {k: torch.cat(v) if v else torch.zeros(0) for k, v in seen.items() if isinstance(v, list)}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=2, help="training steps per setting (learning rate 0)")
    p.add_argument("--problems", type=int, default=8, help="problems per step (8 rollouts each)")
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--teacher-batch-size", type=int, default=8,
                   help="teacher rows per forward (default 8, one group; the loss's chunks are --logps-batch-rows)")
    p.add_argument("--logps-batch-rows", type=int, default=32, help="rows per loss forward (the toy recipe's 32)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    logging.getLogger("antisd").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    print(f"precision: toy world ({RECIPE.name}), {args.steps} step(s) x {args.problems} problems x 8 rollouts per "
          f"setting, learning rate 0; torch {torch.__version__}, {torch.get_num_threads()} thread(s); "
          f"command: {' '.join(sys.argv)}")
    print("\n| setting | tokens | own prompt (u = 0): max abs u | real context: mean abs(u - u32) | p99 | max | "
          "mean abs(delta - delta32) | p99 | noise / signal | mean abs delta (signal) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows, signal = {}, None
    for name in args.settings:
        own = run(SETTINGS[name], args, own_prompt=True)
        got = run(SETTINGS[name], args, own_prompt=False)
        signal = signal if signal is not None else got
        du, dd = token_stats(got["u"] - got["u_exact"]), token_stats(got["delta"] - got["delta_exact"])
        sig = token_stats(got["delta_exact"])
        rows[name] = dd["mean"] / sig["mean"]
        print(f"| {SETTINGS[name].label} | {got['u'].numel()} | {token_stats(own['u'])['max']:.1e} | {du['mean']:.1e} | "
              f"{du['p99']:.1e} | {du['max']:.1e} | {dd['mean']:.1e} | {dd['p99']:.1e} | {rows[name]:.2%} | "
              f"{sig['mean']:.4f} |", flush=True)
    print(f"\nsignal (float32 values of the first setting's run, real context, {signal['u_exact'].numel()} context "
          f"tokens): |u| {_fmt(token_stats(signal['u_exact']))}; |delta| {_fmt(token_stats(signal['delta_exact']))}")
    for name, ratio in rows.items():
        verdict = "ABOVE" if ratio > NOISE_FRACTION else "below"
        print(f"INFO {name}: precision noise {ratio:.2%} of the signal (mean |delta - delta_float32| / mean "
              f"|delta_float32|, real context), {verdict} the {NOISE_FRACTION:.0%} line")
    print(f"total wall time {time.perf_counter() - t0:.0f} s")
    return 0


def _fmt(s: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3g}" for k, v in s.items())


if __name__ == "__main__":
    sys.exit(main())
