"""benchmarks/realmodel_pilot.py: every arm's command line parses into the settings the pilot states
(docs/realmodel.md), without loading a model."""

import argparse
from pathlib import Path

import pytest

from antisd.cli.main import build_train_args, train_inputs
from bench_helpers import load_benchmark


@pytest.mark.parametrize("lora_r", [0, 8])
def test_each_arm_parses_into_the_stated_settings(tmp_path, lora_r):
    pilot = load_benchmark("realmodel_pilot")
    a = argparse.Namespace(model="toyworld", dataset="arith_small_train", temperature=0.7, max_new_tokens=32,
                           generations=8, problems=2, steps=100, learning_rate=1e-6, save_steps=20, lora_r=lora_r,
                           extra=[])
    seen = {}
    for arm in pilot.ARMS:
        model, data, reward, cfg = build_train_args(train_inputs(pilot.train_argv(arm, 1, tmp_path / arm, a, None)))
        assert (cfg.temperature, cfg.top_p, cfg.top_k, cfg.num_generations, cfg.per_device_train_batch_size,
                cfg.max_completion_length, cfg.max_steps, cfg.seed) == (0.7, 1.0, 0, 8, 16, 32, 100, 1)
        assert (reward.reward, reward.answer_extraction) == ("math", "flexible")
        assert (data.dataset_name, data.id_column, data.system_prompt) == (
            "arith_small_train", "id", pilot.SYSTEM_PROMPT)
        assert model.use_peft is bool(lora_r) and cfg.learning_rate == 1e-6
        seen[arm] = (cfg.method, cfg.token_term_rollouts, cfg.token_term_centering)
    assert seen == {"grpo": ("grpo", "all", "none"), "antisd": ("antisd", "all", "none"),
                    "antisd_correct": ("antisd", "correct", "none")}
    resumed = pilot.train_argv("grpo", 0, tmp_path, a, str(Path("ckpt")))
    assert resumed[-2:] == ["--resume_from_checkpoint", "ckpt"]
