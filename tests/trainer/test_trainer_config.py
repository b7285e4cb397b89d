"""The config layer (antisd.cli.options): YAML files, merge precedence, unknown keys with suggestions,
bad types, env mapping, DataclassParser's conventions; the field groups declared once (the privileged
context, antisd.method.context.ContextFields; the data, antisd.data.config; the reward settings,
antisd.cli.fields), AntiSDConfig's canonical columns and its values settled at validation, never after."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
import yaml

from antisd.cli import options as configio
from antisd.trainer.config import CANONICAL_COLUMNS, AntiSDConfig
from antisd.cli.options import (
    CliError,
    DataclassParser,
    apply_config,
    build_train_args,
    merge_configs,
    parse_train_args,
    parse_with_configs,
    read_yaml,
    save_train_inputs,
    train_inputs,
)
from antisd.method.context import ContextConfig, ContextFields, ContextOverrides
from antisd.pmi.config import PMIConfig
from antisd.pmi.config import parse_args as parse_pmi_args

from config_helpers import CPU, base_yaml, write_yaml  # noqa: F401 - base_yaml is a fixture

# ---------------------------------------------------------------------------------------- files and precedence


def test_yaml_and_overrides(tmp_path, base_yaml):
    # "1e-6" is a string to YAML 1.1; it must still become a float
    (tmp_path / "lr.yaml").write_text("learning_rate: 1e-6\nmethod: sd\n", encoding="utf-8")
    m, d, r, c = parse_train_args(["--config", base_yaml, "--config", str(tmp_path / "lr.yaml"),
                                   "--max_steps", "7", "--prompt_format", "plain", "--reward_format_strict", "true"])
    assert m.model_name_or_path == "some/model" and m.dtype == "auto"
    assert d.dataset_name == "data.jsonl" and d.prompt_format == "plain"
    assert r.reward_format_strict is True
    assert c.max_steps == 7 and c.learning_rate == 1e-6 and isinstance(c.learning_rate, float)
    assert c.method == "sd" and c.token_signal == "sd" and c.gate == "none"


def test_answer_extraction_reaches_the_maths_reward(base_yaml):
    from antisd.trainer.run import make_reward

    m, d, r, c = parse_train_args(["--config", base_yaml, "--answer_extraction", "flexible"])
    assert r.answer_extraction == "flexible"
    reward, _ = make_reward("math", r, d, c, None)
    assert reward.answer_extraction == "flexible" and reward([None], ["so 3 + 4 is 7."], answer=["7"]) == [1.0]
    with pytest.raises(CliError, match="invalid choice: 'loose'"):
        parse_train_args(["--config", base_yaml, "--answer_extraction", "loose"])


def test_later_config_files_win(tmp_path, base_yaml):
    other = write_yaml(tmp_path / "b.yaml", {"max_steps": 9, "lambda_max": 0.25})
    *_, c = parse_train_args(["--config", base_yaml, f"--config={other}"])
    assert c.max_steps == 9 and c.lambda_max == 0.25


def test_precedence_recipe_then_files_then_flags(tmp_path):
    first = write_yaml(tmp_path / "a.yaml", {"max_steps": 10, "lambda_max": 0.3, "env": {"A": 1, "B": 1}})
    second = write_yaml(tmp_path / "b.yaml", {"lambda_max": 0.2, "env": {"B": 2}})
    inputs = train_inputs(["--recipe", "qwen3-8b", "antisd", "--config", first, "--config", second, *CPU,
                           "--max_steps", "4"])
    assert inputs["model_name_or_path"] == "Qwen/Qwen3-8B"  # the recipe, untouched by the files
    assert inputs["max_steps"] == 4 and inputs["lambda_max"] == 0.2  # flags > later file > earlier file > recipe
    assert inputs["env"] == {"A": 1, "B": 2}  # env maps merge key by key
    merged, source = merge_configs([first, second])
    assert merged == {"max_steps": 10, "lambda_max": 0.2, "env": {"A": 1, "B": 2}}
    assert source == {"max_steps": first, "lambda_max": second, "env": second}


def test_none_unsets_optional_numbers_but_not_strings(tmp_path, base_yaml):
    """``--logps_batch_rows none`` undoes a file's value; TRL's ``--report_to none`` keeps its meaning."""
    batched = write_yaml(tmp_path / "b.yaml", {"logps_batch_rows": 32, "teacher_batch_size": 16})
    *_, c = parse_train_args(["--config", base_yaml, "--config", batched])
    assert (c.logps_batch_rows, c.teacher_batch_size) == (32, 16)
    *_, c = parse_train_args(["--config", base_yaml, "--config", batched, "--logps_batch_rows", "none",
                              "--teacher_batch_size", "null", "--report_to", "none"])
    assert c.logps_batch_rows is None and c.teacher_batch_size is None
    assert c.report_to in ([], "none", ["none"])  # transformers' own reading of the string "none"
    with pytest.raises(CliError, match="logps_batch_rows"):
        parse_train_args(["--config", base_yaml, "--logps_batch_rows", "many"])


def test_correct_rollouts_guard_is_antisds_and_sd_keeps_every_rollout(caplog):
    """token_term_rollouts=correct guards AntiSD's ascent; SD (the paper's baseline) imitates on every rollout."""
    assert AntiSDConfig(output_dir="x", method="antisd", token_term_rollouts="correct", bf16=False, report_to=[]).token_term_rollouts == "correct"
    with caplog.at_level("WARNING", logger="antisd.trainer.config"):
        sd = AntiSDConfig(output_dir="x", method="sd", token_term_rollouts="correct", bf16=False, report_to=[])
    assert sd.token_term_rollouts == "all" and "method sd imitates the teacher on every rollout" in caplog.text


def test_guards_are_named_in_words():
    kw = dict(output_dir="x", bf16=False, report_to=[])
    assert AntiSDConfig(method="grpo", **kw).guards == "none (no token term)"
    assert AntiSDConfig(method="antisd", **kw).guards == "none (the paper's configuration)"
    both = AntiSDConfig(method="antisd", token_term_rollouts="correct", gate_ceiling_ratio=1.1, **kw).guards
    assert both == "token term on correct rollouts only (Eq. 12); two-sided gate, ceiling 1.1 x H_warm (Eq. 9)"


def test_env_section_is_exported(tmp_path, base_yaml, monkeypatch):
    monkeypatch.delenv("ANTISD_TEST_VAR", raising=False)
    env = write_yaml(tmp_path / "env.yaml", {"env": {"ANTISD_TEST_VAR": 3}})
    parse_train_args(["--config", base_yaml, "--config", env])
    assert os.environ["ANTISD_TEST_VAR"] == "3"
    monkeypatch.delenv("ANTISD_TEST_VAR")


@pytest.mark.parametrize("text, expected", [
    (None, "does not exist"),
    ("- a\n- b\n", "must be a YAML mapping of field: value, not a list"),
    ("version: 2\n", "has version: 2; this antisd reads version 1"),
    ("a: [1,\n", "is not valid YAML"),
])
def test_read_yaml_errors_name_the_file(tmp_path, text, expected):
    path = tmp_path / "c.yaml"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(CliError, match="c.yaml") as e:
        read_yaml(path)
    assert expected in str(e.value)
    assert read_yaml(write_yaml(tmp_path / "ok.yaml", {"version": 1, "x": 1})) == {"x": 1}


def test_env_must_be_a_mapping(tmp_path):
    with pytest.raises(CliError, match=r"env in '.*e.yaml' must be a mapping of VARIABLE: value"):
        merge_configs([write_yaml(tmp_path / "e.yaml", {"env": ["A=1"]})])


def test_run_settings_file_round_trips(tmp_path):
    inputs = train_inputs(["--recipe", "qwen3-4b-instruct-2507", "gate_0.95", *CPU, "--max_steps", "3"])
    assert inputs["max_steps"] == 3 and inputs["gate_down_ratio"] == 0.95 and "version" not in inputs
    path = save_train_inputs(inputs, tmp_path / "out")
    assert yaml.safe_load(path.read_text())["version"] == 1
    again = parse_train_args(["--config", str(path)])
    first = build_train_args(inputs)
    for a, b in zip(again, first):
        assert json.dumps(vars(a), default=str, sort_keys=True) == json.dumps(vars(b), default=str, sort_keys=True)


# ---------------------------------------------------------------------------------------- keys and values


def test_shared_fields_reach_every_dataclass_but_the_trainers_columns(base_yaml, caplog):
    """--answer_column names the source data's column (DataConfig); the trainer reads the column
    antisd.data.problems writes, whatever the flag, and a problem_id_column given anyway is logged."""
    with caplog.at_level("WARNING", logger="antisd.cli.options"):
        m, d, _, c = parse_train_args(["--config", base_yaml, "--trust_remote_code", "true", "--answer_column", "gt",
                                       "--solution_column", "worked", "--problem_id_column", "uid"])
    assert m.trust_remote_code is True and c.trust_remote_code is True
    assert (d.answer_column, d.solution_column) == ("gt", "worked")
    assert {name: getattr(c, name) for name in CANONICAL_COLUMNS} == CANONICAL_COLUMNS
    assert "problem_id_column='uid' is not used by antisd train" in caplog.text


def test_unknown_keys_get_suggestions():
    parser = configio.build_parser()
    with pytest.raises(CliError) as e:
        apply_config(parser, {"lerning_rate": 1e-6}, {"lerning_rate": "a.yaml"})
    assert str(e.value) == ("unknown key 'lerning_rate' (in a.yaml) (did you mean learning_rate?); "
                            "see antisd train --help for the fields")
    with pytest.raises(CliError) as e:
        apply_config(parser, {"zzzz": 1})
    assert "did you mean" not in str(e.value) and "unknown key 'zzzz';" in str(e.value)
    with pytest.raises(CliError, match=r"unknown argument\(s\) --gate-down 0.9 \(did you mean gate_down_ratio\?\)"):
        parse_with_configs(configio.build_parser(), ["--model_name_or_path", "m", "--dataset_name", "d", "--gate-down", "0.9"])


@pytest.mark.parametrize("key, value, expected", [
    ("max_steps", "ten", "max_steps='ten' is not valid; expected an integer"),
    ("lambda_max", "big", "lambda_max='big' is not valid; expected a number"),
    ("bf16", "maybe", "bf16='maybe' is not valid; expected true or false"),
    ("method", "bogus", "method='bogus' is not valid; choose one of ['grpo', 'sd', 'antisd']"),
    ("solution_sources", [["answer"]], "solution_sources=['answer'] must be a single value, not a list"),
])
def test_bad_types_and_choices(key, value, expected):
    with pytest.raises(CliError) as e:
        apply_config(configio.build_parser(), {key: value})
    assert str(e.value) == expected


def test_yaml_values_convert_as_flags_do():
    parser = configio.build_parser()
    apply_config(parser, {"model_name_or_path": "m", "dataset_name": "d", "max_steps": "12", "bf16": "off", "solution_sources": "answer",
                          "report_to": ["tensorboard"]})
    values, env = parse_with_configs(parser, [])
    assert (values["max_steps"], values["bf16"], values["solution_sources"]) == (12, False, ["answer"])
    assert values["report_to"] == ["tensorboard"] and env == {}


# ---------------------------------------------------------------------------------------- the parser


@dataclass
class Example:
    name: str = field(metadata={"help": "required"})
    count: int | None = field(default=None, metadata={"help": "a count", "aliases": ["-n"]})
    label: str | None = field(default=None, metadata={"help": "free text"})
    flag: bool = field(default=True, metadata={"help": "on by default"})
    kind: Literal["a", "b"] = field(default="a", metadata={"help": "a or b"})
    tags: list[str] = field(default_factory=list, metadata={"help": "several"})
    extra: dict[str, Any] | None = field(default=None, metadata={"help": "JSON"})


def test_dataclass_parser_conventions():
    parser = DataclassParser([Example], prog="example", none_words=configio.NONE_WORDS)
    values, _ = parse_with_configs(parser, ["--name", "x", "-n", "3", "--flag", "off", "--tags", "p", "q",
                                            "--extra", '{"k": [1]}', "--label", "null"])
    assert values == {"name": "x", "count": 3, "label": None, "flag": False, "kind": "a", "tags": ["p", "q"],
                      "extra": {"k": [1]}}
    values, _ = parse_with_configs(parser, ["--name", "x", "--no-flag", "--count", "none", "--kind", "b"])
    assert (values["flag"], values["count"], values["kind"]) == (False, None, "b")
    assert parse_with_configs(parser, ["--name", "x", "--flag"])[0]["flag"] is True
    plain = DataclassParser([Example], prog="example", bool_metavar="BOOL", negations=False)
    assert "--flag [BOOL]" in plain.format_help() and "--no_flag" not in plain.format_help()
    strict = DataclassParser([Example], prog="example", error=CliError)  # no none words: "none" is text
    assert parse_with_configs(strict, ["--name", "x", "--label", "none"])[0]["label"] == "none"
    for argv, message in [(["--name", "x", "--count", "none"], "invalid int value: 'none'"),
                          (["--name", "x", "--flag", "maybe"], "expected true or false, got 'maybe'"),
                          (["--name", "x", "--extra", "[1]"], "expected a JSON object"),
                          (["--name", "x", "--kind", "c"], "invalid choice: 'c'"),
                          ([], "the following arguments are required: --name")]:
        with pytest.raises(CliError, match=message.replace("(", r"\(").replace("[", r"\[")):
            parse_with_configs(strict, argv)


def test_config_files_are_an_option_or_a_field(tmp_path):
    parser = DataclassParser([Example], prog="example", config_flag=True, error=CliError)
    assert "--config YAML" in parser.format_help()
    path = write_yaml(tmp_path / "e.yaml", {"name": "from-file", "count": 2, "env": {"ANTISD_EXAMPLE": "v"}})
    values, env = parse_with_configs(parser, ["--config", path, "--count", "5"])
    assert (values["name"], values["count"], env) == ("from-file", 5, {"ANTISD_EXAMPLE": "v"})
    with pytest.raises(CliError, match="unknown key 'config'"):  # --config is not a field
        apply_config(parser, {"config": "x.yaml"})


# ---------------------------------------------------------------------------------------- context fields


def test_context_fields_are_declared_once():
    context = {f.name: f for f in dataclasses.fields(ContextFields)}
    train = {f.name: f for f in dataclasses.fields(AntiSDConfig)}
    pmi = {f.name: f for f in dataclasses.fields(PMIConfig)}
    for name, f in context.items():
        assert train[name].metadata["help"] == pmi[name].metadata["help"] == f.metadata["help"], name
        assert train[name].default == f.default and pmi[name].default is None, name
    assert ContextFields().context_config == ContextConfig() == ContextOverrides().context_config
    train_flag = configio.build_parser()._option_string_actions["--feedback_correct"]
    assert train_flag.help == context["feedback_correct"].metadata["help"] and train_flag.default == ContextConfig.feedback_correct


def test_unset_context_fields_take_the_defaults():
    ctx = ContextOverrides(feedback_correct="right", solution_sources=["sibling,answer"], max_solution_chars=9).context_config
    assert (ctx.feedback_correct, ctx.sources, ctx.max_solution_chars) == ("right", ("sibling", "answer"), 9)
    assert (ctx.template, ctx.feedback_incorrect, ctx.strip_think) == (
        ContextConfig.template, ContextConfig.feedback_incorrect, True)
    with pytest.raises(ValueError, match="template must contain"):
        _ = ContextOverrides(teacher_template="{prompt}").context_config


def test_pmi_context_options_fall_back_to_the_training_yaml(tmp_path):
    run = write_yaml(tmp_path / "run.yaml", {"model_name_or_path": "m", "feedback_correct": "right",
                                             "solution_sources": ["sibling", "dataset"], "strip_think": True})
    cfg = parse_pmi_args(["--dataset", "d.jsonl", "--config", run, "--solution_sources", "dataset,answer",
                          "--strip_think", "false", "--max_solution_chars", "50"])
    ctx = cfg.context_config
    assert (cfg.model, ctx.feedback_correct, ctx.feedback_incorrect) == ("m", "right", ContextConfig.feedback_incorrect)
    assert (ctx.sources, ctx.strip_think, ctx.max_solution_chars) == (("dataset", "answer"), False, 50)
    with pytest.raises(SystemExit) as e:  # argparse's usage and exit code 2, before any model loads
        parse_pmi_args(["--model", "m", "--dataset", "d.jsonl", "--bogus", "1"])
    assert e.value.code == 2


def test_antisd_config_builds_its_context_from_the_mixin(base_yaml):
    *_, c = parse_train_args(["--config", base_yaml, "--teacher_template", "{prompt} / {solution}",
                              "--solution_sources", "answer", "dataset", "--no_strip_think"])
    assert c.context_config == ContextConfig(template="{prompt} / {solution}", sources=("answer", "dataset"),
                                             strip_think=False)
    with pytest.raises(CliError, match="invalid AntiSDConfig: template must contain"):
        parse_train_args(["--config", base_yaml, "--teacher_template", "{prompt}"])


def test_the_trainers_columns_default_to_the_canonical_ones_and_are_checked_not_changed(tmp_path):
    kw = dict(output_dir=str(tmp_path), bf16=False, report_to=[])
    config = AntiSDConfig(**kw)
    assert {name: getattr(config, name) for name in CANONICAL_COLUMNS} == CANONICAL_COLUMNS
    config.check_problem_columns()
    assert config.use_canonical_columns() == {}  # the earlier API: nothing to change
    other = AntiSDConfig(answer_column="gt", problem_id_column=None, **kw)
    with pytest.raises(ValueError, match=r"answer_column='gt', problem_id_column=None: .*name the source data's"):
        other.check_problem_columns()
    with pytest.raises(ValueError, match="answer_column='gt'"):
        other.use_canonical_columns()
    assert (other.answer_column, other.problem_id_column) == ("gt", None)  # unchanged


@pytest.mark.parametrize("extra, threshold, logged", [([], 1.0, True), (["--reward", "code"], 1.0, True),
                                                      (["--reward", "math"], 0.5, False),
                                                      (["--correct_threshold", "1.0"], 1.0, False)])
def test_code_reward_fraction_settles_the_threshold_when_the_config_is_built(base_yaml, caplog, extra, threshold,
                                                                              logged):
    """Only a rollout that passes every test is correct under code_reward_fraction: antisd train builds the
    config with correct_threshold 1.0 (logged) instead of changing it later; a maths reward keeps 0.5."""
    with caplog.at_level("INFO", logger="antisd.cli.options"):
        *_, r, c = parse_train_args(["--config", base_yaml, "--code_reward_fraction", "true", *extra])
    assert r.code_reward_fraction is True and c.correct_threshold == threshold
    assert ("correct_threshold 0.5 -> 1.0" in caplog.text) is logged
    *_, c = parse_train_args(["--config", base_yaml])
    assert c.correct_threshold == 0.5


def test_the_run_changes_no_config_and_refuses_an_inconsistent_one(base_yaml):
    from antisd.cli.validate import InputError
    from antisd.trainer.run import make_reward

    m, d, r, c = parse_train_args(["--config", base_yaml, "--code_reward_fraction", "true", "--reward", "math"])
    with pytest.raises(InputError, match=r"correct_threshold=0.5 with code_reward_fraction: .*set correct_threshold"):
        make_reward("code", r, d, c, None)
    assert c.correct_threshold == 0.5


def test_gate_and_monitor_defaults_are_the_methods_own():
    """0.93 and the other canonical values are defined once, by antisd.method (the gate and the monitor)."""
    from antisd.method.gate import SchmittGate
    from antisd.method.monitor import MonitorThresholds
    from antisd.trainer.config import GATE_DEFAULTS

    defaults = configio.field_defaults([AntiSDConfig])
    gate = SchmittGate()
    assert (defaults["gate_warmup_steps"], defaults["gate_down_ratio"], defaults["gate_up_ratio"],
            defaults["lambda_max"]) == (gate.warmup_steps, gate.down_ratio, gate.up_ratio, gate.lambda_max)
    assert GATE_DEFAULTS["down_ratio"] == defaults["gate_down_ratio"]
    monitor = AntiSDConfig(output_dir="x", bf16=False, report_to=[]).monitor_thresholds
    assert monitor == MonitorThresholds()


def test_data_and_reward_fields_are_declared_once():
    """One declaration, one help text and one check per setting, shared by the commands that take it."""
    from antisd.cli.fields import ExtractionField, SandboxFields
    from antisd.cli.options import RewardArgs
    from antisd.data.config import DataFields, PromptFields
    from antisd.data.problems import DataConfig
    from antisd.evaluate.config import EvalConfig
    from antisd.rewards.extract import EXTRACTIONS

    def by_name(cls):
        return {f.name: f for f in dataclasses.fields(cls)}

    data, pmi, ev, reward = by_name(DataConfig), by_name(PMIConfig), by_name(EvalConfig), by_name(RewardArgs)
    for name, f in by_name(DataFields).items():
        assert data[name].metadata["help"] == pmi[name].metadata["help"] == f.metadata["help"], name
        assert data[name].default == f.default and pmi[name].default is None, name
    for name, f in by_name(PromptFields).items():
        assert ev[name].metadata["help"] == f.metadata["help"] and ev[name].default == f.default, name
    extraction = by_name(ExtractionField)["answer_extraction"]
    assert extraction.metadata["choices"] == list(EXTRACTIONS)
    for cls in (reward, ev, pmi):
        assert cls["answer_extraction"].metadata == extraction.metadata
    for name, f in by_name(SandboxFields).items():
        assert reward[name].metadata == ev[name].metadata == f.metadata, name
    for build, error in [(lambda: RewardArgs(answer_extraction="loose"), "answer_extraction='loose' is not valid"),
                         (lambda: EvalConfig(models=["m"], benchmarks=["aime24"], answer_extraction="loose"),
                          "answer_extraction='loose' is not valid"),
                         (lambda: RewardArgs(code_workers=-1), "code_workers=-1 must be >= 0"),
                         (lambda: EvalConfig(models=["m"], benchmarks=["aime24"], code_sandbox="docker"),
                          "code_sandbox='docker': expected auto, bwrap, none or a Sandbox Fusion URL"),
                         (lambda: DataConfig(dataset_name="d", prompt_format="html"),
                          "prompt_format='html' is not valid; choose one of ['chat', 'plain']"),
                         (lambda: EvalConfig(models=["m"], benchmarks=["aime24"], prompt_format="html"),
                          "prompt_format='html' is not valid; choose one of ['chat', 'plain']")]:
        with pytest.raises(ValueError, match=error.replace("(", r"\(").replace("[", r"\[")):
            build()


def test_the_run_file_records_only_what_differs_from_the_defaults(tmp_path):
    """TrainingArguments fields whose parsed default differs from the dataclass default (debug,
    include_num_input_tokens_seen) are not recorded as if the user had set them."""
    from antisd.cli.options import build_parser, parsed_defaults, train_inputs

    inputs = train_inputs(["--model_name_or_path", "m", "--dataset_name", "d.jsonl", "--bf16", "false"])
    assert inputs == {"model_name_or_path": "m", "dataset_name": "d.jsonl", "bf16": False}
    assert parsed_defaults(build_parser())["include_num_input_tokens_seen"] is False
