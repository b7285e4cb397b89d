"""benchmarks/gpu_check.py cannot rot: its dry run (CPU, toy sizes) runs every check's code (docs/benchmarks.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


@pytest.mark.slow
def test_gpu_check_dry_run_passes_on_a_cpu(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    res = subprocess.run([sys.executable, str(SCRIPT), "--dry-run"], capture_output=True, text=True, env=env,
                         timeout=600, cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    lines = res.stdout.splitlines()
    for check in ("cuda-train", "triton-head", "bf16-noise"):
        assert any(x.startswith(f"PASS {check} (DRY, CPU)") for x in lines), check
    assert any(x.startswith("PASS step-cost") for x in lines)  # the teacher-pass memory verdict
    assert any(x.startswith(("INFO step-cost", "PASS step-cost")) and "SDPO" in x for x in lines)
    assert any(x.startswith("SKIP vllm-colocate") for x in lines)
    assert not any(x.startswith("FAIL") for x in lines)


def test_without_cuda_the_real_run_refuses():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    res = subprocess.run([sys.executable, str(SCRIPT), "--checks", "cuda-train"], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 1 and "FAIL gpu: no CUDA device" in res.stdout
