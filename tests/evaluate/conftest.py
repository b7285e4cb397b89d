"""Fixtures of the antisd.evaluate tests: one torch thread, a toy benchmark file, a baseline run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from antisd.evaluate import run_eval

from eval_helpers import toy_config, write_jsonl


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny matmuls on a shared 2-core machine: one thread is ~30x faster than two contending."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("toy") / "toy.jsonl"
    return write_jsonl(path, [{"uid": f"t{i}", "question": f"What is {i} + 1?", "final": str(i + 1)} for i in range(4)])


@pytest.fixture(scope="module")
def baseline(tiny_model_path, toy_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("baseline")
    return out, run_eval(toy_config(tiny_model_path, toy_data, out))
