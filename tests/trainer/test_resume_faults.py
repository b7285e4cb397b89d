"""Crash safety of training checkpoints (antisd.trainer.checkpoints, AntiSDTrainer._save_checkpoint and resume):
a checkpoint folder is complete or absent, damaged state is refused, the data order survives a resume
after the first epoch; and, marked slow, a short run of benchmarks/fault_injection.py (SIGKILL, resume,
bit-equal comparison)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers.trainer_utils import get_last_checkpoint

from antisd.files import atomic_write_json
from antisd.trainer.checkpoints import (
    STATE_FILE,
    last_complete_checkpoint,
    publish,
    read_state,
    remove_leftovers,
    rotate_checkpoints,
    staging_dir,
)

from trainer_helpers import make_trainer, toy_rows

ROOT = Path(__file__).resolve().parents[2]


def _checkpoint(folder: Path, step: int, complete: bool = True) -> Path:
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"w" * 10)
    if complete:
        atomic_write_json(path / STATE_FILE, {"version": 1, "generation_index": step, "gate": None})
    return path


# ---------------------------------------------------------------------------------------- antisd.trainer.checkpoints


def test_publish_makes_a_staged_checkpoint_visible_in_one_rename(tmp_path):
    staged = staging_dir(tmp_path, "checkpoint-4") / "checkpoint-4"
    staged.mkdir(parents=True)
    (staged / "optimizer.pt").write_bytes(b"o")
    assert get_last_checkpoint(str(tmp_path)) is None  # transformers does not see a staged folder
    assert last_complete_checkpoint(tmp_path) is None
    old = _checkpoint(tmp_path, 4)  # a step redone after resuming from an older checkpoint
    publish(staged, tmp_path / "checkpoint-4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-4"]
    assert (tmp_path / "checkpoint-4" / "optimizer.pt").exists() and not (old / STATE_FILE).exists()


def test_leftovers_of_a_crash_are_removed_and_never_resumed_from(tmp_path):
    _checkpoint(tmp_path, 2)
    (staging_dir(tmp_path, "checkpoint-4") / "checkpoint-4").mkdir(parents=True)
    (tmp_path / ".tmp-delete-checkpoint-1").mkdir()
    (tmp_path / "notes").mkdir()
    assert get_last_checkpoint(str(tmp_path)).endswith("checkpoint-2")
    remove_leftovers(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2", "notes"]


def test_rotation_keeps_the_newest_and_retires_the_rest_by_rename(tmp_path):
    for step in (2, 4, 6, 8):
        _checkpoint(tmp_path, step)
    deleted = rotate_checkpoints(tmp_path, save_total_limit=2, best_model_checkpoint=str(tmp_path / "checkpoint-2"))
    assert [Path(p).name for p in deleted] == ["checkpoint-4", "checkpoint-6"]  # transformers' rule: 2 kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2", "checkpoint-8"]
    assert rotate_checkpoints(tmp_path, save_total_limit=None) == []


def test_last_complete_checkpoint_and_damaged_state(tmp_path):
    _checkpoint(tmp_path, 2)
    _checkpoint(tmp_path, 10)
    _checkpoint(tmp_path, 12, complete=False)  # written by an older antisd and cut short
    (tmp_path / "checkpoint-9.bak").mkdir()
    assert last_complete_checkpoint(tmp_path).endswith("checkpoint-10")  # 10 > 2 numerically
    assert read_state(tmp_path / "checkpoint-12") is None
    assert read_state(tmp_path / "checkpoint-10")["generation_index"] == 10
    (tmp_path / "checkpoint-10" / STATE_FILE).write_text('{"version": 1, "generation_in')
    with pytest.raises(ValueError, match=r"checkpoint-10/antisd_state.json is damaged .*earlier checkpoint"):
        read_state(tmp_path / "checkpoint-10")
    (tmp_path / "checkpoint-10" / STATE_FILE).write_text('{"version": 7}')
    with pytest.raises(ValueError, match="expected a JSON object with version 1 and generation_index"):
        read_state(tmp_path / "checkpoint-10")
    assert not list(tmp_path.glob("checkpoint-10/.*"))  # atomic_write_json left no temp file


# ---------------------------------------------------------------------------------------- the trainer


def test_a_crash_while_saving_leaves_no_checkpoint_folder(tiny_model_path, tmp_path, monkeypatch):
    tr = make_trainer(tiny_model_path, tmp_path, method="antisd", max_steps=4, save_strategy="steps", save_steps=2,
                      save_total_limit=1)
    real_save = torch.save

    def failing_save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        if str(f).endswith("optimizer.pt") and "checkpoint-4" in str(f):
            Path(f).write_bytes(Path(f).read_bytes()[:100])  # torn, then the process dies
            raise KeyboardInterrupt("killed while saving")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        tr.train()
    names = sorted(p.name for p in tmp_path.iterdir() if "checkpoint" in p.name)
    assert names == [".tmp-checkpoint-4", "checkpoint-2"]  # the limit of 1 did not remove the complete one
    assert get_last_checkpoint(str(tmp_path)).endswith("checkpoint-2")
    assert json.loads((tmp_path / "checkpoint-2" / STATE_FILE).read_text())["generation_index"] == 2
    monkeypatch.setattr(torch, "save", real_save)
    tr._save_checkpoint(tr.model, trial=None)  # the next save clears the leftover
    assert sorted(p.name for p in tmp_path.iterdir() if "checkpoint" in p.name) == ["checkpoint-4"]


def test_damaged_gate_state_is_refused_on_resume(tiny_model_path, tmp_path):
    make_trainer(tiny_model_path, tmp_path / "a", method="antisd", max_steps=2, save_strategy="steps",
                 save_steps=2).train()
    ckpt = tmp_path / "a" / "checkpoint-2"
    (ckpt / STATE_FILE).write_text("{")
    tr = make_trainer(tiny_model_path, tmp_path / "b", method="antisd", max_steps=3)
    with pytest.raises(ValueError, match="antisd_state.json is damaged"):
        tr.train(resume_from_checkpoint=str(ckpt))


def _prompts_per_generation(tr) -> list[list[str]]:
    seen = []
    calculate = tr._calculate_rewards

    def record(inputs, prompts, completions, completion_ids_list):
        seen.append(sorted({str(p) for p in prompts}))
        return calculate(inputs, prompts, completions, completion_ids_list)

    tr._calculate_rewards = record
    return seen


def test_resume_after_the_first_epoch_keeps_the_data_order(tiny_model_path, tmp_path):
    """4 problems, 2 per step: an epoch is 2 steps. Resumed at step 2 (an epoch boundary) or 3 (inside the
    second epoch), the run sees the second epoch's problems, not the first epoch's again."""
    common = dict(method="antisd", max_steps=4, save_strategy="steps", save_steps=1, learning_rate=1e-3)
    full = make_trainer(tiny_model_path, tmp_path / "full", rows=toy_rows(4), **common)
    expected = _prompts_per_generation(full)
    full.train()
    assert len(expected) == 4 and expected[2:] != expected[:2]  # the second epoch has another order
    for step in (2, 3):
        resumed = make_trainer(tiny_model_path, tmp_path / f"from{step}", rows=toy_rows(4), **common)
        got = _prompts_per_generation(resumed)
        resumed.train(resume_from_checkpoint=str(tmp_path / "full" / f"checkpoint-{step}"))
        assert got == expected[step:], step
        gate, want = resumed.gate.state_dict(), full.gate.state_dict()
        assert gate["n_updates"] == want["n_updates"] and gate["warmup_stats"] == pytest.approx(want["warmup_stats"])


# ---------------------------------------------------------------------------------------- SIGKILL, end to end


@pytest.mark.slow
def test_fault_injection_benchmark_short(tmp_path):
    """3 training and 2 eval trials of benchmarks/fault_injection.py: killed, resumed, bit-identical."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fault_injection.py"), "--train-trials", "3",
                          "--eval-trials", "2", "--workdir", str(tmp_path / "work"), "--json", str(tmp_path / "r.json")],
                         capture_output=True, text=True, env=env, timeout=1500)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads((tmp_path / "r.json").read_text())
    trials = report["train"]["trials"] + report["eval"]["trials"]
    assert len(trials) == 5 and all(not t["diffs"] for t in trials)
    assert all(t["kills"][0]["code"] != 0 for t in trials)  # each was killed at least once
