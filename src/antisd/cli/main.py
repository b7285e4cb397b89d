"""``antisd``: the command line. ``antisd train`` runs RL post-training (GRPO, SD or AntiSD).

What ``train`` does: reads YAML config files and ``--key value`` overrides into four
dataclasses (``ModelArgs``, ``DataConfig``, ``RewardArgs``, ``AntiSDConfig``, each validated once:
``antisd.cli.options``, over the config layer ``antisd.cli.configfiles`` and ``antisd.cli.parser``),
then ``antisd.trainer.run.run_train`` checks the model and the data (``antisd.cli.validate``), loads
the tokenizer, the model and the problems, writes ``antisd_run.yaml`` and trains ``AntiSDTrainer``
(TRL's GRPOTrainer plus the AntiSD token advantages) with the math-verify reward, then saves the
final model to ``output_dir``. How it departs from ``trl grpo``: ``--config`` may be given several
times (files merged left to right, later keys win, then the command line), ``--recipe MODEL METHOD``
reads the paper's setups from the packaged recipes, and every bad key, value, model path or data
file ends in a one-line error and exit code 2 before anything is written.

Defaults: with no ``--config``/``--recipe`` and no model (or the built-in toy model
``toyworld``/``toyworld:<recipe>``), the toy world's recipe applies (``recipes/toy/antisd.yaml``);
any other model gets AntiSDConfig's and DataConfig's defaults, the ones ``--help`` shows.

    antisd train                                   # built-in toy world (recipes/toy/antisd.yaml)
    antisd train --model_name_or_path MODEL --dataset_name my.jsonl --output_dir runs/mine
    antisd train --config a.yaml --config b.yaml --max_steps 10
    antisd train --recipe qwen3-8b antisd          # recipes/models/qwen3-8b.yaml + methods/antisd.yaml
    antisd train --help / --help-all               # the AntiSD options / every TRL option too
    antisd recipe qwen3-8b antisd > run.yaml       # the merged recipe, to read or edit
    antisd recipe --list / --dir
    antisd data check FILE                         # unparseable, huge, duplicate, empty rows (antisd.data.check)
    antisd report RUN_DIR                          # report.md + plots of a run (antisd.trainer.report)
    antisd eval ... / antisd pmi ...               # antisd.evaluate / antisd.pmi, when installed

CPU:  antisd train --max_steps 2                # the toy world of antisd.toyworld.defaults, a smoke run
GPU:  accelerate launch --config_file "$(antisd recipe --dir)/accelerate/zero3_8gpu.yaml" -m antisd.cli.main \\
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

from antisd.cli.options import (  # noqa: F401 - re-exported: benchmarks and other modules import them from here
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
from antisd.cli.interrupt import install as install_sigint
from antisd.cli.interrupt import interrupted, train_kept
from antisd.trainer.run import run_train
from antisd.cli.validate import InputError, one_line

logger = logging.getLogger("antisd")  # not __name__: under `python -m antisd.cli.main` that is "__main__"

# Subcommands served by other modules, registered only when the module exists: name -> module.
OPTIONAL_COMMANDS = {"eval": "antisd.evaluate", "pmi": "antisd.pmi", "model": "antisd.lm.realmodel"}


def train_help(full: bool = False) -> str:
    """``antisd train --help`` (`full`: ``--help-all``): the AntiSD options by section, then model, data,
    reward and the common TRL options (``antisd.cli.helptext``, which also serves it without importing TRL)."""
    from antisd.cli.helptext import help_text

    return help_text("train-all" if full else "train")


def _train_defaults(argv: list[str]) -> list[str]:
    """`argv` with the toy world's recipe in front when it applies (see the module docstring)."""
    from antisd.toyworld.defaults import TOY_RECIPE, default_train_argv, model_flag
    from antisd.lm.names import names_toy_model

    files, recipe, _ = split_config_flags(argv)
    if files or recipe:
        return argv
    model = model_flag(argv)
    if model is None or names_toy_model(model):  # toyworld[:recipe], or a folder of the toy model
        logger.info("No --config: the toy world's settings (%s) for the built-in toy model", TOY_RECIPE.name)
        return default_train_argv() + argv
    logger.info("No --config: the general defaults of antisd train --help for the model %s", model)
    return argv


def cmd_train(argv: Sequence[str]) -> int:
    argv = list(argv)
    if "--help-all" in argv or "-h" in argv or "--help" in argv:
        print(train_help(full="--help-all" in argv), end="")
        return 0
    inputs = train_inputs(_train_defaults(argv))
    model_args, data_cfg, reward_args, config = build_train_args(inputs)
    try:
        run_train(model_args, data_cfg, config, reward_args, run_inputs=inputs)
    except KeyboardInterrupt:
        return interrupted("train", train_kept(config))
    return 0


def cmd_recipe(argv: Sequence[str]) -> int:
    import yaml

    p = argparse.ArgumentParser(prog="antisd recipe", description="Print a merged recipe (model + method) as YAML.")
    p.add_argument("model", nargs="?", help="recipes/models/<model>.yaml")
    p.add_argument("method", nargs="?", help="recipes/methods/<method>.yaml")
    p.add_argument("--list", action="store_true", help="list the models and methods")
    p.add_argument("--dir", action="store_true", help="print the folder of the recipes (package data), e.g. for "
                                                      "accelerate's --config_file $DIR/accelerate/zero3_8gpu.yaml")
    args = p.parse_args(argv)
    if args.dir:
        print(RECIPES_DIR)
        return 0
    models, methods = list_recipes()
    if args.list or not (args.model and args.method):
        print(f"models:  {' '.join(models)}\nmethods: {' '.join(methods)}")
        return 0 if args.list else 2
    merged = {"version": RECIPE_VERSION, **load_recipe(args.model, args.method)}
    print(f"# antisd recipe {args.model} {args.method}  (recipes/models + recipes/methods, merged)")
    print(yaml.safe_dump(merged, sort_keys=False, allow_unicode=True, width=120), end="")
    return 0


def cmd_data(argv: Sequence[str]) -> int:
    from antisd.data.check import main as data_main

    return data_main(list(argv))


def cmd_report(argv: Sequence[str]) -> int:
    from antisd.trainer.report import regenerate_report

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


COMMANDS = {"train": cmd_train, "recipe": cmd_recipe, "data": cmd_data, "report": cmd_report}


def _top_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="antisd", description="RL post-training of reasoning LMs with AntiSD.",
                                epilog="Run 'antisd COMMAND --help' for a command's options. Every command also takes "
                                       "--threads N: CPU threads (default: the CPUs this process may use; also "
                                       "$ANTISD_THREADS; off: torch's own setting).")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("train", help="train with GRPO / SD / AntiSD (YAML configs + --key value overrides)", add_help=False)
    sub.add_parser("recipe", help="print a paper recipe (model + method) as one YAML file", add_help=False)
    sub.add_parser("data", help="check a problem file (unparseable, huge, duplicate, empty rows); convert verl data",
                   add_help=False)
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
    # Nor on these: TRL's trainer calls transformers' deprecated is_gradient_checkpointing (shown again after every
    # checkpoint: saving resets Python's once-per-place record), and TrainingArguments pins dataloader memory by
    # default, which a CPU run ignores.
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    warnings.filterwarnings("ignore", message="'pin_memory' argument is set as true but no accelerator",
                            category=UserWarning)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``antisd`` console script. Returns the exit code: 0, 2 for bad input or usage
    (one line, before anything is written), 1 for a run stopped by a non-finite loss or gradient, 130 for
    Ctrl-C (one line: what was kept and how to go on; ``antisd.cli.interrupt``)."""
    from antisd.cli.helptext import help_command, help_text

    argv = list(sys.argv[1:] if argv is None else argv)
    setup_logging()
    install_sigint()
    if help_command(argv) is not None:  # train/eval/pmi --help: the compact help, the same as the console script's
        print(help_text(help_command(argv)), end="")
        return 0
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
    except (CliError, InputError) as e:
        print(f"antisd {command}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - re-raised unless it is the trainer's own stop
        trainer = sys.modules.get("antisd.trainer.core")  # not imported: no training ran (and --help stays fast)
        if trainer is None or not isinstance(e, trainer.NonFiniteTrainingError):
            raise
        print(f"antisd {command}: error: {one_line(e)}", file=sys.stderr)  # stop_on_nonfinite: a runtime failure
        return 1
    except KeyboardInterrupt:  # before a command's own handler could say what it kept
        return interrupted(command, "stopped before it finished; run the same command again")


if __name__ == "__main__":
    from antisd.cli.entry import main as entry_main  # --threads and the thread settings, as the console script

    sys.exit(entry_main())
