"""Code tasks and their tests, in the two shapes users have (pure data; no I/O).

- `IOSuite` (EvalPlus style): an entry point called on a list of argument lists; the expected
  outputs are NOT stored: they are computed once by running the task's reference program in the
  sandbox (`antisd.rewards.code.harness`) and compared as EvalPlus does (`antisd.rewards.code.compare`).
- `AssertSuite` (MBPP ``test_list`` style): assertion statements run after the program and the
  task's setup code. The calls of the function(s) under test (`targets`) are evaluated in the
  sandbox; the rest of each assertion is evaluated on the returned plain data in the trusted
  process (or in a separate sandbox run that holds no candidate code): see `split_assert`.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

from antisd.rewards.code.driver.wire import encode

_PLACEHOLDER = "__antisd_v"


@dataclass(frozen=True)
class IOSuite:
    """EvalPlus-style tests: ``entry_point(*args)`` for each args in `inputs` (Python values)."""

    inputs: tuple[list[Any], ...]

    def __len__(self) -> int:
        return len(self.inputs)


@dataclass(frozen=True)
class SplitAssert:
    """One assertion split for the sandbox: `calls` run with the candidate, `check` after.

    check reads the calls' values as ``__antisd_v[j]``. fast: ("eq", j, literal) /
    ("truthy", j) / ("falsy", j) when the check is that simple and runs in the trusted process;
    None when it needs the separate trusted run.
    """

    source: str
    calls: tuple[str, ...]
    check: str
    fast: tuple[Any, ...] | None


@dataclass(frozen=True)
class AssertSuite:
    """Assertion tests (MBPP ``test_list``); `targets` are the names of the functions under test."""

    asserts: tuple[str, ...]
    targets: frozenset[str]

    def __len__(self) -> int:
        return len(self.asserts)

    @cached_property
    def split(self) -> tuple[SplitAssert, ...]:
        return tuple(split_assert(source, self.targets) for source in self.asserts)


Suite = IOSuite | AssertSuite


@dataclass(frozen=True)
class CodeTask:
    """One programming task.

    reference: a complete program that passes (HumanEval+: prompt + canonical_solution).
    completion_prefix: prepended to a bare ``completion`` to make a program (EvalPlus samples).
    plus: the extra (EvalPlus "+") tests; None when the task has none; base+plus verdicts use
    base only then. oracle / not_none / atol: the EvalPlus comparison options (compare.py).
    reference_wall_s: wall-clock limit of the reference run that computes expected outputs.
    """

    task_id: str
    benchmark: str
    prompt: str
    entry_point: str | None
    reference: str
    base: Suite
    plus: Suite | None = None
    atol: float = 0.0
    setup_code: str = ""
    completion_prefix: str = ""
    oracle: str | None = None
    not_none: bool = False
    reference_wall_s: float = 120.0
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def suites(self) -> dict[str, Suite]:
        """{"base": ..., "plus": ...} (plus only when present and non-empty)."""
        out: dict[str, Suite] = {"base": self.base}
        if self.plus is not None and len(self.plus):
            out["plus"] = self.plus
        return out

    def suite_key(self, name: str) -> str:
        """sha256 of everything the expected values of suite `name` depend on (the cache key)."""
        return self._keys[name]

    @cached_property
    def _keys(self) -> dict[str, str]:
        keys = {}
        for name, suite in self.suites().items():
            payload = {"reference": self.reference, "setup": self.setup_code, "entry_point": self.entry_point,
                       "not_none": self.not_none, "kind": type(suite).__name__}
            if isinstance(suite, IOSuite):
                payload["inputs"] = [encode(args) for args in suite.inputs]
            else:
                payload["asserts"] = list(suite.asserts)
                payload["targets"] = sorted(suite.targets)
            blob = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8", "surrogatepass")
            keys[name] = hashlib.sha256(blob).hexdigest()
        return keys


# ------------------------------------------------------------------------------------------
# Assertion splitting
# ------------------------------------------------------------------------------------------


class _CallCollector(ast.NodeTransformer):
    """Replaces the outermost calls of target functions by ``__antisd_v[j]``."""

    def __init__(self, targets: frozenset[str]) -> None:
        self.targets = targets
        self.calls: list[str] = []

    def visit_Call(self, node: ast.Call) -> ast.AST:
        if isinstance(node.func, ast.Name) and node.func.id in self.targets:
            self.calls.append(ast.unparse(node))
            index = ast.Constant(len(self.calls) - 1)
            return ast.copy_location(ast.Subscript(ast.Name(_PLACEHOLDER, ast.Load()), index, ast.Load()), node)
        return self.generic_visit(node)


def _placeholder_index(node: ast.AST) -> int | None:
    if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == _PLACEHOLDER
            and isinstance(node.slice, ast.Constant)):
        return int(node.slice.value)
    return None


def _fast_form(expr: ast.expr) -> tuple[Any, ...] | None:
    if (j := _placeholder_index(expr)) is not None:
        return ("truthy", j)
    if isinstance(expr, ast.UnaryOp) and isinstance(expr.op, ast.Not) and (j := _placeholder_index(expr.operand)) is not None:
        return ("falsy", j)
    if isinstance(expr, ast.Compare) and len(expr.ops) == 1 and isinstance(expr.ops[0], ast.Eq):
        left, right = expr.left, expr.comparators[0]
        for side, other in ((left, right), (right, left)):
            if (j := _placeholder_index(side)) is not None:
                try:
                    return ("eq", j, ast.literal_eval(other))
                except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                    return None
    return None


@lru_cache(maxsize=16384)  # a task's assertions are split once, not once per scored program
def split_assert(source: str, targets: frozenset[str]) -> SplitAssert:
    """Split ``assert <expr>[, msg]`` into the target calls and the check on their values.

    Raises ValueError (naming the source) unless `source` is exactly one assert statement.
    """
    try:
        module = ast.parse(source.strip())
    except SyntaxError as exc:
        raise ValueError(f"assertion {source!r} does not parse: {exc}") from exc
    if len(module.body) != 1 or not isinstance(module.body[0], ast.Assert):
        raise ValueError(f"assertion {source!r} must be exactly one assert statement")
    collector = _CallCollector(targets)
    test = collector.visit(module.body[0].test)
    ast.fix_missing_locations(test)
    return SplitAssert(source=source, calls=tuple(collector.calls), check=ast.unparse(test), fast=_fast_form(test))


def assert_targets(asserts: list[str], reference: str | None) -> frozenset[str]:
    """Functions under test: names called in the asserts that the reference defines at top level;
    without a reference (or when none matches), every called name that is not a builtin."""
    called: set[str] = set()
    for source in asserts:
        for node in ast.walk(ast.parse(source.strip())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                called.add(node.func.id)
    if reference:
        defined = {node.name for node in ast.parse(reference).body
                   if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
        if called & defined:
            return frozenset(called & defined)
    return frozenset(name for name in called if not hasattr(builtins, name))


def first_target(asserts: list[str], targets: frozenset[str]) -> str | None:
    """The first function under test (one of `targets`) called in the asserts: the task's entry point."""
    for source in asserts:
        for node in ast.walk(ast.parse(source.strip())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in targets:
                return node.func.id
    return None
