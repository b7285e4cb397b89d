"""Code extraction from a completion, and outcome counts (the style of `antisd.rewards`).

`extract_code(text, mode)`:

- ``"fenced"`` (chat models): the content of the LAST closed fenced block whose info string is
  ``python``, ``py``, ``python3`` or empty (a fence is a line starting with three backticks,
  optionally indented). Blocks in other languages are ignored. If the last fence opener never
  closes (a truncated rollout) the result is ``UNCLOSED_FENCE`` and no code: earlier blocks are
  not used, because the policy's final answer is the unclosed one.
- ``"raw"`` (completion-style prompts, e.g. HumanEval's function body): the completion itself.

A fence line is, exactly: at most three spaces/tabs of indentation, three backticks, then an info
string containing no backtick up to the end of the line. Lines are split on ``"\n"`` only (a
``"\r"`` stays part of the line, hence of the info string); a closer must have an empty info
string, so an opener-looking line cannot close a block (the pending opener is dropped as stray and
the line becomes the new opener). The block body is the text between the opener's line and the
closer's line, byte for byte.

Completions are untrusted (policy output scored in the trusted process), so extraction runs in time
linear in ``len(text)``: it walks the lines once with plain string operations, without a
backtracking regular expression (the former pattern ``^[ \t]{0,3}```[ \t]*([^\n`]*)$`` took time
quadratic in a line's length when a long run of spaces after a fence was followed by a backtick).

Extraction outcomes: ``EXTRACTED``, ``NO_CODE`` (no block), ``EMPTY`` (only whitespace),
``UNCLOSED_FENCE``. Scoring outcomes (`CodeOutcome`) add ``PASSED``/``FAILED``/``TIMEOUT``/
``SANDBOX_ERROR``/``UNUSABLE_TASK``; `CodeStats` counts them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from antisd.rewards.counts import OutcomeCounts

PYTHON_TAGS = frozenset({"", "python", "py", "python3"})


class CodeOutcome(str, enum.Enum):
    """How one completion ended; exactly one per completion."""

    PASSED = "passed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    NO_CODE = "no_code"
    EMPTY = "empty"
    UNCLOSED_FENCE = "unclosed_fence"
    SANDBOX_ERROR = "sandbox_error"
    UNUSABLE_TASK = "unusable_task"


EXTRACTED = "extracted"


_FENCE = "```"
_MAX_INDENT = 3


def _fences(text: str) -> list[tuple[int, int, str]]:
    """(line start, line end, info string) of every fence line, in order; linear in len(text).

    Lines are split on "\n" only. A fence line: at most `_MAX_INDENT` spaces/tabs, three
    backticks, then no backtick up to the end of the line (the rest of the line is the info
    string, returned as is; callers strip it)."""
    out: list[tuple[int, int, str]] = []
    start = 0
    for line in text.split("\n"):  # every step below is linear in len(line); lines are disjoint
        end = start + len(line)
        if _FENCE in line[:_MAX_INDENT + 3]:  # cheap filter: a fence starts within this prefix
            info = line.lstrip(" \t")
            if (len(line) - len(info) <= _MAX_INDENT and info.startswith(_FENCE)
                    and info.find("`", 3) == -1):
                out.append((start, end, info[3:]))
        start = end + 1
    return out


def extract_code(text: str, mode: str = "fenced") -> tuple[str | None, str]:
    """(code or None, how): how is "extracted", or a `CodeOutcome` value among no_code, empty,
    unclosed_fence. See the module docstring."""
    if mode == "raw":
        return (text, EXTRACTED) if text.strip() else (None, CodeOutcome.EMPTY.value)
    if mode != "fenced":
        raise ValueError(f"mode={mode!r}; expected 'fenced' or 'raw'")
    fences = _fences(text)
    blocks: list[tuple[str, int, int]] = []  # (tag, body start, body end)
    i = 0
    while i < len(fences):
        opener_end, opener_info = fences[i][1], fences[i][2]
        tag = opener_info.strip().lower()
        if i + 1 >= len(fences):
            return None, CodeOutcome.UNCLOSED_FENCE.value
        closer_start, _, closer_info = fences[i + 1]
        if closer_info.strip():  # "```python" cannot close a block; treat the opener as stray
            i += 1
            continue
        blocks.append((tag.split()[0] if tag else "", opener_end + 1, closer_start))
        i += 2
    python_blocks = [(start, end) for tag, start, end in blocks if tag in PYTHON_TAGS]
    if not python_blocks:
        return None, CodeOutcome.NO_CODE.value
    start, end = python_blocks[-1]
    code = text[start:end]
    if not code.strip():
        return None, CodeOutcome.EMPTY.value
    return code, EXTRACTED


_COUNTERS = {outcome: f"n_{outcome.value}" for outcome in CodeOutcome}


@dataclass
class CodeStats(OutcomeCounts):
    """Counts of `CodeOutcome`s (they sum to n_calls) and of extractions (``antisd.rewards.counts``):
    ``record(outcome, extracted)``; ``as_dict`` logs ``{prefix}/n_calls``, ``/accuracy`` (passed),
    ``/extracted_frac`` and ``/<outcome>_frac`` (prefix ``code_reward``). Not locked."""

    OUTCOMES: ClassVar[Mapping[enum.Enum, str]] = _COUNTERS
    SUCCESS: ClassVar[enum.Enum | None] = CodeOutcome.PASSED
    FLAGS: ClassVar[tuple[str, ...]] = ("extracted",)
    PREFIX: ClassVar[str] = "code_reward"

    n_extracted: int = 0
    n_passed: int = 0
    n_failed: int = 0
    n_timeout: int = 0
    n_no_code: int = 0
    n_empty: int = 0
    n_unclosed_fence: int = 0
    n_sandbox_error: int = 0
    n_unusable_task: int = 0
