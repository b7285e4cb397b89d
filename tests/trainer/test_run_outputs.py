"""What a training run writes says what ran, as a user sees it (the console script in a subprocess): the thread
setting and a progress line with the time left per logging step in the log, a model card of our own, a report titled
by what was trained, resume naming its checkpoint without a tied-weights warning, the toy held-out evaluation only
on toy runs, and no None-valued metric (a TensorBoard warning at every log) on a code run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ANTISD = Path(sys.executable).with_name("antisd")
SMALL = ["--max_steps", "2", "--per_device_train_batch_size", "16", "--num_generations", "8",
         "--max_completion_length", "32", "--logging_steps", "1", "--save_steps", "1"]


def antisd(args, cwd, **env):
    done = subprocess.run([str(ANTISD), *args], capture_output=True, text=True, cwd=cwd, timeout=900,
                          env={**os.environ, **env})
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


def log_history(out: Path) -> list[dict]:
    return json.loads((out / "trainer_state.json").read_text())["log_history"]


@pytest.mark.slow
def test_toy_run_logs_progress_writes_its_model_card_and_resumes_quietly(tmp_path):
    out = tmp_path / "toy"
    err = antisd(["train", *SMALL, "--output_dir", str(out), "--report_to", "none"], tmp_path)
    assert len(re.findall(r"INFO antisd\.cli\.threads: CPU threads: \d+ \(of \d+ CPUs", err)) == 1
    progress = re.findall(r"INFO antisd\.trainer\.progress: (step \d+/2 .*)", err)
    assert len(progress) == 2  # one per logging step
    assert re.fullmatch(r"step 1/2 \(50%\): [\d.]+ steps/s, elapsed \d:\d\d:\d\d, about \d:\d\d:\d\d left; "
                        r"reward [\d.]+, accuracy [\d.]+", progress[0]), progress[0]
    assert progress[1].startswith("step 2/2 (100%): ") and ", done; reward " in progress[1]
    assert "Warning" not in err  # library warnings a user cannot act on (one came back after every checkpoint)
    assert "Scoring the final policy on held-out toy problems" in err  # a toy-world run
    assert (out / "report.md").read_text().startswith("# antisd train: antisd on the toy world\n")
    card = (out / "README.md").read_text()
    assert "[None]" not in card and "trained with GRPO" not in card
    assert "A fine-tuned version of `toyworld` (loaded from `" in card and "trained with antisd (antisd); finished." in card
    assert ("| method | AntiSD (anti-self-distillation): token signal antisd, lambda_max 0.5, composition additive, "
            "gate teacher_entropy (warm-up 5 steps, off below 0.93 x H_warm, on again at 1.0 x H_warm); guards: token "
            "term on correct rollouts only (Eq. 12);") in card
    assert "| data | toyworld (20000 problems) |" in card and "| reward | math (" in card
    assert "| steps | 2 of 2 (2 problems x 8 rollouts per step; learning rate 0.0001, constant; seed 0) |" in card
    reward = [h for h in log_history(out) if "loss" in h][-1]["reward"]
    assert f"| reward, step 2 | {reward:.4g} |" in card
    assert re.search(r"\| held-out accuracy, final policy \| [\d.]+ \+- [\d.]+ \(n=\d+\) \|", card)
    assert "TRL 1.16.0" in card

    err = antisd(["train", *SMALL, "--max_steps", "3", "--output_dir", str(out), "--report_to", "none",
                  "--resume_from_checkpoint", "true"], tmp_path)
    assert f"resuming from {out / 'checkpoint-2'}" in err and "resuming from True" not in err
    assert "missing keys" not in err and "lm_head.weight" not in err  # tied embeddings: nothing is missing
    assert re.findall(r"INFO antisd\.trainer\.progress: step (\d+)/3", err) == ["3"]  # the resumed run's one step
    assert "| steps | 3 of 3 " in (out / "README.md").read_text()


@pytest.mark.slow
def test_code_run_on_the_toy_model_logs_no_none_and_is_not_a_toy_world_run(tmp_path):
    out = tmp_path / "code"
    err = antisd(["train", "--dataset_name", "mbpp_train", *SMALL, "--per_device_train_batch_size", "8",
                  "--num_generations", "4", "--max_completion_length", "12", "--max_samples", "4", "--code_workers", "0",
                  "--output_dir", str(out), "--report_to", "tensorboard"], tmp_path,
                 ANTISD_CODE_CACHE=str(tmp_path / "code_cache"))
    assert "Trainer is attempting to log a value of" not in err
    steps = [h for h in log_history(out) if "loss" in h]
    assert len(steps) == 2 and not [(h["step"], k) for h in steps for k, v in h.items() if v is None]
    assert "held-out toy problems" not in err  # a code run: no toy maths evaluation
    title = (out / "report.md").read_text().splitlines()[0]
    assert title == "# antisd train: antisd on mbpp_train (code reward), from toyworld"
    card = (out / "README.md").read_text()
    assert "| data | mbpp_train (4 problems) |" in card and "| reward | code (auto: mbpp_train" in card
    assert "held-out" not in card and "toy world" not in card
