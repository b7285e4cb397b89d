"""One name for the built-in model everywhere (issue 26, item 1): ``toyworld`` and a path to the shipped toy
folder mean the toy model, with its templates and settings, in ``antisd train``, ``antisd eval --models``,
``antisd pmi`` (``--rollouts`` finds the run's model) and ``AntiSDTrainer(model=...)``; an unknown name fails at
once with one line, and neither a built-in name nor a local path ever reaches the hub."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from antisd.cli import main as cli

from antisd.lm import names as models
from antisd.toyworld.defaults import TOY_TRAIN, toy_dataset_file
from antisd.lm.names import InputError, resolve_model
from antisd.toyworld.base_policy import SHIPPED_DIR, ToyBaseConfig

from config_helpers import CPU

SHIPPED = SHIPPED_DIR / ToyBaseConfig().name  # the default recipe's build, shipped with antisd


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Every test here runs as if there were no network: a call to the hub probe is recorded."""
    calls: list[str] = []
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(models, "network_problem", lambda timeout_s=5.0: calls.append("probe") or
                        "huggingface.co:443: [Errno -2] Name or service not known")
    return calls


@pytest.fixture(scope="module")
def toy_problems(tmp_path_factory) -> Path:
    return toy_dataset_file(n=4, seed=0, cache_dir=tmp_path_factory.mktemp("toydata"))


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ---------------------------------------------------------------------------------------- the resolver


def test_toyworld_and_the_shipped_folder_are_the_same_toy_model(no_network):
    by_name = resolve_model("toyworld")
    by_path = resolve_model(str(SHIPPED))
    assert by_name.path == by_path.path == str(SHIPPED.resolve())
    assert by_name.toy and by_path.toy and by_name.toy_build == SHIPPED.resolve()
    assert (by_name.kind, by_path.kind) == ("builtin", "local")
    assert not no_network  # neither asked the hub


@pytest.mark.parametrize("name, expected", [
    ("toyworl", "no such local directory ('{cwd}/toyworl') (did you mean toyworld?), and not a built-in name"),
    ("toyworld:big", "the built-in toy model has no recipe 'big'; choose one of toyworld:a0, toyworld:default"),
    ("./runs/nothere", "no such local directory ('{cwd}/runs/nothere' does not exist)"),
    ("runs/x/checkpoint-3", "no such local directory ('{cwd}/runs/x/checkpoint-3'), and not a built-in name"),
    ("org/model", "as a hub name it needs the network, which is not available (huggingface.co:443: [Errno -2]"),
])
def test_a_name_that_is_no_model_fails_at_once_with_what_was_looked_for(tmp_path, monkeypatch, name, expected):
    monkeypatch.chdir(tmp_path)
    start = time.perf_counter()
    with pytest.raises(InputError) as e:
        resolve_model(name, what="model")
    assert time.perf_counter() - start < 2.0  # no hub retries
    assert expected.format(cwd=tmp_path) in str(e.value) and str(e.value).startswith(f"model={name!r}")


def test_hf_hub_offline_reads_only_the_hub_cache(monkeypatch, tmp_path, no_network):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(InputError, match="the local hub cache \\(HF_HUB_OFFLINE is set\\) has no config.json"):
        resolve_model("org/model")
    assert not no_network  # offline: the network is not even probed


# ---------------------------------------------------------------------------------------- each entry point


@pytest.mark.parametrize("model", ["toyworld", str(SHIPPED)])
def test_train_gives_the_toy_settings_to_the_toy_model_by_name_or_path(monkeypatch, model):
    seen = {}
    monkeypatch.setattr(cli, "run_train", lambda m, d, c, r, **kw: seen.update(m=m, d=d, c=c))
    assert cli.main(["train", "--model_name_or_path", model]) == 0
    assert seen["m"].model_name_or_path == model
    assert seen["d"].prompt_format == "plain" and seen["c"].teacher_template == TOY_TRAIN["teacher_template"]


@pytest.mark.parametrize("model", ["toyworld", str(SHIPPED)])
def test_eval_models_takes_the_toy_model_by_name_or_path(tmp_path, toy_problems, capsys, model, no_network):
    out = tmp_path / "eval"
    code = cli.main(["eval", "--models", f"toy={model}", "--benchmarks", f"toy={toy_problems}", "--limit", "1",
                     "--k", "2", "--max_new_tokens", "8", "--output_dir", str(out), "--plot", "false",
                     "--show_progress", "false"])
    assert code == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in (out / "samples" / "toy__toy.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["n_tokens"] >= 1 for r in rows)
    fingerprint = json.loads((out / "samples" / "toy__toy.config.json").read_text())["fingerprint"]
    assert fingerprint["model_path"] == str(SHIPPED.resolve()) and fingerprint["prompt_format"] == "chat"
    assert not no_network


def test_eval_gives_the_toy_model_its_response_budget(tmp_path, toy_problems):
    from antisd.evaluate.config import parse_args

    cfg = parse_args(["--models", "toyworld", "--benchmarks", f"toy={toy_problems}", "--output_dir", str(tmp_path)])
    assert cfg.max_new_tokens == TOY_TRAIN["max_completion_length"]  # not 32768 tokens on 512 positions
    cfg = parse_args(["--models", "toyworld", "--benchmarks", f"toy={toy_problems}", "--max_new_tokens", "12"])
    assert cfg.max_new_tokens == 12  # the user's own value is kept


def test_a_chat_prompt_gives_the_toy_model_the_ids_of_its_plain_prompt():
    from antisd.data.problems import DEFAULT_SYSTEM_PROMPT
    from antisd.lm.sampling import load_tokenizer

    tok = load_tokenizer(str(SHIPPED))
    problem = "find x in 3 .. 9 with x * 2 = 8 ."
    chat = [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}, {"role": "user", "content": problem}]
    text = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert text == problem and tok(text)["input_ids"] == tok(problem)["input_ids"]


@pytest.mark.parametrize("model", ["toyworld", str(SHIPPED)])
def test_pmi_takes_the_toy_model_with_its_settings(tmp_path, toy_problems, capsys, model, no_network):
    out = tmp_path / "pmi"
    code = cli.main(["pmi", "--model", model, "--dataset", str(toy_problems), "--max_problems", "1",
                     "--samples_per_problem", "2", "--max_new_tokens", "8", "--bootstrap", "0", "--progress", "false",
                     "--output_dir", str(out)])
    assert code == 0, capsys.readouterr().err
    config = json.loads((out / "summary.json").read_text())["config"]
    assert config["model"] == str(SHIPPED.resolve()) and config["prompt_format"] == "plain"
    assert config["teacher_template"] == TOY_TRAIN["teacher_template"] and config["answer_template"] == "x = {answer}"
    assert not no_network


def test_pmi_rollouts_of_a_run_find_its_settings_and_model(tmp_path):
    """The run's final model, else its newest complete checkpoint, else its base model (from antisd_run.yaml)."""
    from antisd.pmi.config import PMIConfig

    run = tmp_path / "run"
    (run / "rollouts").mkdir(parents=True)
    (run / "antisd_run.yaml").write_text("version: 1\nmodel_name_or_path: toyworld\nprompt_format: plain\n"
                                         "teacher_template: '{prompt} ref : {solution} . feedback : {feedback} .'\n")
    dump = run / "rollouts" / "rollouts.jsonl"
    cfg = PMIConfig(rollouts=str(dump))
    assert cfg.config == str(run / "antisd_run.yaml") and cfg.model == "toyworld" and cfg.prompt_format == "plain"
    (run / "checkpoint-2").mkdir()
    (run / "checkpoint-2" / "antisd_state.json").write_text("{}")
    assert PMIConfig(rollouts=str(dump)).model == str(run / "checkpoint-2")
    (run / "config.json").write_text("{}")
    assert PMIConfig(rollouts=str(dump)).model == str(run)
    assert PMIConfig(rollouts=str(dump), model="other/model").model == "other/model"  # --model wins


@pytest.mark.slow
def test_pmi_on_the_rollouts_a_toy_training_run_dumped_as_the_readme_shows(tmp_path, monkeypatch, capsys):
    """`antisd train --dump_rollouts_every 1`, then `antisd pmi --rollouts runs/x/rollouts/rollouts.jsonl`."""
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "--max_steps", "1", "--per_device_train_batch_size", "8", "--num_generations", "4",
                     "--max_completion_length", "12", "--output_dir", "runs/x", "--report_to", "none",
                     "--save_strategy", "no", "--dump_rollouts_every", "1", "--disable_tqdm", "true", *CPU]) == 0
    capsys.readouterr()
    assert cli.main(["pmi", "--rollouts", "runs/x/rollouts/rollouts.jsonl", "--bootstrap", "0",
                     "--progress", "false", "--output_dir", "runs/x/pmi"]) == 0, capsys.readouterr().err
    summary = json.loads(Path("runs/x/pmi/summary.json").read_text())
    assert summary["config"]["model"] == str(tmp_path / "runs" / "x")  # the run's final model
    assert summary["config"]["config"] == str(tmp_path / "runs" / "x" / "antisd_run.yaml")
    assert summary["summary"]["n_rollouts"] == 8 and not summary["summary"]["telescoping_failed"]


def test_the_trainer_takes_the_toy_model_by_name_with_its_templates(tmp_path, no_network):
    """``AntiSDTrainer(model="toyworld")`` with chat prompts and the default teacher context: the toy model's
    chat template and teacher context are supplied at construction (nothing is left to fail in train())."""
    from antisd.trainer.config import AntiSDConfig
    from antisd.data.problems import problems_dataset
    from antisd.rewards import MathReward
    from antisd.trainer.core import AntiSDTrainer

    train = problems_dataset([{"problem": "find x in 1 .. 9 with x + 1 = 4 .", "answer": "3"}] * 4)
    assert isinstance(train[0]["prompt"], list)  # chat prompts, the README's default
    args = AntiSDConfig(output_dir=str(tmp_path / "out"), method="antisd", max_steps=1, num_generations=4,
                        per_device_train_batch_size=4, max_completion_length=8, report_to=[], bf16=False)
    trainer = AntiSDTrainer(model="toyworld", reward_funcs=[MathReward()], args=args, train_dataset=train)
    assert trainer.model.config._name_or_path == str(SHIPPED.resolve())
    ids, _, _ = trainer._tokenize_prompts([train[0]["prompt"]])
    assert ids[0] == trainer.processing_class("find x in 1 .. 9 with x + 1 = 4 .")["input_ids"]
    assert (args.teacher_template, args.answer_template) == (TOY_TRAIN["teacher_template"], "x = {answer}")
    assert not no_network
