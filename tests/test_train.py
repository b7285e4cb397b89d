"""antisd.train: resume handling (the end-to-end run is test_cli.py's test_run_train_smoke)."""

from __future__ import annotations

import pytest

from antisd.configio import CliError
from antisd.train import _resume_arg


def test_resume_argument(tmp_path):
    out = tmp_path / "out"
    assert _resume_arg(None, str(out)) is None
    assert _resume_arg("false", str(out)) is None
    with pytest.raises(CliError, match="holds no checkpoint"):
        _resume_arg("true", str(out))
    (out / "checkpoint-2").mkdir(parents=True)
    assert _resume_arg("true", str(out)) is True
    assert _resume_arg(str(out / "checkpoint-2"), str(out)) == str(out / "checkpoint-2")
    with pytest.raises(CliError, match="is not a directory"):
        _resume_arg(str(out / "checkpoint-9"), str(out))
