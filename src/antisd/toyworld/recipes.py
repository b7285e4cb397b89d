"""Recipes of the toy base policy: `ToyBaseConfig` (model, SFT, evaluation and data knobs) and the named ones.

A recipe's hash (`ToyBaseConfig.recipe_hash`, with ``RECIPE_VERSION``) names its build, so a changed recipe
rebuilds and an unchanged one is reused (`antisd.toyworld.base_policy`). Named recipes (`recipe`):
``default``; ``tiny`` (seconds, for tests); ``a0`` (base A0 of docs/benchmarks.md); ``search`` (the default
with the search privileged style; docs/toyworld.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import asdict, dataclass, field

from antisd.toyworld.tasks import ToyTaskConfig
from antisd.toyworld.traces import ToyTraceConfig

RECIPE_VERSION = 2  # bump when trace writing, model building or evaluation changes meaning


@dataclass(frozen=True)
class ToyBaseConfig:
    """Recipe of a toy base policy; its hash names the cache directory."""

    # model (Qwen3ForCausalLM)
    hidden_size: int = field(default=128, metadata={"help": "Hidden size of the Qwen3 model."})
    num_layers: int = field(default=2, metadata={"help": "Number of decoder layers."})
    num_heads: int = field(default=4, metadata={"help": "Attention heads (head_dim = hidden_size / num_heads)."})
    num_kv_heads: int = field(default=2, metadata={"help": "Key/value heads (grouped-query attention)."})
    intermediate_size: int = field(default=384, metadata={"help": "MLP width."})
    max_number: int = field(default=255, metadata={"help": "Numbers 0..max_number are single tokens."})
    # SFT (TRL SFTTrainer)
    sft_steps: int = field(default=2000, metadata={"help": "Optimizer steps of SFT (one fresh batch each). 2,000 since "
                                                   "the recipe at 1,000 swung with the SFT seed (held-out 0.20-0.42; "
                                                   "docs/toyworld.md)."})
    batch_size: int = field(default=64, metadata={"help": "Sequences per SFT step."})
    learning_rate: float = field(default=3e-3, metadata={"help": "Peak AdamW learning rate (cosine schedule)."})
    warmup_steps: int = field(default=100, metadata={"help": "Linear warm-up steps."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm."})
    privileged_frac: float = field(default=0.3, metadata={"help": "Share of SFT examples in the privileged format (reference in the prompt)."})
    seed: int = field(default=0, metadata={"help": "Seed of model init, SFT data and SFT order."})
    # evaluation of the built policy
    eval_samples: int = field(default=512, metadata={"help": "Held-out problems scored after the build (one sample each, temperature 1)."})
    max_new_tokens: int = field(default=96, metadata={"help": "Response budget at evaluation (and the RL default)."})
    # data
    task: ToyTaskConfig = field(default_factory=ToyTaskConfig, metadata={"help": "Task families and difficulty knobs."})
    traces: ToyTraceConfig = field(default_factory=ToyTraceConfig, metadata={"help": "Trace writing knobs (privileged_style decides the PMI split)."})

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError(f"hidden_size={self.hidden_size} must divide by num_heads={self.num_heads}, which must divide by num_kv_heads={self.num_kv_heads}")
        if self.task.max_number > self.max_number:
            raise ValueError(f"max_number={self.max_number} is below the task's largest number {self.task.max_number}; raise max_number or shrink the task ranges")
        if not 0.0 <= self.privileged_frac <= 1.0:
            raise ValueError(f"privileged_frac={self.privileged_frac} must be in [0, 1]")
        for name in ("sft_steps", "batch_size", "eval_samples", "max_new_tokens", "num_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if self.traces.max_completion_tokens > self.max_new_tokens:
            raise ValueError(f"traces.max_completion_tokens={self.traces.max_completion_tokens} exceeds max_new_tokens={self.max_new_tokens}: SFT traces would not fit the response budget")

    @classmethod
    def tiny(cls, **overrides) -> ToyBaseConfig:
        """A seconds-long recipe for tests: 1-layer hidden-32 model, 30 SFT steps, 32 eval samples."""
        base = dict(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64,
                    sft_steps=30, batch_size=16, warmup_steps=3, eval_samples=32, max_new_tokens=96)
        base.update(overrides)
        return cls(**base)

    def to_dict(self) -> dict:
        return {"recipe_version": RECIPE_VERSION, **asdict(self)}

    @property
    def recipe_hash(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, default=list)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    @property
    def name(self) -> str:
        return f"toybase-{self.traces.privileged_style}-{self.recipe_hash}"

    @classmethod
    def from_dict(cls, d: dict) -> ToyBaseConfig:
        d = {k: v for k, v in d.items() if k != "recipe_version"}
        task = ToyTaskConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.pop("task", {}).items()})
        traces = ToyTraceConfig(**d.pop("traces", {}))
        return cls(task=task, traces=traces, **d)


def _a0(**overrides) -> ToyBaseConfig:
    """Base A0 of docs/benchmarks.md: the default recipe of before (1,000 SFT steps), seed 0; ships."""
    return ToyBaseConfig(**{"sft_steps": 1000, **overrides})


def _search(**overrides) -> ToyBaseConfig:
    """The default recipe with the ``search`` privileged style (u ~ 0 on deliberation by design; docs/toyworld.md)."""
    cfg = ToyBaseConfig(**overrides)
    return dataclasses.replace(cfg, traces=dataclasses.replace(cfg.traces, privileged_style="search"))


RECIPES = {"default": ToyBaseConfig, "tiny": ToyBaseConfig.tiny, "a0": _a0, "search": _search}


def recipe(name: str = "default", *, privileged_style: str | None = None, **overrides) -> ToyBaseConfig:
    """A named recipe (``default``, ``tiny``, ``a0``, ``search``), optionally with another privileged style."""
    if name not in RECIPES:
        raise ValueError(f"recipe={name!r}; valid: {sorted(RECIPES)}")
    cfg = RECIPES[name](**overrides)
    if privileged_style is not None:
        cfg = dataclasses.replace(cfg, traces=dataclasses.replace(cfg.traces, privileged_style=privileged_style))
    return cfg
