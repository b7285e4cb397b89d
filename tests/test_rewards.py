"""Tests for antisd.rewards: extraction, math-verify checks, timeouts, worker processes, TRL hook."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from antisd import rewards
from antisd.rewards import (
    MathReward,
    Outcome,
    RewardStats,
    VerifierPool,
    check_answer,
    completion_text,
    extract_answer,
    extract_boxed,
    is_strict_format,
    math_reward,
)

from paths import SHARED_DATA  # noqa: E402

DATA = SHARED_DATA
# math-verify 0.9.0's time grows exponentially with nested bare braces: ~1 s at depth 5,
# ~7 s at 12, ~19 s at 15; at 50 it parses for >10 s and compares for >60 s.
PATHOLOGICAL = "\\boxed{" + "{" * 50 + "1" + "}" * 50 + "}"


@pytest.fixture(scope="module")
def pool():
    with VerifierPool(max_idle=2, grace_s=1.0) as verifier_pool:
        yield verifier_pool


# ---- extraction ------------------------------------------------------------------------


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


# ---- verification -----------------------------------------------------------------------


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
        ("\\boxed{" + "1" * (rewards.MAX_ANSWER_CHARS + 1) + "}", "1", Outcome.PRED_UNPARSEABLE),
        ("\\boxed{42}", "", Outcome.GOLD_UNPARSEABLE),
    ],
)
def test_incorrect_pairs(completion: str, gold: str, outcome: Outcome) -> None:
    stats = RewardStats()
    assert math_reward(completion, gold, stats=stats) == 0.0
    assert check_answer(completion, gold) is outcome
    assert getattr(stats, rewards._COUNTER_OF[outcome]) == stats.n_calls == 1


def test_integer_gold_is_accepted() -> None:
    assert math_reward("\\boxed{42}", 42) == 1.0  # type: ignore[arg-type]


def test_verify_gets_gold_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """verify(gold, pred) is not symmetric: the gold parse must be the first argument."""
    calls = []
    real_verify = rewards.verify

    def spy(gold, pred, **kwargs):
        calls.append((gold, pred))
        return real_verify(gold, pred, **kwargs)

    monkeypatch.setattr(rewards, "verify", spy)
    assert math_reward("\\boxed{x=3}", "3") == 1.0
    assert calls and all(str(item) == "3" for gold, _ in calls for item in gold)
    assert all("x" in str(pred[0]) for _, pred in calls)


def test_stats_as_dict() -> None:
    stats = RewardStats()
    assert stats.as_dict()["reward/accuracy"] == 0.0
    for completion in ("\\boxed{1}", "\\boxed{2}", "none", "\\boxed{1"):
        math_reward(completion, "1", stats=stats)
    d = stats.as_dict()
    assert d["reward/n_calls"] == 4.0
    assert d["reward/accuracy"] == d["reward/wrong_frac"] == d["reward/no_answer_frac"] == 0.25
    assert d["reward/unclosed_box_frac"] == 0.25
    assert sum(v for k, v in d.items() if k.endswith("_frac")) + d["reward/accuracy"] == pytest.approx(1.0)
    other = RewardStats()
    other.merge(stats)
    assert other == stats


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


@pytest.mark.parametrize("timeout_s", [0.0, -1.0, float("inf"), float("nan")])
def test_bad_timeout_is_a_programming_error(timeout_s: float) -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        math_reward("\\boxed{1}", "1", timeout_s=timeout_s)
    with pytest.raises(ValueError, match="timeout_s"):
        MathReward(timeout_s=timeout_s)


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
            except rewards._Deadline:
                if not swallowed:  # swallow the first one, as "Exception ignored in ..." does
                    swallowed.append(True)
                    continue
                raise
        return Outcome.CORRECT

    start = time.monotonic()
    assert rewards._call_with_deadline(stubborn, (), 0.2) is Outcome.TIMEOUT
    assert swallowed and time.monotonic() - start < 2.0


def test_alarm_handler_raises_only_inside_the_guarded_call() -> None:
    def body() -> Outcome:
        def __del__() -> None:  # a finalizer would swallow the raise: wait for the next tick
            assert rewards._on_alarm(signal.SIGALRM, sys._getframe()) is None

        __del__()
        with pytest.raises(rewards._Deadline):
            rewards._on_alarm(signal.SIGALRM, sys._getframe())
        return Outcome.CORRECT

    assert rewards._guarded_call(body, ()) is Outcome.CORRECT
    assert rewards._on_alarm(signal.SIGALRM, sys._getframe()) is None  # outside: no raise


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
        assert signal.getsignal(signal.SIGALRM) is not rewards._on_alarm and not fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ---- other threads and worker processes ---------------------------------------------------------


def test_non_main_thread_uses_pool(pool: VerifierPool) -> None:
    results: list[float] = []
    thread = threading.Thread(target=lambda: results.append(math_reward("\\boxed{1/576}", "\\frac{1}{576}", pool=pool)))
    thread.start()
    thread.join(timeout=120)
    assert results == [1.0]
    with ThreadPoolExecutor(max_workers=2) as executor:
        scores = list(executor.map(lambda c: math_reward(c, "025", pool=pool), ["\\boxed{25}", "\\boxed{24}"] * 3))
    assert scores == [1.0, 0.0] * 3


def test_thread_without_pool_uses_default_pool() -> None:
    with ThreadPoolExecutor(max_workers=1) as executor:
        assert executor.submit(math_reward, "\\boxed{\\frac{1}{2}}", "0.5").result(timeout=120) == 1.0
    rewards.default_pool().close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(content=st.lists(st.sampled_from(["\ud800", "\x00", "\n", "é", "∑", "\\", "$", "\\frac", "2,125", "\\,", "7", "x"]), max_size=10).map("".join))
def test_pool_transports_any_text(pool: VerifierPool, content: str) -> None:
    """Lone surrogates, NULs and newlines survive the JSON-lines protocol; same result as inline.

    (No braces here: math-verify's time grows exponentially with brace nesting, see PATHOLOGICAL.)"""
    completion = f"\\boxed{{{content}}}"
    assert check_answer(completion, content, timeout_s=2.0, pool=pool) is check_answer(completion, content, timeout_s=2.0)


def test_worker_soft_timeout_keeps_worker(pool: VerifierPool) -> None:
    stats = RewardStats()
    math_reward("\\boxed{1}", "1", pool=pool)  # make sure one worker is idle
    before = pool.worker_pids()
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=1) as executor:
        assert executor.submit(math_reward, PATHOLOGICAL, "1", timeout_s=0.5, stats=stats, pool=pool).result() == 0.0
    assert stats.n_timeouts == 1
    assert time.monotonic() - start < 5.0
    assert set(pool.worker_pids()) & set(before)  # caught inside the worker: no restart


def test_worker_hard_deadline_restarts_a_stuck_worker() -> None:
    with VerifierPool(max_idle=1, grace_s=0.5) as stuck_pool:
        assert stuck_pool.verify("1", "1", 1.0) is Outcome.CORRECT
        (pid,) = stuck_pool.worker_pids()
        os.kill(pid, signal.SIGSTOP)  # a hang no signal inside the worker can end
        start = time.monotonic()
        assert stuck_pool.verify("1", "1", 0.5) is Outcome.TIMEOUT
        assert time.monotonic() - start < 3.0
        assert stuck_pool.worker_pids() == []
        assert stuck_pool.verify("2", "2", 5.0) is Outcome.CORRECT
        assert stuck_pool.worker_pids() != [pid]


def test_worker_crash_between_calls_is_survived(pool: VerifierPool) -> None:
    assert pool.verify("1", "1", 5.0) is Outcome.CORRECT
    for pid in pool.worker_pids():
        os.kill(pid, signal.SIGKILL)
    assert pool.verify("3", "3", 5.0) is Outcome.CORRECT


def test_forked_child_gets_its_own_worker(pool: VerifierPool) -> None:
    assert pool.verify("1", "1", 5.0) is Outcome.CORRECT
    parent_pids = pool.worker_pids()
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            outcome = pool.verify("\\frac{1}{2}", "0.5", 5.0)
            os.write(write_fd, json.dumps([outcome.value, pool.worker_pids()]).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as reader:
        outcome, child_pids = json.loads(reader.read())
    os.waitpid(child, 0)
    assert outcome == "correct"
    assert not set(child_pids) & set(parent_pids)
    assert pool.verify("2", "2", 5.0) is Outcome.CORRECT  # the parent's workers are intact


# ---- TRL reward function -------------------------------------------------------------------------


def test_completion_text_formats() -> None:
    assert completion_text("plain") == "plain"
    chat = [{"role": "assistant", "content": "\\boxed{1}"}]
    assert completion_text(chat) == "\\boxed{1}"
    parts = [{"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
    assert completion_text(parts) == "ab"
    assert completion_text(None) == completion_text([]) == ""


def test_math_reward_callable_for_trl() -> None:
    reward = MathReward()
    assert reward.__name__ == "math_reward"
    metrics: dict[str, float] = {}
    extra: dict[str, list] = {}
    completions = [
        [{"role": "assistant", "content": "so \\boxed{25}"}],
        [{"role": "assistant", "content": "so \\boxed{24}"}],
        "Answer: 25",
        [{"role": "assistant", "content": "no idea"}],
    ]
    scores = reward(
        prompts=["p"] * 4,
        completions=completions,
        answer=["025"] * 4,
        completion_ids=[[1]] * 4,
        trainer_state=None,
        log_metric=metrics.__setitem__,
        log_extra=extra.__setitem__,
    )
    assert scores == [1.0, 0.0, 1.0, 0.0]
    assert reward.stats.n_calls == 4 and reward.stats.n_correct == 2 and reward.stats.n_no_answer == 1
    assert metrics["math_reward/accuracy"] == 0.5
    assert extra["math_outcome"] == ["correct", "wrong", "correct", "no_answer"]
    with pytest.raises(ValueError, match="pair up"):
        reward(prompts=["p"], completions=["a", "b"], answer=["1"])


@pytest.mark.parametrize(
    ("completion", "score"),
    [
        ("work... \\boxed{42}", 1.0),
        ("work... $\\boxed{42}$.\n", 1.0),
        ("work... \\[\\boxed{42}\\]", 1.0),
        ("work... \\boxed{42}<|im_end|>", 1.0),
        ("work... \\boxed{42} and more words", 0.0),
        ("\\boxed{41} no wait \\boxed{42}", 0.0),
        ("Answer: 42", 0.0),
        ("work... \\boxed{41}", 0.0),
    ],
)
def test_format_strict(completion: str, score: float) -> None:
    strict = MathReward(format_strict=True, end_token="<|im_end|>")
    assert strict(prompts=["p"], completions=[completion], answer=["42"]) == [score]
    if score == 0.0 and "41" not in completion:
        assert strict.stats.n_format_violations == 1
        assert MathReward()(prompts=["p"], completions=[completion], answer=["42"]) == [1.0]


# ---- real benchmark rows ---------------------------------------------------------------------------


def _rows(name: str, n: int) -> list[dict]:
    path = DATA / name
    if not path.exists():
        pytest.skip(f"{path} is missing")
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for _, line in zip(range(n), lines)]


def test_math500_solutions_score_one() -> None:
    stats = RewardStats()
    for row in _rows("math500.jsonl", 25):
        assert math_reward(row["solution"], row["answer"], stats=stats) == 1.0, row["id"]
    assert stats.n_correct == 25


def test_aime_answers_score_one_unpadded() -> None:
    for row in _rows("aime2024.jsonl", 30):
        assert math_reward(f"so \\boxed{{{int(row['answer'])}}}", row["answer"]) == 1.0, row["id"]
        assert math_reward(f"so \\boxed{{{int(row['answer']) + 1}}}", row["answer"]) == 0.0, row["id"]
