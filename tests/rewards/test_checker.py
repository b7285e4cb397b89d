"""antisd.rewards.checker: math-verify outcomes of known pairs, never raising or hanging, the SIGALRM
deadline, and the worker script's imports."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from antisd.rewards import MAX_ANSWER_CHARS, Outcome, RewardStats, check_answer, checker, math_reward
from antisd.rewards.pool import WORKER_SCRIPT
from antisd.rewards.reward import RewardStats

from reward_helpers import PATHOLOGICAL


@pytest.mark.parametrize(
    ("completion", "gold"),
    [
        ("\\boxed{42}", "42"),
        ("\\boxed{25}", "025"),  # AIME zero padding
        ("\\boxed{025}", "25"),
        ("\\boxed{1/576}", "\\frac{1}{576}"),
        ("\\boxed{\\frac{1}{2}}", "0.5"),
        ("\\boxed{\\frac{\\sqrt{2}}{2}}", "\\frac{1}{\\sqrt{2}}"),
        ("\\boxed{3\\sqrt{2}}", "\\sqrt{18}"),
        ("\\boxed{2125}", "2,125"),
        ("\\boxed{2,125}", "2125"),
        ("\\boxed{10\\,000}", "10000"),  # math-verify alone reads this as 10*0
        ("\\boxed{2\\,125}", "2125"),  # ... and this as 127
        ("\\boxed{ 7 }", "7"),  # the toy world's format
        ("\\fbox{-3}", "-3"),
        ("\\boxed{x = 3}", "3"),
        ("\\boxed{(3, \\frac{\\pi}{2})}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("\\boxed{\\$18}", "18"),
        ("\\boxed{104.}", "104"),
        ("first \\boxed{3}, finally \\boxed{4}", "4"),
        ("Answer: 42", "42"),
        ("The final answer is $\\frac{1}{3}$. I hope it is correct.", "1/3"),
    ],
)
def test_correct_pairs(completion: str, gold: str) -> None:
    stats = RewardStats()
    assert math_reward(completion, gold, stats=stats) == 1.0
    assert stats.n_correct == stats.n_calls == 1


@pytest.mark.parametrize(
    ("completion", "gold", "outcome"),
    [
        ("\\boxed{41}", "42", Outcome.WRONG),
        ("\\boxed{4} then \\boxed{3}", "4", Outcome.WRONG),  # the last box wins
        ("\\boxed{\\frac{1}{3}}", "0.33", Outcome.WRONG),
        ("\\boxed{\\sqrt{3}}", "\\sqrt{2}", Outcome.WRONG),
        ("\\boxed{42", "42", Outcome.UNCLOSED_BOX),
        ("I think it is 42", "42", Outcome.NO_ANSWER),
        ("", "42", Outcome.NO_ANSWER),
        ("\\boxed{}", "42", Outcome.PRED_UNPARSEABLE),
        ("\\boxed{" + "1" * (MAX_ANSWER_CHARS + 1) + "}", "1", Outcome.PRED_UNPARSEABLE),
        ("\\boxed{42}", "", Outcome.GOLD_UNPARSEABLE),
        # gold answers are checked first and strictly: no reward "by accident"
        ("\\boxed{ 1 }", "\\begin{pmatrix} 1 &", Outcome.GOLD_UNPARSEABLE),  # a number picked out of bad LaTeX
        ("\\boxed{np.arcsin(10/13)}", "np.arcsin(10/13)", Outcome.GOLD_UNPARSEABLE),  # equal strings, no maths
        ("no answer at all", "1" * (MAX_ANSWER_CHARS + 1), Outcome.GOLD_UNPARSEABLE),  # huge gold: never parsed
        ("\\boxed{\\begin{pmatrix} 1 &}", "1", Outcome.PRED_UNPARSEABLE),
        ("\\boxed{foo.bar(1)}", "1", Outcome.PRED_UNPARSEABLE),
    ],
)
def test_incorrect_pairs(completion: str, gold: str, outcome: Outcome) -> None:
    stats = RewardStats()
    assert math_reward(completion, gold, stats=stats) == 0.0
    assert check_answer(completion, gold) is outcome
    assert getattr(stats, RewardStats.OUTCOMES[outcome]) == stats.n_calls == 1


@pytest.mark.parametrize("answer, parses", [
    ("1", True), ("-1./3", True), ("\\frac{1}{576}", True), ("(1,2]", True), ("\\text{(C)}", True),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", True), ("x = 3", True),
    ("\\begin{pmatrix} 1 &", False), ("np.arcsin(10/13)", False), ("{1", False), ("", False), ("   ", False),
])
def test_strict_parse_of_answers(answer: str, parses: bool) -> None:
    assert bool(checker._parse_answer(answer)) is parses
    assert (check_answer(f"\\boxed{{{answer}}}", answer) is Outcome.CORRECT) is parses


def test_integer_gold_is_accepted() -> None:
    assert math_reward("\\boxed{42}", 42) == 1.0  # type: ignore[arg-type]


def test_verify_gets_gold_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """verify(gold, pred) is not symmetric: the gold parse must be the first argument."""
    calls = []
    real_verify = checker.verify

    def spy(gold, pred, **kwargs):
        calls.append((gold, pred))
        return real_verify(gold, pred, **kwargs)

    monkeypatch.setattr(checker, "verify", spy)
    assert math_reward("\\boxed{x=3}", "3") == 1.0
    assert calls and all(str(item) == "3" for gold, _ in calls for item in gold)
    assert all("x" in str(pred[0]) for _, pred in calls)


# ---- never raise, never hang ----------------------------------------------------------------

_FRAGMENTS = ["\\boxed{", "\\fbox {", "}", "{", "\\", "$", "Answer: ", "final answer is ", "\\frac{", "\\sqrt", "^", "\n", "2,125", "\\,", "é", "∑", "\x00"]
_texts = st.lists(st.one_of(st.sampled_from(_FRAGMENTS), st.text(max_size=6)), max_size=25).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(completion=_texts, gold=st.one_of(st.text(max_size=8), st.sampled_from(["42", "\\frac{1}{2}", "025"])))
def test_random_text_never_raises(completion: str, gold: str) -> None:
    assert math_reward(completion, gold, timeout_s=1.0) in (0.0, 1.0)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(content=_texts)
def test_random_box_content_never_raises(content: str) -> None:
    stats = RewardStats()
    assert math_reward(f"\\boxed{{{content}}}", "1", timeout_s=1.0, stats=stats) in (0.0, 1.0)
    assert stats.n_calls == 1


@pytest.mark.parametrize(
    "completion",
    [
        "word " * 20_000 + "\\boxed{42}",
        "\\boxed{" + "x+" * 50_000 + "1}",
        "\\boxed{" + "{" * 50_000 + "}" * 50_000 + "}",
        "Answer: " + "ab " * 33_000,
        "".join(chr(0x100 + i % 5000) for i in range(100_000)),
    ],
)
def test_100k_completion_returns(completion: str) -> None:
    start = time.monotonic()
    assert math_reward(completion, "42", timeout_s=2.0) in (0.0, 1.0)
    assert time.monotonic() - start < 20.0  # a hang guard, not a benchmark


def test_main_thread_timeout_is_counted() -> None:
    stats = RewardStats()
    start = time.monotonic()
    assert math_reward(PATHOLOGICAL, "1", timeout_s=0.5, stats=stats) == 0.0
    assert stats.n_timeouts == 1
    assert time.monotonic() - start < 3.0


def test_deadline_survives_a_swallowed_alarm() -> None:
    """A one-shot alarm caught by a gc callback or __del__ is lost; ours fires again."""
    swallowed = []

    def stubborn() -> Outcome:
        end = time.monotonic() + 10.0
        while time.monotonic() < end:
            try:
                time.sleep(0.01)
            except checker._Deadline:
                if not swallowed:  # swallow the first one, as "Exception ignored in ..." does
                    swallowed.append(True)
                    continue
                raise
        return Outcome.CORRECT

    start = time.monotonic()
    assert checker._call_with_deadline(stubborn, (), 0.2) is Outcome.TIMEOUT
    assert swallowed and time.monotonic() - start < 2.0


def test_alarm_handler_raises_only_inside_the_guarded_call() -> None:
    def body() -> Outcome:
        def __del__() -> None:  # a finalizer would swallow the raise: wait for the next tick
            assert checker._on_alarm(signal.SIGALRM, sys._getframe()) is None

        __del__()
        with pytest.raises(checker._Deadline):
            checker._on_alarm(signal.SIGALRM, sys._getframe())
        return Outcome.CORRECT

    assert checker._guarded_call(body, ()) is Outcome.CORRECT
    assert checker._on_alarm(signal.SIGALRM, sys._getframe()) is None  # outside: no raise


def test_deadline_leaves_no_timer_and_restores_the_callers() -> None:
    fired = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: fired.append(signum))
    try:
        assert math_reward(PATHOLOGICAL, "1", timeout_s=0.2) == 0.0
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
        signal.setitimer(signal.ITIMER_REAL, 30.0)
        assert math_reward("\\boxed{2}", "2", timeout_s=1.0) == 1.0
        assert 25.0 < signal.getitimer(signal.ITIMER_REAL)[0] < 30.0  # the caller's timer, re-armed
        signal.setitimer(signal.ITIMER_REAL, 0)
        assert signal.getsignal(signal.SIGALRM) is not checker._on_alarm and not fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_worker_script_imports_neither_antisd_nor_torch() -> None:
    """The pool runs ``python -P checker.py``: it must stay free of the package (and so of torch)."""
    probe = ("import runpy, sys; runpy.run_path(sys.argv[1], run_name='probe'); "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('antisd', 'torch', 'transformers')))")
    out = subprocess.run([sys.executable, "-P", "-c", probe, WORKER_SCRIPT], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
