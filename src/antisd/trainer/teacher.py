"""The privileged self-teacher's half of a step: choose each rollout's context, score the rollouts that need it.

1. ``global_contexts``: the rollouts, rewards and dataset columns of *all* processes are gathered and each
   rollout's privileged context chosen by the pure ``antisd.method.context.build_teacher_contexts`` (a group may
   straddle processes; every process computes the same global choice and keeps its slice).
2. ``TeacherPass.score``: the current model, no gradient, on ``teacher prompt + the same completion ids`` (never
   re-tokenised), through the trainer's ``_get_per_token_logps_and_entropies`` (TRL's fused LM head or
   ``antisd.lm.logprobs``); only the rows ``antisd.method.guard.rollout_roles`` marks as scored; sequences sorted
   by real length and each batch cut to its own completion width, to limit padding. A teacher sequence longer
   than the model's positions is never cut: that rollout gets no token term (counted).
3. Under sharded parameters (FSDP, DeepSpeed ZeRO-3) every forward runs collectives, so every process must run
   as many teacher forwards: ``match_sharded_forwards`` pads this process's count with 1-token forwards.
"""

from __future__ import annotations

import json
import math
import random

import torch
from accelerate.utils import DistributedType, gather_object

from antisd.lm.sampling import left_pad
from antisd.method.context import TeacherContext, build_teacher_contexts


def global_contexts(trainer, inputs: list[dict], rewards_per_func: torch.Tensor, completions: list,
                    ) -> tuple[list[TeacherContext], list[TeacherContext], torch.Tensor]:
    """(every process's contexts, this process's slice, this process's correctness rewards (B,), NaN -> -inf)."""
    a, acc = trainer.args, trainer.accelerator
    local_ids = [str(x[a.problem_id_column]) if a.problem_id_column and a.problem_id_column in x
                 else json.dumps(x["prompt"], sort_keys=True) for x in inputs]
    texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
    rows = list(zip([x["prompt"] for x in inputs], texts, local_ids,
                    [x.get(a.solution_column) for x in inputs], [x.get(a.answer_column) for x in inputs]))
    all_rows = gather_object(rows) if acc.num_processes > 1 else rows
    rewards = torch.nan_to_num(rewards_per_func[:, trainer.correct_index].float().cpu(), nan=-math.inf)  # (B_global,)
    G = trainer.num_generations
    seed = random.Random(f"{a.seed}-{trainer.generation_index}").getrandbits(63)
    contexts = build_teacher_contexts(
        [r[0] for r in all_rows], [r[1] for r in all_rows], rewards.tolist(),
        [i // G for i in range(len(all_rows))], problem_ids=[r[2] for r in all_rows],
        solutions=[r[3] for r in all_rows], answers=[r[4] for r in all_rows],
        config=a.context_config, seed=seed,
    )
    start = acc.process_index * len(inputs)
    return contexts, contexts[start:start + len(inputs)], rewards[start:start + len(inputs)]


class TeacherPass:
    """Teacher log-probs and entropies for one generation batch, through the trainer's log-prob hook."""

    def __init__(self, trainer) -> None:
        self.trainer = trainer

    @torch.no_grad()
    def score(self, contexts: list[TeacherContext], scored: torch.Tensor, completion_ids: torch.Tensor,
              completion_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Teacher log-probs and entropies (B, T), and which rows were too long for the model (B,) bool.

        Only rows with ``scored`` and a context are run; the others stay 0 / NaN. A privileged prompt is never cut.
        """
        before = self.trainer.forward_count
        out = self._forwards(contexts, scored, completion_ids, completion_mask)
        self.match_sharded_forwards(self.trainer.forward_count - before, completion_ids.size(0), completion_ids.device)
        return out

    def _fitting_rows(self, contexts, rows: list[int], comp_len: list[int], too_long: torch.Tensor):
        """Tokenised teacher prompts of ``rows``, without the rows whose sequence exceeds the model's positions."""
        tr = self.trainer
        prompt_ids, _, _ = tr._tokenize_prompts([contexts[i].prompt for i in rows])
        limit = getattr(tr.model.config, "max_position_embeddings", None)
        if not limit:
            return prompt_ids, rows
        fits = [len(prompt_ids[k]) + comp_len[i] <= limit for k, i in enumerate(rows)]
        for k, i in enumerate(rows):
            too_long[i] = not fits[k]
        if not all(fits):
            tr.log_once(f"privileged prompt + completion longer than the model's {limit} positions: those rollouts "
                        "get no token term (counted in context/too_long_frac); nothing is cut")
        return [p for p, ok in zip(prompt_ids, fits) if ok], [i for i, ok in zip(rows, fits) if ok]

    def _forwards(self, contexts, scored, completion_ids, completion_mask):
        tr = self.trainer
        device = completion_ids.device
        B, T = completion_ids.shape
        t_logps = torch.zeros(B, T, device=device)
        t_ent = torch.full((B, T), float("nan"), device=device)
        too_long = torch.zeros(B, dtype=torch.bool, device=device)
        rows = [i for i, c in enumerate(contexts) if c.prompt is not None and bool(scored[i])]
        if not rows:
            return t_logps, t_ent, too_long
        comp_len = (completion_mask.bool() * torch.arange(1, T + 1, device=device)).amax(dim=1).tolist()
        prompt_ids, rows = self._fitting_rows(contexts, rows, comp_len, too_long)
        # Batches of similar real length (teacher prompt + completion): little left or right padding.
        order = sorted(range(len(rows)), key=lambda k: (len(prompt_ids[k]) + comp_len[rows[k]], k))
        bs = tr.args.teacher_batch_size or tr.args.per_device_train_batch_size
        for start in range(0, len(order), bs):
            chunk = order[start:start + bs]
            idx = torch.tensor([rows[k] for k in chunk], device=device)
            t_c = max(comp_len[rows[k]] for k in chunk)  # the batch's own completion width
            t_ent[idx] = 0.0  # padding positions of scored rows: 0, as TRL's path gives them
            if t_c == 0:
                continue
            p_ids, p_mask = left_pad([list(prompt_ids[k]) for k in chunk], tr._tokenizer.pad_token_id)
            ids = torch.cat([p_ids.to(device), completion_ids[idx, :t_c]], dim=1)
            mask = torch.cat([p_mask.to(device), completion_mask[idx, :t_c]], dim=1)
            logps, ent, _ = tr._get_per_token_logps_and_entropies(tr.model, ids, mask, t_c, batch_size=len(chunk),
                                                                  compute_entropy=True)
            t_logps[idx, :t_c] = logps.float()
            t_ent[idx, :t_c] = ent.float()
        return t_logps, t_ent, too_long

    def match_sharded_forwards(self, done: int, rows: int, device) -> None:
        """Under sharded parameters (FSDP, DeepSpeed) with several processes, run 1-token no-grad forwards through the
        same log-prob hook until this process has run as many teacher forwards as ``rows`` rows that all have a
        context would need (every process holds as many rows, so all reach the same count with no message; a
        forward's collectives do not depend on its input). ``done``: the forwards run here."""
        tr = self.trainer
        acc = tr.accelerator
        if acc.num_processes < 2 or acc.distributed_type not in (DistributedType.FSDP, DistributedType.DEEPSPEED):
            return
        bs, per = tr.args.teacher_batch_size or tr.args.per_device_train_batch_size, tr.args.logps_batch_rows
        sizes = [min(bs, rows - start) for start in range(0, rows, bs)]  # the teacher batches of a full pass
        full = sum(-(-b // per) if per else 1 for b in sizes)  # forwards per batch: length_bucketed's chunks, or 1
        ids = torch.full((1, 2), tr._tokenizer.pad_token_id, dtype=torch.long, device=device)
        for _ in range(full - done):
            tr._get_per_token_logps_and_entropies(tr.model, ids, torch.ones_like(ids), 1, batch_size=1,
                                                  compute_entropy=True)
