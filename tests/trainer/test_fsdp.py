"""AntiSD under FSDP2 in 2 CPU processes over gloo equals a 1-process run (docs/scaleout.md).

The accelerate config is the shipped recipe ``recipes/accelerate/fsdp2_8gpu.yaml`` with two
overrides (``--num_processes 2 --mixed_precision no``). accelerate 1.15 selects FSDP only on an
accelerator device; the launched script (``scripts/sharded_train.py``) keeps its FSDP plugin on a
CPU and patches nothing else (docs/scaleout.md). What is compared, and the tolerances:

- per-step loss, grad norm, reward and teacher entropy: relative 1e-5 (float32 reductions in
  another order; measured: grad norms differ by 1e-6 relative); the PMI and signal means:
  absolute 1e-5 (u is a difference of two log-probs near -6, float32 noise ~1e-6; measured 1.5e-7);
- the gate trace (lambda per step): exactly;
- the final weights (gathered): absolute 1e-4 after 3 AdamW steps at lr 1e-3 (measured 4e-6;
  the weights move by about 3e-3, 30 times the tolerance);
- resume from checkpoint-2 (sharded checkpoint) to step 3: the same tolerances against the
  uninterrupted run (measured: bit-identical).

A problem without a solution gives one process rollouts with no privileged context: its
teacher pass then has fewer forwards than the other's, which hangs a sharded run unless the
trainer matches them (``TeacherPass.match_sharded_forwards``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from antisd.cli.main import RECIPES_DIR
from launch_helpers import free_port, launch_env

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "sharded_train.py"
RECIPE = RECIPES_DIR / "accelerate" / "fsdp2_8gpu.yaml"
pytestmark = [pytest.mark.slow, pytest.mark.multiprocess]


def run_one(model, out, *extra):
    """Run the script in one process (no launcher); its result.json."""
    cmd = [sys.executable, str(SCRIPT), str(model), str(out), *extra]
    res = subprocess.run(cmd, capture_output=True, text=True, env=launch_env(), timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    result = json.loads((Path(out) / "result.json").read_text())
    assert result["master_port"] is None  # one process, no rendezvous
    return result


def run_launched(out, argv: list[str], **env: str) -> dict:
    """Run ``accelerate launch ARGV`` once (no relaunch: the script ends with launch_helpers.leave_process_group),
    on a free port; its result.json, whose processes met on that port."""
    port = free_port()
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--main_process_port", port, *argv]
    res = subprocess.run(cmd, capture_output=True, text=True, env=launch_env(**env), timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    result = json.loads((Path(out) / "result.json").read_text())
    assert (result["world_size"], result["master_port"]) == (2, port)
    return result


def _fsdp(model, out, *extra):
    result = run_launched(out, ["--config_file", str(RECIPE), "--num_processes", "2", "--mixed_precision", "no",
                                str(SCRIPT), str(model), str(out), *extra])
    assert (result["distributed_type"], result["fsdp_version"]) == ("DistributedType.FSDP", 2)
    return result


def assert_same_run(a: dict, b: dict, out_a: Path, out_b: Path) -> None:
    assert [h["step"] for h in a["log"]] == [h["step"] for h in b["log"]]
    for ha, hb in zip(a["log"], b["log"]):
        assert ha["gate/lambda"] == hb["gate/lambda"], f"gate trace differs at step {ha['step']}"
        for key in ("loss", "grad_norm", "reward", "teacher/entropy_mean", "pmi/mean", "signal/mean"):
            absolute = 1e-5 if key in ("pmi/mean", "signal/mean") else 1e-7
            assert hb[key] == pytest.approx(ha[key], rel=1e-5, abs=absolute), f"{key} at step {ha['step']}"
    wa, wb = torch.load(out_a / "weights.pt"), torch.load(out_b / "weights.pt")
    assert sorted(wa) == sorted(wb)
    for name in wa:
        torch.testing.assert_close(wb[name], wa[name], atol=1e-4, rtol=0, msg=f"weight {name}")


@pytest.fixture(scope="module")
def one_process(tiny_model_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("one")
    return run_one(tiny_model_path, out), out


def test_fsdp2_two_processes_equal_one_and_resume_exactly(tiny_model_path, one_process, tmp_path):
    one, one_dir = one_process
    assert [h["gate/lambda"] for h in one["log"]] == [0.0, 0.5, 0.5]  # warm-up, then on
    assert 0 < one["log"][0]["context/none_frac"] < 1  # rows without a context on one process only
    fsdp = _fsdp(tiny_model_path, tmp_path / "fsdp", "--save-every", "2")
    assert_same_run(one, fsdp, one_dir, tmp_path / "fsdp")

    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copytree(tmp_path / "fsdp" / "checkpoint-2", resumed_dir / "checkpoint-2")
    resumed = _fsdp(tiny_model_path, resumed_dir, "--save-every", "2", "--resume")
    assert_same_run(fsdp, resumed, tmp_path / "fsdp", resumed_dir)


def test_training_moves_the_weights_well_beyond_the_tolerance(tiny_model_path, one_process):
    """The 1e-4 weight tolerance above is meaningful: 3 steps move the weights by far more."""
    from transformers import AutoModelForCausalLM

    _, one_dir = one_process
    trained = torch.load(one_dir / "weights.pt")
    initial = AutoModelForCausalLM.from_pretrained(tiny_model_path).state_dict()
    moved = max(float((trained[k] - initial[k].float()).abs().max()) for k in trained if k in initial)
    assert moved > 1e-3


def test_fsdp2_teacher_pass_gathers_like_the_loss(tiny_model_path, tmp_path):
    """Teacher prompt = the student's own prompt, so true u = 0: the teacher pass (no grad, sharded weights
    gathered by FSDP's hooks) against the loss's own forward (with grad) under FSDP2. Real greedy generation
    with process 0 stopping after 3 tokens and process 1 after 12 (transformers keeps the processes' forwards
    in step for an FSDP-managed model), and rows without a context on one process."""
    res = _fsdp(tiny_model_path, tmp_path / "self", "--self-teacher", "--generation", "greedy",
                "--ragged-generation", "--steps", "2")
    assert sum(res["token_term_calls"]) >= 2  # the processes that had context rows, one call per step
    assert res["max_abs_u"] < 1e-4
    assert all(0 < h["context/none_frac"] < 1 for h in res["log"])
