"""Stand-ins for the wrappers training puts around a causal LM (imported by test_modeling and test_logprobs)."""

from __future__ import annotations

import torch


class Wrapper(torch.nn.Module):
    """Stands for a DDP-style wrapper: exposes `.module`, no backbone attribute."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


class FakePeft(torch.nn.Module):
    """Mimics a PeftModel: `base_model` is a tuner wrapping the whole LM (returns logits)."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.base_model = Wrapper(module)
        self.peft_config = {"default": None}

    def get_base_model(self) -> torch.nn.Module:
        return self.base_model.module

    def forward(self, *args, **kwargs):
        return self.base_model(*args, **kwargs)
