"""antisd.cli.main: the subcommands, one-line errors with exit code 2, the recipes, antisd report.
(Parsing and merging configs: test_config.py; the training run: test_train.py.)"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest
import yaml

from antisd.toyworld import defaults as builtin

from antisd.cli import main as cli
from antisd.cli.main import list_recipes, load_recipe, main, parse_train_args

from config_helpers import CPU, base_yaml, write_yaml  # noqa: F401 - base_yaml is a fixture

RECIPES = cli.RECIPES_DIR
MODELS, METHODS = list_recipes()


def run_main(argv, capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


# ---------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("extra, expected", [
    ({"lerning_rate": 1e-6}, "unknown key 'lerning_rate' (in "),
    ({"lerning_rate": 1e-6}, "did you mean learning_rate?"),
    ({"method": "bogus"}, "method='bogus' (in "),
    ({"method": "bogus"}, "choose one of ['grpo', 'sd', 'antisd']"),
    ({"gate": "bogus"}, "gate='bogus' is not valid; choose one of ['none', 'student_perplexity', 'teacher_entropy']"),
    ({"max_steps": "ten"}, "max_steps='ten'"),
    ({"max_steps": 1.5}, "max_steps=1.5"),
    ({"bf16": "maybe"}, "bf16='maybe'"),
    ({"prompt_format": "html"}, "prompt_format='html'"),
    ({"dtype": "fp8"}, "dtype='fp8'"),
    ({"gate_down_ratio": 1.2}, "gate_down_ratio=1.2 must be in (0, gate_up_ratio=1.0]"),
    ({"version": 2}, "has version: 2"),
])
def test_bad_yaml_gives_one_line_error_and_exit_2(tmp_path, base_yaml, capsys, extra, expected):
    bad = write_yaml(tmp_path / "bad.yaml", extra)
    code, err = run_main(["train", "--config", base_yaml, "--config", bad], capsys)
    assert code == 2
    assert err.startswith("antisd train: error: ") and err.count("\n") == 1, err
    assert expected in err
    assert "Traceback" not in err


@pytest.mark.parametrize("args, expected", [
    (["--lerning_rate", "1"], "unknown argument(s) --lerning_rate 1 (did you mean learning_rate?)"),
    (["--method", "bogus"], "argument --method: invalid choice: 'bogus'"),
    (["--max_steps", "x"], "invalid int value: 'x'"),
    (["--bf16", "true"], "(on a machine without a GPU set bf16: false"),
    (["--config"], "--config needs a YAML file"),
    (["--config", "/nonexistent.yaml"], "config file '/nonexistent.yaml' does not exist"),
])
def test_bad_command_line_gives_exit_2(base_yaml, capsys, args, expected):
    argv = ["train", "--config", base_yaml, *args] if args[0] != "--config" else ["train", *args]
    code, err = run_main(argv, capsys)
    assert code == 2 and expected in err and err.count("\n") == 1, err


def test_data_errors_stop_before_the_model_loads(tmp_path, base_yaml, capsys):
    code, err = run_main(["train", "--config", base_yaml], capsys)  # data.jsonl does not exist
    assert code == 2 and "dataset_name='data.jsonl': no such file or directory" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "p", "answer": ""}\n', encoding="utf-8")
    code, err = run_main(["train", "--config", base_yaml, "--dataset_name", str(bad)], capsys)
    assert code == 2 and "row 0: column 'answer' is empty; expected a non-empty final answer" in err


def test_missing_required_fields(tmp_path, capsys):
    cfg = write_yaml(tmp_path / "c.yaml", {"dataset_name": "d.jsonl", "bf16": False})
    code, err = run_main(["train", "--config", cfg], capsys)
    assert code == 2 and "--model_name_or_path" in err


def test_bad_yaml_syntax(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("max_steps: [1,\n", encoding="utf-8")
    code, err = run_main(["train", "--config", str(tmp_path / "bad.yaml")], capsys)
    assert code == 2 and "is not valid YAML" in err


def test_train_help_opens_with_the_antisd_options(capsys):
    from antisd.trainer.config import antisd_field_names

    assert main(["train", "--help"]) == 0
    short = capsys.readouterr().out
    assert short.startswith("usage: antisd train [--config YAML ...] [--recipe MODEL METHOD]")
    assert "toyworld" in short and "dapo_math_17k" in short and "--help-all" in short
    groups = [line for line in short.splitlines() if line and not line.startswith(" ") and line.endswith(":")]
    assert groups[:4] == ["AntiSD method (docs/method.md):", "gate:", "guards:",
                          "privileged context (the teacher's prompt):"]
    assert all(f"--{name}" in short for name in antisd_field_names())  # every AntiSD option, in some section
    assert short.index("--gate_down_ratio") < short.index("\nmodel:\n") < short.index("\nTRL options")
    assert main(["train", "--help-all"]) == 0
    full = capsys.readouterr().out
    assert "--adam_beta1" not in short and len(short.splitlines()) < len(full.splitlines()) / 3
    assert "--adam_beta1" in full and "--gate_down_ratio" in full and "toyworld" in full
    with pytest.raises(SystemExit) as e:
        cli.build_parser().parse_args(["--help"])
    assert e.value.code == 0


def test_recipes_are_package_data_found_from_any_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["recipe", "--dir"]) == 0
    folder = Path(capsys.readouterr().out.strip())
    assert folder == RECIPES and (folder / "toy" / "antisd.yaml").is_file()
    assert folder.parts[-3:] == ("antisd", "resources", "recipes")
    *_, config = parse_train_args(["--config", "recipes/toy/antisd.yaml", "--max_steps", "3"])
    assert config.max_steps == 3 and config.teacher_template.endswith("feedback : {feedback} .")
    (tmp_path / "recipes" / "toy").mkdir(parents=True)  # a local file of that name wins
    write_yaml(tmp_path / "recipes" / "toy" / "antisd.yaml", {"model_name_or_path": "toyworld", "dataset_name": "toyworld",
                                                              "max_steps": 7, "bf16": False})
    *_, config = parse_train_args(["--config", "recipes/toy/antisd.yaml"])
    assert config.max_steps == 7


def test_top_level_usage(capsys):
    assert main([]) == 2
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "recipe" in out
    with pytest.raises(SystemExit) as e:
        main(["bogus"])
    assert e.value.code == 2


# ---------------------------------------------------------------------------------------- hooks


def test_no_config_uses_the_builtin_default(tmp_path, base_yaml, monkeypatch):
    monkeypatch.setattr(builtin, "TOY_RECIPE", Path(base_yaml))
    seen = {}
    monkeypatch.setattr(cli, "run_train", lambda m, d, c, r, **kw: seen.update(m=m, c=c))
    assert main(["train", "--max_steps", "3"]) == 0
    assert seen["m"].model_name_or_path == "some/model" and seen["c"].max_steps == 3  # overrides still win


def _trained_settings(monkeypatch, argv):
    seen = {}
    monkeypatch.setattr(cli, "run_train", lambda m, d, c, r, **kw: seen.update(m=m, d=d, c=c, inputs=kw["run_inputs"]))
    assert main(["train", *argv]) == 0
    return seen


def test_a_real_model_without_config_gets_the_documented_defaults(tmp_path, monkeypatch):
    """The toy world's prompt format, templates and hyper-parameters never reach a user's model."""
    from antisd.trainer.config import AntiSDConfig
    from antisd.method.context import DEFAULT_ANSWER_TEMPLATE, DEFAULT_TEMPLATE
    from antisd.data.problems import DEFAULT_SYSTEM_PROMPT

    seen = _trained_settings(monkeypatch, ["--model_name_or_path", "my/model", "--dataset_name", "my.jsonl",
                                           "--output_dir", str(tmp_path / "out"), *CPU])
    d, c, inputs = seen["d"], seen["c"], seen["inputs"]
    assert (d.prompt_format, d.system_prompt, d.dataset_name) == ("chat", DEFAULT_SYSTEM_PROMPT, "my.jsonl")
    assert (c.teacher_template, c.answer_template, c.solution_sources) == (
        DEFAULT_TEMPLATE, DEFAULT_ANSWER_TEMPLATE, ["sibling", "dataset", "answer"])
    defaults = AntiSDConfig(output_dir=str(tmp_path / "d"), report_to=[], bf16=False)
    for key in ("learning_rate", "max_steps", "num_generations", "max_completion_length", "lr_scheduler_type",
                "temperature", "logging_steps", "method", "gate", "lambda_max"):
        assert getattr(c, key) == getattr(defaults, key), key
    assert set(inputs) == {"model_name_or_path", "dataset_name", "output_dir", "bf16"}  # what antisd_run.yaml records
    help_text = " ".join(cli.train_help().split())  # --help shows exactly these defaults
    assert "the toy world). (default: chat)" in help_text and "(default: {prompt} Here is a reference solution" in help_text


@pytest.mark.parametrize("model", [None, "toyworld", "toyworld:tiny"])
def test_the_toy_model_gets_the_toy_settings(monkeypatch, model):
    from antisd.toyworld.defaults import TOY_TRAIN

    seen = _trained_settings(monkeypatch, ["--model_name_or_path", model] if model else [])
    assert seen["m"].model_name_or_path == (model or "toyworld")
    assert seen["d"].prompt_format == "plain" and seen["c"].teacher_template == TOY_TRAIN["teacher_template"]
    assert seen["c"].max_steps == TOY_TRAIN["max_steps"] and seen["c"].answer_template == "x = {answer}"


def test_no_config_without_the_builtin_default(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(builtin, "TOY_RECIPE", tmp_path / "missing.yaml")  # an install without recipes/
    code, err = run_main(["train"], capsys)
    assert code == 2 and "built-in default" in err and "--config" in err and err.count("\n") == 1


def test_optional_subcommands(monkeypatch, capsys):
    monkeypatch.setitem(cli.OPTIONAL_COMMANDS, "eval", "antisd._no_such_module")
    code, err = run_main(["eval", "--foo"], capsys)
    assert code == 2 and "'antisd eval' is not available" in err
    fake = types.ModuleType("antisd._fake_pmi")
    fake.__spec__ = importlib.machinery.ModuleSpec("antisd._fake_pmi", None)
    fake.main = lambda argv: seen.append(argv)
    seen: list = []
    monkeypatch.setitem(sys.modules, "antisd._fake_pmi", fake)
    monkeypatch.setitem(cli.OPTIONAL_COMMANDS, "pmi", "antisd._fake_pmi")
    assert main(["pmi", "--x", "1"]) == 0 and seen == [["--x", "1"]]


# ---------------------------------------------------------------------------------------- recipes


def test_recipe_inventory():
    assert MODELS == ["olmo-3-7b-instruct", "olmo-3-7b-think", "qwen3-30b-a3b", "qwen3-4b-instruct-2507", "qwen3-8b"]
    assert set(METHODS) == {"grpo", "sd", "antisd", "antisd_rkl", "no_gate", "gate_0.90", "gate_0.95",
                            "multiplicative", "ppl_gate", "continual"}
    for path in RECIPES.glob("*/*.yaml"):
        if path.parent.name in ("models", "methods"):
            assert yaml.safe_load(path.read_text())["version"] == 1, path


def test_model_recipes_share_the_table2_setup():
    table2 = {"max_steps": 200, "learning_rate": 1e-6, "num_generations": 8, "beta": 0.0, "bf16": True,
              "gradient_checkpointing": True, "use_vllm": True, "vllm_mode": "colocate",
              "vllm_max_model_length": 32768, "report_to": ["tensorboard"],
              "dataset_name": "dapo_math_17k"}
    hub = {"qwen3-8b": "Qwen/Qwen3-8B", "qwen3-4b-instruct-2507": "Qwen/Qwen3-4B-Instruct-2507",
           "olmo-3-7b-instruct": "allenai/Olmo-3-7B-Instruct", "olmo-3-7b-think": "allenai/Olmo-3-7B-Think",
           "qwen3-30b-a3b": "Qwen/Qwen3-30B-A3B"}
    first = None
    for model in MODELS:
        data = cli.read_yaml(RECIPES / "models" / f"{model}.yaml")
        assert data["model_name_or_path"] == hub[model]
        for key, value in table2.items():
            assert float(data[key]) == value if key == "learning_rate" else data[key] == value, (model, key)
        # 32 problems x 8 rollouts per step on 8 processes
        assert data["per_device_train_batch_size"] * 8 * data["gradient_accumulation_steps"] == 32 * 8
        assert data["max_completion_length"] < data["vllm_max_model_length"]
        shared = {k: v for k, v in data.items() if not k.startswith("vllm_") and k != "model_name_or_path"}
        first = first or shared
        assert shared == first, model


def test_method_overlays_state_the_method_and_only_what_differs_from_the_defaults():
    """Each overlay names its method; every other key differs from AntiSDConfig's default for that method (the
    canonical values are defined once: 0.93 is in no recipe), and the ablations change one thing each."""
    from antisd.trainer.config import AntiSDConfig

    expected = {"antisd": {}, "antisd_rkl": {"token_signal": "antisd_rkl"}, "no_gate": {"gate": "none"},
                "gate_0.90": {"gate_down_ratio": 0.90}, "gate_0.95": {"gate_down_ratio": 0.95},
                "multiplicative": {"composition": "multiplicative"}, "ppl_gate": {"gate": "student_perplexity"},
                "continual": {"model_name_or_path": "outputs/{model}/grpo", "max_steps": 50,
                              "reset_gate_on_resume": True}, "grpo": {}, "sd": {}}
    assert sorted(expected) == METHODS
    for name, change in expected.items():
        data = cli.read_yaml(RECIPES / "methods" / f"{name}.yaml")
        method = data.pop("method")
        assert data == change, name
        defaults = AntiSDConfig(output_dir="x", bf16=False, report_to=[], method=method)
        assert all(getattr(defaults, k, object()) != v for k, v in data.items()), name
    from antisd.cli.options import field_defaults
    from antisd.trainer.config import antisd_field_names

    antisd_defaults = {k: v for k, v in field_defaults([AntiSDConfig]).items() if k in antisd_field_names()}
    for path in [*RECIPES.glob("methods/*.yaml"), RECIPES / "toy" / "antisd.yaml"]:  # the toy default too
        data = cli.read_yaml(path)
        restated = {k for k, v in data.items() if k != "method" and k in antisd_defaults and v == antisd_defaults[k]}
        assert not restated, (path.name, restated)


@pytest.mark.parametrize("model", MODELS)
def test_every_recipe_combination_validates(model):
    assert importlib.util.find_spec("vllm") is None  # not installed here: use_vllm=True must not import it
    for method in METHODS:
        m, d, r, c = parse_train_args(["--recipe", model, method, *CPU])
        recipe = load_recipe(model, method)
        assert c.use_vllm is True and c.vllm_mode == "colocate"
        assert c.method == recipe["method"] and c.output_dir == f"outputs/{model}/{method}"
        assert d.dataset_name == "dapo_math_17k" and d.id_column == "id"  # shipped with antisd
        assert c.max_steps == (50 if method == "continual" else 200)
        if method == "continual":
            assert m.model_name_or_path == f"outputs/{model}/grpo" and c.reset_gate_on_resume is True
        if method == "grpo":
            assert c.token_signal is None and not c.uses_teacher
    assert "vllm" not in sys.modules


def test_the_model_recipes_find_their_data_offline_from_any_folder(tmp_path, monkeypatch):
    import dataclasses

    from antisd.data.problems import load_problems

    monkeypatch.chdir(tmp_path)
    _, data_cfg, _, _ = parse_train_args(["--recipe", "qwen3-8b", "antisd", *CPU])
    ds = load_problems(dataclasses.replace(data_cfg, max_samples=3))
    assert ds["problem_id"] == ["dapo17k-00000", "dapo17k-00001", "dapo17k-00002"] and ds["answer"][0] == "34"


def test_recipe_command_round_trips(tmp_path, capsys):
    assert main(["recipe", "qwen3-8b", "continual"]) == 0
    text = capsys.readouterr().out
    merged = yaml.safe_load(text)
    assert merged["version"] == 1 and merged["model_name_or_path"] == "outputs/qwen3-8b/grpo"
    (tmp_path / "run.yaml").write_text(text, encoding="utf-8")
    via_file = parse_train_args(["--config", str(tmp_path / "run.yaml"), *CPU])
    via_recipe = parse_train_args(["--recipe", "qwen3-8b", "continual", *CPU])
    for a, b in zip(via_file, via_recipe):
        assert json.dumps(vars(a), default=str, sort_keys=True) == json.dumps(vars(b), default=str, sort_keys=True)
    assert main(["recipe", "--list"]) == 0 and "qwen3-8b" in capsys.readouterr().out
    code, err = run_main(["recipe", "qwen3-8b", "nope"], capsys)
    assert code == 2 and "recipe method 'nope' not found" in err


def test_placeholder_needs_recipe(capsys):
    code, err = run_main(["train", "--config", str(RECIPES / "models" / "qwen3-8b.yaml"),
                          "--config", str(RECIPES / "methods" / "continual.yaml"), *CPU], capsys)
    assert code == 2 and "placeholder" in err


def test_accelerate_config_parses():
    from accelerate.commands.config.config_args import load_config_from_file

    path = RECIPES / "accelerate" / "zero3_8gpu.yaml"
    cfg = load_config_from_file(str(path))
    assert cfg.distributed_type.value == "DEEPSPEED" and cfg.num_processes == 8
    assert cfg.mixed_precision == "bf16" and cfg.deepspeed_config["zero_stage"] == 3


# ---------------------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_run_train_smoke(tiny_model_path, tmp_path, caplog):
    """`antisd train` on the tiny model, 2 GRPO steps: trains, saves the model and the run config."""
    rows = [{"id": f"t{i}", "problem": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(8)]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "out"
    cfg = write_yaml(tmp_path / "run.yaml", {
        "version": 1, "model_name_or_path": str(tiny_model_path), "dtype": "float32",
        "dataset_name": str(tmp_path / "p.jsonl"), "id_column": "id", "method": "grpo",
        "output_dir": str(out), "bf16": False, "gradient_checkpointing": False, "report_to": [],
        "per_device_train_batch_size": 8, "num_generations": 4, "max_completion_length": 8,
        "save_strategy": "no", "logging_steps": 1, "disable_tqdm": True, "seed": 0,
    })
    assert main(["train", "--config", cfg, "--max_steps", "2"]) == 0
    assert (out / "config.json").exists() and (out / "antisd_run.yaml").exists()
    saved = yaml.safe_load((out / "antisd_run.yaml").read_text())
    assert saved["version"] == 1 and saved["method"] == "grpo" and saved["max_steps"] == 2
    assert any("Saved the final model" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------------------------- report


def test_report_command_rewrites_a_runs_report(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    log = [{"step": s, "loss": 0.1, "reward": 0.1 * s} for s in (1, 2, 3)]
    (run / "trainer_state.json").write_text(json.dumps({"global_step": 3, "max_steps": 3, "log_history": log}))
    assert main(["report", str(run), "--title", "my run"]) == 0
    assert capsys.readouterr().out.strip() == str(run / "report.md")
    text = (run / "report.md").read_text()
    assert text.startswith("# my run\n") and "| reward | 0.1 | 0.3 | 0.3 (3) |" in text
    assert (run / "plots" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, err = run_main(["report", str(tmp_path / "nothing")], capsys)
    assert code == 2 and err.startswith("antisd report: error: no trainer_state.json") and err.count("\n") == 1
    main(["--help"])
    assert "report" in capsys.readouterr().out


@pytest.mark.slow
def test_lora_training_from_the_cli_saves_an_adapter(tiny_model_path, tmp_path, caplog):
    """`antisd train --use_peft` (the toy LoRA overlay's flags) trains adapters only and saves them."""
    rows = [{"id": f"t{i}", "problem": f"What is {i} + 1?", "answer": str(i + 1), "solution": f"{i} + 1 = {i + 1}"}
            for i in range(8)]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "out"
    cfg = write_yaml(tmp_path / "run.yaml", {
        "version": 1, "model_name_or_path": str(tiny_model_path), "dtype": "float32",
        "dataset_name": str(tmp_path / "p.jsonl"), "id_column": "id", "method": "antisd",
        "output_dir": str(out), "bf16": False, "report_to": [], "per_device_train_batch_size": 8,
        "num_generations": 4, "max_completion_length": 8, "save_strategy": "no", "logging_steps": 1,
        "disable_tqdm": True, "seed": 0, "gate_warmup_steps": 1,
    })
    assert main(["train", "--config", cfg, "--config", "recipes/toy/lora.yaml", "--max_steps", "2",
                 "--lora_target_modules", "q_proj", "v_proj", "--output_dir", str(out)]) == 0
    assert (out / "adapter_config.json").exists() and not (out / "model.safetensors").exists()
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 16
    assert any(r.getMessage().startswith("LoRA: ") for r in caplog.records)


@pytest.mark.slow
def test_a_nonfinite_stop_is_one_line_and_exit_code_1(tiny_model_path, tmp_path, capsys, monkeypatch):
    from antisd.trainer.core import AntiSDTrainer

    real = AntiSDTrainer._compute_loss
    monkeypatch.setattr(AntiSDTrainer, "_compute_loss", lambda self, m, i: real(self, m, i) * float("nan"))
    rows = [{"id": f"t{i}", "problem": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(8)]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    cfg = write_yaml(tmp_path / "run.yaml", {
        "version": 1, "model_name_or_path": str(tiny_model_path), "dataset_name": str(tmp_path / "p.jsonl"),
        "method": "grpo", "output_dir": str(tmp_path / "out"), "bf16": False, "report_to": [],
        "per_device_train_batch_size": 8, "num_generations": 4, "max_completion_length": 8, "save_strategy": "no",
    })
    assert main(["train", "--config", cfg, "--max_steps", "2"]) == 1
    captured = capsys.readouterr()
    err = [line for line in (captured.err + captured.out).splitlines() if "antisd train: error:" in line]
    assert len(err) == 1 and "loss of step 1 is not finite" in err[0]  # one line (progress bars aside)
