"""The entropy-triggered gate of AntiSD: a Schmitt trigger on a per-step statistic that
decides the token term's weight lambda (docs/method.md, Eq. 7).

Gate kinds are registry entries (``GateKind``) that carry *which statistic* the trainer must
measure and *in which direction* the gate turns off; one class, ``SchmittGate``, runs them all:

    kind                 statistic            direction   off when
    teacher_entropy      teacher_entropy      below       H < down_ratio * H_warm       (canonical)
    student_perplexity   student_perplexity   above       P > H_warm / down_ratio       (ablation)
    none                 -                    never       never: lambda = lambda_max at every step

Canonical rules (``direction="below"``), one ``update`` per generation batch:

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

The reciprocal ratios give the same band width in log space as the entropy gate.

Ceiling (project addition, the "two-sided gate" guard of docs/method.md, Eq. 9). With
``ceiling_ratio`` set, a ``below`` gate also turns off when the statistic rises *above*
``ceiling_ratio * H_warm``, and an off gate that left through the ceiling turns back on when
the statistic has come back to ``<= H_warm / up_ratio``. The canonical gate only watches the
teacher's entropy falling; when the policy drifts to text the privileged teacher rejects, the
teacher's entropy rises instead and the one-sided gate stays on (docs/benchmarks.md, the robustness study).

Non-finite statistics (NaN/inf: an empty response, a dead model) never reach lambda: the gate
keeps its state, counts them in ``n_nonfinite`` and returns the lambda of its current state;
they do not count as warm-up steps.

Pure Python: no torch, no I/O, no logging.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Literal

Direction = Literal["below", "above", "never"]
Statistic = Literal["teacher_entropy", "student_perplexity"]


@dataclass(frozen=True)
class GateKind:
    """A registered gate: the statistic the trainer feeds it and the direction it turns off in."""

    name: str
    statistic: Statistic | None
    direction: Direction
    help: str


_GATES: dict[str, GateKind] = {}


def register_gate(kind: GateKind) -> GateKind:
    if kind.name in _GATES:
        raise ValueError(f"gate {kind.name!r} is already registered")
    if kind.direction not in ("below", "above", "never"):
        raise ValueError(f"gate {kind.name!r}: direction={kind.direction!r} must be one of ['above', 'below', 'never']")
    _GATES[kind.name] = kind
    return kind


register_gate(GateKind("teacher_entropy", "teacher_entropy", "below",
                       "canonical: off when the teacher's entropy falls below down_ratio * H_warm"))
register_gate(GateKind("student_perplexity", "student_perplexity", "above",
                       "ablation: off when the student's perplexity rises above H_warm / down_ratio"))
register_gate(GateKind("none", None, "never", "ablation: lambda = lambda_max at every step"))


def gate_kinds() -> list[str]:
    """Sorted names of the available gates."""
    return sorted(_GATES)


def get_gate_kind(kind: str) -> GateKind:
    """The registry entry of ``kind``; unknown names raise ValueError listing the valid ones."""
    try:
        return _GATES[kind]
    except KeyError:
        raise ValueError(f"unknown gate={kind!r}; valid gates: {gate_kinds()}") from None


def gate_statistic(kind: str) -> Statistic | None:
    """The statistic the trainer must measure for a gate of ``kind`` (None: none)."""
    return get_gate_kind(kind).statistic


class SchmittGate:
    """Schmitt-trigger gate on a scalar statistic (see the module docstring for the rules)."""

    def __init__(
        self,
        warmup_steps: int = 5,
        down_ratio: float = 0.93,
        up_ratio: float = 1.0,
        lambda_max: float = 0.5,
        direction: Direction = "below",
        ceiling_ratio: float | None = None,
        kind: str = "schmitt",
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
        if direction not in ("below", "above", "never"):
            raise ValueError(f"direction={direction!r} must be one of ['above', 'below', 'never']")
        if ceiling_ratio is not None:
            if direction != "below":
                raise ValueError(f"ceiling_ratio applies to gates that turn off below a band (direction='below'), "
                                 f"not direction={direction!r}")
            if not (math.isfinite(ceiling_ratio) and ceiling_ratio > 1.0 / up_ratio):
                raise ValueError(f"ceiling_ratio={ceiling_ratio} must be above 1/up_ratio={1.0 / up_ratio:.4g} "
                                 "(an off gate turns back on at H_warm / up_ratio)")
        self.kind = kind
        self.warmup_steps = int(warmup_steps)
        self.down_ratio = float(down_ratio)
        self.up_ratio = float(up_ratio)
        self.lambda_max = float(lambda_max)
        self.direction: Direction = direction
        self.ceiling_ratio = None if ceiling_ratio is None else float(ceiling_ratio)
        self._warmup_stats: list[float] = []
        self._reference: float | None = None
        self._on = direction == "never"
        self._off_high = False  # an off gate that left through the ceiling
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
        return self._reference is None and self.direction != "never"

    @property
    def lam(self) -> float:
        """The lambda of the current state."""
        return self.lambda_max if self._on else 0.0

    @property
    def off_threshold(self) -> float | None:
        """Statistic value beyond which an "on" gate turns off (the lower edge for ``below``)."""
        if self._reference is None:
            return None
        if self.direction == "below":
            return self.down_ratio * self._reference
        return self._reference / self.down_ratio

    @property
    def ceiling_threshold(self) -> float | None:
        """Statistic value above which an "on" ``below`` gate with a ceiling turns off."""
        if self._reference is None or self.ceiling_ratio is None:
            return None
        return self.ceiling_ratio * self._reference

    @property
    def on_threshold(self) -> float | None:
        """Statistic value an "off" gate must reach to turn back on."""
        if self._reference is None:
            return None
        if self.direction == "below" and not self._off_high:
            return self.up_ratio * self._reference
        return self._reference / self.up_ratio

    # ------------------------------------------------------------------ transitions
    def _turn_off_side(self, stat: float) -> str | None:
        """"low"/"high" when an on gate must turn off at ``stat``, else None."""
        if self.direction == "below":
            if stat < self.off_threshold:
                return "low"
            ceiling = self.ceiling_threshold
            return "high" if ceiling is not None and stat > ceiling else None
        return "high" if stat > self.off_threshold else None

    def _should_turn_on(self, stat: float) -> bool:
        thr = self.on_threshold
        if self.direction == "below" and not self._off_high:
            return stat >= thr
        return stat <= thr

    def update(self, stat: float) -> float:
        """Feed this step's statistic; return the lambda to use for this step."""
        self.n_updates += 1
        stat = float(stat)
        self.last_stat = stat
        if not math.isfinite(stat):
            self.n_nonfinite += 1
            return self.lam
        if self.direction == "never":
            return self.lam
        if self._reference is None:
            self._warmup_stats.append(stat)
            if len(self._warmup_stats) >= self.warmup_steps:
                self._reference = float(statistics.median(self._warmup_stats))
                self._on = True
            return 0.0
        if self._on:
            side = self._turn_off_side(stat)
            if side is not None:
                self._on, self._off_high = False, side == "high"
                self.n_switches += 1
        elif self._should_turn_on(stat):
            self._on, self._off_high = True, False
            self.n_switches += 1
        return self.lam

    def reset(self) -> None:
        """Start a fresh warm-up (continual mode)."""
        self.__init__(**{k: v for k, v in self._params().items()})

    # ------------------------------------------------------------------ checkpointing
    def _params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "kind": self.kind,
            "warmup_steps": self.warmup_steps,
            "down_ratio": self.down_ratio,
            "up_ratio": self.up_ratio,
            "lambda_max": self.lambda_max,
            "direction": self.direction,
        }
        if self.ceiling_ratio is not None:  # absent in the canonical gate: old checkpoints still load
            params["ceiling_ratio"] = self.ceiling_ratio
        return params

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: parameters, warm-up stats, H_warm, state, counters."""
        return {
            **self._params(),
            "warmup_stats": list(self._warmup_stats),
            "reference": self._reference,
            "on": self._on,
            "off_high": self._off_high,
            "n_updates": self.n_updates,
            "n_nonfinite": self.n_nonfinite,
            "n_switches": self.n_switches,
            "last_stat": self.last_stat,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state written by ``state_dict``; parameters must match this gate's."""
        mine = self._params()
        keys = list(mine) + [k for k in ("ceiling_ratio",) if k in state and k not in mine]
        mismatched = {k: (state.get(k), mine.get(k)) for k in keys if state.get(k) != mine.get(k)}
        if mismatched:
            detail = ", ".join(f"{k}: checkpoint={a!r} config={b!r}" for k, (a, b) in mismatched.items())
            raise ValueError(
                f"gate state does not match this gate's configuration ({detail}); "
                "use the checkpoint's gate settings, or start a fresh warm-up (continual mode)"
            )
        self._warmup_stats = [float(x) for x in state["warmup_stats"]]
        self._reference = None if state["reference"] is None else float(state["reference"])
        self._on = bool(state["on"])
        self._off_high = bool(state.get("off_high", False))
        self.n_updates = int(state["n_updates"])
        self.n_nonfinite = int(state["n_nonfinite"])
        self.n_switches = int(state.get("n_switches", 0))
        self.last_stat = state.get("last_stat")

    def metrics(self) -> dict[str, float]:
        """Namespaced values for logging (NaN where undefined)."""
        nan = float("nan")
        out = {
            "gate/on": float(self._on),
            "gate/lambda": self.lam,
            "gate/warmup": float(self.in_warmup),
            "gate/reference": nan if self._reference is None else self._reference,
            "gate/off_threshold": nan if self.off_threshold is None else self.off_threshold,
            "gate/on_threshold": nan if self.on_threshold is None else self.on_threshold,
            "gate/nonfinite_count": float(self.n_nonfinite),
            "gate/switches": float(self.n_switches),
        }
        if self.ceiling_ratio is not None:
            out["gate/ceiling_threshold"] = nan if self.ceiling_threshold is None else self.ceiling_threshold
            out["gate/off_high"] = float(self._off_high)
        return out


def make_gate(kind: str, **params: Any) -> SchmittGate:
    """Build a gate by name: "teacher_entropy" (canonical), "student_perplexity", "none".

    ``params``: warmup_steps, down_ratio, up_ratio, lambda_max, ceiling_ratio (``SchmittGate``).
    """
    spec = get_gate_kind(kind)
    if spec.direction == "never":
        params = {**params, "ceiling_ratio": None}
    return SchmittGate(direction=spec.direction, kind=spec.name, **params)
