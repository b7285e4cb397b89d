"""Builders shared by the antisd.evaluate tests: results records, toy benchmark configs, a generate
call counter and a stand-in vllm module."""

from __future__ import annotations

import importlib.machinery
import json
import sys
import types
from pathlib import Path

import pytest

import antisd.evaluate as ev
from antisd.evaluate import EvalConfig

from paths import SHARED_DATA  # noqa: E402

SHARED = SHARED_DATA
needs_shared = pytest.mark.skipif(not (SHARED / "aime2024.jsonl.gz").is_file(), reason="no packaged data")


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def record(model, bench, pid, i, correct, *, k=4, outcome=None, completion="x", tokens=10, truncated=False,
           gold_check="ok", answer="1"):
    return {"model": model, "benchmark": bench, "problem_id": pid, "sample_index": i, "n_samples": k,
            "answer": answer, "completion": completion, "extracted_answer": None, "extraction": "boxed",
            "outcome": outcome or ("correct" if correct else "wrong"), "correct": correct, "n_tokens": tokens,
            "truncated": truncated, "gold_check": gold_check}


def hand_built(path: Path) -> Path:
    """m on b1 (k=4): p1 1/4 correct, p2 3/4 correct, p3 incomplete; m on b2 (k=2): p1 2/2, p2 0/2."""
    rows = [record("m", "b1", "p1", i, i == 0, tokens=10 * (i + 1), truncated=i == 3) for i in range(4)]
    rows += [record("m", "b1", "p2", i, i > 0) for i in range(4)]
    rows += [record("m", "b1", "p3", 0, True)]  # an unfinished problem: excluded and counted
    rows += [record("m", "b2", "p1", i, True, k=2) for i in range(2)]
    rows += [record("m", "b2", "p2", 0, False, k=2, completion="  ", outcome="no_answer", gold_check="gold_unparseable"),
             record("m", "b2", "p2", 1, False, k=2, outcome="gold_unparseable", gold_check="gold_unparseable")]
    return write_jsonl(path, rows)


def toy_config(model: Path, data: Path, out: Path, **overrides) -> EvalConfig:
    spec = "?problem=question&answer=final&id=uid&solution="
    kwargs = {"models": [str(model)], "benchmarks": [f"toy={data}{spec}&k=2", f"toy3={data}{spec}&k=3"],
              "limit": 2, "batch_size": 2, "max_new_tokens": 6, "temperature": 1.0, "top_p": 1.0,
              "output_dir": str(out), "show_progress": False, "plot": False}
    return EvalConfig(**{**kwargs, **overrides})


class CountCalls:
    """Wraps TransformersGenerator.generate; raises `crash` on call number `crash_at`."""

    def __init__(self, monkeypatch, crash_at: int | None = None):
        self.calls, self.crash_at, self.orig = 0, crash_at, ev.TransformersGenerator.generate
        monkeypatch.setattr(ev.TransformersGenerator, "generate", self)

    def __get__(self, obj, objtype=None):
        return lambda *args: self(obj, *args)

    def __call__(self, gen, prompts, n, seeds):
        self.calls += 1
        if self.calls == self.crash_at:
            raise RuntimeError("simulated crash")
        return self.orig(gen, prompts, n, seeds)


def fake_vllm(monkeypatch) -> list:
    """A stand-in vllm module: sample i of each request is \\boxed{2}, \\boxed{3} or "" (truncated)."""
    made: list = []

    class SamplingParams:
        def __init__(self, **kwargs):
            self.__dict__.update(kwargs)
            made.append(kwargs)

    class LLM:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

        def generate(self, prompts, sampling_params, use_tqdm):
            assert all("prompt_token_ids" in p for p in prompts) and len(prompts) == len(sampling_params)
            texts = [("\\boxed{2}", "stop"), ("\\boxed{3}", "stop"), ("", "length")]
            return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text=t, token_ids=[1] * (i + 1), finish_reason=r)
                                                   for i, (t, r) in zip(range(sp.n), texts)]) for sp in sampling_params]

    module = types.ModuleType("vllm")
    module.__spec__ = importlib.machinery.ModuleSpec("vllm", None)
    module.LLM, module.SamplingParams = LLM, SamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    return made
