"""YAML config files and the packaged recipes of the ``antisd`` commands.

    read_yaml(path)              one file, ``version`` checked (1; absent means 1) and dropped
    config_path(path)            a --config path; ``recipes/...`` that does not exist locally is
                                 read from the packaged recipes (so documented commands work anywhere)
    merge_configs(paths)         files merged left to right (later keys win; ``env`` maps merge)
    load_recipe(model, method)   recipes/models/<model>.yaml + recipes/methods/<method>.yaml
    export_env(env)              the ``env:`` mapping of the files (VARIABLE: value) set in the environment

Problems raise ``CliError``: one line, exit code 2. The flags and the dataclasses are ``antisd.cli.parser``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RECIPE_VERSION = 1
# The recipes are package data (antisd/resources/recipes); $ANTISD_RECIPES points at another folder.
RECIPES_DIR = Path(os.environ.get("ANTISD_RECIPES") or Path(__file__).resolve().parents[1] / "resources" / "recipes")
PLACEHOLDERS = ("{model}", "{method}")


class CliError(Exception):
    """A usage or configuration error: reported on one line, exit code 2."""



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
