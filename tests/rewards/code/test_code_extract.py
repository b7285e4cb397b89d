"""Code extraction from completions and outcome counting."""

from __future__ import annotations

import gc
import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from antisd.rewards.code.extract import EXTRACTED, PYTHON_TAGS, CodeOutcome, CodeStats, extract_code

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
    assert list(metrics) == [f"code_reward/{name}" for name in (
        "n_calls", "accuracy", "extracted_frac", "failed_frac", "timeout_frac", "no_code_frac", "empty_frac",
        "unclosed_fence_frac", "sandbox_error_frac", "unusable_task_frac")]
    with pytest.raises(TypeError, match=r"takes the outcome and 1 flag\(s\) \['extracted'\]; got 0"):
        stats.record(CodeOutcome.PASSED)


# --- Semantics pinned against the former regex implementation ------------------------------------

_OLD_FENCE_RE = re.compile(r"^[ \t]{0,3}```[ \t]*([^\n`]*)$", re.MULTILINE)


def _old_extract_fenced(text: str) -> tuple[str | None, str]:
    """The former `extract_code(text, "fenced")`, verbatim but for names: the reference oracle.
    Quadratic on adversarial lines, so only ever fed short texts."""
    fences = list(_OLD_FENCE_RE.finditer(text))
    blocks: list[tuple[str, str]] = []
    i = 0
    while i < len(fences):
        opener = fences[i]
        tag = opener.group(1).strip().lower()
        if i + 1 >= len(fences):
            return None, CodeOutcome.UNCLOSED_FENCE.value
        closer = fences[i + 1]
        if closer.group(1).strip():
            i += 1
            continue
        blocks.append((tag.split()[0] if tag else "", text[opener.end() + 1: closer.start()]))
        i += 2
    python_blocks = [body for tag, body in blocks if tag in PYTHON_TAGS]
    if not python_blocks:
        return None, CodeOutcome.NO_CODE.value
    code = python_blocks[-1]
    if not code.strip():
        return None, CodeOutcome.EMPTY.value
    return code, EXTRACTED


_PIECES = [FENCE, f"{FENCE}python", f"{FENCE}py", f"{FENCE}js", f"{FENCE}Python3", f"{FENCE}py x",
           " ", "\t", "\n", "\n", "\n", "`", "``", "x", "\r", "    ", "   ", "\x0b", "\u2028", "python"]


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_PIECES), max_size=40))
def test_matches_former_regex_implementation(pieces):
    text = "".join(pieces)
    assert extract_code(text) == _old_extract_fenced(text)


@pytest.mark.parametrize("text", [
    f"{FENCE}python\nx = 1\n{FENCE}", f"{FENCE}python\r\nx = 1\r\n{FENCE}\r\n",
    f"{FENCE}\r\nx = 1\n{FENCE}\n", f"   {FENCE}\nx\n   {FENCE}", f"\t\t\t{FENCE}\nx\n{FENCE}",
    f"    {FENCE}\nx\n{FENCE}", f"{FENCE}python\nx\n{FENCE}python\ny\n{FENCE}",
    f"{FENCE}python\nx\n{FENCE}`\n{FENCE}", f"{FENCE}`python\nx\n{FENCE}", "````\nx\n````",
    f"{FENCE}\t python \t\nx\n{FENCE} \t", f"{FENCE}\n\n{FENCE}", f"{FENCE}\n{FENCE}",
    f"{FENCE}python\nx\n{FENCE}\n{FENCE}", f"a{FENCE}\nx\n{FENCE}", f"{FENCE}PY\nx\n{FENCE}",
    f"{FENCE}python\nx\u2028{FENCE}\n{FENCE}", f"{FENCE}python\nx\n{FENCE}\n", "\n" * 5, "",
])
def test_edge_cases_match_former_implementation(text):
    assert extract_code(text) == _old_extract_fenced(text)


# --- Linear time on adversarial completions ------------------------------------------------------

_N = 256 * 1024
_ADVERSARIAL = {  # name -> (text of about _N characters, expected result)
    "fence, spaces, backtick": (FENCE + " " * _N + "`", (None, "no_code")),
    "fence, tabs and spaces, backtick": (FENCE + " \t" * (_N // 2) + "`", (None, "no_code")),
    "spaces then backtick, no fence": (" " * _N + "`", (None, "no_code")),
    "many fence lines": ((FENCE + "\n") * (_N // 4), (None, "empty")),
    "many python openers": ((FENCE + "python\n") * (_N // 10), (None, "unclosed_fence")),
    "one line of backticks": ("`" * _N, (None, "no_code")),
    "alternating fence and backtick": ((FENCE + " `") * (_N // 5), (None, "no_code")),
    "fence, spaces, then a closed block": (
        FENCE + " " * _N + "\nx = 1\n" + FENCE, ("x = 1\n", "extracted")),
    "huge block body": (f"{FENCE}python\n" + "x = 1 #  `\n" * (_N // 11) + FENCE,
                        ("x = 1 #  `\n" * (_N // 11), "extracted")),
    "newlines only": ("\n" * _N, (None, "no_code")),
}


@pytest.mark.parametrize("name", list(_ADVERSARIAL))
def test_adversarial_completion_is_fast_and_correct(name):
    text, expected = _ADVERSARIAL[name]
    start = time.perf_counter()
    result = extract_code(text)
    elapsed = time.perf_counter() - start
    assert result == expected
    assert elapsed < 1.0, f"{name}: {elapsed:.2f} s for {len(text)} characters"


def _best_of_3(text: str) -> float:
    best = float("inf")
    gc.collect()
    gc.disable()  # time the algorithm, not when a collection happens to fall
    try:
        for _ in range(3):
            start = time.perf_counter()
            extract_code(text)
            best = min(best, time.perf_counter() - start)
    finally:
        gc.enable()
    return best


@pytest.mark.parametrize("make", [
    lambda n: FENCE + " " * n + "`",
    lambda n: " " * n + "`",
    lambda n: (FENCE + "\n") * (n // 4),
    lambda n: (FENCE + " `") * (n // 5),
], ids=["spaces-after-fence", "spaces-no-fence", "fence-lines", "alternating"])
def test_time_scales_linearly(make):
    """8x the input: linear time costs about 8x, quadratic 64x. The bound (24x) leaves room for
    noise on a shared machine and does not depend on its speed; both sizes are timed best-of-3 and
    a floor keeps microsecond timings from making the ratio meaningless."""
    small, large = make(32 * 1024), make(256 * 1024)
    floor = 1e-3
    ratio = max(_best_of_3(large), floor) / max(_best_of_3(small), floor / 8)
    assert ratio < 24, f"time ratio {ratio:.1f} for 8x the input (linear: ~8, quadratic: ~64)"
