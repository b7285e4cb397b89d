"""What the PMI passes read and write: a `Rollout` to score and the `PMIRecord` of its per-token values.

For a rollout y of prompt x and its privileged prompt (x, c) (docs/method.md), a record holds, per
completion token, s_t = log pi(y_t | x, y<t), t_t = log pi(y_t | x, c, y<t) and u_t = t_t - s_t
(`antisd.pmi.compute` computes them; `antisd.pmi.sources` makes rollouts from problems and files).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

Prompt = str | list[dict[str, Any]]


@dataclass
class Rollout:
    """One completion to score. ``completion_ids`` are scored as is (never re-tokenized)."""

    prompt: Prompt
    completion_ids: list[int] | None = None
    completion: str | None = None
    reward: float | None = None
    answer: str | None = None
    solution: str | None = None
    problem_id: str | None = None
    teacher_prompt: Prompt | None = None  # when set, used as is (no context choice)
    context_given: bool = False  # the source fixed the context, possibly to none (trainer dump, sampler)
    source: str | None = None
    correct: bool | None = None
    rollout_id: str = ""
    stored: dict[str, list[float]] | None = None  # the trainer's student_logps/teacher_logps/teacher_entropy


@dataclass
class PMIRecord:
    """Per-token values of one scored rollout; lists have one entry per completion token (T,)."""

    rollout_id: str
    token_ids: list[int]
    tokens: list[str]
    student_logps: list[float]
    teacher_logps: list[float]
    teacher_entropy: list[float] | None = None
    student_entropy: list[float] | None = None
    seq_student_logp: float | None = None  # log pi(y | x), separate whole-sequence forward
    seq_teacher_logp: float | None = None  # log pi(y | x, c), idem
    problem_id: str | None = None
    source: str | None = None
    correct: bool | None = None
    reward: float | None = None
    prompt: Prompt | None = None
    teacher_prompt: Prompt | None = None
    truncated: bool = False

    @property
    def u(self) -> list[float]:
        """u_t = t_t - s_t. (T,)"""
        return [t - s for t, s in zip(self.teacher_logps, self.student_logps)]

    @property
    def sum_u(self) -> float:
        return math.fsum(self.u)

    @property
    def seq_pmi(self) -> float | None:
        """log pi(y | x, c) - log pi(y | x) from the whole-sequence forwards (None if not run)."""
        if self.seq_student_logp is None or self.seq_teacher_logp is None:
            return None
        return self.seq_teacher_logp - self.seq_student_logp

    @property
    def telescoping_error(self) -> float | None:
        """|sum_t u_t - (log pi(y|x,c) - log pi(y|x))|, or None when the check did not run."""
        pmi = self.seq_pmi
        return None if pmi is None else abs(self.sum_u - pmi)

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=lambda o: None)


class PromptError(ValueError):
    """A prompt that cannot be tokenized as training would (e.g. chat prompt, no chat template)."""
