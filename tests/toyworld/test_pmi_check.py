"""antisd.toyworld.pmi_check: token classes, completion log-probs, the check on a tiny policy."""

from __future__ import annotations

import pytest

from antisd.toyworld.tasks import make_problems


def test_classify_tokens():
    from antisd.toyworld.pmi_check import classify_tokens

    words = "try 4 : 2 * 4 = 8 + 1 = 9 small . Wait , try 5 : 2 * 5 = 10 + 1 = 11 yes . \\boxed{ 5 } <eos>".split()
    cats = classify_tokens(words, "5")
    assert cats[words.index("Wait")] == "after_fail"
    assert cats[1] == "wrong_candidate" and cats[words.index("Wait") + 3] == "correct_candidate"
    assert cats[-3] == "boxed_number" and cats[-1] == "eos"
    assert cats.count("other") == len(words) - 5


def test_completion_logps_pmi_is_zero_without_context_and_padding_free(tiny_policy):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from antisd.toyworld.pmi_check import completion_logps

    _, _, path = tiny_policy
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    rows = [p.row() for p in make_problems(4, seed=9)]
    prompts = tok([r["prompt"] for r in rows], add_special_tokens=False)["input_ids"]
    comps = tok(["try 3 : 2 * 3 = 6 + 1 = 7 yes .", "try 2 : 5", "\\boxed{ 4 }", "Wait , try"], add_special_tokens=False)["input_ids"]
    batched, _ = completion_logps(model, prompts, comps, tok.pad_token_id)
    again, _ = completion_logps(model, prompts, comps, tok.pad_token_id)
    for b, a in zip(batched, again):
        assert torch.equal(a - b, torch.zeros_like(a))  # identical prompts: u = 0 exactly
    for i in range(len(rows)):  # left/right padding does not change the result
        single, _ = completion_logps(model, [prompts[i]], [comps[i]], tok.pad_token_id)
        torch.testing.assert_close(single[0], batched[i], atol=1e-5, rtol=1e-5)


def test_pmi_check_runs_on_the_tiny_policy(tiny_policy):
    pytest.importorskip("antisd.method.context")
    from antisd.toyworld.pmi_check import format_table, run_pmi_check

    _, _, path = tiny_policy
    res = run_pmi_check(path, n_problems=4, group_size=2, max_new_tokens=24)
    assert res["n_rollouts"] == 8 and set(res["forms"]) == {"answer", "sibling"}
    cats = res["forms"]["answer"]["categories"]
    assert sum(c["n"] for c in cats.values()) > 0
    assert "| answer |" in format_table(res)
    c1 = res["forms"]["answer"]["claim1"]
    assert set(c1) == {"deliberation_after_fail", "correct_candidate"}
    for v in c1.values():
        assert v["n"] == 0 or v["lo"] <= v["mean"] <= v["hi"]


def test_rollout_bootstrap_against_hand_values():
    from antisd.toyworld.pmi_check import rollout_bootstrap

    out = rollout_bootstrap([[1.0, 3.0], [], [2.0]], n_boot=500)
    assert out["n"] == 3 and out["rollouts"] == 2 and out["mean"] == pytest.approx(2.0)
    # resampling whole rollouts: every resample's mean is 2.0 (both rollouts), 2.0 ([1, 3] twice) or 2.0 ([2] twice)
    assert out["lo"] == pytest.approx(2.0) and out["hi"] == pytest.approx(2.0)
    spread = rollout_bootstrap([[-1.0]] * 10 + [[1.0, 1.0, 1.0]] * 10, n_boot=2000)
    assert spread["mean"] == pytest.approx(20 / 40) and spread["lo"] < 0.5 < spread["hi"]
    # whole rollouts, not tokens: the interval is wider than a token bootstrap would be
    assert spread["hi"] - spread["lo"] > 0.3
    assert rollout_bootstrap([[], []]) == {"n": 0, "rollouts": 0}
