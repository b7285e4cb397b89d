"""Train AntiSD for a few steps and record what a sharded run must reproduce (used by test_fsdp.py).

Launched as one process, or with ``accelerate launch`` (FSDP / DeepSpeed / DDP, 2 processes over
gloo on a CPU machine). Writes, from the main process, ``OUT/result.json``: the per-step log
(loss, grad norm, gate trace, PMI), the distributed type and FSDP version, the largest |u| seen
by the token term when the teacher prompt is the student's own prompt (``--self-teacher``), and
``OUT/weights.pt``: the full (gathered) float32 state dict after the last step; ``master_port``: the rendezvous
port the launcher gave (None in one process). A launched process leaves the process group before exiting
(``launch_helpers.leave_process_group``).

Generation is a stand-in unless ``--generation greedy``: completion ids are a deterministic
function of (global step, the row's index in the *global* generation batch), so one process and
two processes train on the same completions (sampling would draw them from different RNG streams);
lengths vary, so padding and the EOS mask are exercised. Problems 0, 3, 6, ... have no solution
and only the dataset source is used, so a rank can hold rows with no privileged context: the
teacher pass then runs fewer batches there than on the other rank.

usage: sharded_train.py MODEL OUT [--steps N] [--save-every K] [--resume] [--generation standin|greedy]
                                   [--self-teacher] [--per-device B] [--optim NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import torch
from accelerate.utils import gather_object

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from launch_helpers import leave_process_group  # noqa: E402
from trainer_helpers import make_trainer, toy_rows  # noqa: E402

GLOBAL_BATCH = 8  # rollouts per step, whatever the number of processes
KEYS = ("loss", "grad_norm", "reward", "gate/lambda", "teacher/entropy_mean", "pmi/mean", "signal/mean",
        "context/none_frac", "student/perplexity")


def allow_fsdp_on_cpu() -> None:
    """accelerate 1.15 selects FSDP only on accelerator devices (``AcceleratorState`` keeps MULTI_CPU and drops
    the FSDP plugin on a CPU): under ``accelerate launch --use_fsdp`` on a CPU machine, keep the plugin and the FSDP
    distributed type (in PartialState too, which every new AcceleratorState copies). Everything after that
    (accelerate's FSDP preparation, transformers' Trainer, TRL, antisd) runs unpatched."""
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType

    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true":
        return
    original = AcceleratorState.__init__

    def init(self, *args, fsdp_plugin=None, **kwargs):
        original(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            PartialState._shared_state["distributed_type"] = DistributedType.FSDP  # copied by every AcceleratorState()
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = fsdp_plugin

    AcceleratorState.__init__ = init


def standin_generation(trainer, seed: int = 0):
    """``_generate_single_turn`` stand-in: row g of the global batch at step s gets 3-12 ids drawn from a
    generator seeded by (seed, s, g), ending with EOS when its length is even."""
    tok = trainer.processing_class
    low, high = len(tok.all_special_ids), len(tok)

    def generate(prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        start = trainer.accelerator.process_index * len(prompt_ids)
        out = []
        for k in range(len(prompt_ids)):
            g = torch.Generator().manual_seed(seed * 1_000_003 + trainer.state.global_step * 1009 + start + k)
            n = int(torch.randint(3, 13, (1,), generator=g))
            ids = torch.randint(low, high, (n,), generator=g).tolist()
            if n % 2 == 0:
                ids[-1] = tok.eos_token_id
            out.append(ids)
        return out, None

    return generate


def own_prompt_as_context(trainer) -> None:
    """Wrap ``global_contexts``: every rollout that has a privileged context gets the student's own prompt
    instead (true u = 0); rollouts without one keep none."""
    orig = trainer.global_contexts

    def global_contexts(inputs, stash):
        contexts, rewards = orig(inputs, stash)
        own = [c if c.prompt is None else replace(c, prompt=x["prompt"]) for c, x in zip(contexts, inputs)]
        return own, rewards

    trainer.global_contexts = global_contexts


def record_self_pmi(trainer, seen: list[float]) -> None:
    """Wrap ``token_term`` (on the instance) to record max |u| = |t - s| over context tokens."""
    orig = trainer.token_term

    def token_term(seq_adv, pending, s_logps, s_ent, token_mask):
        mask = pending.ctx_mask.bool() & token_mask.bool()
        if mask.any():
            u = (pending.teacher_logps.float() - s_logps.detach().float())[mask]
            seen.append(float(u.abs().max()))
        return orig(seq_adv, pending, s_logps, s_ent, token_mask)

    trainer.token_term = token_term


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("out")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--save-every", type=int, default=0, help="checkpoint every K steps (0: never)")
    p.add_argument("--resume", action="store_true", help="resume from OUT's newest complete checkpoint")
    p.add_argument("--generation", choices=["standin", "greedy"], default="standin")
    p.add_argument("--ragged-generation", action="store_true",
                   help="greedy generation stops after 3 tokens on process 0 and 12 on the others (as when one "
                        "process's sequences all end early): generation must keep the processes' forwards in step")
    p.add_argument("--self-teacher", action="store_true", help="teacher prompt = the student's prompt (u = 0)")
    p.add_argument("--optim", default="adamw_torch")
    p.add_argument("--no-use-cpu", action="store_true",
                   help="leave TrainingArguments.use_cpu unset (accelerate selects DeepSpeed only then)")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse(argv)
    allow_fsdp_on_cpu()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dist = {"ddp_backend": "gloo"} if world > 1 else {}
    tr = make_trainer(
        args.model, args.out, rows=toy_rows(12), method="antisd", per_device_train_batch_size=GLOBAL_BATCH // world,
        num_generations=4, max_steps=args.steps, gate="teacher_entropy", gate_warmup_steps=1,
        solution_sources=["dataset"], teacher_batch_size=1,
        top_k=1 if args.generation == "greedy" else 0, max_completion_length=12,
        lr_scheduler_type="constant", optim=args.optim, learning_rate=1e-3, use_cpu=not args.no_use_cpu,
        save_strategy="steps" if args.save_every else "no", save_steps=args.save_every or 500,
        **dist,
    )
    if args.generation == "standin":
        tr._generate_single_turn = standin_generation(tr)
    elif args.ragged_generation:
        tr.generation_config.max_new_tokens = 3 if tr.accelerator.process_index == 0 else 12
    if args.self_teacher:
        own_prompt_as_context(tr)
    seen: list[float] = []
    record_self_pmi(tr, seen)
    tr.train(resume_from_checkpoint=True if args.resume else None)
    state = tr.accelerator.get_state_dict(tr.model_wrapped)  # gathered on the main process
    mine = [max(seen, default=0.0), float(len(seen))]
    per_process = gather_object([mine]) if world > 1 else [mine]
    if tr.accelerator.is_main_process:
        out = Path(args.out)
        torch.save({k: v.detach().float().cpu() for k, v in state.items()}, out / "weights.pt")
        fsdp = getattr(tr.accelerator.state, "fsdp_plugin", None)
        log = [{k: h[k] for k in ("step", *KEYS) if k in h} for h in tr.state.log_history if "loss" in h]
        (out / "result.json").write_text(json.dumps({
            "world_size": world, "distributed_type": str(tr.accelerator.distributed_type),
            "fsdp_version": getattr(fsdp, "fsdp_version", None), "log": log,
            "max_abs_u": max(m[0] for m in per_process), "token_term_calls": [int(m[1]) for m in per_process],
            "master_port": os.environ.get("MASTER_PORT"),
        }, indent=1))


if __name__ == "__main__":
    main()
    leave_process_group()  # after main(): the run's objects have gone with its frame
