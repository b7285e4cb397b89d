"""Math answer checking for RL rewards and evaluation (math-verify 0.9.0 underneath).

Extraction (`extract_answer`), in this order:

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
3. ``"none"``: nothing found; the answer is ``None``.

Verification (`check_answer`, `math_reward`): the extracted answer and the gold answer are
normalised the same way (outer whitespace, ``**`` and a trailing period stripped; digit groups
written with ``\\,``, ``\\;``, ``\\!``, ``\\ ``, ``~`` or a space as a thousands separator
are joined, since math-verify reads ``2\\,125`` as 127 and ``10\\,000`` as 0), wrapped in
``\\boxed{...}`` (falling back to ``$...$`` when that gives no SymPy object), parsed
separately, and compared with ``verify(gold, pred)`` in that order (it is not symmetric).
Predictions longer than `MAX_ANSWER_CHARS` are not parsed (counted as unparseable): no
benchmark answer comes near that, and SymPy spends seconds on long junk.

Timeouts. math-verify's own timeouts use a one-shot ``signal.alarm``: whole seconds, main
thread only, and lost when the alarm lands in a gc callback or ``__del__`` (Python prints
"Exception ignored in ..." and the parse then runs unbounded; seen in our tests, 25-46 s over
a 0.5 s budget). So math-verify runs with its timeouts off, and `check_answer`:

- in the main thread (and when no `VerifierPool` is passed) runs it in-process under our own
  SIGALRM timer (`_call_with_deadline`): one budget of `timeout_s` for both parses and the
  comparison, re-fired every 50 ms until the call returns, raising only while the guarded
  call is on the stack (never in cleanup or caller code). A SIGALRM timer the caller had set
  is re-armed afterwards with what was left of it.
- off the main thread (worker threads, thread pools), or whenever a `VerifierPool` is passed,
  sends the pair to a persistent worker process (``python -P rewards.py``, so the worker
  imports math-verify but not the antisd package or torch). The worker runs the same timed
  in-process check (soft deadline, no restart); the parent waits at most
  ``timeout_s + grace_s`` for the reply and otherwise kills the worker (hard deadline, which
  also covers hangs in C code and crashes) and starts a fresh one on the next call.
  Workers are plain subprocesses (not `multiprocessing`), so they also work inside daemonic
  DataLoader workers, and a pool notices a fork and never talks to its parent's workers.

Every call ends in exactly one `Outcome`; `RewardStats` counts them. Nothing raises:
every exception becomes ``Outcome.ERROR`` (KeyboardInterrupt and SystemExit still pass).
"""

from __future__ import annotations

import enum
import gc
import json
import logging
import math
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, fields
from types import CodeType, FrameType
from typing import Any

from math_verify import grader as _mv_grader
from math_verify import parse, verify
from math_verify import parser as _mv_parser

logger = logging.getLogger(__name__)

MAX_ANSWER_CHARS = 1000
"""Predictions longer than this are not parsed (`Outcome.PRED_UNPARSEABLE`)."""

# ---------------------------------------------------------------------------------------
# Extraction
# ---------------------------------------------------------------------------------------

_BOX_OPEN_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANSWER_LINE_RE = re.compile(
    r"^[ \t>#*_]*(?:final[ \t]+)?answer[ \t*_]*[:\uff1a](?P<value>[^\n]*)$", re.IGNORECASE | re.MULTILINE
)
_FINAL_PHRASE_RE = re.compile(r"final answer is(?P<value>[^\n]*)", re.IGNORECASE)
_MATH_SPAN_RE = re.compile(r"\$\$(.+?)\$\$|\$(.+?)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]")
_SENTENCE_END_RE = re.compile(r"\.(?:\s|$)")
_I_HOPE_RE = re.compile(r"I hope", re.IGNORECASE)


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


def extract_answer(completion: str) -> tuple[str | None, str]:
    """(answer text, how); how is "boxed", "unclosed_box", "answer_line", "final_answer_phrase"
    or "none". Rules in the module docstring."""
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
    if not candidates:
        return None, "none"
    _, value, how = max(candidates)
    return value, how


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


# ---------------------------------------------------------------------------------------
# Outcomes and statistics
# ---------------------------------------------------------------------------------------


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


_COUNTER_OF = {
    Outcome.CORRECT: "n_correct",
    Outcome.WRONG: "n_wrong",
    Outcome.NO_ANSWER: "n_no_answer",
    Outcome.UNCLOSED_BOX: "n_unclosed_box",
    Outcome.FORMAT_VIOLATION: "n_format_violations",
    Outcome.GOLD_UNPARSEABLE: "n_gold_unparseable",
    Outcome.PRED_UNPARSEABLE: "n_pred_unparseable",
    Outcome.TIMEOUT: "n_timeouts",
    Outcome.ERROR: "n_errors",
}


@dataclass
class RewardStats:
    """Counts of outcomes; every counter but n_calls counts one `Outcome`, and they sum to
    n_calls. Not locked: give each thread its own and `merge` them."""

    n_calls: int = 0
    n_correct: int = 0
    n_wrong: int = 0
    n_no_answer: int = 0
    n_unclosed_box: int = 0
    n_format_violations: int = 0
    n_gold_unparseable: int = 0
    n_pred_unparseable: int = 0
    n_timeouts: int = 0
    n_errors: int = 0

    def record(self, outcome: Outcome) -> None:
        self.n_calls += 1
        name = _COUNTER_OF[outcome]
        setattr(self, name, getattr(self, name) + 1)

    def merge(self, other: RewardStats) -> None:
        for field in fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))

    def as_dict(self, prefix: str = "reward") -> dict[str, float]:
        """``{prefix}/n_calls``, ``{prefix}/accuracy`` and ``{prefix}/<outcome>_frac`` (0.0 when empty)."""
        n = max(self.n_calls, 1)
        out = {f"{prefix}/n_calls": float(self.n_calls), f"{prefix}/accuracy": self.n_correct / n}
        for outcome, name in _COUNTER_OF.items():
            if outcome is not Outcome.CORRECT:
                out[f"{prefix}/{outcome.value}_frac"] = getattr(self, name) / n
        return out


# ---------------------------------------------------------------------------------------
# In-process verification under our own SIGALRM deadline (main thread only)
# ---------------------------------------------------------------------------------------

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
    """math-verify parse of the normalised answer, boxed first, then in ``$...$``."""
    answer = _normalize(answer)
    if not answer:
        return []
    parsed = parse(f"\\boxed{{{answer}}}", parsing_timeout=None, raise_on_error=True)
    if not _has_sympy(parsed):
        dollar = parse(f"${answer}$", parsing_timeout=None, raise_on_error=True)
        parsed = dollar if _has_sympy(dollar) else parsed
    return parsed


def _verify_untimed(gold: str, pred: str) -> Outcome:
    """Parse both and compare with ``verify(gold, pred)``; no timeout of its own."""
    gold_parsed = _parse_answer(gold)
    pred_parsed = _parse_answer(pred)
    # raise_on_error=False: a pair that raises counts as unequal and the other pairs still run.
    if gold_parsed and pred_parsed and verify(gold_parsed, pred_parsed, timeout_seconds=None, raise_on_error=False):
        return Outcome.CORRECT
    if not _has_sympy(gold_parsed):
        return Outcome.GOLD_UNPARSEABLE
    return Outcome.WRONG if _has_sympy(pred_parsed) else Outcome.PRED_UNPARSEABLE


def _verify_inline(gold: str, pred: str, timeout_s: float) -> Outcome:
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
# Worker processes with a hard deadline (any thread)
# ---------------------------------------------------------------------------------------


def _kill_process(proc: subprocess.Popen[bytes], owner_pid: int) -> None:
    """Kill and reap `proc`; a forked child that does not own it only closes its pipe copies."""
    if os.getpid() == owner_pid:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()


class _Worker:
    """One ``python -P rewards.py`` process speaking JSON lines on stdin/stdout."""

    def __init__(self, startup_timeout_s: float) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-P", os.path.abspath(__file__)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,  # a Ctrl-C in the terminal does not kill it mid-call
        )
        self._owner_pid = os.getpid()
        self._buffer = b""
        self._finalizer = weakref.finalize(self, _kill_process, self._proc, self._owner_pid)
        try:
            ready = self._read_line(time.monotonic() + startup_timeout_s)
        except EOFError:
            ready = None
        if ready is None:
            self.kill()
            raise RuntimeError(
                f"reward worker ({sys.executable} -P {__file__}) did not start within "
                f"startup_timeout_s={startup_timeout_s}; is math-verify importable there?"
            )

    @property
    def pid(self) -> int:
        return self._proc.pid

    def alive(self) -> bool:
        return self._proc.poll() is None and os.getpid() == self._owner_pid

    def kill(self) -> None:
        self._finalizer()

    def verify(self, gold: str, pred: str, timeout_s: float, grace_s: float) -> Outcome:
        """Send one pair; kill the worker if no reply within timeout_s + grace_s."""
        request = json.dumps({"gold": gold, "pred": pred, "timeout_s": timeout_s}).encode() + b"\n"
        deadline = time.monotonic() + timeout_s + grace_s
        line = self._read_line(deadline) if self._write_all(request, deadline) else None
        if line is None:
            logger.warning("reward worker %d missed its deadline of %.1f s; restarting it", self.pid, timeout_s + grace_s)
            self.kill()
            return Outcome.TIMEOUT
        return Outcome(json.loads(line)["outcome"])

    def _write_all(self, data: bytes, deadline: float) -> bool:
        """Write `data` to the worker's stdin; False at the deadline (a stuck worker)."""
        assert self._proc.stdin is not None
        fd = self._proc.stdin.fileno()
        view = memoryview(data)
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([], [fd], [], remaining)[1]:
                return False
            view = view[os.write(fd, view[: select.PIPE_BUF]) :]
        return True

    def _read_line(self, deadline: float) -> bytes | None:
        """Next line from the worker, or None at the deadline; EOFError if it exited."""
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise EOFError(f"reward worker {self.pid} exited with code {self._proc.poll()}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line


class VerifierPool:
    """Persistent verification worker processes, each call under a hard deadline.

    A call takes an idle worker (or starts one, ~1.5 s), so concurrent callers get their own
    processes; at most `max_idle` idle workers are kept. Safe to share between threads, and
    after a fork the child starts its own workers. Close it (or use ``with``) when done;
    idle workers also exit when this process exits (their stdin closes).
    """

    def __init__(self, max_idle: int = 4, grace_s: float = 2.0, startup_timeout_s: float = 120.0) -> None:
        if max_idle < 0 or grace_s < 0 or startup_timeout_s <= 0:
            raise ValueError(
                f"max_idle={max_idle} and grace_s={grace_s} must be >= 0 and "
                f"startup_timeout_s={startup_timeout_s} > 0"
            )
        self.max_idle = max_idle
        self.grace_s = grace_s
        self.startup_timeout_s = startup_timeout_s
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def verify(self, gold: str, pred: str, timeout_s: float) -> Outcome:
        """Outcome of parsing and comparing in a worker (raises only if no worker starts).

        An idle worker found dead mid-call (killed while it waited) is replaced and the pair
        retried; a freshly started worker that dies gives `Outcome.ERROR` (the input may be
        what kills it).
        """
        while True:
            worker, fresh = self._acquire()
            try:
                return worker.verify(gold, pred, timeout_s, self.grace_s)
            except (OSError, EOFError) as error:
                logger.warning("reward worker %d died (%s)%s", worker.pid, error, "" if fresh else "; retrying")
                worker.kill()
                if fresh:
                    return Outcome.ERROR
            except (ValueError, KeyError) as error:  # a garbled reply
                logger.warning("reward worker %d sent a bad reply (%s); restarting it", worker.pid, error)
                worker.kill()
                return Outcome.ERROR
            finally:
                self._release(worker)

    def worker_pids(self) -> list[int]:
        """Pids of the idle workers (for tests and monitoring)."""
        with self._lock:
            return [worker.pid for worker in self._idle]

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.kill()

    def __enter__(self) -> VerifierPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _acquire(self) -> tuple[_Worker, bool]:
        """An idle worker (False) or a freshly started one (True)."""
        if os.getpid() != self._pid:  # forked: the idle workers belong to the parent
            for inherited in self._idle:
                inherited.kill()  # closes this process's copies of its pipes, nothing more
            self._idle, self._lock, self._pid = [], threading.Lock(), os.getpid()
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.alive():
                    return worker, False
                worker.kill()
        return _Worker(self.startup_timeout_s), True

    def _release(self, worker: _Worker) -> None:
        with self._lock:
            if worker.alive() and len(self._idle) < self.max_idle and os.getpid() == self._pid:
                self._idle.append(worker)
                return
        worker.kill()


_default_pool: VerifierPool | None = None


def default_pool() -> VerifierPool:
    """The process-wide pool used off the main thread when no pool is passed (made lazily).

    Unlocked on purpose (a lock held across a fork would deadlock the child): two threads
    racing here may each make a pool; the loser's workers die with it when it is collected.
    """
    global _default_pool
    if _default_pool is None:
        _default_pool = VerifierPool()
    return _default_pool


# ---------------------------------------------------------------------------------------
# Public checks
# ---------------------------------------------------------------------------------------


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def check_answer(
    completion: str,
    answer: str,
    *,
    timeout_s: float = 5.0,
    pool: VerifierPool | None = None,
) -> Outcome:
    """Outcome of extracting an answer from `completion` and comparing it with gold `answer`.

    Uses `pool` if given, else in-process math-verify in the main thread and `default_pool()`
    elsewhere (see the module docstring). Never raises on any `completion` or `answer`
    (KeyboardInterrupt/SystemExit aside); a `timeout_s` that is not a positive finite number
    is a programming error and raises ValueError.
    """
    if not 0 < timeout_s < math.inf:
        raise ValueError(f"timeout_s={timeout_s} must be a positive finite number of seconds")
    try:
        if not isinstance(answer, str):
            answer = str(answer)  # datasets sometimes store integer answers
        pred, how = extract_answer(completion)
        if pred is None:
            return Outcome.UNCLOSED_BOX if how == "unclosed_box" else Outcome.NO_ANSWER
        if len(pred) > MAX_ANSWER_CHARS:
            return Outcome.PRED_UNPARSEABLE
        if pool is None and _in_main_thread():
            return _verify_inline(answer, pred, timeout_s)
        return (pool or default_pool()).verify(answer, pred, timeout_s)
    except Exception:  # noqa: BLE001 - a reward must never raise
        logger.warning("answer check failed", exc_info=True)
        return Outcome.ERROR


def math_reward(
    completion: str,
    answer: str,
    *,
    timeout_s: float = 5.0,
    stats: RewardStats | None = None,
    pool: VerifierPool | None = None,
) -> float:
    """1.0 if math-verify judges the extracted answer equal to gold `answer`, else 0.0.

    Records the `Outcome` in `stats` if given. Never raises, never hangs (see `check_answer`).
    """
    outcome = check_answer(completion, answer, timeout_s=timeout_s, pool=pool)
    if stats is not None:
        stats.record(outcome)
    return 1.0 if outcome is Outcome.CORRECT else 0.0


def completion_text(completion: Any) -> str:
    """Text of a TRL completion: a string, or chat messages (the last assistant message's
    content, a string or a list of ``{"type": "text", "text": ...}`` parts). Else ""."""
    if isinstance(completion, str):
        return completion
    if not isinstance(completion, (list, tuple)) or not completion:
        return ""
    messages = [m for m in completion if isinstance(m, dict)]
    assistant = [m for m in messages if m.get("role") == "assistant"] or messages
    content = assistant[-1].get("content") if assistant else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


class MathReward:
    """TRL GRPOTrainer reward function: 1.0 for a correct final answer, else 0.0.

    `format_strict=True` also requires `is_strict_format` (exactly one box, nothing but
    whitespace, a closing math delimiter, a period and `end_token` after it), so a policy
    cannot pad text after its answer or hedge with several boxes; a correct answer in the
    wrong format scores 0 and counts as ``format_violation``. Cumulative counts are in
    ``self.stats``; under TRL each batch's fractions also go to ``log_metric`` and each
    completion's outcome to the ``math_outcome`` column of ``log_extra``.
    """

    def __init__(
        self,
        *,
        timeout_s: float = 5.0,
        format_strict: bool = False,
        end_token: str | None = None,
        pool: VerifierPool | None = None,
        metric_prefix: str = "math_reward",
    ) -> None:
        if not 0 < timeout_s < math.inf:
            raise ValueError(f"timeout_s={timeout_s} must be a positive finite number of seconds per completion")
        self.__name__ = "math_reward"  # TRL reads reward_func.__name__
        self.timeout_s = timeout_s
        self.format_strict = format_strict
        self.end_token = end_token
        self.pool = pool
        self.metric_prefix = metric_prefix
        self.stats = RewardStats()

    def score(self, completion: Any, answer: str) -> Outcome:
        text = completion_text(completion)
        if self.format_strict and not is_strict_format(text, self.end_token):
            return Outcome.FORMAT_VIOLATION
        return check_answer(text, answer, timeout_s=self.timeout_s, pool=self.pool)

    def __call__(self, prompts: list[Any], completions: list[Any], answer: list[str], **kwargs: Any) -> list[float]:
        if len(completions) != len(answer):
            raise ValueError(f"got {len(completions)} completions but {len(answer)} answers; they must pair up")
        outcomes = [self.score(completion, gold) for completion, gold in zip(completions, answer)]
        batch = RewardStats()
        for outcome in outcomes:
            batch.record(outcome)
        self.stats.merge(batch)
        if callable(log_metric := kwargs.get("log_metric")):
            for name, value in batch.as_dict(self.metric_prefix).items():
                log_metric(name, value)
        if callable(log_extra := kwargs.get("log_extra")):
            log_extra("math_outcome", [outcome.value for outcome in outcomes])
        return [1.0 if outcome is Outcome.CORRECT else 0.0 for outcome in outcomes]


# ---------------------------------------------------------------------------------------
# Worker entry point: ``python -P rewards.py`` (started by `_Worker`, not by hand)
# ---------------------------------------------------------------------------------------


def _worker_main() -> None:
    """Answer JSON-line requests {gold, pred, timeout_s} with {outcome} until stdin closes."""
    reply = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must not corrupt replies
    _verify_inline("1", "1", 5.0)  # warm up: compile math-verify's regexes, import SymPy parts
    reply.write(b'{"ready": true}\n')
    reply.flush()
    for line in sys.stdin.buffer:
        try:
            request = json.loads(line)
            outcome = _verify_inline(str(request["gold"]), str(request["pred"]), float(request["timeout_s"]))
        except Exception:  # noqa: BLE001 - a malformed request gets an error reply
            outcome = Outcome.ERROR
        reply.write(json.dumps({"outcome": outcome.value}).encode() + b"\n")
        reply.flush()


if __name__ == "__main__":
    _worker_main()
