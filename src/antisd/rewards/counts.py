"""`OutcomeCounts`: one counter of outcomes for every reward (maths `RewardStats`, code `CodeStats`).

A reward ends each call in exactly one outcome of its enum; a subclass names a counter field per
outcome (``OUTCOMES``), the outcome that earns the reward (``SUCCESS``), optional per-call flags that
are counted beside the outcome (``FLAGS``, e.g. "a program was extracted") and the default metric
prefix (``PREFIX``). ``as_dict`` gives the logged metrics, in this order:

    {prefix}/n_calls, {prefix}/accuracy (SUCCESS / n_calls), {prefix}/<flag>_frac for each flag,
    {prefix}/<outcome value>_frac for every other outcome (in ``OUTCOMES`` order)

Every fraction is 0.0 when nothing was counted. Pure: no imports beyond the standard library, so the
sandbox's worker processes can import the code reward's counter cheaply. Not locked: give each thread
its own counter and ``merge`` them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import ClassVar


@dataclass
class OutcomeCounts:
    """Counts of outcomes (module docstring); the outcome counters sum to n_calls."""

    OUTCOMES: ClassVar[Mapping[enum.Enum, str]] = {}  # outcome -> the name of its counter field
    SUCCESS: ClassVar[enum.Enum | None] = None  # the outcome reported as accuracy
    FLAGS: ClassVar[tuple[str, ...]] = ()  # flag f is counted in field n_<f>, reported as <f>_frac
    PREFIX: ClassVar[str] = "reward"

    n_calls: int = 0

    def record(self, outcome: enum.Enum, *flags: bool) -> None:
        """Count one call that ended in `outcome`, with one bool per name in ``FLAGS`` (in that order)."""
        if len(flags) != len(self.FLAGS):
            raise TypeError(f"{type(self).__name__}.record takes the outcome and {len(self.FLAGS)} flag(s) "
                            f"{list(self.FLAGS)}; got {len(flags)}")
        name = self.OUTCOMES[outcome]
        self.n_calls += 1
        setattr(self, name, getattr(self, name) + 1)
        for flag, value in zip(self.FLAGS, flags):
            setattr(self, f"n_{flag}", getattr(self, f"n_{flag}") + int(value))

    def merge(self, other: OutcomeCounts) -> None:
        """Add `other`'s counts (a counter of the same class) to this one."""
        if type(other) is not type(self):
            raise TypeError(f"cannot merge a {type(other).__name__} into a {type(self).__name__}")
        for item in fields(self):
            setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))

    def as_dict(self, prefix: str | None = None) -> dict[str, float]:
        """The logged metrics (module docstring); `prefix` defaults to the class's ``PREFIX``."""
        prefix = self.PREFIX if prefix is None else prefix
        n = max(self.n_calls, 1)
        success = 0 if self.SUCCESS is None else getattr(self, self.OUTCOMES[self.SUCCESS])
        out = {f"{prefix}/n_calls": float(self.n_calls), f"{prefix}/accuracy": success / n}
        for flag in self.FLAGS:
            out[f"{prefix}/{flag}_frac"] = getattr(self, f"n_{flag}") / n
        for outcome, name in self.OUTCOMES.items():
            if outcome is not self.SUCCESS:
                out[f"{prefix}/{outcome.value}_frac"] = getattr(self, name) / n
        return out
