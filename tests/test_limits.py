"""The package's size and hygiene limits, checked on every module under src/antisd with ``ast``/``tokenize``:

- no module over ``MAX_MODULE_LINES`` lines, no function (or method) over ``MAX_FUNCTION_LINES`` (from its
  ``def`` to its last line; a nested function counts towards the one around it as well);
- no private name (one leading underscore, not a dunder) imported from another antisd module;
- no comment or docstring that cites an issue or pull-request number ("issue 16", "#24", "PR 3") or a
  GitHub issue/pull URL: say what is meant, or cite the page under docs/ that describes it.

Each check fails listing every offender as ``path:line: what``. The detectors themselves are tested on
small sources below, so that a check cannot pass by finding nothing.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "antisd"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60

# "issue 16", "issues #3", "PR 12", "pull request 7", a bare "#24" (not part of a word, a path, an id such as
# "<id>#2", an HTML entity, or a CSS colour such as "color:#222" or "#000"), and github.com/<owner>/<repo>/issues|pull/<n>.
# Only comments and docstrings are read: string data (pmi/render.py's CSS, log messages) is not a citation.
ISSUE_REF = re.compile(
    r"\b(?:issues?|PRs?|pull requests?)\s*#?\d+"
    r"|(?<![\w<>&:/#.\-])#[1-9]\d*\b(?![\w-])"
    r"|github\.com/[\w.\-]+/[\w.\-]+/(?:issues|pull)/\d+",
    re.IGNORECASE,
)


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def long_functions(tree: ast.AST, limit: int = MAX_FUNCTION_LINES) -> Iterator[tuple[int, str]]:
    """(line, message) for each function or method longer than `limit` lines (its decorators not counted)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > limit:
                yield node.lineno, f"function {node.name}() is {length} lines (limit {limit})"


def private_imports(tree: ast.AST, module: str) -> Iterator[tuple[int, str]]:
    """(line, message) for each private name imported from another antisd module.

    ``from antisd.x import _y`` and ``from . import _y`` count; so does importing a name through a private
    module of another package (``from antisd.x._y import z``) -- a private module is its package's own."""
    package = module.rsplit(".", 1)[0] if "." in module else module
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = module.split(".")
            if not module_is_package(module):
                base = base[:-1]
            base = base[: len(base) - (node.level - 1)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        if source != "antisd" and not source.startswith("antisd."):
            continue
        if source == module:
            continue
        for alias in node.names:
            if is_private(alias.name):
                yield node.lineno, f"imports private name {alias.name} from {source}"
        private_parts = [part for part in source.split(".") if is_private(part)]
        if private_parts and not source.startswith(package + "."):
            yield node.lineno, f"imports from private module {source} of another package"


def module_is_package(module: str) -> bool:
    return (PACKAGE.parent / module.replace(".", "/") / "__init__.py").is_file()


def docstrings(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(first line, text) of the module's, each class's and each function's docstring."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                yield body[0].lineno, body[0].value.value


def comments(source: str) -> Iterator[tuple[int, str]]:
    """(line, text without its leading '#'s) of each comment."""
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            yield token.start[0], token.string.lstrip("#")


def issue_refs(source: str, tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, message) for each comment or docstring line that cites an issue, a PR or a tracker URL."""
    for first, text in docstrings(tree):
        for offset, line in enumerate(text.splitlines()):
            for match in ISSUE_REF.finditer(line):
                yield first + offset, f"docstring cites {match.group(0)!r}"
    for line, text in comments(source):
        for match in ISSUE_REF.finditer(text):
            yield line, f"comment cites {match.group(0)!r}"


def offenders() -> dict[str, list[str]]:
    """Every breach of every limit, by check."""
    found: dict[str, list[str]] = {"size": [], "private": [], "issues": []}
    for path in modules():
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source, filename=str(path))
        n_lines = len(source.splitlines())
        if n_lines > MAX_MODULE_LINES:
            found["size"].append(f"{rel(path)}:1: module is {n_lines} lines (limit {MAX_MODULE_LINES})")
        found["size"] += [f"{rel(path)}:{line}: {what}" for line, what in long_functions(tree)]
        found["private"] += [f"{rel(path)}:{line}: {what}" for line, what in private_imports(tree, module_name(path))]
        found["issues"] += [f"{rel(path)}:{line}: {what}" for line, what in issue_refs(source, tree)]
    return found


@pytest.fixture(scope="module")
def found() -> dict[str, list[str]]:
    assert modules(), f"no modules found under {PACKAGE}"
    return offenders()


def test_module_and_function_sizes(found):
    assert not found["size"], "over the size limits:\n" + "\n".join(found["size"])


def test_no_private_names_imported_across_modules(found):
    assert not found["private"], "private names imported from other modules:\n" + "\n".join(found["private"])


def test_no_issue_numbers_in_comments_or_docstrings(found):
    assert not found["issues"], ("comments/docstrings citing an issue or tracker (say what is meant, or cite "
                                 "docs/):\n" + "\n".join(found["issues"]))


# ---- the detectors, on small sources ---------------------------------------------------------------------


def test_long_functions_counts_from_def_to_last_line():
    short = "def f():\n" + "    x = 1\n" * 59
    long = "def f():\n" + "    x = 1\n" * 60
    assert list(long_functions(ast.parse(short))) == []
    assert list(long_functions(ast.parse(long))) == [(1, "function f() is 61 lines (limit 60)")]
    method = "class C:\n    async def g(self):\n" + "        x = 1\n" * 60
    assert [line for line, _ in long_functions(ast.parse(method))] == [2]


@pytest.mark.parametrize(("source", "module", "expected"), [
    ("from antisd.lm.logprobs import _chunks", "antisd.trainer.core", ["_chunks"]),
    ("from antisd.lm.logprobs import chunks, _helper as helper", "antisd.trainer.core", ["_helper"]),
    ("from .logprobs import _chunks", "antisd.lm.sampling", ["_chunks"]),
    ("from . import _private", "antisd.lm.sampling", ["_private"]),
    ("from antisd.lm.logprobs import __version__, chunks", "antisd.trainer.core", []),
    ("from antisd.lm.logprobs import _self", "antisd.lm.logprobs", []),  # its own name
    ("from torch.nn import _reduction", "antisd.trainer.core", []),  # not an antisd module
    ("from antisd.lm._impl import name", "antisd.trainer.core", ["private module"]),
    ("from antisd.lm._impl import name", "antisd.lm.logprobs", []),  # its package's own private module
])
def test_private_imports_detector(source, module, expected):
    messages = [what for _, what in private_imports(ast.parse(source), module)]
    assert len(messages) == len(expected), messages
    for message, word in zip(messages, expected):
        assert word in message


@pytest.mark.parametrize(("text", "cites"), [
    ("see issue 16 for why", True),
    ("antisd-scaleout (Issue #16)", True),
    ("the fix of #24", True),
    ("(#3)", True),
    ("merged in PR 12", True),
    ("https://github.com/owner/repo/issues/5", True),
    ("https://github.com/owner/repo/pull/7", True),
    ("no issues here", False),
    ("color:#222; outline:1px solid #000", False),
    ("background:#fff", False),
    ("ids are p-<hash>#2, <id>#3", False),
    ("&#39; and page.html#2", False),
    ("https://github.com/containers/bubblewrap", False),
    ("a # in the middle and #tag", False),
    ("round #1-style names like #2a", False),
])
def test_issue_ref_pattern(text, cites):
    assert bool(ISSUE_REF.search(text)) is cites


def test_issue_refs_reads_comments_and_docstrings_only():
    source = ('"""Module (issue 7)."""\n'
              'X = "issue 8 in a plain string is data"\n'
              'def f():\n'
              '    """Docstring line one.\n\n    line three: see #9."""\n'
              '    return 1  # issue 10\n')
    lines = [line for line, _ in issue_refs(source, ast.parse(source))]
    assert lines == [1, 6, 7]
