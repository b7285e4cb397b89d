"""antisd.rewards.reward: outcome counts, argument checks, TRL's reward function and the strict format,
real benchmark rows."""

from __future__ import annotations

import pytest

import logging

from antisd.data.shipped import read_rows
from antisd.rewards import MathReward, Outcome, RewardStats, completion_text, gold_parses, math_reward


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


def test_reward_stats_is_the_shared_outcome_counter_with_the_same_metric_names() -> None:
    from antisd.rewards.code.extract import CodeStats
    from antisd.rewards.counts import OutcomeCounts

    stats = RewardStats()
    stats.record(Outcome.CORRECT)
    stats.record(Outcome.TIMEOUT)
    assert isinstance(stats, OutcomeCounts) and (stats.n_calls, stats.n_correct, stats.n_timeouts) == (2, 1, 1)
    assert list(stats.as_dict()) == [f"reward/{name}" for name in (
        "n_calls", "accuracy", "wrong_frac", "no_answer_frac", "unclosed_box_frac", "format_violation_frac",
        "gold_unparseable_frac", "pred_unparseable_frac", "timeout_frac", "error_frac")]
    assert stats.as_dict("math_reward")["math_reward/timeout_frac"] == 0.5
    with pytest.raises(TypeError, match="takes the outcome and 0 flag"):
        stats.record(Outcome.CORRECT, True)
    with pytest.raises(TypeError, match="cannot merge a CodeStats into a RewardStats"):
        stats.merge(CodeStats())
    assert stats.n_calls == 2


@pytest.mark.parametrize("timeout_s", [0.0, -1.0, float("inf"), float("nan")])
def test_bad_timeout_is_a_programming_error(timeout_s: float) -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        math_reward("\\boxed{1}", "1", timeout_s=timeout_s)
    with pytest.raises(ValueError, match="timeout_s"):
        MathReward(timeout_s=timeout_s)


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


def test_unparseable_gold_never_earns_reward_is_counted_and_warned_once(caplog) -> None:
    reward = MathReward()
    metrics: dict[str, float] = {}
    answers = ["\\begin{pmatrix} 1 &"] * 2 + ["1"] * 2
    kwargs = dict(prompts=["p"] * 4, completions=["\\boxed{1}"] * 4, answer=answers, problem_id=["bad", "bad", "ok", "ok"],
                  log_metric=metrics.__setitem__)
    with caplog.at_level(logging.WARNING, logger="antisd.rewards.reward"):
        assert reward(**kwargs) == [0.0, 0.0, 1.0, 1.0]
        assert reward(**kwargs) == [0.0, 0.0, 1.0, 1.0]
    assert metrics["reward/gold_unparseable_frac"] == 0.5 and metrics["math_reward/gold_unparseable_frac"] == 0.5
    warnings = [r.getMessage() for r in caplog.records if "cannot parse" in r.getMessage()]
    assert len(warnings) == 1 and "1 problem(s)" in warnings[0] and ": bad." in warnings[0]
    assert reward.stats.n_gold_unparseable == 4
    no_answer = MathReward()  # a completion without an answer still counts as gold_unparseable for such a row
    assert no_answer.score("nothing", "\\begin{pmatrix} 1 &") is Outcome.GOLD_UNPARSEABLE
    assert gold_parses("1") and not gold_parses("\\begin{pmatrix} 1 &") and not gold_parses("2" * 1001)


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
    return read_rows(name)[:n]


def test_math500_solutions_score_one() -> None:
    stats = RewardStats()
    for row in _rows("math500", 25):
        assert math_reward(row["solution"], row["answer"], stats=stats) == 1.0, row["id"]
    assert stats.n_correct == 25


def test_aime_answers_score_one_unpadded() -> None:
    for row in _rows("aime2024", 30):
        assert math_reward(f"so \\boxed{{{int(row['answer'])}}}", row["answer"]) == 1.0, row["id"]
        assert math_reward(f"so \\boxed{{{int(row['answer']) + 1}}}", row["answer"]) == 0.0, row["id"]


def test_flexible_answer_extraction_rewards_a_bare_final_number() -> None:
    completions = ["5 + 2 is 7.", "5 + 2 = 9", "\\boxed{7}", "I think 7 but \\boxed{9}"]
    assert MathReward()([None] * 4, completions, answer=["7"] * 4) == [0.0, 0.0, 1.0, 0.0]
    flexible = MathReward(answer_extraction="flexible")
    assert flexible([None] * 4, completions, answer=["7"] * 4) == [1.0, 0.0, 1.0, 0.0]
    assert flexible.stats.n_no_answer == 0
    assert math_reward("so it is 12", "12", extraction="flexible") == 1.0 and math_reward("so it is 12", "12") == 0.0
    with pytest.raises(ValueError, match="answer_extraction='loose'"):
        MathReward(answer_extraction="loose")
