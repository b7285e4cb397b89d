"""The config layer of the ``antisd`` commands: YAML files, ``--key value`` flags, dataclasses.

One way for ``antisd train``, ``antisd eval`` and ``antisd pmi`` to turn dataclasses into a
command line (``DataclassParser``, a ``transformers.HfArgumentParser``) and to read settings:

    read_yaml(path)              one file, ``version`` checked (1; absent means 1) and dropped
    config_path(path)            a --config path; ``recipes/...`` that does not exist locally is
                                 read from the packaged recipes (so documented commands work anywhere)
    merge_configs(paths)         files merged left to right (later keys win; ``env`` maps merge)
    load_recipe(model, method)   recipes/models/<model>.yaml + recipes/methods/<method>.yaml
    apply_config(parser, cfg)    a merged mapping as the parser's defaults: unknown keys (with
                                 "did you mean"), bad types and bad choices raise ``CliError``
    parse_with_configs(...)      ``--config FILE`` (repeatable) and ``--recipe MODEL METHOD``
                                 split off, files applied, the remaining flags parsed on top

Precedence, lowest first: dataclass defaults, the recipe, each ``--config`` file in order, the
command line. ``env:`` in a file maps VARIABLE: value; ``export_env`` sets them.

Conventions of ``DataclassParser`` for every command: ``--name`` and ``--kebab-name`` per field
(plus the field's ``aliases`` metadata), ``--flag [BOOL]`` for booleans (1/true/yes/y/on/t or
0/false/no/n/off/f; a field that defaults to true also gets ``--no_flag`` unless the command
says otherwise), lists as several
values, mappings as JSON, ``Literal`` types as choices, and a field declared by several
dataclasses is one option whose value goes to all of them. Optional fields read ``none``,
``null`` or an empty string as None where the command asks for it (``none_words``; with
``none_for_strings=False`` only optional numbers and booleans do, so that string values such as
TRL's ``--report_to none`` keep their meaning).

The settings of ``antisd train`` are here too: ``ModelArgs``, ``RewardArgs``, ``train_inputs``
(what ``antisd_run.yaml`` records), ``build_train_args`` (the four dataclasses).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import re
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from transformers import HfArgumentParser
from transformers.hf_argparser import string_to_bool as _hf_string_to_bool

RECIPE_VERSION = 1
# The recipes are package data (antisd/resources/recipes); $ANTISD_RECIPES points at another folder.
RECIPES_DIR = Path(os.environ.get("ANTISD_RECIPES") or Path(__file__).resolve().parents[1] / "resources" / "recipes")
PLACEHOLDERS = ("{model}", "{method}")
NONE_WORDS = ("none", "null", "")
NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|nan)$", re.IGNORECASE)


class CliError(Exception):
    """A usage or configuration error: reported on one line, exit code 2."""


# ---------------------------------------------------------------------------------------- YAML files


def read_yaml(path: str | Path) -> dict[str, Any]:
    """One config file as a dict, its ``version`` checked (1; absent means 1) and removed."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise CliError(f"config file {str(path)!r} does not exist") from None
    except yaml.YAMLError as e:
        raise CliError(f"config file {str(path)!r} is not valid YAML: {' '.join(str(e).split())}") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise CliError(f"config file {str(path)!r} must be a YAML mapping of field: value, not a {type(data).__name__}")
    version = data.pop("version", RECIPE_VERSION)
    if version != RECIPE_VERSION:
        raise CliError(f"config file {str(path)!r} has version: {version!r}; this antisd reads version {RECIPE_VERSION}")
    return data


def config_path(path: str | Path) -> Path:
    """`path`, or the packaged recipe it names: ``recipes/toy/antisd.yaml`` that does not exist here
    is ``RECIPES_DIR/toy/antisd.yaml`` (a file of that name in the current folder wins)."""
    local = Path(path).expanduser()
    parts = Path(path).parts
    if not local.exists() and len(parts) > 1 and parts[0] == "recipes":
        packaged = RECIPES_DIR.joinpath(*parts[1:])
        if packaged.is_file():
            return packaged
    return local


def merge_configs(paths: Sequence[str | Path]) -> tuple[dict[str, Any], dict[str, str]]:
    """Merge config files left to right (later keys win; ``env`` maps merge). Returns (config, key -> file)."""
    merged: dict[str, Any] = {}
    source: dict[str, str] = {}
    for path in paths:
        data = read_yaml(config_path(path))
        env = data.pop("env", None)
        if env is not None:
            if not isinstance(env, dict):
                raise CliError(f"env in {str(path)!r} must be a mapping of VARIABLE: value")
            merged["env"] = {**merged.get("env", {}), **env}
        merged.update(data)
        source.update({k: str(path) for k in [*data, *(["env"] if env is not None else [])]})
    return merged, source


def export_env(env: dict[str, Any]) -> None:
    """Set the ``env:`` mapping of the config files as environment variables (values as strings)."""
    for key, value in env.items():
        os.environ[str(key)] = str(value)


def list_recipes(recipes_dir: Path = RECIPES_DIR) -> tuple[list[str], list[str]]:
    """(models, methods) available under ``recipes/models`` and ``recipes/methods``."""
    models = sorted(p.stem for p in (recipes_dir / "models").glob("*.yaml"))
    methods = sorted(p.stem for p in (recipes_dir / "methods").glob("*.yaml"))
    return models, methods


def load_recipe(model: str, method: str, recipes_dir: Path = RECIPES_DIR) -> dict[str, Any]:
    """``recipes/models/<model>.yaml`` merged with ``recipes/methods/<method>.yaml`` (the method wins).

    ``output_dir`` defaults to ``outputs/<model>/<method>``; ``{model}`` and ``{method}`` in string
    values are replaced (the continual overlay starts from ``outputs/{model}/grpo``). The result
    maps 1:1 to dataclass fields and has no ``version`` key.
    """
    models, methods = list_recipes(recipes_dir)
    if model not in models:
        raise CliError(f"recipe model {model!r} not found in {recipes_dir / 'models'}; choose one of {models}")
    if method not in methods:
        raise CliError(f"recipe method {method!r} not found in {recipes_dir / 'methods'}; choose one of {methods}")
    merged, _ = merge_configs([recipes_dir / "models" / f"{model}.yaml", recipes_dir / "methods" / f"{method}.yaml"])
    merged.setdefault("output_dir", "outputs/{model}/{method}")
    return {k: _fill(v, model, method) for k, v in merged.items()}


def _fill(value: Any, model: str, method: str) -> Any:
    if isinstance(value, str):
        return value.replace("{model}", model).replace("{method}", method)
    return value


# ---------------------------------------------------------------------------------------- the parser


def string_to_bool(value: str | bool) -> bool:
    """A boolean flag or YAML value: 1/true/yes/y/on/t or 0/false/no/n/off/f (any case)."""
    if isinstance(value, bool):
        return value
    if value.lower() in ("1", "true", "yes", "y", "on", "t"):
        return True
    if value.lower() in ("0", "false", "no", "n", "off", "f"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def json_object(value: str) -> dict[str, Any]:
    """A mapping field given on the command line as a JSON object."""
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e}): {value!r}") from None
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {value!r}")
    return parsed


def _or_none(convert: Callable[[str], Any], words: Sequence[str]) -> Callable[[str], Any]:
    """`convert`, except that the `words` (any case) give None."""
    def parse(value: str) -> Any:
        return None if str(value).lower() in words else convert(value)

    parse.__name__ = getattr(convert, "__name__", "value")
    return parse


def _is_mapping(hint: Any) -> bool:
    return hint is dict or typing.get_origin(hint) is dict


class DataclassParser(HfArgumentParser):
    """The command line of one or more dataclasses (the conventions in the module docstring).

    `config_flag`: also list ``--config YAML`` (repeatable) in the help; ``parse_with_configs``
    reads those files. `none_words`: strings an optional field reads as None. `bool_metavar`:
    the metavar of ``--flag [BOOL]`` (default: the field name). `negations`: add ``--no_flag``
    for booleans that default to true. `error`: an exception class raised with argparse's
    message instead of printing the usage and exiting with code 2. `none_for_strings`: whether
    optional string fields read the `none_words` as None too. Other keyword arguments go to
    ``argparse.ArgumentParser``.
    """

    def __init__(self, dataclass_types: Sequence[type], *, config_flag: bool = False, none_words: Sequence[str] = (),
                 bool_metavar: str | None = None, negations: bool = True, error: type[Exception] | None = None,
                 none_for_strings: bool = True, **kwargs: Any) -> None:
        self.none_words = tuple(w.lower() for w in none_words)
        self.none_for_strings = none_for_strings
        self.bool_metavar, self.negations = bool_metavar, negations
        self.error_class = error
        super().__init__([], **kwargs)
        # argparse reads "-1e-4" as an option (its own pattern knows -1 and -.5 only): any number is a value
        self._negative_number_matcher = NEGATIVE_NUMBER
        if config_flag:
            self.add_argument("--config", action="append", default=[], metavar="YAML",
                              help="YAML file of field: value (repeatable; the command line wins)")
        self.dataclass_types = list(dataclass_types)
        for dtype in self.dataclass_types:
            self._add_dataclass_arguments(dtype)
        self.field_names = {f.name for dtype in self.dataclass_types for f in dataclasses.fields(dtype) if f.init}

    def _parse_dataclass_field(self, parser: Any, field: dataclasses.Field) -> None:
        if f"--{field.name}" in parser._option_string_actions:
            return  # already added by an earlier dataclass: one option, shared
        optional = type(None) in typing.get_args(field.type)
        super()._parse_dataclass_field(parser, field)  # narrows field.type to the type argparse converts to
        action = parser._option_string_actions[f"--{field.name}"]
        if action.type is _hf_string_to_bool:
            action.type = string_to_bool
            action.metavar = self.bool_metavar or action.metavar
            negation = parser._option_string_actions.get(f"--no_{field.name}")
            if negation is not None and not self.negations:  # argparse's own removal of an option
                parser._handle_conflict_resolve(None, [(flag, negation) for flag in negation.option_strings])
        elif _is_mapping(field.type):
            action.type, action.metavar = json_object, action.metavar or "JSON"
        if optional and self.none_words and action.type is not None and (self.none_for_strings or action.type is not str):
            action.type = _or_none(action.type, self.none_words)

    def error(self, message: str) -> typing.NoReturn:
        if self.error_class is not None:
            raise self.error_class(message)
        super().error(message)

    def field_actions(self) -> dict[str, list[argparse.Action]]:
        """Field name -> its actions (``--flag`` and ``--no_flag`` share a field)."""
        actions: dict[str, list[argparse.Action]] = {}
        for action in self._actions:
            if action.dest in self.field_names:
                actions.setdefault(action.dest, []).append(action)
        return actions


def suggest(key: str, valid: Sequence[str]) -> str:
    """`` (did you mean a, b?)`` for the close matches of `key` in `valid`, else ""."""
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.7)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _convert(action: argparse.Action, key: str, value: Any, where: str) -> Any:
    if isinstance(value, dict | list):
        raise CliError(f"{key}={value!r}{where} must be a single value, not a {type(value).__name__}")
    out = value
    if action.type is not None:
        try:
            out = action.type(str(value))
        except (TypeError, ValueError, argparse.ArgumentTypeError):
            kind = {"int": "an integer", "float": "a number", "string_to_bool": "true or false"}
            expected = kind.get(getattr(action.type, "__name__", ""), "a valid value")
            raise CliError(f"{key}={value!r}{where} is not valid; expected {expected}") from None
    if action.choices is not None and out not in action.choices:
        raise CliError(f"{key}={value!r}{where} is not valid; choose one of {list(action.choices)}")
    return out


def _coerce(action: argparse.Action, key: str, value: Any, where: str) -> Any:
    """A YAML value converted as the command line would convert it (types and choices checked)."""
    if value is None:
        return None
    if action.nargs in ("+", "*"):
        return [_convert(action, key, v, where) for v in (value if isinstance(value, list) else [value])]
    if isinstance(value, dict | list):
        return value  # fields such as report_to or model_init_kwargs take a list or a mapping as is
    return _convert(action, key, value, where)


def apply_config(parser: DataclassParser, config: dict[str, Any], source: dict[str, str] | None = None) -> None:
    """Set the parser's defaults from a merged config; unknown keys and bad values raise ``CliError``."""
    actions = parser.field_actions()
    source = source or {}
    for key, value in config.items():
        where = f" (in {source[key]})" if key in source else ""
        if key not in actions:
            raise CliError(f"unknown key {key!r}{where}{suggest(key, list(actions))}; "
                           f"see {parser.prog} --help for the fields")
        converted = _coerce(actions[key][0], key, value, where)
        for action in actions[key]:
            action.default = converted
            action.required = False


def split_config_flags(argv: Sequence[str], recipe: bool = True) -> tuple[list[str], list[str], list[str]]:
    """(config files, recipe [model, method] or [], the other arguments); `recipe`: accept --recipe."""
    files: list[str] = []
    found: list[str] = []
    rest: list[str] = []
    args, i = list(argv), 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--config="):
            files.append(arg.split("=", 1)[1])
        elif arg == "--config":
            if i + 1 >= len(args):
                raise CliError("--config needs a YAML file")
            files.append(args[i + 1])
            i += 1
        elif arg == "--recipe" and recipe:
            if i + 2 >= len(args):
                raise CliError("--recipe needs MODEL METHOD, e.g. --recipe qwen3-8b antisd (see antisd recipe --list)")
            found = args[i + 1 : i + 3]
            i += 2
        else:
            rest.append(arg)
        i += 1
    return files, found, rest


def parse_with_configs(parser: DataclassParser, argv: Sequence[str], *, config_files: bool = True,
                       recipe: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """(field name -> value, env) from ``--recipe``/``--config`` files and the other flags (flags win).

    `config_files=False`: ``--config`` is an ordinary option of the command. File problems,
    unknown keys and bad values raise ``CliError``; unknown flags go to ``parser.error``.
    """
    files, found, rest = split_config_flags(argv, recipe) if config_files else ([], [], list(argv))
    config: dict[str, Any] = {}
    source: dict[str, str] = {}
    if found:
        config = load_recipe(*found)
        source = {k: f"recipe {found[0]} {found[1]}" for k in config}
    file_config, file_source = merge_configs(files)
    config.update(file_config)
    source.update(file_source)
    if recipe:
        for key, value in config.items():
            if isinstance(value, str) and any(p in value for p in PLACEHOLDERS):
                raise CliError(f"{key}={value!r} uses a {{model}}/{{method}} placeholder; "
                               f"launch with --recipe MODEL METHOD or set {key}")
    env = config.pop("env", {})
    apply_config(parser, config, source)
    namespace, unknown = parser.parse_known_args(rest)
    if unknown:
        flags = [a for a in unknown if a.startswith("-")]
        hint = suggest(flags[0].lstrip("-").replace("-", "_"), sorted(parser.field_names)) if flags else ""
        parser.error(f"unknown argument(s) {' '.join(unknown)}{hint}; see {parser.prog} --help")
    return {k: v for k, v in vars(namespace).items() if k in parser.field_names}, env


def field_defaults(dtypes: Sequence[type]) -> dict[str, Any]:
    """Field name -> default value of the init fields of `dtypes` (the first declaration wins)."""
    defaults: dict[str, Any] = {}
    for dtype in dtypes:
        for f in dataclasses.fields(dtype):
            if f.init and f.default_factory is not dataclasses.MISSING:
                defaults.setdefault(f.name, f.default_factory())
            elif f.init:
                defaults.setdefault(f.name, f.default)
    return defaults


def parsed_defaults(parser: DataclassParser) -> dict[str, Any]:
    """Field name -> what the parser gives when the option is absent (argparse converts a string
    default with the option's type: ``include_num_input_tokens_seen`` 'no' -> False)."""
    out: dict[str, Any] = {}
    for action in parser._actions:
        if action.dest in parser.field_names and action.dest not in out:
            value = action.default
            if isinstance(value, str) and action.type is not None:
                try:
                    value = action.type(value)
                except (TypeError, ValueError, argparse.ArgumentTypeError):
                    pass
            out[action.dest] = value
    return out


def instantiate(dtype: type, values: dict[str, Any]) -> Any:
    """``dtype`` built from the entries of `values` that are its init fields."""
    return dtype(**{f.name: values[f.name] for f in dataclasses.fields(dtype) if f.init and f.name in values})


# ---------------------------------------------------------------------------------------- antisd train


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
        if self.dtype not in ("float32", "bfloat16", "auto"):
            raise ValueError(f"dtype={self.dtype!r} is not valid; choose one of ['auto', 'bfloat16', 'float32']")
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
class RewardArgs:
    """The verifier reward: maths (antisd.rewards.MathReward) or code execution (antisd.rewards.CodeReward)."""

    reward: Literal["auto", "math", "code"] = field(default="auto", metadata={
        "help": "math: math-verify on the answer column; code: each completion's program run against the tests column "
                "(docs/code.md); auto: code when the data has the tests column or is mbpp_train, else math.",
        "choices": ["auto", "math", "code"]})
    reward_format_strict: bool = field(
        default=False,
        metadata={"help": "Also require the strict answer format (one \\boxed{} that ends the response; "
                          "antisd.rewards.is_strict_format), else a correct answer in another format scores 0."},
    )
    answer_extraction: Literal["strict", "flexible"] = field(default="strict", metadata={
        "help": "Maths: where the answer is read: strict (the last \\boxed{}, else an 'Answer:' line or 'final answer "
                "is'); flexible (the same, then the response's last number: lm-evaluation-harness's GSM8K "
                "flexible-extract, for small models that answer '2 + 3 = 5').", "choices": ["strict", "flexible"]})
    code_reward_fraction: bool = field(default=False, metadata={
        "help": "Code: reward the share of tests passed instead of 1.0 only when all pass (a rollout is then correct, "
                "for the teacher's context, only at 1.0: correct_threshold 0.5 becomes 1.0)."})
    code_extraction: Literal["auto", "fenced", "raw"] = field(default="auto", metadata={
        "help": "Code: fenced (the last ```python block), raw (the prompt + the completion, for completion-style "
                "plain prompts); auto: fenced for chat prompts, raw for plain ones.", "choices": ["auto", "fenced", "raw"]})
    code_sandbox: str = field(default="auto", metadata={
        "help": "Code: where programs run: auto (bubblewrap when it works, else a logged fallback), bwrap (required), "
                "none (process limits only), or the http(s) URL of a Sandbox Fusion service."})
    code_workers: int | None = field(default=None, metadata={
        "help": "Code: sandbox worker processes per training process (default: this machine's CPUs / local processes)."})

    def __post_init__(self) -> None:
        checks = {"reward": (self.reward, ("auto", "math", "code")),
                  "code_extraction": (self.code_extraction, ("auto", "fenced", "raw")),
                  "answer_extraction": (self.answer_extraction, ("strict", "flexible"))}
        for name, (value, valid) in checks.items():
            if value not in valid:
                raise ValueError(f"{name}={value!r} is not valid; choose one of {list(valid)}")
        if self.code_sandbox not in ("auto", "bwrap", "none") and not self.code_sandbox.startswith(("http://", "https://")):
            raise ValueError(f"code_sandbox={self.code_sandbox!r}: expected auto, bwrap, none or a Sandbox Fusion URL")
        if self.code_workers is not None and self.code_workers < 0:
            raise ValueError(f"code_workers={self.code_workers} must be >= 0 (0: score in the training process)")


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


def build_train_args(inputs: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    """(ModelArgs, DataConfig, RewardArgs, AntiSDConfig) from ``train_inputs``; exports ``env``.

    A field declared by several dataclasses gets the same value in each. Errors raised by the
    dataclasses' own checks become ``CliError``.
    """
    inputs = dict(inputs)
    export_env(inputs.pop("env", {}))
    out = []
    for dtype in dataclass_types():
        try:
            out.append(instantiate(dtype, inputs))
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
    """Write ``<output_dir>/antisd_run.yaml`` (version 1): rerun with ``antisd train --config`` it."""
    import yaml

    path = Path(output_dir) / "antisd_run.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump({"version": RECIPE_VERSION, **inputs}, sort_keys=False, allow_unicode=True, width=120)
    path.write_text(text, encoding="utf-8")
    return path
