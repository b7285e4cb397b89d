"""The shared validation layer of ``antisd train``, ``antisd eval`` and ``antisd pmi``: user inputs
checked before anything is loaded or written, each problem reported as one line.

    read_json_rows(path)       a .jsonl/.json file (optionally .gz) as a list of dicts: a missing or
                               empty file, bytes that are not UTF-8, a malformed line (its number
                               and the JSON error) or a line that is not an object raise
    check_model(name)          a model folder or hub name: a missing folder, a folder that is not a
                               model (no config.json, no adapter_config.json), a model without a
                               tokenizer, a name that is neither a folder nor a hub name, a hub model
                               not reachable (or not cached under HF_HUB_OFFLINE=1) raise
    check_tokenizer(name)      a tokenizer folder (its files) or a hub name
    check_output_dir(path)     an output folder that is a file, sits under a file or cannot be written
    read_utf8(path, what)      a text file's content; bytes that are not UTF-8 raise with their offset
    one_line(message)          whitespace (newlines included) collapsed, for the CLI's error line
    check_choice(name, value)  a config value that must be one of a few names (the dataclasses' checks)

Every check raises ``InputError`` (a ``ValueError``); ``antisd.data.problems.DataError`` is one too. The
commands catch it and print ``antisd COMMAND: error: MESSAGE`` with exit code 2. Row-level
checks of problem tables (types, empty or null answers, duplicate ids) are in
``antisd.data.problems.map_problems``, which every command's data goes through.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
from pathlib import Path
from collections.abc import Sequence
from typing import Any

logger = logging.getLogger(__name__)

JSON_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt",
                   "spiece.model")
MODEL_FILES = ("config.json", "adapter_config.json")  # a full model, or a PEFT adapter


class InputError(ValueError):
    """A bad user input (model path, data file, rows): one line, exit code 2, before anything is written."""


def one_line(message: str) -> str:
    """`message` with every run of whitespace (newlines included) collapsed to one space."""
    return " ".join(str(message).split())


def check_choice(name: str, value: object, valid: Sequence[str]) -> None:
    """Raise ValueError ``name=value is not valid; choose one of [...]`` (the choices sorted) unless `value`
    is one of `valid`: the one message of the config dataclasses' choice checks."""
    if value not in valid:
        raise ValueError(f"{name}={value!r} is not valid; choose one of {sorted(valid)}")


def looks_local(name: str) -> bool:
    """Whether `name` is meant as a local path (absolute, ./, ../, ~, or a data-file suffix)."""
    return name.startswith(("/", "./", "../", "~", ".\\")) or name.endswith((*JSON_SUFFIXES, ".parquet", ".csv"))


# ---------------------------------------------------------------------------------------- JSON files


def _text(path: Path, what: str) -> str:
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
    except FileNotFoundError:
        raise InputError(f"{what}={str(path)!r}: no such file") from None
    except (OSError, EOFError) as e:  # a directory, no permission, a broken gzip stream
        raise InputError(f"{what}={str(path)!r} cannot be read: {one_line(e)}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise InputError(f"{what}={str(path)!r} is not UTF-8 text: byte {raw[e.start]:#04x} at line {line} "
                         f"(offset {e.start}); save the file as UTF-8") from None


def _json_array(text: str, path: Path, what: str) -> list[dict[str, Any]]:
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{what}={str(path)!r}: not valid JSON at line {e.lineno} column {e.colno} ({e.msg})") from None
    if not isinstance(rows, list):
        raise InputError(f"{what}={str(path)!r} holds a JSON {type(rows).__name__}; expected JSON lines "
                         "(one object per line) or an array of objects")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InputError(f"{what}={str(path)!r}: element {i} of the array is a JSON {type(row).__name__}, "
                             "not an object of column: value")
    return rows


def read_json_rows(path: str | Path, *, what: str = "dataset_name") -> list[dict[str, Any]]:
    """The rows of a JSON-lines file (or a ``.json`` array of objects), ``.gz`` allowed.

    Raises ``InputError`` naming `what`, the file and, for a bad line, its 1-based number: a
    missing or unreadable file, bytes that are not UTF-8, no rows at all, a line that is not
    valid JSON (a truncated last line included), a line that is not a JSON object.
    """
    path = Path(path).expanduser()
    text = _text(path, what)
    if not text.strip():
        raise InputError(f"{what}={str(path)!r} is empty; expected one JSON object per line")
    if text.lstrip().startswith("["):
        rows = _json_array(text, path, what)
    else:
        rows = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{what}={str(path)!r}: line {n} is not valid JSON ({e.msg} at column {e.colno}): "
                                 f"{line.strip()[:60]!r}") from None
            if not isinstance(row, dict):
                raise InputError(f"{what}={str(path)!r}: line {n} is a JSON {type(row).__name__}, not an object "
                                 "of column: value")
            rows.append(row)
    if not rows:
        raise InputError(f"{what}={str(path)!r} has no rows; expected one JSON object per line")
    return rows


def read_utf8(path: str | Path, *, what: str) -> str:
    """The text of `path` (``.gz`` decompressed); a missing or unreadable file, or bytes that are not UTF-8
    (the byte, its line and its offset), raise ``InputError`` naming `what` and the file."""
    return _text(Path(path).expanduser(), what)


# ---------------------------------------------------------------------------------------- output folders


def check_output_dir(path: str | Path, *, what: str = "output_dir") -> None:
    """Raise ``InputError`` when `path` cannot be an output folder: it is a file, a part of it is a file, or the
    folder (or the nearest existing one above it) is not writable. Nothing is created."""
    given = str(path)
    if not given.strip():
        raise InputError(f"{what} is empty; give a folder to write to")
    folder = Path(given).expanduser()
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{what}={given!r} is a file, not a folder; give a new or an existing folder")
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{what}={given!r} cannot be created: {str(existing)!r} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{what}={given!r} cannot be written: no write permission in {str(existing)!r}")


# ---------------------------------------------------------------------------------------- models


def _check_local_model(path: Path, name: str, what: str, tokenizer: bool) -> None:
    if not path.exists():
        raise InputError(f"{what}={name!r}: no such local directory")
    if not path.is_dir():
        raise InputError(f"{what}={name!r} is a file; expected a model folder (written by save_pretrained)")
    found = [f for f in MODEL_FILES if (path / f).is_file()]
    if not found:
        raise InputError(f"{what}={name!r} is not a model: the folder has no config.json (nor a PEFT "
                         "adapter_config.json); expected a folder written by save_pretrained")
    try:
        config = json.loads((path / found[0]).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{what}={name!r}: {found[0]} is not valid JSON ({one_line(e)})") from None
    if not isinstance(config, dict):
        raise InputError(f"{what}={name!r}: {found[0]} is not a JSON object")
    if tokenizer and not any((path / f).is_file() for f in TOKENIZER_FILES):
        base = config.get("base_model_name_or_path") if found[0] == "adapter_config.json" else None
        if isinstance(base, str) and base:
            return check_model(base, what=f"{what} (the adapter's base model)", tokenizer=True)
        raise InputError(f"{what}={name!r} has no tokenizer (none of {', '.join(TOKENIZER_FILES)}); save the "
                         "tokenizer into the model folder (tokenizer.save_pretrained(folder))")


def _check_hub_model(name: str, what: str, tokenizer: bool, config: bool = True) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id
    from transformers.utils import cached_file

    try:
        validate_repo_id(name)
    except HFValidationError:
        raise InputError(f"{what}={name!r}: no such local directory, and not a hub name (namespace/name)") from None

    def fetch(filenames: Sequence[str]) -> str | None:
        for filename in filenames:
            try:
                found = cached_file(name, filename, _raise_exceptions_for_missing_entries=False)
            except (OSError, ValueError) as e:
                raise InputError(f"{what}={name!r}: no such local directory, and the hub repository could not be "
                                 f"reached ({one_line(e)[:200]})") from None
            if found:
                return found
        return None

    where = "the local hub cache (HF_HUB_OFFLINE is set)" if _offline() else "the hub repository"
    if config and not fetch(MODEL_FILES):
        raise InputError(f"{what}={name!r}: no such local directory, and {where} has no config.json for it")
    if tokenizer and not fetch(("tokenizer_config.json", "tokenizer.json")):
        raise InputError(f"{what}={name!r}: {where} has no tokenizer for it (tokenizer_config.json)")


def _offline() -> bool:
    import os

    return any(os.environ.get(v, "").upper() in ("1", "ON", "YES", "TRUE") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def check_tokenizer(name: str, *, what: str = "tokenizer") -> None:
    """Raise ``InputError`` when `name` is not a tokenizer: a local folder needs the tokenizer's
    files, a hub name a ``tokenizer_config.json`` or ``tokenizer.json`` (fetched, or cached offline)."""
    path = Path(name).expanduser()
    if not (path.exists() or looks_local(name)):
        return _check_hub_model(name, what, tokenizer=True, config=False)
    if not path.is_dir():
        raise InputError(f"{what}={name!r}: no such local directory")
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise InputError(f"{what}={name!r} is not a tokenizer folder (none of {', '.join(TOKENIZER_FILES)})")


def check_model(name: str, *, what: str = "model_name_or_path", tokenizer: bool = True) -> None:
    """Raise ``InputError`` when `name` is not a loadable model (see the module docstring).

    A local folder needs ``config.json`` (or a PEFT ``adapter_config.json``) and, when
    `tokenizer`, the tokenizer's files (an adapter may take them from its local base model).
    Anything else must be a hub name whose ``config.json`` can be fetched, or found in the cache
    under ``HF_HUB_OFFLINE=1``.
    """
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"{what} is empty; give a local model folder or a hub model name")
    path = Path(name).expanduser()
    if path.exists() or looks_local(name):
        _check_local_model(path, name, what, tokenizer)
    else:
        _check_hub_model(name, what, tokenizer)
