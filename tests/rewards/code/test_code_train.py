"""`antisd train` on code (through the CLI, the tiny model on CPU): the built-in mbpp_train with GRPO, SD and
AntiSD, a user JSONL with both kinds of tests, the reward choice, bad inputs (one line, exit code 2, nothing
written) and the code probe's recipe."""

from __future__ import annotations

import json
import logging

import pytest
import yaml

from antisd.cli.main import main, parse_train_args
from antisd.rewards import CodeReward

SQUARE = "def square(x):\n    return x * x\n"


def train_argv(model, data, out, method="antisd", *extra):
    return ["train", "--model_name_or_path", str(model), "--dtype", "float32", "--dataset_name", str(data),
            "--method", method, "--output_dir", str(out), "--bf16", "false", "--report_to", "none",
            "--per_device_train_batch_size", "8", "--num_generations", "4", "--max_completion_length", "12",
            "--save_strategy", "no", "--logging_steps", "1", "--disable_tqdm", "true", "--max_steps", "2",
            "--gradient_checkpointing", "false", "--gate_warmup_steps", "1", "--seed", "0", *extra]


def history(out) -> list[dict]:
    return [row for row in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in row]


@pytest.fixture(autouse=True)
def private_code_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTISD_CODE_CACHE", str(tmp_path / "code_cache"))


@pytest.mark.parametrize("method", ["grpo", "sd", "antisd"])
def test_training_on_mbpp_train_through_the_cli(tiny_model_path, tmp_path, caplog, method):
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO):
        assert main(train_argv(tiny_model_path, "mbpp_train", out, method, "--max_samples", "4",
                               "--code_workers", "0")) == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "antisd.trainer.run"]
    reward_line = next(line for line in lines if line.startswith("Reward: "))
    assert reward_line.startswith("Reward: code (auto: mbpp_train is a built-in code dataset): 1.0 when every test "
                                  "passes")
    assert "extraction fenced, sandbox auto" in reward_line
    assert lines.index(reward_line) < min(i for i, line in enumerate(lines) if line.startswith("Loading the model"))
    steps = history(out)
    assert len(steps) == 2 and all(s["code_reward/n_calls"] == 8 for s in steps)
    assert all("rewards/code_reward/mean" in s for s in steps)
    if method != "grpo":  # the tiny model writes no code: no sibling passes, the reference solution is shown
        assert all(s["context/dataset_frac"] == 1.0 and s["context/answer_frac"] == 0.0 for s in steps)
    assert (out / "report.md").exists() and yaml.safe_load((out / "antisd_run.yaml").read_text()).get("method", "antisd") == method


def _user_data(path):
    rows = [{"id": "sq-assert", "problem": "Write square(x).", "tests": ["assert square(3) == 9", "assert square(0) == 0"],
             "solution": SQUARE},
            {"id": "sq-io", "problem": "Write square(x), again.",
             "tests": {"entry_point": "square", "inputs": [[2], [5]], "plus_inputs": [[-3]]}, "solution": SQUARE},
            {"id": "sq-broken", "problem": "Its reference is wrong.", "tests": ["assert square(2) == 5"],
             "solution": SQUARE}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_user_jsonl_with_passing_rollouts_feeds_siblings(tiny_model_path, tmp_path, caplog, monkeypatch):
    """Half the rollouts are swapped for the reference in a fence before scoring, so they pass in the
    sandbox (a pool of 2 workers) and become the teacher's sibling solutions."""
    real = CodeReward.score

    def score(self, completions, specs, ids=None):
        swapped = [f"```python\n{json.loads(s)['reference']}```" if i % 2 == 0 else c
                   for i, (c, s) in enumerate(zip(completions, specs))]
        return real(self, swapped, specs, ids)

    monkeypatch.setattr(CodeReward, "score", score)
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO):
        assert main(train_argv(tiny_model_path, _user_data(tmp_path / "code.jsonl"), out, "antisd", "--reward", "code",
                               "--id_column", "id", "--code_reward_fraction", "true", "--code_workers", "2")) == 0
    text = caplog.text
    assert "Reward: code (reward=code): the share of tests passed" in text
    assert "1 of 3 code tasks are skipped: their reference solution fails their own tests or they have no tests: " \
           "sq-broken (base: fail: test 0 (assert square(2) == 5): assertion failed)" in text
    assert "correct_threshold 0.5 -> 1.0" in text
    for step in history(out):
        assert step["code_reward/accuracy"] == pytest.approx(0.5) and step["code_reward/extracted_frac"] >= 0.5
        assert step["context/sibling_frac"] == 1.0 and step["context/answer_frac"] == 0.0


def test_the_reward_is_inferred_from_the_data(tiny_model_path, tmp_path, caplog):
    from antisd.cli.options import RewardArgs
    from antisd.data.problems import DataConfig
    from antisd.trainer.run import load_training_data

    code = _user_data(tmp_path / "code.jsonl")
    ds, cfg, kind, why = load_training_data(DataConfig(dataset_name=str(code), id_column="id"), RewardArgs())
    assert (kind, why) == ("code", "auto: the data has a 'tests' column") and cfg.system_prompt is None
    assert ds.column_names == ["prompt", "tests", "solution", "problem_id"]
    maths = tmp_path / "maths.jsonl"
    maths.write_text(json.dumps({"problem": "1 + 1?", "answer": "2"}) + "\n", encoding="utf-8")
    _, _, kind, why = load_training_data(DataConfig(dataset_name=str(maths)), RewardArgs())
    assert (kind, why) == ("math", "auto: the data has no 'tests' column")
    _, _, kind, _ = load_training_data(DataConfig(dataset_name=str(code), tests_column="checks", answer_column="id"),
                                       RewardArgs())
    assert kind == "math"  # another tests column named: this file is read as maths (its id as the answer)


def _bad_row_file(path, row):
    path.write_text(json.dumps({"id": "r0", "problem": "p", **row}) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("row, extra, expected", [
    ({"tests": []}, [], "row 0 (id r0): column 'tests' has no tests"),
    ({"tests": "[[1], [2"}, [], "column 'tests' is a string that starts like JSON but is neither JSON"),
    ({"tests": {"entry_point": "f", "inputs": [[1]]}}, [], "EvalPlus-style inputs need a reference solution"),
    ({"tests": {"entry_point": "f", "inputs": [1, 2]}, "solution": "def f(x): return x"}, [],
     "inputs is a list; expected a list of argument lists"),
    ({"tests": ["assert f(1) == 2"], "solution": "def f(x):\n    return x\n"}, [],
     "every code task is unusable (its reference fails its own tests), e.g. r0"),
    ({"tests": ["assert f(1) == 1"]}, ["--reward", "math"], "column 'answer' (answer_column) is not in the dataset"),
    ({"tests": ["assert f(1) == 1"]}, ["--code_sandbox", "ftp://x"], "expected auto, bwrap, none or a Sandbox Fusion URL"),
    ({"tests": ["assert f(1) == 1"]}, ["--reward", "python"], "argument --reward: invalid choice: 'python'"),
])
def test_bad_code_inputs_are_one_line_and_exit_code_2(tiny_model_path, tmp_path, capsys, row, extra, expected):
    out = tmp_path / "out"
    code = main(train_argv(tiny_model_path, _bad_row_file(tmp_path / "bad.jsonl", row), out, "grpo",
                           "--id_column", "id", "--code_workers", "0", *extra))
    err = capsys.readouterr().err
    assert code == 2 and expected in err
    assert len([line for line in err.splitlines() if "antisd train: error:" in line]) == 1
    assert not out.exists()  # nothing written


@pytest.mark.parametrize("method", ["grpo", "sd", "antisd"])
def test_the_code_probe_recipe_validates_and_finds_its_data_offline(tmp_path, monkeypatch, method):
    from antisd.cli.options import RECIPES_DIR
    from antisd.trainer.run import load_training_data

    recipe = RECIPES_DIR / "code" / "qwen3-8b.yaml"
    assert recipe.read_text().startswith("# NEVER TRAINED HERE.")
    monkeypatch.chdir(tmp_path)
    m, d, r, c = parse_train_args(["--config", "recipes/code/qwen3-8b.yaml", "--config", f"recipes/methods/{method}.yaml",
                                   "--output_dir", "out", "--bf16", "false", "--max_samples", "2"])
    assert m.model_name_or_path == "Qwen/Qwen3-8B" and r.reward == "code" and c.method == method
    assert c.context_config.sources == ("sibling", "dataset") and c.max_steps == 200 and c.use_vllm
    ds, cfg, kind, _ = load_training_data(d, r)
    assert kind == "code" and len(ds) == 2 and cfg.system_prompt is None
