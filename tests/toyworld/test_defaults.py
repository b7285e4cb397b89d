"""antisd.toyworld.defaults: the built-in default of `antisd train` (recipes/toy/antisd.yaml, the toy world)."""

import json

import pytest
import yaml

from antisd.toyworld.defaults import TOY_RECIPE, TOY_TRAIN, default_train_argv, is_toy_model, model_flag, toy_dataset_file

def test_the_builtin_default_is_the_toy_recipe_file():
    assert TOY_RECIPE.parts[-2:] == ("toy", "antisd.yaml")
    assert default_train_argv() == ["--config", str(TOY_RECIPE)]
    doc = yaml.safe_load(TOY_RECIPE.read_text())
    assert doc.pop("version") == 1 and doc == TOY_TRAIN
    assert (TOY_TRAIN["model_name_or_path"], TOY_TRAIN["dataset_name"], TOY_TRAIN["method"]) == (
        "toyworld", "toyworld", "antisd")
    assert "gate" not in TOY_TRAIN  # the gate follows --method (see the next tests)


def test_the_model_flag_decides_whether_the_toy_defaults_apply():
    assert model_flag([]) is None and model_flag(["--max_steps", "3"]) is None
    assert model_flag(["--model_name_or_path", "a", "--model-name-or-path=b"]) == "b"  # the last one wins, as argparse
    assert model_flag(["--model_name_or_path=toyworld:tiny"]) == "toyworld:tiny"
    assert is_toy_model("toyworld") and is_toy_model("toyworld:tiny") and not is_toy_model("toyworld-like/model")


def test_default_argv_parses_into_the_canonical_config():
    from antisd.cli.main import build_train_args, train_inputs

    model_args, data_cfg, _, config = build_train_args(train_inputs(default_train_argv()))
    assert model_args.model_name_or_path == "toyworld" and data_cfg.dataset_name == "toyworld"
    assert (config.method, config.token_signal, config.gate, config.lambda_max) == ("antisd", "antisd", "teacher_entropy", 0.5)
    assert config.gate_down_ratio == 0.93 and config.composition == "additive"
    assert config.token_term_rollouts == "correct"  # the guard the robustness study chose (docs/benchmarks.md)
    assert config.context_config.template.endswith("feedback : {feedback} .")
    *_, canonical = build_train_args(train_inputs(default_train_argv() + ["--token_term_rollouts", "all"]))
    assert canonical.token_term_rollouts == "all"  # the paper's canonical AntiSD, one flag away


@pytest.mark.parametrize("method, signal, gate, rollouts", [("sd", "sd", "none", "all"),
                                                          ("antisd", "antisd", "teacher_entropy", "correct")])
def test_method_switch_on_the_default_takes_that_methods_gate(method, signal, gate, rollouts):
    """`antisd train --method sd` must be the paper's SD: ungated, on every rollout, not SD behind AntiSD's
    gate or guard."""
    from antisd.cli.main import build_train_args, train_inputs

    *_, config = build_train_args(train_inputs(default_train_argv() + ["--method", method]))
    assert (config.token_signal, config.gate, config.token_term_rollouts) == (signal, gate, rollouts)


def test_toy_dataset_file_is_valid_training_data(tmp_path):
    from antisd.data.problems import DataConfig, load_problems

    path = toy_dataset_file(n=50, seed=0, cache_dir=tmp_path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 50 and {"id", "problem", "answer", "solution"} <= set(rows[0])
    assert toy_dataset_file(n=50, seed=0, cache_dir=tmp_path) == path  # cached
    ds = load_problems(DataConfig(dataset_name=str(path), prompt_format="plain", id_column="id"))
    assert ds[0]["prompt"] == rows[0]["problem"] and ds[0]["solution"] == rows[0]["solution"]


@pytest.mark.slow
def test_toy_main_job_smoke(tmp_path, monkeypatch):
    """`antisd train` on the tiny toy policy: trains, checkpoints, writes the report."""
    from antisd.cli.main import main

    monkeypatch.setenv("ANTISD_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "run"
    rc = main(["train", "--model_name_or_path", "toyworld:tiny", "--max_steps", "2", "--save_steps", "2",
               "--per_device_train_batch_size", "16", "--output_dir", str(out), "--report_to", "none"])
    assert rc == 0
    assert (out / "report.md").exists() and (out / "plots" / "curves.png").exists()
    assert (out / "checkpoint-2" / "antisd_state.json").exists()
    report = (out / "report.md").read_text()
    assert "held-out accuracy, final policy" in report
    guard = ("token term on correct rollouts only" if TOY_TRAIN.get("token_term_rollouts") == "correct"
             else "none (the paper's configuration)")
    assert f"| guards | {guard}" in report  # the report says which configuration ran
