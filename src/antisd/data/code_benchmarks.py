"""The code benchmarks shipped with antisd: HumanEval+ v0.1.10, MBPP+ v0.2.0, MBPP train split.

Files: ``antisd/resources/data/{humaneval_plus,mbpp_plus,mbpp_train}.jsonl.gz`` (provenance,
checksums of the uncompressed files and the quirks: ``resources/data/SOURCES.md``).

- `read_rows(name)`: the rows as stored (dicts).
- `load_tasks(name)`: `CodeTask` objects ready for the harness:

  * humaneval_plus: reference ``prompt + canonical_solution``; `IOSuite` base/plus from
    ``base_input``/``plus_input``; oracle ``find_zero`` for HumanEval/32; a bare completion is
    prefixed with the prompt.
  * mbpp_plus: reference ``canonical_solution``; inputs converted to tuples/sets/float/complex by
    EvalPlus's table of task ids (`mbpp_deserialize_inputs`, ported below: 60 tasks, among them the
    5 whose reference raises on plain JSON values: Mbpp/106, 124, 252, 580, 720); Mbpp/793's plus
    set ``{}`` is read as no plus tests; set/not-None comparisons and oracles by entry point, as
    EvalPlus; Mbpp/599's reference needs a long limit (its cases are huge; ``reference_wall_s``
    is 120 s for every task and the candidate limit follows the reference's measured time).
  * mbpp_train: `AssertSuite` base = ``test_list``, plus = ``challenge_test_list`` (8 tasks),
    setup = ``test_setup_code`` (run after the program: tasks 367 and 927 build trees with the
    program's ``Node``), reference = ``code``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
from functools import lru_cache
from importlib import resources
from typing import Any

from antisd.rewards.code.compare import MBPP_NOT_NONE_ENTRY_POINTS, MBPP_ORACLES, MBPP_SET_EQ_ENTRY_POINTS
from antisd.rewards.code.tasks import AssertSuite, CodeTask, IOSuite, assert_targets, first_target

logger = logging.getLogger(__name__)

BENCHMARKS = ("humaneval_plus", "mbpp_plus", "mbpp_train")

EXPECTED_FILES = {
    "humaneval_plus": (164, "b59241df42fe3260e03a0a21e9558a9aae13bd17778525f93337e4f348843d93"),
    "mbpp_plus": (378, "3e8be1688f180a2380daadf9c320fdeeeb88babc9e7cd66d2467faf134be1d82"),
    "mbpp_train": (594, "a4bd0dab3dd589b036ddff1f5b065c3cfc2d5860d52519e737ea052e43045efa"),
}
"""Row count and sha256 of each uncompressed file (as in SOURCES.md)."""


def _check_name(name: str) -> None:
    if name not in BENCHMARKS:
        raise ValueError(f"unknown code benchmark {name!r}; expected one of {', '.join(BENCHMARKS)}")


def read_bytes(name: str) -> bytes:
    """The uncompressed JSONL bytes of benchmark `name`."""
    _check_name(name)
    blob = resources.files("antisd.resources").joinpath("data", f"{name}.jsonl.gz").read_bytes()
    return gzip.decompress(blob)


def file_digest(name: str) -> tuple[int, str]:
    """(row count, sha256 hex) of the uncompressed file."""
    data = read_bytes(name)
    return data.count(b"\n"), hashlib.sha256(data).hexdigest()


@lru_cache(maxsize=None)
def _rows(name: str) -> tuple[str, ...]:
    return tuple(line for line in read_bytes(name).decode("utf-8").split("\n") if line.strip())


def read_rows(name: str) -> list[dict[str, Any]]:
    """Rows of benchmark `name` as stored (fresh dicts on every call)."""
    return [json.loads(line) for line in _rows(name)]


# ------------------------------------------------------------------------------------------
# MBPP+ argument types: EvalPlus's table (evalplus/evalplus evalplus/data/mbpp.py, v0.3.1,
# mbpp_deserialize_inputs; Apache-2.0), keyed by task number.
# ------------------------------------------------------------------------------------------


def _deep_tuple(value: Any) -> Any:
    return tuple(_deep_tuple(item) for item in value) if isinstance(value, list) else value


def _tuples(lst: list) -> tuple:
    return tuple(lst)


_MBPP_CONVERT = {
    **dict.fromkeys([2, 116, 132, 143, 222, 261, 273, 394, 399, 421, 424, 429, 470, 560, 579, 596, 616, 630,
                     726, 740, 744, 809], lambda inp: [_tuples(x) for x in inp]),
    **dict.fromkeys([63, 64, 70, 94, 120, 237, 272, 299, 400, 409, 417, 438, 473, 614, 780],
                    lambda inp: [[_tuples(x) for x in xs] for xs in inp]),
    **dict.fromkeys([75, 413, 444, 753], lambda inp: [[_tuples(x) for x in inp[0]], inp[1]]),
    **dict.fromkeys([106, 750], lambda inp: [inp[0], _tuples(inp[1])]),
    115: lambda inp: [[set(item) if isinstance(item, list) and len(item) else {} for item in inp[0]]],
    124: lambda inp: (float(inp[0]), complex(inp[1])),
    **dict.fromkeys([250, 405, 446, 617, 720, 763, 808], lambda inp: [_tuples(inp[0]), inp[1]]),
    **dict.fromkeys([259, 401, 445], lambda inp: [_tuples([_tuples(x) for x in xs]) for xs in inp]),
    278: lambda inp: [_tuples([_tuples(i) if isinstance(i, list) else i for i in inp[0]])],
    307: lambda inp: [_tuples(inp[0]), inp[1], inp[2]],
    722: lambda inp: [{key: _tuples(value) for key, value in inp[0].items()}, *inp[1:]],
    252: lambda inp: [complex(inp[0])],
    **dict.fromkeys([580, 615, 791], _deep_tuple),
}


def mbpp_deserialize_inputs(task_id: str, inputs: list) -> list:
    """EvalPlus's argument conversion for MBPP+ task `task_id` ("Mbpp/N"); other tasks unchanged."""
    number = int(task_id.split("/")[-1])
    convert = _MBPP_CONVERT.get(number)
    if convert is None:
        return list(inputs)
    return [convert(inp) for inp in inputs]


def _inputs(task_id: str, field: str, value: Any) -> tuple[list, ...]:
    if value == {}:  # Mbpp/793: an empty object where a list is expected
        logger.debug("%s: %s is an empty object, read as no inputs", task_id, field)
        return ()
    if not isinstance(value, list) or not all(isinstance(args, list) for args in value):
        raise ValueError(f"{task_id}: {field} must be a list of argument lists, got {type(value).__name__}")
    return tuple(value)


def _humaneval_task(row: dict[str, Any]) -> CodeTask:
    tid = row["task_id"]
    return CodeTask(
        task_id=tid, benchmark="humaneval_plus", prompt=row["prompt"], entry_point=row["entry_point"],
        reference=row["prompt"] + row["canonical_solution"],
        base=IOSuite(_inputs(tid, "base_input", row["base_input"])),
        plus=IOSuite(_inputs(tid, "plus_input", row["plus_input"])),
        atol=float(row["atol"]), completion_prefix=row["prompt"],
        oracle="find_zero" if row["entry_point"] == "find_zero" else None,
    )


def _mbpp_plus_task(row: dict[str, Any]) -> CodeTask:
    tid, entry = row["task_id"], row["entry_point"]
    base = mbpp_deserialize_inputs(tid, list(_inputs(tid, "base_input", row["base_input"])))
    plus = mbpp_deserialize_inputs(tid, list(_inputs(tid, "plus_input", row["plus_input"])))
    oracle = entry if entry in MBPP_ORACLES else ("set_eq" if entry in MBPP_SET_EQ_ENTRY_POINTS else None)
    return CodeTask(
        task_id=tid, benchmark="mbpp_plus", prompt=row["prompt"], entry_point=entry,
        reference=row["canonical_solution"], base=IOSuite(tuple(base)), plus=IOSuite(tuple(plus)),
        atol=float(row["atol"]), completion_prefix=row["prompt"], oracle=oracle,
        not_none=entry in MBPP_NOT_NONE_ENTRY_POINTS, meta={"assertion": row["assertion"]},
    )


def _mbpp_train_task(row: dict[str, Any]) -> CodeTask:
    tests = list(row["test_list"])
    challenge = list(row.get("challenge_test_list") or [])
    targets = assert_targets(tests + challenge, row["code"])
    return CodeTask(
        task_id=str(row["id"]), benchmark="mbpp_train", prompt=row["text"],
        entry_point=first_target(tests, targets),
        reference=row["code"], setup_code=row["test_setup_code"] or "",
        base=AssertSuite(tuple(tests), targets), plus=AssertSuite(tuple(challenge), targets) if challenge else None,
        meta={"mbpp_task_id": row["task_id"]},
    )


_BUILDERS = {"humaneval_plus": _humaneval_task, "mbpp_plus": _mbpp_plus_task, "mbpp_train": _mbpp_train_task}


def load_tasks(name: str) -> list[CodeTask]:
    """`CodeTask`s of benchmark `name` (see the module docstring), in file order."""
    _check_name(name)
    tasks = []
    for index, row in enumerate(read_rows(name)):
        try:
            tasks.append(_BUILDERS[name](row))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{name} row {index} (id {row.get('id')!r}): {exc}") from exc
    return tasks


def normalise_text(text: str) -> str:
    """Lower-cased, whitespace collapsed (the overlap rule of SOURCES.md)."""
    return " ".join(text.lower().split())


def mbpp_plus_description(prompt: str) -> str:
    """The task text of an MBPP+ prompt: the docstring text before the example ``assert``."""
    body = prompt.strip().strip('"').strip()
    return body.split("\nassert", 1)[0].strip()
