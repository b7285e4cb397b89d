"""antisd.lm.plumbing: backbone and output layer through wrappers, needs_full_logits, positions, modes."""

from __future__ import annotations

import torch

from antisd.lm.plumbing import (
    accepts_kwarg,
    eval_mode,
    find_backbone,
    last_hidden_states,
    model_device,
    needs_full_logits,
    output_layer,
    position_ids_from_mask,
    unwrap_model,
)
from model_wrappers import FakePeft, Wrapper


def test_position_ids_from_mask() -> None:
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 0, 0]])
    assert position_ids_from_mask(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 2, 2]]


def test_backbone_and_unwrapping(tiny_model) -> None:
    assert find_backbone(tiny_model) is tiny_model.model  # Qwen3: base_model_prefix "model"
    assert unwrap_model(tiny_model) is tiny_model
    wrapped, peft = Wrapper(tiny_model), FakePeft(tiny_model)
    assert find_backbone(wrapped) is None, "a DDP-style wrapper's forward must run"
    assert unwrap_model(wrapped) is tiny_model
    assert find_backbone(peft) is tiny_model.model and unwrap_model(peft) is tiny_model
    assert find_backbone(torch.nn.Linear(2, 2)) is None  # no backbone exposed


def test_output_layer_and_needs_full_logits(tiny_model) -> None:
    weight, bias = output_layer(FakePeft(tiny_model))
    assert weight is tiny_model.lm_head.weight and bias is None
    assert needs_full_logits(tiny_model) is None and needs_full_logits(Wrapper(tiny_model)) is None
    tiny_model.config.final_logit_softcapping = 30.0
    assert needs_full_logits(Wrapper(tiny_model)) == "config.final_logit_softcapping=30.0 transforms the logits"
    tiny_model.config.final_logit_softcapping = None
    tiny_model.lm_head = torch.nn.Sequential(tiny_model.lm_head)  # e.g. a LoRA-wrapped head
    assert needs_full_logits(tiny_model) == "output embeddings Sequential are not a plain nn.Linear"


def test_last_hidden_states_backbone_and_wrapper_paths(tiny_model) -> None:
    """Both paths give the final normed states: lm_head of them is the model's logits."""
    ids = torch.tensor([[0, 0, 7, 8, 9], [3, 4, 5, 6, 7]])  # (2, 5), row 0 left-padded
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    pos = position_ids_from_mask(mask)
    with torch.no_grad():
        logits = tiny_model(input_ids=ids, attention_mask=mask, position_ids=pos).logits  # (2, 5, V)
        for model in (tiny_model, Wrapper(tiny_model)):
            hidden = last_hidden_states(model, ids, mask, pos)  # (2, 5, H)
            assert hidden.shape == (2, 5, tiny_model.config.hidden_size)
            torch.testing.assert_close(tiny_model.lm_head(hidden), logits, rtol=1e-5, atol=1e-5)


def test_eval_mode_device_and_kwargs(tiny_model) -> None:
    tiny_model.train()
    with eval_mode(tiny_model) as m:
        assert m is tiny_model and not tiny_model.training
    assert tiny_model.training, "the previous mode is restored"
    tiny_model.eval()
    with eval_mode(tiny_model):
        pass
    assert not tiny_model.training
    assert model_device(tiny_model) == torch.device("cpu")
    assert accepts_kwarg(tiny_model, "logits_to_keep") and accepts_kwarg(Wrapper(tiny_model), "anything")
    assert not accepts_kwarg(torch.nn.Linear(2, 2), "logits_to_keep")
