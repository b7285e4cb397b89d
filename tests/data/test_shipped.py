"""antisd.data.shipped: the shipped maths files (counts, checksums, layout) and the verl converter."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from antisd.data import shipped as mathdata
from antisd.data.problems import DataConfig, load_problems


@pytest.mark.parametrize("name", sorted(mathdata.MATH_FILES))
def test_shipped_files_match_their_recorded_counts_and_checksums(name):
    assert mathdata.file_digest(name) == mathdata.MATH_FILES[name]
    rows = mathdata.read_rows(name)
    assert len({r["id"] for r in rows}) == len(rows)
    assert all(isinstance(r["problem"], str) and r["problem"] and isinstance(r["answer"], str) and r["answer"]
               for r in rows)


def test_sources_md_records_every_maths_file():
    text = (mathdata.data_dir() / "SOURCES.md").read_text(encoding="utf-8")
    for name, (rows, sha) in mathdata.MATH_FILES.items():
        line = next(x for x in text.splitlines() if x.startswith(f"| {name}.jsonl |"))
        assert f"| {rows} |" in line and sha in line


def test_unknown_name():
    assert mathdata.builtin_dataset("nope") is None
    with pytest.raises(ValueError, match="no packaged maths data named 'nope'"):
        mathdata.data_path("nope")


def _verl_row(problem: str, answer: str, index: int) -> dict:
    return {"data_source": "math_dapo", "ability": "MATH",
            "prompt": [{"role": "user", "content": mathdata.DAPO_PREFIX + problem + mathdata.DAPO_SUFFIX}],
            "reward_model": {"ground_truth": answer, "style": "rule-lighteval/MATH_v2"},
            "extra_info": {"index": f"uuid-{index}"}}


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_convert_verl_flattens_strips_and_deduplicates(tmp_path, suffix):
    """The hub's DAPO-Math-17k layout: nested prompt, reward_model.ground_truth, repeated rows."""
    rows = [_verl_row("Find $x$ if $x+1=3$.", "2", 0), _verl_row("Compute $2^5$.", "32", 1),
            _verl_row("Find $x$ if $x+1=3$.", "2", 2), _verl_row("Compute $2^5$.", "-1", 3),
            _verl_row("Find $x$ if $x+1=3$.", "2", 4)]
    src = tmp_path / f"dapo{suffix}"
    if suffix == ".parquet":
        pd.DataFrame(rows).to_parquet(src)
    else:
        src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    counts = mathdata.convert_verl(src, tmp_path / "flat.jsonl")
    assert counts == {"rows": 5, "problems": 2, "repeated": 2, "conflicting": 1}
    flat = [json.loads(x) for x in (tmp_path / "flat.jsonl").read_text(encoding="utf-8").splitlines()]
    assert flat == [
        {"id": "dapo17k-00000", "problem": "Find $x$ if $x+1=3$.", "answer": "2", "source": "dapo_math_17k",
         "orig_indices": [0, 2, 4], "other_answers": []},
        {"id": "dapo17k-00001", "problem": "Compute $2^5$.", "answer": "32", "source": "dapo_math_17k",
         "orig_indices": [1, 3], "other_answers": ["-1"]},
    ]
    ds = load_problems(DataConfig(dataset_name=str(tmp_path / "flat.jsonl"), id_column="id"))
    assert ds["problem_id"] == ["dapo17k-00000", "dapo17k-00001"] and ds["answer"] == ["2", "32"]


def test_convert_verl_names_a_bad_row(tmp_path):
    src = tmp_path / "bad.jsonl"
    good = _verl_row("Compute $2^5$.", "32", 0)
    src.write_text(json.dumps(good) + "\n" + json.dumps({**good, "reward_model": {}}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="row 1: 'reward_model.ground_truth' is missing"):
        mathdata.convert_verl(src, tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()


def test_the_generated_arithmetic_files_are_what_the_generator_writes():
    generated = mathdata.arith_rows()
    for name in ("arith_small_train", "arith_small_test"):
        assert mathdata.read_bytes(name) == mathdata.arith_jsonl(generated[name])
    train, test = (generated[n] for n in ("arith_small_train", "arith_small_test"))
    assert (len(train), len(test)) == (143, 64) and not {r["problem"] for r in train} & {r["problem"] for r in test}
    for r in train + test:  # every answer is what the problem asks
        a, op, b = r["problem"].removeprefix("What is ").removesuffix("?").split()
        assert int(r["answer"]) == {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op] >= 0
