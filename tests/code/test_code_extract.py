"""Code extraction from completions and outcome counting."""

from __future__ import annotations

import pytest

from antisd.code.extract import CodeOutcome, CodeStats, extract_code

FENCE = "`" * 3


def test_last_python_block_wins():
    text = f"First:\n{FENCE}python\nx = 1\n{FENCE}\nthen\n{FENCE}py\ny = 2\n{FENCE}\n{FENCE}bash\nls\n{FENCE}\nend"
    assert extract_code(text) == ("y = 2\n", "extracted")
    assert extract_code(f"{FENCE}\nz = 3\n{FENCE}") == ("z = 3\n", "extracted")
    assert extract_code(f"  {FENCE}Python3\nw = 4\n  {FENCE}") == ("w = 4\n", "extracted")


def test_no_code_empty_and_unclosed():
    assert extract_code("just prose") == (None, CodeOutcome.NO_CODE.value)
    assert extract_code(f"{FENCE}bash\nls\n{FENCE}") == (None, CodeOutcome.NO_CODE.value)
    assert extract_code(f"{FENCE}python\n   \n{FENCE}") == (None, CodeOutcome.EMPTY.value)
    truncated = f"{FENCE}python\nx = 1\n{FENCE}\nmore:\n{FENCE}python\ndef f(:"
    assert extract_code(truncated) == (None, CodeOutcome.UNCLOSED_FENCE.value)


def test_raw_mode():
    assert extract_code("    return 1\n", mode="raw") == ("    return 1\n", "extracted")
    assert extract_code("  \n", mode="raw") == (None, CodeOutcome.EMPTY.value)
    with pytest.raises(ValueError, match="mode='xml'"):
        extract_code("x", mode="xml")


def test_stats_count_every_outcome_once():
    stats = CodeStats()
    stats.record(CodeOutcome.PASSED, True)
    stats.record(CodeOutcome.FAILED, True)
    stats.record(CodeOutcome.NO_CODE, False)
    other = CodeStats()
    other.record(CodeOutcome.TIMEOUT, True)
    stats.merge(other)
    assert (stats.n_calls, stats.n_extracted, stats.n_passed, stats.n_timeout) == (4, 3, 1, 1)
    metrics = stats.as_dict()
    assert metrics["code_reward/accuracy"] == 0.25 and metrics["code_reward/no_code_frac"] == 0.25
    assert metrics["code_reward/extracted_frac"] == 0.75
