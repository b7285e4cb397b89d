"""antisd.lm.tiny: local tokenizer and tiny Qwen3 (round trip, chat template, save/reload)."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoModelForCausalLM, AutoTokenizer

from antisd.lm.tiny import (
    CHAT_TEMPLATE,
    build_qwen3,
    build_tokenizer,
    make_tiny_checkpoint,
    save_tiny,
)

_TOKENIZER = build_tokenizer()  # shared by the property test (built in ~10 ms)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=80))
def test_tokenizer_round_trip_any_text(text: str) -> None:
    ids = _TOKENIZER.encode(text, add_special_tokens=False)
    assert _TOKENIZER.decode(ids) == text


@pytest.mark.parametrize(
    "text",
    [
        "What is 12 + 35?  The answer is \\boxed{47}.\n",
        "  leading spaces, trailing spaces  ",
        "unicode: wörld, ∑_{i=1}^n i, 数学, 😀\t\r\n",
        "",
    ],
)
def test_tokenizer_round_trip_after_reload(tiny_tokenizer, text: str) -> None:
    for tok in (_TOKENIZER, tiny_tokenizer):
        assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


def test_special_tokens(tiny_tokenizer) -> None:
    for tok in (_TOKENIZER, tiny_tokenizer):
        assert tok.eos_token == "<|im_end|>"
        assert tok.pad_token == "<|endoftext|>"
        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        assert tok.convert_tokens_to_ids(specials) == [0, 1, 2]
        assert tok.bos_token is None
        # special tokens are single ids, never split by BPE
        assert tok.encode("<|im_start|>user\nhi<|im_end|>", add_special_tokens=False)[0] == 1
        assert len(tok) <= 512


def test_tokenizer_is_deterministic_and_trains_on_given_texts() -> None:
    assert build_tokenizer().get_vocab() == _TOKENIZER.get_vocab()
    tok = build_tokenizer(["abcabc abcabc abcabc"] * 10, vocab_size=300)
    assert len(tok) <= 300
    assert len(tok.encode("abcabc", add_special_tokens=False)) < 6  # merges were learnt
    with pytest.raises(ValueError, match="vocab_size=100"):
        build_tokenizer(vocab_size=100)


def test_chat_template_renders(tiny_tokenizer) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2+2?"},
    ]
    expected = (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
    )
    for tok in (_TOKENIZER, tiny_tokenizer):
        assert tok.chat_template == CHAT_TEMPLATE
        assert tok.apply_chat_template(messages, tokenize=False) == expected
        prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert prompt == expected + "<|im_start|>assistant\n"
        ids = tok.apply_chat_template(
            messages + [{"role": "assistant", "content": "4"}], tokenize=True, return_dict=True
        )["input_ids"]
        assert tok.decode(ids).endswith("<|im_start|>assistant\n4<|im_end|>\n")


def test_build_qwen3_shapes_and_determinism() -> None:
    model = build_qwen3(_TOKENIZER)
    cfg = model.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == (64, 2, 4)
    assert (cfg.num_key_value_heads, cfg.head_dim, cfg.intermediate_size) == (2, 16, 256)
    assert cfg.vocab_size == len(_TOKENIZER)
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied
    assert not model.training

    state = torch.random.get_rng_state()
    same = build_qwen3(_TOKENIZER, seed=0)
    assert torch.equal(torch.random.get_rng_state(), state), "global RNG must be untouched"
    other = build_qwen3(_TOKENIZER, seed=1)
    for (name, a), b, c in zip(
        model.state_dict().items(), same.state_dict().values(), other.state_dict().values()
    ):
        assert torch.equal(a, b), name
    assert not torch.equal(model.lm_head.weight, other.lm_head.weight)

    big = build_qwen3(_TOKENIZER, vocab_size=1000, tie_word_embeddings=False, hidden_size=32)
    assert big.lm_head.weight.shape == (1000, 32)
    assert big.lm_head.weight is not big.model.embed_tokens.weight
    with pytest.raises(ValueError, match="vocab_size=10 "):
        build_qwen3(_TOKENIZER, vocab_size=10)


def test_save_reload_identical_logits(tmp_path, tiny_model_path, tiny_model) -> None:
    model = build_qwen3(_TOKENIZER, seed=3)
    path = save_tiny(model, _TOKENIZER, tmp_path / "ckpt")
    reloaded = AutoModelForCausalLM.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    ids = tok("Let me think: 3 * 4 = 12.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reloaded(ids).logits)
    gen = json.loads((path / "generation_config.json").read_text())
    assert gen["eos_token_id"] == 2 and gen["pad_token_id"] == 0

    # the session checkpoint equals a fresh build with the same seed
    fresh = build_qwen3(_TOKENIZER, seed=0)
    with torch.no_grad():
        assert torch.equal(fresh(ids).logits, tiny_model(ids).logits)
    assert tiny_model.config.eos_token_id == 2


def test_make_tiny_checkpoint_kwargs(tmp_path) -> None:
    path = make_tiny_checkpoint(
        tmp_path / "c", tokenizer_vocab_size=300, vocab_size=700, hidden_size=32, num_layers=1
    )
    model = AutoModelForCausalLM.from_pretrained(path)
    assert len(AutoTokenizer.from_pretrained(path)) <= 300
    assert model.config.vocab_size == 700 and model.config.num_hidden_layers == 1


def test_build_qwen3_positions_and_generation_fields() -> None:
    model = build_qwen3(_TOKENIZER, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, seed=5,
                        max_position_embeddings=512,
                        generation={"do_sample": True, "temperature": 0.7, "max_new_tokens": 9})
    assert model.config.max_position_embeddings == 512
    gen = model.generation_config
    assert (gen.eos_token_id, gen.pad_token_id, gen.bos_token_id) == (2, 0, None)
    assert (gen.do_sample, gen.temperature, gen.max_new_tokens) == (True, 0.7, 9)
    default = build_qwen3(_TOKENIZER, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, seed=5)
    assert default.config.max_position_embeddings == 32768 and default.generation_config.max_new_tokens != 9
    for (name, a), b in zip(model.state_dict().items(), default.state_dict().values()):
        assert torch.equal(a, b), f"{name}: the weights depend on the sizes and the seed only"
    with pytest.raises(ValueError, match="hidden_size=30 must divide by num_heads=4"):
        build_qwen3(_TOKENIZER, hidden_size=30)
