"""AntiSD under DeepSpeed ZeRO-3 in 2 CPU processes equals a 1-process run, and resumes exactly (issue 16, item 1).

DeepSpeed is not a dependency of antisd: these tests run where it is installed (``pip install
deepspeed``; measured with 0.19.8, whose CPU accelerator needs nothing else) and are skipped
elsewhere. accelerate 1.15 selects DeepSpeed when ``use_cpu`` is unset, so the script is launched
with ``--no-use-cpu`` (``DS_ACCELERATOR=cpu``). The accelerate config is the shipped recipe
``recipes/accelerate/zero3_8gpu.yaml`` with ``--num_processes 2 --mixed_precision no``. Tolerances
and what is compared: as in tests/trainer/test_fsdp.py (measured here: weights within 2e-6 of one process,
resume bit-identical). Under ZeRO-3 the output layer is partitioned outside the forward, so the
log-probs come from TRL's fused head (``AntiSDTrainer._head_partitioned``); before that fallback,
``antisd.lm.logprobs`` read a 0-element weight and the run stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from launch_helpers import free_port

pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (pip install deepspeed)")

from antisd.cli.main import RECIPES_DIR  # noqa: E402

from test_fsdp import SCRIPT, _one, _same_run  # noqa: E402

RECIPE = RECIPES_DIR / "accelerate" / "zero3_8gpu.yaml"
pytestmark = [pytest.mark.slow, pytest.mark.multiprocess]


def _zero3(model, out, *extra):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.setdefault("DS_ACCELERATOR", "cpu")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(RECIPE), "--num_processes", "2",
           "--mixed_precision", "no", "--main_process_port", free_port(), str(SCRIPT), str(model), str(out),
           "--no-use-cpu", *extra]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    result = json.loads((Path(out) / "result.json").read_text())
    assert (result["world_size"], result["distributed_type"]) == (2, "DistributedType.DEEPSPEED")
    return result


def test_zero3_two_processes_equal_one_and_resume_exactly(tiny_model_path, tmp_path):
    one = _one(tiny_model_path, tmp_path / "one")
    zero3 = _zero3(tiny_model_path, tmp_path / "zero3", "--save-every", "2")
    _same_run(one, zero3, tmp_path / "one", tmp_path / "zero3")
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copytree(tmp_path / "zero3" / "checkpoint-2", resumed_dir / "checkpoint-2")
    resumed = _zero3(tiny_model_path, resumed_dir, "--save-every", "2", "--resume")
    _same_run(zero3, resumed, tmp_path / "zero3", resumed_dir)
