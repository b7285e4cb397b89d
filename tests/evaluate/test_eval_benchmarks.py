"""antisd.evaluate.benchmarks: presets and specs, the data dir, loading real and hub-format files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import antisd.evaluate as ev
from antisd.data.problems import DEFAULT_SYSTEM_PROMPT
from antisd.evaluate import PRESETS, Benchmark, EvalConfig, EvalError, load_benchmark, parse_benchmark, preset_benchmark

from eval_helpers import SHARED, write_jsonl


def test_presets_name_the_paper_benchmarks_with_paper_k():
    assert set(ev.PAPER_BENCHMARKS) <= set(PRESETS)
    assert {n: PRESETS[n].hub.k for n in PRESETS} == {
        "aime24": 32, "aime25": 32, "aime26": 32, "hmmt25": 32, "minerva": 4, "math500": 4, "gsm8k": 4}
    gsm = PRESETS["gsm8k"].hub
    assert (gsm.source, gsm.config, gsm.split, gsm.problem_column, gsm.answer_format) == (
        "openai/gsm8k", "main", "test", "question", "gsm8k")
    assert PRESETS["minerva"].hub.problem_column == "question"


def test_parse_benchmark_specs():
    assert parse_benchmark("aime24") == Benchmark("aime24", "aime2024", id_column="id", k=32)  # the shipped copy
    hub = parse_benchmark("a=HuggingFaceH4/aime_2024?like=aime24")
    assert (hub.source, hub.split, hub.id_column, hub.k) == ("HuggingFaceH4/aime_2024", "train", "id", 32)
    assert parse_benchmark("aime24?k=8").k == 8
    b = parse_benchmark("mine=/x/data.jsonl?problem=question&answer=final&id=uid&solution=&k=2")
    assert b == Benchmark("mine", "/x/data.jsonl", problem_column="question", answer_column="final",
                          id_column="uid", solution_column=None, k=2)
    like = parse_benchmark("g=/tmp/gsm.parquet?like=gsm8k&split=train")
    assert (like.name, like.source, like.answer_format, like.problem_column, like.split) == (
        "g", "/tmp/gsm.parquet", "gsm8k", "question", "train")
    for bad, words in [("nope", "presets"), ("x=/a.jsonl?colour=red", "unknown option"), ("x=", "source"),
                       ("a b=/x.jsonl", "name"), ("aime24?k=0", "positive"), ("x=/a.jsonl?answer_format=yaml", "gsm8k")]:
        with pytest.raises(EvalError, match=words):
            parse_benchmark(bad)


def test_presets_read_the_shipped_copies_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(ev.DATA_DIR_ENV, raising=False)
    bench = preset_benchmark("hmmt25")
    assert (bench.source, bench.id_column, bench.k, bench.split) == ("hmmt_feb2025", "id", 32, "train")
    assert len(load_benchmark(bench)) == 30
    assert preset_benchmark("hmmt25", str(tmp_path)) == bench  # the file is not in data_dir: the shipped copy


def test_presets_read_the_data_dir_when_the_file_is_there(tmp_path, monkeypatch):
    rows = [{"id": "mine-1", "problem": "What is 1 + 1?", "answer": "2"}]
    write_jsonl(tmp_path / "hmmt_feb2025.jsonl", rows)
    local = preset_benchmark("hmmt25", str(tmp_path))
    assert (Path(local.source).name, local.id_column, local.k) == ("hmmt_feb2025.jsonl", "id", 32)
    assert load_benchmark(local)["problem_id"] == ["mine-1"]
    monkeypatch.setenv(ev.DATA_DIR_ENV, str(SHARED))  # the gzipped files are found too
    cfg = EvalConfig(models=["m"], benchmarks=["minerva"])
    assert cfg.data_dir == str(SHARED) and Path(cfg.benchmark_specs()[0].source).name == "minerva_math.jsonl.gz"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_real_benchmark_files_load_with_ids_answers_and_prompts(name):
    from antisd.data.shipped import read_rows

    bench = preset_benchmark(name)
    ds = load_benchmark(bench, limit=3)
    raw = read_rows(PRESETS[name].data)[:3]
    assert ds["problem_id"] == [str(r["id"]) for r in raw]  # the file's id column names the problems
    assert ds["answer"] == [str(r["answer"]) for r in raw]  # answers as shipped (AIME's "025" keeps its zero)
    assert ds["solution"] == [r.get("solution") for r in raw]
    for prompt, r in zip(ds["prompt"], raw):  # chat prompts: the default system message, then the problem as is
        assert [m["role"] for m in prompt] == ["system", "user"] and prompt[1]["content"] == r["problem"]
        assert prompt[0]["content"] == DEFAULT_SYSTEM_PROMPT


def test_hub_formats_load_through_their_preset_columns(tmp_path):
    """Small files in each hub dataset's published format, read with ?like=PRESET."""
    write_jsonl(tmp_path / "gsm8k.jsonl", [
        {"question": "Janet has 3 ducks ...", "answer": "She has 3 + 4 = <<3+4=7>>7.\n#### 7"},
        {"question": "A robe takes ...", "answer": "2 + 1 = 3 bolts\n#### 2,125"}])
    write_jsonl(tmp_path / "minerva.jsonl", [{"question": "Find the diameter ...", "answer": "1.6"}])
    pd.DataFrame({"problem_idx": [1, 2], "problem": ["Find $x$.", "Find $y$."], "answer": [70, 588]}).to_parquet(
        tmp_path / "aime25.parquet")
    pd.DataFrame({"problem": ["Convert ..."], "solution": ["We have $\\boxed{3}$."], "answer": ["3"],
                  "subject": ["Precalculus"], "level": [2], "unique_id": ["test/precalculus/807.json"]}).to_parquet(
        tmp_path / "math500.parquet")
    pd.DataFrame({"id": [60], "problem": ["Every morning Aya ..."], "solution": ["... $\\boxed{204}$"],
                  "answer": ["204"], "url": ["u"], "year": ["2024"]}).to_parquet(tmp_path / "aime24.parquet")
    gsm = load_benchmark(parse_benchmark(f"g={tmp_path / 'gsm8k.jsonl'}?like=gsm8k&split=train"))
    assert gsm["answer"] == ["7", "2,125"] and gsm["solution"][0].endswith("#### 7")
    assert gsm["problem_id"][0].startswith("p-")  # no id column: a hash of the problem text
    mv = load_benchmark(parse_benchmark(f"m={tmp_path / 'minerva.jsonl'}?like=minerva&split=train"))
    assert mv["answer"] == ["1.6"] and mv["solution"] == [None]
    ma = load_benchmark(parse_benchmark(f"a={tmp_path / 'aime25.parquet'}?like=aime25&split=train"))
    assert (ma["problem_id"], ma["answer"]) == (["1", "2"], ["70", "588"])
    m5 = load_benchmark(parse_benchmark(f"m5={tmp_path / 'math500.parquet'}?like=math500&split=train"))
    assert m5["problem_id"] == ["test/precalculus/807.json"]
    a4 = load_benchmark(parse_benchmark(f"a4={tmp_path / 'aime24.parquet'}?like=aime24&split=train"))
    assert (a4["problem_id"], a4["answer"], a4["solution"]) == (["60"], ["204"], ["... $\\boxed{204}$"])
