"""The command line of the ``antisd`` commands: dataclasses as ``--key value`` flags, with YAML files under them.

One way for ``antisd train``, ``antisd eval`` and ``antisd pmi`` to turn dataclasses into a
command line (``DataclassParser``, a ``transformers.HfArgumentParser``) and to read settings:

    apply_config(parser, cfg)    a merged mapping as the parser's defaults: unknown keys (with
                                 "did you mean"), bad types and bad choices raise ``CliError``
    parse_with_configs(...)      ``--config FILE`` (repeatable) and ``--recipe MODEL METHOD``
                                 split off, files applied (``antisd.cli.configfiles``), the
                                 remaining flags parsed on top

Precedence, lowest first: dataclass defaults, the recipe, each ``--config`` file in order, the
command line. ``env:`` in a file maps VARIABLE: value; ``export_env`` sets them.

Conventions of ``DataclassParser`` for every command: ``--name`` and ``--kebab-name`` per field
(plus the field's ``aliases`` metadata), ``--flag [BOOL]`` for booleans (1/true/yes/y/on/t or
0/false/no/n/off/f; a field that defaults to true also gets ``--no_flag`` unless the command
says otherwise), lists as several
values, mappings as JSON, ``Literal`` types (or a ``choices`` metadata entry) as choices, and a field
declared by several dataclasses is one option whose value goes to all of them. Optional fields read ``none``,
``null`` or an empty string as None where the command asks for it (``none_words``; with
``none_for_strings=False`` only optional numbers and booleans do, so that string values such as
TRL's ``--report_to none`` keep their meaning).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import re
import typing
from collections.abc import Callable, Sequence
from typing import Any

from transformers import HfArgumentParser
from transformers.hf_argparser import string_to_bool as _hf_string_to_bool

from antisd.cli.configfiles import PLACEHOLDERS, CliError, load_recipe, merge_configs

NONE_WORDS = ("none", "null", "")
NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|nan)$", re.IGNORECASE)


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
