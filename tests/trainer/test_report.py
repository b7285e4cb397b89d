"""antisd.trainer.report: history from the run folder or its newest checkpoint, the summary, the plot files,
report.json for `antisd report`, and runs with fewer steps than planned."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from antisd.trainer.report import load_history, regenerate_report, summarize, write_report

PNG = b"\x89PNG\r\n\x1a\n"


def state(steps: list[int], *, max_steps: int | None = None, **metrics: list[float]) -> dict:
    """A trainer_state.json with one training log per step (loss plus `metrics`) and an eval entry."""
    logs = [{"step": s, "loss": 0.5, **{k.replace("__", "/"): v[i] for k, v in metrics.items()}}
            for i, s in enumerate(steps)]
    logs.append({"step": steps[-1] if steps else 0, "train_runtime": 1.0})  # no loss: not a training log
    return {"global_step": steps[-1] if steps else 0, "max_steps": max_steps or (steps[-1] if steps else 0),
            "log_history": logs}


def write_state(folder: Path, data: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "trainer_state.json").write_text(json.dumps(data))
    return folder


def test_history_prefers_the_run_folder_then_the_newest_checkpoint(tmp_path):
    run = tmp_path / "run"
    write_state(run / "checkpoint-2", state([1, 2]))
    write_state(run / "checkpoint-10", state([1, 2, 5, 10]))
    write_state(run / "checkpoint-9", state([1, 9]))
    assert [h["step"] for h in load_history(run)] == [1, 2, 5, 10]  # 10 > 9 > 2 as numbers, not strings
    write_state(run, state([1, 2, 3]))
    assert [h["step"] for h in load_history(run)] == [1, 2, 3]
    with pytest.raises(FileNotFoundError, match="no trainer_state.json"):
        load_history(tmp_path / "empty")


def test_summary_of_first_last_and_peak():
    steps = list(range(1, 21))
    history = state(steps, reward=[0.1 * (s % 7) for s in steps], gate__on=[float(s > 5) for s in steps])["log_history"]
    summ = summarize([h for h in history if "loss" in h])
    assert summ["steps"] == 20
    reward = summ["reward"]
    assert reward["first"] == pytest.approx((0.1 + 0.2) / 2) and reward["last"] == pytest.approx((0.5 + 0.6) / 2)
    assert (reward["peak"], reward["peak_step"]) == (pytest.approx(0.6), 6)
    assert summ["gate_on_frac"] == pytest.approx(15 / 20)
    assert summarize([]) == {"steps": 0}


def test_report_writes_markdown_plot_and_settings(tmp_path):
    run = write_state(tmp_path / "run", state([1, 2, 3, 4], reward=[0.1, 0.2, 0.3, 0.4],
                                              teacher__entropy_mean=[1.0, 0.9, 0.8, 0.7], gate__reference=[1.0] * 4,
                                              gate__on=[0.0, 1.0, 1.0, 0.0], gate__lambda=[0.0, 0.5, 0.5, 0.0]))
    path = write_report(run, title="toy run", extra={"held-out accuracy, final policy": "0.500"},
                        down_ratio=0.93, up_ratio=1.0)
    text = path.read_text()
    assert text.startswith("# toy run\n") and "4 optimizer steps" in text
    assert "| held-out accuracy, final policy | 0.500 |" in text and "| reward | 0.1 | 0.4 | 0.4 (4) |" in text
    assert "Gate on for 50% of logged steps" in text and "![curves](plots/curves.png)" in text
    assert (run / "plots" / "curves.png").read_bytes()[:8] == PNG
    assert "max_steps" not in text  # the run reached its max_steps
    settings = json.loads((run / "report.json").read_text())
    assert settings["title"] == "toy run" and settings["down_ratio"] == 0.93
    (run / "report.md").unlink()
    (run / "plots" / "curves.png").unlink()
    again = regenerate_report(run).read_text()  # antisd report RUN_DIR: same title and extra rows
    assert again == text and (run / "plots" / "curves.png").read_bytes()[:8] == PNG
    assert regenerate_report(run, title="renamed").read_text().startswith("# renamed\n")


def test_a_run_with_fewer_logged_steps_than_planned(tmp_path):
    run = write_state(tmp_path / "run" / "checkpoint-3", state([1, 2, 3], max_steps=400, reward=[0.0, 0.5, 1.0]))
    text = regenerate_report(tmp_path / "run").read_text()  # no report.json, no final state: the checkpoint's
    assert text.startswith("# antisd training run\n") and "3 optimizer steps" in text
    assert "At step 3 of max_steps 400" in text and "| reward | 0 | 1 | 1 (3) |" in text
    assert (tmp_path / "run" / "plots" / "curves.png").read_bytes()[:8] == PNG
    assert run.exists()
    early = write_state(tmp_path / "early", {"global_step": 2, "max_steps": 400,
                                             "log_history": [{"step": 2, "train_runtime": 1.0}]})
    text = write_report(early).read_text()
    assert "0 optimizer steps" in text and "No training step is logged yet" in text
    assert (early / "plots" / "curves.png").read_bytes()[:8] == PNG


def test_report_names_the_exploitation_monitors_flag(tmp_path):
    run = write_state(tmp_path / "run", state([1, 2, 3, 4], reward=[0.3, 0.3, 0.2, 0.1],
                                              pmi__mean=[-0.1, -0.2, -0.5, -0.9],
                                              monitor__exploit=[0.0, 0.0, 1.0, 1.0]))
    text = write_report(run).read_text()
    assert "Exploitation monitor: flagged on 2 of 4 logged steps, first at step 3" in text
    assert "| pmi/mean | -0.1 | -0.9 |" in text
    quiet = write_state(tmp_path / "quiet", state([1, 2], reward=[0.3, 0.4], monitor__exploit=[0.0, 0.0]))
    assert "Exploitation monitor: no sign on 2 logged steps." in write_report(quiet).read_text()
