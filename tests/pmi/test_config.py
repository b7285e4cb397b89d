"""antisd.pmi.config: the context and sampling settings read from a training YAML, clear errors."""

from __future__ import annotations

import pytest

from antisd.pmi import PMIConfig, PMIConfigError


def test_config_reads_context_from_training_yaml(tmp_path):
    y = tmp_path / "run.yaml"
    y.write_text("version: 1\nmodel_name_or_path: m\ndataset_name: d.jsonl\nlearning_rate: 1.0e-6\n"
                 "teacher_template: '{prompt} ref : {solution} . feedback : {feedback} .'\n"
                 "feedback_correct: right\nfeedback_incorrect: wrong\nsolution_sources: [sibling, dataset]\n"
                 "sibling_format: answer\nmax_solution_chars: 99\ntemperature: 0.7\nnum_generations: 3\n"
                 "answer_extraction: flexible\n")
    cfg = PMIConfig(config=str(y), feedback_incorrect="WRONG")
    assert cfg.answer_extraction == "flexible" and PMIConfig(model="m", dataset="d").answer_extraction == "strict"
    ctx = cfg.context_config
    assert ctx.template.startswith("{prompt} ref :") and ctx.feedback_correct == "right"
    assert ctx.feedback_incorrect == "WRONG"  # the command line wins
    assert ctx.sources == ("sibling", "dataset") and ctx.sibling_format == "answer" and ctx.max_solution_chars == 99
    assert (cfg.model, cfg.dataset, cfg.temperature, cfg.samples_per_problem) == ("m", "d.jsonl", 0.7, 3)
    assert PMIConfig(config=str(y), rollouts="r.jsonl").dataset is None
    with pytest.raises(PMIConfigError, match="exactly one of rollouts"):
        PMIConfig(model="m")
    with pytest.raises(PMIConfigError, match="answer_extraction='loose'"):
        PMIConfig(model="m", dataset="d", answer_extraction="loose")
    with pytest.raises(PMIConfigError, match="template must contain"):
        PMIConfig(model="m", dataset="d", teacher_template="{prompt}")


def test_data_options_are_the_training_ones_and_fall_back_to_their_defaults(tmp_path):
    """The data and prompt options are antisd.data.config.DataFields, unset by default: the training YAML fills
    them (not shuffle_seed: which problems training drew is not which ones pmi reads), else DataConfig's
    defaults apply."""
    from antisd.data.config import DataConfig

    assert PMIConfig(model="m", dataset="d").data_config() == DataConfig(dataset_name="d")
    y = tmp_path / "run.yaml"
    y.write_text("model_name_or_path: m\ndataset_name: d.jsonl\nanswer_column: gt\nprompt_format: plain\n"
                 "shuffle_seed: 3\nsystem_prompt: null\n")
    data = PMIConfig(config=str(y), max_problems=2).data_config()
    assert (data.dataset_name, data.answer_column, data.prompt_format, data.max_samples) == ("d.jsonl", "gt", "plain", 2)
    assert data.shuffle_seed is None and data.system_prompt == DataConfig.system_prompt
    with pytest.raises(PMIConfigError, match=r"prompt_format='html' is not valid; choose one of \['chat', 'plain'\]"):
        PMIConfig(model="m", dataset="d", prompt_format="html")
