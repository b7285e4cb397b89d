"""antisd.evaluate.generation: prompt token ids and the choice of backend (with a fake vllm module)."""

from __future__ import annotations

import pytest
import torch

import antisd.evaluate as ev
from antisd.data import DEFAULT_SYSTEM_PROMPT
from antisd.evaluate import EvalError

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
