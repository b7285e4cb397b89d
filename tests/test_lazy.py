"""Lazy package exports (antisd.lazy): the names resolve, and importing one submodule imports nothing else."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_exports_resolve_and_unknown_names_are_named():
    import antisd
    import antisd.rewards
    import antisd.rewards.code

    for package in (antisd, antisd.rewards, antisd.rewards.code):
        for name in package.__all__:
            if name != "__version__":
                assert getattr(package, name) is not None, (package.__name__, name)
        assert set(package.__all__) <= set(dir(package))
        with pytest.raises(AttributeError, match="has no attribute 'nope'"):
            package.nope  # noqa: B018


def test_a_sandbox_submodule_imports_neither_torch_nor_math_verify():
    code = ("import sys, antisd.rewards.code.extract, antisd.rewards.code.sandbox; "
            "print(sorted(m for m in ('torch', 'math_verify', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"
