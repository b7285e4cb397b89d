"""Crash-safe file writes: a reader sees the old content or the new one, never a half-written file.

Every file antisd rewrites in place (checkpoint state, results and samples files, per-run records, the toy
world's cache entries, the sandbox's expected-output cache) goes through ``atomic_write``: the content is
written to a hidden temporary file in the same folder (``.<name>.tmp-<pid>``), flushed and fsynced, renamed
over the target (atomic on POSIX), and the folder is fsynced so that the rename itself survives a power loss.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

TMP_INFIX = ".tmp-"  # temporary names are ``.<name>.tmp-<pid>``; ``leftovers`` finds those of dead writers


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a folder (or file), so that a rename into it is durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` atomically; returns the path."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}{TMP_INFIX}{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 1, **dumps: Any) -> Path:
    """``atomic_write`` of ``json.dumps(obj, indent=indent, **dumps)``."""
    return atomic_write(path, json.dumps(obj, indent=indent, **dumps))


def leftovers(path: str | os.PathLike) -> list[Path]:
    """The temporary files that writers of ``path`` left when they died before their rename."""
    path = Path(path)
    return sorted(path.parent.glob(f".{path.name}{TMP_INFIX}*")) if path.parent.is_dir() else []
