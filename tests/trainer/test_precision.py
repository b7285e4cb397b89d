"""Precision of u = t - s (issue 16, item 2): the safe output layer by default for bf16 runs, the warning
when a run's configuration puts the noise above the stated line, and the measurement itself
(benchmarks/precision.py, figures in docs/benchmarks.md, "Precision")."""

from __future__ import annotations

import logging

import pytest

from antisd.trainer.config import AntiSDConfig

from bench_helpers import load_benchmark
from trainer_helpers import make_trainer



def _config(tmp_path, **kw) -> AntiSDConfig:
    return AntiSDConfig(output_dir=str(tmp_path), report_to=[], use_cpu=True, **kw)


@pytest.mark.parametrize(("method", "bf16", "expected"), [("antisd", True, True), ("sd", True, True),
                                                          ("grpo", True, False), ("antisd", False, False)])
def test_float32_head_is_the_default_for_bf16_teacher_runs(tmp_path, method, bf16, expected):
    assert _config(tmp_path, method=method, bf16=bf16).cast_lm_head_to_fp32 is expected


def test_an_explicit_choice_is_kept(tmp_path):
    assert _config(tmp_path, method="antisd", bf16=True, cast_lm_head_to_fp32=False).cast_lm_head_to_fp32 is False
    assert _config(tmp_path, method="grpo", bf16=False, cast_lm_head_to_fp32=True).cast_lm_head_to_fp32 is True


@pytest.mark.parametrize(("overrides", "warns"), [
    (dict(bf16=True, fast_logprobs="false", cast_lm_head_to_fp32=False), True),  # TRL's head in bf16
    (dict(bf16=True, fast_logprobs="false"), False),  # the default: float32 head
    (dict(bf16=True, fast_logprobs="true", cast_lm_head_to_fp32=False), False),  # antisd.lm.logprobs: float32 head
    (dict(bf16=False, fast_logprobs="false", cast_lm_head_to_fp32=False), False),  # float32 throughout
    (dict(bf16=True, fast_logprobs="false", cast_lm_head_to_fp32=False, method="grpo"), False),  # no u at all
])
def test_warning_when_u_comes_from_a_half_precision_head(tiny_model_path, tmp_path, caplog, overrides, warns):
    kw = {"method": "antisd", "use_cpu": True, **overrides}
    with caplog.at_level(logging.WARNING, logger="antisd.trainer.core"):
        make_trainer(tiny_model_path, tmp_path, **kw)
    said = any("output layer" in r.message or "fused LM head in bf16" in r.message for r in caplog.records)
    assert said is warns


def _bench():
    return load_benchmark("precision")


def test_token_stats():
    import torch

    s = _bench().token_stats(torch.tensor([-4.0, 1.0, 2.0, 3.0]))
    assert s["mean"] == pytest.approx(2.5) and s["max"] == 4.0 and s["median"] == pytest.approx(2.5)
    assert all(v != v for v in _bench().token_stats(torch.zeros(0)).values())  # NaN when empty


@pytest.mark.slow
def test_the_float32_shadow_measures_nothing_in_float32_and_something_in_bf16():
    """The measurement compares each u the trainer computed with the same u in float32 on the same rows: in
    float32 it must find (almost) nothing, with a bf16 head it must find the rounding."""
    bench = _bench()
    args = bench.parse_args(["--steps", "1", "--problems", "1", "--threads", "0"])
    exact = bench.run(bench.SETTINGS["fp32"], args, own_prompt=False)
    half = bench.run(bench.SETTINGS["amp-trl"], args, own_prompt=False)
    assert exact["u"].numel() > 0 and half["u"].numel() > 0
    assert float((exact["u"] - exact["u_exact"]).abs().max()) < 1e-5
    assert float((half["u"] - half["u_exact"]).abs().mean()) > 1e-4
    own = bench.run(bench.SETTINGS["fp32"], args, own_prompt=True)
    assert float(own["u"].abs().max()) < 1e-5  # true u = 0: the teacher given the student's own prompt
