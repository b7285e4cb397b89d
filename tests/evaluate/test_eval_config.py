"""antisd.evaluate.config: EvalConfig's checks and the ``antisd eval`` command line."""

from __future__ import annotations

import dataclasses
import os

import pytest

import antisd.evaluate as ev
from antisd.evaluate import EvalConfig, main


def test_config_checks_fail_before_any_model_loads():
    for kwargs, words in [({"models": []}, "models is empty"), ({"temperature": -1}, "temperature"),
                          ({"top_p": 0}, "top_p"), ({"limit": 0}, "limit"), ({"benchmarks": ["nope"]}, "presets"),
                          ({"models": ["a/x", "b/x"]}, "LABEL=PATH"), ({"backend": "tpu"}, "backend")]:
        with pytest.raises(ValueError, match=words):
            EvalConfig(**{"models": ["m"], "benchmarks": ["aime24"], **kwargs})
    assert ev.model_label("runs/grpo/checkpoint-200") == ("grpo_checkpoint-200", "runs/grpo/checkpoint-200")
    assert ev.model_label("base=Qwen/Qwen3-8B") == ("base", "Qwen/Qwen3-8B")
    assert ev.model_label("Qwen/Qwen3-8B")[0] == "Qwen3-8B"


def test_cli_help_flags_config_and_errors(tiny_model_path, tmp_path, capsys):
    help_text = ev.build_parser().format_help()
    for f in dataclasses.fields(EvalConfig):
        assert f"--{f.name}" in help_text
    config = tmp_path / "eval.yaml"
    config.write_text(f"models: {tiny_model_path}\nmax_new_tokens: 50\ntemperature: 1.0\n")
    cfg = ev.parse_args(["--config", str(config), "--benchmark", "aime24", "-k", "2", "--max-new-tokens", "3",
                         "--limit", "none", "--chat_template_kwargs", '{"enable_thinking": false}', "--overwrite"])
    assert (cfg.models, cfg.n_samples, cfg.max_new_tokens, cfg.temperature, cfg.limit, cfg.overwrite) == (
        [str(tiny_model_path)], 2, 3, 1.0, None, True)
    assert cfg.chat_template_kwargs == {"enable_thinking": False}
    assert main(["--models", "m", "--benchmarks", "nope"]) == 2
    assert "presets" in capsys.readouterr().err


@pytest.mark.parametrize("text, expected", [
    ("temprature: 0.5\n", "unknown key 'temprature' (in "),
    ("temprature: 0.5\n", "(did you mean temperature?); see antisd eval --help"),
    ("top_k: many\n", "top_k='many' (in "),
    ("backend: tpu\n", "choose one of ['auto', 'vllm', 'transformers']"),
    ("limit: 0\n", "limit=0 must be >= 1"),
])
def test_bad_config_files_give_one_line_errors(tmp_path, capsys, text, expected):
    config = tmp_path / "eval.yaml"
    config.write_text("models: m\nbenchmarks: aime24\n" + text)
    assert main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("antisd eval: error: ") and err.count("\n") == 1 and expected in err


def test_config_file_values_and_env(tiny_model_path, tmp_path, monkeypatch):
    monkeypatch.setenv("ANTISD_EVAL_TEST", "before")  # restored after the test
    config = tmp_path / "eval.yaml"
    m = str(tiny_model_path)
    config.write_text(f"version: 1\nmodels: [a={m}, b={m}]\nbenchmarks: aime24\nlimit: null\nplot: off\n"
                      "system_prompt: none\nenv:\n  ANTISD_EVAL_TEST: 7\n")
    cfg = ev.parse_args(["--config", str(config), "--show-progress", "off"])
    assert (cfg.models, cfg.benchmarks, cfg.limit, cfg.plot, cfg.show_progress, cfg.system_prompt) == (
        [f"a={m}", f"b={m}"], ["aime24"], None, False, False, None)
    assert os.environ["ANTISD_EVAL_TEST"] == "7"


def test_models_are_checked_before_anything_is_written(tmp_path, capsys):
    """The command checks every model (antisd.cli.validate.check_model); EvalConfig in Python does not load them."""
    out = tmp_path / "out"
    assert main(["--models", "good=" + str(tmp_path / "missing"), "--benchmarks", "aime24", "--output_dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert "models (good)=" in err and "no such local directory" in err and err.count("\n") == 1
    assert not out.exists()
    assert EvalConfig(models=["no/such-model"], benchmarks=["aime24"]).models == ["no/such-model"]


def test_the_toy_models_budget_gives_a_new_config_the_given_one_is_unchanged():
    """check_models validates a new config with the toy model's response budget; it changes none."""
    from antisd.evaluate.config import check_models
    from antisd.toyworld.defaults import TOY_TRAIN

    cfg = EvalConfig(models=["toyworld"], benchmarks=["aime24"])
    checked = check_models(cfg)
    assert checked.max_new_tokens == TOY_TRAIN["max_completion_length"] and cfg.max_new_tokens == 32768
    kept = EvalConfig(models=["toyworld"], benchmarks=["aime24"], max_new_tokens=12)
    assert check_models(kept) is kept
