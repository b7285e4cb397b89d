"""``--help`` of ``antisd train``, ``antisd eval`` and ``antisd pmi``: compact, grouped, and fast.

The options of these commands come from dataclasses that subclass TRL's and transformers' (TRL's
``GRPOConfig`` for ``train``), so listing them imports torch, TRL and transformers: 6-11 s before one
line of help. Here the help is data: a *spec* per command (usage, description, sections of
``(invocation, help)`` pairs, epilog), rendered to the terminal's width by ``render``. The specs ship
in ``resources/help.json`` with a fingerprint: the installed TRL and transformers versions and a hash
of the declarations (classes, constants, function signatures; not function bodies) of the antisd
modules the options are declared in and of the antisd modules those import from. ``help_text``
prints the shipped spec when the fingerprint matches this install, and builds the spec from the live
parsers otherwise (slow, but not stale). ``python -m antisd.cli.helptext --write``
regenerates the file; ``--check`` exits 1 when it is out of date (tests/cli/test_helptext.py runs it).

Layout: one option per entry, written once (``--name`` only: every option also takes
``--kebab-name``; no ``--no_flag`` twins), short metavars (N, X, TEXT, BOOL, the choices when few), the
default after the help unless it is unset.
``antisd train --help`` lists the AntiSD options by section (``antisd.trainer.config.HELP_SECTIONS``), then
model, data and reward, then the common TRL options with short texts of our own; ``--help-all`` adds
every field of TRL's GRPOConfig and transformers' TrainingArguments. TRL texts that do not hold under
antisd (``bf16``, ``resume_from_checkpoint``) are replaced by ours in both.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import inspect
import json
import shutil
import sys
import textwrap
import types
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parents[1]  # the antisd package
CACHE = PACKAGE / "resources" / "help.json"
COMMANDS = ("train", "train-all", "eval", "pmi")
VERSIONED = ("trl", "transformers")
HELP_COLUMN = 32  # where option help starts

TRAIN_USAGE = "antisd train [--config YAML ...] [--recipe MODEL METHOD] [--threads N] [--key value ...]"
TRAIN_HELP_HEAD = """RL post-training of a reasoning LM with GRPO, SD or AntiSD (TRL's GRPOTrainer + the AntiSD token term).

Built-in names: --model_name_or_path toyworld (the toy world's base policy, shipped with antisd;
toyworld:tiny for smoke tests); --dataset_name toyworld, dapo_math_17k, math500, gsm8k_test, aime2024,
..., mbpp_train (code: execution reward) (shipped with antisd). With no --config/--recipe and no model
(or the toy model), the toy world's recipe applies (recipes/toy/antisd.yaml); any other model gets the
defaults below. --config FILE.yaml (repeatable, merged left to right; the command line wins);
--recipe MODEL METHOD (the paper's setups: antisd recipe --list); --threads N: CPU threads (by default
the CPUs this process may use; also $ANTISD_THREADS; off: torch's own setting)."""
TRAIN_HELP_TAIL = """This lists the AntiSD options and the common TRL ones; antisd train --help-all lists all {n}
(TRL's GRPOConfig and transformers' TrainingArguments included). Every option also takes --kebab-case;
booleans take true/false (--flag alone: true; --no_flag: false)."""
FULL_TAIL = """Every option also takes --kebab-case; booleans take true/false (--flag alone: true; --no_flag: false)."""

# A selection of GRPOConfig/TrainingArguments fields for the short help, with short texts of our own
# (TRL's own texts are in --help-all).
COMMON_TRL_HELP: dict[str, str] = {
    "output_dir": "Folder of the run: checkpoints, TensorBoard logs, the final model, report.md.",
    "max_steps": "Optimizer steps to train (-1: num_train_epochs over the data).",
    "learning_rate": "Peak learning rate of AdamW.",
    "lr_scheduler_type": "Learning-rate schedule: constant, linear, cosine, ... (all of them: --help-all).",
    "num_generations": "Rollouts sampled per problem (the GRPO group).",
    "per_device_train_batch_size": "Rollouts per device per step (problems per step = this / num_generations).",
    "gradient_accumulation_steps": "Micro-batches accumulated per optimizer step.",
    "max_completion_length": "Longest response sampled, in tokens.",
    "temperature": "Sampling temperature of the rollouts.",
    "top_p": "Nucleus sampling of the rollouts (1.0: off).",
    "beta": "KL coefficient towards the reference model (0.0: no reference model is loaded).",
    "loss_type": "How token losses are averaged: dapo, grpo, dr_grpo, bnpo, cispo, sapo, luspo, vespo "
                 "(what each means: --help-all).",
    "gradient_checkpointing": "Recompute activations in the backward pass: less memory, slower steps.",
    "use_vllm": "Generate the rollouts with vLLM.",
    "vllm_mode": "colocate (vLLM in the training process) or server (a separate trl vllm-serve).",
    "seed": "Random seed of the run.",
    "logging_steps": "Log (and print a progress line with the time left) every N steps.",
    "save_strategy": "When to save checkpoints: steps, epoch, best or no.",
    "save_steps": "Save a checkpoint every N steps.",
    "save_only_model": "Save only the weights in checkpoints (smaller; the run can then not be resumed exactly).",
    "resume_from_checkpoint": None,  # HELP_OVERRIDES
    "bf16": None,
    "report_to": "Where metrics go besides the log: none, tensorboard, wandb, ... (several allowed).",
}
# TRL/transformers texts that do not hold under antisd: replaced in --help and --help-all.
HELP_OVERRIDES: dict[str, str] = {
    "bf16": "bf16 mixed precision: true or false; unset: follows the machine (float32 on a CPU, bf16 mixed "
            "precision on a GPU that has it; the choice is logged once).",
    "resume_from_checkpoint": "Resume a run exactly (optimizer, scheduler, RNG, data position, gate state): a "
                              "checkpoint folder, or true (or last) for the newest complete checkpoint-* in "
                              "output_dir.",
}


# ---------------------------------------------------------------------------------------- rendering


def render(spec: dict[str, Any], width: int | None = None) -> str:
    """The help text of `spec`, wrapped to `width` columns (default: the terminal's, 60 to 120)."""
    if width is None:
        width = max(60, min(120, shutil.get_terminal_size((100, 24)).columns)) - 2
    out = [f"usage: {spec['usage']}", ""]
    if spec.get("description"):
        out += [spec["description"].rstrip(), ""]
    for title, items in spec["groups"]:
        if not items:
            continue
        out.append(f"{title}:")
        for invocation, text in items:
            out += _entry(invocation, text, width)
        out.append("")
    if spec.get("epilog"):
        out.append(spec["epilog"].rstrip())
    return "\n".join(out).rstrip("\n") + "\n"


def _entry(invocation: str, text: str, width: int) -> list[str]:
    head = "  " + invocation
    body = textwrap.wrap(" ".join(text.split()), max(20, width - HELP_COLUMN), break_on_hyphens=False) if text else []
    if not body:
        return [head]
    if len(head) <= HELP_COLUMN - 2:
        return [head.ljust(HELP_COLUMN) + body[0]] + [" " * HELP_COLUMN + line for line in body[1:]]
    return [head] + [" " * HELP_COLUMN + line for line in body]


# ---------------------------------------------------------------------------------------- specs from parsers


class _Defaults(argparse.HelpFormatter):
    """argparse's help expansion, with ``(default: X)`` appended unless X is unset or already quoted."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or action.default in (None, argparse.SUPPRESS, [], ()) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def _type_name(action: argparse.Action) -> str:
    return getattr(action.type, "__name__", "")


def _metavar(action: argparse.Action) -> str:
    """A short metavar: the choices when they are few, else N (integers), X (numbers), BOOL, JSON or TEXT."""
    if action.choices is not None and len(",".join(map(str, action.choices))) <= 40:
        return "{" + ",".join(map(str, action.choices)) + "}"
    if isinstance(action.metavar, str) and action.metavar in ("JSON", "YAML", "BOOL"):
        return action.metavar
    return {"int": "N", "float": "X", "string_to_bool": "BOOL", "_hf_string_to_bool": "BOOL",
            "json_object": "JSON"}.get(_type_name(action), "TEXT")


def invocation(action: argparse.Action) -> str:
    """``--name META`` of an option: its names without the kebab-case aliases, a short metavar."""
    names = [o for o in action.option_strings
             if not (o.startswith("--") and "-" in o[2:] and "--" + o[2:].replace("-", "_") in action.option_strings)]
    if action.nargs == 0:
        return ", ".join(names)
    args = argparse.HelpFormatter("antisd")._format_args(_copy(action, metavar=_metavar(action), choices=None),
                                                          action.dest)
    return f"{', '.join(names)} {args}"


def entry(action: argparse.Action, prog: str, text: str | None = None) -> tuple[str, str]:
    """(invocation, help with its default) of `action`; `text` replaces its help."""
    if text is not None:
        action = _copy(action, help=text)
    return invocation(action), _Defaults(prog)._expand_help(action) if action.help else ""


def _copy(action: argparse.Action, **changes: Any) -> argparse.Action:
    import copy

    new = copy.copy(action)
    for key, value in changes.items():
        setattr(new, key, value)
    return new


def _negations(parser: argparse.ArgumentParser) -> set[str]:
    """Dests of the ``--no_flag`` actions (store_false twins of booleans), left out of the listings."""
    return {a.dest for a in parser._actions if isinstance(a, argparse._StoreFalseAction)}


def _field_items(parser, names: Sequence[str], shown: set[str], texts: dict[str, str | None] | None = None,
                 ) -> list[tuple[str, str]]:
    """Entries of the fields `names` not yet `shown` (each option once), with `texts` replacing their help."""
    actions = parser.field_actions()
    items = []
    for name in names:
        if name in shown or name not in actions:
            continue
        shown.add(name)
        action = next(a for a in actions[name] if not isinstance(a, argparse._StoreFalseAction))
        text = (texts or {}).get(name) or HELP_OVERRIDES.get(name)
        items.append(entry(action, parser.prog, text))
    return items


def train_spec(full: bool = False) -> dict[str, Any]:
    """The spec of ``antisd train --help`` (`full`: ``--help-all``), from the live parser."""
    from trl import GRPOConfig

    from antisd.trainer.config import HELP_SECTIONS, antisd_field_names
    from antisd.cli.options import ModelArgs, RewardArgs, build_parser
    from antisd.data.problems import DataConfig

    parser = build_parser()
    names = lambda dtype: tuple(f.name for f in dataclasses.fields(dtype) if f.init)  # noqa: E731
    data_fields = set(names(DataConfig))
    shown: set[str] = set()
    groups = []
    listed = {name for _, fields in HELP_SECTIONS for name in fields}
    other = tuple(name for name in antisd_field_names() if name not in listed)
    for title, fields in [*HELP_SECTIONS, *([("other AntiSD options", other)] if other else [])]:
        # a column the data options also declare is one option, listed once, under data
        groups.append((title, _field_items(parser, [n for n in fields if n not in data_fields], shown)))
    groups += [("model", _field_items(parser, names(ModelArgs), shown)),
               ("data", _field_items(parser, names(DataConfig), shown)),
               ("reward", _field_items(parser, names(RewardArgs), shown))]
    n_fields = len(parser.field_actions())
    if full:
        from transformers import TrainingArguments

        trl_only = [n for n in names(GRPOConfig) if n not in set(names(TrainingArguments))]
        groups += [("TRL GRPOConfig options", _field_items(parser, trl_only, shown)),
                   ("transformers TrainingArguments options", _field_items(parser, names(GRPOConfig), shown))]
        epilog = FULL_TAIL
    else:
        groups.append(("TRL options (the common ones; all of them: --help-all)",
                       _field_items(parser, list(COMMON_TRL_HELP), shown, COMMON_TRL_HELP)))
        epilog = TRAIN_HELP_TAIL.format(n=n_fields)
    return {"usage": TRAIN_USAGE, "description": TRAIN_HELP_HEAD, "groups": groups, "epilog": epilog}


def parser_spec(parser: argparse.ArgumentParser, usage: str) -> dict[str, Any]:
    """The spec of a ``DataclassParser`` (``antisd eval``, ``antisd pmi``): its options in their groups,
    each once, without ``-h`` and the ``--no_flag`` twins."""
    skip = _negations(parser)
    groups = []
    for group in parser._action_groups:
        items = [entry(a, parser.prog) for a in group._group_actions
                 if a.option_strings and not isinstance(a, argparse._HelpAction)
                 and not (isinstance(a, argparse._StoreFalseAction) and a.dest in skip)]
        groups.append((group.title, items))
    epilog = " ".join(filter(None, [parser.epilog, FULL_TAIL]))
    return {"usage": usage, "description": parser.description or "", "groups": groups, "epilog": epilog}


def eval_spec() -> dict[str, Any]:
    from antisd.evaluate.config import build_parser

    return parser_spec(build_parser(), "antisd eval [--config YAML ...] [--threads N] [--key value ...]")


def pmi_spec() -> dict[str, Any]:
    from antisd.pmi.config import build_parser

    return parser_spec(build_parser(), "antisd pmi [--config YAML ...] [--threads N] [--key value ...]")


def live_spec(command: str) -> dict[str, Any]:
    """The spec of `command` (one of ``COMMANDS``) from the live parsers (imports TRL and torch)."""
    builders = {"train": train_spec, "train-all": lambda: train_spec(full=True), "eval": eval_spec, "pmi": pmi_spec}
    return json.loads(json.dumps(builders[command](), default=str))  # as the cache holds it: lists, strings


# ---------------------------------------------------------------------------------------- the cache


def _source_modules(command: str) -> set[str]:
    """The antisd modules the options of `command` come from: the modules declaring its dataclasses
    (and their antisd bases), configio, this one, and the antisd modules each of them imports from."""
    from antisd.cli.options import dataclass_types

    if command in ("train", "train-all"):
        types_ = dataclass_types()
    elif command == "eval":
        from antisd.evaluate.config import EvalConfig

        types_ = [EvalConfig]
    else:
        from antisd.pmi.config import PMIConfig

        types_ = [PMIConfig]
    direct = {"antisd.cli.options", __name__}
    for dtype in types_:
        direct |= {c.__module__ for c in inspect.getmro(dtype) if c.__module__.startswith("antisd.")}
    if command in ("eval", "pmi"):
        direct.add(f"antisd.{'evaluate' if command == 'eval' else 'pmi'}.config")
    out = set(direct)
    for name in direct:
        for value in vars(sys.modules[name]).values():
            module = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
            if isinstance(module, str) and module.startswith("antisd.") and module in sys.modules:
                out.add(module)
    return out


def _module_file(name: str) -> str:
    return Path(sys.modules[name].__file__).resolve().relative_to(PACKAGE).as_posix()


def _declarations(source: str) -> bytes:
    """What of a module can shape a help text: everything but the bodies of its top-level functions (their
    names, signatures and decorators stay: a registry decorator adds a choice). Classes (the dataclasses,
    the parser) and module constants count in full; an edit inside a function body does not."""
    import ast

    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node.body = [ast.Pass()]
    return ast.dump(tree).encode()


def fingerprint(files: Sequence[str]) -> dict[str, Any]:
    """Versions of TRL and transformers and a hash of the declarations (``_declarations``) of the antisd
    source `files` (paths in the package)."""
    digest = hashlib.sha256()
    for rel in sorted(files):
        digest.update(rel.encode() + b"\0")
        try:
            digest.update(_declarations((PACKAGE / rel).read_text(encoding="utf-8")))
        except (OSError, SyntaxError, ValueError):
            digest.update(b"<missing>")
    versions = {}
    for dist in VERSIONED:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {"versions": versions, "sources": digest.hexdigest()}


def build_cache() -> dict[str, Any]:
    """Every command's spec and the fingerprint they hold for."""
    specs = {command: live_spec(command) for command in COMMANDS}
    files = sorted({_module_file(m) for command in COMMANDS for m in _source_modules(command)})
    return {"files": files, "fingerprint": fingerprint(files), "specs": specs}


def read_cache(path: Path | None = None) -> dict[str, Any] | None:
    """The shipped specs (``CACHE``, or `path`) when their fingerprint matches this install, else None."""
    try:
        cache = json.loads((path or CACHE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(cache, dict) or cache.get("fingerprint") != fingerprint(cache.get("files", [])):
        return None
    return cache


def help_text(command: str, width: int | None = None) -> str:
    """The help of `command`: from the shipped specs when they are current, else from the live parsers."""
    cache = read_cache()
    spec = cache["specs"][command] if cache and command in cache.get("specs", {}) else live_spec(command)
    return render(spec, width)


def help_command(argv: Sequence[str]) -> str | None:
    """The help command an ``antisd`` command line asks for (``train``, ``train-all``, ``eval``, ``pmi``), or None."""
    if len(argv) < 2 or argv[0] not in ("train", "eval", "pmi"):
        return None
    rest = argv[1:]
    if argv[0] == "train" and "--help-all" in rest:
        return "train-all"
    return argv[0] if ("-h" in rest or "--help" in rest) else None


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m antisd.cli.helptext", description="Regenerate or check the shipped "
                                "help texts (resources/help.json).")
    p.add_argument("--write", action="store_true", help="write resources/help.json from the live parsers")
    p.add_argument("--check", action="store_true", help="exit 1 when resources/help.json is not current")
    args = p.parse_args(argv)
    if args.write:
        CACHE.write_text(json.dumps(build_cache(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(CACHE)
        return 0
    if args.check:
        cache, live = read_cache(), build_cache()
        if cache is None or cache["specs"] != live["specs"] or cache["files"] != live["files"]:
            print(f"{CACHE} is out of date: run python -m antisd.cli.helptext --write", file=sys.stderr)
            return 1
        print(f"{CACHE} is current")
        return 0
    p.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
