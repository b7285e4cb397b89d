"""Exploitation monitor: says, during training and in the report, when the policy is gaining token-term
advantage by writing what the privileged teacher rejects (docs/method.md, "Guards").

The failure it watches for (measured in the toy world, docs/benchmarks.md): -phi(u) > 0 on every
token the teacher finds less likely than the student does, so a policy can raise its advantage by
sampling such tokens. Then, over the steps, the mean PMI of the sampled tokens falls (``pmi/mean``),
the token term's net push grows (``signal/mean``), the teacher's entropy rises above its warm-up
value (the canonical gate, which turns off only when it *falls*, stays on) and the reward falls.

``exploit_status`` reads a run's logged history (``state.log_history``: the same list on every
process, and checkpointed, so a resumed run sees what an uninterrupted one does) and compares
the mean of the last ``window`` logged steps with the first ``window`` (the baseline):

    pmi_drop       baseline mean PMI - current mean PMI                      (nats)
    reward_drop    best earlier window mean of the reward - current mean
    entropy_ratio  current mean teacher entropy / H_warm (``gate/reference``)

and flags exploitation when ``pmi_drop > pmi_drop_max`` and (``reward_drop > reward_drop_max`` or
``entropy_ratio > entropy_ratio_max``). Pure Python apart from the callback at the end.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

PREFIX = "monitor/"


@dataclass(frozen=True)
class MonitorThresholds:
    """When ``exploit_status`` flags exploitation (see the module docstring)."""

    window: int = 20
    pmi_drop_max: float = 0.2
    reward_drop_max: float = 0.05
    entropy_ratio_max: float = 1.15

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"monitor window={self.window} must be >= 1 logged step")
        if not (self.pmi_drop_max > 0 and self.reward_drop_max > 0 and self.entropy_ratio_max > 1):
            raise ValueError(f"monitor thresholds pmi_drop_max={self.pmi_drop_max} and reward_drop_max="
                             f"{self.reward_drop_max} must be > 0 and entropy_ratio_max={self.entropy_ratio_max} > 1")


def _values(history: Sequence[dict[str, Any]], key: str) -> list[float]:
    return [float(h[key]) for h in history if isinstance(h.get(key), (int, float)) and math.isfinite(h[key])]


def _mean(xs: Sequence[float]) -> float:
    return statistics.fmean(xs) if xs else math.nan


def exploit_status(history: Sequence[dict[str, Any]], thresholds: MonitorThresholds) -> dict[str, float]:
    """``monitor/pmi_drop``, ``monitor/reward_drop``, ``monitor/entropy_ratio`` and ``monitor/exploit`` (1.0 or 0.0)
    from a run's logged history; empty until there are two windows of PMI."""
    w = thresholds.window
    pmi = _values(history, "pmi/mean")
    if len(pmi) < 2 * w:
        return {}
    reward = _values(history, "reward")
    pmi_drop = _mean(pmi[:w]) - _mean(pmi[-w:])
    windows = [_mean(reward[i:i + w]) for i in range(0, max(len(reward) - w, 0) + 1, max(1, w // 4))]
    reward_drop = (max(windows) - _mean(reward[-w:])) if len(reward) >= w else math.nan
    ent, ref = _values(history, "teacher/entropy_mean"), _values(history, "gate/reference")
    entropy_ratio = _mean(ent[-w:]) / ref[-1] if ent and ref and ref[-1] > 0 else math.nan
    exploit = pmi_drop > thresholds.pmi_drop_max and (
        reward_drop > thresholds.reward_drop_max or entropy_ratio > thresholds.entropy_ratio_max)
    return {f"{PREFIX}pmi_drop": pmi_drop, f"{PREFIX}reward_drop": reward_drop,
            f"{PREFIX}entropy_ratio": entropy_ratio, f"{PREFIX}exploit": float(exploit)}


def describe(status: dict[str, float], thresholds: MonitorThresholds) -> str:
    """One line for the log and the report."""
    return (f"token-term exploitation suspected: the sampled tokens' mean PMI fell "
            f"{status[PREFIX + 'pmi_drop']:.2f} nats below its start (> {thresholds.pmi_drop_max}), the reward is "
            f"{status[PREFIX + 'reward_drop']:.3f} below its best window (> {thresholds.reward_drop_max}) or the "
            f"teacher's entropy is {status[PREFIX + 'entropy_ratio']:.2f} x H_warm (> {thresholds.entropy_ratio_max}). "
            "The policy is being paid for text the privileged teacher rejects; consider token_term_centering: "
            "sequence or gate_ceiling_ratio (docs/method.md, Guards).")


def exploit_callback(thresholds: MonitorThresholds):
    """A TrainerCallback that adds ``monitor/*`` to every log (put it first, so that the reporting integrations
    and ``log_history`` get them) and logs a warning when the flag turns on and when it turns off."""
    from transformers import TrainerCallback

    class ExploitMonitorCallback(TrainerCallback):
        def __init__(self) -> None:
            self.flagged = False

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs is None or "loss" not in logs:
                return
            status = exploit_status(state.log_history, thresholds)
            if not status:
                return
            logs.update(status)
            if state.log_history and state.log_history[-1].get("step") == state.global_step:
                state.log_history[-1].update(status)
            flag = status[PREFIX + "exploit"] > 0
            if flag != self.flagged and state.is_world_process_zero:
                if flag:
                    logger.warning("step %d: %s", state.global_step, describe(status, thresholds))
                else:
                    logger.info("step %d: the exploitation monitor's signs are gone", state.global_step)
            self.flagged = flag

    return ExploitMonitorCallback()
