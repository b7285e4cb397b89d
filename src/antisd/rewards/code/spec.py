"""Code tasks from table cells (pure: no I/O, no ``datasets``): a tests cell and a reference solution
become one canonical JSON spec (``parse_tests``), and a spec becomes a ``CodeTask`` (``task_from_spec``).

Tests cells, the two shapes users have:

- assertions (MBPP's ``test_list``): a list of ``assert`` statements, a string of assert
  statements, or ``{"asserts": [...], "plus_asserts": [...], "setup_code": "..."}``; the reference
  solution is optional (without one the assertions are taken as written);
- EvalPlus inputs: ``{"entry_point": "f", "inputs": [[arg, ...], ...], "plus_inputs": [...],
  "atol": 0}``; the expected outputs are computed once from the reference solution, so one is required;
- either as a JSON string (or a Python literal) in a string cell (CSV or parquet files).

The spec is what ``antisd.data.code_problems`` stores in the trainer's ``tests`` column and what
``antisd.rewards.CodeReward`` reads: format ("asserts" or "io"), the tests, setup code,
reference and completion prefix, as JSON with sorted keys.
"""

from __future__ import annotations

import ast
import json
import math
import textwrap
from typing import Any

from antisd.rewards.code.tasks import AssertSuite, CodeTask, IOSuite, assert_targets, first_target, split_assert

ASSERT_KEYS = ("asserts", "plus_asserts", "setup_code")
IO_KEYS = ("entry_point", "inputs", "plus_inputs", "atol")


def _assert_statements(value: Any, what: str) -> list[str]:
    """A list of assert statements from a list of strings or a string of statements; ValueError otherwise."""
    if isinstance(value, str):
        value = textwrap.dedent(value)
        try:
            module = ast.parse(value)
        except SyntaxError as exc:
            raise ValueError(f"{what} does not parse as Python ({exc.msg}, line {exc.lineno})") from None
        bad = [node.lineno for node in module.body if not isinstance(node, ast.Assert)]
        if bad:
            raise ValueError(f"{what}: line {bad[0]} is not an assert statement")
        return [ast.get_source_segment(value, node) or "" for node in module.body]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{what} is a {type(value).__name__}; expected a list of assert statements (strings)")
    statements = [item.strip() for item in value if item.strip()]
    for number, source in enumerate(statements):
        try:
            split_assert(source, frozenset())
        except ValueError as exc:
            raise ValueError(f"{what} item {number}: {exc}") from None
    return statements


def _argument_lists(value: Any, what: str) -> list[list[Any]]:
    if not isinstance(value, list) or not all(isinstance(args, list) for args in value):
        raise ValueError(f"{what} is a {type(value).__name__}; expected a list of argument lists, e.g. [[1, 2], [3, 4]]")
    return value


def _decode_cell(cell: Any) -> Any:
    """A tests cell as Python data: JSON (or a Python literal) in a string that starts with [ or {."""
    if isinstance(cell, str) and cell.lstrip()[:1] in ("[", "{"):
        try:
            return json.loads(cell)
        except ValueError:
            try:
                return ast.literal_eval(cell.strip())
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                raise ValueError("is a string that starts like JSON but is neither JSON nor a Python literal") from None
    return cell


def _io_spec(cell: dict[str, Any], reference: str | None) -> dict[str, Any]:
    entry = cell.get("entry_point")
    if not isinstance(entry, str) or not entry.isidentifier():
        raise ValueError(f"entry_point {entry!r} is not a function name")
    inputs = _argument_lists(cell.get("inputs"), "inputs")
    plus = _argument_lists(cell.get("plus_inputs") or [], "plus_inputs")
    atol = cell.get("atol", 0)
    if isinstance(atol, bool) or not isinstance(atol, int | float) or not 0 <= atol < math.inf:
        raise ValueError(f"atol {atol!r} must be a finite number >= 0")
    if not inputs:
        raise ValueError("has no tests (inputs is empty)")
    if reference is None:
        raise ValueError("EvalPlus-style inputs need a reference solution (the solution column) to compute the "
                         "expected outputs")
    return {"format": "io", "entry_point": entry, "inputs": inputs, "plus_inputs": plus, "atol": float(atol)}


def parse_tests(cell: Any, reference: str | None, completion_prefix: str = "") -> str:
    """The canonical task spec (a JSON string) of one row's tests cell and reference solution.

    Raises ValueError with a short reason (the caller names the row and the column): no tests,
    a cell of another shape, an assertion that does not parse, inputs without a reference.
    `completion_prefix` is prepended to a raw completion (plain prompts: the problem text).
    """
    if cell is None or (isinstance(cell, float) and math.isnan(cell)) or (isinstance(cell, str) and not cell.strip()):
        raise ValueError("is missing; every task needs tests")
    cell = _decode_cell(cell)
    if isinstance(cell, dict) and "entry_point" in cell:
        unknown = sorted(set(cell) - set(IO_KEYS))
        if unknown:
            raise ValueError(f"has unknown key(s) {unknown}; EvalPlus-style tests take {list(IO_KEYS)}")
        spec = _io_spec(cell, reference)
    else:
        if isinstance(cell, dict):
            unknown = sorted(set(cell) - set(ASSERT_KEYS))
            if unknown:
                raise ValueError(f"has unknown key(s) {unknown}; expected {list(ASSERT_KEYS)} or {list(IO_KEYS)}")
            asserts, plus, setup = cell.get("asserts"), cell.get("plus_asserts") or [], cell.get("setup_code") or ""
        else:
            asserts, plus, setup = cell, [], ""
        if not isinstance(setup, str):
            raise ValueError(f"setup_code is a {type(setup).__name__}; expected Python source")
        spec = {"format": "asserts", "asserts": _assert_statements(asserts, "asserts"),
                "plus_asserts": _assert_statements(plus, "plus_asserts"), "setup_code": setup}
        if not spec["asserts"]:
            raise ValueError("has no tests (no assert statement)")
    spec.update(reference=reference or "", completion_prefix=completion_prefix)
    return json.dumps(spec, ensure_ascii=False, sort_keys=True)


def task_from_spec(spec: str | dict[str, Any], task_id: str) -> CodeTask:
    """The `CodeTask` of a canonical spec (``parse_tests``); `task_id` names it in messages."""
    data = json.loads(spec) if isinstance(spec, str) else spec
    reference = data.get("reference") or ""
    prefix = data.get("completion_prefix") or ""
    if data["format"] == "io":
        plus = tuple(data["plus_inputs"])
        return CodeTask(task_id=task_id, benchmark="user", prompt="", entry_point=data["entry_point"],
                        reference=reference, base=IOSuite(tuple(data["inputs"])), plus=IOSuite(plus) if plus else None,
                        atol=float(data["atol"]), completion_prefix=prefix)
    asserts, plus = list(data["asserts"]), list(data["plus_asserts"])
    try:
        ast.parse(reference)
        parsed_reference = reference or None
    except SyntaxError:  # found by CodeReward.prepare (the reference fails its tests)
        parsed_reference = None
    targets = assert_targets(asserts + plus, parsed_reference)
    return CodeTask(task_id=task_id, benchmark="user", prompt="", entry_point=first_target(asserts, targets),
                    reference=reference, setup_code=data.get("setup_code") or "",
                    base=AssertSuite(tuple(asserts), targets),
                    plus=AssertSuite(tuple(plus), targets) if plus else None, completion_prefix=prefix)
