"""``antisd``: the command line. ``antisd train`` runs RL post-training (GRPO, SD or AntiSD).

What ``train`` does: reads YAML config files and ``--key value`` overrides into four
dataclasses (``ModelArgs``, ``DataConfig``, ``RewardArgs``, ``AntiSDConfig``, TRL-style via
``trl.TrlParser``), loads the tokenizer, the model and the problems, and trains
``AntiSDTrainer`` (TRL's GRPOTrainer plus the AntiSD token advantages) with the math-verify
reward, then saves the final model to ``output_dir``. How it departs from ``trl grpo``:
``--config`` may be given several times (files merged left to right, later keys win, then the
command line), ``--recipe MODEL METHOD`` reads the paper's setups from ``recipes/``, and
every bad key or value ends in a one-line error and exit code 2 before any model loads.

    antisd train                                   # built-in toy world (antisd.defaults)
    antisd train --config a.yaml --config b.yaml --max_steps 10
    antisd train --recipe qwen3-8b antisd          # recipes/models/qwen3-8b.yaml + methods/antisd.yaml
    antisd recipe qwen3-8b antisd > run.yaml       # the merged recipe, to read or edit
    antisd recipe --list
    antisd eval ... / antisd pmi ...               # when antisd.evaluate / antisd.pmi exist

CPU:  antisd train --max_steps 2                # the toy world of antisd.defaults, a smoke run
GPU:  accelerate launch --config_file recipes/accelerate/zero3_8gpu.yaml -m antisd.cli \\
          train --recipe qwen3-8b antisd
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import importlib
import importlib.util
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

logger = logging.getLogger("antisd")  # not __name__: under `python -m antisd.cli` that is "__main__"

RECIPE_VERSION = 1
RECIPES_DIR = Path(os.environ.get("ANTISD_RECIPES", Path(__file__).resolve().parents[2] / "recipes"))
CANONICAL_COLUMNS = {"answer_column": "answer", "solution_column": "solution", "problem_id_column": "problem_id"}
# Subcommands served by other modules, registered only when the module exists: name -> module.
OPTIONAL_COMMANDS = {"eval": "antisd.evaluate", "pmi": "antisd.pmi"}
PLACEHOLDERS = ("{model}", "{method}")


class CliError(Exception):
    """A usage or configuration error: reported on one line, exit code 2."""


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

    def __post_init__(self) -> None:
        if self.dtype not in ("float32", "bfloat16", "auto"):
            raise ValueError(f"dtype={self.dtype!r} is not valid; choose one of ['auto', 'bfloat16', 'float32']")


@dataclass
class RewardArgs:
    """The verifier reward (antisd.rewards.MathReward)."""

    reward_format_strict: bool = field(
        default=False,
        metadata={"help": "Also require the strict answer format (one \\boxed{} that ends the response; "
                          "antisd.rewards.is_strict_format), else a correct answer in another format scores 0."},
    )


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


def merge_configs(paths: Sequence[str | Path]) -> tuple[dict[str, Any], dict[str, str]]:
    """Merge config files left to right (later keys win; ``env`` maps merge). Returns (config, key -> file)."""
    merged: dict[str, Any] = {}
    source: dict[str, str] = {}
    for path in paths:
        data = read_yaml(path)
        env = data.pop("env", None)
        if env is not None:
            if not isinstance(env, dict):
                raise CliError(f"env in {str(path)!r} must be a mapping of VARIABLE: value")
            merged["env"] = {**merged.get("env", {}), **env}
        merged.update(data)
        source.update({k: str(path) for k in [*data, *(["env"] if env is not None else [])]})
    return merged, source


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


# ---------------------------------------------------------------------------------------- parsing


def _parser_class():
    from trl import TrlParser

    class ArgsParser(TrlParser):
        """TrlParser where a field declared by several dataclasses (trust_remote_code,
        answer_column, solution_column) is one option whose value goes to all of them, and
        errors raise ``CliError`` instead of printing the whole usage."""

        def _parse_dataclass_field(self, parser, field):
            if f"--{field.name}" in parser._option_string_actions:
                return  # already added by an earlier dataclass: one option, shared
            super()._parse_dataclass_field(parser, field)

        def error(self, message):
            raise CliError(message)

    return ArgsParser


def dataclass_types() -> list[type]:
    from antisd.config import AntiSDConfig
    from antisd.data import DataConfig

    return [ModelArgs, DataConfig, RewardArgs, AntiSDConfig]


def build_parser():
    return _parser_class()(dataclass_types(), prog="antisd train", allow_abbrev=False)


def _suggest(key: str, valid: Sequence[str]) -> str:
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


def apply_config(parser, config: dict[str, Any], source: dict[str, str] | None = None) -> None:
    """Set the parser's defaults from a merged config; unknown keys and bad values raise ``CliError``."""
    actions: dict[str, list[argparse.Action]] = {}
    for action in parser._actions:
        if action.dest != "help":
            actions.setdefault(action.dest, []).append(action)
    source = source or {}
    for key, value in config.items():
        where = f" (in {source[key]})" if key in source else ""
        if key not in actions:
            raise CliError(f"unknown key {key!r}{where}{_suggest(key, list(actions))}; see antisd train --help for the fields")
        main = actions[key][0]
        converted = _coerce(main, key, value, where)
        for action in actions[key]:
            action.default = converted
            action.required = False


def _split_config_flags(argv: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
    """(config files, recipe [model, method] or [], the other arguments)."""
    files: list[str] = []
    recipe: list[str] = []
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
        elif arg == "--recipe":
            if i + 2 >= len(args):
                raise CliError("--recipe needs MODEL METHOD, e.g. --recipe qwen3-8b antisd (see antisd recipe --list)")
            recipe = args[i + 1 : i + 3]
            i += 2
        else:
            rest.append(arg)
        i += 1
    return files, recipe, rest


def train_inputs(argv: Sequence[str]) -> dict[str, Any]:
    """The settings of ``--recipe``/``--config`` files and overrides as one mapping of field: value.

    Precedence, lowest first: dataclass defaults, the recipe, each ``--config`` file in order,
    the remaining ``--key value`` arguments. Keeps the values that differ from the defaults
    (plus ``env``): this is what ``antisd_run.yaml`` records, and ``--config`` reads it back.
    Unknown keys, bad types and bad choices raise ``CliError``.
    """
    files, recipe, rest = _split_config_flags(argv)
    config: dict[str, Any] = {}
    source: dict[str, str] = {}
    if recipe:
        config = load_recipe(*recipe)
        source = {k: f"recipe {recipe[0]} {recipe[1]}" for k in config}
    file_config, file_source = merge_configs(files)
    config.update(file_config)
    source.update(file_source)
    for key, value in config.items():
        if isinstance(value, str) and any(p in value for p in PLACEHOLDERS):
            raise CliError(f"{key}={value!r} uses a {{model}}/{{method}} placeholder; launch with --recipe MODEL METHOD or set {key}")
    env = config.pop("env", {})
    parser = build_parser()
    apply_config(parser, config, source)
    namespace, unknown = parser.parse_known_args(rest)
    if unknown:
        flags = [a for a in unknown if a.startswith("-")]
        dests = [a.dest for a in parser._actions]
        hint = _suggest(flags[0].lstrip("-").replace("-", "_"), dests) if flags else ""
        raise CliError(f"unknown argument(s) {' '.join(unknown)}{hint}; see antisd train --help")
    defaults: dict[str, Any] = {}
    for dtype in dataclass_types():
        for f in dataclasses.fields(dtype):
            if f.init and f.default_factory is not dataclasses.MISSING:
                defaults.setdefault(f.name, f.default_factory())
            elif f.init:
                defaults.setdefault(f.name, f.default)
    inputs = {k: v for k, v in vars(namespace).items() if k in defaults and v != defaults[k]}
    return {**inputs, "env": env} if env else inputs


def build_train_args(inputs: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    """(ModelArgs, DataConfig, RewardArgs, AntiSDConfig) from ``train_inputs``; exports ``env``.

    A field declared by several dataclasses gets the same value in each. Errors raised by the
    dataclasses' own checks become ``CliError``.
    """
    inputs = dict(inputs)
    for key, value in inputs.pop("env", {}).items():
        os.environ[str(key)] = str(value)
    out = []
    for dtype in dataclass_types():
        kwargs = {f.name: inputs[f.name] for f in dataclasses.fields(dtype) if f.init and f.name in inputs}
        try:
            out.append(dtype(**kwargs))
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


# ---------------------------------------------------------------------------------------- training


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


def _torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "auto": "auto"}[name]


def run_train(model_args: ModelArgs, data_cfg, config, reward_args: RewardArgs | None = None, *,
              callbacks: list | None = None, report: bool = True):
    """Load problems, tokenizer and model, train ``AntiSDTrainer``, save the final model. Returns the trainer.

    Data problems raise ``antisd.data.DataError`` (``antisd train`` reports them on one line).

    The dataset is mapped to the canonical columns of ``antisd.data``, so ``config``'s
    ``answer_column``/``solution_column``/``problem_id_column`` are set to answer/solution/problem_id.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from antisd.data import check_prompt_format, load_problems
    from antisd.rewards import MathReward
    from antisd.trainer import AntiSDTrainer

    from antisd.defaults import is_toy_model, resolve_builtins

    reward_args = reward_args or RewardArgs()
    toy = is_toy_model(model_args.model_name_or_path)
    model_args, data_cfg = resolve_builtins(model_args, data_cfg)
    resume = _resume_arg(config.resume_from_checkpoint, config.output_dir)
    logger.info("Method %s (token signal %s, gate %s); output in %s",
                config.method, config.token_signal, config.gate, config.output_dir)
    dataset = load_problems(data_cfg)  # validated before anything big loads
    logger.info("Loading the tokenizer of %s", model_args.model_name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(model_args.model_name_or_path, trust_remote_code=model_args.trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
        logger.info("The tokenizer has no pad token: using the eos token %r", tokenizer.eos_token)
    check_prompt_format(tokenizer, data_cfg)
    for name, column in CANONICAL_COLUMNS.items():
        setattr(config, name, column)
    logger.info("Loading the model %s (dtype %s)", model_args.model_name_or_path, model_args.dtype)
    model = AutoModelForCausalLM.from_pretrained(
        model_args.model_name_or_path, dtype=_torch_dtype(model_args.dtype), trust_remote_code=model_args.trust_remote_code,
    )
    trainer = AntiSDTrainer(
        model=model,
        reward_funcs=[MathReward(format_strict=reward_args.reward_format_strict)],
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
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
        from antisd.defaults import evaluate_toy_policy
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


# ---------------------------------------------------------------------------------------- subcommands


def _default_train_argv() -> list[str]:
    try:
        defaults = importlib.import_module("antisd.defaults")
    except ModuleNotFoundError as e:
        if e.name != "antisd.defaults":
            raise
        raise CliError("no --config or --recipe given, and the built-in default (antisd.defaults) is not available "
                       "in this install; run antisd train --config FILE.yaml or --recipe MODEL METHOD") from None
    return list(defaults.default_train_argv())


def cmd_train(argv: Sequence[str]) -> int:
    argv = list(argv)
    if "-h" in argv or "--help" in argv:
        build_parser().print_help()
        print("\nAlso: --config FILE.yaml (repeatable, merged left to right), --recipe MODEL METHOD.")
        return 0
    files, recipe, _ = _split_config_flags(argv)
    if not files and not recipe:
        argv = _default_train_argv() + argv
        logger.info("No --config given: using the built-in default: antisd train %s", " ".join(argv))
    inputs = train_inputs(argv)
    model_args, data_cfg, reward_args, config = build_train_args(inputs)
    if config.process_index == 0:
        logger.info("Run settings written to %s", save_train_inputs(inputs, config.output_dir))
    from antisd.data import DataError

    try:
        run_train(model_args, data_cfg, config, reward_args)
    except DataError as e:
        raise CliError(str(e)) from None
    return 0


def cmd_recipe(argv: Sequence[str]) -> int:
    import yaml

    p = argparse.ArgumentParser(prog="antisd recipe", description="Print a merged recipe (model + method) as YAML.")
    p.add_argument("model", nargs="?", help="recipes/models/<model>.yaml")
    p.add_argument("method", nargs="?", help="recipes/methods/<method>.yaml")
    p.add_argument("--list", action="store_true", help="list the models and methods")
    args = p.parse_args(argv)
    models, methods = list_recipes()
    if args.list or not (args.model and args.method):
        print(f"models:  {' '.join(models)}\nmethods: {' '.join(methods)}")
        return 0 if args.list else 2
    merged = {"version": RECIPE_VERSION, **load_recipe(args.model, args.method)}
    print(f"# antisd recipe {args.model} {args.method}  (recipes/models + recipes/methods, merged)")
    print(yaml.safe_dump(merged, sort_keys=False, allow_unicode=True, width=120), end="")
    return 0


def _optional_available(name: str) -> bool:
    return importlib.util.find_spec(OPTIONAL_COMMANDS[name]) is not None


def cmd_optional(name: str, argv: Sequence[str]) -> int:
    module_name = OPTIONAL_COMMANDS[name]
    if not _optional_available(name):
        raise CliError(f"'antisd {name}' is not available: its module {module_name} is not in this install")
    module = importlib.import_module(module_name)
    result = module.main(list(argv))
    return int(result or 0)


def _top_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="antisd", description="RL post-training of reasoning LMs with AntiSD.",
                                epilog="Run 'antisd COMMAND --help' for a command's options.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("train", help="train with GRPO / SD / AntiSD (YAML configs + --key value overrides)", add_help=False)
    sub.add_parser("recipe", help="print a paper recipe (model + method) as one YAML file", add_help=False)
    for name, module in OPTIONAL_COMMANDS.items():
        if _optional_available(name):
            sub.add_parser(name, help=f"see {module}", add_help=False)
    return p


def setup_logging() -> None:
    rank = int(os.environ.get("RANK", "0"))
    level = logging.INFO if rank == 0 else logging.WARNING
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    logging.getLogger("antisd").setLevel(level)  # also when the root logger was configured before us
    # TRL's GRPOConfig sets the deprecated gradient_checkpointing itself; the user cannot act on this.
    warnings.filterwarnings("ignore", message="`gradient_checkpointing` is deprecated", category=FutureWarning)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``antisd`` console script. Returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    setup_logging()
    parser = _top_parser()
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    try:
        if command == "train":
            return cmd_train(rest)
        if command == "recipe":
            return cmd_recipe(rest)
        if command in OPTIONAL_COMMANDS:
            return cmd_optional(command, rest)
        parser.parse_args([command])  # argparse's "invalid choice" message, exit 2
        return 2
    except CliError as e:
        print(f"antisd {command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
