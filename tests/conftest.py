"""Shared pytest fixtures. CPU only, nothing downloaded (HF_HUB_OFFLINE=1)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


# ---- tiny local model (antisd.lm.tiny) --------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen3 (hidden 64, 2 layers, ~512-token BPE vocab) saved once per session.

    Load it by path (AutoModelForCausalLM/AutoTokenizer.from_pretrained), as TRL needs.
    """
    from antisd.lm.tiny import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny_qwen3"), seed=0)


@pytest.fixture
def tiny_model(tiny_model_path: Path):
    """A fresh float32 copy of the tiny model, in eval mode (tests may train it)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_path).eval()


@pytest.fixture
def tiny_tokenizer(tiny_model_path: Path):
    """The tiny model's tokenizer (eos <|im_end|>, pad <|endoftext|>, ChatML template)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_path)


# ---- code execution (antisd.rewards.code): one executor per session, a private expected-output cache ----


@pytest.fixture(scope="session")
def executor():
    """A LocalExecutor: bwrap where it works here, else the logged fallback (tests needing isolation skip then)."""
    from antisd.rewards.code.sandbox import LocalExecutor

    return LocalExecutor("auto")


@pytest.fixture(scope="session")
def harness_config(tmp_path_factory: pytest.TempPathFactory):
    from antisd.rewards.code.harness import HarnessConfig

    return HarnessConfig(cache_dir=str(tmp_path_factory.mktemp("code_cache")))
