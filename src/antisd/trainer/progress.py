"""Progress lines in the training log: one per logging step, with the speed and the time left.

TRL's progress bar redraws itself with carriage returns, which a log file (``antisd train > run.log
2>&1``) keeps as one unreadable line; ``progress_callback`` (added by ``antisd train``) writes a plain
log line each time the trainer logs, e.g.

    step 40/400 (10%): 1.32 steps/s, elapsed 0:00:30, about 0:04:32 left; reward 0.613, accuracy 0.602

The speed counts only the steps this process ran (a resumed run does not credit the steps before
the checkpoint) and is the mean since the first step, so a slow first step (warm-up, compilation)
weighs less as the run goes on.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

logger = logging.getLogger(__name__)

SHOWN = ("reward", "accuracy")  # logged values quoted on the progress line, when present


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` (``D days, H:MM:SS`` past a day); ``?`` for a non-finite value."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    days, rest = divmod(seconds, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    clock = f"{h}:{m:02d}:{s:02d}"
    return f"{days} day{'s' if days > 1 else ''}, {clock}" if days else clock


def progress_line(step: int, max_steps: int, steps_done: int, elapsed: float,
                  logs: dict[str, Any] | None = None) -> str:
    """The progress line of step `step` of `max_steps`, `steps_done` of them in `elapsed` seconds here."""
    rate = steps_done / elapsed if elapsed > 0 and steps_done > 0 else float("nan")
    head = f"step {step}/{max_steps} ({100 * step / max_steps:.0f}%)" if max_steps > 0 else f"step {step}"
    speed = f"{rate:.3g} steps/s" if math.isfinite(rate) else "speed not known yet"
    left = (max_steps - step) / rate if max_steps > 0 and math.isfinite(rate) and rate > 0 else float("nan")
    parts = [f"{head}: {speed}, elapsed {format_duration(elapsed)}"]
    if max_steps > 0:
        parts.append("done" if step >= max_steps else f"about {format_duration(left)} left")
    line = ", ".join(parts)
    values = [f"{k} {logs[k]:.3f}" for k in SHOWN if isinstance((logs or {}).get(k), (int, float))]
    return line + (f"; {', '.join(values)}" if values else "")


def progress_callback() -> Any:
    """A ``TrainerCallback`` that logs ``progress_line`` (logger ``antisd.trainer.progress``, INFO) on every
    training log of the main process."""
    from transformers import TrainerCallback

    class ProgressLog(TrainerCallback):
        def __init__(self) -> None:
            self.start_time: float | None = None
            self.start_step = 0
            self.last_step = -1

        def on_train_begin(self, args, state, control, **kwargs):
            self.start_time, self.start_step = time.monotonic(), state.global_step

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or self.start_time is None or "loss" not in (logs or {}):
                return
            if state.global_step == self.last_step:  # one line per step (a second log of the same step)
                return
            self.last_step = state.global_step
            elapsed = time.monotonic() - self.start_time
            logger.info("%s", progress_line(state.global_step, state.max_steps, state.global_step - self.start_step,
                                            elapsed, logs))

    return ProgressLog()
