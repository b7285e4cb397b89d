"""antisd.evaluate.generation: prompt token ids, the choice of backend (with a fake vllm module), per-sample
seeded sampling and the chunks a resumed run regenerates."""

from __future__ import annotations

import pytest
import torch

import antisd.evaluate as ev
from antisd.data.problems import DEFAULT_SYSTEM_PROMPT
from antisd.evaluate import EvalError
from antisd.evaluate.generation import SeededSampler

from eval_helpers import fake_vllm


def test_prompt_rendering_uses_the_chat_template(tiny_tokenizer):
    messages = [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}, {"role": "user", "content": "What is 1+1?"}]
    text = tiny_tokenizer.decode(ev.prompt_ids(tiny_tokenizer, messages, None))
    assert text == (f"<|im_start|>system\n{DEFAULT_SYSTEM_PROMPT}<|im_end|>\n"
                    "<|im_start|>user\nWhat is 1+1?<|im_end|>\n<|im_start|>assistant\n")
    assert tiny_tokenizer.decode(ev.prompt_ids(tiny_tokenizer, "What is 1+1?", None)) == "What is 1+1?"
    tiny_tokenizer.chat_template = "{{ messages[-1]['content'] }}{% if think %} /think{% endif %}"
    assert tiny_tokenizer.decode(ev.prompt_ids(tiny_tokenizer, messages, {"think": True})) == "What is 1+1? /think"


def test_backend_choice(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    fake_vllm(monkeypatch)
    assert ev.resolve_backend("auto") == "vllm" and ev.resolve_backend("transformers") == "transformers"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert ev.resolve_backend("auto") == "transformers"
    with pytest.raises(EvalError, match="CUDA"):
        ev.resolve_backend("vllm")


# ---------------------------------------------------------------------------------------- seeded sampling


def _draws(sampler, scores, steps=1):
    picks = []
    for _ in range(steps):
        out = sampler(None, scores.clone())
        assert torch.isinf(out).sum(dim=1).tolist() == [scores.size(1) - 1] * scores.size(0)  # one finite entry a row
        picks.append(out.argmax(dim=1).tolist())
    return picks


def test_seeded_sampler_rows_do_not_depend_on_their_batch():
    torch.manual_seed(0)
    scores = torch.randn(3, 50)
    together = _draws(SeededSampler([11, 22, 33], temperature=0.7, top_k=0, top_p=1.0), scores, steps=20)
    alone = _draws(SeededSampler([22], temperature=0.7, top_k=0, top_p=1.0), scores[1:2], steps=20)
    reordered = _draws(SeededSampler([33, 22], temperature=0.7, top_k=0, top_p=1.0), scores[[2, 1]], steps=20)
    assert [p[1] for p in together] == [p[0] for p in alone] == [p[1] for p in reordered]
    assert [p[2] for p in together] == [p[0] for p in reordered]
    state = torch.random.get_rng_state()
    _draws(SeededSampler([1], temperature=1.0, top_k=0, top_p=1.0), scores[:1])
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is not touched


def test_seeded_sampler_draws_from_the_warped_distribution():
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0]])
    n = 4000
    sampler = SeededSampler(range(n), temperature=0.5, top_k=0, top_p=1.0)
    counts = torch.bincount(torch.tensor(_draws(sampler, logits.expand(n, 5))[0]), minlength=5).float()
    expected = torch.softmax(logits[0] / 0.5, dim=0) * n
    assert ((counts - expected).abs() <= 4 * expected.sqrt() + 1).all(), (counts, expected)
    top_k = _draws(SeededSampler(range(500), temperature=1.0, top_k=2, top_p=1.0), logits.expand(500, 5))[0]
    assert set(top_k) == {0, 1}
    # top_p 0.7 keeps the smallest prefix of the sorted distribution holding >= 0.7 of the mass: tokens 0 and 1
    top_p = _draws(SeededSampler(range(500), temperature=1.0, top_k=0, top_p=0.7), logits.expand(500, 5))[0]
    assert set(top_p) == {0, 1}
    with pytest.raises(ValueError, match="temperature=0"):
        SeededSampler([1], temperature=0, top_k=0, top_p=1.0)


def test_transformers_generator_seeds_each_sample(tiny_model, tiny_tokenizer):
    gen = ev.TransformersGenerator(tiny_model, tiny_tokenizer, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=8)
    prompts = [gen.encode("What is 1 + 1?"), gen.encode("Hi")]
    seeds = [[1, 2], [3, 4]]
    first = gen.generate(prompts, 2, seeds)
    assert [[s.text for s in p] for p in gen.generate(prompts, 2, seeds)] == [[s.text for s in p] for p in first]
    other = gen.generate(prompts, 2, [[5, 6], [7, 8]])
    assert [[s.text for s in p] for p in other] != [[s.text for s in p] for p in first]
    with pytest.raises(ValueError, match="need 2 seeds for each of 2 prompts"):
        gen.generate(prompts, 2, [[1], [2]])


class RecordingGenerator:
    """A stand-in generator: records each call's prompts and seeds; sample text = its seed."""

    def __init__(self):
        self.calls = []

    def encode(self, prompt):
        return [len(prompt)]

    def generate(self, prompts, n, seeds):
        self.calls.append((list(prompts), [list(s) for s in seeds]))
        return [[ev.Sample(f"\\boxed{{{s}}}", 1, False) for s in row] for row in seeds]


def _problems(n):
    return [{"problem_id": f"p{i}", "prompt": "x" * (i + 1), "answer": "1"} for i in range(n)]


@pytest.mark.parametrize("batch_size", [1, 3, 8, 64])
def test_sample_seeds_depend_on_seed_problem_and_index_only(batch_size):
    gen = RecordingGenerator()
    scored = ev.sample_problems(gen, _problems(5), k=4, batch_size=batch_size, seed=7, tag="b")
    for pid, rows in scored.items():
        assert [r["completion"] for r in rows] == [f"\\boxed{{{ev.seed_for(7, 'b', pid, i)}}}" for i in range(4)]
    assert all(len(p) * len(s[0]) <= batch_size for p, s in gen.calls)


def test_an_interrupted_chunk_is_generated_whole_and_only_its_rest_is_kept():
    problems = _problems(6)
    full = RecordingGenerator()
    everything = ev.sample_problems(full, problems, k=2, batch_size=6, seed=0, tag="b")  # chunks of 3 problems
    resumed, chunks = RecordingGenerator(), []
    rest = ev.sample_problems(resumed, problems, k=2, batch_size=6, seed=0, tag="b", done={"p0", "p1", "p3"},
                              on_chunk=chunks.append)
    assert resumed.calls == full.calls  # the same batches as the uninterrupted run
    assert [[p["problem_id"] for p, _ in c] for c in chunks] == [["p2"], ["p4", "p5"]]
    assert rest == {pid: everything[pid] for pid in ("p2", "p4", "p5")}
    assert ev.sample_problems(RecordingGenerator(), problems, k=2, batch_size=6, seed=0, tag="b",
                              done={p["problem_id"] for p in problems}) == {}


def test_repeated_problem_ids_are_refused_by_the_sampler():
    problems = _problems(3) + [{"problem_id": "p1", "prompt": "y", "answer": "2"}]
    with pytest.raises(ValueError, match="problem_id 'p1' is both problem 1 and problem 3"):
        ev.sample_problems(RecordingGenerator(), problems, k=1, batch_size=4, seed=0, tag="b")
