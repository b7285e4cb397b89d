"""The settings of ``antisd train``: ``ModelArgs``, ``RewardArgs`` and the four dataclasses of a run.

    train_inputs(argv)           --recipe/--config files and flags as one mapping of field: value, the
                                 values that differ from the defaults (what ``antisd_run.yaml`` records)
    build_train_args(inputs)     (ModelArgs, DataConfig, RewardArgs, AntiSDConfig), each validated once
    trainer_values(inputs)       AntiSDConfig's values under ``antisd train`` (its columns, correct_threshold)
    save_train_inputs(...)       ``<output_dir>/antisd_run.yaml``, which ``--config`` reads back

The config layer under them (YAML files, recipes, ``DataclassParser``) is ``antisd.cli.configfiles`` and
``antisd.cli.parser``; its names are importable from here too, where the commands have always found them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from antisd.cli.configfiles import (  # noqa: F401 - re-exported: the config layer's long-standing import path
    PLACEHOLDERS,
    RECIPE_VERSION,
    RECIPES_DIR,
    CliError,
    config_path,
    export_env,
    list_recipes,
    load_recipe,
    merge_configs,
    read_yaml,
)
from antisd.cli.fields import ExtractionField, SandboxFields
from antisd.cli.parser import (  # noqa: F401 - re-exported, as above
    NEGATIVE_NUMBER,
    NONE_WORDS,
    DataclassParser,
    apply_config,
    field_defaults,
    instantiate,
    json_object,
    parse_with_configs,
    parsed_defaults,
    split_config_flags,
    string_to_bool,
    suggest,
)
from antisd.cli.validate import check_choice
from antisd.files import atomic_write

logger = logging.getLogger(__name__)


@dataclass
class ModelArgs:
    """The policy to train."""

    model_name_or_path: str = field(
        metadata={"help": "Hub name or local path of the model (and its tokenizer) to train."},
    )
    dtype: Literal["float32", "bfloat16", "auto"] = field(
        default="auto",
        metadata={"help": "Weights dtype at load time: float32, bfloat16 or auto (the checkpoint's own).",
                  "choices": ["float32", "bfloat16", "auto"]},
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow model/tokenizer code from the hub (shared with the trainer config)."},
    )
    use_peft: bool = field(
        default=False,
        metadata={"help": "Train LoRA adapters (PEFT) instead of all weights; the privileged teacher is the same "
                          "adapted model. Checkpoints then hold the adapter (load by path with its base)."},
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling alpha (the update is scaled by alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={"help": "Module names to adapt, e.g. q_proj k_proj v_proj o_proj (default: all linear layers "
                          "but the output layer, PEFT's all-linear)."},
    )

    def __post_init__(self) -> None:
        check_choice("dtype", self.dtype, ("float32", "bfloat16", "auto"))
        if self.lora_r < 1 or self.lora_alpha < 1 or not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_r={self.lora_r} and lora_alpha={self.lora_alpha} must be >= 1 and "
                             f"lora_dropout={self.lora_dropout} in [0, 1)")

    def peft_config(self):
        """The LoRA config of ``use_peft`` (peft.LoraConfig), or None."""
        if not self.use_peft:
            return None
        from peft import LoraConfig

        return LoraConfig(r=self.lora_r, lora_alpha=self.lora_alpha, lora_dropout=self.lora_dropout,
                          target_modules=self.lora_target_modules or "all-linear", task_type="CAUSAL_LM")



@dataclass
class RewardArgs(SandboxFields, ExtractionField):
    """The verifier reward: maths (antisd.rewards.MathReward) or code execution (antisd.rewards.CodeReward).
    ``answer_extraction`` (maths) and ``code_sandbox``/``code_workers`` (code) are the field groups of
    ``antisd.cli.fields``, declared once for ``antisd train`` and ``antisd eval``."""

    reward: Literal["auto", "math", "code"] = field(default="auto", metadata={
        "help": "math: math-verify on the answer column; code: each completion's program run against the tests column "
                "(docs/code.md); auto: code when the data has the tests column or is mbpp_train, else math.",
        "choices": ["auto", "math", "code"]})
    reward_format_strict: bool = field(
        default=False,
        metadata={"help": "Also require the strict answer format (one \\boxed{} that ends the response; "
                          "antisd.rewards.is_strict_format), else a correct answer in another format scores 0."},
    )
    code_reward_fraction: bool = field(default=False, metadata={
        "help": "Code: reward the share of tests passed instead of 1.0 only when all pass (a rollout is then correct, "
                "for the teacher's context, only at 1.0: correct_threshold 0.5 becomes 1.0)."})
    code_extraction: Literal["auto", "fenced", "raw"] = field(default="auto", metadata={
        "help": "Code: fenced (the last ```python block), raw (the prompt + the completion, for completion-style "
                "plain prompts); auto: fenced for chat prompts, raw for plain ones.", "choices": ["auto", "fenced", "raw"]})

    def __post_init__(self) -> None:
        check_choice("reward", self.reward, ("auto", "math", "code"))
        check_choice("code_extraction", self.code_extraction, ("auto", "fenced", "raw"))
        self.check_extraction()
        self.check_sandbox()


def dataclass_types() -> list[type]:
    """The dataclasses of ``antisd train``, in the order of ``build_train_args``' result."""
    from antisd.trainer.config import AntiSDConfig
    from antisd.data.problems import DataConfig

    return [ModelArgs, DataConfig, RewardArgs, AntiSDConfig]


def build_parser() -> DataclassParser:
    """The parser of ``antisd train`` (errors raise ``CliError``; optional numbers and booleans read
    ``none``/``null`` as unset, e.g. ``--logps_batch_rows none`` undoes a recipe's value)."""
    return DataclassParser(dataclass_types(), prog="antisd train", allow_abbrev=False, error=CliError,
                           none_words=NONE_WORDS, none_for_strings=False)


def train_inputs(argv: Sequence[str]) -> dict[str, Any]:
    """The settings of ``--recipe``/``--config`` files and overrides as one mapping of field: value.

    Precedence, lowest first: dataclass defaults, the recipe, each ``--config`` file in order,
    the remaining ``--key value`` arguments. Keeps the values that differ from the defaults
    (plus ``env``): this is what ``antisd_run.yaml`` records, and ``--config`` reads it back.
    Unknown keys, bad types and bad choices raise ``CliError``.
    """
    values, env = parse_with_configs(build_parser(), argv, recipe=True)
    defaults = field_defaults(dataclass_types())
    unset = parsed_defaults(build_parser())  # a few TrainingArguments fields parse their default differently
    inputs = {k: v for k, v in values.items() if v != defaults[k] and (k not in unset or v != unset[k])}
    return {**inputs, "env": env} if env else inputs


def trainer_values(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """AntiSDConfig's values under ``antisd train``: `inputs` (``train_inputs``) with what the command fixes, so
    that the config is built, and validated, once with its final values:

    - the trainer reads the columns ``antisd.data.problems`` writes (``CANONICAL_COLUMNS``, AntiSDConfig's
      defaults). ``answer_column`` and ``solution_column`` name the source data's columns (DataConfig's
      options, shared by name), as ``id_column`` does; a ``problem_id_column`` given anyway is logged and unused.
    - with ``code_reward_fraction``, unless the reward is maths, only a rollout that passes every test is
      correct: a ``correct_threshold`` below 1.0 becomes 1.0 (logged; maths rewards are 0 or 1 either way).
    """
    from antisd.method.context import ContextConfig
    from antisd.trainer.config import CANONICAL_COLUMNS

    values = {**inputs, **CANONICAL_COLUMNS}
    given = inputs.get("problem_id_column")
    if given is not None and given != CANONICAL_COLUMNS["problem_id_column"]:
        logger.warning("problem_id_column=%r is not used by antisd train: the trainer reads the column %r that "
                       "antisd.data.problems writes (id_column names the source data's id column)", given,
                       CANONICAL_COLUMNS["problem_id_column"])
    threshold = inputs.get("correct_threshold", ContextConfig.correct_threshold)
    if inputs.get("code_reward_fraction") and inputs.get("reward") != "math" and threshold is not None \
            and threshold < 1.0:
        logger.info("correct_threshold %s -> 1.0: with code_reward_fraction only a rollout that passes every test "
                    "is correct (a sibling solution for the teacher)", threshold)
        values["correct_threshold"] = 1.0
    return values


def build_train_args(inputs: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    """(ModelArgs, DataConfig, RewardArgs, AntiSDConfig) from ``train_inputs``; exports ``env``.

    A field declared by several dataclasses gets the same value in each, except the columns the trainer
    reads (``trainer_values``: AntiSDConfig's values). Each dataclass is built once, with its final values;
    errors raised by the dataclasses' own checks become ``CliError``.
    """
    from antisd.trainer.config import AntiSDConfig

    inputs = dict(inputs)
    export_env(inputs.pop("env", {}))
    out = []
    for dtype in dataclass_types():
        try:
            out.append(instantiate(dtype, trainer_values(inputs) if dtype is AntiSDConfig else inputs))
        except (ValueError, TypeError) as e:
            message = " ".join(str(e).split())
            if "bf16" in message:
                message += " (on a machine without a GPU set bf16: false, or pass --bf16 false)"
            raise CliError(f"invalid {dtype.__name__}: {message}") from None
    return tuple(out)


def parse_train_args(argv: Sequence[str]) -> tuple[Any, Any, Any, Any]:
    """(ModelArgs, DataConfig, RewardArgs, AntiSDConfig) from command-line arguments (see ``train_inputs``)."""
    return build_train_args(train_inputs(argv))


def save_train_inputs(inputs: dict[str, Any], output_dir: str | Path) -> Path:
    """Write ``<output_dir>/antisd_run.yaml`` (version 1; atomically): rerun with ``antisd train --config`` it."""
    import yaml

    path = Path(output_dir) / "antisd_run.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump({"version": RECIPE_VERSION, **inputs}, sort_keys=False, allow_unicode=True, width=120)
    return atomic_write(path, text)
