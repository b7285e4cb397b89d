"""``antisd``: the command line. ``antisd train`` runs RL post-training (GRPO, SD or AntiSD).

What ``train`` does: reads YAML config files and ``--key value`` overrides into four
dataclasses (``ModelArgs``, ``DataConfig``, ``RewardArgs``, ``AntiSDConfig``; the config layer
``antisd.configio``), then ``antisd.train.run_train`` loads the tokenizer, the model and the
problems, and trains ``AntiSDTrainer`` (TRL's GRPOTrainer plus the AntiSD token advantages)
with the math-verify reward, then saves the final model to ``output_dir``. How it departs from
``trl grpo``: ``--config`` may be given several times (files merged left to right, later keys
win, then the command line), ``--recipe MODEL METHOD`` reads the paper's setups from
``recipes/``, and every bad key or value ends in a one-line error and exit code 2 before any
model loads.

    antisd train                                   # built-in toy world (recipes/toy/antisd.yaml)
    antisd train --config a.yaml --config b.yaml --max_steps 10
    antisd train --recipe qwen3-8b antisd          # recipes/models/qwen3-8b.yaml + methods/antisd.yaml
    antisd recipe qwen3-8b antisd > run.yaml       # the merged recipe, to read or edit
    antisd recipe --list
    antisd report RUN_DIR                          # report.md + plots of a run (antisd.report)
    antisd eval ... / antisd pmi ...               # antisd.evaluate / antisd.pmi, when installed

CPU:  antisd train --max_steps 2                # the toy world of antisd.builtin, a smoke run
GPU:  accelerate launch --config_file recipes/accelerate/zero3_8gpu.yaml -m antisd.cli \\
          train --recipe qwen3-8b antisd
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import sys
import warnings
from collections.abc import Sequence

from antisd.configio import (  # noqa: F401 - re-exported: benchmarks and other modules import them from here
    RECIPE_VERSION,
    RECIPES_DIR,
    CliError,
    ModelArgs,
    RewardArgs,
    build_parser,
    build_train_args,
    list_recipes,
    load_recipe,
    merge_configs,
    parse_train_args,
    read_yaml,
    save_train_inputs,
    split_config_flags,
    train_inputs,
)
from antisd.train import run_train

logger = logging.getLogger("antisd")  # not __name__: under `python -m antisd.cli` that is "__main__"

# Subcommands served by other modules, registered only when the module exists: name -> module.
OPTIONAL_COMMANDS = {"eval": "antisd.evaluate", "pmi": "antisd.pmi"}


def cmd_train(argv: Sequence[str]) -> int:
    argv = list(argv)
    if "-h" in argv or "--help" in argv:
        build_parser().print_help()
        print("\nAlso: --config FILE.yaml (repeatable, merged left to right), --recipe MODEL METHOD.")
        return 0
    files, recipe, _ = split_config_flags(argv)
    if not files and not recipe:
        from antisd.builtin import default_train_argv

        argv = default_train_argv() + argv
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


def cmd_report(argv: Sequence[str]) -> int:
    from antisd.report import regenerate_report

    p = argparse.ArgumentParser(prog="antisd report",
                                description="Regenerate report.md and plots/curves.png of a training run folder "
                                            "from its trainer_state.json (or its newest checkpoint's).")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run's output_dir")
    p.add_argument("--title", default=None, help="report title (default: the one the run's report was written with)")
    args = p.parse_args(argv)
    try:
        path = regenerate_report(args.run_dir, title=args.title)
    except FileNotFoundError as e:
        raise CliError(str(e)) from None
    print(path)
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


COMMANDS = {"train": cmd_train, "recipe": cmd_recipe, "report": cmd_report}


def _top_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="antisd", description="RL post-training of reasoning LMs with AntiSD.",
                                epilog="Run 'antisd COMMAND --help' for a command's options.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("train", help="train with GRPO / SD / AntiSD (YAML configs + --key value overrides)", add_help=False)
    sub.add_parser("recipe", help="print a paper recipe (model + method) as one YAML file", add_help=False)
    sub.add_parser("report", help="regenerate report.md + plots of a run folder", add_help=False)
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
        if command in COMMANDS:
            return COMMANDS[command](rest)
        if command in OPTIONAL_COMMANDS:
            return cmd_optional(command, rest)
        parser.parse_args([command])  # argparse's "invalid choice" message, exit 2
        return 2
    except CliError as e:
        print(f"antisd {command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
