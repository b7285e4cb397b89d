"""antisd.toyworld.tokenizer: every toy word is one token, round trips, save/reload."""

from __future__ import annotations

import random

from antisd.toyworld.tasks import make_problems
from antisd.toyworld.tokenizer import BOX_OPEN, DELIBERATION_WORDS, build_tokenizer, unknown_words
from antisd.toyworld.traces import PRIVILEGED_STYLES, ToyTraceConfig, sft_example


def _texts(n: int = 150) -> list[str]:
    rng = random.Random(0)
    out = []
    for i, p in enumerate(make_problems(n, seed=2)):
        style = PRIVILEGED_STYLES[i % len(PRIVILEGED_STYLES)]
        ex = sft_example(p, rng, ToyTraceConfig(privileged_style=style, ref_trace_frac=0.5), privileged=i % 2 == 0)
        out.append(ex["prompt"] + ex["completion"])
    return out


def test_tokenizer_round_trip_and_single_token_words(tmp_path):
    from transformers import AutoTokenizer

    tok = build_tokenizer()
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    for t in _texts():
        assert not unknown_words(t), t
        for tk in (tok, loaded):
            ids = tk(t, add_special_tokens=False)["input_ids"]
            assert tk.unk_token_id not in ids
            assert tk.decode(ids) == t
            assert len(ids) == len(t.split())
    for w in (*DELIBERATION_WORDS, "try", BOX_OPEN):
        assert len(tok(w, add_special_tokens=False)["input_ids"]) == 1, w
    assert loaded.eos_token == "<eos>" and loaded.pad_token == "<pad>" and loaded.padding_side == "left"
    ids = tok("try 3 : 3 * 3 = 9 + 1 = 10 yes . " + BOX_OPEN + " 3 }" + tok.eos_token)["input_ids"]
    assert ids[-1] == tok.eos_token_id and tok.decode(ids, skip_special_tokens=True).endswith("}")
