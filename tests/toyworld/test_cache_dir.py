"""antisd.toyworld.base_policy's cache: the user's cache folder (any working folder reuses one build),
$ANTISD_CACHE_DIR, and the removal of temporary build folders left by builds that died."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from antisd.toyworld.defaults import toy_dataset_file
from antisd.toyworld import base_policy as bp


def test_the_cache_is_the_users_not_the_working_folders(tmp_path, monkeypatch):
    monkeypatch.delenv("ANTISD_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(sys, "platform", "linux")
    seen = set()
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        monkeypatch.chdir(tmp_path / folder)
        seen.add(bp.default_cache_dir())
    assert seen == {tmp_path / "xdg" / "antisd" / "toyworld"}
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert bp.default_cache_dir() == bp.Path.home() / ".cache" / "antisd" / "toyworld"
    monkeypatch.setattr(sys, "platform", "darwin")
    assert bp.default_cache_dir() == bp.Path.home() / "Library" / "Caches" / "antisd" / "toyworld"
    monkeypatch.setenv("ANTISD_CACHE_DIR", str(tmp_path / "mine"))
    assert bp.default_cache_dir() == tmp_path / "mine" / "toyworld"


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temporary_builds_are_removed(tmp_path):
    dead, alive = _dead_pid(), os.getpid()
    assert not bp.pid_alive(dead) and bp.pid_alive(alive)
    crashed = tmp_path / f".tmp-toybase-commit-abc123-{dead}-f00d01"
    running = tmp_path / f".tmp-toybase-commit-abc123-{alive}-f00d02"
    ancient = tmp_path / f".tmp-toybase-commit-abc123-{alive}-f00d03"
    for folder in (crashed, running, ancient):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"partial")
    old = time.time() - bp.STALE_BUILD_AGE_S - 60
    os.utime(ancient, (old, old))
    kept = tmp_path / "toybase-commit-abc123"  # a finished build is never touched
    kept.mkdir()
    assert sorted(bp.clean_stale_builds(tmp_path)) == sorted([crashed, ancient])
    assert running.exists() and kept.exists() and not crashed.exists() and not ancient.exists()


def test_stale_temporary_data_files_are_removed(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    stale = data / f".train-n5-seed0-x.jsonl.tmp-{_dead_pid()}"
    stale.write_text("partial")
    path = toy_dataset_file(n=5, seed=0, cache_dir=tmp_path)
    assert path.parent == data and len(path.read_text().splitlines()) == 5 and not stale.exists()
