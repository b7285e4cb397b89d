"""Training report: a markdown summary and PNG plots from a run's logged metrics.

Reads ``trainer_state.json`` (TRL/transformers ``log_history``) from a run folder, or from its
newest checkpoint when the run has not finished, and draws, per step, one panel each: reward,
accuracy, response length, teacher entropy with the gate's on/off band (H_warm, down_ratio*H_warm,
up_ratio*H_warm), lambda, the deliberation-token rate and the PMI; the steps the gate was off are
shaded on every panel. ``write_report`` also keeps its title
and extra rows (e.g. the toy world's held-out accuracy) in ``report.json``, so that
``antisd report RUN_DIR`` (``regenerate_report``) can redraw the report of any run, finished or
not, without the model. ``log_final_step_callback`` (added by ``antisd train``) logs the last
step of a run shorter than ``logging_steps``, so its report has figures too.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

REPORT_SETTINGS = "report.json"
# One panel each (reward and accuracy coincide when the reward is the verifier's 0/1: on one axis one line hides
# the other).
PANELS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("reward", ("reward",), "reward"),
    ("accuracy", ("accuracy", "eval/avg@k"), "accuracy"),
    ("length", ("completions/mean_length",), "response length (tokens)"),
    ("entropy", ("teacher/entropy_mean", "teacher/entropy_median", "student/entropy_mean"), "entropy (nats)"),
    ("lambda", ("gate/lambda",), "lambda (token-term weight)"),
    ("deliberation", ("deliberation/token_frac",), "deliberation-token rate"),
    ("pmi", ("pmi/mean", "signal/mean", "monitor/exploit"), "PMI of sampled tokens, token term, exploit flag"),
)


def log_final_step_callback() -> Any:
    """A ``TrainerCallback`` that logs the last optimizer step when it is not a multiple of
    ``logging_steps``: a run shorter than ``logging_steps`` (or one whose last steps fall between
    two logs) still has its final metrics in ``log_history``, and so a report with a table."""
    from transformers import TrainerCallback

    class LogFinalStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if 0 < state.max_steps <= state.global_step:
                control.should_log = True
            return control

    return LogFinalStep()


def load_state(run_dir: str | Path) -> dict[str, Any]:
    """The run's ``trainer_state.json``: the run folder's own, else the newest checkpoint's."""
    run_dir = Path(run_dir)
    candidates = [run_dir / "trainer_state.json"] + sorted(
        run_dir.glob("checkpoint-*/trainer_state.json"),
        key=lambda p: int(p.parent.name.split("-")[-1]) if p.parent.name.split("-")[-1].isdigit() else -1,
    )
    found = [p for p in candidates if p.exists()]
    if not found:
        raise FileNotFoundError(f"no trainer_state.json in {run_dir} or its checkpoints")
    path = found[0] if found[0].parent == run_dir else found[-1]
    return json.loads(path.read_text())


def training_logs(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-step training logs (entries with a step and a loss) of a trainer state."""
    return [h for h in state.get("log_history", []) if "step" in h and "loss" in h]


def load_history(run_dir: str | Path) -> list[dict[str, Any]]:
    """Per-step training logs of a run (the newest ``trainer_state.json`` found)."""
    return training_logs(load_state(run_dir))


def _series(history: Sequence[dict], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for h in history:
        v = h.get(key)
        if isinstance(v, (int, float)) and math.isfinite(v):
            xs.append(int(h["step"]))
            ys.append(float(v))
    return xs, ys


def run_figure(history: Sequence[dict], title: str = "", down_ratio: float | None = None,
               up_ratio: float | None = None) -> tuple[Any, dict[str, Any]]:
    """(matplotlib Figure, panel name -> its Axes) of ``PANELS`` for a run's logged history: one panel per
    quantity, the gate's band (H_warm, off and on thresholds) on the entropy panel, and the steps the gate
    was off shaded on every panel (``gate_off_spans``)."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    fig = Figure(figsize=(7, 2.0 * len(PANELS)))
    axes = fig.subplots(len(PANELS), 1, sharex=True)
    spans = gate_off_spans(history)
    panels = {}
    for ax, (name, keys, label) in zip(axes, PANELS):
        panels[name] = ax
        for key in keys:
            xs, ys = _series(history, key)
            if xs:
                ax.plot(xs, ys, label=key, lw=1.2, marker="o" if len(xs) == 1 else None, markersize=3)
        for i, (lo, hi) in enumerate(spans):
            ax.axvspan(lo, hi, color="grey", alpha=0.25, lw=0, label="gate off" if i == 0 else None, gid="gate-off")
        if name == "entropy":
            _draw_gate_band(ax, history, down_ratio, up_ratio)
        ax.set_ylabel(label, fontsize=8)
        if ax.lines or spans:
            ax.legend(fontsize=7, loc="best")
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("step")
    if title:
        axes[0].set_title(title)
    fig.tight_layout()
    return fig, panels


def plot_run(history: Sequence[dict], out_dir: str | Path, title: str = "", down_ratio: float | None = None,
             up_ratio: float | None = None) -> list[Path]:
    """Write ``curves.png`` (``run_figure``) into `out_dir`; return the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, _ = run_figure(history, title, down_ratio, up_ratio)
    path = out_dir / "curves.png"
    fig.savefig(path, dpi=90)
    return [path]


def gate_off_spans(history: Sequence[dict]) -> list[tuple[float, float]]:
    """The step ranges the gate was off, merged: a logged step with ``gate/on`` < 0.5 stands for the steps since
    the previous log (the first log for the ``logging_steps`` before it), so with logs every 5 steps a band is
    5 steps wide, not a hairline."""
    xs, ys = _series(history, "gate/on")
    spans: list[tuple[float, float]] = []
    for i, (x, y) in enumerate(zip(xs, ys)):
        if y >= 0.5:
            continue
        width = (x - xs[i - 1]) if i > 0 else (xs[1] - x if len(xs) > 1 else 1)
        lo, hi = x - max(width, 1), float(x)
        if spans and spans[-1][1] >= lo:
            spans[-1] = (spans[-1][0], hi)
        else:
            spans.append((float(lo), hi))
    return spans


def _draw_gate_band(ax, history: Sequence[dict], down_ratio: float | None, up_ratio: float | None) -> None:
    refs = [h.get("gate/reference") for h in history if isinstance(h.get("gate/reference"), (int, float))]
    refs = [r for r in refs if math.isfinite(r)]
    if not refs:
        return
    ref = refs[-1]
    ax.axhline(ref, color="k", lw=0.8, ls="--", label="H_warm")
    offs = [h.get("gate/off_threshold") for h in history if isinstance(h.get("gate/off_threshold"), (int, float))]
    ons = [h.get("gate/on_threshold") for h in history if isinstance(h.get("gate/on_threshold"), (int, float))]
    off = offs[-1] if offs else (ref * down_ratio if down_ratio else None)
    on = ons[-1] if ons else (ref * up_ratio if up_ratio else None)
    if off is not None and on is not None:
        ax.axhspan(min(off, on), max(off, on), color="orange", alpha=0.15, label="gate band")


def summarize(history: Sequence[dict]) -> dict[str, Any]:
    """Key figures of a run: first/last/peak reward and accuracy, gate switches, lengths."""
    out: dict[str, Any] = {"steps": int(history[-1]["step"]) if history else 0}
    for key in ("reward", "accuracy", "completions/mean_length", "deliberation/token_frac",
                "teacher/entropy_mean", "gate/lambda", "pmi/mean", "signal/mean", "eval/avg@k"):
        xs, ys = _series(history, key)
        if not ys:
            continue
        k = max(1, len(ys) // 10)
        peak = max(range(len(ys)), key=lambda i: ys[i])
        out[key] = {"first": sum(ys[:k]) / k, "last": sum(ys[-k:]) / k, "peak": ys[peak], "peak_step": xs[peak]}
    xs, ys = _series(history, "gate/on")
    if ys:
        out["gate_on_frac"] = sum(ys) / len(ys)
    xs, ys = _series(history, "monitor/exploit")
    if ys:
        flagged = [x for x, y in zip(xs, ys) if y > 0]
        out["exploit"] = {"checked": len(ys), "flagged": len(flagged), "first_step": flagged[0] if flagged else None}
    return out


def write_report(run_dir: str | Path, *, title: str = "antisd training run", extra: dict[str, Any] | None = None,
                 down_ratio: float | None = None, up_ratio: float | None = None) -> Path:
    """Write ``report.md``, ``plots/curves.png`` and ``report.json`` (title and extra rows, for
    ``regenerate_report``) into ``run_dir``; return the markdown path."""
    run_dir = Path(run_dir)
    state = load_state(run_dir)
    history = training_logs(state)
    plots = plot_run(history, run_dir / "plots", title=title, down_ratio=down_ratio, up_ratio=up_ratio)
    summ = summarize(history)
    lines = [f"# {title}", "", f"Run folder: `{run_dir}`; {summ['steps']} optimizer steps.", ""]
    reached, planned = state.get("global_step"), state.get("max_steps")
    if isinstance(reached, int) and isinstance(planned, int) and reached < planned:
        lines += [f"At step {reached} of max_steps {planned}: the run stopped early, is still running, or this "
                  "is a checkpoint's state.", ""]
    if not history:
        lines += ["No training step is logged yet (the first log comes at step logging_steps).", ""]
    if extra:
        lines += ["| quantity | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in extra.items()]
        lines.append("")
    lines += ["| metric | first 10% | last 10% | peak (step) |", "|---|---|---|---|"]
    for key, v in summ.items():
        if isinstance(v, dict) and "first" in v:
            lines.append(f"| {key} | {v['first']:.4g} | {v['last']:.4g} | {v['peak']:.4g} ({v['peak_step']}) |")
    if "gate_on_frac" in summ:
        lines += ["", f"Gate on for {summ['gate_on_frac']:.0%} of logged steps (including warm-up as off)."]
    ex = summ.get("exploit")
    if ex and ex["flagged"]:
        lines += ["", f"**Exploitation monitor: flagged on {ex['flagged']} of {ex['checked']} logged steps, first at "
                      f"step {ex['first_step']}**: the sampled tokens' mean PMI fell and the reward fell or the teacher's "
                      "entropy rose: the policy was being paid for text the privileged teacher rejects "
                      "(antisd.method.monitor; guards: docs/method.md)."]
    elif ex:
        lines += ["", f"Exploitation monitor: no sign on {ex['checked']} logged steps."]
    lines += ["", "Training curves (grey bands: gate off):", ""]
    lines += [f"![{p.stem}]({p.relative_to(run_dir)})" for p in plots]
    lines += ["", "TensorBoard: `tensorboard --logdir " + str(run_dir) + "`", ""]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines))
    settings = {"title": title, "extra": extra or {}, "down_ratio": down_ratio, "up_ratio": up_ratio}
    (run_dir / REPORT_SETTINGS).write_text(json.dumps(settings, indent=2, default=str) + "\n")
    logger.info("Wrote %s", path)
    return path


def regenerate_report(run_dir: str | Path, *, title: str | None = None) -> Path:
    """``antisd report RUN_DIR``: rewrite the report of a run from its logged metrics, with the
    title and extra rows of ``report.json`` when the run has one (``title`` replaces the title).
    Raises FileNotFoundError when the run has no ``trainer_state.json``."""
    run_dir = Path(run_dir)
    settings_path = run_dir / REPORT_SETTINGS
    settings = json.loads(settings_path.read_text()) if settings_path.is_file() else {}
    return write_report(run_dir, title=title or settings.get("title") or "antisd training run",
                        extra=settings.get("extra"), down_ratio=settings.get("down_ratio"),
                        up_ratio=settings.get("up_ratio"))
