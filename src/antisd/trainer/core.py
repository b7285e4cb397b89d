"""``AntiSDTrainer``: TRL's GRPOTrainer with a privileged self-teacher token term.

One step (docs/architecture.md follows it through the packages). ``method="grpo"`` departs from TRL in nothing:
TRL's advantages pass through. For ``sd`` / ``antisd``, after TRL generates and scores a generation batch:

1. ``global_contexts``: each rollout's privileged context, chosen on the rollouts of all processes
   (``antisd.trainer.teacher``); ``antisd.method.guard.rollout_roles``: which rollouts carry the token term
   (Eq. 12), which ones the gate measures, which ones the teacher scores.
2. ``teacher_pass``: teacher log-probs and entropies of the scored rollouts (no gradient, same weights).
3. The gate (``antisd.method.gate``) is updated once per generation batch with the global statistic and gives lambda.
4. ``token_term``: TRL's sequence advantages (B,) become A_{i,t} (B, T) through ``TokenTermStep.finish``
   (``antisd.trainer.token_term``, the pure ``antisd.method.advantages``); TRL's loss accepts (B, T) advantages.
   The student log-probs are TRL's ``old_per_token_logps`` where it computed them, else (``reuse_loss_logps``,
   the lazy path) the loss's own forward: ``_compute_loss`` leaves the step waiting and
   ``_get_per_token_logps_and_entropies`` finishes it before TRL's loss reads the advantages.

The TRL methods overridden are ``TRL_OVERRIDES`` (TRL 1.16.0, pinned; tests/trainer/test_trl_hooks.py checks the list
against this class and fails when TRL moves); each calls TRL's own method (``create_model_card`` replaces it).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import DistributedType, gather
from trl import GRPOTrainer
from trl.models.utils import disable_gradient_checkpointing

from antisd.cli.validate import InputError
from antisd.lm.batching import length_bucketed
from antisd.method.advantages import scored_token_mask
from antisd.method.context import TeacherContext
from antisd.method.gate import SchmittGate, gate_statistic, make_gate
from antisd.method.guard import rollout_roles
from antisd.method.monitor import exploit_callback
from antisd.trainer import checkpointing
from antisd.trainer.checkpoints import STATE_FILE
from antisd.trainer.config import AntiSDConfig
from antisd.trainer.dumps import append_rollouts, rollout_records
from antisd.trainer.generation import prunable_model, serving_pruned_generate
from antisd.trainer.kernels import fast_logprobs_apply, fast_logps_and_entropies, warn_half_precision_head
from antisd.trainer.metrics import StepMetrics
from antisd.trainer.startchecks import check_constructed, resolve_trainer_inputs
from antisd.trainer.teacher import TeacherPass, global_contexts
from antisd.trainer.token_term import TokenTermStep

logger = logging.getLogger(__name__)

TRL_OVERRIDES = (
    "_calculate_rewards",  # keep the gathered rewards and local completions for the teacher's contexts
    "_generate_and_score_completions",  # after TRL's: contexts, teacher pass, gate, token term
    "_generate_single_turn",  # pruned generation (generation_prune_finished)
    "_compute_loss",  # the lazy path: leaves the token term waiting for the loss's own log-probs
    "_get_per_token_logps_and_entropies",  # antisd.lm.logprobs (fast_logprobs), length buckets, the lazy path
    "training_step",  # stop_on_nonfinite
    "_save_checkpoint", "_load_optimizer_and_scheduler", "_get_output_dir",  # crash-safe checkpoints, gate state
    "log",  # metrics without a finite value in the window are dropped
    "create_model_card",  # antisd's model card
    "_issue_warnings_after_load",  # tied weights are not "missing"
)
TRL_CALLED = ("_tokenize_prompts", "_metrics", "_tokenizer")  # TRL members read, not overridden


class NonFiniteTrainingError(RuntimeError):
    """A step's loss or gradient was NaN/inf (``stop_on_nonfinite``); the last good step is checkpointed."""


def tied_to_loaded(model, missing: list[str]) -> set[str]:
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
        a = self.args
        self.gate: SchmittGate | None = make_gate(a.gate, **a.gate_params) if a.uses_teacher else None
        self.generation_index = 0  # generation batches so far (seeds the context choice; in checkpoints)
        self.forward_count = 0  # log-prob forwards run by this process (matched under sharded weights)
        self.last_contexts: list[TeacherContext] = []  # the last generation batch's contexts, every process's
        self.checkpoint_staging: Path | None = None  # where transformers writes a checkpoint being saved
        self.rewards_stash: dict[str, Any] = {}  # _calculate_rewards -> _generate_and_score_completions
        self.waiting_token_term: tuple[TokenTermStep, dict] | None = None  # _compute_loss -> the loss's log-probs
        self.pre_generation: tuple[int, int, dict | None] | None = None  # the state a failed step rolls back to
        self._logged_once: set[str] = set()
        self.step_metrics = StepMetrics(self.accelerator, self._metrics, self.log_once)
        self.teacher = TeacherPass(self)
        if a.uses_teacher and a.exploit_monitor:
            # first, so that the reporting integrations and log_history get the monitor/* values
            self.callback_handler.callbacks.insert(0, exploit_callback(a.monitor_thresholds))
        self.fast_logprobs = a.fast_logprobs == "true" or (a.fast_logprobs == "auto"
                                                           and self.accelerator.device.type == "cpu")
        logger.info("fast_logprobs=%s: per-token log-probs from %s", a.fast_logprobs,
                    "antisd.lm.logprobs" if self.fast_logprobs else "TRL's fused LM head")
        warn_half_precision_head(self)
        self.deliberation_ids = deliberation_token_ids(self.processing_class, list(a.deliberation_words))
        names = list(self.reward_func_names)
        if a.correctness_reward is not None and a.correctness_reward not in names:
            raise InputError(f"correctness_reward={a.correctness_reward!r} is not a reward function; have {names}")
        self.correct_index = names.index(a.correctness_reward) if a.correctness_reward is not None else 0

    def log_once(self, message: str) -> None:
        if message not in self._logged_once:
            self._logged_once.add(message)
            logger.info(message)

    # ------------------------------------------------------------------ TRL hooks: rollouts
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        # (B_global, n_funcs). An infinite reward would make the group's mean and std (and every advantage of
        # the group) NaN; treated as missing instead (TRL's nan-aware baseline then skips it), and counted.
        nonfinite = ~torch.isfinite(rewards_per_func)
        infinite = torch.isinf(rewards_per_func)
        if infinite.any():
            self.log_once("a reward function returned +-inf; such rewards are treated as missing (NaN) and counted "
                          "in reward/nonfinite_frac")
            rewards_per_func = rewards_per_func.masked_fill(infinite, float("nan"))
        self.rewards_stash = {"prompts": list(prompts), "completions": list(completions),
                              "rewards_per_func": rewards_per_func,
                              "nonfinite_reward_frac": nonfinite.float().mean().item() if nonfinite.numel() else 0.0}
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        mode = "train" if self.model.training else "eval"
        stash, self.rewards_stash = self.rewards_stash, {}
        self.step_metrics.completions(mode, output, stash, self.deliberation_ids, self.correct_index,
                                      self.args.correct_threshold)
        if not self.args.uses_teacher or mode != "train":
            return output
        # what a checkpoint of the previous step holds, should this step fail (see _stop_nonfinite)
        self.pre_generation = (self.state.global_step, self.generation_index,
                               None if self.gate is None else self.gate.state_dict())
        self.generation_index += 1
        return self.apply_token_term(inputs, output, stash)

    def _generate_single_turn(self, *args, **kwargs):
        """TRL's generation; with ``generation_prune_finished`` served by pruned generation (same distribution)."""
        model = prunable_model(self)
        if model is None:
            return super()._generate_single_turn(*args, **kwargs)
        with serving_pruned_generate(model, self.log_once):
            return super()._generate_single_turn(*args, **kwargs)

    # ------------------------------------------------------------------ the token term
    def global_contexts(self, inputs, stash) -> tuple[list[TeacherContext], torch.Tensor]:
        """This process's contexts and correctness rewards (B,); every process's contexts in ``last_contexts``."""
        self.last_contexts, contexts, rewards = global_contexts(self, inputs, stash["rewards_per_func"],
                                                                stash["completions"])
        return contexts, rewards

    def teacher_pass(self, contexts: list[TeacherContext], completion_ids, completion_mask, scored=None):
        """Teacher log-probs and entropies (B, T) and the too-long rows (B,) of the rows with ``scored`` (all)."""
        if scored is None:
            scored = torch.ones(len(contexts), dtype=torch.bool)
        return self.teacher.score(contexts, scored, completion_ids, completion_mask)

    @torch.no_grad()
    def student_pass(self, output) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The student's log-probs (B, T) on its rollouts (TRL's old_per_token_logps when it computed them)."""
        if output.get("old_per_token_logps") is not None:
            return output["old_per_token_logps"].float(), None
        ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
        mask = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
        logps, ent, _ = self._get_per_token_logps_and_entropies(
            self.model, ids, mask, output["completion_ids"].size(1),
            batch_size=self.args.per_device_train_batch_size, compute_entropy=True)
        return logps.float(), ent.float()

    def gate_statistic(self, t_ent, gate_mask, s_logps, token_mask) -> tuple[float, float, float]:
        """(teacher entropy mean, median, the gate's statistic) over all processes."""
        a, sm = self.args, self.step_metrics
        h_mean, h_median, h_bad = sm.global_stat(t_ent, gate_mask)
        self._metrics["train"]["teacher/entropy_nonfinite_frac"].append(h_bad)
        if gate_statistic(a.gate) == "student_perplexity":
            s_mean_nll = sm.global_stat(-s_logps, token_mask)[0]
            return h_mean, h_median, math.exp(s_mean_nll) if math.isfinite(s_mean_nll) else float("nan")
        # teacher_entropy, and "none" (which only records it)
        return h_mean, h_median, h_mean if a.gate_statistic == "mean" else h_median

    def apply_token_term(self, inputs, output, stash):
        """Contexts, roles (Eq. 12), teacher pass, gate; the token term now (eager) or in the loss (lazy)."""
        a = self.args
        contexts, rewards = self.global_contexts(inputs, stash)
        completion_ids, completion_mask = output["completion_ids"], output["completion_mask"]
        token_mask = scored_token_mask(output)  # (B, T)
        dump = bool(a.dump_rollouts_every) and self.generation_index % a.dump_rollouts_every == 0
        roles = rollout_roles(torch.tensor([c.prompt is not None for c in contexts]),
                              torch.tensor([bool(c.correct) for c in contexts]), rollouts=a.token_term_rollouts,
                              gate_population=a.gate_population, dump=dump)
        # The student log-probs are needed now only by a gate on the student's perplexity, a dump,
        # or when the loss will not compute them (old_per_token_logps present means TRL already did).
        eager = (not a.reuse_loss_logps or gate_statistic(a.gate) == "student_perplexity" or dump
                 or output.get("old_per_token_logps") is not None)
        with self._teacher_eval_mode():
            t_logps, t_ent, too_long = self.teacher_pass(contexts, completion_ids, completion_mask, roles.scored)
            s_logps, s_ent = self.student_pass(output) if eager else (None, None)  # (B, T)
        device = token_mask.device
        fits = ~too_long.to(device)
        ctx_mask = token_mask & (roles.carries.to(device) & fits)[:, None]  # (B, T): tokens that carry the term
        self._metrics["train"]["context/too_long_frac"].append(
            self.step_metrics.mean_all(too_long.float(), torch.ones_like(too_long, dtype=torch.float)))
        gate_mask = token_mask & (roles.gate.to(device) & fits)[:, None]  # (B, T): the gate's population
        h_mean, h_median, stat = self.gate_statistic(t_ent, gate_mask, s_logps, token_mask)
        lam = self.gate.update(stat)
        self.step_metrics.gate(self.gate, h_mean, h_median, stat, lam, self.last_contexts, a.max_solution_chars)
        step = TokenTermStep(teacher_logps=t_logps, ctx_mask=ctx_mask, lam=float(lam),
                             correct=(rewards >= a.correct_threshold).to(device))
        if s_logps is None:  # lazy: the loss's own forward supplies the student log-probs (_compute_loss)
            step.put(output)
            return output
        self.step_metrics.student(s_logps, s_ent, token_mask)
        output["advantages"] = self.token_term(output["advantages"], step, s_logps, s_ent, token_mask)
        if dump:
            append_rollouts(self.accelerator, a.output_dir, rollout_records(
                int(self.state.global_step), self.generation_index, stash, contexts, rewards, completion_ids,
                token_mask, self.processing_class, s_logps, t_logps, t_ent, s_ent))
        return output

    def token_term(self, seq_adv, step: TokenTermStep, s_logps, s_ent, token_mask) -> torch.Tensor:
        """A (B, T) through ``TokenTermStep.finish`` (both paths); logs the term's statistics."""
        advantages, stats = step.finish(seq_adv, s_logps, s_ent, token_mask, self.args)
        self.step_metrics.ratios(stats)
        return advantages

    # ------------------------------------------------------------------ TRL hooks: the loss
    def _compute_loss(self, model, inputs):
        step = TokenTermStep.take(inputs)
        if step is None:
            return super()._compute_loss(model, inputs)
        self.waiting_token_term = (step, inputs)
        loss = super()._compute_loss(model, inputs)
        if self.waiting_token_term is not None:
            raise RuntimeError(
                "TRL's _compute_loss no longer calls _get_per_token_logps_and_entropies before reading the "
                "advantages; set reuse_loss_logps=False or update AntiSDTrainer for this TRL version")
        return loss

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           compute_entropy=False, compute_aux_loss=False, **kwargs):
        def one_pass(ids, mask, k):
            self.forward_count += 1
            if fast_logprobs_apply(self, model, compute_aux_loss, kwargs):
                return fast_logps_and_entropies(self, model, ids, mask, k, batch_size, compute_entropy)
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
        waiting, self.waiting_token_term = self.waiting_token_term, None
        if waiting is not None:  # the lazy path: this is the loss's forward, before TRL reads the advantages
            step, batch = waiting
            token_mask = scored_token_mask(batch)  # (B, T)
            self.step_metrics.student(out[0], out[1], token_mask)
            batch["advantages"] = self.token_term(batch["advantages"], step, out[0], out[1], token_mask)
        return out

    def _teacher_eval_mode(self):
        """Context manager: TRL's no-grad inference setting for extra forward passes."""
        return disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs)

    # ------------------------------------------------------------------ TRL hooks: steps, logs, checkpoints
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
            if self.pre_generation is not None and self.pre_generation[0] == step:
                # this step generated (and moved the gate): checkpoint the state from before it
                _, self.generation_index, gate_state = self.pre_generation
                if gate_state is not None:
                    self.gate.load_state_dict(gate_state)
            self._save_checkpoint(model, trial=None)
        saved = f"the last good step's state is in {folder}" if step > 0 else "no step had completed; nothing was saved"
        raise NonFiniteTrainingError(
            f"the {what} of step {step + 1} is not finite (loss={loss}); training stopped before the optimizer "
            f"applied it: {saved}. Look at the step's reward/nonfinite_frac, pmi/nonfinite_frac and "
            "teacher/entropy_nonfinite_frac, lower the learning rate, or set stop_on_nonfinite=False to train on.")

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
        """``README.md`` of the run folder (TRL writes its card at every checkpoint): antisd's card
        (``antisd.trainer.modelcard``; ``model_card_info`` holds what ``antisd train`` knows of the run)."""
        if self.is_world_process_zero():
            from antisd.trainer.modelcard import write_model_card

            write_model_card(self)

    def _issue_warnings_after_load(self, load_result: Any) -> None:
        """transformers' warnings after loading a checkpoint's weights, without the keys of tied weights: a
        checkpoint of a model with tied embeddings stores the shared tensor once (``lm_head.weight`` is
        missing by design), and the loaded embedding already is the output layer's weight."""
        missing = list(getattr(load_result, "missing_keys", []) or [])
        tied = tied_to_loaded(self.model, missing)
        if tied and hasattr(load_result, "_replace"):
            load_result = load_result._replace(missing_keys=[k for k in missing if k not in tied])
        super()._issue_warnings_after_load(load_result)

    def _get_output_dir(self, trial):
        """transformers' run folder, or the staging folder while a checkpoint is being saved."""
        if self.checkpoint_staging is not None:
            return str(self.checkpoint_staging)
        return super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial):
        """transformers' checkpoint, crash-safe (``antisd.trainer.checkpointing``)."""
        checkpointing.save_checkpoint(self, model, trial, super()._save_checkpoint)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None:
            checkpointing.restore(self, checkpoint)
