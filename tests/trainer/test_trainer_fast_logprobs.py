"""``fast_logprobs`` (antisd.lm.logprobs in place of TRL's fused LM head) and the teacher pass's
batching: same losses as TRL's path, and the teacher pass equals the naive full-softmax
computation on each unpadded sequence whatever the batching."""

import pytest
import torch

from antisd.trainer.config import AntiSDConfig
from antisd.method.context import TeacherContext
from antisd.lm.logprobs import naive_logps_and_entropies

from trainer_helpers import make_trainer

pytestmark = pytest.mark.slow  # trains tiny models end to end (the fast suite: -m 'not slow')

KEYS = ["loss", "grad_norm", "entropy", "reward"]


def _history(tr, keys):
    return [{k: h[k] for k in keys if k in h} for h in tr.state.log_history if "loss" in h]


@pytest.mark.parametrize("method", ["grpo", "antisd"])
def test_fast_logprobs_trains_like_trls_fused_head(tiny_model_path, tmp_path, method, monkeypatch):
    import antisd.trainer.core as core
    import antisd.trainer.kernels as kernels

    keys = KEYS + (["pmi/mean", "teacher/entropy_mean", "student/perplexity"] if method == "antisd" else [])
    runs = {}
    for fast in (False, True):
        tr = make_trainer(tiny_model_path, tmp_path / str(fast), method=method, max_steps=3, fast_logprobs=fast,
                          **({"gate": "none"} if method == "antisd" else {}))
        calls = []
        orig = kernels.fast_logps_and_entropies
        monkeypatch.setattr(core, "fast_logps_and_entropies", lambda *a, _o=orig: calls.append(1) or _o(*a))
        tr.train()
        runs[fast] = (_history(tr, keys), [p.detach().clone() for p in tr.model.parameters()], len(calls))
    assert runs[False][2] == 0
    assert runs[True][2] == (3 if method == "grpo" else 6)  # the loss (and the teacher) each step
    assert len(runs[True][0]) == 3
    for slow, fast in zip(runs[False][0], runs[True][0]):
        assert slow.keys() == fast.keys()
        for k in slow:
            assert fast[k] == pytest.approx(slow[k], rel=1e-4, abs=1e-6), k
    # Adam turns rounding-level differences of near-zero gradients into steps of up to lr (1e-3).
    for p, q in zip(runs[False][1], runs[True][1]):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("fast", [False, True])
def test_teacher_pass_equals_naive_per_sequence(tiny_model_path, tmp_path, fast):
    """Rows of different teacher-prompt and completion lengths, several teacher batches, a row
    without a context: each row equals the full-softmax computation on its unpadded sequence."""
    tr = make_trainer(tiny_model_path, tmp_path, method="antisd", fast_logprobs=fast, teacher_batch_size=2)
    tok = tr.processing_class
    B, T = 5, 9
    g = torch.Generator().manual_seed(0)
    completion_ids = torch.randint(3, len(tok), (B, T), generator=g)  # (B, T)
    lengths = [9, 3, 6, 0, 7]
    completion_mask = (torch.arange(T)[None] < torch.tensor(lengths)[:, None]).long()  # (B, T)
    completion_ids = completion_ids.masked_fill(completion_mask == 0, tok.pad_token_id)
    prompts = ["What is 1 + 2? " * k for k in (1, 4, 2, 3, 6)]
    contexts = [TeacherContext(prompt=p, source="dataset", correct=False) for p in prompts]
    contexts[2] = TeacherContext(prompt=None, source="none", correct=False)
    t_logps, t_ent, _ = tr.teacher_pass(contexts, completion_ids, completion_mask)  # (B, T)
    assert t_logps.shape == t_ent.shape == (B, T)
    assert (t_logps[2] == 0).all() and t_ent[2].isnan().all()
    prompt_ids, _, _ = tr._tokenize_prompts(prompts)
    for i in (0, 1, 3, 4):
        n = lengths[i]
        assert (t_logps[i, n:] == 0).all() and (t_ent[i, n:] == 0).all()
        if n == 0:
            continue
        ids = torch.tensor(list(prompt_ids[i]) + completion_ids[i, :n].tolist())[None]
        with torch.no_grad():
            ref_lp, ref_ent = naive_logps_and_entropies(tr.model, ids, torch.ones_like(ids), n)
        torch.testing.assert_close(t_logps[i, :n], ref_lp[0], atol=2e-5, rtol=0)
        torch.testing.assert_close(t_ent[i, :n], ref_ent[0], atol=2e-5, rtol=0)


def test_teacher_batch_size_must_be_positive():
    with pytest.raises(ValueError, match="teacher_batch_size=0 must be >= 1"):
        AntiSDConfig(output_dir="/tmp/x", bf16=False, teacher_batch_size=0)
