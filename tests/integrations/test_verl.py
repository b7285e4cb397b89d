"""AntiSD in verl's terms (issue 16, item 6): antisd.integrations.verl on CPU, and against verl's own code where verl
is installed (its padding utilities, its GRPO estimator, its batch container, its policy loss). verl is not a
dependency of antisd: the last group is skipped without it (docs/verl.md says how it was run)."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

from antisd.method.advantages import token_level_advantages
from antisd.method.gate import make_gate
from antisd.integrations.verl import (
    CONTEXT_MASK,
    ROLLOUT_CORRECT,
    TEACHER_ENTROPY,
    TEACHER_LOGPS,
    VerlGate,
    antisd_advantages,
    sequence_advantages,
    teacher_batch,
    teacher_prompts_needed,
)
from antisd.lm.logprobs import naive_logps_and_entropies, per_token_logps_and_entropies
from antisd.method.signals import token_signal

PAD = 0


def _student(B=4, P=5, T=6, seed=0):
    """verl's rollout layout: left-padded prompts, right-padded responses (ids 3..)."""
    g = torch.Generator().manual_seed(seed)
    prompt_lens, resp_lens = [P, P - 2, P - 1, 3][:B], [T, 2, T - 1, 4][:B]
    prompts = torch.zeros(B, P, dtype=torch.long)
    pmask = torch.zeros(B, P, dtype=torch.long)
    responses = torch.zeros(B, T, dtype=torch.long)
    rmask = torch.zeros(B, T, dtype=torch.long)
    for i in range(B):
        prompts[i, P - prompt_lens[i]:] = torch.randint(3, 200, (prompt_lens[i],), generator=g)
        pmask[i, P - prompt_lens[i]:] = 1
        responses[i, :resp_lens[i]] = torch.randint(3, 200, (resp_lens[i],), generator=g)
        rmask[i, :resp_lens[i]] = 1
    return prompts, pmask, responses, rmask


def test_teacher_batch_layout():
    prompts, pmask, responses, rmask = _student()
    teacher = [[7, 8, 9, 10, 11, 12, 13], None, [5], [6, 6]]
    tb = teacher_batch(teacher, prompts, pmask, responses, rmask, PAD)
    B, T = responses.shape
    assert tb["prompts"].shape == (B, 7) and tb["input_ids"].shape == (B, 7 + T)
    assert torch.equal(tb["responses"], responses) and torch.equal(tb["input_ids"][:, 7:], responses)
    assert tb[CONTEXT_MASK].tolist() == [True, False, True, True]
    for i, ids in enumerate(teacher):
        want = ids if ids is not None else prompts[i][pmask[i].bool()].tolist()  # no context: its own prompt
        got = tb["prompts"][i][tb["attention_mask"][i, :7].bool()].tolist()
        assert got == want and tb["attention_mask"][i, :7 - len(want)].sum() == 0  # left padding
    real = tb["attention_mask"].bool()
    assert tb["position_ids"][real].min() == 0
    for i in range(B):  # positions count real tokens only, from 0
        assert tb["position_ids"][i][real[i]].tolist() == list(range(int(real[i].sum())))
    with pytest.raises(ValueError, match="empty teacher prompt"):
        teacher_batch([[], None, None, None], prompts, pmask, responses, rmask, PAD)
    with pytest.raises(ValueError, match="B rows"):
        teacher_batch([None], prompts, pmask, responses, rmask, PAD)


def test_teacher_logps_map_back_to_the_responses(tiny_model):
    """The log-probs of the last T positions of the teacher batch are each rollout's response tokens, scored after
    its own teacher prompt: equal to the full-softmax computation on the unpadded sequence."""
    prompts, pmask, responses, rmask = _student()
    teacher = [[7, 8, 9, 10, 11, 12, 13], None, [5], [6, 6]]
    tb = teacher_batch(teacher, prompts, pmask, responses, rmask, PAD)
    T = responses.size(1)
    with torch.no_grad():
        lp, _ = per_token_logps_and_entropies(tiny_model, tb["input_ids"], tb["attention_mask"], T)
        for i in range(responses.size(0)):
            ids = tb["input_ids"][i][tb["attention_mask"][i].bool()][None]  # (1, P_i + T_i)
            n = int(rmask[i].sum())
            ref, _ = naive_logps_and_entropies(tiny_model, ids, torch.ones_like(ids), n)
            torch.testing.assert_close(lp[i, :n], ref[0], atol=2e-5, rtol=0)
            assert torch.all(lp[i, n:] == 0)  # padding targets


def _batch(seed=0, B=4, T=6):
    g = torch.Generator().manual_seed(seed)
    _, _, _, rmask = _student(B=B, T=T, seed=seed)
    seq = torch.tensor([1.0, -1.0, 0.5, 0.0])[:B]
    return {
        "advantages": seq[:, None] * rmask,
        "old_log_probs": -torch.rand(B, T, generator=g) * 3 * rmask,
        TEACHER_LOGPS: -torch.rand(B, T, generator=g) * 3 * rmask,
        TEACHER_ENTROPY: torch.rand(B, T, generator=g) * 2,
        "response_mask": rmask,
        CONTEXT_MASK: torch.tensor([True, True, False, True])[:B],
    }, seq


def test_sequence_advantages_recovers_grpos_scalar():
    batch, seq = _batch()
    torch.testing.assert_close(sequence_advantages(batch["advantages"], batch["response_mask"]), seq)


@pytest.mark.parametrize("composition", ["additive", "multiplicative"])
def test_antisd_advantages_is_the_trainers_token_term(composition):
    batch, seq = _batch()
    adv, stats = antisd_advantages(batch, 0.5, composition=composition)
    mask = batch["response_mask"].bool()
    ctx = mask & batch[CONTEXT_MASK][:, None]
    want = token_level_advantages(seq, batch[TEACHER_LOGPS], batch["old_log_probs"], token_mask=mask, ctx_mask=ctx,
                                  lam=0.5, composition=composition).advantages
    torch.testing.assert_close(adv, want)
    if composition == "additive":  # written out: A_seq + lambda * (-phi(t - s)) on context tokens
        delta = token_signal(batch[TEACHER_LOGPS], batch["old_log_probs"], "antisd")
        torch.testing.assert_close(adv[ctx], (seq[:, None] + 0.5 * delta)[ctx])
    assert torch.all(adv[~mask] == 0)
    torch.testing.assert_close(adv[2][mask[2]], seq[2].expand(int(mask[2].sum())))  # no context: plain A_seq
    u = (batch[TEACHER_LOGPS] - batch["old_log_probs"])[ctx]
    assert stats["pmi/mean"] == pytest.approx(float(u.mean()), abs=1e-6)


def test_own_prompt_gives_plain_grpo(tiny_model):
    """Teacher prompt = the student's prompt everywhere: t = s, u = 0, and the advantages are verl's GRPO ones."""
    prompts, pmask, responses, rmask = _student()
    tb = teacher_batch([None] * 4, prompts, pmask, responses, rmask, PAD)
    student_ids, student_mask = torch.cat([prompts, responses], 1), torch.cat([pmask, rmask], 1)
    T = responses.size(1)
    with torch.no_grad():
        t, _ = per_token_logps_and_entropies(tiny_model, tb["input_ids"], tb["attention_mask"], T)
        s, _ = per_token_logps_and_entropies(tiny_model, student_ids, student_mask, T)
    seq = torch.tensor([1.0, -1.0, 0.5, 0.0])
    batch = {"advantages": seq[:, None] * rmask, "old_log_probs": s, TEACHER_LOGPS: t, "response_mask": rmask,
             CONTEXT_MASK: torch.ones(4, dtype=torch.bool)}
    adv, _ = antisd_advantages(batch, 0.5)
    torch.testing.assert_close(adv, batch["advantages"], atol=1e-5, rtol=0)


def test_missing_fields_are_named():
    batch, _ = _batch()
    del batch[TEACHER_LOGPS]
    with pytest.raises(KeyError, match="teacher_log_probs"):
        antisd_advantages(batch, 0.5)


def test_verl_gate_is_the_trainers_gate_on_the_global_batch():
    params = dict(warmup_steps=2, down_ratio=0.93, up_ratio=1.0, lambda_max=0.5)
    gate, reference = VerlGate("teacher_entropy", params), make_gate("teacher_entropy", **params)
    lams = []
    for step, scale in enumerate([1.0, 1.0, 1.0, 0.5, 1.2]):
        batch, _ = _batch(seed=step)
        batch[TEACHER_ENTROPY] = batch[TEACHER_ENTROPY] * scale
        mask = batch["response_mask"].bool() & batch[CONTEXT_MASK][:, None]
        assert VerlGate().statistic(batch) == pytest.approx(float(batch[TEACHER_ENTROPY][mask].mean()))
        lams.append(gate.update(batch))
        assert lams[-1] == reference.update(float(batch[TEACHER_ENTROPY][mask].mean()))
    assert lams[:2] == [0.0, 0.0] and 0.5 in lams and lams[3] == 0.0  # warm-up, on, off when H falls
    restored = VerlGate("teacher_entropy", params)
    restored.load_state_dict(gate.state_dict())
    assert restored.state_dict() == gate.state_dict()
    batch, _ = _batch()
    batch[CONTEXT_MASK] = torch.zeros(4, dtype=torch.bool)
    assert math.isnan(VerlGate().statistic(batch))  # no context token: NaN, which the gate counts and skips



def test_the_guard_keeps_wrong_rollouts_at_grpo_and_narrows_the_gate():
    """Eq. 12 in verl's terms: with ROLLOUT_CORRECT, an incorrect rollout keeps A_seq, and the gate (population
    token_term) measures the correct rollouts only; population context measures every rollout with a context."""
    batch, seq = _batch()
    correct = torch.tensor([True, False, True, True])
    batch[ROLLOUT_CORRECT] = correct
    mask = batch["response_mask"].bool()
    adv, _ = antisd_advantages(batch, 0.5, token_term_rollouts="correct")
    torch.testing.assert_close(adv[1][mask[1]], seq[1].expand(int(mask[1].sum())))  # wrong: plain A_seq
    carriers = mask & (batch[CONTEXT_MASK] & correct)[:, None]
    want = token_level_advantages(seq, batch[TEACHER_LOGPS], batch["old_log_probs"], token_mask=mask,
                                  ctx_mask=carriers, lam=0.5).advantages
    torch.testing.assert_close(adv, want)
    h = batch[TEACHER_ENTROPY]
    guarded = VerlGate(token_term_rollouts="correct").statistic(batch)
    assert guarded == pytest.approx(float(h[carriers].mean()))
    everyone = VerlGate(token_term_rollouts="correct", population="context").statistic(batch)
    assert everyone == pytest.approx(float(h[mask & batch[CONTEXT_MASK][:, None]].mean()))
    assert teacher_prompts_needed(batch[CONTEXT_MASK], correct, token_term_rollouts="correct").tolist() == \
        (batch[CONTEXT_MASK] & correct).tolist()
    del batch[ROLLOUT_CORRECT]
    with pytest.raises(KeyError, match=ROLLOUT_CORRECT):
        antisd_advantages(batch, 0.5, token_term_rollouts="correct")

# ------------------------------------------------------------------------------------ against verl itself
needs_verl = pytest.mark.skipif(importlib.util.find_spec("verl") is None,
                                reason="verl is not installed (pip install verl; docs/verl.md)")


@needs_verl

def test_verl_padding_utilities_map_teacher_logps_back(tiny_model):
    """verl's own left-right -> no-padding conversion of our teacher batch, per-sequence log-probs in the no-padding
    layout, and verl's no_padding_2_padding back: the same (B, T) teacher log-probs as antisd computes."""
    from tensordict import TensorDict
    from verl.workers.utils.padding import left_right_2_no_padding, no_padding_2_padding

    prompts, pmask, responses, rmask = _student()
    tb = teacher_batch([[7, 8, 9, 10, 11, 12, 13], None, [5], [6, 6]], prompts, pmask, responses, rmask, PAD)
    T = responses.size(1)
    fields = {k: v for k, v in tb.items() if k != CONTEXT_MASK}
    td = left_right_2_no_padding(TensorDict(dict(fields), batch_size=[responses.size(0)]))
    values = []
    with torch.no_grad():
        for ids in td["input_ids"].unbind():  # one packed sequence per rollout
            logits = tiny_model(ids[None]).logits[0].float()
            lp = torch.log_softmax(logits, -1)
            nxt = torch.cat([ids[1:], ids[:1]])  # next-token targets; the last position's is never read back
            values.append(lp.gather(1, nxt[:, None]).squeeze(1))
        packed = torch.nested.nested_tensor_from_jagged(torch.cat(values), offsets=td["input_ids"].offsets())
        back = no_padding_2_padding(packed, TensorDict(dict(fields), batch_size=[4]))
        ours, _ = per_token_logps_and_entropies(tiny_model, tb["input_ids"], tb["attention_mask"], T)
    mask = rmask.bool()
    torch.testing.assert_close(back[mask], ours[mask], atol=2e-5, rtol=0)


@needs_verl
def test_verl_grpo_advantages_compose():
    import numpy as np
    from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage

    batch, _ = _batch()
    rmask = batch["response_mask"]
    rewards = torch.zeros_like(batch["old_log_probs"])
    last = rmask.sum(1) - 1
    rewards[torch.arange(4), last] = torch.tensor([1.0, 0.0, 1.0, 0.0])
    adv, _ = compute_grpo_outcome_advantage(rewards, rmask, np.array(["a", "a", "b", "b"]))
    batch["advantages"] = adv
    seq = sequence_advantages(adv, rmask)
    torch.testing.assert_close(adv, seq[:, None] * rmask)  # verl repeats A_seq on every response token
    out, _ = antisd_advantages(batch, 0.5)
    mask = rmask.bool() & batch[CONTEXT_MASK][:, None]
    delta = token_signal(batch[TEACHER_LOGPS], batch["old_log_probs"], "antisd")
    torch.testing.assert_close(out[mask], (seq[:, None] + 0.5 * delta)[mask])


@needs_verl
def test_verl_policy_loss_takes_token_level_advantages():
    """verl's vanilla PPO loss with our (B, T) advantages, at ratio 1: d loss / d log_prob = -A / (number of tokens)
    (token-mean), i.e. each token is pushed by its own advantage."""
    from omegaconf import OmegaConf
    from verl.trainer.ppo.core_algos import get_policy_loss_fn

    batch, _ = _batch()
    adv, _ = antisd_advantages(batch, 0.5)
    rmask = batch["response_mask"].float()
    config = OmegaConf.create({"clip_ratio": 0.2, "clip_ratio_low": 0.2, "clip_ratio_high": 0.2, "clip_ratio_c": 3.0,
                               "loss_agg_mode": "token-mean", "global_batch_info": {}})
    log_prob = batch["old_log_probs"].clone().requires_grad_(True)
    loss, _ = get_policy_loss_fn("vanilla")(batch["old_log_probs"], log_prob, adv, rmask, "token-mean", config)
    loss.backward()
    torch.testing.assert_close(log_prob.grad, -adv * rmask / rmask.sum(), atol=1e-6, rtol=1e-5)


@needs_verl
def test_verl_dataproto_keeps_the_fields_through_the_dp_split():
    """verl splits the driver's batch evenly over data-parallel ranks: the teacher batch has every rollout (rows
    without a context included), so it splits like the rollout batch and each chunk keeps its context mask."""
    from verl import DataProto

    prompts, pmask, responses, rmask = _student()
    tb = teacher_batch([[7, 8, 9], None, [5], None], prompts, pmask, responses, rmask, PAD)
    data = DataProto.from_dict(tensors=dict(tb))
    chunks = data.chunk(2)
    assert [len(c) for c in chunks] == [2, 2]
    assert torch.equal(torch.cat([c.batch[CONTEXT_MASK] for c in chunks]), tb[CONTEXT_MASK])
