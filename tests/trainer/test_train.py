"""antisd.trainer.run: resume handling, the first log lines, a run shorter than logging_steps (the CLI's
end-to-end run is test_cli.py's test_run_train_smoke)."""

from __future__ import annotations

import json
import logging

import pytest

from antisd.cli.options import CliError
from antisd.trainer.run import _resume_arg


def test_resume_argument(tmp_path):
    out = tmp_path / "out"
    assert _resume_arg(None, str(out)) is None
    assert _resume_arg("false", str(out)) is None
    with pytest.raises(CliError, match="holds no checkpoint"):
        _resume_arg("true", str(out))
    (out / "checkpoint-2").mkdir(parents=True)
    assert _resume_arg("true", str(out)) == str(out / "checkpoint-2")  # a folder: the log names it
    (out / "checkpoint-2" / "antisd_state.json").write_text("{}")
    (out / "checkpoint-3").mkdir()  # newer, but incomplete (no antisd_state.json): the complete one is taken
    assert _resume_arg("last", str(out)) == str(out / "checkpoint-2")
    assert _resume_arg(str(out / "checkpoint-2"), str(out)) == str(out / "checkpoint-2")
    with pytest.raises(CliError, match="is not a directory"):
        _resume_arg(str(out / "checkpoint-9"), str(out))


@pytest.mark.slow
def test_a_short_run_logs_its_settings_first_and_reports_its_last_step(tiny_model_path, tmp_path, caplog):
    from antisd.trainer.config import AntiSDConfig
    from antisd.cli.options import ModelArgs
    from antisd.data.problems import DataConfig
    from antisd.trainer.run import run_train

    data = tmp_path / "p.jsonl"
    data.write_text("".join(json.dumps({"id": f"t{i}", "problem": f"What is {i} + 1?", "answer": str(i + 1)}) + "\n"
                            for i in range(8)), encoding="utf-8")
    out = tmp_path / "out"
    config = AntiSDConfig(output_dir=str(out), method="antisd", max_steps=2, logging_steps=5, report_to=[], bf16=False,
                          per_device_train_batch_size=8, num_generations=4, max_completion_length=8,
                          gradient_checkpointing=False, save_strategy="no", disable_tqdm=True, seed=0)
    with caplog.at_level(logging.INFO, logger="antisd"):
        run_train(ModelArgs(model_name_or_path=str(tiny_model_path), dtype="float32"),
                  DataConfig(dataset_name=str(data), id_column="id"), config, run_inputs={"max_steps": 2})
    lines = [r.getMessage() for r in caplog.records if r.name == "antisd.trainer.run"]
    assert lines[0].startswith("Prompt format: chat, system prompt 'Please reason step by step")
    assert lines[1].startswith("Teacher template: '{prompt}\\n\\nHere is a reference solution")
    assert "context sources: sibling, dataset, answer" in lines[1]
    report = (out / "report.md").read_text()
    assert "2 optimizer steps" in report and "| reward |" in report  # max_steps 2 < logging_steps 5
    assert (out / "antisd_run.yaml").read_text().endswith("max_steps: 2\n")
