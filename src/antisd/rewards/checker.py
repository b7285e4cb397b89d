"""Timed in-process math-verify check of one (gold, predicted answer) pair; the pool's worker.

Verification: the extracted answer and the gold answer are normalised the same way (outer
whitespace, ``**`` and a trailing period stripped; digit groups written with ``\\,``, ``\\;``,
``\\!``, ``\\ ``, ``~`` or a space as a thousands separator are joined, since math-verify reads
``2\\,125`` as 127 and ``10\\,000`` as 0) and parsed separately, strictly: as LaTeX in
``\\boxed{...}`` (falling back to ``$...$``), else as a plain expression only when that
expression is the whole answer (``-1./3``). An answer that gives no SymPy object this way is
unparseable; in particular math-verify's fallback of picking a number out of malformed LaTeX
(``\\begin{pmatrix} 1 &`` read as 1) does not count. The gold answer is checked first: an
unparseable gold is ``GOLD_UNPARSEABLE`` whatever the prediction (it never earns reward, and
never matches "by string accident"), an unparseable prediction ``PRED_UNPARSEABLE``; only two
SymPy objects are compared, with ``verify(gold, pred)`` in that order (it is not symmetric). Callers do not parse predictions
longer than `MAX_ANSWER_CHARS` (counted as unparseable): no benchmark answer comes near that,
and SymPy spends seconds on long junk.

Timeouts. math-verify's own timeouts use a one-shot ``signal.alarm``: whole seconds, main
thread only, and lost when the alarm lands in a gc callback or ``__del__`` (Python prints
"Exception ignored in ..." and the parse then runs unbounded; seen in our tests, 25-46 s over
a 0.5 s budget). So math-verify runs with its timeouts off, and `verify_inline` runs it under
our own SIGALRM timer (`_call_with_deadline`): one budget of `timeout_s` for both parses and
the comparison, re-fired every 50 ms until the call returns, raising only while the guarded
call is on the stack (never in cleanup or caller code). A SIGALRM timer the caller had set is
re-armed afterwards with what was left of it. Main thread only: other threads go through
``antisd.rewards.pool``.

Run as a script (``python -P checker.py``, started by ``antisd.rewards.pool``, not by hand) this
module is a verification worker: JSON-line requests {gold, pred, timeout_s} on stdin, replies
{outcome} on stdout. It imports only the standard library and math-verify (never antisd or
torch), so keep it that way.

Every check ends in exactly one `Outcome`; exceptions become ``Outcome.ERROR``.
"""

from __future__ import annotations

import enum
import gc
import json
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
from math_verify import grader as _mv_grader
from math_verify import parser as _mv_parser

logger = logging.getLogger(__name__)

MAX_ANSWER_CHARS = 1000
"""Answers longer than this are not parsed: a prediction is `Outcome.PRED_UNPARSEABLE`, a gold
answer `Outcome.GOLD_UNPARSEABLE`."""
_LATEX = [LatexExtractionConfig()]
_EXPR = [ExprExtractionConfig()]


class Outcome(str, enum.Enum):
    """How one check ended; exactly one per call."""

    CORRECT = "correct"
    WRONG = "wrong"
    NO_ANSWER = "no_answer"
    UNCLOSED_BOX = "unclosed_box"
    FORMAT_VIOLATION = "format_violation"
    GOLD_UNPARSEABLE = "gold_unparseable"
    PRED_UNPARSEABLE = "pred_unparseable"
    TIMEOUT = "timeout"
    ERROR = "error"


_SEPARATED_DIGITS_RE = re.compile(r"(?<![\d.])\d{1,3}(?:(?:\\[,;! ]|~| )\d{3})+(?![\d])")
_DIGIT_SEPARATOR_RE = re.compile(r"\\[,;! ]|~| ")


def _normalize(answer: str) -> str:
    """Strip whitespace, ``**`` and a trailing period; join thousands-separated digit groups."""
    answer = answer.strip().strip("*").strip().rstrip(".").strip()
    return _SEPARATED_DIGITS_RE.sub(lambda m: _DIGIT_SEPARATOR_RE.sub("", m.group()), answer)


class _Deadline(BaseException):
    """Raised by SIGALRM at the deadline; a BaseException, so `except Exception` lets it pass."""


_REARM_S = 0.05  # the alarm repeats this often until the guarded call has returned


def _guarded_call(fn: Callable[..., Outcome], args: tuple[Any, ...]) -> Outcome:
    """The frame `_on_alarm` looks for: _Deadline is raised only while this is on the stack."""
    return fn(*args)


def _in_finalizer(code: CodeType) -> bool:
    """Whether `code` is a ``__del__`` or a gc callback, where a raise is swallowed."""
    return code.co_name == "__del__" or any(getattr(cb, "__code__", None) is code for cb in gc.callbacks)


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    """Raise _Deadline inside `_guarded_call`; anywhere else (cleanup, caller) stop the timer.

    Inside a finalizer it waits for the next tick instead (a raise there would be swallowed).
    """
    in_finalizer = False
    while frame is not None:
        if frame.f_code is _guarded_call.__code__:
            if in_finalizer:
                return
            raise _Deadline
        in_finalizer = in_finalizer or _in_finalizer(frame.f_code)
        frame = frame.f_back
    signal.setitimer(signal.ITIMER_REAL, 0)


def _call_with_deadline(fn: Callable[..., Outcome], args: tuple[Any, ...], timeout_s: float) -> Outcome:
    """fn(*args), or Outcome.TIMEOUT after timeout_s. Main thread only (SIGALRM).

    Unlike math-verify's one-shot ``signal.alarm``, the timer repeats every `_REARM_S` until the
    call returns: a one-shot alarm that lands in a gc callback or ``__del__`` is swallowed
    ("Exception ignored in ...") and the call then runs unbounded. A timer the caller had set
    is re-armed afterwards with what was left of it.
    """
    start = time.monotonic()
    previous_handler = signal.signal(signal.SIGALRM, _on_alarm)
    previous_delay, previous_interval = signal.setitimer(signal.ITIMER_REAL, timeout_s, _REARM_S)
    try:
        return _guarded_call(fn, args)
    except _Deadline:
        return Outcome.TIMEOUT
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler if previous_handler is not None else signal.SIG_DFL)
        if previous_delay > 0:
            left = max(previous_delay - (time.monotonic() - start), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, left, previous_interval)


def _has_sympy(parsed: list[Any]) -> bool:
    return any(not isinstance(item, str) for item in parsed)


def _parse_answer(answer: str) -> list[Any]:
    """math-verify parse of the normalised answer, strictly (see the module docstring): [] when
    it gives no SymPy object as LaTeX (boxed, then in ``$...$``) nor as one whole expression."""
    answer = _normalize(answer)
    if not answer:
        return []
    for text in (f"\\boxed{{{answer}}}", f"${answer}$"):
        parsed = parse(text, extraction_config=_LATEX, parsing_timeout=None, raise_on_error=True)
        if _has_sympy(parsed):
            return parsed
    parsed = parse(answer, extraction_config=_EXPR, parsing_timeout=None, raise_on_error=True)
    whole = _has_sympy(parsed) and any(isinstance(p, str) and p.strip() == answer for p in parsed)
    return parsed if whole else []


def _verify_untimed(gold: str, pred: str) -> Outcome:
    """Parse both (the gold first) and compare with ``verify(gold, pred)``; no timeout of its own."""
    gold_parsed = _parse_answer(gold)
    if not _has_sympy(gold_parsed):
        return Outcome.GOLD_UNPARSEABLE
    pred_parsed = _parse_answer(pred)
    if not _has_sympy(pred_parsed):
        return Outcome.PRED_UNPARSEABLE
    # raise_on_error=False: a pair that raises counts as unequal and the other pairs still run.
    if verify(gold_parsed, pred_parsed, timeout_seconds=None, raise_on_error=False):
        return Outcome.CORRECT
    return Outcome.WRONG


def verify_inline(gold: str, pred: str, timeout_s: float) -> Outcome:
    """`_verify_untimed` under `_call_with_deadline`; exceptions become Outcome.ERROR. Main thread only."""
    # We run math-verify with its timeouts off and time it ourselves: silence its one-time
    # "Timeout is disabled" warning.
    _mv_parser.TIMEOUT_WARNING_SHOWN = _mv_grader.TIMEOUT_WARNING_SHOWN = True
    try:
        return _call_with_deadline(_verify_untimed, (gold, pred), timeout_s)
    except Exception:  # noqa: BLE001 - a reward must never raise
        logger.debug("math-verify raised", exc_info=True)
        return Outcome.ERROR


# ---------------------------------------------------------------------------------------
# Worker entry point: ``python -P checker.py`` (started by antisd.rewards.pool, not by hand)
# ---------------------------------------------------------------------------------------


def _worker_main() -> None:
    """Answer JSON-line requests {gold, pred, timeout_s} with {outcome} until stdin closes."""
    reply = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must not corrupt replies
    verify_inline("1", "1", 5.0)  # warm up: compile math-verify's regexes, import SymPy parts
    reply.write(b'{"ready": true}\n')
    reply.flush()
    for line in sys.stdin.buffer:
        try:
            request = json.loads(line)
            outcome = verify_inline(str(request["gold"]), str(request["pred"]), float(request["timeout_s"]))
        except Exception:  # noqa: BLE001 - a malformed request gets an error reply
            outcome = Outcome.ERROR
        reply.write(json.dumps({"outcome": outcome.value}).encode() + b"\n")
        reply.flush()


if __name__ == "__main__":
    _worker_main()
