"""``AntiSDTrainer``: TRL's GRPOTrainer with a privileged self-teacher token term.

How it departs from GRPO (``method="grpo"`` departs in nothing: TRL's advantages pass through):

1. After TRL generates and scores a generation batch (``super()._generate_and_score_completions``),
   the rollouts, rewards and dataset columns of *all* processes are gathered, and each
   rollout's privileged context is chosen by the pure ``antisd.method.context.build_teacher_contexts``
   (a group may straddle ranks; every rank computes the same global choice and keeps its slice).
2. Teacher pass: the current model, no gradient, on ``teacher_prompt_ids + the same
   completion ids`` (never re-tokenised), through ``_get_per_token_logps_and_entropies`` (TRL's
   fused LM head, or ``antisd.lm.logprobs`` with ``fast_logprobs``; neither keeps full-vocabulary
   logits), sequences sorted by real length (teacher prompt + completion) and each batch cut to
   its own completion width, to limit padding. Student log-probs are TRL's
   ``old_per_token_logps`` where it computed them, else (``reuse_loss_logps``) the loss's own
   forward, else one no-grad pass.
3. The gate (``antisd.method.gate``) is updated once per generation batch with the global statistic
   (mean or median teacher entropy, or student perplexity) and returns lambda.
4. ``advantages`` (B,) are replaced by ``compose_advantages(A_seq, delta, mask, lambda)``
   (B, T); TRL's loss accepts (B, T) advantages unchanged.

Override surface (TRL 1.16.0, pinned; ``tests/trainer/test_trl_hooks.py`` fails if it moves):
``_calculate_rewards`` (stash the gathered rewards and local completions, call super first),
``_generate_and_score_completions`` (call super first, then swap advantages),
``_save_checkpoint`` / ``_load_optimizer_and_scheduler`` (gate state in the checkpoint),
``_compute_loss`` / ``_get_per_token_logps_and_entropies`` (the lazy student log-probs; with
``fast_logprobs`` the latter runs ``antisd.lm.logprobs`` instead of TRL's fused head).
Called, not overridden: ``_tokenize_prompts``.
"""

from __future__ import annotations

import json
import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import DistributedType, gather, gather_object
from transformers import PreTrainedModel
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import GRPOTrainer
from trl.models.utils import disable_gradient_checkpointing

from antisd.method.advantages import scored_token_mask, token_level_advantages, token_term_statistics
from antisd.lm.batching import length_bucketed
from antisd.trainer.checkpoints import (  # noqa: F401 - STATE_FILE, atomic_write_json, last_complete_checkpoint: re-exported
    STATE_FILE,
    STATE_VERSION,
    ResumeDataOrder,
    atomic_write_json,
    last_complete_checkpoint,
    publish,
    read_state,
    remove_leftovers,
    rotate_checkpoints,
    staging_dir,
)
from antisd.trainer.config import AntiSDConfig
from antisd.method.context import TeacherContext, build_teacher_contexts, source_fractions
from antisd.method.gate import SchmittGate, gate_statistic, make_gate
from antisd.lm.logprobs import per_token_logps_and_entropies
from antisd.lm.plumbing import needs_full_logits
from antisd.method.monitor import exploit_callback
from antisd.lm.pruned_generation import pruned_generate
from antisd.lm.pruned_generation import supports as pruned_supports
from antisd.lm.sampling import left_pad
from antisd.trainer.startchecks import check_constructed, resolve_trainer_inputs
from antisd.cli.validate import InputError

logger = logging.getLogger(__name__)


def _is_lora_model(model) -> bool:
    """A PEFT model whose forward takes the base model's arguments (LoRA-style adapters, not prompt learning)."""
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel) and not getattr(model.active_peft_config, "is_prompt_learning", False)


class NonFiniteTrainingError(RuntimeError):
    """A step's loss or gradient was NaN/inf (``stop_on_nonfinite``); the last good step is checkpointed."""


@dataclass(frozen=True)
class PendingTokenTerm:
    """What the lazy path carries from generation to the loss: the teacher log-probs (B, T), the
    context mask (B, T) and lambda. It travels inside TRL's batch dict (``put``/``take``, under
    ``KEYS``) so that TRL's buffering and gradient-accumulation split it with the other tensors."""

    teacher_logps: torch.Tensor
    ctx_mask: torch.Tensor
    lam: float
    correct: torch.Tensor | None = None  # (B,) bool: the verifier's verdict per rollout (for the term's statistics)

    KEYS = ("antisd_teacher_logps", "antisd_ctx_mask", "antisd_lambda", "antisd_correct")

    def put(self, batch: dict) -> None:
        batch.update(zip(self.KEYS, (self.teacher_logps, self.ctx_mask, torch.tensor(float(self.lam)))))
        if self.correct is not None:
            batch[self.KEYS[3]] = self.correct

    @classmethod
    def take(cls, batch: dict) -> PendingTokenTerm | None:
        if cls.KEYS[0] not in batch:
            return None
        t, c, lam = (batch[k] for k in cls.KEYS[:3])
        return cls(teacher_logps=t, ctx_mask=c, lam=float(lam), correct=batch.get(cls.KEYS[3]))


def _tied_to_loaded(model, missing: list[str]) -> set[str]:
    """The `missing` parameter names whose tensor is shared with a parameter that is not missing (tied weights)."""
    names: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(param), []).append(name)
    gone = set(missing)
    return {name for group in names.values() if len(group) > 1 and any(n not in gone for n in group)
            for name in group if name in gone}


def deliberation_token_ids(tokenizer, words: list[str]) -> set[int]:
    """Ids of tokens that are exactly one of ``words`` (with or without a leading space)."""
    ids: set[int] = set()
    for w in words:
        for variant in (w, " " + w):
            enc = tokenizer(variant, add_special_tokens=False)["input_ids"]
            if len(enc) == 1:
                ids.add(int(enc[0]))
    return ids


class AntiSDTrainer(GRPOTrainer):
    """GRPOTrainer + privileged self-teacher token advantages (see the module docstring)."""

    args: AntiSDConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        args, kwargs = resolve_trainer_inputs(args, kwargs)  # a model name resolved, the output folder checked
        super().__init__(*args, **kwargs)
        if not isinstance(self.args, AntiSDConfig):
            raise TypeError(f"AntiSDTrainer needs args of type AntiSDConfig, got {type(self.args).__name__}")
        check_constructed(self)  # templates: before training starts, not inside trainer.train()
        self.gate: SchmittGate | None = (
            make_gate(self.args.gate, **self.args.gate_params) if self.args.uses_teacher else None
        )
        self._generation_index = 0
        self._stash: dict[str, Any] = {}
        self._pending_token_term: tuple[PendingTokenTerm, dict] | None = None
        self._logged_once: set[str] = set()
        self._forward_count = 0  # log-prob forwards run by this process (antisd-scaleout, issue 16)
        self._pre_generation: tuple[int, int, dict | None] | None = None
        if self.args.uses_teacher and self.args.exploit_monitor:
            # first, so that the reporting integrations and log_history get the monitor/* values
            self.callback_handler.callbacks.insert(0, exploit_callback(self.args.monitor_thresholds))
        self._fast_logprobs = self.args.fast_logprobs == "true" or (
            self.args.fast_logprobs == "auto" and self.accelerator.device.type == "cpu")
        logger.info("fast_logprobs=%s: per-token log-probs from %s", self.args.fast_logprobs,
                    "antisd.lm.logprobs" if self._fast_logprobs else "TRL's fused LM head")
        self._warn_half_precision_head()  # antisd-scaleout (issue 16)
        self._delib_ids = deliberation_token_ids(self.processing_class, list(self.args.deliberation_words))
        names = list(self.reward_func_names)
        want = self.args.correctness_reward
        if want is not None and want not in names:
            raise InputError(f"correctness_reward={want!r} is not a reward function; have {names}")
        self._correct_idx = names.index(want) if want is not None else 0

    def _warn_half_precision_head(self) -> None:
        """antisd-scaleout (issue 16): warn when u = t - s comes from a half-precision output layer (TRL's fused head
        without cast_lm_head_to_fp32, under bf16/fp16 or with half-precision weights). Measured on the toy model
        (benchmarks/precision.py), such a head puts the token term's precision noise at ~3% of its signal, above
        the 2% line docs/benchmarks.md states; a float32 head brings it to 1.2-1.5%."""
        a = self.args
        if not a.uses_teacher or (self._fast_logprobs and not self._head_partitioned()) or a.cast_lm_head_to_fp32:
            return
        head = self.accelerator.unwrap_model(self.model).get_output_embeddings()
        dtype = getattr(getattr(head, "weight", None), "dtype", torch.float32)
        if a.bf16 or a.fp16 or dtype in (torch.bfloat16, torch.float16):
            logger.warning("The teacher and student log-probs (u = t - s) come from TRL's fused LM head in %s: its "
                           "rounding puts the token term's noise above 2%% of its signal (docs/benchmarks.md, "
                           "Precision). Set cast_lm_head_to_fp32=true (the default for sd/antisd under bf16/fp16) or "
                           "fast_logprobs=true.", "bf16" if (a.bf16 or dtype == torch.bfloat16) else "fp16")

    # ------------------------------------------------------------------ TRL hooks
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        # (B_global, n_funcs). An infinite reward would make the group's mean and std (and every advantage of
        # the group) NaN; treated as missing instead (TRL's nan-aware baseline then skips it), and counted.
        nonfinite = ~torch.isfinite(rewards_per_func)
        infinite = torch.isinf(rewards_per_func)
        if infinite.any():
            self._log_once("a reward function returned +-inf; such rewards are treated as missing (NaN) and counted "
                           "in reward/nonfinite_frac")
            rewards_per_func = rewards_per_func.masked_fill(infinite, float("nan"))
        self._stash = {"prompts": list(prompts), "completions": list(completions), "rewards_per_func": rewards_per_func,
                       "nonfinite_reward_frac": nonfinite.float().mean().item() if nonfinite.numel() else 0.0}
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        mode = "train" if self.model.training else "eval"
        stash, self._stash = self._stash, {}
        self._log_completion_metrics(output, stash, mode)
        if not self.args.uses_teacher or mode != "train":
            return output
        # what a checkpoint of the previous step holds, should this step fail (see _stop_nonfinite)
        self._pre_generation = (self.state.global_step, self._generation_index,
                                None if self.gate is None else self.gate.state_dict())
        self._generation_index += 1
        return self._apply_token_term(inputs, output, stash)

    def _generate_single_turn(self, *args, **kwargs):
        """TRL's generation; with ``generation_prune_finished`` the unwrapped model's ``generate`` is served by
        ``antisd.lm.pruned_generation`` for the duration of the call (same sampling distribution)."""
        model = self._prunable_model()
        if model is None:
            return super()._generate_single_turn(*args, **kwargs)
        original = model.__dict__.get("generate")

        def generate(input_ids=None, attention_mask=None, generation_config=None, **extra):
            reason = "extra inputs " + ", ".join(sorted(extra)) if extra else pruned_supports(generation_config)
            if reason is not None:
                self._log_once(f"generation_prune_finished: {reason}; using transformers' generate")
                fallback = original or type(model).generate.__get__(model)
                return fallback(input_ids=input_ids, attention_mask=attention_mask,
                                generation_config=generation_config, **extra)
            gc = generation_config
            eos = gc.eos_token_id if isinstance(gc.eos_token_id, (list, tuple)) else [gc.eos_token_id]
            return pruned_generate(model, input_ids, attention_mask, max_new_tokens=gc.max_new_tokens,
                                   eos_token_ids=eos, pad_token_id=gc.pad_token_id, temperature=gc.temperature or 1.0,
                                   top_k=gc.top_k, top_p=gc.top_p)

        model.generate = generate
        try:
            return super()._generate_single_turn(*args, **kwargs)
        finally:
            if original is None:
                del model.generate
            else:
                model.generate = original

    def _prunable_model(self):
        """The model TRL generates with, when pruned generation applies to it; else None (logged once)."""
        if not self.args.generation_prune_finished:
            return None
        reason = None
        if self.use_vllm or self.use_transformers_continuous_batching:
            reason = "vLLM / continuous batching generate instead"
        elif self.accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP):
            reason = f"{self.accelerator.distributed_type} shards the weights"
        model = self.accelerator.unwrap_model(self.model_wrapped)
        if reason is None and not (isinstance(model, PreTrainedModel) or _is_lora_model(model)):
            reason = f"the model is a {type(model).__name__}, not a transformers PreTrainedModel or a LoRA PeftModel"
        if reason is not None:
            self._log_once(f"generation_prune_finished ignored: {reason}")
            return None
        return model

    def _log_once(self, message: str) -> None:
        if message not in self._logged_once:
            self._logged_once.add(message)
            logger.info(message)

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.args.stop_on_nonfinite:
            bad = not bool(torch.isfinite(loss).all())
            what = "loss" if bad else ""
            if not bad and self.accelerator.distributed_type != DistributedType.DEEPSPEED:
                grads = [p.grad for p in model.parameters() if p.grad is not None]
                bad = bool(grads) and not bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())
                what = "gradient" if bad else ""
            if self.accelerator.num_processes > 1:  # every rank stops together
                bad = bool(gather(torch.tensor([float(bad)], device=self.accelerator.device)).max() > 0)
                what = what or "loss or gradient (on another process)"
            if bad:
                self._stop_nonfinite(model, what, float(loss.detach().float().mean()))
        return loss

    def _stop_nonfinite(self, model, what: str, loss: float) -> None:
        """Save the last good step (the optimizer has not applied this step yet) and raise."""
        model.zero_grad(set_to_none=True)
        step = self.state.global_step
        folder = Path(self._get_output_dir(trial=None)) / f"checkpoint-{step}"
        if step > 0 and not (folder / STATE_FILE).exists():
            if self._pre_generation is not None and self._pre_generation[0] == step:
                # this step generated (and moved the gate): checkpoint the state from before it
                _, self._generation_index, gate_state = self._pre_generation
                if gate_state is not None:
                    self.gate.load_state_dict(gate_state)
            self._save_checkpoint(model, trial=None)
        saved = f"the last good step's state is in {folder}" if step > 0 else "no step had completed; nothing was saved"
        raise NonFiniteTrainingError(
            f"the {what} of step {step + 1} is not finite (loss={loss}); training stopped before the optimizer "
            f"applied it: {saved}. Look at the step's reward/nonfinite_frac, pmi/nonfinite_frac and "
            "teacher/entropy_nonfinite_frac, lower the learning rate, or set stop_on_nonfinite=False to train on."
        )

    # ------------------------------------------------------------------ the token term
    def _global_contexts(self, inputs, stash) -> tuple[list[TeacherContext], torch.Tensor]:
        """Gather rollouts of all ranks, pick contexts globally, return this rank's slice."""
        a = self.args
        local_prompts = [x["prompt"] for x in inputs]
        completions = [c if isinstance(c, str) else c[-1]["content"] for c in stash["completions"]]
        local_ids = [
            str(x[a.problem_id_column]) if a.problem_id_column and a.problem_id_column in x else json.dumps(x["prompt"], sort_keys=True)
            for x in inputs
        ]
        rows = list(zip(local_prompts, completions, local_ids,
                        [x.get(a.solution_column) for x in inputs], [x.get(a.answer_column) for x in inputs]))
        all_rows = gather_object(rows) if self.accelerator.num_processes > 1 else rows
        rewards = stash["rewards_per_func"][:, self._correct_idx].float().cpu()  # (B_global,)
        rewards = torch.nan_to_num(rewards, nan=-math.inf)
        G = self.num_generations
        seed = random.Random(f"{a.seed}-{self._generation_index}").getrandbits(63)
        contexts = build_teacher_contexts(
            [r[0] for r in all_rows], [r[1] for r in all_rows], rewards.tolist(),
            [i // G for i in range(len(all_rows))], problem_ids=[r[2] for r in all_rows],
            solutions=[r[3] for r in all_rows], answers=[r[4] for r in all_rows],
            config=a.context_config, seed=seed,
        )
        start = self.accelerator.process_index * len(inputs)
        self._last_global_contexts = contexts
        return contexts[start:start + len(inputs)], rewards[start:start + len(inputs)]

    @torch.no_grad()
    def _teacher_pass(self, contexts: list[TeacherContext], completion_ids, completion_mask):
        """Teacher log-probs and entropies (B, T), and which rows were too long for the model (B,) bool.

        Rows without a context, or whose teacher sequence (privileged prompt + completion) exceeds the
        model's ``max_position_embeddings``, stay 0 / NaN: a privileged prompt is never cut.
        """
        # antisd-scaleout (issue 16): under FSDP / DeepSpeed ZeRO-3 every forward gathers parameters (collectives), so
        # every process must run the same number of teacher forwards; rows without a context make the counts differ.
        before = self._forward_count
        out = self._teacher_forwards(contexts, completion_ids, completion_mask)
        self._match_sharded_forwards(self._forward_count - before, completion_ids.size(0), completion_ids.device)
        return out

    def _match_sharded_forwards(self, done: int, rows: int, device) -> None:
        """Under sharded parameters (FSDP, DeepSpeed) with several processes, run 1-token no-grad forwards through the
        same log-prob function until this process has run as many teacher forwards as ``rows`` rows that all have a
        context would need (every process holds as many rows, so all reach the same count with no message; a forward's
        collectives do not depend on its input). ``done``: the forwards run here."""
        a = self.accelerator
        if a.num_processes < 2 or a.distributed_type not in (DistributedType.FSDP, DistributedType.DEEPSPEED):
            return
        bs, per = self.args.teacher_batch_size or self.args.per_device_train_batch_size, self.args.logps_batch_rows
        sizes = [min(bs, rows - start) for start in range(0, rows, bs)]  # the teacher batches of a full pass
        full = sum(-(-b // per) if per else 1 for b in sizes)  # forwards per batch: length_bucketed's chunks, or 1
        ids = torch.full((1, 2), self._tokenizer.pad_token_id, dtype=torch.long, device=device)
        for _ in range(full - done):
            self._get_per_token_logps_and_entropies(self.model, ids, torch.ones_like(ids), 1, batch_size=1,
                                                    compute_entropy=True)

    @torch.no_grad()
    def _teacher_forwards(self, contexts: list[TeacherContext], completion_ids, completion_mask):
        """``_teacher_pass`` on this process's rows alone (no cross-process matching)."""
        device = completion_ids.device
        B, T = completion_ids.shape
        t_logps = torch.zeros(B, T, device=device)
        t_ent = torch.full((B, T), float("nan"), device=device)
        too_long = torch.zeros(B, dtype=torch.bool, device=device)
        rows = [i for i, c in enumerate(contexts) if c.prompt is not None]
        if not rows:
            return t_logps, t_ent, too_long
        prompt_ids, _, _ = self._tokenize_prompts([contexts[i].prompt for i in rows])
        positions = torch.arange(1, T + 1, device=device)
        comp_len = (completion_mask.bool() * positions).amax(dim=1).tolist()  # (B,) last real position + 1
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit:
            fits = [len(prompt_ids[k]) + comp_len[i] <= limit for k, i in enumerate(rows)]
            for k, i in enumerate(rows):
                too_long[i] = not fits[k]
            if not all(fits):
                self._log_once(f"privileged prompt + completion longer than the model's {limit} positions: those "
                               "rollouts get no token term (counted in context/too_long_frac); nothing is cut")
                prompt_ids = [p for p, ok in zip(prompt_ids, fits) if ok]
                rows = [i for i, ok in zip(rows, fits) if ok]
                if not rows:
                    return t_logps, t_ent, too_long
        # Batches of similar real length (teacher prompt + completion): little left or right padding.
        order = sorted(range(len(rows)), key=lambda k: (len(prompt_ids[k]) + comp_len[rows[k]], k))
        bs = self.args.teacher_batch_size or self.args.per_device_train_batch_size
        pad_id = self._tokenizer.pad_token_id
        for start in range(0, len(order), bs):
            chunk = order[start:start + bs]
            idx = torch.tensor([rows[k] for k in chunk], device=device)
            t_c = max(comp_len[rows[k]] for k in chunk)  # the batch's own completion width
            t_ent[idx] = 0.0  # padding positions of rows with a context: 0, as TRL's path gives them
            if t_c == 0:
                continue
            p_ids, p_mask = left_pad([list(prompt_ids[k]) for k in chunk], pad_id)
            ids = torch.cat([p_ids.to(device), completion_ids[idx, :t_c]], dim=1)
            mask = torch.cat([p_mask.to(device), completion_mask[idx, :t_c]], dim=1)
            logps, ent, _ = self._get_per_token_logps_and_entropies(
                self.model, ids, mask, t_c, batch_size=len(chunk), compute_entropy=True
            )
            t_logps[idx, :t_c] = logps.float()
            t_ent[idx, :t_c] = ent.float()
        return t_logps, t_ent, too_long

    @torch.no_grad()
    def _student_pass(self, output) -> tuple[torch.Tensor, torch.Tensor | None]:
        if output.get("old_per_token_logps") is not None:
            return output["old_per_token_logps"].float(), None
        ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
        mask = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
        logps, ent, _ = self._get_per_token_logps_and_entropies(
            self.model, ids, mask, output["completion_ids"].size(1),
            batch_size=self.args.per_device_train_batch_size, compute_entropy=True,
        )
        return logps.float(), ent.float()

    def _global_stat(self, values: torch.Tensor, keep_mask: torch.Tensor) -> tuple[float, float, float]:
        """Mean and median of the finite ``values[keep_mask]`` over all processes (NaN when there are none),
        and the share of ``values[keep_mask]`` that is not finite (NaN/inf never reach a mean or the gate)."""
        local = values[keep_mask].float()
        if self.accelerator.num_processes > 1:
            allv = torch.tensor(sum(gather_object([local.tolist()]), []))
        else:
            allv = local.cpu()
        finite = torch.isfinite(allv)
        bad_frac = (~finite).float().mean().item() if allv.numel() else 0.0
        allv = allv[finite]
        if allv.numel() == 0:
            return float("nan"), float("nan"), bad_frac
        return allv.mean().item(), allv.median().item(), bad_frac

    def _gate_statistic(self, t_ent, ctx_mask, s_logps, token_mask) -> tuple[float, float, float]:
        """(teacher entropy mean, median, the gate's statistic) over all processes."""
        a = self.args
        h_mean, h_median, h_bad = self._global_stat(t_ent, ctx_mask)
        self._metrics["train"]["teacher/entropy_nonfinite_frac"].append(h_bad)
        if gate_statistic(a.gate) == "student_perplexity":
            s_mean_nll = self._global_stat(-s_logps, token_mask)[0]
            return h_mean, h_median, math.exp(s_mean_nll) if math.isfinite(s_mean_nll) else float("nan")
        # teacher_entropy, and "none" (which only records it)
        return h_mean, h_median, h_mean if a.gate_statistic == "mean" else h_median

    def _apply_token_term(self, inputs, output, stash):
        a = self.args
        contexts, rewards = self._global_contexts(inputs, stash)
        completion_ids, completion_mask = output["completion_ids"], output["completion_mask"]
        token_mask = scored_token_mask(output)  # (B, T)
        only_correct = a.token_term_rollouts == "correct"  # guard, docs/method.md Eq. 12
        has_ctx = torch.tensor([c.prompt is not None and (c.correct or not only_correct) for c in contexts],
                               device=token_mask.device)  # (B,)
        dump = bool(a.dump_rollouts_every) and self._generation_index % a.dump_rollouts_every == 0
        # The student log-probs are needed now only by a gate on the student's perplexity, a dump,
        # or when the loss will not compute them (old_per_token_logps present means TRL already did).
        eager = (not a.reuse_loss_logps or gate_statistic(a.gate) == "student_perplexity" or dump
                 or output.get("old_per_token_logps") is not None)

        with self._teacher_eval_mode():
            t_logps, t_ent, too_long = self._teacher_pass(contexts, completion_ids, completion_mask)  # (B, T), (B,)
            s_logps, s_ent = self._student_pass(output) if eager else (None, None)  # (B, T)

        ctx_mask = token_mask & (has_ctx & ~too_long)[:, None]  # (B, T)
        self._metrics["train"]["context/too_long_frac"].append(self._mean_all(too_long.float(), torch.ones_like(
            too_long, dtype=torch.float)))
        h_mean, h_median, stat = self._gate_statistic(t_ent, ctx_mask, s_logps, token_mask)
        lam = self.gate.update(stat)
        self._log_gate_metrics(h_mean, h_median, stat, lam)
        pending = PendingTokenTerm(teacher_logps=t_logps, ctx_mask=ctx_mask, lam=float(lam),
                                   correct=(rewards >= a.correct_threshold).to(token_mask.device))
        if s_logps is None:
            # Lazy path: the loss's own forward supplies the student log-probs (see _compute_loss).
            pending.put(output)
            return output
        self._log_student_metrics(s_logps, s_ent, token_mask)
        output["advantages"] = self._token_term(output["advantages"], pending, s_logps, s_ent, token_mask)
        if dump:
            self._dump_rollouts(stash, contexts, rewards, completion_ids, token_mask, s_logps, t_logps, t_ent, s_ent)
        return output

    def _token_term(self, seq_adv, pending: PendingTokenTerm, s_logps, s_ent, token_mask) -> torch.Tensor:
        """A (B, T) through the pure ``token_level_advantages`` (Eq. 4-6, 10-11); logs its statistics."""
        a = self.args
        term = token_level_advantages(
            seq_adv, pending.teacher_logps, s_logps.detach().float(), token_mask=token_mask, ctx_mask=pending.ctx_mask,
            lam=pending.lam, signal=a.token_signal, composition=a.composition, centering=a.token_term_centering,
        )
        stats = token_term_statistics(term, token_mask=token_mask,
                                      student_entropy=None if s_ent is None else s_ent.detach(),
                                      rollout_correct=pending.correct)
        self._log_ratios(stats)
        return term.advantages.to(seq_adv.device)

    # ------------------------------------------------------------------ lazy student log-probs
    def _compute_loss(self, model, inputs):
        pending = PendingTokenTerm.take(inputs)
        if pending is None:
            return super()._compute_loss(model, inputs)
        self._pending_token_term = (pending, inputs)
        loss = super()._compute_loss(model, inputs)
        if self._pending_token_term is not None:
            raise RuntimeError(
                "TRL's _compute_loss no longer calls _get_per_token_logps_and_entropies before reading the "
                "advantages; set reuse_loss_logps=False or update AntiSDTrainer for this TRL version"
            )
        return loss

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           compute_entropy=False, compute_aux_loss=False, **kwargs):
        def one_pass(ids, mask, k):
            self._forward_count += 1  # antisd-scaleout (issue 16): counted for _match_sharded_forwards
            if self._use_fast_logprobs(model, compute_aux_loss, kwargs):
                return self._fast_logps_and_entropies(model, ids, mask, k, batch_size, compute_entropy)
            return super(AntiSDTrainer, self)._get_per_token_logps_and_entropies(
                model, ids, mask, k, batch_size=batch_size, compute_entropy=compute_entropy,
                compute_aux_loss=compute_aux_loss, **kwargs)

        rows = self.args.logps_batch_rows
        if rows and input_ids.size(0) > rows and not compute_aux_loss and all(v is None for v in kwargs.values()):
            logps, ents = length_bucketed(lambda ids, mask, k: one_pass(ids, mask, k)[:2], input_ids, attention_mask,
                                          logits_to_keep, rows)
            out = (logps, ents if compute_entropy else None, None)
        else:
            out = one_pass(input_ids, attention_mask, logits_to_keep)
        waiting, self._pending_token_term = self._pending_token_term, None
        if waiting is not None:
            pending, batch = waiting
            token_mask = scored_token_mask(batch)  # (B, T)
            self._log_student_metrics(out[0], out[1], token_mask)
            # Values only: the token term is a stop-gradient advantage.
            batch["advantages"] = self._token_term(batch["advantages"], pending, out[0], out[1], token_mask)
        return out

    def _use_fast_logprobs(self, model, compute_aux_loss: bool, extra: dict[str, Any]) -> bool:
        """fast_logprobs applies to text-only inputs, no MoE aux loss, and output layers antisd.lm.logprobs handles."""
        if not self._fast_logprobs or compute_aux_loss or any(v is not None for v in extra.values()):
            return False
        if self._head_partitioned():  # antisd-scaleout (issue 16)
            return False
        return needs_full_logits(model) is None

    def _head_partitioned(self) -> bool:
        """antisd-scaleout (issue 16): under DeepSpeed ZeRO-3 and FSDP1 the output layer's weight is partitioned outside
        the model's forward, where antisd.lm.logprobs reads it (FSDP2 gathers it: tests/trainer/test_fsdp.py); those runs take
        TRL's fused LM head, which computes inside the forward (logged once)."""
        if self._dist.is_zero3 or self._dist.fsdp_version == 1:
            self._log_once("fast_logprobs: the output layer is partitioned (DeepSpeed ZeRO-3 / FSDP1); log-probs from "
                           "TRL's fused LM head")
            return True
        return False

    def _fast_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy):
        """TRL's ``_get_per_token_logps_and_entropies`` contract through ``antisd.lm.logprobs``: (B, K) float32 each."""
        batch_size = batch_size or input_ids.size(0)
        logps, ents = [], []
        for start in range(0, input_ids.size(0), batch_size):
            with self.accelerator.autocast():
                lp, ent = per_token_logps_and_entropies(
                    model, input_ids[start:start + batch_size], attention_mask[start:start + batch_size],
                    logits_to_keep, temperature=self.temperature, compute_entropy=compute_entropy,
                )
            logps.append(lp)  # (b, K)
            ents.append(ent)  # (b, K) or None
        return torch.cat(logps), (torch.cat(ents) if compute_entropy else None), None

    def _teacher_eval_mode(self):
        """Context manager: TRL's no-grad inference setting for extra forward passes."""
        return disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs)

    # ------------------------------------------------------------------ metrics and dumps
    def _mean_all(self, x: torch.Tensor, mask: torch.Tensor) -> float:
        """Global masked mean over processes."""
        local = torch.stack([(x * mask).sum().float(), mask.sum().float()])
        tot = gather(local.to(self.accelerator.device)).view(-1, 2).sum(0)
        return (tot[0] / tot[1]).item() if tot[1] > 0 else float("nan")

    def _log_completion_metrics(self, output, stash, mode: str) -> None:
        m = self._metrics[mode]
        mask = output["completion_mask"].bool()
        if self._delib_ids:
            ids = torch.tensor(sorted(self._delib_ids), device=mask.device)
            is_delib = torch.isin(output["completion_ids"], ids) & mask
            m["deliberation/token_frac"].append(self._mean_all(is_delib.float(), mask.float()))
        if "rewards_per_func" in stash:
            r = stash["rewards_per_func"][:, self._correct_idx]
            r = r[~torch.isnan(r)]
            acc = (r >= self.args.correct_threshold).float().mean().item() if r.numel() else float("nan")
            m["accuracy"].append(acc)
            m["reward/nonfinite_frac"].append(stash["nonfinite_reward_frac"])

    def _log_student_metrics(self, s_logps, s_ent, token_mask) -> None:
        m = self._metrics["train"]
        if s_ent is not None:
            se_mean, se_median, _ = self._global_stat(s_ent.detach(), token_mask)
            m["student/entropy_mean"].append(se_mean)
            m["student/entropy_median"].append(se_median)
        nll = self._mean_all(-s_logps.detach().float(), token_mask.float())
        m["student/perplexity"].append(math.exp(nll) if math.isfinite(nll) else float("nan"))

    def _log_gate_metrics(self, h_mean, h_median, stat, lam) -> None:
        m = self._metrics["train"]
        m["teacher/entropy_mean"].append(h_mean)
        m["teacher/entropy_median"].append(h_median)
        m["gate/statistic"].append(stat)
        for k, v in {**self.gate.metrics(), "gate/lambda": lam}.items():
            if math.isfinite(v):  # H_warm and the band exist only after warm-up
                m[k].append(v)
        fr = source_fractions(self._last_global_contexts)
        for k, v in fr.items():
            m[k].append(v)
        if fr.get("context/truncated_frac", 0) > 0:
            self._log_once(f"sibling solutions longer than max_solution_chars={self.args.max_solution_chars} are cut "
                           "to their last characters (counted in context/truncated_frac)")
        m["context/masked_rollout_frac"].append(fr["context/none_frac"])

    def _log_ratios(self, stats: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Log numerator/denominator pairs summed over all processes (one collective for all of them)."""
        names = list(stats)
        local = torch.stack([torch.stack(stats[k]) for k in names]).to(self.accelerator.device)  # (K, 2)
        if self.accelerator.num_processes > 1:
            local = gather(local.unsqueeze(0)).view(-1, len(names), 2).sum(0)
        m = self._metrics["train"]
        for name, (num, den) in zip(names, local.tolist()):
            m[name].append(num / den if den > 0 else float("nan"))

    def _dump_rollouts(self, stash, contexts, rewards, completion_ids, token_mask, s, t, h, s_ent=None) -> None:
        records = []
        for i, c in enumerate(contexts):
            n = int(token_mask[i].sum())
            ids = completion_ids[i][token_mask[i]].tolist()
            records.append({
                "step": int(self.state.global_step), "generation": self._generation_index,
                "prompt": stash["prompts"][i], "completion": stash["completions"][i],
                "teacher_prompt": c.prompt, "source": c.source, "correct": c.correct, "reward": float(rewards[i]),
                "completion_ids": ids, "tokens": self._tokenizer.convert_ids_to_tokens(ids),
                "student_logps": s[i][token_mask[i]].tolist()[:n], "teacher_logps": t[i][token_mask[i]].tolist()[:n],
                "teacher_entropy": h[i][token_mask[i]].tolist()[:n],
                "student_entropy": None if s_ent is None else s_ent[i][token_mask[i]].tolist()[:n],
            })
        records = gather_object(records) if self.accelerator.num_processes > 1 else records
        if self.accelerator.is_main_process:
            out = Path(self.args.output_dir) / "rollouts"
            out.mkdir(parents=True, exist_ok=True)
            with open(out / "rollouts.jsonl", "a") as fh:
                for r in records:
                    fh.write(json.dumps(r, default=lambda o: None) + "\n")

    # ------------------------------------------------------------------ checkpoints
    def antisd_state_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "generation_index": self._generation_index,
            "gate": None if self.gate is None else self.gate.state_dict(),
            "method": self.args.method,
        }

    def load_antisd_state_dict(self, state: dict[str, Any]) -> None:
        self._generation_index = int(state["generation_index"])
        if self.gate is not None and state.get("gate") is not None and not self.args.reset_gate_on_resume:
            self.gate.load_state_dict(state["gate"])

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """TRL's log, without the metrics that have no finite value in this logging window (e.g. the teacher's
        entropy when no rollout had a context, or a ratio whose denominator was 0 on every step): TRL would log
        them as None, and TensorBoard warn about each, at every log."""
        metrics = self._metrics["train" if self.model.training else "eval"]
        for key in [k for k, values in metrics.items() if not any(math.isfinite(v) for v in values)]:
            del metrics[key]
        super().log(logs, start_time)

    def create_model_card(self, model_name: str | None = None, dataset_name: str | None = None,
                          tags: str | list[str] | None = None) -> None:
        """``README.md`` of the run folder (TRL writes its card at every checkpoint): antisd's card, naming the
        base model, the method and its settings, the data, the steps and the last logged figures
        (``antisd.trainer.modelcard``; ``model_card_info`` holds what ``antisd train`` knows of the run)."""
        if self.is_world_process_zero():
            from antisd.trainer.modelcard import write_model_card

            write_model_card(self)

    def _issue_warnings_after_load(self, load_result: Any) -> None:
        """transformers' warnings after loading a checkpoint's weights, without the keys of tied weights: a
        checkpoint of a model with tied embeddings stores the shared tensor once (``lm_head.weight`` is
        missing by design), and the loaded embedding already is the output layer's weight."""
        missing = list(getattr(load_result, "missing_keys", []) or [])
        tied = _tied_to_loaded(self.model, missing)
        if tied and hasattr(load_result, "_replace"):
            load_result = load_result._replace(missing_keys=[k for k in missing if k not in tied])
        super()._issue_warnings_after_load(load_result)

    def _save_checkpoint(self, model, trial):
        """transformers' checkpoint, crash-safe (``antisd.trainer.checkpoints``): written into a staging folder,
        completed with ``STATE_FILE``, fsynced and renamed to ``checkpoint-N``; older ones rotated after."""
        run_dir = Path(self._get_output_dir(trial=trial))
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staging = staging_dir(run_dir, name)
        if self.args.should_save:
            remove_leftovers(run_dir)
        self.accelerator.wait_for_everyone()
        # transformers writes <run dir>/checkpoint-N and rotates <run dir>: here the staging folder.
        self._get_output_dir = lambda trial=None: str(staging)
        try:
            super()._save_checkpoint(model, trial)
        finally:
            del self._get_output_dir
        if self.args.should_save:
            best = self.state.best_model_checkpoint
            if best is not None and Path(best).parent == staging:  # it names the staged copy
                self.state.best_model_checkpoint = str(run_dir / Path(best).name)
                self.state.save_to_json(str(staging / name / TRAINER_STATE_NAME))
            atomic_write_json(staging / name / STATE_FILE, self.antisd_state_dict())
        self.accelerator.wait_for_everyone()  # every process's files (RNG states, optimizer shards) are in
        if self.args.should_save:
            publish(staging / name, run_dir / name)
            rotate_checkpoints(run_dir, self.args.save_total_limit, self.state.best_model_checkpoint)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None:
            return
        order = next((cb for cb in self.callback_handler.callbacks if isinstance(cb, ResumeDataOrder)), None)
        if order is None:
            order = ResumeDataOrder()
            self.add_callback(order)
        order.arm()  # the sampler is past the checkpoint's finished epochs before the first batch
        micro_steps = self.state.global_step * self.args.gradient_accumulation_steps
        if micro_steps % (self.args.steps_per_generation * self.num_iterations):
            logger.warning("Resuming at step %d, inside a generation batch (steps_per_generation=%d, num_iterations=%d): "
                           "its remaining rollouts are generated anew, so the run will not repeat an uninterrupted "
                           "one exactly", self.state.global_step, self.args.steps_per_generation, self.num_iterations)
        state = read_state(checkpoint)  # None without STATE_FILE; a damaged file raises, naming it
        if state is None or self.args.reset_gate_on_resume:
            if self.args.reset_gate_on_resume:
                logger.info("Resuming with a fresh gate warm-up (reset_gate_on_resume=True).")
            elif self.gate is not None:
                logger.warning("%s has no %s (a checkpoint of another trainer, or an incomplete one of an older "
                               "antisd): the gate starts a fresh warm-up; set reset_gate_on_resume=true to say so",
                               checkpoint, STATE_FILE)
            if state is not None:
                self._generation_index = int(state["generation_index"])
            return
        self.load_antisd_state_dict(state)
        logger.info("Restored AntiSD state from %s (generation %d).", checkpoint, self._generation_index)
