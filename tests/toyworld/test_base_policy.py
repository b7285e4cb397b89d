"""antisd.toyworld.base_policy: the model it builds, the cached build, thread choice."""

from __future__ import annotations

import dataclasses
import json

import pytest


def test_tiny_base_policy_builds_caches_and_loads(tiny_policy, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import antisd.toyworld.base_policy as bp

    cfg, cache, path = tiny_policy
    info = json.loads((path / bp.BUILD_INFO).read_text())
    assert info["recipe_hash"] == cfg.recipe_hash and 0.0 <= info["heldout"]["eval/accuracy"] <= 1.0
    assert bp.ToyBaseConfig.from_dict(info["recipe"]) == cfg
    assert not [p for p in cache.iterdir() if p.name.startswith(".tmp")]

    def no_rebuild(*a, **k):
        raise AssertionError("cached policy was rebuilt")

    monkeypatch.setattr(bp, "build_base_policy", no_rebuild)
    assert bp.ensure_base_policy(cfg, cache) == path
    changed = dataclasses.replace(cfg, seed=cfg.seed + 1)
    assert changed.recipe_hash != cfg.recipe_hash
    with pytest.raises(AssertionError, match="rebuilt"):
        bp.ensure_base_policy(changed, cache)

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.config.model_type == "qwen3" and model.config.vocab_size == len(tok)
    assert model.generation_config.eos_token_id == tok.eos_token_id


def test_changed_recipe_rebuilds(tiny_policy):
    from antisd.toyworld.base_policy import ensure_base_policy

    cfg, cache, path = tiny_policy
    other = ensure_base_policy(dataclasses.replace(cfg, traces=dataclasses.replace(cfg.traces, privileged_style="direct")), cache)
    assert other != path and (other / "build_info.json").exists() and (path / "build_info.json").exists()


def test_pick_num_threads(monkeypatch):
    import antisd.toyworld.base_policy as bp

    monkeypatch.setenv("ANTISD_TOY_THREADS", "1")
    assert bp.pick_num_threads() == 1
    monkeypatch.delenv("ANTISD_TOY_THREADS")
    monkeypatch.setattr(bp.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(bp, "_load", lambda: 2.1)
    assert bp.pick_num_threads(own_load=2) == 2  # only our own two threads: stay at 2
    assert bp.pick_num_threads(own_load=1) == 1  # someone else runs: one thread
    monkeypatch.setattr(bp, "_load", lambda: 0.1)
    assert bp.pick_num_threads() == 2


def _reference_model(config, tokenizer):
    """The toy model as base_policy built it before it used antisd.lm.tiny: Qwen3Config from the
    recipe, weights drawn after manual_seed(config.seed), a sampling generation config."""
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    mc = Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads, head_dim=config.hidden_size // config.num_heads,
        max_position_embeddings=512, tie_word_embeddings=True, bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, use_cache=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = Qwen3ForCausalLM(mc)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
        do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=config.max_new_tokens,
    )
    return model


@pytest.mark.parametrize("name, seed", [("default", 0), ("tiny", 0), ("tiny", 3)])
def test_build_model_is_bit_identical_to_the_reference_construction(name, seed):
    import torch

    from antisd.toyworld.base_policy import build_model, recipe
    from antisd.toyworld.tokenizer import build_tokenizer

    cfg = recipe(name, seed=seed)
    tok = build_tokenizer(cfg.max_number)
    state = torch.random.get_rng_state()
    model, ref = build_model(cfg, tok), _reference_model(cfg, tok)
    assert torch.equal(torch.random.get_rng_state(), state), "the global RNG is untouched"
    got, want = model.state_dict(), ref.state_dict()
    assert list(got) == list(want)
    for key in want:
        assert got[key].dtype == want[key].dtype and torch.equal(got[key], want[key]), key
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied
    assert model.config.to_dict() == ref.config.to_dict()
    assert model.generation_config.to_dict() == ref.generation_config.to_dict()
    assert model.training, "returned ready for SFT, like a freshly constructed module"


def test_default_recipe_hash_is_the_documented_one():
    """The default base policy's cache name (docs/toyworld.md: toybase-commit-7bcae44ced1b; the 1,000-step
    recipe of before, base A0 of docs/benchmarks.md, was toybase-commit-feb26b9dcbe8)."""
    from antisd.toyworld.base_policy import recipe

    assert recipe("default").name == "toybase-commit-7bcae44ced1b"
    assert recipe("default", sft_steps=1000).name == "toybase-commit-feb26b9dcbe8"


def test_the_default_base_policy_ships_and_belongs_to_the_recipe(tmp_path):
    """The shipped build is found with an empty cache, its recorded recipe is the default recipe field for
    field (a changed recipe without a re-shipped build fails here), and it loads."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from antisd.toyworld.base_policy import SHIPPED_DIR, ToyBaseConfig, ensure_base_policy, load_build_info

    config = ToyBaseConfig()
    path = ensure_base_policy(config, cache_dir=tmp_path)
    assert path == SHIPPED_DIR / config.name and not any(tmp_path.iterdir())  # nothing built
    info = load_build_info(path)
    assert info["recipe"] == json.loads(json.dumps(config.to_dict())) and info["recipe_hash"] == config.recipe_hash
    assert 0.5 < info["heldout"]["eval/accuracy"] < 0.8
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    assert model.num_parameters() == info["n_parameters"] and tok.eos_token is not None


def test_every_shipped_build_has_its_recorded_checksum_and_recipe():
    """Each folder under resources/toy_base is a build of a named recipe whose weights have the sha256 that
    SHIPPED_SHA256 records (S: default, A0: a0), and a damaged file is refused, naming both checksums."""
    from antisd.toyworld.base_policy import SHIPPED_DIR, SHIPPED_SHA256, load_build_info, recipe, weights_sha256

    folders = sorted(p.name for p in SHIPPED_DIR.iterdir() if p.is_dir())
    assert folders == sorted(SHIPPED_SHA256)
    for name in folders:
        assert weights_sha256(SHIPPED_DIR / name) == SHIPPED_SHA256[name], name
    assert {recipe("default").name, recipe("a0").name, recipe("search").name} == set(folders)
    search = load_build_info(SHIPPED_DIR / recipe("search").name)
    assert search["recipe"]["traces"]["privileged_style"] == "search" and search["recipe"]["sft_steps"] == 2000
    assert search["heldout"]["eval/accuracy"] == pytest.approx(0.717, abs=0.001)
    a0 = load_build_info(SHIPPED_DIR / recipe("a0").name)
    assert a0["recipe"]["sft_steps"] == 1000 and a0["heldout"]["eval/accuracy"] == pytest.approx(0.197, abs=0.001)


def test_a_damaged_shipped_build_is_refused(tmp_path, monkeypatch):
    import shutil

    import antisd.toyworld.base_policy as bp

    config = bp.recipe("a0")
    fake = tmp_path / "toy_base"
    shutil.copytree(bp.SHIPPED_DIR / config.name, fake / config.name)
    with open(fake / config.name / "model.safetensors", "r+b") as fh:
        fh.seek(-1, 2)
        last = fh.read(1)
        fh.seek(-1, 2)
        fh.write(bytes([last[0] ^ 1]))
    monkeypatch.setattr(bp, "SHIPPED_DIR", fake)
    with pytest.raises(RuntimeError, match=f"SHIPPED_SHA256\\['{config.name}'\\] records {bp.SHIPPED_SHA256[config.name]}"):
        bp.ensure_base_policy(config, cache_dir=tmp_path / "cache")


def test_the_shipped_build_wins_over_a_cached_one(tmp_path):
    """A cache holding another build of a shipped recipe (made on another CPU) is not used: every machine trains
    from the shipped weights; --force still builds into the cache."""
    from antisd.toyworld.base_policy import BUILD_INFO, SHIPPED_DIR, ensure_base_policy, recipe

    config = recipe("a0")
    cached = tmp_path / config.name
    cached.mkdir()
    (cached / BUILD_INFO).write_text("{}")
    assert ensure_base_policy(config, cache_dir=tmp_path) == SHIPPED_DIR / config.name


def test_named_recipes_a0_and_search():
    from antisd.toyworld.base_policy import ToyBaseConfig, recipe

    assert recipe("a0") == ToyBaseConfig(sft_steps=1000)
    assert recipe("search").traces.privileged_style == "search" and recipe("search").sft_steps == 2000
    assert recipe("search") == recipe("default", privileged_style="search")
