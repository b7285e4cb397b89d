"""A word-level tokenizer for the toy world: every word and every number 0..max is one token.

Text is split on single spaces (``WhitespaceSplit``) and decoded by joining tokens with one
space, so ``decode(encode(t)) == t`` for any text of vocabulary words separated by single
spaces (all toy prompts and traces are written that way). Deliberation words (Wait, Hmm,
Maybe, Let, Alternatively, But, try) and ``\\boxed{`` are single tokens, so per-token signals
can be read per word. Wrapped as a ``PreTrainedTokenizerFast`` (eos ``<eos>``, pad ``<pad>``,
left padding, no BOS); ``save_pretrained``/``AutoTokenizer.from_pretrained`` round-trip it.
"""

from __future__ import annotations

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, EOS, UNK)
DELIBERATION_WORDS: tuple[str, ...] = ("Wait", "Hmm", "Maybe", "Let", "Alternatively", "But")
BOX_OPEN = "\\boxed{"
WORDS: tuple[str, ...] = (
    # problem statements
    "find", "x", "in", "..", "with", "*", "+", "-", "=", ".", "{", "}", "mod",
    # traces
    "try", ":", ",", "vs", "small", "big", "yes", "no", "so", "me", BOX_OPEN, *DELIBERATION_WORDS,
    # privileged context
    "ref", "feedback", "right", "wrong",
)
DEFAULT_MAX_NUMBER = 255
# The toy model reads plain text (it was trained on it): a chat is rendered as the text of its user turns
# (system messages left out, no role markers), so a chat prompt gives the same token ids as its plain
# prompt. Set by antisd.lm.sampling.load_tokenizer on a toy tokenizer that has no chat template.
CHAT_TEMPLATE = "{{ messages | selectattr('role', 'equalto', 'user') | map(attribute='content') | join(' ') }}"


def vocabulary(max_number: int = DEFAULT_MAX_NUMBER) -> list[str]:
    """Special tokens, then words, then the numbers 0..max_number, in id order."""
    return [*SPECIAL_TOKENS, *WORDS, *(str(i) for i in range(max_number + 1))]


def build_tokenizer(max_number: int = DEFAULT_MAX_NUMBER):
    """The toy ``PreTrainedTokenizerFast`` (deterministic: same ids for the same ``max_number``)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(vocabulary(max_number))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # No decoder: tokenizers joins decoded tokens with single spaces, which restores the text.
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=1024,
    )


def unknown_words(text: str, max_number: int = DEFAULT_MAX_NUMBER) -> list[str]:
    """Words of ``text`` that are not in the vocabulary (they would become ``<unk>``)."""
    vocab = set(vocabulary(max_number))
    return [w for w in text.split() if w not in vocab]


def is_toy_vocabulary(vocab: dict[str, int]) -> bool:
    """Whether ``vocab`` (token -> id) is exactly the toy tokenizer's (``vocabulary(n)`` for some n)."""
    n = len(vocab) - len(SPECIAL_TOKENS) - len(WORDS) - 1
    return n >= 0 and vocab == {w: i for i, w in enumerate(vocabulary(n))}
