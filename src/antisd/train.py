"""The training run of ``antisd train``: problems, tokenizer, model, ``AntiSDTrainer``, report.

``run_train`` takes the four dataclasses of ``antisd.configio.build_train_args`` (or ones built
in Python), resolves the built-in names (``antisd.builtin``), logs the effective prompt format,
teacher template and context sources first, then checks the model and the data
(``antisd.validate``, ``antisd.data``): a bad model path, tokenizer or data file raises
``InputError`` (one line) before anything is written. With ``run_inputs`` it then writes
``<output_dir>/antisd_run.yaml``, trains, saves the final model to ``output_dir`` and writes
``report.md`` with the curves (``antisd.report``); on the toy world the report also gets the
held-out accuracy of the base and the final policy. ``resume_from_checkpoint`` takes a
checkpoint folder, or true/last for the newest ``checkpoint-*`` in ``output_dir``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from antisd.configio import CliError, ModelArgs, RewardArgs
from antisd.validate import InputError, check_model, one_line

logger = logging.getLogger(__name__)


def _resume_arg(value: str | None, output_dir: str) -> str | bool | None:
    """TrainingArguments' resume_from_checkpoint (a string) as Trainer.train wants it."""
    if value is None or str(value).lower() in ("", "false", "none", "no", "0"):
        return None
    if str(value).lower() in ("true", "yes", "1", "last"):
        from transformers.trainer_utils import get_last_checkpoint

        if not os.path.isdir(output_dir) or get_last_checkpoint(output_dir) is None:
            raise CliError(f"resume_from_checkpoint=true but {output_dir!r} holds no checkpoint-* folder")
        return True
    if not os.path.isdir(value):
        raise CliError(f"resume_from_checkpoint={value!r} is not a directory; give a checkpoint path or true (the last one in output_dir)")
    return value


def log_effective_settings(data_cfg, config) -> None:
    """The first log lines of a run: what the prompts and the teacher's prompts will look like."""
    context = config.context_config
    system = f", system prompt {data_cfg.system_prompt!r}" if data_cfg.prompt_format == "chat" else ""
    logger.info("Prompt format: %s%s", data_cfg.prompt_format, system)
    if config.uses_teacher:
        logger.info("Teacher template: %r; context sources: %s (answer line %r)", context.template,
                    ", ".join(context.sources), context.answer_template)
    logger.info("Method %s (token signal %s, gate %s); output in %s",
                config.method, config.token_signal, config.gate, config.output_dir)


def _load_checked(what: str, name: str, load, *args, **kwargs):
    """`load(*args, **kwargs)`; a loader's OSError/ValueError becomes one InputError line naming `what`."""
    try:
        return load(*args, **kwargs)
    except (OSError, ValueError) as e:
        raise InputError(f"model_name_or_path={name!r}: the {what} could not be loaded ({one_line(e)[:300]})") from None


def run_train(model_args: ModelArgs, data_cfg, config, reward_args: RewardArgs | None = None, *,
              callbacks: list | None = None, report: bool = True, run_inputs: dict[str, Any] | None = None):
    """Check inputs, load problems, tokenizer and model, train ``AntiSDTrainer``, save the final model.
    Returns the trainer.

    Bad inputs raise ``antisd.validate.InputError`` (``antisd.data.DataError`` for the data;
    ``antisd train`` reports them on one line) before ``antisd_run.yaml`` (written from
    `run_inputs`, the settings of ``antisd.configio.train_inputs``) or anything else is written.

    ``antisd.data.load_problems`` maps the dataset to its canonical columns, so ``config``'s
    ``answer_column``/``solution_column``/``problem_id_column`` are pointed at them
    (``AntiSDConfig.use_canonical_columns``; a changed value is logged).
    """
    from transformers import AutoModelForCausalLM

    from antisd.builtin import is_toy_model, resolve_dataset, resolve_model
    from antisd.data import check_prompt_format, load_problems
    from antisd.report import log_final_step_callback
    from antisd.rewards import MathReward
    from antisd.sampling import load_tokenizer, torch_dtype
    from antisd.trainer import AntiSDTrainer

    reward_args = reward_args or RewardArgs()
    toy = is_toy_model(model_args.model_name_or_path)
    log_effective_settings(data_cfg, config)
    resume = _resume_arg(config.resume_from_checkpoint, config.output_dir)
    dataset = load_problems(resolve_dataset(data_cfg))  # validated before anything big loads
    model_args = resolve_model(model_args)
    name = model_args.model_name_or_path
    check_model(name)
    logger.info("Loading the tokenizer of %s", name)
    tokenizer = _load_checked("tokenizer", name, load_tokenizer, name, trust_remote_code=model_args.trust_remote_code)
    check_prompt_format(tokenizer, data_cfg)
    for field, (old, new) in config.use_canonical_columns().items():
        if old is not None:  # a column name set for the source data; the trainer reads the mapped one
            logger.info("AntiSDConfig.%s: %r -> %r (the column antisd.data.load_problems writes)", field, old, new)
    logger.info("Loading the model %s (dtype %s)", name, model_args.dtype)
    model = _load_checked("model", name, AutoModelForCausalLM.from_pretrained, name,
                          dtype=torch_dtype(model_args.dtype), trust_remote_code=model_args.trust_remote_code)
    if run_inputs is not None and config.process_index == 0:
        from antisd.configio import save_train_inputs

        logger.info("Run settings written to %s", save_train_inputs(run_inputs, config.output_dir))
    trainer = AntiSDTrainer(
        model=model,
        reward_funcs=[MathReward(format_strict=reward_args.reward_format_strict)],
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[*(callbacks or []), log_final_step_callback()],
        peft_config=model_args.peft_config(),
    )
    if model_args.use_peft:
        trainable, total = (sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
                            sum(p.numel() for p in trainer.model.parameters()))
        logger.info("LoRA: %d of %d parameters train (%.2f%%)", trainable, total, 100 * trainable / total)
    logger.info("Training: %s steps of %d completions (%d per problem)%s", config.max_steps,
                config.generation_batch_size, config.num_generations, f", resuming from {resume}" if resume else "")
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(config.output_dir)
    logger.info("Saved the final model to %s", config.output_dir)
    if report and trainer.is_world_process_zero():
        _final_report(trainer, model_args, toy)
    return trainer


def _final_report(trainer, model_args, toy: bool) -> None:
    """Write report.md + curves; on the toy world, add held-out accuracy of the base and final policy."""
    from antisd.report import write_report

    trainer.state.save_to_json(os.path.join(trainer.args.output_dir, "trainer_state.json"))
    extra: dict[str, Any] = {"method": trainer.args.method, "token signal": trainer.args.token_signal,
                             "gate": trainer.args.gate, "model": model_args.model_name_or_path}
    if toy:
        from antisd.builtin import evaluate_toy_policy
        from antisd.toyworld.base_policy import load_build_info

        info = load_build_info(model_args.model_name_or_path)
        logger.info("Scoring the final policy on held-out toy problems")
        final = evaluate_toy_policy(trainer.model, trainer.processing_class, model_args.model_name_or_path,
                                    max_new_tokens=trainer.args.max_completion_length)
        base_acc = info.get("heldout", {}).get("eval/accuracy", float("nan"))
        extra["held-out accuracy, base policy"] = f"{base_acc:.3f}"
        extra["held-out accuracy, final policy"] = (
            f"{final['eval/accuracy']:.3f} +- {final['eval/stderr']:.3f} (n={int(final['eval/n'])})")
        extra["held-out strict-format accuracy, final"] = f"{final['eval/strict_accuracy']:.3f}"
        extra["held-out mean response tokens, final"] = f"{final['eval/mean_tokens']:.1f}"
    title = f"antisd train: {trainer.args.method}" + (" on the toy world" if toy else "")
    path = write_report(trainer.args.output_dir, title=title, extra=extra)
    logger.info("Report: %s (plots in %s)", path, os.path.join(trainer.args.output_dir, "plots"))
