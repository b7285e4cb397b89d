"""Fixtures of the toy-world tests: one torch thread on a busy machine, one tiny base policy per session."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="module")
def _threads():
    """One torch thread on a busy machine (two threads per process there are ~5x slower)."""
    import torch

    from antisd.toyworld.base_policy import pick_num_threads

    before = torch.get_num_threads()
    torch.set_num_threads(pick_num_threads())
    yield
    torch.set_num_threads(before)


TINY = dict(sft_steps=12, eval_samples=16, batch_size=16)


@pytest.fixture(scope="session")
def tiny_policy(tmp_path_factory):
    """(config, cache directory, path) of a tiny toy base policy built once per session."""
    from antisd.toyworld.base_policy import ToyBaseConfig, ensure_base_policy

    cache = tmp_path_factory.mktemp("toycache")
    cfg = ToyBaseConfig.tiny(**TINY)
    return cfg, cache, ensure_base_policy(cfg, cache)
