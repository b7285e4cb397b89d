"""The start checks of ``AntiSDTrainer``'s construction, the Python API's entry point: what can fail before
training starts fails there, on one line (``antisd.cli.validate.InputError``), not inside ``trainer.train()``.

    resolve_trainer_inputs(args, kwargs)   the trainer's arguments with a model given by name resolved
                                           (``antisd.lm.names.resolve_model``: toyworld, a local folder or a
                                           hub id; never a hub round trip for the first two) and
                                           ``args.output_dir`` checked (``antisd.cli.validate.check_output_dir``)
    check_constructed(trainer)             the toy model gets its chat template and, for the fields left at
                                           their general defaults, the toy teacher context (logged); chat
                                           prompts in the training data need a tokenizer with a chat template

The numeric ranges of the config are checked when ``AntiSDConfig`` is built (``antisd.trainer.config``).
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from antisd.lm.names import apply_toy_context, ensure_toy_chat_template, is_toy_tokenizer, resolve_model
from antisd.cli.validate import InputError, check_output_dir

logger = logging.getLogger(__name__)


def resolve_trainer_inputs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``GRPOTrainer.__init__``'s positional and keyword arguments, with ``model`` resolved when it is a name
    and ``args.output_dir`` checked. Raises InputError."""
    from trl import GRPOTrainer

    try:
        bound = inspect.signature(GRPOTrainer.__init__).bind(None, *args, **kwargs)  # None: self
    except TypeError:
        return args, kwargs  # TRL reports its own signature errors
    values = bound.arguments
    if isinstance(values.get("model"), str):
        values["model"] = resolve_model(values["model"], what="model").path
    output_dir = getattr(values.get("args"), "output_dir", None)
    if output_dir:
        check_output_dir(output_dir)
    return tuple(bound.args[1:]), dict(bound.kwargs)


def _tokenizer(processing_class: Any) -> Any:
    return getattr(processing_class, "tokenizer", None) or processing_class  # a multimodal processor's tokenizer


def _first_prompt(dataset: Any) -> Any:
    if dataset is None or not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__") or not len(dataset):
        return None
    row = dataset[0]
    return row.get("prompt") if isinstance(row, dict) else None


def check_constructed(trainer: Any) -> None:
    """The checks that need the constructed trainer (its tokenizer and config); raises InputError."""
    tokenizer = ensure_toy_chat_template(_tokenizer(trainer.processing_class))
    config = trainer.args
    if is_toy_tokenizer(tokenizer) and config.uses_teacher:
        changed = apply_toy_context(config)
        if changed:
            logger.info("The toy model: its teacher context (recipes/toy/antisd.yaml) replaces the general defaults: %s",
                        ", ".join(f"{k}={new!r}" for k, (_, new) in changed.items()))
    prompt = _first_prompt(trainer.train_dataset)
    if isinstance(prompt, list) and not getattr(tokenizer, "chat_template", None):
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        raise InputError(f"train_dataset holds chat prompts (lists of messages), and the tokenizer of {name!r} has no "
                         "chat template; build the dataset with prompt_format='plain' (problems_dataset(..., "
                         "prompt_format='plain'): the problem text as the prompt) or give a tokenizer with a chat "
                         "template")
