"""antisd.lm.sampling: padding, eos/pad ids, dtype names, tokenizer loading, the seeded generate loop."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch

from antisd.lm.plumbing import position_ids_from_mask
from antisd.lm.sampling import (
    Completion,
    eos_token_ids,
    generate_completions,
    left_pad,
    load_tokenizer,
    pad_prompts_and_completions,
    pad_token_id,
    resolve_device,
    right_pad,
    split_at_eos,
    torch_dtype,
)

# ------------------------------------------------------------------------------------ padding


def test_left_and_right_pad_hand_example() -> None:
    seqs = [[1, 2, 3], [], [4], [5, 6]]
    ids, mask = left_pad(seqs, 9)
    assert ids.dtype == mask.dtype == torch.long
    assert ids.tolist() == [[1, 2, 3], [9, 9, 9], [9, 9, 4], [9, 5, 6]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 0], [0, 0, 1], [0, 1, 1]]
    ids, mask = right_pad(seqs, 0)
    assert ids.tolist() == [[1, 2, 3], [0, 0, 0], [4, 0, 0], [5, 6, 0]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 0], [1, 0, 0], [1, 1, 0]]
    ids, mask = left_pad([], 0)
    assert ids.shape == mask.shape == (0, 0)


def test_prompts_and_completions_side_by_side() -> None:
    ids, mask, width = pad_prompts_and_completions([[1, 2, 3], [4], [5, 6]], [[7], [8, 9, 10], [11, 12]], 0, "cpu")
    assert width == 3
    assert ids.tolist() == [[1, 2, 3, 7, 0, 0], [0, 0, 4, 8, 9, 10], [0, 5, 6, 11, 12, 0]]
    assert mask.tolist() == [[1, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1], [0, 1, 1, 1, 1, 0]]
    with pytest.raises(ValueError, match="2 prompts and 1 completions"):
        pad_prompts_and_completions([[1], [2]], [[3]], 0)


def test_left_padded_forward_equals_each_prompt_alone(tiny_model) -> None:
    prompts = [[5, 6, 7, 8, 9, 10, 11], [12, 13], [14, 15, 16, 17]]
    ids, mask = left_pad(prompts, pad_id=0)  # (3, 7)
    with torch.no_grad():
        batched = tiny_model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)).logits
        alone = [tiny_model(input_ids=torch.tensor([p])).logits[0] for p in prompts]  # (L_i, V), no padding
    for i, p in enumerate(prompts):
        torch.testing.assert_close(batched[i, -len(p):], alone[i], rtol=1e-5, atol=1e-5)
    # negative control: the same row read from the wrong end is far from the unpadded values
    assert (batched[1, :2] - alone[1]).abs().max() > 1e-3


# ------------------------------------------------------------------------------------ special ids


def test_eos_ids_from_tokenizer_and_generation_config() -> None:
    tok = SimpleNamespace(eos_token_id=2, pad_token_id=None)
    model = SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=[7, 2]))
    assert eos_token_ids(model, tok) == {2, 7}
    assert eos_token_ids(SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=5)), tok) == {2, 5}
    assert eos_token_ids(SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=(5, 6))), tok) == {2, 5, 6}
    assert eos_token_ids(None, tok) == {2}
    assert eos_token_ids(model, SimpleNamespace(eos_token_id=None)) == {2, 7}


def test_pad_id_fallbacks(tiny_model, tiny_tokenizer) -> None:
    assert pad_token_id(tiny_tokenizer) == 0  # <|endoftext|>
    assert eos_token_ids(tiny_model, tiny_tokenizer) == {2}  # <|im_end|>, in both
    no_pad = SimpleNamespace(eos_token_id=9, pad_token_id=None)
    assert pad_token_id(no_pad) == 9
    assert pad_token_id(no_pad, {11, 4}) == 4
    assert pad_token_id(SimpleNamespace(eos_token_id=None, pad_token_id=None)) == 0


# ------------------------------------------------------------------------------------ loading


def test_dtype_names_and_auto_rules() -> None:
    assert torch_dtype("float32") is torch.float32 and torch_dtype("bfloat16", "cuda") is torch.bfloat16
    assert torch_dtype("float16") is torch.float16
    assert torch_dtype("auto") == "auto"  # from_pretrained keeps the checkpoint's dtype
    assert torch_dtype("auto", "cpu") is torch.float32
    assert torch_dtype("auto", "cuda:1") is torch.bfloat16
    with pytest.raises(ValueError, match=r"dtype='fp8' is not a known dtype; expected one of \['auto', 'bfloat16'"):
        torch_dtype("fp8")


def test_resolve_device() -> None:
    assert resolve_device("cpu") == "cpu" and resolve_device("cuda:1") == "cuda:1"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


def test_load_tokenizer_pad_fallback_logged_once(tmp_path, tiny_model_path, tiny_tokenizer, caplog) -> None:
    tiny_tokenizer.pad_token = None
    tiny_tokenizer.save_pretrained(tmp_path / "nopad")
    with caplog.at_level(logging.INFO, logger="antisd.lm.sampling"):
        first = load_tokenizer(str(tmp_path / "nopad"))
        second = load_tokenizer(str(tmp_path / "nopad"))
        has_pad = load_tokenizer(str(tiny_model_path))
    assert first.pad_token == second.pad_token == "<|im_end|>" and second.pad_token_id == 2
    assert has_pad.pad_token == "<|endoftext|>"  # kept
    assert caplog.text.count("has no pad token: using the eos token '<|im_end|>'") == 1


# ------------------------------------------------------------------------------------ sampling


def test_split_at_eos_and_completion_fields() -> None:
    c = split_at_eos([5, 6, 2, 0, 0], {2, 3})
    assert c == Completion([5, 6], 2)
    assert (c.ids_with_eos, c.n_tokens, c.truncated) == ([5, 6, 2], 3, False)
    c = split_at_eos([5, 3, 2], {2, 3})  # the first eos of either kind
    assert (c.ids, c.eos) == ([5], 3)
    c = split_at_eos([5, 6, 7], {2})
    assert (c.ids, c.ids_with_eos, c.n_tokens, c.truncated) == ([5, 6, 7], [5, 6, 7], 3, True)


PROMPTS = [[1, 10, 11, 12], [1, 13], [1, 14, 15], [1, 16, 17, 18, 19]]


def sample(model, tok, seeds, **kw) -> list[Completion]:
    kw = {"max_new_tokens": 12, "eos_ids": eos_token_ids(model, tok), "pad_id": tok.pad_token_id, **kw}
    return generate_completions(model, PROMPTS, batch_seeds=seeds, **kw)


def test_seeded_generation_is_reproducible_and_rng_isolated(tiny_model, tiny_tokenizer) -> None:
    tiny_model.train()
    state = torch.random.get_rng_state()
    first = sample(tiny_model, tiny_tokenizer, [3, 4], batch_size=2)
    assert torch.equal(torch.random.get_rng_state(), state), "the global RNG is untouched"
    assert tiny_model.training, "the model's mode is restored"
    assert first == sample(tiny_model, tiny_tokenizer, iter([3, 4]), batch_size=2)
    # batch b is seeded by the b-th seed: the same as sampling each batch on its own
    halves = [generate_completions(tiny_model, half, batch_seeds=[seed], max_new_tokens=12, eos_ids={2}, pad_id=0)
              for half, seed in ((PROMPTS[:2], 3), (PROMPTS[2:], 4))]
    assert first == halves[0] + halves[1]
    other = sample(tiny_model, tiny_tokenizer, [5, 6], batch_size=2)
    assert [c.ids for c in other] != [c.ids for c in first]
    for c in first + other:
        assert 2 not in c.ids and c.eos in (2, None)
        assert c.truncated == (len(c.ids) == 12)
    with pytest.raises(ValueError, match="batch_seeds ran out at the batch of prompts 2..3"):
        sample(tiny_model, tiny_tokenizer, [3], batch_size=2)


def test_greedy_and_unisolated_rng(tiny_model, tiny_tokenizer) -> None:
    greedy = sample(tiny_model, tiny_tokenizer, [0], temperature=0.0)
    assert greedy == sample(tiny_model, tiny_tokenizer, [1], temperature=0.0), "greedy ignores the seed"
    with torch.no_grad():  # the first greedy token is the argmax of the last prompt position
        first = [int(tiny_model(input_ids=torch.tensor([p])).logits[0, -1].argmax()) for p in PROMPTS]
    assert [c.ids_with_eos[0] for c in greedy] == first
    torch.manual_seed(0)
    kept = sample(tiny_model, tiny_tokenizer, [7], isolate_rng=False)
    after_kept = torch.random.get_rng_state()
    torch.manual_seed(0)
    assert kept == sample(tiny_model, tiny_tokenizer, [7])
    assert not torch.equal(torch.random.get_rng_state(), after_kept), "isolate_rng=False leaves the sampling's RNG state"
    with pytest.raises(ValueError, match="temperature=-1"):
        sample(tiny_model, tiny_tokenizer, [0], temperature=-1.0)
