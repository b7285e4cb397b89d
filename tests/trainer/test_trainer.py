"""AntiSDTrainer on CPU with a tiny local Qwen3: GRPO equivalence, every method and ablation,
resume equivalence, teacher alignment."""

import json
import math

import pytest
import torch
from trl import GRPOConfig, GRPOTrainer

from antisd.trainer.config import AntiSDConfig
from antisd.trainer.checkpoints import STATE_FILE, last_complete_checkpoint

from trainer_helpers import make_trainer, teacher_and_student_on_the_same_prompt

pytestmark = pytest.mark.slow  # trains tiny models end to end (the fast suite: -m 'not slow')

TEACHER_METRICS = [
    "teacher/entropy_mean", "teacher/entropy_median", "student/entropy_mean", "student/entropy_median",
    "student/perplexity", "pmi/mean", "pmi/neg_frac", "signal/mean", "signal/pos_mass_frac",
    "adv/nonzero_token_frac", "gate/on", "gate/lambda", "gate/statistic", "context/sibling_frac",
    "context/dataset_frac", "context/answer_frac", "context/none_frac", "context/masked_rollout_frac",
    "token_term/size_ratio", "token_term/abs_mean", "token_term/active", "token_term/wrong_nonzero_frac",
    "token_term/wrong_abs_mean",
]
ALWAYS_METRICS = ["reward", "accuracy", "completions/mean_length", "deliberation/token_frac", "loss"]


def _losses(history):
    return [h["loss"] for h in history if "loss" in h]


def test_method_grpo_is_exactly_trl_grpo(tiny_model_path, tmp_path):
    ours = make_trainer(tiny_model_path, tmp_path / "ours", method="grpo", max_steps=3, fast_logprobs=False)
    ours.train()
    theirs = make_trainer(tiny_model_path, tmp_path / "theirs", trainer_cls=GRPOTrainer, config_cls=GRPOConfig,
                          max_steps=3)
    theirs.train()
    ours_l, theirs_l = _losses(ours.state.log_history), _losses(theirs.state.log_history)
    assert len(ours_l) == 3 and any(x != 0 for x in ours_l)
    assert ours_l == theirs_l
    for a, b in zip(ours.state.log_history, theirs.state.log_history):
        for key in ("reward", "grad_norm", "completions/mean_length"):
            if key in b:
                assert a[key] == b[key], key
    for p, q in zip(ours.model.parameters(), theirs.model.parameters()):
        assert torch.equal(p, q)


ABLATIONS = {
    "sd": dict(method="sd"),
    "sd_jsd": dict(method="sd", token_signal="sd_jsd"),
    "antisd": dict(method="antisd"),
    "antisd_rkl": dict(method="antisd", token_signal="antisd_rkl"),
    "no_gate": dict(method="antisd", gate="none"),
    "gate_0.90": dict(method="antisd", gate_down_ratio=0.90),
    "multiplicative": dict(method="antisd", composition="multiplicative"),
    "ppl_gate": dict(method="antisd", gate="student_perplexity"),
    "two_sided_gate": dict(method="antisd", gate_ceiling_ratio=1.0 / 0.93),
    "sequence_centering": dict(method="antisd", token_term_centering="sequence"),
    "batch_cap": dict(method="antisd", token_term_centering="batch_cap"),
    "correct_only": dict(method="antisd", token_term_rollouts="correct"),
}


@pytest.mark.parametrize("name", list(ABLATIONS))
def test_every_method_and_ablation_trains_and_logs(tiny_model_path, tmp_path, name):
    tr = make_trainer(tiny_model_path, tmp_path, **ABLATIONS[name])
    before = [p.detach().clone() for p in tr.model.parameters()]
    tr.train()
    logs = [h for h in tr.state.log_history if "loss" in h]
    assert len(logs) == 2
    for key in ALWAYS_METRICS + TEACHER_METRICS:
        assert key in logs[-1], f"{name}: metric {key} missing"
    for key in ("teacher/entropy_mean", "pmi/mean", "signal/mean", "gate/lambda"):
        assert math.isfinite(logs[-1][key]), f"{name}: {key}={logs[-1][key]}"
    assert logs[0]["gate/lambda"] == (0.5 if ABLATIONS[name].get("gate") == "none" or name.startswith("sd") else 0.0)
    moved = sum(not torch.equal(a, b) for a, b in zip(before, tr.model.parameters()))
    assert moved > 0


def test_grpo_logs_completion_metrics_but_no_teacher(tiny_model_path, tmp_path):
    tr = make_trainer(tiny_model_path, tmp_path, method="grpo")
    tr.train()
    last = [h for h in tr.state.log_history if "loss" in h][-1]
    assert "deliberation/token_frac" in last and "accuracy" in last
    assert "pmi/mean" not in last and tr.gate is None


def test_teacher_with_the_student_prompt_gives_zero_pmi(tiny_model_path, tmp_path):
    """An empty privileged context must give u = 0 on every token (the alignment check)."""
    tr = make_trainer(tiny_model_path, tmp_path, method="antisd")
    batch = [tr.train_dataset[i] for i in range(2) for _ in range(4)]
    t_logps, s_logps, t_ent, s_ent, mask, _ = teacher_and_student_on_the_same_prompt(tr, batch)
    torch.testing.assert_close(t_logps[mask], s_logps[mask], atol=2e-5, rtol=0)
    torch.testing.assert_close(t_ent[mask], s_ent[mask], atol=2e-5, rtol=0)
    # and log-probs are far above uniform for none of this random model, but finite everywhere
    assert torch.isfinite(t_logps[mask]).all()


def test_masked_rollouts_get_no_token_term(tiny_model_path, tmp_path):
    """No sibling, no solution, no answer source -> the rollout's token term is masked."""
    tr = make_trainer(tiny_model_path, tmp_path, method="antisd", gate="none", solution_sources=["dataset"],
                      max_steps=1)
    tr.train()
    last = [h for h in tr.state.log_history if "loss" in h][-1]
    assert 0 < last["context/none_frac"] < 1  # rows with an empty solution column are masked


def _metrics_by_step(history, keys):
    return {h["step"]: {k: h.get(k) for k in keys} for h in history if "loss" in h}


def test_resume_mid_run_matches_uninterrupted_run(tiny_model_path, tmp_path):
    keys = ["loss", "reward", "gate/lambda", "gate/reference", "pmi/mean", "grad_norm", "context/sibling_frac"]
    common = dict(method="antisd", gate_warmup_steps=2, max_steps=5, save_strategy="steps", save_steps=2,
                  lr_scheduler_type="constant")
    full = make_trainer(tiny_model_path, tmp_path / "full", **common)
    full.train()
    expected = _metrics_by_step(full.state.log_history, keys)
    ckpt = tmp_path / "full" / "checkpoint-2"
    state = json.loads((ckpt / STATE_FILE).read_text())
    assert state["gate"]["warmup_stats"] and state["generation_index"] == 2
    newest = max(int(p.name.split("-")[1]) for p in (tmp_path / "full").glob("checkpoint-*"))
    assert last_complete_checkpoint(tmp_path / "full").endswith(f"checkpoint-{newest}")
    (tmp_path / "full" / f"checkpoint-{newest}" / STATE_FILE).unlink()  # an incomplete checkpoint is skipped
    assert not last_complete_checkpoint(tmp_path / "full").endswith(f"checkpoint-{newest}")

    resumed = make_trainer(tiny_model_path, tmp_path / "resumed", **common)
    resumed.train(resume_from_checkpoint=str(ckpt))
    got = _metrics_by_step(resumed.state.log_history, keys)  # holds steps 1-2 from the checkpoint too
    assert set(got) == {1, 2, 3, 4, 5}
    for step in (3, 4, 5):
        for k in keys:
            a, b = got[step][k], expected[step][k]
            assert (a is None and b is None) or a == pytest.approx(b, rel=1e-5, abs=1e-6), (step, k, a, b)
    assert resumed.gate.state_dict() == full.gate.state_dict()


def test_continual_mode_resets_the_gate(tiny_model_path, tmp_path):
    grpo = make_trainer(tiny_model_path, tmp_path / "grpo", method="grpo", max_steps=2,
                        save_strategy="steps", save_steps=2)
    grpo.train()
    ckpt = tmp_path / "grpo" / "checkpoint-2"
    assert json.loads((ckpt / STATE_FILE).read_text())["gate"] is None
    cont = make_trainer(tiny_model_path, tmp_path / "cont", method="antisd", max_steps=4, gate_warmup_steps=1,
                        reset_gate_on_resume=True)
    cont.train(resume_from_checkpoint=str(ckpt))
    logs = [h for h in cont.state.log_history if "loss" in h and h["step"] > 2]
    assert [h["step"] for h in logs] == [3, 4]
    assert logs[0]["gate/lambda"] == 0.0 and logs[0]["gate/warmup"] == 0.0  # fresh 1-step warm-up
    assert logs[1]["gate/lambda"] in (0.0, 0.5)


def test_rollout_dump_has_aligned_per_token_values(tiny_model_path, tmp_path):
    tr = make_trainer(tiny_model_path, tmp_path, method="antisd", dump_rollouts_every=1, max_steps=1)
    tr.train()
    lines = (tmp_path / "rollouts" / "rollouts.jsonl").read_text().splitlines()
    assert len(lines) == 8
    for line in lines:
        r = json.loads(line)
        n = len(r["completion_ids"])
        assert len(r["student_logps"]) == len(r["teacher_logps"]) == len(r["tokens"]) == n
        assert r["source"] in ("sibling", "dataset", "answer", "none")


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match=r"token_signal='kl' is not valid; choose one of \['antisd'"):
        AntiSDConfig(output_dir="/tmp/x", bf16=False, token_signal="kl")
    with pytest.raises(ValueError, match="gate_down_ratio=1.2"):
        AntiSDConfig(output_dir="/tmp/x", bf16=False, gate_down_ratio=1.2)
    with pytest.raises(ValueError, match="unknown placeholders"):
        AntiSDConfig(output_dir="/tmp/x", bf16=False, teacher_template="{prompt}{solution}{hint}")
    c = AntiSDConfig(output_dir="/tmp/x", bf16=False, method="sd")
    assert (c.token_signal, c.gate) == ("sd", "none")


@pytest.mark.parametrize("centering", ["none", "sequence"])
def test_lazy_student_logps_equal_a_separate_student_pass(tiny_model_path, tmp_path, centering):
    """reuse_loss_logps (no extra student forward) gives the same training as the eager path."""
    keys = ["loss", "grad_norm", "pmi/mean", "signal/mean", "gate/lambda", "student/perplexity"]
    runs = {}
    for lazy in (True, False):
        tr = make_trainer(tiny_model_path, tmp_path / str(lazy), method="antisd", gate="none", max_steps=3,
                          reuse_loss_logps=lazy, token_term_centering=centering)
        calls = []
        orig = tr.student_pass
        tr.student_pass = lambda out, _o=orig: calls.append(1) or _o(out)
        tr.train()
        runs[lazy] = (_metrics_by_step(tr.state.log_history, keys), len(calls))
    assert runs[True][1] == 0 and runs[False][1] == 3
    for step, vals in runs[False][0].items():
        for k in keys:
            assert runs[True][0][step][k] == pytest.approx(vals[k], rel=1e-5, abs=1e-7), (step, k)


def test_pruned_generation_serves_trl_generation_and_is_removed_after(tiny_model_path, tmp_path, monkeypatch):
    import antisd.trainer.generation as trainer_module

    calls = []
    real = trainer_module.pruned_generate
    monkeypatch.setattr(trainer_module, "pruned_generate", lambda *a, **k: calls.append(1) or real(*a, **k))
    tr = make_trainer(tiny_model_path, tmp_path, method="antisd", max_steps=2, generation_prune_finished=True,
                      logps_batch_rows=3)
    tr.train()
    assert len(calls) == 2  # one generation batch per step
    assert "generate" not in tr.model.__dict__  # the instance attribute is gone: model.generate is the class's again
    logs = [h for h in tr.state.log_history if "loss" in h]
    assert all(math.isfinite(h["loss"]) and 0 < h["completions/mean_length"] for h in logs)


@pytest.mark.parametrize("value,expected", [("auto", True), ("true", True), ("false", False), (False, False)])
def test_fast_logprobs_auto_is_on_for_cpu_training(tiny_model_path, tmp_path, value, expected):
    tr = make_trainer(tiny_model_path, tmp_path, method="antisd", fast_logprobs=value)
    assert tr.fast_logprobs is expected  # these tests train on CPU
    with pytest.raises(ValueError, match="fast_logprobs='sometimes' is not valid"):
        AntiSDConfig(output_dir=str(tmp_path), bf16=False, fast_logprobs="sometimes")


def test_correct_only_token_term_leaves_wrong_rollouts_their_grpo_advantage(tiny_model_path, tmp_path):
    tr = make_trainer(tiny_model_path, tmp_path, method="antisd", gate="none", token_term_rollouts="correct")
    batch = [tr.train_dataset[i] for i in range(2) for _ in range(4)]
    tr.model.train()
    seen = {}
    real = tr.token_term

    def spy(seq_adv, pending, s_logps, s_ent, token_mask):
        out = real(seq_adv, pending, s_logps, s_ent, token_mask)
        seen.update(seq=seq_adv.clone(), adv=out.clone(), ctx=pending.ctx_mask.clone(), mask=token_mask.clone())
        return out

    tr.token_term = spy
    tr.args.reuse_loss_logps = False  # compose at generation time, where the test can see it
    tr._generate_and_score_completions(batch)
    correct = torch.tensor([c.correct for c in tr.last_contexts])
    assert (~correct).any() and correct.any()
    assert not seen["ctx"][~correct].any()  # no token term on wrong rollouts
    wrong_rows = (~correct).nonzero().squeeze(1)
    for i in wrong_rows.tolist():
        m = seen["mask"][i]
        assert torch.equal(seen["adv"][i][m], seen["seq"][i].expand(int(m.sum())))


@pytest.mark.parametrize("population", ["token_term", "context"])
def test_the_teacher_scores_only_what_the_guard_and_the_gate_use(tiny_model_path, tmp_path, population):
    """Under Eq. 12 the teacher scores the correct rollouts only (population token_term) or every rollout with a
    context (population context); the gate's statistic is the teacher's mean entropy over that population."""
    tr = make_trainer(tiny_model_path, tmp_path, method="antisd", gate="none", token_term_rollouts="correct",
                      gate_population=population)
    batch = [tr.train_dataset[i] for i in range(2) for _ in range(4)]
    tr.model.train()
    seen = {}
    real = tr.teacher_pass

    def spy(contexts, completion_ids, completion_mask, scored=None):
        out = real(contexts, completion_ids, completion_mask, scored)
        seen.update(scored=scored.clone(), ent=out[1].clone(), mask=completion_mask.bool().clone())
        return out

    tr.teacher_pass = spy
    tr._generate_and_score_completions(batch)
    has_ctx = torch.tensor([c.prompt is not None for c in tr.last_contexts])
    correct = torch.tensor([bool(c.correct) for c in tr.last_contexts])
    assert has_ctx.any() and (has_ctx & ~correct).any() and (has_ctx & correct).any()
    want = has_ctx & correct if population == "token_term" else has_ctx
    assert seen["scored"].tolist() == want.tolist()
    assert torch.isnan(seen["ent"][~want]).all()  # rows never scored
    tokens = seen["mask"] & want[:, None]
    assert tr._metrics["train"]["gate/statistic"][-1] == pytest.approx(float(seen["ent"][tokens].mean()), rel=1e-5)


@pytest.mark.parametrize("rollouts", ["all", "correct"])
def test_token_term_size_is_logged_and_zero_on_wrong_rollouts_under_the_guard(tiny_model_path, tmp_path, rollouts):
    """token_term/* reach the logged history every step: with the gate off the term is active; under the
    correct-rollouts guard (Eq. 12) it never touches a wrong rollout, without it it does."""
    tr = make_trainer(tiny_model_path, tmp_path, method="antisd", gate="none", token_term_rollouts=rollouts,
                      max_steps=2)
    tr.train()
    logs = [h for h in tr.state.log_history if "loss" in h]
    assert len(logs) == 2
    for h in logs:
        assert h["token_term/active"] == 1.0 and h["token_term/abs_mean"] > 0
        assert h.get("token_term/size_ratio", 1.0) > 0  # absent when undefined (A_seq = 0 on every context token)
        if rollouts == "correct":
            assert h["token_term/wrong_nonzero_frac"] == 0.0 and h["token_term/wrong_abs_mean"] == 0.0
    if rollouts == "all":
        assert any(h["token_term/wrong_nonzero_frac"] > 0 for h in logs)
