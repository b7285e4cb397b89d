"""Fixtures for the code-execution tests: one executor per session, a private expected-output cache."""

from __future__ import annotations

import pytest

from antisd.code.harness import HarnessConfig
from antisd.code.sandbox import LocalExecutor


@pytest.fixture(scope="session")
def executor() -> LocalExecutor:
    """bwrap where it works here, else the logged fallback (tests needing isolation skip then)."""
    return LocalExecutor("auto")


@pytest.fixture(scope="session")
def harness_config(tmp_path_factory: pytest.TempPathFactory) -> HarnessConfig:
    return HarnessConfig(cache_dir=str(tmp_path_factory.mktemp("code_cache")))
