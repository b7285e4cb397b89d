"""Answer extraction from a completion (pure: no math-verify, no I/O).

`extract_answer`, in this order:

1. ``"boxed"``: the content of the LAST box opener, ``\\boxed{`` or ``\\fbox{`` (spaces allowed
   before the brace, ``\\boxed {``), matched with balanced braces (``\\{`` and ``\\}`` are
   escaped literals and do not count). "Last" means the last opener in the text, so
   ``\\boxed{\\boxed{5}}`` gives ``5`` (the convention of the MATH and verl scorers).
   If that last box never closes (typically a truncated rollout) the answer is ``None`` with
   how ``"unclosed_box"``: we do not fall back to an earlier box or to the phrases below,
   because the policy's final answer is the unclosed one. As soon as the text has a box
   opener, the fallbacks are not tried.
2. Fallbacks, only when the text has no box opener at all. Of the two patterns below, the
   match that starts LAST in the text wins ("last answer statement wins", like boxes):

   - ``"answer_line"``: a line ``Answer: X`` (the DAPO prompt asks for a last line
     ``Answer: $Answer``), case-insensitive, optionally ``Final Answer: X`` and markdown
     decoration (``**Answer:** X``, ``> Answer: X``).
   - ``"final_answer_phrase"``: ``... final answer is X`` (also the Minerva/lm-eval form
     ``The final answer is $X$. I hope it is correct.``).

   X is the rest of the line, cut at "I hope", then: the first math span if X starts with
   ``$``, ``$$``, ``\\(`` or ``\\[``; otherwise X cut at the first sentence end (a period
   followed by whitespace). Surrounding ``**`` and a trailing period are dropped. A match
   whose X is empty is skipped.
3. ``"last_number"``, only with ``extraction="flexible"`` and when neither 1 nor 2 found anything:
   the last number in the text (an optional minus sign, digits with optional thousands commas,
   an optional decimal part, or a fraction ``a/b``; a trailing period is a sentence end). This is
   lm-evaluation-harness's GSM8K "flexible-extract", for small models that answer ``2 + 3 = 5``.
4. ``"none"``: nothing found; the answer is ``None``.

``EXTRACTIONS``: ``"strict"`` (1, 2, the default) and ``"flexible"`` (1, 2, 3).

`is_strict_format` is the strict answer format of ``MathReward(format_strict=True)``.
"""

from __future__ import annotations

import re

_BOX_OPEN_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANSWER_LINE_RE = re.compile(
    r"^[ \t>#*_]*(?:final[ \t]+)?answer[ \t*_]*[:\uff1a](?P<value>[^\n]*)$", re.IGNORECASE | re.MULTILINE
)
_FINAL_PHRASE_RE = re.compile(r"final answer is(?P<value>[^\n]*)", re.IGNORECASE)
_MATH_SPAN_RE = re.compile(r"\$\$(.+?)\$\$|\$(.+?)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]")
_SENTENCE_END_RE = re.compile(r"\.(?:\s|$)")
_I_HOPE_RE = re.compile(r"I hope", re.IGNORECASE)
_NUMBER_RE = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?(?![\w])")
EXTRACTIONS = ("strict", "flexible")


def _last_box(text: str) -> tuple[int, int, int | None] | None:
    """(opener start, content start, closing-brace index or None) of the last box opener."""
    last = None
    for last in _BOX_OPEN_RE.finditer(text):
        pass
    if last is None:
        return None
    depth, i, n = 1, last.end(), len(text)
    while i < n:
        char = text[i]
        if char == "\\":
            i += 2  # \{ \} \\ are escapes, not groups
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return last.start(), last.end(), i
        i += 1
    return last.start(), last.end(), None


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}``/``\\fbox{...}``; None if absent or unclosed. O(len)."""
    box = _last_box(text)
    if box is None or box[2] is None:
        return None
    return text[box[1] : box[2]]


def _clean_fallback_value(value: str) -> str:
    """X of ``Answer: X`` / ``final answer is X``: see the module docstring."""
    hope = _I_HOPE_RE.search(value)
    if hope is not None:
        value = value[: hope.start()]
    value = value.strip().lstrip(":").strip().strip("*").strip()
    math_span = _MATH_SPAN_RE.match(value)
    if math_span is not None:
        return next(group for group in math_span.groups() if group is not None).strip()
    sentence_end = _SENTENCE_END_RE.search(value)
    if sentence_end is not None:
        value = value[: sentence_end.start()]
    return value.strip().strip("*").rstrip(".").strip()


def _last_fallback(text: str, pattern: re.Pattern[str]) -> tuple[int, str] | None:
    """(start, cleaned value) of the last match of `pattern` whose value is not empty."""
    found = None
    for match in pattern.finditer(text):
        value = _clean_fallback_value(match.group("value"))
        if value:
            found = (match.start(), value)
    return found


def last_number(text: str) -> str | None:
    """The last number of `text` (``_NUMBER_RE``), thousands commas removed; None without one. O(len)."""
    found = None
    for found in _NUMBER_RE.finditer(text):
        pass
    return None if found is None else found.group(0).replace(",", "")


def extract_answer(completion: str, extraction: str = "strict") -> tuple[str | None, str]:
    """(answer text, how); how is "boxed", "unclosed_box", "answer_line", "final_answer_phrase",
    "last_number" (``extraction="flexible"`` only) or "none". Rules in the module docstring."""
    if extraction not in EXTRACTIONS:
        raise ValueError(f"extraction={extraction!r}: expected one of {list(EXTRACTIONS)}")
    box = _last_box(completion)
    if box is not None:
        if box[2] is None:
            return None, "unclosed_box"
        return completion[box[1] : box[2]], "boxed"
    candidates = [
        (found[0], found[1], how)
        for how, pattern in (("answer_line", _ANSWER_LINE_RE), ("final_answer_phrase", _FINAL_PHRASE_RE))
        if (found := _last_fallback(completion, pattern)) is not None
    ]
    if candidates:
        _, value, how = max(candidates)
        return value, how
    if extraction == "flexible" and (number := last_number(completion)) is not None:
        return number, "last_number"
    return None, "none"


_STRICT_TAIL_RE = re.compile(r"\s*(?:\$\$|\$|\\\]|\\\))?\s*\.?\s*")


def is_strict_format(completion: str, end_token: str | None = None) -> bool:
    """True iff the text has exactly one box opener, the box closes, and after it comes only
    whitespace, an optional closing math delimiter (``$``, ``$$``, ``\\]``, ``\\)``), an optional
    period and an optional `end_token`."""
    if len(_BOX_OPEN_RE.findall(completion)) != 1:
        return False
    box = _last_box(completion)
    if box is None or box[2] is None:
        return False
    tail = completion[box[2] + 1 :].rstrip()
    if end_token:
        tail = tail.removesuffix(end_token)
    return _STRICT_TAIL_RE.fullmatch(tail) is not None
