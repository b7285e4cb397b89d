"""Two CPU processes (accelerate, gloo) choose the same teacher contexts as one process, with a GRPO group
straddling the two ranks; and the exit every launched script ends with (launch_helpers.leave_process_group).
Each launch meets on a free port (launch_helpers.free_port)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from launch_helpers import free_port, launch_env

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "mp_contexts.py"


def _run(cmd) -> None:
    """Run ``cmd`` once (no relaunch: the launched scripts end with launch_helpers.leave_process_group)."""
    res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=launch_env(), timeout=600)
    assert res.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{res.stderr[-4000:]}"


def _records(out_dir):
    lines = (Path(out_dir) / "rollouts" / "rollouts.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_processes_pick_the_same_contexts_as_one(tiny_model_path, tmp_path):
    # 12 rollouts = 3 groups of 4: with 6 per rank, group 1 straddles rank 0 and rank 1.
    _run([sys.executable, SCRIPT, tiny_model_path, tmp_path / "one", "12"])
    # `accelerate launch --cpu` runs several processes only through mpirun; --multi_gpu uses
    # torchrun, and on a machine without CUDA accelerate then picks MULTI_CPU with gloo.
    _run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
          "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
          "--main_process_port", free_port(), SCRIPT, tiny_model_path, tmp_path / "two", "6"])
    one, two = _records(tmp_path / "one"), _records(tmp_path / "two")
    assert len(one) == len(two) == 12
    for a, b in zip(one, two):
        assert a["prompt"] == b["prompt"]
        assert a["completion_ids"] == b["completion_ids"]
        assert (a["source"], a["teacher_prompt"], a["correct"]) == (b["source"], b["teacher_prompt"], b["correct"])
        assert a["teacher_logps"] == pytest.approx(b["teacher_logps"], abs=1e-4)
    assert {r["source"] for r in one} >= {"sibling"}


@pytest.mark.multiprocess
def test_leaving_the_process_group_ends_gloos_workers_before_the_exit(tmp_path):
    """launch_helpers.leave_process_group, which every launched script ends with. A process that holds no group
    any more has no gloo worker left when it exits normally; one whose group outlives destroy_process_group (as
    DDP's, FSDP2's and ZeRO-3's do in the launched scripts) ends with status 0 without finalizing the
    interpreter, where its workers would race with the exit. The workers are seen by name before: the count is
    not blind."""
    script = SCRIPT.parent / "gloo_exit.py"
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", free_port(),
          script, tmp_path])
    held, dropped = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert held["workers_before"] >= 1 and dropped["workers_before"] >= 1, "gloo's workers were not found by name"
    assert "workers_after" not in held and not (tmp_path / "rank0.finalized").exists()
    assert dropped["workers_after"] == 0 and (tmp_path / "rank1.finalized").exists()
