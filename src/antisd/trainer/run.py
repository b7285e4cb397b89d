"""The training run of ``antisd train``: problems, tokenizer, model, ``AntiSDTrainer``, report.

``run_train`` takes the four dataclasses of ``antisd.cli.options.build_train_args`` (or ones built
in Python), resolves the built-in names (``antisd.toyworld.defaults``), reads and validates the data
(``antisd.data.problems``; code data: ``antisd.data.code_problems``), chooses the reward (``RewardArgs.reward``:
math or code; auto: code when the data has the tests column or is ``mbpp_train``), logs the
effective prompt format, teacher template, context sources and reward first, then prepares the
code tasks (expected outputs computed once; tasks whose reference fails their tests are dropped and
logged) and checks the model (``antisd.cli.validate``): a bad model path, tokenizer or data file raises
``InputError`` (one line) before anything is written. With ``run_inputs`` it then writes
``<output_dir>/antisd_run.yaml``, trains, saves the final model to ``output_dir`` and writes
``report.md`` with the curves (``antisd.trainer.report``); on the toy world the report also gets the
held-out accuracy of the base and the final policy. ``resume_from_checkpoint`` takes a
checkpoint folder, or true/last for the newest ``checkpoint-*`` in ``output_dir``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

from antisd.cli.options import CliError, ModelArgs, RewardArgs
from antisd.cli.validate import InputError, check_output_dir, one_line

logger = logging.getLogger(__name__)


def _resume_arg(value: str | None, output_dir: str) -> str | None:
    """TrainingArguments' resume_from_checkpoint (a string) as Trainer.train wants it: None or a checkpoint
    folder; true/last is the newest complete checkpoint of output_dir (``antisd.trainer.checkpoints``; else the
    highest-numbered one, as transformers picks it), so that the log names the folder."""
    if value is None or str(value).lower() in ("", "false", "none", "no", "0"):
        return None
    if str(value).lower() in ("true", "yes", "1", "last"):
        from transformers.trainer_utils import get_last_checkpoint

        from antisd.trainer.checkpoints import last_complete_checkpoint

        found = (last_complete_checkpoint(output_dir) or get_last_checkpoint(output_dir)
                 if os.path.isdir(output_dir) else None)
        if found is None:
            raise CliError(f"resume_from_checkpoint=true but {output_dir!r} holds no checkpoint-* folder")
        return found
    if not os.path.isdir(value):
        raise CliError(f"resume_from_checkpoint={value!r} is not a directory; give a checkpoint path or true (the last one in output_dir)")
    return value


def log_effective_settings(data_cfg, config, reward: str | None = None) -> None:
    """The first log lines of a run: what the prompts and the teacher's prompts will look like, the
    method, and (`reward`: a description) the reward."""
    context = config.context_config
    system = f", system prompt {data_cfg.system_prompt!r}" if data_cfg.prompt_format == "chat" else ""
    logger.info("Prompt format: %s%s", data_cfg.prompt_format, system)
    if config.uses_teacher:
        logger.info("Teacher template: %r; context sources: %s (answer line %r)", context.template,
                    ", ".join(context.sources), context.answer_template)
    logger.info("Method %s (token signal %s, gate %s; guards: %s); output in %s",
                config.method, config.token_signal, config.gate, config.guards, config.output_dir)
    if reward is not None:
        logger.info("Reward: %s", reward)


def choose_reward(data_cfg, reward_args: RewardArgs, columns: list[str]) -> tuple[str, str]:
    """("math" | "code", why): ``--reward`` when set, else code for a built-in code dataset or data with
    the tests column, else math."""
    from antisd.data.code_problems import is_code_builtin

    if reward_args.reward != "auto":
        return reward_args.reward, f"reward={reward_args.reward}"
    if is_code_builtin(data_cfg.dataset_name):
        return "code", f"auto: {data_cfg.dataset_name} is a built-in code dataset"
    if data_cfg.tests_column in columns:
        return "code", f"auto: the data has a {data_cfg.tests_column!r} column"
    return "math", f"auto: the data has no {data_cfg.tests_column!r} column"


def load_training_data(data_cfg, reward_args: RewardArgs):
    """(dataset, effective DataConfig, "math" | "code", why) from a data config: built-in names resolved,
    the source read once, the reward chosen (``choose_reward``), the rows mapped and validated."""
    from antisd.toyworld.defaults import resolve_dataset
    from antisd.data.code_problems import code_prompt_config, load_code_raw, map_code_problems
    from antisd.data.problems import load_problems

    raw, data_cfg = load_code_raw(resolve_dataset(data_cfg))
    kind, why = choose_reward(data_cfg, reward_args, raw.column_names)
    if kind == "code":
        data_cfg = code_prompt_config(data_cfg)
        return map_code_problems(raw, data_cfg), data_cfg, kind, why
    return load_problems(data_cfg, raw), data_cfg, kind, why


def make_reward(kind: str, reward_args: RewardArgs, data_cfg, config, dataset):
    """(reward function, dataset): ``MathReward``, or a ``CodeReward`` whose tasks are prepared here (expected
    outputs computed once); rows whose reference fails its own tests are dropped, counted and logged. With
    ``code_reward_fraction`` the config's ``correct_threshold`` must be 1.0 (``antisd train`` sets it so,
    ``antisd.cli.options.trainer_values``): a rollout that passes only some tests is no sibling solution."""
    from antisd.rewards.code.score import make_executor
    from antisd.rewards import CodeReward, MathReward

    if kind == "math":
        return MathReward(format_strict=reward_args.reward_format_strict,
                          answer_extraction=reward_args.answer_extraction), dataset
    if reward_args.reward_format_strict:
        logger.warning("reward_format_strict applies to the maths reward only; the code reward ignores it")
    if reward_args.code_reward_fraction and config.correct_threshold < 1.0:
        raise InputError(f"correct_threshold={config.correct_threshold} with code_reward_fraction: a rollout that "
                         "passes only some tests would count as correct (a sibling solution for the teacher); set "
                         "correct_threshold to 1.0 (antisd train does so itself)")
    reward = CodeReward(fraction=reward_args.code_reward_fraction, mode=extraction_mode(reward_args, data_cfg),
                        executor=make_executor(reward_args.code_sandbox), workers=reward_args.code_workers)
    try:
        unusable = reward.prepare(dataset["tests"], dataset["problem_id"])
    except RuntimeError as e:  # isolation=bwrap without a working bubblewrap
        raise InputError(f"code_sandbox={reward_args.code_sandbox!r}: {one_line(e)}") from None
    if unusable:
        listed = ", ".join(f"{pid} ({one_line(why)[:120]})" for pid, why in list(unusable.items())[:5])
        logger.warning("%d of %d code tasks are skipped: their reference solution fails their own tests or they have "
                       "no tests: %s%s", len(unusable), len(dataset), listed, " ..." if len(unusable) > 5 else "")
        if len(unusable) == len(dataset):
            raise InputError(f"dataset_name={data_cfg.dataset_name!r}: every code task is unusable (its reference "
                             f"fails its own tests), e.g. {listed}")
        dataset = dataset.select([i for i, pid in enumerate(dataset["problem_id"]) if pid not in unusable])
    return reward, dataset


def extraction_mode(reward_args: RewardArgs, data_cfg) -> str:
    """``code_extraction``, with auto resolved: fenced for chat prompts, raw (prompt + completion) for plain ones."""
    mode = reward_args.code_extraction
    return mode if mode != "auto" else ("raw" if data_cfg.prompt_format == "plain" else "fenced")


def reward_description(kind: str, why: str, reward_args: RewardArgs, config, data_cfg) -> str:
    """The ``Reward:`` log line."""
    if kind == "math":
        extras = [", strict format" if reward_args.reward_format_strict else "",
                  ", flexible extraction (else the last number)" if reward_args.answer_extraction == "flexible" else ""]
        return f"math ({why}): math-verify on the answer column{''.join(extras)}"
    value = "the share of tests passed" if reward_args.code_reward_fraction else "1.0 when every test passes, else 0.0"
    sources = config.context_config.sources
    note = ("; the teacher's answer source never fires on code (no answer column): sibling, then the reference "
            "solution" if config.uses_teacher and "answer" in sources else "")
    return (f"code ({why}): {value}; extraction {extraction_mode(reward_args, data_cfg)}, sandbox "
            f"{reward_args.code_sandbox}{note}")


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

    Bad inputs raise ``antisd.cli.validate.InputError`` (``antisd.data.problems.DataError`` for the data;
    ``antisd train`` reports them on one line) before ``antisd_run.yaml`` (written from
    `run_inputs`, the settings of ``antisd.cli.options.train_inputs``) or anything else is written.

    ``antisd.data.problems.load_problems`` maps the dataset to its canonical columns, so ``config``'s
    ``answer_column``/``solution_column``/``problem_id_column`` must name them: their defaults, which
    ``antisd train`` always uses (``AntiSDConfig.check_problem_columns``; the source data's own column names
    are ``data_cfg``'s). Nothing here changes a config: each was validated once, when it was built.
    """
    from antisd.lm.names import resolve_model

    reward_args = reward_args or RewardArgs()
    check_output_dir(config.output_dir)
    try:
        config.check_problem_columns()
    except ValueError as e:
        raise InputError(str(e)) from None
    resume = _resume_arg(config.resume_from_checkpoint, config.output_dir)
    model_label, data_label = model_args.model_name_or_path, data_cfg.dataset_name  # as given: report and card
    dataset, data_cfg, kind, why = load_training_data(data_cfg, reward_args)  # validated before anything big loads
    ref = resolve_model(model_args.model_name_or_path)  # a name that is no model fails here, at once
    toy = ref.toy_build is not None  # the held-out toy evaluation needs the base policy's build
    model_args = dataclasses.replace(model_args, model_name_or_path=ref.path)
    log_effective_settings(data_cfg, config, reward_description(kind, why, reward_args, config, data_cfg))
    reward, dataset = make_reward(kind, reward_args, data_cfg, config, dataset)
    try:
        trainer = _build_trainer(model_args, data_cfg, config, reward, dataset, callbacks=callbacks,
                                 run_inputs=run_inputs)
    except BaseException:
        if hasattr(reward, "close"):
            reward.close()  # the code sandbox's worker processes
        raise
    trainer.model_card_info = {"base_model": model_label, "data": f"{data_label} ({len(dataset)} problems)",
                               "reward": reward_description(kind, why, reward_args, config, data_cfg)}
    logger.info("Training: %s steps of %d completions (%d per problem)%s", config.max_steps,
                config.generation_batch_size, config.num_generations, f", resuming from {resume}" if resume else "")
    try:
        trainer.train(resume_from_checkpoint=resume)
    finally:
        if hasattr(reward, "close"):
            reward.close()  # the code sandbox's worker processes
    trainer.save_model(config.output_dir)
    logger.info("Saved the final model to %s", config.output_dir)
    if report and trainer.is_world_process_zero():
        _final_report(trainer, model_args, toy_world_run(toy, kind, data_label), model_label=model_label,
                      data_label=data_label, kind=kind)
    return trainer


def toy_world_run(toy_model: bool, kind: str, dataset_name: str) -> bool:
    """Whether a run is a toy-world run (the toy model on the toy world's maths problems): only those get the
    held-out toy evaluation and a report titled "on the toy world"."""
    from antisd.toyworld.defaults import TOY_DATASET

    return toy_model and kind == "math" and dataset_name == TOY_DATASET


def _build_trainer(model_args: ModelArgs, data_cfg, config, reward, dataset, *, callbacks, run_inputs):
    """Tokenizer, model and ``AntiSDTrainer`` (whose construction runs the last start checks); then, and only
    then, ``antisd_run.yaml``: a start that fails leaves no file behind."""
    from transformers import AutoModelForCausalLM

    from antisd.data.problems import check_prompt_format
    from antisd.trainer.progress import progress_callback
    from antisd.trainer.report import log_final_step_callback
    from antisd.lm.sampling import load_tokenizer, torch_dtype
    from antisd.trainer.core import AntiSDTrainer

    name = model_args.model_name_or_path
    logger.info("Loading the tokenizer of %s", name)
    tokenizer = _load_checked("tokenizer", name, load_tokenizer, name, trust_remote_code=model_args.trust_remote_code)
    check_prompt_format(tokenizer, data_cfg)
    logger.info("Loading the model %s (dtype %s)", name, model_args.dtype)
    model = _load_checked("model", name, AutoModelForCausalLM.from_pretrained, name,
                          dtype=torch_dtype(model_args.dtype), trust_remote_code=model_args.trust_remote_code)
    trainer = AntiSDTrainer(
        model=model,
        reward_funcs=[reward],
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[*(callbacks or []), log_final_step_callback(), progress_callback()],
        peft_config=model_args.peft_config(),
    )
    if model_args.use_peft:
        trainable, total = (sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
                            sum(p.numel() for p in trainer.model.parameters()))
        logger.info("LoRA: %d of %d parameters train (%.2f%%)", trainable, total, 100 * trainable / total)
    if run_inputs is not None and config.process_index == 0:
        from antisd.cli.options import save_train_inputs

        logger.info("Run settings written to %s", save_train_inputs(run_inputs, config.output_dir))
    return trainer


def _final_report(trainer, model_args, toy: bool, *, model_label: str | None = None, data_label: str | None = None,
                  kind: str = "math") -> None:
    """Write report.md + curves and the model card (README.md); on a toy-world run (`toy`), add the held-out
    accuracy of the base and the final policy to both. The title names what was trained: the method, the
    data and its reward, the model."""
    from antisd.trainer.modelcard import write_model_card
    from antisd.trainer.report import write_report

    trainer.state.save_to_json(os.path.join(trainer.args.output_dir, "trainer_state.json"))
    a = trainer.args
    extra: dict[str, Any] = {"method": a.method, "token signal": a.token_signal, "gate": a.gate,
                             "model": model_args.model_name_or_path}
    if a.uses_teacher:
        extra["guards"] = a.guards
    if toy:
        from antisd.toyworld.defaults import evaluate_toy_policy
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
    if toy:
        title = f"antisd train: {a.method} on the toy world"
    else:
        title = f"antisd train: {a.method} on {data_label or 'the data'} ({kind} reward), from " \
                f"{model_label or model_args.model_name_or_path}"
    path = write_report(trainer.args.output_dir, title=title, extra=extra)
    held_out = {k: v for k, v in extra.items() if k.startswith("held-out")}
    logger.info("Model card: %s", write_model_card(trainer, extra=held_out))
    logger.info("Report: %s (plots in %s)", path, os.path.join(trainer.args.output_dir, "plots"))
