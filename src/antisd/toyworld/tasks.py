"""Procedural search problems with verifiable integer answers (the toy world's data).

Every problem asks for one integer x, stated in a small word-level language, e.g.

    linear   find x in 3 .. 10 with 4 * x + 7 = 31 .
    root     find x in 2 .. 9 with x * x + 5 = 54 .
    pick     find x in { 9 2 6 11 } with 3 * x + 8 = 26 .      (a small countdown: pick an operand)
    divisor  find x in 4 .. 8 with 91 mod x = 0 .

Each has exactly one solution in its range (checked at generation time). ``linear``, ``root`` and
``pick`` are monotone in x, so a verdict ``small``/``big`` after a try allows bisection; ``divisor``
is not, so it must be scanned. The arithmetic is the bottleneck of a tiny model, which is why
solutions benefit from explicit search: try, check, move on.

Held-out split by construction: a problem is held out when a hash of its equation falls below
``heldout_frac`` (``split_of``), so no held-out equation is ever trained on (not even with
another search range or candidate list), whatever the seed; the arithmetic facts a try uses
(products, sums, remainders) are shared, as a real model's are.
``brute_force`` re-solves a problem from its *prompt text* alone, independently of the generator.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Literal

Split = Literal["train", "heldout", "any"]
FAMILIES: tuple[str, ...] = ("linear", "root", "pick", "divisor")
ANSWER_TEMPLATE = "x = {answer}"  # the short reference solution (dataset `solution` column)


@dataclass(frozen=True)
class ToyTaskConfig:
    """Task mixture and difficulty knobs. Changing any field changes the problem distribution."""

    families: tuple[str, ...] = field(default=FAMILIES, metadata={"help": "Task families to draw from."})
    family_weights: tuple[float, ...] = field(default=(0.4, 0.2, 0.2, 0.2), metadata={"help": "Sampling weight per family (same order as families)."})
    x_max: int = field(default=12, metadata={"help": "Largest answer / candidate of linear and pick."})
    a_max: int = field(default=9, metadata={"help": "Largest coefficient a in a * x + b (a >= 2)."})
    b_max: int = field(default=20, metadata={"help": "Largest offset b (b >= 1)."})
    root_x_max: int = field(default=12, metadata={"help": "Largest answer of root (x * x + b = c)."})
    width_min: int = field(default=5, metadata={"help": "Smallest search-range width of linear/root."})
    width_max: int = field(default=10, metadata={"help": "Largest search-range width of linear/root."})
    pick_size: int = field(default=4, metadata={"help": "Number of listed candidates in pick."})
    div_max: int = field(default=12, metadata={"help": "Largest divisor candidate in divisor."})
    n_max: int = field(default=99, metadata={"help": "Largest dividend n in divisor."})
    div_width_min: int = field(default=3, metadata={"help": "Smallest range width of divisor."})
    div_width_max: int = field(default=5, metadata={"help": "Largest range width of divisor."})
    heldout_frac: float = field(default=0.2, metadata={"help": "Share of the problem space held out (by parameter hash)."})

    def __post_init__(self) -> None:
        bad = [f for f in self.families if f not in FAMILIES]
        if bad or not self.families:
            raise ValueError(f"families={self.families} has unknown entries {bad}; valid: {list(FAMILIES)}")
        if len(self.family_weights) != len(self.families) or any(w < 0 for w in self.family_weights) or sum(self.family_weights) <= 0:
            raise ValueError(f"family_weights={self.family_weights} must be non-negative, one per family {self.families}, not all zero")
        if not 2 <= self.a_max or not 1 <= self.b_max:
            raise ValueError(f"a_max={self.a_max} must be >= 2 and b_max={self.b_max} >= 1")
        if not 1 <= self.width_min <= self.width_max:
            raise ValueError(f"width_min={self.width_min} must be in 1..width_max={self.width_max}")
        if self.width_max > min(self.x_max, self.root_x_max):
            raise ValueError(f"width_max={self.width_max} must be <= x_max={self.x_max} and root_x_max={self.root_x_max}")
        if not 2 <= self.pick_size <= self.x_max:
            raise ValueError(f"pick_size={self.pick_size} must be in 2..x_max={self.x_max}")
        if not 2 <= self.div_width_min <= self.div_width_max <= self.div_max - 1:
            raise ValueError(f"need 2 <= div_width_min={self.div_width_min} <= div_width_max={self.div_width_max} <= div_max-1={self.div_max - 1}")
        if self.n_max < 2 * self.div_max:
            raise ValueError(f"n_max={self.n_max} must be >= 2 * div_max={2 * self.div_max}")
        if not 0.0 < self.heldout_frac < 1.0:
            raise ValueError(f"heldout_frac={self.heldout_frac} must be in (0, 1)")

    @property
    def max_number(self) -> int:
        """Largest integer any prompt or trace of this config can contain."""
        return max(self.a_max * self.x_max + self.b_max, self.root_x_max ** 2 + self.b_max, self.n_max)


@dataclass(frozen=True)
class Problem:
    """One problem. ``params`` identify it (and decide its split); ``candidates`` is its search space."""

    family: str
    params: tuple[int, ...]
    candidates: tuple[int, ...]
    answer: int

    # -- the equation ---------------------------------------------------------------------------
    def value(self, y: int) -> int:
        """The left-hand side at x = y (divisor: n mod y)."""
        f, p = self.family, self.params
        if f in ("linear", "pick"):
            return p[0] * y + p[1]
        if f == "root":
            return y * y + p[0]
        return p[0] % y

    @property
    def target(self) -> int:
        f, p = self.family, self.params
        return 0 if f == "divisor" else p[2] if f in ("linear", "pick") else p[1]

    def verdict(self, y: int) -> str:
        """``yes`` when y solves the problem; otherwise ``small``/``big`` (monotone) or ``no``."""
        v = self.value(y)
        if v == self.target:
            return "yes"
        if self.family == "divisor":
            return "no"
        return "small" if v < self.target else "big"

    def work(self, y: int) -> str:
        """The computation a trace writes for candidate y, e.g. ``4 * 6 = 24 + 7 = 31``."""
        f, p = self.family, self.params
        if f in ("linear", "pick"):
            return f"{p[0]} * {y} = {p[0] * y} + {p[1]} = {p[0] * y + p[1]}"
        if f == "root":
            return f"{y} * {y} = {y * y} + {p[0]} = {y * y + p[0]}"
        return f"{p[0]} mod {y} = {p[0] % y}"

    @property
    def ordered(self) -> bool:
        """True when small/big verdicts allow narrowing the range (value increasing in x)."""
        return self.family != "divisor"

    # -- text -----------------------------------------------------------------------------------
    @property
    def prompt(self) -> str:
        f, p, c = self.family, self.params, self.candidates
        rng = f"{c[0]} .. {c[-1]}"
        if f == "linear":
            return f"find x in {rng} with {p[0]} * x + {p[1]} = {p[2]} ."
        if f == "root":
            return f"find x in {rng} with x * x + {p[0]} = {p[1]} ."
        if f == "pick":
            return f"find x in {{ {' '.join(map(str, c))} }} with {p[0]} * x + {p[1]} = {p[2]} ."
        return f"find x in {rng} with {p[0]} mod x = 0 ."

    @property
    def solution(self) -> str:
        return ANSWER_TEMPLATE.format(answer=self.answer)

    @property
    def key(self) -> str:
        """Identity of the problem (family, equation, candidates)."""
        return f"{self.family}:{','.join(map(str, self.params))}:{','.join(map(str, self.candidates))}"

    @property
    def split_key(self) -> str:
        """What decides the split: the equation alone where it fixes the answer (linear and pick
        share one key space, so a held-out equation is never trained in either form); for
        divisor, n and the range (n alone does not fix the answer)."""
        if self.family in ("linear", "pick"):
            return f"lin:{','.join(map(str, self.params))}"
        if self.family == "root":
            return f"root:{','.join(map(str, self.params))}"
        return f"div:{self.params[0]}:{self.candidates[0]},{self.candidates[-1]}"

    def row(self) -> dict[str, str]:
        return {"prompt": self.prompt, "answer": str(self.answer), "solution": self.solution, "family": self.family}


def split_of(problem: Problem, heldout_frac: float) -> str:
    """``heldout`` when the hash of the problem's ``split_key`` falls below ``heldout_frac``."""
    h = int.from_bytes(hashlib.sha256(problem.split_key.encode()).digest()[:8], "big") / 2.0 ** 64
    return "heldout" if h < heldout_frac else "train"


# -- samplers (one per family) -------------------------------------------------------------------
def _window(rng: random.Random, x: int, width: int, top: int, bottom: int = 1) -> tuple[int, ...]:
    lo = rng.randint(max(bottom, x - width + 1), min(x, top - width + 1))
    return tuple(range(lo, lo + width))


def _sample_linear(rng: random.Random, cfg: ToyTaskConfig) -> Problem:
    a, b, x = rng.randint(2, cfg.a_max), rng.randint(1, cfg.b_max), rng.randint(1, cfg.x_max)
    cands = _window(rng, x, rng.randint(cfg.width_min, cfg.width_max), cfg.x_max)
    return Problem("linear", (a, b, a * x + b), cands, x)


def _sample_root(rng: random.Random, cfg: ToyTaskConfig) -> Problem:
    b, x = rng.randint(1, cfg.b_max), rng.randint(1, cfg.root_x_max)
    cands = _window(rng, x, rng.randint(cfg.width_min, cfg.width_max), cfg.root_x_max)
    return Problem("root", (b, x * x + b), cands, x)


def _sample_pick(rng: random.Random, cfg: ToyTaskConfig) -> Problem:
    a, b, x = rng.randint(2, cfg.a_max), rng.randint(1, cfg.b_max), rng.randint(1, cfg.x_max)
    others = rng.sample([y for y in range(1, cfg.x_max + 1) if y != x], cfg.pick_size - 1)
    cands = others + [x]
    rng.shuffle(cands)
    return Problem("pick", (a, b, a * x + b), tuple(cands), x)


def _sample_divisor(rng: random.Random, cfg: ToyTaskConfig) -> Problem:
    while True:
        d = rng.randint(2, cfg.div_max)
        n = d * rng.randint(2, cfg.n_max // d)
        cands = _window(rng, d, rng.randint(cfg.div_width_min, cfg.div_width_max), cfg.div_max, bottom=2)
        if sum(n % y == 0 for y in cands) == 1:
            return Problem("divisor", (n,), cands, d)


_SAMPLERS = {"linear": _sample_linear, "root": _sample_root, "pick": _sample_pick, "divisor": _sample_divisor}


def sample_problem(rng: random.Random, cfg: ToyTaskConfig, split: Split = "train") -> Problem:
    """Draw one problem of the given split (rejection sampling on the parameter hash)."""
    while True:
        family = rng.choices(cfg.families, weights=cfg.family_weights)[0]
        p = _SAMPLERS[family](rng, cfg)
        if split == "any" or split_of(p, cfg.heldout_frac) == split:
            return p


def iter_problems(cfg: ToyTaskConfig, split: Split, seed: int) -> Iterator[Problem]:
    """An endless, seeded stream of fresh problems of one split."""
    rng = random.Random(f"toyworld-{split}-{seed}")
    while True:
        yield sample_problem(rng, cfg, split)


def make_problems(n: int, *, split: Split = "train", seed: int = 0, config: ToyTaskConfig | None = None) -> list[Problem]:
    it = iter_problems(config or ToyTaskConfig(), split, seed)
    return [next(it) for _ in range(n)]


def make_dataset(n: int, *, split: Split = "train", seed: int = 0, config: ToyTaskConfig | None = None):
    """A ``datasets.Dataset`` of ``n`` problems with columns prompt, answer, solution, family.

    ``prompt`` is a plain string, ``answer`` the integer as a string, ``solution`` the short
    reference ``x = <answer>`` (the form the privileged SFT traces were trained with).
    Problems are drawn with replacement, so a large ``n`` repeats few of them only when the
    space is small (see ``problem_space_size``).
    """
    from datasets import Dataset

    rows = [p.row() for p in make_problems(n, split=split, seed=seed, config=config)]
    return Dataset.from_dict({k: [r[k] for r in rows] for k in ("prompt", "answer", "solution", "family")})


def problem_space_size(cfg: ToyTaskConfig, samples: int = 20000, seed: int = 0) -> dict[str, int]:
    """Distinct equations (split keys) seen in ``samples`` draws, per split (a lower bound)."""
    rng = random.Random(seed)
    seen: dict[str, set[str]] = {"train": set(), "heldout": set()}
    for _ in range(samples):
        p = sample_problem(rng, cfg, "any")
        seen[split_of(p, cfg.heldout_frac)].add(p.split_key)
    return {k: len(v) for k, v in seen.items()}


# -- an independent checker ----------------------------------------------------------------------
_PROMPT_RES = {
    "linear": re.compile(r"^find x in (\d+) \.\. (\d+) with (\d+) \* x \+ (\d+) = (\d+) \.$"),
    "root": re.compile(r"^find x in (\d+) \.\. (\d+) with x \* x \+ (\d+) = (\d+) \.$"),
    "pick": re.compile(r"^find x in \{ ([\d ]+) \} with (\d+) \* x \+ (\d+) = (\d+) \.$"),
    "divisor": re.compile(r"^find x in (\d+) \.\. (\d+) with (\d+) mod x = 0 \.$"),
}


def brute_force(prompt: str) -> list[int]:
    """All x that solve a prompt, found by parsing its text and trying every candidate."""
    for family, rx in _PROMPT_RES.items():
        m = rx.match(prompt)
        if not m:
            continue
        g = m.groups()
        if family == "linear":
            lo, hi, a, b, c = map(int, g)
            return [x for x in range(lo, hi + 1) if a * x + b == c]
        if family == "root":
            lo, hi, b, c = map(int, g)
            return [x for x in range(lo, hi + 1) if x * x + b == c]
        if family == "pick":
            cands = [int(t) for t in g[0].split()]
            a, b, c = map(int, g[1:])
            return [x for x in cands if a * x + b == c]
        lo, hi, n = map(int, g)
        return [x for x in range(lo, hi + 1) if n % x == 0]
    raise ValueError(f"not a toy-world prompt: {prompt!r}")


def config_dict(cfg: ToyTaskConfig) -> dict:
    return asdict(cfg)
