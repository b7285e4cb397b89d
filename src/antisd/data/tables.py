"""Problem tables: read a dataset's rows as they are, before any mapping (``antisd.data.problems``).

    load_raw(cfg)            the source of a ``DataConfig``: a local file or folder (JSON files as ``Rows``, their
                             values as written; parquet and CSV through ``datasets``), a built-in name (the data
                             shipped with antisd, ``antisd.data.shipped``) or a hub dataset
    in_memory_table(data)    a list of dicts, a pandas DataFrame or a ``datasets.Dataset`` as such a table
    split_rows(rows, split)  ``train`` or a slice of it (``train[:100]``) of a local file's rows
    column_values(table, c)  one column's values; a missing column raises ``DataError`` naming the setting

Every problem is a ``DataError`` (an ``antisd.cli.validate.InputError``): one line, exit code 2.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import datasets

from antisd.cli.validate import InputError, looks_local, one_line, read_json_rows
from antisd.data.config import DataConfig
from antisd.data.shipped import MATH_FILES, builtin_dataset

logger = logging.getLogger(__name__)

BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


class DataError(InputError):
    """The data cannot be used as configured: a missing or unreadable file, a missing column, a tokenizer
    mismatch. An ``antisd.cli.validate.InputError``: the commands report it on one line, exit code 2."""


class DataValidationError(DataError):
    """Bad rows in the training data; the message lists them."""


class Rows(list):
    """The rows of a JSON file (dicts), with the two ``datasets.Dataset`` members antisd uses on a
    raw table: ``column_names`` (every key, in first-seen order) and ``select``. Values stay as the
    file wrote them, so a wrongly typed cell is reported as such instead of failing in Arrow."""

    @property
    def column_names(self) -> list[str]:
        return list(dict.fromkeys(key for row in self for key in row))

    def select(self, indices: Any) -> Rows:
        return Rows(self[i] for i in indices)



def _builder(path: Path) -> str | None:
    """The datasets builder of a data file's name (JSON files may be gzipped), or None."""
    if path.name.endswith(".gz"):
        return "json" if path.name.endswith((".jsonl.gz", ".json.gz")) else None
    return BUILDERS.get(path.suffix)


def _local_files(path: Path) -> tuple[str, list[Path]]:
    """(builder, files) for a local file or a directory of files of one type."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if _builder(p) and p.is_file())
        if not files:
            raise DataError(f"dataset_name={str(path)!r} is a directory with no {sorted(BUILDERS)} files")
        builders = {_builder(p) for p in files}
        if len(builders) > 1:
            raise DataError(f"dataset_name={str(path)!r} mixes file types {sorted({p.suffix for p in files})}; keep one type")
        return builders.pop(), files
    builder = _builder(path)
    if builder is None:
        raise DataError(f"dataset_name={str(path)!r}: unsupported file type {path.suffix!r}; use one of "
                        f"{sorted(BUILDERS)} (JSON optionally .gz)")
    return builder, [path]


def _looks_local(name: str) -> bool:
    return looks_local(name) or _builder(Path(name)) is not None


def split_rows(rows: list[Any], split: str, name: str) -> list[Any]:
    """``train`` or a slice of it (``train[:100]``, ``train[10:20]``) of a local file's rows."""
    if split == "train":
        return rows
    if not (split.startswith("train[") and split.endswith("]")):
        raise DataError(f"dataset_split={split!r}: local files have one split, 'train' (slices like 'train[:100]' work)")
    parts = split[len("train["):-1].split(":")
    try:
        bounds = [int(p) if p.strip() else None for p in parts]
    except ValueError:
        bounds = []
    if len(bounds) != 2:
        raise DataError(f"dataset_split={split!r} is not a slice; write train[START:STOP], e.g. train[:100]")
    out = rows[bounds[0]:bounds[1]]
    logger.info("%s: split %s keeps %d of %d rows", name, split, len(out), len(rows))
    return out


def _check_csv_rows(path: Path, files: list[Path]) -> None:
    """A DataError naming the file when no CSV file has a row under its header (the csv builder would report
    a library internal: 'Instruction "train" corresponds to no data!')."""
    import csv

    header: list[str] = []
    for f in files:
        try:
            with open(f, encoding="utf-8", errors="replace", newline="") as fh:
                reader = csv.reader(fh)
                header = header or next(reader, [])
                if any(any(cell.strip() for cell in row) for row in reader):
                    return
        except (OSError, csv.Error):
            return  # the builder reports an unreadable or malformed file itself
    if not header:
        raise DataError(f"dataset_name={str(path)!r} is empty; expected a header line of column names and one row "
                        "per problem")
    raise DataError(f"dataset_name={str(path)!r} has a header ({', '.join(header)}) but no rows; expected one row "
                    "per problem under it")


def _load_local(path: Path, cfg: DataConfig) -> Rows | datasets.Dataset:
    builder, files = _local_files(path)
    if builder == "json":
        try:
            rows = Rows(row for f in files for row in read_json_rows(f, what="dataset_name"))
        except InputError as e:
            raise DataError(str(e)) from None
        logger.info("Loaded %d rows from %d JSON file(s) at %s", len(rows), len(files), path)
        return Rows(split_rows(rows, cfg.dataset_split, str(path)))
    if not cfg.dataset_split.startswith("train"):
        raise DataError(f"dataset_split={cfg.dataset_split!r}: local files have one split, 'train' (slices like 'train[:100]' work)")
    if builder == "csv":
        _check_csv_rows(path, files)
    logger.info("Loading %d %s file(s) from %s", len(files), builder, path)
    try:
        if builder == "parquet":  # a broken file: one DataError, not the builder's own error log
            import pyarrow.parquet as pq

            for f in files:
                pq.read_schema(f)
        return datasets.load_dataset(builder, data_files=[str(f) for f in files], split=cfg.dataset_split)
    except Exception as e:  # the builders raise many types (Arrow, pandas, parser errors)
        raise DataError(f"dataset_name={str(path)!r} cannot be read as {builder}: {type(e).__name__}: "
                        f"{one_line(e)[:300]}") from None


def load_raw(cfg: DataConfig) -> Rows | datasets.Dataset:
    """The source table, unmapped: a local file/directory, a built-in name or a hub dataset.

    JSON files give ``Rows`` (their values as written), other sources a ``datasets.Dataset``."""
    path = Path(cfg.dataset_name).expanduser()
    if not path.exists() and (packaged := builtin_dataset(cfg.dataset_name)) is not None:
        logger.info("Built-in dataset %s: %s (shipped with antisd)", cfg.dataset_name, packaged.name)
        path = packaged
    if path.exists():
        return _load_local(path, cfg)
    if _looks_local(cfg.dataset_name):
        raise DataError(f"dataset_name={cfg.dataset_name!r}: no such file or directory")
    logger.info("Loading hub dataset %s (config %s, split %s)", cfg.dataset_name, cfg.dataset_config, cfg.dataset_split)
    try:
        return datasets.load_dataset(cfg.dataset_name, cfg.dataset_config, split=cfg.dataset_split)
    except Exception as e:  # hub errors have many types (not found, offline, gated, bad config or split)
        raise DataError(
            f"dataset_name={cfg.dataset_name!r} is not a local file or a built-in name ({', '.join(MATH_FILES)}) "
            f"and could not be loaded from the hub ({type(e).__name__}: {one_line(e)[:300]}); with "
            "HF_HUB_OFFLINE=1 only cached datasets load"
        ) from e



def column_values(ds: Rows | datasets.Dataset, name: str, field_name: str) -> list[Any]:
    """The values of column `name` (the table's own types); DataError naming `field_name` when it is absent."""
    if name not in ds.column_names:
        raise DataError(
            f"column {name!r} ({field_name}) is not in the dataset; its columns are {ds.column_names}. "
            f"Set {field_name} to one of them."
        )
    if isinstance(ds, Rows):
        return [row.get(name) for row in ds]
    if isinstance(ds.features[name], datasets.Value):
        return ds.with_format("arrow")[name].to_pylist()  # fast path: plain arrow values
    return list(ds[name])  # decoded by the feature (a JSON column of mixed types, nested values)


def in_memory_table(data: Any) -> Rows | datasets.Dataset:
    """A list of dicts, a pandas DataFrame or a datasets.Dataset as a raw table."""
    if isinstance(data, datasets.Dataset):
        return data
    if type(data).__name__ == "DataFrame" and hasattr(data, "to_dict"):
        return Rows(data.to_dict("records"))
    if isinstance(data, list | tuple):
        for i, row in enumerate(data):
            if not isinstance(row, dict):
                raise DataError(f"row {i} is a {type(row).__name__}; expected a dict of column: value")
        return Rows(data)
    raise DataError(f"cannot read problems from a {type(data).__name__}; give a path, a list of dicts, a pandas "
                    "DataFrame or a datasets.Dataset")
