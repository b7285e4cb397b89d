"""Privileged context for the self-teacher (docs/method.md, "Privileged context c").

For every rollout the teacher sees the student's prompt plus a verified solution and a
feedback string about the rollout's own correctness, then the *same* completion tokens.

Choice of the verified solution, in the order given by ``ContextConfig.sources`` (default
``("sibling", "dataset", "answer")``):

    sibling   a successful rollout for the same problem, never the rollout itself: one of the
              same group first, else one from another group of the batch with the same problem
              id; chosen uniformly at random with a seeded RNG.
    dataset   the dataset's worked solution (a ``solution`` column), when non-empty.
    answer    the dataset's final answer alone, rendered with ``answer_template`` (DAPO-Math-17k
              has answers but no worked solutions).
    none      nothing available: the teacher prompt is ``None`` and the token term is masked
              for that rollout (counted by the trainer as ``context/none_frac``).

Default teacher template (project choice; placeholders ``{prompt}``, ``{solution}``,
``{feedback}``; a literal brace is written ``{{`` / ``}}``):

    {prompt}

    Here is a reference solution to this problem:
    === Reference solution begin ===
    {solution}
    === Reference solution end ===

    {feedback}

For chat prompts (a list of ``{"role", "content"}`` messages) the template is applied to the
content of the *last user message*; other messages are kept. Plain-string prompts are
templated whole. Sibling texts have a ``<think>...</think>`` block stripped (configurable) and
are cut to their last ``max_solution_chars`` characters (the final answer sits at the end),
counted as ``truncated``.

Pure Python: no torch, no tokenizer, no I/O. Deterministic for a given ``seed`` and batch.
"""

from __future__ import annotations

import random
import re
import string
import typing
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, fields, make_dataclass
from types import FunctionType
from typing import Any, Literal

Prompt = str | list[dict[str, Any]]
Source = Literal["sibling", "dataset", "answer", "none"]
SOURCES: tuple[str, ...] = ("sibling", "dataset", "answer")

DEFAULT_TEMPLATE = (
    "{prompt}\n\n"
    "Here is a reference solution to this problem:\n"
    "=== Reference solution begin ===\n"
    "{solution}\n"
    "=== Reference solution end ===\n\n"
    "{feedback}"
)
DEFAULT_FEEDBACK_CORRECT = "Feedback: the attempt below was checked and is correct."
DEFAULT_FEEDBACK_INCORRECT = "Feedback: the attempt below was checked and is incorrect."
DEFAULT_ANSWER_TEMPLATE = "The final answer is ${answer}$."

_THINK_RE = re.compile(r"<think>.*?</think>", flags=re.DOTALL)
_ALLOWED_FIELDS = {"prompt", "solution", "feedback"}


def _template_fields(template: str, name: str) -> set[str]:
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as e:
        raise ValueError(f"{name} is not a valid format string ({e}); write literal braces as '{{{{' and '}}}}'") from None
    return fields


@dataclass(frozen=True)
class ContextConfig:
    """How the privileged teacher prompt is chosen and rendered (the meaning of each setting:
    ``ContextFields``, where ``template`` is ``teacher_template`` and ``sources`` ``solution_sources``)."""

    template: str = DEFAULT_TEMPLATE
    feedback_correct: str = DEFAULT_FEEDBACK_CORRECT
    feedback_incorrect: str = DEFAULT_FEEDBACK_INCORRECT
    sources: tuple[str, ...] = SOURCES
    sibling_format: Literal["completion", "answer"] = "completion"
    answer_template: str = DEFAULT_ANSWER_TEMPLATE
    max_solution_chars: int = 8000
    strip_think: bool = True
    correct_threshold: float = 0.5

    def __post_init__(self) -> None:
        fields = _template_fields(self.template, "template")
        unknown = fields - _ALLOWED_FIELDS
        if unknown:
            raise ValueError(f"template has unknown placeholders {sorted(unknown)}; valid: {sorted(_ALLOWED_FIELDS)}")
        for required in ("prompt", "solution"):
            if required not in fields:
                raise ValueError(f"template must contain {{{required}}}; got {self.template!r}")
        if _template_fields(self.answer_template, "answer_template") != {"answer"}:
            raise ValueError(f"answer_template must contain exactly the placeholder {{answer}}; got {self.answer_template!r}")
        srcs = tuple(self.sources)
        bad = [s for s in srcs if s not in SOURCES]
        if bad or not srcs or len(set(srcs)) != len(srcs):
            raise ValueError(f"sources={srcs} must be a non-empty ordered subset of {list(SOURCES)} without repeats")
        object.__setattr__(self, "sources", srcs)
        if self.sibling_format not in ("completion", "answer"):
            raise ValueError(f"sibling_format={self.sibling_format!r}; valid: ['answer', 'completion']")
        if self.max_solution_chars < 1:
            raise ValueError(f"max_solution_chars={self.max_solution_chars} must be >= 1")


# ContextFields field -> ContextConfig field.
CONTEXT_FIELDS: dict[str, str] = {
    "teacher_template": "template",
    "feedback_correct": "feedback_correct",
    "feedback_incorrect": "feedback_incorrect",
    "solution_sources": "sources",
    "sibling_format": "sibling_format",
    "answer_template": "answer_template",
    "max_solution_chars": "max_solution_chars",
    "strip_think": "strip_think",
    "correct_threshold": "correct_threshold",
}


def _source_names(value: str | Sequence[str]) -> tuple[str, ...]:
    """Solution sources from a list whose items may hold several comma-separated names."""
    items = [value] if isinstance(value, str) else value
    return tuple(name.strip() for item in items for name in str(item).split(",") if name.strip())


@dataclass
class ContextFields:
    """The privileged-context settings as config fields, declared once with their help text:
    ``AntiSDConfig`` (``antisd train``) mixes them in, ``PMIConfig`` (``antisd pmi``) their unset
    variant ``ContextOverrides``. ``context_config`` is the ``ContextConfig`` they describe."""

    teacher_template: str = field(default=ContextConfig.template, metadata={"help": "Teacher prompt template with {prompt}, {solution}, {feedback}."})
    feedback_correct: str = field(default=ContextConfig.feedback_correct, metadata={"help": "Feedback string shown to the teacher for a correct rollout."})
    feedback_incorrect: str = field(default=ContextConfig.feedback_incorrect, metadata={"help": "Feedback string shown to the teacher for an incorrect rollout."})
    solution_sources: list[str] = field(
        default_factory=lambda: list(SOURCES),
        metadata={"help": "Solution sources in order of preference: sibling (a successful rollout of the same "
                          "problem), dataset (the solution column), answer (answer_template with the answer column)."},
    )
    sibling_format: Literal["completion", "answer"] = field(
        default=ContextConfig.sibling_format,
        metadata={"help": "Show a sibling as its completion text, or as the answer line.", "choices": ["completion", "answer"]},
    )
    answer_template: str = field(default=ContextConfig.answer_template, metadata={"help": "Answer-only solution line, with {answer}."})
    max_solution_chars: int = field(default=ContextConfig.max_solution_chars, metadata={"help": "Keep at most this many trailing characters of a solution."})
    strip_think: bool = field(default=ContextConfig.strip_think, metadata={"help": "Strip <think>...</think> from sibling solutions."})
    correct_threshold: float = field(default=ContextConfig.correct_threshold, metadata={"help": "A rollout is correct when its correctness reward is >= this."})

    @property
    def context_config(self) -> ContextConfig:
        """The ``ContextConfig`` of these fields; an unset (None) field keeps ``ContextConfig``'s
        default. ``solution_sources`` items may be comma-separated lists. Raises ValueError."""
        kwargs: dict[str, Any] = {}
        for name, key in CONTEXT_FIELDS.items():
            value = getattr(self, name)
            if value is not None:
                kwargs[key] = _source_names(value) if key == "sources" else value
        return ContextConfig(**kwargs)


def unset_by_default(cls: type, name: str, doc: str) -> type:
    """A dataclass with the fields of dataclass `cls` (same order, same metadata and help), each
    typed ``X | None`` with the default None ("unset": its user fills it in), and `cls`'s
    properties and methods."""
    hints = typing.get_type_hints(cls)
    specs = [(f.name, hints[f.name] | None, field(default=None, metadata=f.metadata)) for f in fields(cls)]
    members = {k: v for k, v in vars(cls).items() if isinstance(v, property | FunctionType) and not k.startswith("__")}
    return make_dataclass(name, specs, namespace={"__doc__": doc, "__module__": cls.__module__, **members})


ContextOverrides = unset_by_default(
    ContextFields, "ContextOverrides",
    "``ContextFields`` unset by default (None): the command fills them in, else ``ContextConfig``'s defaults apply.",
)


@dataclass(frozen=True)
class TeacherContext:
    """The privileged prompt chosen for one rollout (``prompt`` is None when masked)."""

    prompt: Prompt | None
    source: Source
    correct: bool
    sibling_index: int | None = None
    truncated: bool = False


def _nonempty(x: Any) -> bool:
    return isinstance(x, str) and x.strip() != ""


def clean_solution(text: str, config: ContextConfig) -> tuple[str, bool]:
    """Strip think blocks and cut to the last ``max_solution_chars`` characters."""
    if config.strip_think:
        stripped = _THINK_RE.sub("", text)
        # An unclosed <think> (a truncated rollout) keeps only what follows the last </think>.
        if "</think>" in stripped:
            stripped = stripped.rsplit("</think>", 1)[1]
        text = stripped.strip()
    if len(text) > config.max_solution_chars:
        return "..." + text[-config.max_solution_chars:], True
    return text, False


def render_prompt(prompt: Prompt, solution: str, feedback: str, template: str) -> Prompt:
    """Apply ``template`` to a plain prompt or to the last user message of a chat prompt."""
    if isinstance(prompt, str):
        return template.format(prompt=prompt, solution=solution, feedback=feedback)
    if not isinstance(prompt, list) or not prompt:
        raise ValueError(f"prompt must be a string or a non-empty list of chat messages, got {type(prompt).__name__}")
    user_idx = [i for i, m in enumerate(prompt) if isinstance(m, dict) and m.get("role") == "user"]
    if not user_idx:
        raise ValueError("chat prompt has no message with role 'user' to attach the privileged context to")
    last = user_idx[-1]
    content = prompt[last].get("content")
    if not isinstance(content, str):
        raise ValueError(f"the last user message's content must be a string, got {type(content).__name__}")
    out = [dict(m) for m in prompt]
    out[last]["content"] = template.format(prompt=content, solution=solution, feedback=feedback)
    return out


def _choose_solution(config: ContextConfig, siblings: list[int], completions: Sequence[str], rng: random.Random,
                     solution: str | None, answer: str | None) -> tuple[Source, str, int | None, bool] | None:
    """The first of ``config.sources`` that gives rollout i a solution: (source, text, sibling index, cut) or None.

    ``siblings``: the verified rollouts of i's group (else of its problem's other groups); one is drawn from
    ``rng`` whenever there is any, so the draws do not depend on what the later sources would give."""
    for src in config.sources:
        if src == "sibling" and siblings:
            j = siblings[rng.randrange(len(siblings))]
            if config.sibling_format == "answer" and _nonempty(answer):
                return "sibling", config.answer_template.format(answer=answer.strip()), j, False
            text, cut = clean_solution(completions[j], config)
            if text:
                return "sibling", text, j, cut
        elif src == "dataset" and _nonempty(solution):
            text, cut = clean_solution(solution, config)
            return "dataset", text, None, cut
        elif src == "answer" and _nonempty(answer):
            return "answer", config.answer_template.format(answer=answer.strip()), None, False
    return None


def build_teacher_contexts(
    prompts: Sequence[Prompt],
    completions: Sequence[str],
    rewards: Sequence[float],
    group_ids: Sequence[Hashable],
    *,
    problem_ids: Sequence[Hashable] | None = None,
    solutions: Sequence[str | None] | None = None,
    answers: Sequence[str | None] | None = None,
    config: ContextConfig | None = None,
    seed: int = 0,
) -> list[TeacherContext]:
    """Pick each rollout's verified solution and feedback and render its teacher prompt.

    All sequences are per rollout, length B. ``group_ids`` identify the GRPO group (rollouts
    of one prompt sampled together); ``problem_ids`` identify the problem across groups
    (default: the group id). ``solutions``/``answers`` are the dataset's per-row columns.
    """
    config = config or ContextConfig()
    n = len(prompts)
    for name, seq in (("completions", completions), ("rewards", rewards), ("group_ids", group_ids),
                      ("problem_ids", problem_ids), ("solutions", solutions), ("answers", answers)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"{name} has length {len(seq)}, expected {n} (one per rollout)")
    problem_ids = group_ids if problem_ids is None else problem_ids
    correct = [float(r) >= config.correct_threshold for r in rewards]
    by_group: dict[Hashable, list[int]] = defaultdict(list)
    by_problem: dict[Hashable, list[int]] = defaultdict(list)
    for i in range(n):
        if correct[i]:
            by_group[group_ids[i]].append(i)
            by_problem[problem_ids[i]].append(i)
    rng = random.Random(seed)

    out: list[TeacherContext] = []
    for i in range(n):
        feedback = config.feedback_correct if correct[i] else config.feedback_incorrect
        siblings = [j for j in by_group[group_ids[i]] if j != i] or [
            j for j in by_problem[problem_ids[i]] if j != i and group_ids[j] != group_ids[i]]
        chosen = _choose_solution(config, siblings, completions, rng,
                                  None if solutions is None else solutions[i], None if answers is None else answers[i])
        if chosen is None:
            out.append(TeacherContext(prompt=None, source="none", correct=correct[i]))
            continue
        source, solution, j, cut = chosen
        out.append(TeacherContext(
            prompt=render_prompt(prompts[i], solution, feedback, config.template),
            source=source, correct=correct[i], sibling_index=j, truncated=cut,
        ))
    return out


def source_fractions(contexts: Sequence[TeacherContext]) -> dict[str, float]:
    """Share of rollouts per solution source, plus the truncation share (for logging)."""
    n = max(len(contexts), 1)
    fr = {f"context/{s}_frac": sum(c.source == s for c in contexts) / n for s in (*SOURCES, "none")}
    fr["context/truncated_frac"] = sum(c.truncated for c in contexts) / n
    return fr
