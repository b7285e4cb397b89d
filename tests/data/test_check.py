"""antisd.data.check: `antisd data check` findings and exit codes, `antisd data convert-verl`, and the
real-gold check of the shipped benchmark files (the figures in docs/evaluation.md)."""

from __future__ import annotations

import json

import pytest

from antisd.cli.main import main
from antisd.data.check import FINDINGS, check_file

ROWS = [
    {"id": "ok", "problem": "What is 1 + 1?", "answer": "2"},
    {"id": "empty", "problem": "What is 2 + 2?", "answer": ""},
    {"id": "null", "problem": "What is 3 + 3?", "answer": None},
    {"id": "ok", "problem": "Another problem", "answer": "5"},  # the id again
    {"id": "again", "problem": "What is 1 + 1?", "answer": "2"},  # the problem text again
    {"id": "huge", "problem": "Long answer?", "answer": "9" * 5000},
    {"id": "bad-gold", "problem": "Which matrix?", "answer": "\\begin{pmatrix} 1 &"},
    {"id": "string-gold", "problem": "Which call?", "answer": "np.arcsin(10/13)"},
    {"id": "list", "problem": "Which?", "answer": [1, 2]},
]


def test_check_finds_each_kind_of_bad_row(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    report = check_file(str(path))
    assert report.n_rows == len(ROWS) and set(report.found) == set(FINDINGS)
    assert report.found == {"empty": ["empty", "null", "list"], "duplicate_id": ["ok"], "duplicate_problem": ["again"],
                            "huge": ["huge"], "unparseable": ["bad-gold", "string-gold"], "self_check": []}
    assert not report.clean


def test_cli_exit_codes_table_and_json(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in ROWS[:3]), encoding="utf-8")
    out = tmp_path / "findings.json"
    assert main(["data", "check", str(bad), "--json", str(out)]) == 1
    text = capsys.readouterr().out
    assert "| empty | 2 | empty, null |" in text and "problems found" in text
    assert json.loads(out.read_text())["counts"]["empty"] == 2
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"question": "1 + 1?", "final": 2}) + "\n", encoding="utf-8")
    assert main(["data", "check", str(good), "--problem_column", "question", "--answer_column", "final"]) == 0
    assert "no problems found" in capsys.readouterr().out
    (tmp_path / "broken.jsonl").write_text('{"problem": "p", "answer": "1"}\n{"problem": ', encoding="utf-8")
    assert main(["data", "check", str(tmp_path / "broken.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("antisd data: error: ") and "line 2 is not valid JSON" in err and err.count("\n") == 1


def test_convert_verl_command(tmp_path, capsys):
    from antisd.data.shipped import DAPO_PREFIX, DAPO_SUFFIX

    row = {"prompt": [{"role": "user", "content": DAPO_PREFIX + "Compute $2^5$." + DAPO_SUFFIX}],
           "reward_model": {"ground_truth": "32"}}
    src = tmp_path / "verl.jsonl"
    src.write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n", encoding="utf-8")
    assert main(["data", "convert-verl", str(src), str(tmp_path / "flat.jsonl")]) == 0
    assert json.loads(capsys.readouterr().out) == {"rows": 2, "problems": 1, "repeated": 1, "conflicting": 0}
    assert main(["data", "check", str(tmp_path / "flat.jsonl")]) == 0


# The real-gold check of the shipped evaluation files (docs/evaluation.md, "Reference answers"):
# only MinervaMath has gold answers math-verify cannot parse.
SHIPPED_FINDINGS = {"aime2024": {}, "aime2025": {}, "aime2026": {}, "hmmt_feb2025": {}, "math500": {},
                    "gsm8k_test": {},
                    "minerva_math": {"unparseable": ["minerva-005", "minerva-027", "minerva-261", "minerva-269"]}}


@pytest.mark.parametrize("name", sorted(SHIPPED_FINDINGS))
def test_shipped_benchmark_golds(name):
    report = check_file(name)
    assert {k: v for k, v in report.found.items() if v} == SHIPPED_FINDINGS[name]
