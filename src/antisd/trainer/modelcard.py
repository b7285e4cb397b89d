"""The model card (``README.md``) of a training run's folder: what was trained, from what, how, on what.

TRL's GRPOTrainer writes a generic card at every checkpoint ("fine-tuned version of [None] ...
trained with GRPO": it knows neither a local base model nor the method). ``AntiSDTrainer``'s
``create_model_card`` writes this one instead, at every checkpoint and (``antisd train``) once more
after training with the final figures:

- the base model (the name the run was given and the folder it was loaded from),
- the method with its settings (GRPO; SD or AntiSD with the token signal, lambda, gate, composition
  and guards),
- the data and the reward,
- the steps trained of the steps planned, the batch and the learning rate,
- the figures of the last logged step (reward, accuracy, response length, gate) and any extra rows
  the caller adds (the toy world's held-out accuracy),
- the versions of antisd, TRL, transformers and torch.

The YAML header keeps the Hub's fields (``base_model`` only for a Hub name, ``library_name``, ``tags``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

FIGURES = (("reward", "reward"), ("accuracy", "accuracy"), ("completions/mean_length", "mean response length (tokens)"),
           ("gate/lambda", "lambda (token-term weight)"), ("teacher/entropy_mean", "teacher entropy (nats)"))


def method_line(args: Any) -> str:
    """The method and its settings, in words (``args``: an ``AntiSDConfig``)."""
    common = (f"{args.num_generations} rollouts per problem, loss {args.loss_type}, KL beta {args.beta}, "
              f"temperature {args.temperature}")
    if args.method == "grpo":
        return f"GRPO (TRL's GRPOTrainer, unchanged): {common}"
    name = {"antisd": "AntiSD (anti-self-distillation)", "sd": "SD (self-distillation)"}.get(args.method, args.method)
    gate = args.gate
    if gate != "none":
        gate = (f"{gate} (warm-up {args.gate_warmup_steps} steps, off below {args.gate_down_ratio} x H_warm, on again "
                f"at {args.gate_up_ratio} x H_warm)")
    return (f"{name}: token signal {args.token_signal}, lambda_max {args.lambda_max}, composition {args.composition}, "
            f"gate {gate}; guards: {args.guards}; {common}")


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def last_figures(log_history: list[dict]) -> tuple[int | None, dict[str, float]]:
    """(step, {label: value}) of the last logged training step (``FIGURES`` present there and finite)."""
    rows = [h for h in log_history if "loss" in h and "step" in h]
    if not rows:
        return None, {}
    last = rows[-1]
    values = {label: float(last[key]) for key, label in FIGURES
              if isinstance(last.get(key), (int, float)) and math.isfinite(last[key])}
    return int(last["step"]), values


def model_card(*, run_name: str, base_model: str, base_path: str | None, args: Any, step: int, max_steps: int,
               log_history: list[dict], data: str | None = None, reward: str | None = None,
               extra: dict[str, Any] | None = None) -> str:
    """The card's markdown (see the module docstring)."""
    hub_name = base_model if base_model and not os.path.exists(base_model) and "/" in base_model else None
    tags = ["antisd", "trl", args.method, "reinforcement-learning"]
    header = ["---"]
    if hub_name:
        header.append(f"base_model: {hub_name}")
    header += ["library_name: transformers", "tags:"] + [f"- {t}" for t in dict.fromkeys(tags)] + ["---", ""]
    loaded = f" (loaded from `{base_path}`)" if base_path and base_path != base_model else ""
    status = "finished" if max_steps > 0 and step >= max_steps else f"step {step} of {max_steps}"
    lines = [f"# {run_name}", "",
             f"A fine-tuned version of `{base_model}`{loaded}, trained with antisd ({args.method}); {status}.", "",
             "| | |", "|---|---|",
             f"| base model | `{base_model}`{loaded} |",
             f"| method | {method_line(args)} |"]
    if data:
        lines.append(f"| data | {data} |")
    if reward:
        lines.append(f"| reward | {reward} |")
    problems = args.generation_batch_size // max(1, args.num_generations)
    schedule = getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)  # an enum in TrainingArguments
    lines.append(f"| steps | {step} of {max_steps} ({problems} problems x {args.num_generations} rollouts per step; "
                 f"learning rate {args.learning_rate:g}, {schedule}; seed {args.seed}) |")
    logged_step, values = last_figures(log_history)
    for label, value in values.items():
        lines.append(f"| {label}, step {logged_step} | {value:.4g} |")
    for key, value in (extra or {}).items():
        lines.append(f"| {key} | {value} |")
    lines += ["", "The run's settings are in `antisd_run.yaml` (rerun with `antisd train --config antisd_run.yaml`) "
                  "when it was started by `antisd train`; its curves in `report.md`.", "",
              f"Framework versions: antisd {_version('antisd')}, TRL {_version('trl')}, transformers "
              f"{_version('transformers')}, torch {_version('torch')}.", ""]
    return "\n".join(header + lines)


def write_model_card(trainer: Any, extra: dict[str, Any] | None = None) -> Path:
    """Write ``<output_dir>/README.md`` for `trainer` (an ``AntiSDTrainer``); its ``model_card_info`` (set by
    ``antisd train``: the base model's name, the data, the reward) fills the rows it knows."""
    info = dict(getattr(trainer, "model_card_info", None) or {})
    config = getattr(getattr(trainer, "model", None), "config", None)
    base_path = getattr(config, "_name_or_path", None) or None
    base_model = info.get("base_model") or base_path or "unknown"
    args = trainer.args
    text = model_card(run_name=Path(args.output_dir).name, base_model=str(base_model),
                      base_path=str(base_path) if base_path else None, args=args, step=trainer.state.global_step,
                      max_steps=trainer.state.max_steps or args.max_steps, log_history=trainer.state.log_history,
                      data=info.get("data"), reward=info.get("reward"), extra=extra)
    path = Path(args.output_dir) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
