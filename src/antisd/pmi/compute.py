"""Student and privileged-teacher passes over rollouts: per-token s_t, t_t, u_t and teacher entropy.

For a rollout y of prompt x and its privileged prompt (x, c) (docs/method.md):

    s_t = log pi(y_t | x, y<t)        t_t = log pi(y_t | x, c, y<t)        u_t = t_t - s_t

Alignment: the completion is NEVER re-tokenized. The student
sequence is ``student_prompt_ids + completion_ids`` and the teacher sequence is
``teacher_prompt_ids + completion_ids`` with the same ids; a rollout given as text only is
tokenized once and those ids serve both passes. Prompts are tokenized as TRL 1.16.0's
GRPOTrainer does (``apply_chat_template(add_generation_prompt=True)`` for chat prompts, the
tokenizer's ``__call__`` for plain strings). Log-probs use logits / temperature, as TRL does.

Per-token values come from ``antisd.lm.logprobs.per_token_logps_and_entropies`` (left-padded
prompts, right-padded completions, chunked over the vocabulary). The telescoping check
recomputes log pi(y | x) and log pi(y | x, c) independently: one unpadded sequence, the model's
full logits, float64 log-softmax, summed over the completion; then sum_t u_t must equal
log pi(y | x, c) - log pi(y | x).

Rollouts in, one ``PMIRecord`` per scored rollout out (both in ``antisd.pmi.records``, importable from
here too). Bad rollouts (empty completion, no verified solution for the context, a chat prompt with a
tokenizer that has no chat template, ...) are skipped with a message and counted in a
``SkipLog``; the rest of the batch is processed.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from antisd.lm.plumbing import model_device
from antisd.lm.sampling import pad_prompts_and_completions, pad_token_id
from antisd.method.context import ContextConfig, build_teacher_contexts
from antisd.pmi.records import PMIRecord, Prompt, PromptError, Rollout

__all__ = ["MAX_LOGGED_PER_REASON", "PIECE_WINDOW", "PMIRecord", "Prompt", "PromptError", "Rollout", "SkipLog",
           "attach_contexts", "compute_pmi", "prompt_text", "records_from_stored", "score_completions",
           "sequence_logprob", "token_pieces", "tokenize_prompt"]

logger = logging.getLogger(__name__)

MAX_LOGGED_PER_REASON = 5
PIECE_WINDOW = 8  # tokens of left context used to decode one token's text (spaces, merged bytes)


# ------------------------------------------------------------------------------------ skipped rollouts


@dataclass
class SkipLog:
    """Rollouts that could not be scored, by reason; the first few messages of each are logged."""

    counts: Counter = field(default_factory=Counter)
    messages: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, message: str) -> None:
        self.counts[reason] += 1
        kept = self.messages.setdefault(reason, [])
        if len(kept) < MAX_LOGGED_PER_REASON:
            kept.append(message)
            logger.warning("skipped (%s): %s", reason, message)
        elif len(kept) == MAX_LOGGED_PER_REASON:
            kept.append("...")
            logger.warning("skipped (%s): further messages of this kind are not shown", reason)

    @property
    def total(self) -> int:
        return sum(self.counts.values())




# ------------------------------------------------------------------------------------ tokenization


def tokenize_prompt(tokenizer: Any, prompt: Prompt) -> list[int]:
    """Prompt ids exactly as TRL 1.16.0's GRPOTrainer._tokenize_prompts makes them."""
    if isinstance(prompt, str):
        return list(tokenizer(text=prompt)["input_ids"])
    if not isinstance(prompt, list) or not prompt or not all(isinstance(m, dict) for m in prompt):
        raise PromptError(f"prompt must be a string or a list of chat messages, got {type(prompt).__name__}")
    if not getattr(tokenizer, "chat_template", None):
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        raise PromptError(
            f"the prompt is a list of chat messages but tokenizer {name!r} has no chat template; "
            "use prompt_format=plain (the problem text as is) or a tokenizer with a chat template"
        )
    out = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=True)
    ids = out["input_ids"]
    return list(ids[0] if ids and isinstance(ids[0], list) else ids)


def token_pieces(tokenizer: Any, ids: Sequence[int], window: int = PIECE_WINDOW) -> list[str]:
    """The text each token adds to the decoded completion (leading spaces included). (T,)

    Decodes each token with up to ``window`` tokens of left context and keeps the new suffix, so
    word-level tokenizers keep their spaces and byte-level ones their merged bytes; where the
    shorter decode is not a prefix of the longer one, the token is decoded alone.
    """
    ids = [int(i) for i in ids]
    kw = {"skip_special_tokens": False, "clean_up_tokenization_spaces": False}
    prev = tokenizer.batch_decode([ids[max(0, i - window):i] for i in range(len(ids))], **kw)
    full = tokenizer.batch_decode([ids[max(0, i - window):i + 1] for i in range(len(ids))], **kw)
    pieces = []
    for i, (p, f) in enumerate(zip(prev, full)):
        if p and f.startswith(p) and not p.endswith("\ufffd"):
            pieces.append(f[len(p):])
        elif not p:
            pieces.append(f)
        else:
            pieces.append(tokenizer.decode([ids[i]], **kw))
    return pieces


def prompt_text(prompt: Prompt | None) -> str:
    """A prompt as readable text (chat messages as ``role: content`` lines)."""
    if prompt is None:
        return ""
    if isinstance(prompt, str):
        return prompt
    return "\n".join(f"[{m.get('role', '?')}] {m.get('content', '')}" for m in prompt if isinstance(m, dict))


def _describe(r: Rollout) -> str:
    return r.rollout_id or (r.problem_id or "?")


# ------------------------------------------------------------------------------------ contexts


def _completion_text(tokenizer: Any, r: Rollout) -> str:
    if r.completion is not None:
        return r.completion
    return tokenizer.decode(r.completion_ids or [], skip_special_tokens=True)


def attach_contexts(
    rollouts: list[Rollout], tokenizer: Any, config: ContextConfig, *, seed: int, skips: SkipLog,
    answer_extraction: str = "strict",
) -> list[Rollout]:
    """Choose a privileged prompt for rollouts without one, as training does; drop the unusable.

    Siblings are looked for among ``rollouts`` (one window of the input): same ``problem_id``,
    else same prompt. A missing reward is computed with ``antisd.rewards.math_reward`` from the
    answer; without either the feedback string cannot be chosen and the rollout is skipped.
    """
    from antisd.rewards import math_reward

    keep: list[Rollout] = []
    todo: list[Rollout] = []
    for r in rollouts:
        if r.context_given or r.teacher_prompt is not None:
            if r.teacher_prompt is None:
                skips.add("no_context", f"rollout {_describe(r)}: its source recorded no privileged context "
                                        f"(source {r.source!r}); training masked its token term")
                continue
            r.source = r.source or "given"
            keep.append(r)
            continue
        if r.reward is None:
            if r.answer is None or not str(r.answer).strip():
                skips.add("no_reward", f"rollout {_describe(r)} has neither a reward nor an answer, so the feedback "
                                       "string (correct/incorrect) cannot be chosen; add a reward or answer column")
                continue
            r.reward = math_reward(_completion_text(tokenizer, r), str(r.answer), extraction=answer_extraction)
        todo.append(r)
    if todo:
        groups = [r.problem_id or json.dumps(r.prompt, sort_keys=True) for r in todo]
        contexts = build_teacher_contexts(
            [r.prompt for r in todo], [_completion_text(tokenizer, r) for r in todo], [float(r.reward) for r in todo],
            groups, solutions=[r.solution for r in todo], answers=[None if r.answer is None else str(r.answer) for r in todo],
            config=config, seed=seed,
        )
        for r, c in zip(todo, contexts):
            if c.prompt is None:
                skips.add("no_context", f"rollout {_describe(r)}: no verified solution for the privileged context: no "
                                        f"successful sibling in its window, no worked solution (solution column missing "
                                        f"or empty) and no answer; sources={list(config.sources)}")
                continue
            r.teacher_prompt, r.source, r.correct = c.prompt, c.source, c.correct
            keep.append(r)
    order = {id(r): i for i, r in enumerate(rollouts)}
    return sorted(keep, key=lambda r: order[id(r)])


# ------------------------------------------------------------------------------------ forward passes


@torch.no_grad()
def score_completions(
    model: torch.nn.Module, prompts: list[list[int]], completions: list[list[int]], *,
    pad_id: int, temperature: float = 1.0,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """log pi(y_t | prompt, y<t) and the entropy of pi(. | prompt, y<t), per completion token.

    One batch; returns one (logps (T_i,), entropy (T_i,)) pair of float32 CPU tensors per row.
    """
    from antisd.lm.logprobs import per_token_logps_and_entropies

    device = model_device(model)
    ids, mask, t_len = pad_prompts_and_completions(prompts, completions, pad_id, device)  # (B, P+T), (B, P+T)
    logps, ent = per_token_logps_and_entropies(
        model, ids, mask, t_len, temperature=temperature, compute_entropy=True
    )  # (B, T), (B, T)
    logps, ent = logps.float().cpu(), ent.float().cpu()
    return [(logps[i, :len(c)], ent[i, :len(c)]) for i, c in enumerate(completions)]


@torch.no_grad()
def sequence_logprob(model: torch.nn.Module, prompt_ids: list[int], completion_ids: list[int], temperature: float = 1.0) -> float:
    """log pi(y | prompt) = sum_t log_softmax(logits_t / temperature)[y_t], one unpadded sequence.

    Independent of ``score_completions``: no padding, no attention mask, default positions, the
    model's own full logits, float64 log-softmax. The reference of the telescoping check.
    """
    device = model_device(model)
    ids = torch.tensor([list(prompt_ids) + list(completion_ids)], dtype=torch.long, device=device)  # (1, L)
    logits = model(input_ids=ids, use_cache=False).logits[0]  # (L, V)
    logits = logits[len(prompt_ids) - 1:-1].double() / temperature  # (T, V)
    targets = ids[0, len(prompt_ids):]  # (T,)
    return float(torch.log_softmax(logits, dim=-1).gather(1, targets[:, None]).sum())


# ------------------------------------------------------------------------------------ the pipeline


@dataclass
class _Prepared:
    rollout: Rollout
    completion_ids: list[int]
    student_ids: list[int]
    teacher_ids: list[int]
    truncated: bool


def _prepare(r: Rollout, tokenizer: Any, max_tokens: int | None, skips: SkipLog) -> _Prepared | None:
    """Completion ids (tokenized once if only text is given), cut, and both prompts' ids."""
    ids = r.completion_ids
    if ids is None:
        text = r.completion or ""
        ids = list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []
    ids = [int(i) for i in ids]
    if not ids:
        skips.add("empty_completion", f"rollout {_describe(r)} has an empty completion; nothing to score")
        return None
    truncated = max_tokens is not None and len(ids) > max_tokens
    ids = ids[:max_tokens] if truncated else ids
    try:
        student = tokenize_prompt(tokenizer, r.prompt)
        teacher = tokenize_prompt(tokenizer, r.teacher_prompt)
    except PromptError as e:
        reason = "no_chat_template" if "chat template" in str(e) else "bad_prompt"
        skips.add(reason, f"rollout {_describe(r)}: {e}")
        return None
    if not student or not teacher:
        skips.add("empty_prompt", f"rollout {_describe(r)}: its prompt tokenizes to no tokens (add a BOS or a chat template)")
        return None
    return _Prepared(r, ids, student, teacher, truncated)


def _windows(items: Iterable[Rollout], size: int) -> Iterator[list[Rollout]]:
    buf: list[Rollout] = []
    for item in items:
        buf.append(item)
        if len(buf) >= size:
            yield buf
            buf = []
    if buf:
        yield buf


def compute_pmi(
    model: torch.nn.Module,
    tokenizer: Any,
    rollouts: Iterable[Rollout],
    context_cfg: ContextConfig | None = None,
    *,
    temperature: float = 1.0,
    batch_size: int = 8,
    max_tokens: int | None = None,
    check_rollouts: int | None = None,
    context_window: int = 256,
    answer_extraction: str = "strict",
    seed: int = 0,
    skips: SkipLog | None = None,
) -> Iterator[PMIRecord]:
    """Score rollouts with the student and privileged-teacher passes; yields one PMIRecord each.

    Streams: rollouts are consumed ``context_window`` at a time (contexts for rollouts without a
    given teacher prompt are chosen within such a window) and scored ``batch_size`` at a time.
    The telescoping forwards run for the first ``check_rollouts`` records (None: all). Skipped
    rollouts are counted in ``skips``.
    """
    context_cfg = context_cfg or ContextConfig()
    skips = skips if skips is not None else SkipLog()
    pad_id = pad_token_id(tokenizer)
    checked = 0
    for w, window in enumerate(_windows(rollouts, context_window)):
        window = attach_contexts(window, tokenizer, context_cfg, seed=seed + w, skips=skips,
                                 answer_extraction=answer_extraction)
        prepared = [p for p in (_prepare(r, tokenizer, max_tokens, skips) for r in window) if p is not None]
        for start in range(0, len(prepared), batch_size):
            batch = prepared[start:start + batch_size]
            comp = [p.completion_ids for p in batch]
            student = score_completions(model, [p.student_ids for p in batch], comp, pad_id=pad_id, temperature=temperature)
            teacher = score_completions(model, [p.teacher_ids for p in batch], comp, pad_id=pad_id, temperature=temperature)
            pieces = [token_pieces(tokenizer, c) for c in comp]
            for p, (s, s_ent), (t, t_ent), toks in zip(batch, student, teacher, pieces):
                r = p.rollout
                rec = PMIRecord(
                    rollout_id=r.rollout_id, token_ids=p.completion_ids, tokens=toks,
                    student_logps=s.tolist(), teacher_logps=t.tolist(),
                    teacher_entropy=t_ent.tolist(), student_entropy=s_ent.tolist(),
                    problem_id=r.problem_id, source=r.source, correct=r.correct, reward=r.reward,
                    prompt=r.prompt, teacher_prompt=r.teacher_prompt, truncated=p.truncated,
                )
                if check_rollouts is None or checked < check_rollouts:
                    rec.seq_student_logp = sequence_logprob(model, p.student_ids, p.completion_ids, temperature)
                    rec.seq_teacher_logp = sequence_logprob(model, p.teacher_ids, p.completion_ids, temperature)
                    checked += 1
                yield rec


def records_from_stored(
    rollouts: Iterable[Rollout], tokenizer: Any | None = None, *, max_tokens: int | None = None,
    skips: SkipLog | None = None,
) -> Iterator[PMIRecord]:
    """PMIRecords from the log-probs the trainer stored with each rollout (no model, no check)."""
    skips = skips if skips is not None else SkipLog()
    for r in rollouts:
        st = r.stored or {}
        s, t = st.get("student_logps"), st.get("teacher_logps")
        ids = r.completion_ids or []
        if r.context_given and r.teacher_prompt is None:
            skips.add("no_context", f"rollout {_describe(r)}: no privileged context in training (source {r.source!r})")
            continue
        if not s or not t or len(s) != len(t) or len(s) != len(ids):
            reason = "empty_completion" if not ids else "no_stored_logps"
            skips.add(reason, f"rollout {_describe(r)}: stored student_logps/teacher_logps missing or not one per completion id")
            continue
        n = len(ids) if max_tokens is None else min(len(ids), max_tokens)
        if tokenizer is not None:
            toks = token_pieces(tokenizer, ids[:n])
        else:
            toks = [str(x) for x in (st.get("tokens") or ids)][:n]
        ent = st.get("teacher_entropy")
        yield PMIRecord(
            rollout_id=r.rollout_id, token_ids=list(ids[:n]), tokens=toks,
            student_logps=list(s[:n]), teacher_logps=list(t[:n]),
            teacher_entropy=None if not ent else list(ent[:n]),
            problem_id=r.problem_id, source=r.source, correct=r.correct, reward=r.reward,
            prompt=r.prompt, teacher_prompt=r.teacher_prompt, truncated=n < len(ids),
        )
