"""`SamplesFile`: one JSONL samples file of ``antisd eval`` (maths ``samples/*.jsonl``, code ``code/*.samples.jsonl``).

One sample per line, grouped by problem (``problem_id``; code: ``task_id``) and numbered within its
problem (``sample_index`` 0..k-1). The file is read and parsed once (``lines``, via
``antisd.rewards.code.samples.parse_jsonl``); every view of it derives from those lines:

- ``lines``: every non-blank line, parsed or not (what the code scorer reads, with its own skips);
- ``records``: the samples, each once. A line is a sample when it ends with a newline (a last line
  without one is a write a crash cut short), is a JSON object and has the required fields; a line
  that is not, or that repeats a sample already read (same model, benchmark, problem and index), is
  skipped, counted and logged;
- ``finished(k)``: the problems with exactly the samples 0..k-1, each's k records in index order.

Crash safety (docs/reliability.md): ``append`` writes whole lines and fsyncs, so a crash leaves a
prefix of the lines, perhaps a torn last one; ``resume(k)`` then keeps the finished problems only,
rewriting the file atomically (``antisd.files.atomic_write``) when anything else is in it, so that an
unfinished problem is drawn again whole; ``clean_leftovers`` removes the temporary files of a rewrite
a crash interrupted (the file itself is whole).
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

from antisd.evaluate.benchmarks import EvalError
from antisd.files import atomic_write, leftovers
from antisd.rewards.code.samples import SampleLine, parse_line

logger = logging.getLogger("antisd.evaluate")  # one logger name for every submodule of the package

MATH_FIELDS = ("problem_id", "sample_index", "correct")  # the fields a maths sample needs
CODE_FIELDS = ("task_id", "sample_index")  # and a code sample


def jsonl(records: Iterable[Mapping[str, Any]]) -> str:
    """`records` as JSONL text: one ``json.dumps(record, ensure_ascii=False)`` line each."""
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


def split_lines(text: str) -> list[str]:
    """The lines of JSONL `text` (which ends with a newline), each with its newline, as a read of the file gives
    them: a text-mode read breaks lines at "\\n" and "\\r", and ``json.dumps`` escapes "\\r"."""
    return [line + "\n" for line in text.split("\n")[:-1]]


def index_of(record: Mapping[str, Any]) -> int | None:
    """A record's ``sample_index`` as an int, or None when it has none that reads as one."""
    value = record.get("sample_index")
    if isinstance(value, bool):
        return None
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def finished_groups(records: Iterable[Mapping[str, Any]], k: int,
                    group: str = "problem_id") -> dict[str, list[Mapping[str, Any]]]:
    """Problem id (the `group` field) -> its k records in sample order, for the problems with exactly the samples
    0..k-1 (first seen first)."""
    by_problem: dict[str, dict[int, Mapping[str, Any]]] = defaultdict(dict)
    for record in records:
        index = index_of(record)
        by_problem[str(record.get(group))][-1 if index is None else index] = record
    return {pid: [s[i] for i in range(k)] for pid, s in by_problem.items() if set(s) == set(range(k))}


class SamplesFile:
    """One samples file, read once (module docstring). `group`: the problem id field (``problem_id``, code:
    ``task_id``); `required`: the fields a sample must have; `noun`: what a group is called in log lines."""

    def __init__(self, path: str | os.PathLike, *, group: str = "problem_id", required: Collection[str] = MATH_FIELDS,
                 noun: str = "problem") -> None:
        self.path = Path(path)
        self.group, self.required, self.noun = group, tuple(required), noun
        self._lines: list[SampleLine] | None = None
        self._n_lines = 0  # physical lines, blank ones included (the number of the next appended line - 1)
        self._terminated = True  # the file ends with a newline (or is empty)
        self._scan: tuple[list[dict[str, Any]], int] | None = None

    @classmethod
    def code(cls, path: str | os.PathLike) -> SamplesFile:
        """A code samples file (EvalPlus's format plus ``sample_index``: groups are ``task_id``s)."""
        return cls(path, group="task_id", required=CODE_FIELDS, noun="task")

    def lines(self) -> list[SampleLine]:
        """Every non-blank line, parsed; [] when the file does not exist. EvalError when it cannot be read."""
        if self._lines is None:
            self._lines, self._n_lines, self._terminated = [], 0, True
            if self.path.exists():
                self._read()
        return self._lines

    def _read(self) -> None:
        assert self._lines is not None
        try:
            with open(self.path, encoding="utf-8") as f:
                for number, text in enumerate(f, start=1):
                    self._n_lines, self._terminated = number, text.endswith("\n")
                    if text.strip():
                        self._lines.append(parse_line(number, text))
        except (OSError, UnicodeDecodeError) as e:
            self._lines = None
            raise EvalError(f"samples file {str(self.path)!r} cannot be read: {e}") from None

    def _is_sample(self, line: SampleLine) -> bool:
        return line.terminated and isinstance(line.value, dict) and all(f in line.value for f in self.required)

    def scan(self) -> tuple[list[dict[str, Any]], int]:
        """(the samples, each once; the number of lines skipped: unreadable ones and repeats), logged once."""
        if self._scan is not None:
            return self._scan
        records: list[dict[str, Any]] = []
        first: dict[tuple[str, ...], int] = {}
        duplicates: list[str] = []
        bad = 0
        for line in self.lines():
            if not self._is_sample(line):
                bad += 1
                continue
            record = line.value
            key = (str(record.get("model")), str(record.get("benchmark")), str(record[self.group]),
                   str(record["sample_index"]))
            if key in first:  # a second copy is not a second sample
                duplicates.append(f"line {line.number} ({self.noun} {key[2]} sample {key[3]}, first on line "
                                  f"{first[key]})")
                continue
            first[key] = line.number
            records.append(record)
        if bad:
            logger.warning("%s: skipped %d unreadable line(s) (an interrupted write?)", self.path, bad)
        if duplicates:
            logger.warning("%s: skipped %d duplicate line(s), each a sample already read: %s%s", self.path,
                           len(duplicates), ", ".join(duplicates[:5]), " ..." if len(duplicates) > 5 else "")
        self._scan = (records, bad + len(duplicates))
        return self._scan

    def records(self) -> list[dict[str, Any]]:
        """The samples, each once (module docstring)."""
        return self.scan()[0]

    def finished(self, k: int) -> dict[str, list[Mapping[str, Any]]]:
        """Problem id -> its k samples in index order, for the problems with exactly the samples 0..k-1."""
        return finished_groups(self.records(), k, self.group)

    def resume(self, k: int) -> set[str]:
        """The finished problems' ids; first rewrites the file without anything else (unfinished problems,
        skipped lines, a last line without its newline), logging what it drops."""
        records, skipped = self.scan()
        complete = self.finished(k)
        kept = [r for rows in complete.values() for r in rows]
        if skipped or len(kept) != len(records) or not self._terminated:
            logger.info("%s: dropping %d sample(s) of unfinished %ss and %d broken line(s)", self.path,
                        len(records) - len(kept), self.noun, skipped)
            self.rewrite(kept)
        return set(complete)

    def append(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Append `records` (one JSON line each) and fsync. A crash part-way leaves a prefix of the lines, perhaps
        a torn last one, which ``records`` skips and ``resume`` drops."""
        if self._lines is not None and not self._terminated:
            raise ValueError(f"{self.path} ends in a line without its newline; resume() or rewrite() it before "
                             "appending")
        text = jsonl(records)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if self._lines is not None:  # keep the parsed lines equal to what a new read would give
            for text_line in split_lines(text):
                self._n_lines += 1
                self._lines.append(parse_line(self._n_lines, text_line))
            self._scan = None

    def rewrite(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Replace the file by `records` atomically."""
        text = jsonl(records)
        atomic_write(self.path, text)
        self._lines = [parse_line(n, line) for n, line in enumerate(split_lines(text), start=1)]
        self._n_lines, self._terminated, self._scan = len(self._lines), True, None

    def clean_leftovers(self) -> None:
        """Remove the temporary files of rewrites that a crash interrupted."""
        for leftover in leftovers(self.path):
            leftover.unlink(missing_ok=True)
