"""Fails loudly when the TRL internals AntiSDTrainer relies on change shape.

The override surface is listed once, in ``antisd.trainer.core.TRL_OVERRIDES`` (and the TRL members it reads in
``TRL_CALLED``); the first test checks that list against the class itself, the others pin each hook's signature and
the parts of TRL's code the hooks rely on. If TRL renames or reshapes any of these, upgrade deliberately: re-read
the new methods, adapt the trainer, then the pins.
"""

import importlib.metadata
import inspect

import pytest
import torch
from trl import GRPOTrainer

PINNED_TRL = "1.16.0"


def _params(fn):
    return list(inspect.signature(fn).parameters)


def test_trl_version_is_the_pinned_one():
    assert importlib.metadata.version("trl") == PINNED_TRL, (
        f"AntiSDTrainer was written against trl=={PINNED_TRL}; review tests/trainer/test_trl_hooks.py before upgrading"
    )


def test_the_override_surface_is_the_listed_one():
    """Every TRL/transformers method AntiSDTrainer defines is in TRL_OVERRIDES, and every listed one is defined
    here and exists upstream; the TRL members it reads exist."""
    from antisd.trainer.core import TRL_CALLED, TRL_OVERRIDES, AntiSDTrainer

    defined = {name for name, value in vars(AntiSDTrainer).items()
               if callable(value) and hasattr(GRPOTrainer, name) and name != "__init__"}
    assert defined == set(TRL_OVERRIDES), (sorted(defined - set(TRL_OVERRIDES)), sorted(set(TRL_OVERRIDES) - defined))
    assert len(TRL_OVERRIDES) == len(set(TRL_OVERRIDES))
    init = inspect.getsource(GRPOTrainer.__init__)
    for name in TRL_CALLED:
        assert hasattr(GRPOTrainer, name) or f"self.{name} = " in init, name


def test_private_hook_signatures():
    assert _params(GRPOTrainer._calculate_rewards) == ["self", "inputs", "prompts", "completions", "completion_ids_list"]
    assert _params(GRPOTrainer._generate_and_score_completions) == ["self", "inputs"]
    assert _params(GRPOTrainer._tokenize_prompts) == ["self", "prompts"]
    p = _params(GRPOTrainer._get_per_token_logps_and_entropies)
    assert p[:7] == ["self", "model", "input_ids", "attention_mask", "logits_to_keep", "batch_size", "compute_entropy"]
    assert _params(GRPOTrainer._save_checkpoint) == ["self", "model", "trial"]
    assert _params(GRPOTrainer._load_optimizer_and_scheduler) == ["self", "checkpoint"]
    assert _params(GRPOTrainer._generate_single_turn)[:3] == ["self", "prompt_ids", "images"]
    assert _params(GRPOTrainer.training_step) == ["self", "model", "inputs", "num_items_in_batch"]
    assert _params(GRPOTrainer._compute_loss) == ["self", "model", "inputs"]
    assert _params(GRPOTrainer._get_output_dir) == ["self", "trial"]
    assert "self._get_output_dir(trial=trial)" in inspect.getsource(GRPOTrainer._save_checkpoint)


def test_logging_model_card_and_load_warning_hooks():
    """AntiSDTrainer.log drops the metrics with no finite value from ``self._metrics[mode]`` before TRL averages
    them (TRL logs None for those); create_model_card replaces TRL's card; _issue_warnings_after_load filters the
    tied keys out of ``load_result.missing_keys`` (a NamedTuple from load_state_dict)."""
    from transformers import Trainer

    src = inspect.getsource(GRPOTrainer.log)
    assert "self._metrics[mode].items()" in src and "else None" in src and "super().log(logs, start_time)" in src
    assert _params(GRPOTrainer.log) == ["self", "logs", "start_time"]
    assert "self.create_model_card(" in inspect.getsource(GRPOTrainer._save_checkpoint)
    assert _params(GRPOTrainer.create_model_card)[:2] == ["self", "model_name"]
    assert _params(Trainer._issue_warnings_after_load) == ["self", "load_result"]
    assert "load_result.missing_keys" in inspect.getsource(Trainer._issue_warnings_after_load)


def test_plain_generation_calls_the_unwrapped_models_generate():
    """generation_prune_finished serves ``unwrapped_model.generate(**inputs, generation_config=...)`` for the
    duration of ``_generate_single_turn``: TRL must still call it that way on the transformers path."""
    src = inspect.getsource(GRPOTrainer._generate_single_turn)
    assert "unwrapped_model.generate(" in src
    assert "generation_config=self.generation_config" in src
    assert "unwrap_model_for_generation(" in src


def test_loss_accepts_token_level_advantages():
    """_compute_loss must only unsqueeze 1-D advantages, leaving (B, T) ones as they are."""
    src = inspect.getsource(GRPOTrainer._compute_loss)
    assert 'advantages = inputs["advantages"]' in src
    assert "if advantages.dim() == 1:" in src
    # reuse_loss_logps composes the (B, T) advantages inside the loss's own log-prob call, so that
    # call must come before the advantages are read.
    assert src.index("self._get_per_token_logps_and_entropies(") < src.index('advantages = inputs["advantages"]')


@pytest.mark.slow
def test_generate_and_score_output_keys_and_shapes(tiny_model_path, tmp_path):
    from trainer_helpers import make_trainer

    tr = make_trainer(tiny_model_path, tmp_path, method="grpo")
    tr.model.train()
    batch = [tr.train_dataset[i] for i in range(2) for _ in range(4)]
    out = GRPOTrainer._generate_and_score_completions(tr, batch)
    for key in ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "advantages"):
        assert key in out, f"TRL no longer returns {key!r} from _generate_and_score_completions"
    B, T = out["completion_ids"].shape
    assert B == 8 and out["advantages"].shape == (B,)
    assert out["completion_mask"].shape == (B, T)
    ids, _, _ = tr._tokenize_prompts([x["prompt"] for x in batch])
    assert isinstance(ids, list) and all(isinstance(i, list) for i in ids)
    logps, ent, aux = tr._get_per_token_logps_and_entropies(
        tr.model, torch.cat([out["prompt_ids"], out["completion_ids"]], 1),
        torch.cat([out["prompt_mask"], out["completion_mask"]], 1), T, compute_entropy=True)
    assert logps.shape == ent.shape == (B, T) and aux is None
