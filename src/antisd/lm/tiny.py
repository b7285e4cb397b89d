"""Tiny, locally built models and tokenizers for tests, benchmarks and the toy world.

Nothing is downloaded: the tokenizer is a byte-level BPE trained with the `tokenizers` library
on a handful of strings, wrapped in `transformers.PreTrainedTokenizerFast` with a Qwen-style
ChatML chat template; the model is a randomly initialised `Qwen3ForCausalLM`.

    tok = build_tokenizer()                       # ~300-512 tokens, eos <|im_end|>
    model = build_qwen3(tok)                      # hidden 64, 2 layers, 4/2 heads, tied
    path = make_tiny_checkpoint(tmp / "tiny")     # both, saved; load back by path

Load a saved checkpoint by path (`AutoModelForCausalLM.from_pretrained(path)`): TRL builds
reference/teacher models from the model's name, which an in-memory model does not have.
A model vocabulary larger than the tokenizer (`vocab_size=151_936`) gives realistic output-layer
costs; ids beyond `len(tokenizer)` then decode to nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

logger = logging.getLogger(__name__)

PAD_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = (PAD_TOKEN, IM_START, IM_END)  # ids 0, 1, 2 (Qwen's order)

# ChatML, as in Qwen2.5/Qwen3 without tools, thinking or a default system prompt.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- endif %}"
)

DEFAULT_CORPUS: tuple[str, ...] = (
    "What is 12 + 35? Let me think step by step. 12 + 35 = 47. The answer is 47.",
    "Solve for x: 3x + 5 = 20. Subtract 5: 3x = 15. Divide by 3: x = 5. The final answer is 5.",
    "Wait, let me check again. 7 * 8 = 56, so 56 - 6 = 50. Maybe the answer is 50.",
    "Compute the sum of the first 10 positive integers: 1 + 2 + ... + 10 = 10 * 11 / 2 = 55.",
    "If a triangle has sides 3, 4 and 5, then it is a right triangle because 9 + 16 = 25.",
    "Let n be an integer. Then n^2 mod 4 is 0 or 1. Therefore the answer is \\boxed{1}.",
    "The probability of rolling two sixes is 1/6 * 1/6 = 1/36. So the answer is \\boxed{1/36}.",
    "Hmm, that does not work. Let's try another approach: factor x^2 - 5x + 6 = (x - 2)(x - 3).",
    "So the roots are x = 2 and x = 3, and their product is 6. The final answer is \\boxed{6}.",
    "Problem: find the remainder when 2^10 is divided by 7. 2^3 = 8 = 1 mod 7, so 2^10 = 2 mod 7.",
    "Answer: 0 1 2 3 4 5 6 7 8 9 10 100 1000 + - * / = ( ) [ ] { } < > ^ % . , ; : ! ? ' \"",
    "user assistant system You are a helpful assistant. Please reason step by step.",
)


def build_tokenizer(
    texts: Sequence[str] | None = None, vocab_size: int = 512
) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on `texts` (DEFAULT_CORPUS if None) with a ChatML chat template.

    Every byte is in the vocabulary, so decode(encode(s)) == s for any string. Special tokens:
    <|endoftext|> (pad, id 0), <|im_start|> (1), <|im_end|> (eos, 2); no BOS, like Qwen.
    `vocab_size` is an upper bound: a small corpus may yield fewer merges. padding_side is
    "left" (batched generation; TRL passes its own padding sides anyway).
    """
    corpus = list(DEFAULT_CORPUS if texts is None else texts)
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(alphabet) + len(SPECIAL_TOKENS):
        raise ValueError(
            f"vocab_size={vocab_size} must be >= {len(alphabet) + len(SPECIAL_TOKENS)} "
            "(256 byte tokens + 3 special tokens)"
        )
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=alphabet,
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=IM_END,
        pad_token=PAD_TOKEN,
        additional_special_tokens=[IM_START, IM_END],
        clean_up_tokenization_spaces=False,
        padding_side="left",
        model_max_length=32768,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_qwen3(
    tokenizer: PreTrainedTokenizerFast,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int | None = None,
    vocab_size: int | None = None,
    tie_word_embeddings: bool = True,
    seed: int = 0,
    max_position_embeddings: int = 32768,
    generation: Mapping[str, Any] | None = None,
) -> Qwen3ForCausalLM:
    """Randomly initialised Qwen3ForCausalLM, identical for identical arguments and seed.

    head_dim = hidden_size / num_heads; intermediate_size defaults to 4 * hidden_size;
    vocab_size defaults to len(tokenizer) and may be larger (e.g. 151,936, Qwen's). The weights
    are drawn after torch.manual_seed(seed) inside torch.random.fork_rng: the global torch RNG
    is left untouched. The generation config carries the tokenizer's eos and pad ids, no BOS,
    and the `generation` fields (e.g. do_sample, temperature, max_new_tokens). Eval mode,
    float32.
    """
    if hidden_size % num_heads or num_heads % num_kv_heads:
        raise ValueError(
            f"hidden_size={hidden_size} must divide by num_heads={num_heads}, which must divide "
            f"by num_kv_heads={num_kv_heads}"
        )
    vocab = len(tokenizer) if vocab_size is None else vocab_size
    if vocab < len(tokenizer):
        raise ValueError(f"vocab_size={vocab} must be >= len(tokenizer)={len(tokenizer)}")
    config = Qwen3Config(
        vocab_size=vocab,
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size if intermediate_size is None else intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        head_dim=hidden_size // num_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=tie_word_embeddings,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        use_cache=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen3ForCausalLM(config)
    model.generation_config = _generation_config(tokenizer, **dict(generation or {}))
    return model.eval()


def _generation_config(tokenizer: PreTrainedTokenizerFast, **fields: Any) -> GenerationConfig:
    return GenerationConfig(
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        **fields,
    )


def save_tiny(
    model: Qwen3ForCausalLM, tokenizer: PreTrainedTokenizerFast, path: str | Path
) -> Path:
    """save_pretrained the model (with a generation config carrying eos/pad ids) and tokenizer."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.generation_config = _generation_config(tokenizer)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    logger.debug("saved tiny model (%d parameters) to %s", model.num_parameters(), path)
    return path


def make_tiny_checkpoint(
    path: str | Path,
    *,
    texts: Sequence[str] | None = None,
    tokenizer_vocab_size: int = 512,
    **model_kwargs: int | bool | None,
) -> Path:
    """build_tokenizer(texts, tokenizer_vocab_size) + build_qwen3(**model_kwargs) + save_tiny.

    `model_kwargs` are build_qwen3's (hidden_size, num_layers, ..., vocab_size = the MODEL's
    vocabulary, seed). Returns `path`, loadable with AutoModelForCausalLM/AutoTokenizer.
    """
    tokenizer = build_tokenizer(texts, vocab_size=tokenizer_vocab_size)
    model = build_qwen3(tokenizer, **model_kwargs)
    return save_tiny(model, tokenizer, path)
