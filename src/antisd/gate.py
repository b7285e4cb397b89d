"""The entropy-triggered gate of AntiSD: a Schmitt trigger on a per-step statistic that
decides the token term's weight lambda (METHOD.md, "Entropy-triggered gate").

Canonical gate (teacher entropy, ``direction="below"``), one ``update`` per generation batch:

    warm-up    the first ``warmup_steps`` finite statistics are recorded, lambda = 0;
               H_warm = median of them (the gate's ``reference``).
    on         lambda = lambda_max; turns off when  H <  down_ratio * H_warm.
    off        lambda = 0;          turns on when   H >= up_ratio   * H_warm  (hysteresis).

The step that completes the warm-up still returns 0; the first post-warm-up step starts "on"
and is evaluated against the band with its own statistic before its lambda is returned.

Student-perplexity gate (``direction="above"``, project choice). The paper gates on the
student's perplexity as an ablation without giving the direction; we turn the token term
*off when perplexity rises above its band* and back on once it has come back down:

    on -> off  when  P >  H_warm / down_ratio
    off -> on  when  P <= H_warm / up_ratio

Why: the failure the gate guards against is the token term pushing the policy towards tokens
the teacher disfavours until the student's own distribution degenerates (ungated AntiSD in the
toy world ran to the length budget with its deliberation rate tripled): the student's
perplexity on its own samples rises. The reciprocal ratios give the same band width in log
space as the entropy gate (|log 0.93| on either side).

Non-finite statistics (NaN/inf: an empty response, a dead model) never reach lambda: the gate
keeps its state, counts them in ``n_nonfinite`` and returns the lambda of its current state;
they do not count as warm-up steps.

``NoGate`` (the "no gate" ablation) returns lambda_max at every step.
Pure Python: no torch, no I/O, no logging.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from typing import Any, Literal

Direction = Literal["below", "above"]


class SchmittGate:
    """Schmitt-trigger gate on a scalar statistic (see the module docstring for the rules)."""

    kind: str = "schmitt"

    def __init__(
        self,
        warmup_steps: int = 5,
        down_ratio: float = 0.93,
        up_ratio: float = 1.0,
        lambda_max: float = 0.5,
        direction: Direction = "below",
    ) -> None:
        if int(warmup_steps) != warmup_steps or warmup_steps < 1:
            raise ValueError(f"warmup_steps={warmup_steps} must be an integer >= 1 (H_warm is their median)")
        if not (0.0 < down_ratio <= up_ratio):
            raise ValueError(
                f"down_ratio={down_ratio} must satisfy 0 < down_ratio <= up_ratio={up_ratio} "
                "(the gate turns off beyond down_ratio*H_warm and back on at up_ratio*H_warm)"
            )
        if not (math.isfinite(lambda_max) and lambda_max >= 0.0):
            raise ValueError(f"lambda_max={lambda_max} must be a finite number >= 0")
        if direction not in ("below", "above"):
            raise ValueError(f"direction={direction!r} must be one of ['above', 'below']")
        self.warmup_steps = int(warmup_steps)
        self.down_ratio = float(down_ratio)
        self.up_ratio = float(up_ratio)
        self.lambda_max = float(lambda_max)
        self.direction: Direction = direction
        self._warmup_stats: list[float] = []
        self._reference: float | None = None
        self._on = False
        self.n_updates = 0
        self.n_nonfinite = 0
        self.n_switches = 0
        self.last_stat: float | None = None

    # ------------------------------------------------------------------ read-only state
    @property
    def on(self) -> bool:
        """True when the token term is active (never during warm-up)."""
        return self._on

    @property
    def reference(self) -> float | None:
        """H_warm, the median of the warm-up statistics; None during warm-up."""
        return self._reference

    @property
    def in_warmup(self) -> bool:
        return self._reference is None

    @property
    def lam(self) -> float:
        """The lambda of the current state."""
        return self.lambda_max if self._on else 0.0

    @property
    def off_threshold(self) -> float | None:
        """Statistic value beyond which an "on" gate turns off."""
        if self._reference is None:
            return None
        if self.direction == "below":
            return self.down_ratio * self._reference
        return self._reference / self.down_ratio

    @property
    def on_threshold(self) -> float | None:
        """Statistic value an "off" gate must reach to turn back on."""
        if self._reference is None:
            return None
        if self.direction == "below":
            return self.up_ratio * self._reference
        return self._reference / self.up_ratio

    # ------------------------------------------------------------------ transitions
    def _should_turn_off(self, stat: float) -> bool:
        thr = self.off_threshold
        return stat < thr if self.direction == "below" else stat > thr

    def _should_turn_on(self, stat: float) -> bool:
        thr = self.on_threshold
        return stat >= thr if self.direction == "below" else stat <= thr

    def update(self, stat: float) -> float:
        """Feed this step's statistic; return the lambda to use for this step."""
        self.n_updates += 1
        stat = float(stat)
        self.last_stat = stat
        if not math.isfinite(stat):
            self.n_nonfinite += 1
            return self.lam
        if self._reference is None:
            self._warmup_stats.append(stat)
            if len(self._warmup_stats) >= self.warmup_steps:
                self._reference = float(statistics.median(self._warmup_stats))
                self._on = True
            return 0.0
        if self._on and self._should_turn_off(stat):
            self._on = False
            self.n_switches += 1
        elif not self._on and self._should_turn_on(stat):
            self._on = True
            self.n_switches += 1
        return self.lam

    def reset(self) -> None:
        """Start a fresh warm-up (continual mode)."""
        self.__init__(self.warmup_steps, self.down_ratio, self.up_ratio, self.lambda_max, self.direction)

    # ------------------------------------------------------------------ checkpointing
    def _params(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "warmup_steps": self.warmup_steps,
            "down_ratio": self.down_ratio,
            "up_ratio": self.up_ratio,
            "lambda_max": self.lambda_max,
            "direction": self.direction,
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: parameters, warm-up stats, H_warm, state, counters."""
        return {
            **self._params(),
            "warmup_stats": list(self._warmup_stats),
            "reference": self._reference,
            "on": self._on,
            "n_updates": self.n_updates,
            "n_nonfinite": self.n_nonfinite,
            "n_switches": self.n_switches,
            "last_stat": self.last_stat,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state written by ``state_dict``; parameters must match this gate's."""
        mine = self._params()
        mismatched = {k: (state.get(k), v) for k, v in mine.items() if state.get(k) != v}
        if mismatched:
            detail = ", ".join(f"{k}: checkpoint={a!r} config={b!r}" for k, (a, b) in mismatched.items())
            raise ValueError(
                f"gate state does not match this gate's configuration ({detail}); "
                "use the checkpoint's gate settings, or start a fresh warm-up (continual mode)"
            )
        self._warmup_stats = [float(x) for x in state["warmup_stats"]]
        self._reference = None if state["reference"] is None else float(state["reference"])
        self._on = bool(state["on"])
        self.n_updates = int(state["n_updates"])
        self.n_nonfinite = int(state["n_nonfinite"])
        self.n_switches = int(state.get("n_switches", 0))
        self.last_stat = state.get("last_stat")

    def metrics(self) -> dict[str, float]:
        """Namespaced values for logging (NaN where undefined)."""
        nan = float("nan")
        return {
            "gate/on": float(self._on),
            "gate/lambda": self.lam,
            "gate/warmup": float(self.in_warmup),
            "gate/reference": nan if self._reference is None else self._reference,
            "gate/off_threshold": nan if self.off_threshold is None else self.off_threshold,
            "gate/on_threshold": nan if self.on_threshold is None else self.on_threshold,
            "gate/nonfinite_count": float(self.n_nonfinite),
            "gate/switches": float(self.n_switches),
        }


class EntropyGate(SchmittGate):
    """Canonical AntiSD gate on the teacher's entropy: off when H < down_ratio * H_warm."""

    kind = "teacher_entropy"

    def __init__(self, warmup_steps: int = 5, down_ratio: float = 0.93, up_ratio: float = 1.0,
                 lambda_max: float = 0.5, direction: Direction = "below") -> None:
        super().__init__(warmup_steps, down_ratio, up_ratio, lambda_max, direction)


class PerplexityGate(SchmittGate):
    """Ablation gate on the student's perplexity: off when P > H_warm / down_ratio."""

    kind = "student_perplexity"

    def __init__(self, warmup_steps: int = 5, down_ratio: float = 0.93, up_ratio: float = 1.0,
                 lambda_max: float = 0.5, direction: Direction = "above") -> None:
        super().__init__(warmup_steps, down_ratio, up_ratio, lambda_max, direction)


class NoGate(SchmittGate):
    """The "no gate" ablation: lambda = lambda_max at every step, no warm-up."""

    kind = "none"

    def __init__(self, warmup_steps: int = 5, down_ratio: float = 0.93, up_ratio: float = 1.0,
                 lambda_max: float = 0.5, direction: Direction = "below") -> None:
        super().__init__(warmup_steps, down_ratio, up_ratio, lambda_max, direction)
        self._on = True

    def update(self, stat: float) -> float:
        self.n_updates += 1
        self.last_stat = float(stat)
        if not math.isfinite(self.last_stat):
            self.n_nonfinite += 1
        return self.lambda_max

    def reset(self) -> None:
        super().reset()
        self._on = True


_GATES: dict[str, Callable[..., SchmittGate]] = {
    EntropyGate.kind: EntropyGate,
    PerplexityGate.kind: PerplexityGate,
    NoGate.kind: NoGate,
}


def gate_kinds() -> list[str]:
    """Sorted names of the available gates."""
    return sorted(_GATES)


def make_gate(kind: str, **params: Any) -> SchmittGate:
    """Build a gate by name: "teacher_entropy" (canonical), "student_perplexity", "none"."""
    try:
        cls = _GATES[kind]
    except KeyError:
        raise ValueError(f"unknown gate={kind!r}; valid gates: {gate_kinds()}") from None
    return cls(**params)
