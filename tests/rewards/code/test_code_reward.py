"""CodeReward (antisd.rewards.code.reward): TRL's reward-function contract, 0/1 and fraction rewards, metrics,
no reward (None) for sandbox failures and unusable tasks, and the privileged context it feeds."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from antisd.rewards.code.fusion import SandboxFusionExecutor
from antisd.rewards.code.harness import HarnessConfig
from antisd.rewards.code.sandbox import LocalExecutor
from antisd.rewards.code.score import CodeScorer, make_executor
from antisd.rewards.code.spec import parse_tests
from antisd.method.context import ContextConfig, build_teacher_contexts
from antisd.rewards import CodeReward

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fusion_fake import FakeSandboxFusion  # noqa: E402

SQUARE = "def square(x):\n    return x * x\n"
TESTS = parse_tests(["assert square(2) == 4", "assert square(3) == 9", "assert square(-1) == 1"], SQUARE)
IO_TESTS = parse_tests({"entry_point": "square", "inputs": [[2], [3]], "plus_inputs": [[-4]]}, SQUARE)
BROKEN = parse_tests(["assert square(2) == 5"], SQUARE)  # the reference fails its own test


def fenced(code: str) -> str:
    return f"Here it is.\n```python\n{code}```\n"


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    config = HarnessConfig(cache_dir=str(tmp_path_factory.mktemp("code_cache")))
    with CodeScorer(LocalExecutor("auto"), config, workers=2) as pool:
        yield pool


def test_all_tests_pass_or_zero_with_metrics_and_outcomes(scorer):
    reward = CodeReward(scorer=scorer)
    metrics, extra = {}, {}
    completions = [fenced(SQUARE), fenced("def square(x):\n    return 4\n"), "no code at all",
                   [{"role": "assistant", "content": fenced(SQUARE)}], "```python\ndef square(x):\n"]
    out = reward(None, completions, tests=[TESTS, TESTS, TESTS, IO_TESTS, TESTS], problem_id=list("abcde"),
                 log_metric=metrics.__setitem__, log_extra=extra.__setitem__)
    assert out == [1.0, 0.0, 0.0, 1.0, 0.0]
    assert extra["code_outcome"] == ["passed", "failed", "no_code", "passed", "unclosed_fence"]
    assert metrics["code_reward/n_calls"] == 5 and metrics["code_reward/accuracy"] == pytest.approx(0.4)
    assert metrics["code_reward/extracted_frac"] == pytest.approx(0.6)
    assert metrics["code_reward/no_code_frac"] == pytest.approx(0.2)
    assert metrics["code_reward/unclosed_fence_frac"] == pytest.approx(0.2)
    assert metrics["code_reward/tests_passed_frac"] == pytest.approx((1 + 1 / 3 + 0 + 1 + 0) / 5)
    assert reward.stats.n_passed == 2 and reward.__name__ == "code_reward"


def test_fraction_of_tests_passed(scorer):
    reward = CodeReward(scorer=scorer, fraction=True)
    out = reward(None, [fenced(SQUARE), fenced("def square(x):\n    return 4\n"),
                        fenced("def square(x):\n    return x * x if x > 0 else 0\n"), fenced("raise SystemExit")],
                 tests=[TESTS] * 4)
    assert out[0] == 1.0 and out[1] == pytest.approx(1 / 3) and out[2] == pytest.approx(2 / 3) and out[3] == 0.0


def test_raw_mode_appends_the_completion_to_the_prefix(scorer):
    spec = parse_tests(["assert square(3) == 9"], SQUARE, completion_prefix="def square(x):\n")
    reward = CodeReward(scorer=scorer, mode="raw")
    assert reward(None, ["    return x * x\n", "    return x\n", "   "], tests=[spec] * 3) == [1.0, 0.0, 0.0]


def test_unusable_tasks_and_sandbox_failures_get_no_reward(scorer, tmp_path, caplog):
    reward = CodeReward(scorer=scorer)
    assert reward.prepare([TESTS, BROKEN], ["ok", "broken"]).keys() == {"broken"}
    metrics = {}
    with caplog.at_level("WARNING", logger="antisd.rewards.code.reward"):
        assert reward(None, [fenced(SQUARE)] * 2, tests=[TESTS, BROKEN], problem_id=["ok", "broken"],
                      log_metric=metrics.__setitem__) == [1.0, None]
    assert metrics["code_reward/unusable_task_frac"] == 0.5
    assert "task broken gets no reward (its reference fails its own tests)" in caplog.text
    # the expected results are known (prepared above, cached); then the service fails every run
    config = HarnessConfig(cache_dir=str(tmp_path))
    CodeScorer(LocalExecutor("auto"), config, workers=0).prepare([reward.task(TESTS)])
    failing = SandboxFusionExecutor("http://sandbox:8080", transport=FakeSandboxFusion(sandbox_error="boom"),
                                    max_attempts=1, retry_delay_s=0.0)
    down = CodeReward(scorer=CodeScorer(failing, config, workers=0))
    metrics = {}
    assert down(None, [fenced(SQUARE), "no code"], tests=[TESTS, TESTS], log_metric=metrics.__setitem__) == [None, 0.0]
    assert metrics["code_reward/sandbox_error_frac"] == 0.5


def test_bad_calls_are_programming_errors(scorer):
    with pytest.raises(ValueError, match="needs the dataset's 'tests' column"):
        CodeReward(scorer=scorer)(None, ["x"], answer=["1"])
    with pytest.raises(ValueError, match="must pair up"):
        CodeReward(scorer=scorer)(None, ["x", "y"], tests=[TESTS])
    with pytest.raises(ValueError, match="mode='boxed'"):
        CodeReward(mode="boxed")


def test_sandbox_setting_names_the_executor():
    assert isinstance(make_executor("none"), LocalExecutor) and make_executor("none").requested == "none"
    remote = make_executor("https://sandbox.example:8080/")
    assert isinstance(remote, SandboxFusionExecutor) and remote.endpoint == "https://sandbox.example:8080"


def _contexts(rewards, solutions, config=None):
    prompts = [[{"role": "user", "content": f"task {i // 2}"}] for i in range(len(rewards))]
    completions = [f"completion {i}" for i in range(len(rewards))]
    return build_teacher_contexts(prompts, completions, rewards, [i // 2 for i in range(len(rewards))],
                                  problem_ids=[f"p{i // 2}" for i in range(len(rewards))], solutions=solutions,
                                  answers=[None] * len(rewards), config=config or ContextConfig())


def test_code_rewards_choose_a_passing_sibling_then_the_reference_then_none(scorer):
    """Groups of 2: task 0 has one passing rollout, task 1 none but a reference, task 2 neither."""
    reward = CodeReward(scorer=scorer)
    completions = [fenced(SQUARE), fenced("def square(x):\n    return 0\n"), "no code", "no code", "no", "no"]
    no_ref = parse_tests(["assert square(2) == 4"], None)
    rewards = reward(None, completions, tests=[TESTS, TESTS, TESTS, TESTS, no_ref, no_ref])
    assert rewards == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    contexts = _contexts(rewards, [SQUARE, SQUARE, SQUARE, SQUARE, None, None])
    assert [c.source for c in contexts] == ["dataset", "sibling", "dataset", "dataset", "none", "none"]
    assert contexts[1].sibling_index == 0 and "completion 0" in contexts[1].prompt[-1]["content"]
    assert "the attempt below was checked and is correct" in contexts[0].prompt[-1]["content"]
    assert "return x * x" in contexts[2].prompt[-1]["content"]  # the reference solution
    assert not any(c.source == "answer" for c in contexts)  # no answer column on code data


def test_fraction_rewards_need_every_test_for_correct(scorer):
    """A rollout passing 2 of 3 tests (reward 2/3) is no sibling solution at correct_threshold 1.0."""
    reward = CodeReward(scorer=scorer, fraction=True)
    partial = fenced("def square(x):\n    return x * x if x > 0 else 0\n")
    rewards = reward(None, [partial, fenced("def square(x):\n    return 0\n")], tests=[TESTS, TESTS])
    assert rewards[0] == pytest.approx(2 / 3)
    assert _contexts(rewards, [SQUARE, SQUARE])[1].source == "sibling"  # the default threshold 0.5 is too low
    strict = _contexts(rewards, [SQUARE, SQUARE], ContextConfig(correct_threshold=1.0))
    assert [c.source for c in strict] == ["dataset", "dataset"] and not strict[0].correct
