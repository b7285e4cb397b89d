"""antisd.rewards.pool: checks from other threads, the worker processes' soft and hard deadlines,
crashes and forks."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from antisd.rewards import Outcome, RewardStats, VerifierPool, check_answer, default_pool, math_reward

from reward_helpers import PATHOLOGICAL


@pytest.fixture(scope="module")
def pool():
    with VerifierPool(max_idle=2, grace_s=1.0) as verifier_pool:
        yield verifier_pool


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
    default_pool().close()


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
