"""One resolver for model names: what ``antisd train``, ``antisd eval --models``, ``antisd pmi`` and the
Python API (``AntiSDTrainer(model=...)``) do with a model name before anything loads.

    toyworld, toyworld:<recipe>   the built-in toy base policy (``antisd.toyworld``): the build shipped with
                                  antisd (default, a0, search), else the cached one, else one built now (tiny:
                                  seconds); an unknown recipe fails at once, listing the valid ones
    smollm2-135m, FILE.gguf       a built-in real model or a GGUF file (``antisd.lm.realmodel``): its folder in
                                  the models cache, converted on first use
    an existing local folder      that folder, checked (config.json, a tokenizer: ``antisd.cli.validate``); a
                                  folder whose tokenizer is the toy world's word-level one (a shipped or cached
                                  build, a run or checkpoint trained from it) is the toy model too
    org/name, not a folder here   a hub id: read from the hub cache under HF_HUB_OFFLINE=1, else fetched; with
                                  no network, one line that says so at once (no retries)
    anything else                 ``InputError`` at once, naming what was looked for

A built-in name or an existing local path never reaches the hub. The toy model's settings
(``toy_settings``: plain prompts, the toy teacher template, feedback words and answer line, its response
budget) are those of recipes/toy/antisd.yaml. Its tokenizer has no chat template of its own;
``ensure_toy_chat_template`` gives it ``antisd.toyworld.tokenizer.CHAT_TEMPLATE`` (a chat rendered as its
user turns' text, the plain text the model was trained on), so chat prompts give the same ids as plain ones.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from antisd.cli.validate import InputError, check_model, looks_local, one_line

logger = logging.getLogger(__name__)

TOY_NAME = "toyworld"
# The toy recipe's keys that make up "the toy model's settings" (prompts, teacher context, sampling budget).
TOY_SETTING_KEYS = ("prompt_format", "teacher_template", "feedback_correct", "feedback_incorrect", "answer_template",
                    "sibling_format", "temperature", "max_completion_length", "num_generations")
TOY_CONTEXT_KEYS = ("teacher_template", "feedback_correct", "feedback_incorrect", "answer_template", "sibling_format")
_MAX_TOY_TOKENIZER_BYTES = 1 << 18  # the toy tokenizer.json is ~6 KB; a real model's is megabytes (never read)
_LOGGED: set[str] = set()


@dataclass(frozen=True)
class ModelRef:
    """A resolved model name: ``path`` is what ``from_pretrained`` takes (an absolute local folder or a hub id)."""

    name: str
    path: str
    kind: Literal["builtin", "local", "hub"]
    toy: bool

    @property
    def toy_build(self) -> Path | None:
        """The toy base-policy build folder (with its ``build_info.json``), when ``path`` is one."""
        folder = Path(self.path)
        return folder if self.toy and (folder / "build_info.json").is_file() else None


def is_toy_name(name: str) -> bool:
    """``toyworld`` or ``toyworld:<recipe>`` (the built-in name; the recipe is checked by ``resolve_model``)."""
    return name == TOY_NAME or name.startswith(TOY_NAME + ":")


def is_toy_folder(path: str | Path) -> bool:
    """Whether the local folder `path` holds the toy world's tokenizer (a toy build, or a model trained from one)."""
    from antisd.toyworld.tokenizer import is_toy_vocabulary

    file = Path(path).expanduser() / "tokenizer.json"
    try:
        if not file.is_file() or file.stat().st_size > _MAX_TOY_TOKENIZER_BYTES:
            return False
        model = json.loads(file.read_text(encoding="utf-8")).get("model") or {}
    except (OSError, ValueError):
        return False
    return model.get("type") == "WordLevel" and isinstance(model.get("vocab"), dict) and is_toy_vocabulary(model["vocab"])


def names_toy_model(name: str | None) -> bool:
    """Cheap (nothing built or loaded): `name` is the built-in toy name or a local folder of the toy model."""
    if not name:
        return False
    return is_toy_name(name) or (Path(name).expanduser().is_dir() and is_toy_folder(name))


def toy_recipe(name: str, what: str = "model_name_or_path") -> str:
    """The recipe of ``toyworld[:<recipe>]`` (``default`` when none); an unknown one raises InputError."""
    from antisd.toyworld.base_policy import RECIPES

    recipe = name.partition(":")[2] or "default"
    if recipe not in RECIPES:
        raise InputError(f"{what}={name!r}: the built-in toy model has no recipe {recipe!r}; "
                         f"choose one of {', '.join(f'{TOY_NAME}:{r}' for r in sorted(RECIPES))} ({TOY_NAME} is "
                         f"{TOY_NAME}:default)")
    return recipe


@functools.lru_cache(maxsize=None)
def _toy_path(recipe_name: str, cache_dir: str) -> str:
    from antisd.toyworld import ensure_base_policy, recipe

    return str(ensure_base_policy(recipe(recipe_name), cache_dir or None))


def toy_model_path(name: str, what: str = "model_name_or_path") -> str:
    """The local folder of ``toyworld[:<recipe>]``: shipped, cached, or built now (once per process)."""
    recipe = toy_recipe(name, what)
    path = _toy_path(recipe, os.environ.get("ANTISD_CACHE_DIR", ""))
    _log_once(f"toy:{name}", "Built-in model %r: the toy base policy of recipe %s (%s)", name, recipe, path)
    return path


def resolve_model(name: Any, *, what: str = "model_name_or_path", tokenizer: bool = True) -> ModelRef:
    """`name` as a ``ModelRef`` (see the module docstring); a name that cannot be a model raises
    ``InputError`` (one line naming `what` and what was looked for) before anything loads.
    `tokenizer`: also require the model's tokenizer."""
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"{what} is empty; give a local model folder, {TOY_NAME} (the built-in toy model) or a "
                         "hub id such as Qwen/Qwen3-0.6B")
    name = name.strip()
    if is_toy_name(name):
        return ModelRef(name, toy_model_path(name, what), "builtin", True)
    real = real_model_path(name, what)
    if real is not None:
        check_model(real, what=what, tokenizer=tokenizer)
        return ModelRef(name, real, "builtin", False)
    path = Path(name).expanduser()
    if path.exists():
        check_model(name, what=what, tokenizer=tokenizer)
        return ModelRef(name, str(path.resolve()), "local", is_toy_folder(path))
    where = str(path.absolute())
    if looks_local(name):
        raise InputError(f"{what}={name!r}: no such local directory ({where!r} does not exist)")
    if name.count("/") != 1 or not all(name.split("/")):
        raise InputError(f"{what}={name!r}: no such local directory ({where!r}){_did_you_mean(name)}, and not a "
                         f"built-in name ({', '.join(_builtin_names(short=True))}) nor a hub name (org/name)")
    check_hub_reachable(name, what)
    check_model(name, what=what, tokenizer=tokenizer)
    return ModelRef(name, name, "hub", False)


def real_model_path(name: str, what: str = "model_name_or_path") -> str | None:
    """The converted folder of a built-in real model or a ``.gguf`` file (``antisd.lm.realmodel``), else None."""
    try:
        from antisd.lm.realmodel import RealModelError, resolve_model_name
    except ImportError:  # an install without the real-model module
        return None
    try:
        return resolve_model_name(name)
    except RealModelError as e:
        raise InputError(f"{what}={name!r}: {one_line(e)}") from None


def builtin_model_path(name: str, what: str = "model_name_or_path") -> str | None:
    """The local folder of a built-in model name (the toy model, a real model, a ``.gguf`` file), else None;
    nothing else is checked (``resolve_model`` checks every name)."""
    if is_toy_name(name):
        return toy_model_path(name, what)
    return real_model_path(name, what)


def _builtin_names(short: bool = False) -> list[str]:
    from antisd.toyworld.base_policy import RECIPES

    names = [TOY_NAME, f"{TOY_NAME}:<recipe>"] if short else [TOY_NAME, *(f"{TOY_NAME}:{r}" for r in RECIPES)]
    try:
        from antisd.lm.realmodel import BUILTIN_MODELS
    except ImportError:
        return names
    return [*names, *BUILTIN_MODELS]


def _did_you_mean(name: str) -> str:
    import difflib

    close = difflib.get_close_matches(name, _builtin_names(), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


# ---------------------------------------------------------------------------------------- the hub


def hub_offline() -> bool:
    return any(os.environ.get(v, "").upper() in ("1", "ON", "YES", "TRUE") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _hub_host() -> tuple[str, int]:
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    return url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)


def network_problem(timeout_s: float = 5.0) -> str | None:
    """None when a TCP connection to the hub's endpoint opens within `timeout_s` (or a proxy is configured,
    which this cannot test); else why not, in words."""
    import socket

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")):
        return None
    host, port = _hub_host()
    result: list[str | None] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
            result.append(None)
        except OSError as e:
            result.append(f"{host}:{port}: {one_line(e)}")

    thread = threading.Thread(target=probe, daemon=True)  # name resolution has no timeout of its own
    thread.start()
    thread.join(timeout_s)
    return result[0] if result else f"{host}:{port}: no answer within {timeout_s:.0f} s"


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(repo_id, f), str) for f in ("config.json", "adapter_config.json"))


def check_hub_reachable(repo_id: str, what: str = "model_name_or_path") -> None:
    """Raise ``InputError`` at once when the hub id `repo_id` would need the network and there is none
    (under HF_HUB_OFFLINE=1 only the hub cache is read, and ``check_model`` says when it lacks the model)."""
    if hub_offline():
        return
    problem = network_problem()
    if problem is None:
        return
    cached = ("; it is in the hub cache: set HF_HUB_OFFLINE=1 to use that copy" if _in_hub_cache(repo_id)
              else "; download it where there is a network (or give a local folder)")
    raise InputError(f"{what}={repo_id!r}: no such local directory ({str(Path(repo_id).absolute())!r}), and as a hub "
                     f"name it needs the network, which is not available ({problem}){cached}")


# ---------------------------------------------------------------------------------------- the toy model's settings


def toy_settings() -> dict[str, Any]:
    """The toy model's settings (``TOY_SETTING_KEYS``) from recipes/toy/antisd.yaml (``antisd.toyworld.defaults.TOY_TRAIN``)."""
    from antisd.toyworld.defaults import TOY_TRAIN

    return {k: TOY_TRAIN[k] for k in TOY_SETTING_KEYS if k in TOY_TRAIN}


def is_toy_tokenizer(tokenizer: Any) -> bool:
    """Whether a loaded tokenizer is the toy world's (its vocabulary, exactly)."""
    from antisd.toyworld.tokenizer import is_toy_vocabulary

    get_vocab = getattr(tokenizer, "get_vocab", None)
    if get_vocab is None or len(tokenizer) > 4096:
        return False
    return is_toy_vocabulary(get_vocab())


def ensure_toy_chat_template(tokenizer: Any) -> Any:
    """Give a toy tokenizer without a chat template the toy one (logged once); any other tokenizer is unchanged."""
    from antisd.toyworld.tokenizer import CHAT_TEMPLATE

    if getattr(tokenizer, "chat_template", None) or not is_toy_tokenizer(tokenizer):
        return tokenizer
    tokenizer.chat_template = CHAT_TEMPLATE
    _log_once("toy-chat", "The toy model reads plain text: chat prompts are rendered as their user turns' text "
                          "(system messages left out)")
    return tokenizer


def apply_toy_context(config: Any) -> dict[str, tuple[Any, Any]]:
    """Set the privileged-context fields of `config` (an ``AntiSDConfig``) that hold their general defaults to the
    toy world's values (recipes/toy/antisd.yaml); the general ones are English the toy tokenizer cannot read.
    Returns field -> (old, new) for the fields changed; values the user chose are kept."""
    from antisd.method.context import ContextFields

    defaults = ContextFields()
    toy = toy_settings()
    changed = {k: (getattr(config, k), toy[k]) for k in TOY_CONTEXT_KEYS
               if k in toy and getattr(config, k) == getattr(defaults, k) and toy[k] != getattr(defaults, k)}
    for key, (_, value) in changed.items():
        setattr(config, key, value)
    return changed


def _log_once(key: str, message: str, *args: Any) -> None:
    if key not in _LOGGED:
        _LOGGED.add(key)
        logger.info(message, *args)
