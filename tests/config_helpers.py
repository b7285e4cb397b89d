"""Config files for antisd train tests (test_cli.py, test_config.py, test_report.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

CPU = ["--bf16", "false"]  # the recipes say bf16: true; this machine has no GPU


def write_yaml(path: Path, data: dict) -> str:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return str(path)


@pytest.fixture
def base_yaml(tmp_path) -> str:
    """A minimal valid training config (the data file need not exist: nothing loads it)."""
    return write_yaml(tmp_path / "base.yaml", {
        "version": 1, "model_name_or_path": "some/model", "dataset_name": "data.jsonl",
        "output_dir": str(tmp_path / "out"), "bf16": False, "report_to": [], "max_steps": 5,
    })
