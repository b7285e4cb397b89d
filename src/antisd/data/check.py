"""``antisd data``: check a problem file before training, and convert the hub's verl layout.

    antisd data check FILE [--problem_column C] [--answer_column C] [--id_column C] [--json OUT]
    antisd data convert-verl SRC DST     (antisd.data.shipped.convert_verl: DAPO-Math-17k's hub layout)

``check`` reads FILE as ``antisd train`` does (``antisd.data.problems.load_raw``: a path or a built-in
name such as ``dapo_math_17k``) and reports, per finding, the number of rows and the first ids:

    empty              problem or answer missing, empty or wrongly typed; an id missing or not a
                       string/integer (the rows ``antisd train`` refuses)
    duplicate_id       an id already used by an earlier row (refused too)
    duplicate_problem  a problem text repeated (kept; without an id column they share one id)
    huge               an answer longer than MAX_ANSWER_CHARS (never parsed: no reward) or a
                       problem longer than --max_problem_chars
    unparseable        a gold answer math-verify cannot parse (``antisd.rewards.gold_parses``):
                       its rows never earn reward
    self_check         a gold answer that parses but does not verify against itself boxed

Exit code 0 when nothing is found, 1 when something is, 2 when the file cannot be read. Each
distinct answer is verified once, in this process (about 1 ms per answer).
"""

from __future__ import annotations

import dataclasses

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

FINDINGS = ("empty", "duplicate_id", "duplicate_problem", "huge", "unparseable", "self_check")
MAX_PROBLEM_CHARS = 20_000
LISTED = 10


@dataclass
class CheckReport:
    """What ``check_rows`` found: row count and, per finding, the ids (or ``row N``) of its rows."""

    source: str
    n_rows: int
    found: dict[str, list[str]] = field(default_factory=lambda: {name: [] for name in FINDINGS})

    @property
    def clean(self) -> bool:
        return not any(self.found.values())

    def counts(self) -> dict[str, int]:
        return {name: len(ids) for name, ids in self.found.items()}

    def markdown(self) -> str:
        lines = [f"antisd data check: {self.source}: {self.n_rows} rows", "", "| finding | rows | first rows |",
                 "|---|---:|---|"]
        for name, ids in self.found.items():
            shown = ", ".join(ids[:LISTED]) + (f", ... ({len(ids) - LISTED} more)" if len(ids) > LISTED else "")
            lines.append(f"| {name} | {len(ids)} | {shown} |")
        verdict = "no problems found" if self.clean else "problems found (see the table; docs: antisd.data.check)"
        return "\n".join([*lines, "", verdict]) + "\n"


def _gold_findings(answer: str, timeout_s: float) -> str | None:
    """``unparseable`` / ``self_check`` / None for one gold answer (math-verify, in process)."""
    from antisd.rewards import Outcome, check_answer, gold_parses

    if not gold_parses(answer, timeout_s=timeout_s):
        return "unparseable"
    itself = check_answer(f"\\boxed{{{answer}}}", answer, timeout_s=timeout_s)
    return None if itself is Outcome.CORRECT else "self_check"


def check_rows(raw: Any, cfg: Any, *, max_problem_chars: int = MAX_PROBLEM_CHARS, timeout_s: float = 5.0,
               source: str | None = None) -> CheckReport:
    """The findings of a raw table (``antisd.data.problems.load_raw``'s result) under DataConfig `cfg`."""
    from antisd.data.problems import column_values, row_errors
    from antisd.rewards import MAX_ANSWER_CHARS

    problems = column_values(raw, cfg.problem_column, "problem_column")
    answers = column_values(raw, cfg.answer_column, "answer_column")
    ids = column_values(raw, cfg.id_column, "id_column") if cfg.id_column else [None] * len(problems)
    report = CheckReport(source or cfg.dataset_name, len(problems))
    seen_ids: set[str] = set()
    seen_problems: set[str] = set()
    gold: dict[str, str | None] = {}
    for i, (problem, answer, rid) in enumerate(zip(problems, answers, ids)):
        name = f"row {i}" if rid is None else str(rid)
        if row_errors(name, problem, answer, None, rid, cfg):
            report.found["empty"].append(name)
            continue
        if rid is not None:
            report.found["duplicate_id"].extend([name] if str(rid) in seen_ids else [])
            seen_ids.add(str(rid))
        report.found["duplicate_problem"].extend([name] if problem in seen_problems else [])
        seen_problems.add(problem)
        answer = str(answer)
        if len(answer) > MAX_ANSWER_CHARS or len(problem) > max_problem_chars:
            report.found["huge"].append(name)
            continue
        if answer not in gold:
            gold[answer] = _gold_findings(answer, timeout_s)
        if gold[answer] is not None:
            report.found[gold[answer]].append(name)
    return report


def check_file(name: str, *, problem_column: str = "problem", answer_column: str = "answer",
               id_column: str | None = None, max_problem_chars: int = MAX_PROBLEM_CHARS) -> CheckReport:
    """``check_rows`` of a file or built-in name; ``antisd.data.problems.DataError`` when it cannot be read.
    Without `id_column`, an ``id`` column is used when the file has one."""
    from antisd.data.problems import DataConfig, load_raw

    cfg = DataConfig(dataset_name=name, problem_column=problem_column, answer_column=answer_column,
                     solution_column=None, id_column=id_column)
    raw = load_raw(cfg)
    if id_column is None and "id" in raw.column_names:
        cfg = dataclasses.replace(cfg, id_column="id")
    return check_rows(raw, cfg, max_problem_chars=max_problem_chars)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="antisd data", description="Check a problem file before training; convert "
                                "DAPO-Math-17k's hub (verl) layout into a flat problem file.")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = sub.add_parser("check", help="report empty, duplicate, huge and unparseable rows (exit 1 if any)")
    check.add_argument("file", metavar="FILE", help="a .jsonl/.json(.gz)/.parquet/.csv file or a built-in name")
    check.add_argument("--problem_column", "--problem-column", default="problem")
    check.add_argument("--answer_column", "--answer-column", default="answer")
    check.add_argument("--id_column", "--id-column", default=None, help="default: 'id' when the file has it")
    check.add_argument("--max_problem_chars", "--max-problem-chars", type=int, default=MAX_PROBLEM_CHARS,
                       help="a longer problem is reported as huge")
    check.add_argument("--json", default=None, metavar="OUT", help="also write the findings as JSON")
    convert = sub.add_parser("convert-verl", help="flatten and deduplicate a verl-layout file (the hub's "
                             "BytedTsinghua-SIA/DAPO-Math-17k parquet) into id, problem, answer JSONL")
    convert.add_argument("src", metavar="SRC", help="verl-layout .parquet or .jsonl")
    convert.add_argument("dst", metavar="DST", help="flat JSONL to write")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``antisd data ...``. Returns the exit code (see the module docstring)."""
    from antisd.cli.validate import InputError, one_line

    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        if args.action == "convert-verl":
            from antisd.data.shipped import convert_verl

            counts = convert_verl(args.src, args.dst)
            print(json.dumps(counts))
            return 0
        report = check_file(args.file, problem_column=args.problem_column, answer_column=args.answer_column,
                            id_column=args.id_column, max_problem_chars=args.max_problem_chars)
    except (InputError, ValueError) as e:
        print(f"antisd data: error: {one_line(e)}", file=sys.stderr)
        return 2
    print(report.markdown(), end="")
    if args.json:
        Path(args.json).write_text(json.dumps({"source": report.source, "n_rows": report.n_rows,
                                               "counts": report.counts(), "rows": report.found}, indent=2) + "\n")
    return 0 if report.clean else 1
