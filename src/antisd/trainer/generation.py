"""Pruned generation inside TRL's rollout (``generation_prune_finished``): finished sequences leave the batch.

TRL's ``_generate_single_turn`` calls ``unwrapped_model.generate(**inputs, generation_config=...)`` on the
transformers path. For the duration of that call, ``serving_pruned_generate`` puts an instance attribute
``generate`` on the model that serves the call with ``antisd.lm.pruned_generation.pruned_generate`` (the same
sampling distribution; tests/lm/test_pruned_generation.py) and falls back to transformers' own ``generate`` for
what pruned generation does not support (logged once). The attribute is removed afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from accelerate.utils import DistributedType
from transformers import PreTrainedModel

from antisd.lm.pruned_generation import pruned_generate
from antisd.lm.pruned_generation import supports as pruned_supports


def is_lora_model(model) -> bool:
    """A PEFT model whose forward takes the base model's arguments (LoRA-style adapters, not prompt learning)."""
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel) and not getattr(model.active_peft_config, "is_prompt_learning", False)


def prunable_model(trainer):
    """The model TRL generates with, when pruned generation applies to it; else None (the reason logged once)."""
    if not trainer.args.generation_prune_finished:
        return None
    reason = None
    if trainer.use_vllm or trainer.use_transformers_continuous_batching:
        reason = "vLLM / continuous batching generate instead"
    elif trainer.accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP):
        reason = f"{trainer.accelerator.distributed_type} shards the weights"
    model = trainer.accelerator.unwrap_model(trainer.model_wrapped)
    if reason is None and not (isinstance(model, PreTrainedModel) or is_lora_model(model)):
        reason = f"the model is a {type(model).__name__}, not a transformers PreTrainedModel or a LoRA PeftModel"
    if reason is not None:
        trainer.log_once(f"generation_prune_finished ignored: {reason}")
        return None
    return model


@contextmanager
def serving_pruned_generate(model, log_once: Callable[[str], None]) -> Iterator[None]:
    """``model.generate`` answered by pruned generation inside the ``with`` block."""
    original = model.__dict__.get("generate")

    def generate(input_ids=None, attention_mask=None, generation_config=None, **extra):
        reason = "extra inputs " + ", ".join(sorted(extra)) if extra else pruned_supports(generation_config)
        if reason is not None:
            log_once(f"generation_prune_finished: {reason}; using transformers' generate")
            fallback = original or type(model).generate.__get__(model)
            return fallback(input_ids=input_ids, attention_mask=attention_mask, generation_config=generation_config,
                            **extra)
        gc = generation_config
        eos = gc.eos_token_id if isinstance(gc.eos_token_id, (list, tuple)) else [gc.eos_token_id]
        return pruned_generate(model, input_ids, attention_mask, max_new_tokens=gc.max_new_tokens,
                               eos_token_ids=eos, pad_token_id=gc.pad_token_id, temperature=gc.temperature or 1.0,
                               top_k=gc.top_k, top_p=gc.top_p)

    model.generate = generate
    try:
        yield
    finally:
        if original is None:
            del model.generate
        else:
            model.generate = original
