"""AntiSD under DeepSpeed ZeRO-3 in 2 CPU processes equals a 1-process run, and resumes exactly
(docs/scaleout.md).

DeepSpeed is not a dependency of antisd: these tests run where the ``deepspeed`` extra is installed
(``DS_BUILD_OPS=0 pip install -e ".[deepspeed]"``, pinned to 0.19.8, whose CPU accelerator needs nothing
else; .ci/run installs it) and are skipped elsewhere. The first run in an environment also compiles
DeepSpeed's shared-memory comm op (about 2 minutes here; cached in ~/.cache/torch_extensions).
accelerate 1.15 selects DeepSpeed when ``use_cpu`` is unset, so the script is launched with
``--no-use-cpu`` (``DS_ACCELERATOR=cpu`` unless set). The accelerate config is the shipped recipe
``recipes/accelerate/zero3_8gpu.yaml`` with ``--num_processes 2 --mixed_precision no``. Tolerances and
what is compared: as in tests/trainer/test_fsdp.py (measured here: weights within 2e-6 of one process,
resume bit-identical). Under ZeRO-3 the output layer is partitioned outside the forward, so the log-probs
come from TRL's fused head (``antisd.trainer.kernels.head_partitioned``); before that fallback,
``antisd.lm.logprobs`` read a 0-element weight and the run stopped.
"""

from __future__ import annotations

import os
import shutil

import pytest

pytest.importorskip("deepspeed", reason='DeepSpeed is not installed (pip install -e ".[deepspeed]")')

from antisd.cli.main import RECIPES_DIR  # noqa: E402

from test_fsdp import SCRIPT, assert_same_run, run_launched, run_one  # noqa: E402

RECIPE = RECIPES_DIR / "accelerate" / "zero3_8gpu.yaml"
pytestmark = [pytest.mark.slow, pytest.mark.multiprocess]


def _zero3(model, out, *extra):
    result = run_launched(out, ["--config_file", str(RECIPE), "--num_processes", "2", "--mixed_precision", "no",
                                str(SCRIPT), str(model), str(out), "--no-use-cpu", *extra],
                          DS_ACCELERATOR=os.environ.get("DS_ACCELERATOR", "cpu"))
    assert result["distributed_type"] == "DistributedType.DEEPSPEED"
    return result


def test_zero3_two_processes_equal_one_and_resume_exactly(tiny_model_path, tmp_path):
    one = run_one(tiny_model_path, tmp_path / "one")
    zero3 = _zero3(tiny_model_path, tmp_path / "zero3", "--save-every", "2")
    assert_same_run(one, zero3, tmp_path / "one", tmp_path / "zero3")
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copytree(tmp_path / "zero3" / "checkpoint-2", resumed_dir / "checkpoint-2")
    resumed = _zero3(tiny_model_path, resumed_dir, "--save-every", "2", "--resume")
    assert_same_run(zero3, resumed, tmp_path / "zero3", resumed_dir)
