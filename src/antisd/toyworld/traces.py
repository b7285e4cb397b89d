"""SFT trace writers: the student format (search with deliberation) and the privileged format.

Student trace (prompt = the problem alone)::

    try 4 : 4 * 4 = 16 + 7 = 23 vs 31 small . Wait , try 7 : 4 * 7 = 28 + 7 = 35 vs 31 big .
    Hmm , try 6 : 4 * 6 = 24 + 7 = 31 vs 31 yes . \\boxed{ 6 }

A try names a candidate, writes the computation, the target (``vs 31``, ordered families) and a verdict (``small``/``big``/``no``/``yes``);
after every failed try comes a deliberation phrase (``Wait ,``, ``Hmm ,``, ``Maybe``, ``Let me``,
``Alternatively ,``, ``But``, uniformly); the trace ends with one ``\\boxed{ x }``. Candidates are
drawn at random from the range (``random``) or from the part of it that the verdicts so far leave
open (``guided``, ordered families only), so the base policy searches but does not bisect.

Privileged trace (prompt = ``TOY_TEACHER_TEMPLATE`` with a reference solution and feedback). How
it is written is the knob ``privileged_style``, and it decides the sign of the PMI u_t = log
p(y_t | x, c, y<t) - log p(y_t | x, y<t) on deliberation tokens (docs/toyworld.md, "Traces"):

    commit   like the paper's shortcutting teacher: with probability ``commit_after_fail_frac``
             the trace first makes one student-like try, and if it fails it commits with
             ``so try <ref> ...`` instead of a deliberation word; otherwise it tries the
             reference first. Deliberation after a failed try is absent from these traces, so
             u << 0 on Wait/Hmm/... is designed in.
    direct   the reference is always the first try; the teacher never sees a failed try, so
             what it says after one is left to generalisation.
    search   the student's search with the same deliberation phrases, but each try picks the
             reference with probability ``search_ref_prob``: the context helps choose
             candidates and says nothing against deliberating (u ~ 0 on Wait by design).

The feedback word (``right``/``wrong``) is drawn 50/50 and does not change the trace.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

from antisd.toyworld.tasks import ANSWER_TEMPLATE, Problem
from antisd.toyworld.tokenizer import BOX_OPEN

PrivilegedStyle = Literal["commit", "direct", "search"]
PRIVILEGED_STYLES: tuple[str, ...] = ("commit", "direct", "search")

# The privileged context in the toy vocabulary (plug into antisd.method.context.ContextConfig).
TOY_TEACHER_TEMPLATE = "{prompt} ref : {solution} . feedback : {feedback} ."
TOY_FEEDBACK_CORRECT = "right"
TOY_FEEDBACK_INCORRECT = "wrong"
TOY_ANSWER_TEMPLATE = ANSWER_TEMPLATE  # "x = {answer}", also the dataset `solution` column
DELIBERATION_PHRASES: tuple[str, ...] = ("Wait ,", "Hmm ,", "Maybe", "Let me", "Alternatively ,", "But")
COMMIT_WORD = "so"


@dataclass(frozen=True)
class ToyTraceConfig:
    """How SFT traces are written (student and privileged formats)."""

    guided_frac: float = field(default=0.5, metadata={"help": "Share of student traces on ordered families whose tries stay inside the range left open by small/big verdicts (the rest try at random)."})
    show_target: bool = field(default=True, metadata={"help": "Write the target next to the computed value ('= 23 vs 31 small'), so the verdict compares adjacent tokens; without it a 2-layer model mostly guesses verdicts (53% wrong after 1,500 steps)."})
    max_tries: int = field(default=5, metadata={"help": "Traces with more tries are redrawn (keeps traces within the response budget)."})
    max_completion_tokens: int = field(default=80, metadata={"help": "Traces with more tokens (eos included) are redrawn."})
    privileged_style: PrivilegedStyle = field(default="commit", metadata={"help": "How privileged traces use the reference: commit | direct | search (see module docstring); it decides the sign of u on deliberation tokens."})
    commit_after_fail_frac: float = field(default=0.5, metadata={"help": "commit style: share of traces that first make one student-like try before committing."})
    search_ref_prob: float = field(default=0.5, metadata={"help": "search style: probability that each try picks the reference."})
    ref_trace_frac: float = field(default=0.25, metadata={"help": "Share of privileged prompts whose reference is a full student trace (a successful sibling's completion) instead of the short 'x = <answer>'."})

    def __post_init__(self) -> None:
        if self.privileged_style not in PRIVILEGED_STYLES:
            raise ValueError(f"privileged_style={self.privileged_style!r}; valid: {list(PRIVILEGED_STYLES)}")
        for name in ("guided_frac", "commit_after_fail_frac", "search_ref_prob", "ref_trace_frac"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name}={v} must be in [0, 1]")
        if self.max_tries < 1:
            raise ValueError(f"max_tries={self.max_tries} must be >= 1")
        if self.max_completion_tokens < 20:
            raise ValueError(f"max_completion_tokens={self.max_completion_tokens} must be >= 20 (one try, the box and eos)")


def toy_context_config(sibling_format: str = "answer", sources: tuple[str, ...] = ("sibling", "dataset", "answer")):
    """``antisd.method.context.ContextConfig`` with the toy template, feedback and answer strings.

    ``sibling_format="answer"`` (recommended) renders a successful sibling as ``x = <answer>``,
    the form most privileged SFT traces saw; ``"completion"`` passes its full text (seen in
    ``ref_trace_frac`` of them)."""
    from antisd.method.context import ContextConfig

    return ContextConfig(
        template=TOY_TEACHER_TEMPLATE, feedback_correct=TOY_FEEDBACK_CORRECT,
        feedback_incorrect=TOY_FEEDBACK_INCORRECT, answer_template=TOY_ANSWER_TEMPLATE,
        sources=sources, sibling_format=sibling_format,
    )


def render_teacher_prompt(prompt: str, solution: str, correct: bool) -> str:
    """The privileged prompt, exactly as ``antisd.method.context`` renders it with the toy constants."""
    feedback = TOY_FEEDBACK_CORRECT if correct else TOY_FEEDBACK_INCORRECT
    return TOY_TEACHER_TEMPLATE.format(prompt=prompt, solution=solution, feedback=feedback)


def _pick(problem: Problem, pool: list[int], rng: random.Random, ref_prob: float) -> int:
    if ref_prob > 0 and problem.answer in pool and rng.random() < ref_prob:
        return problem.answer
    return rng.choice(pool)


def search_tries(problem: Problem, rng: random.Random, guided: bool, ref_prob: float = 0.0) -> list[int]:
    """Candidates tried until the answer, in the order of one simulated search."""
    open_ = list(problem.candidates)
    tries: list[int] = []
    while True:
        y = _pick(problem, open_, rng, ref_prob)
        tries.append(y)
        if y == problem.answer:
            return tries
        open_.remove(y)
        if guided and problem.ordered:
            v = problem.verdict(y)
            open_ = [z for z in open_ if (z > y if v == "small" else z < y)]


def render_tries(problem: Problem, tries: list[int], rng: random.Random, cfg: ToyTraceConfig,
                 commit_last: bool = False) -> str:
    """Text of a trace that tries ``tries`` in order and boxes the last one (the answer)."""
    parts = []
    for i, y in enumerate(tries):
        if i > 0:
            parts.append(COMMIT_WORD if commit_last and i == len(tries) - 1 else rng.choice(DELIBERATION_PHRASES))
        vs = f" vs {problem.target}" if cfg.show_target and problem.ordered else ""
        parts.append(f"try {y} : {problem.work(y)}{vs} {problem.verdict(y)} .")
    parts.append(f"{BOX_OPEN} {tries[-1]} }}")
    return " ".join(parts)


def _fits(text: str, n_tries: int, cfg: ToyTraceConfig) -> bool:
    return n_tries <= cfg.max_tries and len(text.split()) + 1 <= cfg.max_completion_tokens


def student_trace(problem: Problem, rng: random.Random, cfg: ToyTraceConfig) -> str:
    """A student-format trace (search with deliberation), redrawn until it fits the budget."""
    for _ in range(100):
        tries = search_tries(problem, rng, guided=rng.random() < cfg.guided_frac)
        text = render_tries(problem, tries, rng, cfg)
        if _fits(text, len(tries), cfg):
            return text
    return render_tries(problem, [problem.answer], rng, cfg)


def privileged_trace(problem: Problem, rng: random.Random, cfg: ToyTraceConfig) -> str:
    """A trace written with the reference answer in view, in ``cfg.privileged_style``."""
    style = cfg.privileged_style
    if style == "direct":
        return render_tries(problem, [problem.answer], rng, cfg)
    if style == "commit":
        if rng.random() < cfg.commit_after_fail_frac:
            first = search_tries(problem, rng, guided=rng.random() < cfg.guided_frac)[0]
            if first != problem.answer:
                return render_tries(problem, [first, problem.answer], rng, cfg, commit_last=True)
        return render_tries(problem, [problem.answer], rng, cfg)
    for _ in range(100):
        tries = search_tries(problem, rng, guided=rng.random() < cfg.guided_frac, ref_prob=cfg.search_ref_prob)
        text = render_tries(problem, tries, rng, cfg)
        if _fits(text, len(tries), cfg):
            return text
    return render_tries(problem, [problem.answer], rng, cfg)


def sft_example(problem: Problem, rng: random.Random, cfg: ToyTraceConfig, privileged: bool) -> dict[str, str]:
    """One prompt-completion pair; the completion starts with a space so that the tokenized
    prompt is a prefix of the tokenized prompt + completion (TRL's SFTTrainer concatenates)."""
    if not privileged:
        return {"prompt": problem.prompt, "completion": " " + student_trace(problem, rng, cfg)}
    if rng.random() < cfg.ref_trace_frac:
        solution = student_trace(problem, rng, cfg)
    else:
        solution = TOY_ANSWER_TEMPLATE.format(answer=problem.answer)
    prompt = render_teacher_prompt(problem.prompt, solution, correct=rng.random() < 0.5)
    return {"prompt": prompt, "completion": " " + privileged_trace(problem, rng, cfg)}
