"""antisd.rewards.extract: the last box, the fallbacks, balanced braces, linear time on adversarial text."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from antisd.rewards import extract_answer, extract_boxed, is_strict_format


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so \\boxed{42}.", "42"),
        ("\\boxed{1} then \\boxed{2}", "2"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\fbox{7}", "7"),
        ("\\boxed {8}", "8"),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("\\boxed{\\boxed{5}}", "5"),
        ("\\boxed{ 7 }", " 7 "),
        ("\\boxed{3} and \\boxed{4", None),  # the last box is unclosed: no silent fallback
        ("no box", None),
        ("\\boxed 5", None),
    ],
)
def test_extract_boxed(text: str, expected: str | None) -> None:
    assert extract_boxed(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("reasoning\n\\boxed{5}\nAnswer: 6", ("5", "boxed")),
        ("reasoning\n\\boxed{5\nAnswer: 6", (None, "unclosed_box")),
        ("reasoning\nAnswer: 42", ("42", "answer_line")),
        ("reasoning\n**Answer:** $\\frac{1}{2}$.", ("\\frac{1}{2}", "answer_line")),
        ("Answer: 1\nmore\nanswer: 2\n", ("2", "answer_line")),
        ("Final Answer: 17.", ("17", "answer_line")),
        ("Final Answer: The final answer is $42$. I hope it is correct.", ("42", "final_answer_phrase")),
        ("So the final answer is 3.5. Done.", ("3.5", "final_answer_phrase")),
        ("the final answer is 9\nAnswer: 10", ("10", "answer_line")),
        ("Answer: 10\nso the final answer is 9", ("9", "final_answer_phrase")),
        ("Answer:\n", (None, "none")),
        ("The answer: 42", (None, "none")),
        ("", (None, "none")),
    ],
)
def test_extract_answer(text: str, expected: tuple[str | None, str]) -> None:
    assert extract_answer(text) == expected


@given(content=st.recursive(st.text("ab1+ \\,", max_size=4), lambda inner: st.lists(inner, max_size=3).map(lambda parts: "{" + "".join(parts) + "}"), max_leaves=8))
def test_extract_boxed_balanced(content: str) -> None:
    """Any brace-balanced content comes back whole (escape-free alphabet: no \\{ or \\})."""
    content = content.replace("\\", "")
    assert extract_boxed(f"x \\boxed{{1}} y \\boxed{{{content}}} z") == content


def test_extraction_is_linear_on_100k_adversarial_strings() -> None:
    texts = [
        "\\boxed{" * 15_000,
        "{" * 100_000,
        "\\boxed{" + "{" * 100_000,
        "\\boxed " * 15_000 + "x",
        "Answer: 1\n" * 10_000,
        "final answer is " * 6_000,
        "$" * 100_000,
        "\\" * 100_000,
    ]
    start = time.monotonic()
    for text in texts:
        extract_answer(text)
        is_strict_format(text)
    assert time.monotonic() - start < 5.0


@pytest.mark.parametrize(
    ("text", "strict", "flexible"),
    [
        ("5 + 2 is 7.", (None, "none"), ("7", "last_number")),
        ("24 + 6 equals 9, which is", (None, "none"), ("9", "last_number")),
        ("it costs $1,234.50 in all", (None, "none"), ("1234.50", "last_number")),
        ("half: 3/4.", (None, "none"), ("3/4", "last_number")),
        ("-5 degrees", (None, "none"), ("-5", "last_number")),
        ("version v1.2.3 and x2", (None, "none"), (None, "none")),  # digits inside words are not numbers
        ("no number here", (None, "none"), (None, "none")),
        ("\\boxed{4} and then 5", ("4", "boxed"), ("4", "boxed")),  # a box wins over the last number
        ("\\boxed{4 and then 5", (None, "unclosed_box"), (None, "unclosed_box")),  # no fallback past a box
        ("Answer: 3\nthen 9", ("3", "answer_line"), ("3", "answer_line")),
    ],
)
def test_flexible_extraction_falls_back_to_the_last_number_only(text, strict, flexible) -> None:
    assert extract_answer(text) == strict
    assert extract_answer(text, "strict") == strict
    assert extract_answer(text, "flexible") == flexible


def test_flexible_extraction_is_linear_and_checks_its_mode() -> None:
    texts = ["1" * 256_000 + "a", "1," * 128_000, "1." * 128_000, "-" * 256_000, "1/" * 128_000, ("12 " * 85_000)]
    start = time.monotonic()
    for text in texts:
        extract_answer(text, "flexible")
    assert time.monotonic() - start < 5.0
    with pytest.raises(ValueError, match="extraction='loose'"):
        extract_answer("7", "loose")
