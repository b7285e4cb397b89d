"""Two CPU processes (accelerate, gloo) choose the same teacher contexts as one process,
with a GRPO group straddling the two ranks."""

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from launch_helpers import free_port, run_relaunching_on_gloo_abort

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "mp_contexts.py"


def _run(cmd, env, out):
    res = run_relaunching_on_gloo_abort(lambda: cmd, env, out)
    assert res.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{res.stderr[-4000:]}"


def _records(out_dir):
    lines = (Path(out_dir) / "rollouts" / "rollouts.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_processes_pick_the_same_contexts_as_one(tiny_model_path, tmp_path):
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    assert accelerate, "accelerate CLI not found next to the interpreter"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    # 12 rollouts = 3 groups of 4: with 6 per rank, group 1 straddles rank 0 and rank 1.
    _run([sys.executable, SCRIPT, tiny_model_path, tmp_path / "one", "12"], env, tmp_path / "one")
    # `accelerate launch --cpu` runs several processes only through mpirun; --multi_gpu uses
    # torchrun, and on a machine without CUDA accelerate then picks MULTI_CPU with gloo.
    _run([accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
          "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", free_port(),
          SCRIPT, tiny_model_path, tmp_path / "two", "6"], env, tmp_path / "two")
    one, two = _records(tmp_path / "one"), _records(tmp_path / "two")
    assert len(one) == len(two) == 12
    for a, b in zip(one, two):
        assert a["prompt"] == b["prompt"]
        assert a["completion_ids"] == b["completion_ids"]
        assert (a["source"], a["teacher_prompt"], a["correct"]) == (b["source"], b["teacher_prompt"], b["correct"])
        assert a["teacher_logps"] == pytest.approx(b["teacher_logps"], abs=1e-4)
    assert {r["source"] for r in one} >= {"sibling"}
