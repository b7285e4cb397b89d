"""The vLLM paths (colocate and server) at their boundary, with the project's own fakes of vLLM (issue 16, item 3).

vLLM needs a GPU; what our code touches of its paths does not. TRL 1.16's ``VLLMGeneration`` and
``GRPOTrainer`` run unchanged here; only the vLLM objects they call are replaced, in TRL's module,
by fakes that behave:

- ``FakeLLM`` (colocate: ``vllm.LLM``) loads the checkpoint from ``model.name_or_path`` as vLLM
  does, holds its own copy of the weights (changed only through ``load_weights``, the call TRL's
  weight sync makes), samples completions token by token at the requested temperature and
  returns per-token "processed" log-probs (log-softmax of logits / temperature, vLLM's
  ``logprobs_mode="processed_logprobs"``), as ``RequestOutput``-shaped objects;
- ``FakeVLLMClient`` (server: ``trl.generation.vllm_client.VLLMClient``) wraps the same engine behind
  the client's methods (``generate`` with n completions per prompt, ``update_named_params``,
  ``reset_prefix_cache``, ``get_server_info``, ``init_communicator``).

What is checked: the completions the trainer scores are the engine's; its log-probs feed TRL's
importance-sampling ratio (1 when the engine and the trainer agree; exp(-offset) when the engine's
numerics are off by ``offset``); the AntiSD token term uses the *trainer's* own log-probs, never
vLLM's (u is unchanged by the engine's offset); the weights are synced into the engine before
each new step's generation (the engine generates with exactly the trainer's current weights).
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForCausalLM

import trl.generation.vllm_generation as vllm_generation
import trl.trainer.grpo_trainer as grpo_trainer

from trainer_helpers import make_trainer

pytestmark = pytest.mark.slow  # trains the tiny model end to end


def fingerprint(named_tensors) -> str:
    """A hash of (name, values) of every tensor, float32."""
    h = hashlib.sha256()
    for name, t in sorted(named_tensors, key=lambda x: x[0]):
        h.update(name.encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------------------ the fakes
@dataclass
class FakeSamplingParams:
    """``vllm.SamplingParams``: the fields TRL passes."""

    n: int = 1
    repetition_penalty: float = 1.0
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    max_tokens: int = 16
    logprobs: int | None = None
    structured_outputs: object = None


@dataclass
class Logprob:
    logprob: float
    rank: int = 1


@dataclass
class CompletionOutput:
    token_ids: list[int]
    logprobs: list[dict[int, Logprob]] | None


@dataclass
class RequestOutput:
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput] = field(default_factory=list)


class FakeEngine:
    """A tiny generation engine with its own weights: samples with temperature, reports processed log-probs.

    ``logprob_offset`` is added to every reported log-prob: an engine whose numerics differ from the trainer's.
    """

    def __init__(self, model_path, eos_token_id: int, seed: int = 0, logprob_offset: float = 0.0) -> None:
        self.model = AutoModelForCausalLM.from_pretrained(model_path).eval()
        self.eos = eos_token_id
        self.generator = torch.Generator().manual_seed(seed)
        self.logprob_offset = logprob_offset
        self.loaded: list[str] = []  # parameter names received by load_weights, in order
        self.cache_resets = 0
        self.generated_with: list[str] = []  # weight fingerprint at each generate call
        self.completions: list[list[int]] = []

    def load_weights(self, weights) -> None:
        params = dict(self.model.named_parameters())
        for name, tensor in weights:
            if name not in params:
                raise KeyError(f"load_weights: the engine has no parameter {name!r}")
            with torch.no_grad():
                params[name].copy_(tensor.detach().to(params[name].dtype))
            self.loaded.append(name)

    @torch.no_grad()
    def sample(self, prompt: list[int], params: FakeSamplingParams) -> CompletionOutput:
        if params.top_k not in (0, -1) or params.top_p != 1.0 or params.min_p or params.repetition_penalty != 1.0:
            raise NotImplementedError("FakeEngine samples with temperature only")
        ids, out, lps = list(prompt), [], []
        for _ in range(params.max_tokens):
            logits = self.model(torch.tensor([ids])).logits[0, -1].float() / params.temperature
            logp = torch.log_softmax(logits, dim=-1)
            tok = int(torch.multinomial(logp.exp(), 1, generator=self.generator))
            out.append(tok)
            lps.append({tok: Logprob(float(logp[tok]) + self.logprob_offset)})
            ids.append(tok)
            if tok == self.eos:
                break
        return CompletionOutput(token_ids=out, logprobs=lps if params.logprobs is not None else None)

    def generate_requests(self, prompts: list[list[int]], params: FakeSamplingParams) -> list[RequestOutput]:
        self.generated_with.append(fingerprint(self.model.named_parameters()))
        results = [RequestOutput(p, [self.sample(p, params) for _ in range(params.n)]) for p in prompts]
        self.completions.extend(o.token_ids for r in results for o in r.outputs)
        return results


class FakeLLM:
    """``vllm.LLM`` for colocate mode, over a ``FakeEngine``."""

    engine_kwargs: dict = {}
    instances: list[FakeLLM] = []

    def __init__(self, model: str, **kwargs) -> None:
        from transformers import AutoTokenizer

        self.kwargs = kwargs
        self.engine = FakeEngine(model, AutoTokenizer.from_pretrained(model).eos_token_id, **self.engine_kwargs)
        runner = SimpleNamespace(model=SimpleNamespace(load_weights=self.engine.load_weights))
        self.llm_engine = SimpleNamespace(model_executor=SimpleNamespace(
            driver_worker=SimpleNamespace(model_runner=runner)))
        FakeLLM.instances.append(self)

    def generate(self, prompts, sampling_params, use_tqdm=False):
        return self.engine.generate_requests([p["prompt_token_ids"] for p in prompts], sampling_params)

    def reset_prefix_cache(self) -> None:
        self.engine.cache_resets += 1


class FakeVLLMClient:
    """``trl``'s ``VLLMClient`` for server mode, over a ``FakeEngine`` standing for the server's model."""

    model_path = None
    engine_kwargs: dict = {}
    instances: list[FakeVLLMClient] = []

    def __init__(self, base_url=None, group_port=None, connection_timeout=None) -> None:
        from transformers import AutoTokenizer

        path = FakeVLLMClient.model_path
        self.engine = FakeEngine(path, AutoTokenizer.from_pretrained(path).eos_token_id, **self.engine_kwargs)
        self.metadata = None
        self.communicator = None
        FakeVLLMClient.instances.append(self)

    def init_communicator(self, device) -> None:
        self.communicator = str(device)

    def get_server_info(self) -> dict:
        return {"model_config": {"logprobs_mode": "processed_logprobs"}}

    def generate(self, prompts, features=None, n=1, structured_outputs_regex=None, generation_kwargs=None, **params):
        sp = FakeSamplingParams(n=n, **{k: v for k, v in params.items() if k in FakeSamplingParams.__dataclass_fields__})
        results = self.engine.generate_requests(prompts, sp)
        outs = [o for r in results for o in r.outputs]
        return {"prompt_ids": [r.prompt_token_ids for r in results], "completion_ids": [o.token_ids for o in outs],
                "logprobs": [[[lp[t].logprob] for lp, t in zip(o.logprobs, o.token_ids)] for o in outs],
                "logprob_token_ids": [[[t] for t in o.token_ids] for o in outs]}

    def update_named_params(self, metadata, named_params) -> None:
        self.metadata = list(metadata)
        self.engine.load_weights(named_params)

    def reset_prefix_cache(self) -> None:
        self.engine.cache_resets += 1


@pytest.fixture
def fake_vllm(monkeypatch, tiny_model_path):
    """Install the fakes where TRL looks for vLLM; returns a setter for the engine's options."""
    monkeypatch.setattr(vllm_generation, "is_vllm_available", lambda: True)
    monkeypatch.setattr(grpo_trainer, "is_vllm_available", lambda: True, raising=False)
    monkeypatch.setattr(vllm_generation, "LLM", FakeLLM, raising=False)
    monkeypatch.setattr(vllm_generation, "SamplingParams", FakeSamplingParams, raising=False)
    monkeypatch.setattr(vllm_generation, "VLLMClient", FakeVLLMClient)
    FakeLLM.instances, FakeVLLMClient.instances = [], []
    FakeVLLMClient.model_path = str(tiny_model_path)

    def options(**kwargs):
        FakeLLM.engine_kwargs = dict(kwargs)
        FakeVLLMClient.engine_kwargs = dict(kwargs)

    options()
    yield options
    options()


def _vllm_trainer(model_path, out, mode: str, **overrides):
    tr = make_trainer(model_path, out, method="antisd", gate="none", use_vllm=True, vllm_mode=mode,
                      vllm_importance_sampling_correction=True, vllm_importance_sampling_mode="token_truncate",
                      vllm_importance_sampling_clip_max=1e6, vllm_importance_sampling_clip_min=0.0,
                      logging_steps=1, **overrides)
    captured = []
    original = tr._generate_and_score_completions

    def generate_and_score(inputs):
        out = original(inputs)
        captured.append({k: (v.detach().clone() if isinstance(v, torch.Tensor) else v) for k, v in out.items()})
        return out

    tr._generate_and_score_completions = generate_and_score
    return tr, captured


def _engine(mode):
    return (FakeLLM.instances[-1] if mode == "colocate" else FakeVLLMClient.instances[-1]).engine


@pytest.mark.parametrize("mode", ["colocate", "server"])
def test_engine_completions_and_logprobs_reach_the_trainer(fake_vllm, tiny_model_path, tmp_path, mode):
    tr, captured = _vllm_trainer(tiny_model_path, tmp_path / "in_sync", mode, max_steps=1)
    tr.train()
    engine, out = _engine(mode), captured[0]
    assert len(engine.completions) == out["completion_ids"].size(0) == 8
    for row, ids in enumerate(engine.completions):  # the rollouts scored are the engine's, in order
        mask = out["completion_mask"][row].bool()
        assert out["completion_ids"][row][mask].tolist() == ids
    # the engine's weights and the trainer's agree (synced before generating): the ratio is 1 up to rounding
    ratio = out["importance_sampling_ratio"][out["completion_mask"].bool()]
    torch.testing.assert_close(ratio, torch.ones_like(ratio), atol=1e-4, rtol=0)
    if mode == "server":
        client = FakeVLLMClient.instances[-1]
        assert client.communicator is not None
        assert [m[0] for m in client.metadata] == [n for n, _ in tr.model.named_parameters()]


@pytest.mark.parametrize("mode", ["colocate", "server"])
def test_token_term_uses_the_trainers_logprobs_not_the_engines(fake_vllm, tiny_model_path, tmp_path, mode):
    """An engine whose log-probs are off by +0.3 changes TRL's importance ratio to exp(-0.3), and nothing of u."""
    runs = {}
    for offset in (0.0, 0.3):
        fake_vllm(logprob_offset=offset)
        tr, captured = _vllm_trainer(tiny_model_path, tmp_path / f"off{offset}", mode, max_steps=1)
        tr.train()
        runs[offset] = (tr.state.log_history[0], captured[0])
    (log0, out0), (log1, out1) = runs[0.0], runs[0.3]
    assert torch.equal(out0["completion_ids"], out1["completion_ids"])  # the same seed samples the same tokens
    mask = out1["completion_mask"].bool()
    expected = torch.full_like(out1["importance_sampling_ratio"][mask], float(torch.exp(torch.tensor(-0.3))))
    torch.testing.assert_close(out1["importance_sampling_ratio"][mask], expected, atol=1e-4, rtol=1e-4)
    assert log1["pmi/mean"] == pytest.approx(log0["pmi/mean"], abs=1e-6)
    assert log1["teacher/entropy_mean"] == pytest.approx(log0["teacher/entropy_mean"], abs=1e-6)
    # the student side of u is TRL's old_per_token_logps: the trainer's own forward at generation time
    torch.testing.assert_close(out1["old_per_token_logps"], out0["old_per_token_logps"], atol=1e-6, rtol=0)


@pytest.mark.parametrize("mode", ["colocate", "server"])
def test_weights_are_synced_before_each_steps_generation(fake_vllm, tiny_model_path, tmp_path, mode):
    tr, _ = _vllm_trainer(tiny_model_path, tmp_path / "sync", mode, max_steps=3, learning_rate=1e-2)
    seen_by_trainer = []
    original = tr._generate_single_turn

    def generate_single_turn(*args, **kwargs):
        result = original(*args, **kwargs)  # TRL syncs the weights inside, then generates
        seen_by_trainer.append(fingerprint(tr.model.named_parameters()))
        return result

    tr._generate_single_turn = generate_single_turn
    tr.train()
    engine = _engine(mode)
    assert engine.generated_with == seen_by_trainer  # every generation ran on the trainer's current weights
    assert len(set(seen_by_trainer)) == 3  # and they changed between steps: a sync each step
    names = [n for n, _ in tr.model.named_parameters()]
    assert engine.loaded == names * 3 and engine.cache_resets == 3


def test_fakes_refuse_what_they_do_not_implement(tiny_model_path):
    """The engine is a stand-in for sampling with temperature: other sampling settings fail loudly."""
    engine = FakeEngine(tiny_model_path, eos_token_id=2)
    with pytest.raises(NotImplementedError):
        engine.sample([1, 2, 3], FakeSamplingParams(top_k=5))
    with pytest.raises(KeyError, match="no parameter"):
        engine.load_weights([("not.a.param", torch.zeros(1))])
    before = fingerprint(engine.model.named_parameters())
    name, p = next(iter(copy.deepcopy(dict(engine.model.named_parameters())).items()))
    engine.load_weights([(name, p + 1)])
    assert fingerprint(engine.model.named_parameters()) != before
