"""``PMIConfig``: what ``antisd pmi`` reads, samples, scores and writes (one help string per field),
and its command line (``antisd.cli.parser.DataclassParser``, like ``antisd train`` and ``antisd eval``).

Fields left at ``None`` are filled, in this order, from the training YAML given as ``config``
(the keys of ``AntiSDConfig``/``DataConfig``/``ModelArgs`` that matter here; every other key of
the file is ignored), then, when the model is the toy model (``antisd.lm.names``), from its settings,
and then from the built-in defaults. ``--rollouts`` of a training run's dump without ``--config``
reads that run's ``antisd_run.yaml``; without ``--model`` (and ``--use_stored_logps``) the run's
final model, else its newest checkpoint, else its base model scores them. The privileged context (the fields of
``antisd.method.context.ContextFields``: template, feedback strings, solution sources, sibling format,
answer line, solution length, think stripping, correct threshold) therefore defaults to exactly
what training used. The data, prompt and answer-extraction options are the ones ``antisd train`` declares
(``antisd.data.config.DataFields``, ``antisd.cli.fields.ExtractionField``), unset by default; their
fallbacks are those fields' defaults.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from antisd.cli.configfiles import CliError, config_path, read_yaml
from antisd.cli.fields import ExtractionField
from antisd.cli.parser import DataclassParser, parse_with_configs
from antisd.cli.validate import check_choice
from antisd.data.config import DataConfig, DataFields
from antisd.lm.names import names_toy_model, toy_settings
from antisd.method.context import CONTEXT_FIELDS, ContextOverrides, unset_by_default

logger = logging.getLogger(__name__)
RUN_FILE = "antisd_run.yaml"  # the settings antisd train writes into its output folder

# YAML key -> PMIConfig field, for the non-context settings a training file also fixes.
RUN_KEYS: dict[str, str] = {
    "model_name_or_path": "model",
    "dtype": "dtype",
    "trust_remote_code": "trust_remote_code",
    "dataset_name": "dataset",
    "dataset_config": "dataset_config",
    "dataset_split": "dataset_split",
    "problem_column": "problem_column",
    "answer_column": "answer_column",
    "solution_column": "solution_column",
    "id_column": "id_column",
    "system_prompt": "system_prompt",
    "prompt_format": "prompt_format",
    "temperature": "temperature",
    "max_completion_length": "max_new_tokens",
    "num_generations": "samples_per_problem",
    "answer_extraction": "answer_extraction",
}
DataOverrides = unset_by_default(
    DataFields, "DataOverrides",
    "``DataFields`` unset by default (None): filled from the training YAML, else ``DataFields``' defaults apply.",
)
ExtractionOverride = unset_by_default(
    ExtractionField, "ExtractionOverride",
    "``ExtractionField`` unset by default (None): filled from the training YAML, else its default applies.",
)
# Built-in defaults of the fields that may come from the YAML (None in the dataclass): the shared fields'
# own defaults, and this command's.
FALLBACKS: dict[str, Any] = {
    **{f.name: f.default for cls in (DataFields, ExtractionField) for f in dataclasses.fields(cls)
       if f.default is not None},
    "dtype": "auto",
    "trust_remote_code": False,
    "temperature": 1.0,
    "max_new_tokens": 256,
    "samples_per_problem": 4,
}
DTYPES = ("auto", "float32", "bfloat16", "float16")


class PMIConfigError(ValueError):
    """A bad option or config file: reported on one line before any model loads."""


def run_of_rollouts(path: str | Path) -> Path | None:
    """The training run that wrote a rollouts file (``<output_dir>/rollouts/rollouts.jsonl``, written with
    ``dump_rollouts_every``): the folder holding ``antisd_run.yaml``, the file's own or the one above it."""
    folder = Path(path).expanduser().absolute().parent
    for run_dir in (folder, folder.parent):
        if (run_dir / RUN_FILE).is_file():
            return run_dir
    return None


def run_model(run_dir: Path) -> str | None:
    """A run's final model (saved in its output folder when training finished), else its newest complete
    checkpoint, else None (the run's base model, from its ``antisd_run.yaml``, then applies)."""
    from antisd.trainer.checkpoints import last_complete_checkpoint

    if any((run_dir / f).is_file() for f in ("config.json", "adapter_config.json")):
        return str(run_dir)
    return last_complete_checkpoint(run_dir)


def read_training_yaml(path: str | Path) -> dict[str, Any]:
    """A training YAML as a dict (``version``/``env`` dropped). Raises PMIConfigError."""
    try:
        data = read_yaml(config_path(path))
    except CliError as e:
        raise PMIConfigError(str(e)) from None
    data.pop("env", None)
    return data


@dataclass
class PMIConfig(DataOverrides, ExtractionOverride, ContextOverrides):
    """Options of ``antisd pmi`` (``antisd.pmi.main``); the privileged-context options are
    ``ContextOverrides`` (default: --config, else antisd.method.context's defaults), the data and prompt
    options ``DataOverrides``, ``answer_extraction`` ``ExtractionOverride`` (default: --config, else
    ``FALLBACKS``)."""

    # ------------------------------------------------------------------ inputs
    model: str | None = field(default=None, metadata={"help": "Hub name or local path of the causal LM (student and teacher are the same weights). Default: model_name_or_path of --config."})
    tokenizer: str | None = field(default=None, metadata={"help": "Tokenizer path or name (default: the model's)."})
    rollouts: str | None = field(default=None, metadata={"help": "Read rollouts from this .jsonl/.parquet file: the trainer's <output_dir>/rollouts/rollouts.jsonl (completion_ids, teacher_prompt, reward) or rows with prompt (or problem), completion and answer/solution/reward."})
    dataset: str | None = field(default=None, metadata={"help": "Sample rollouts on these problems: hub name or local .jsonl/.json/.parquet/.csv (antisd.data.problems). Default: dataset_name of --config when --rollouts is not given."})
    config: str | None = field(default=None, metadata={"help": "Training YAML: its context keys (teacher_template, feedback_*, solution_sources, sibling_format, answer_template, ...) and data/model keys fill every option left unset."})
    output_dir: str = field(default="pmi_out", metadata={"help": "Folder for the report, tables, HTML traces and PNG figures."})
    # ------------------------------------------------------------------ data (the rest: DataOverrides)
    max_problems: int | None = field(default=None, metadata={"help": "Use at most this many problems of --dataset."})
    # ------------------------------------------------------------------ sampling
    samples_per_problem: int | None = field(default=None, metadata={"help": "Completions sampled per problem; they are each other's siblings for the context choice (default num_generations of --config, else 4)."})
    max_new_tokens: int | None = field(default=None, metadata={"help": "Generation budget per completion (default max_completion_length of --config, else 256)."})
    temperature: float | None = field(default=None, metadata={"help": "Sampling temperature; log-probs are computed from logits / temperature, as TRL does (default temperature of --config, else 1.0)."})
    problems_per_batch: int = field(default=8, metadata={"help": "Problems sampled together; contexts (successful siblings) are chosen within such a batch, as in training."})
    seed: int = field(default=0, metadata={"help": "Seed of sampling, sibling choice and bootstrap."})
    # ------------------------------------------------------------------ scoring
    max_rollouts: int | None = field(default=None, metadata={"help": "Score at most this many rollouts."})
    max_tokens: int | None = field(default=None, metadata={"help": "Score at most this many completion tokens per rollout (a longer one is cut; the prefix's u_t do not change)."})
    batch_size: int = field(default=8, metadata={"help": "Sequences per forward pass (and per generate call)."})
    device: str = field(default="auto", metadata={"help": "auto (cuda if available, else cpu), cpu, cuda, cuda:1, mps ..."})
    dtype: Literal["auto", "float32", "bfloat16", "float16"] | None = field(default=None, metadata={"help": "Model weights dtype: auto (float32 on CPU, bfloat16 on GPU), float32, bfloat16, float16."})
    trust_remote_code: bool | None = field(default=None, metadata={"help": "Allow model/tokenizer code from the hub."})
    use_stored_logps: bool = field(default=False, metadata={"help": "With --rollouts from the trainer: use its stored student/teacher log-probs and teacher entropy instead of re-scoring (no model needed; no telescoping check)."})
    context_window: int = field(default=256, metadata={"help": "Rollouts read from a file without teacher_prompt get contexts chosen within windows of this many consecutive rows (siblings = same problem_id, else the same prompt)."})
    check_rollouts: int | None = field(default=None, metadata={"help": "Telescoping check (a separate whole-sequence forward) on at most this many rollouts (default: all)."})
    telescoping_atol: float = field(default=1e-3, metadata={"help": "Telescoping check: |sum_t u_t - (log pi(y|x,c) - log pi(y|x))| <= atol + rtol * (|log pi(y|x,c)| + |log pi(y|x)|)."})
    telescoping_rtol: float | None = field(default=None, metadata={"help": "Relative tolerance of the telescoping check (default 1e-5 for float32, 2e-2 for bfloat16/float16 weights)."})
    # ------------------------------------------------------------------ aggregates and figures
    token_class: list[str] | None = field(default=None, metadata={"help": "Token classes NAME=word1,word2,... or NAME=@boxed (tokens inside \\boxed{}); replace the default class of that name. Defaults: deliberation, connective, answer (@boxed)."})
    min_count: int = field(default=5, metadata={"help": "The markdown token ranking lists tokens seen at least this often (the CSV lists all)."})
    top_k: int = field(default=20, metadata={"help": "Rows at each end of the markdown token ranking."})
    bootstrap: int = field(default=2000, metadata={"help": "Bootstrap resamples for the class confidence intervals."})
    bootstrap_unit: Literal["rollout", "token"] = field(default="rollout", metadata={"help": "Resample whole rollouts (cluster bootstrap; tokens of one rollout are correlated) or single tokens."})
    ci_level: float = field(default=0.95, metadata={"help": "Confidence level of the percentile bootstrap intervals."})
    max_traces: int = field(default=8, metadata={"help": "Rollouts rendered in traces.html and as strip plots (the first ones scored)."})
    color_scale: float = field(default=4.0, metadata={"help": "|u| at which a token's colour saturates in traces.html."})
    heatmap_scale: Literal["logprob", "prob"] = field(default="logprob", metadata={"help": "Heatmap axes: log-probabilities (clipped at --heatmap_min_logp) or probabilities."})
    heatmap_bins: int = field(default=80, metadata={"help": "Bins per heatmap axis."})
    heatmap_min_logp: float = field(default=-20.0, metadata={"help": "Lower end of the log-prob heatmap axes (lower values are clipped to it)."})
    progress: bool = field(default=True, metadata={"help": "Show a progress bar."})

    def __post_init__(self) -> None:
        if self.rollouts is not None and (self.config is None or self.model is None):
            self._fill_from_run(run_of_rollouts(self.rollouts))
        if self.config is not None:
            self._fill_from_yaml(read_training_yaml(self.config))
        if names_toy_model(self.model):  # the toy model's prompts, teacher context and budget (antisd.lm.names)
            self._fill_from_yaml(toy_settings())
        for name, value in FALLBACKS.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        self._check()

    def _fill_from_run(self, run_dir: Path | None) -> None:
        """--rollouts from a training run, without --config or --model: the run's settings (its
        antisd_run.yaml) and, unless the stored log-probs are used, the run's model (``run_model``)."""
        if run_dir is None:
            return
        if self.config is None:
            self.config = str(run_dir / RUN_FILE)
            logger.info("Settings of the run that wrote the rollouts: %s", self.config)
        if self.model is None and not self.use_stored_logps:
            self.model = run_model(run_dir)
            if self.model is not None:
                logger.info("Model of the run that wrote the rollouts: %s", self.model)
            else:
                logger.info("The run %s has no saved model or checkpoint yet: its base model scores the rollouts",
                            run_dir)

    def _fill_from_yaml(self, data: dict[str, Any]) -> None:
        for key, name in {**RUN_KEYS, **{k: k for k in CONTEXT_FIELDS}}.items():
            if key not in data or data[key] is None:
                continue
            if getattr(self, name) is None and not (name == "dataset" and self.rollouts is not None):
                setattr(self, name, data[key])

    def _check(self) -> None:
        if (self.rollouts is None) == (self.dataset is None):
            raise PMIConfigError(
                f"give exactly one of rollouts (a file of rollouts) and dataset (problems to sample); got "
                f"rollouts={self.rollouts!r}, dataset={self.dataset!r}"
            )
        if self.model is None and not self.use_stored_logps:
            raise PMIConfigError("model is not set: give --model (hub name or local path) or a --config with model_name_or_path")
        if self.use_stored_logps and self.rollouts is None:
            raise PMIConfigError("use_stored_logps needs --rollouts (the trainer's dump stores the log-probs)")
        try:
            check_choice("dtype", self.dtype, DTYPES)
            self.check_data_fields()
            self.check_extraction()
        except ValueError as e:
            raise PMIConfigError(str(e)) from None
        for name in ("samples_per_problem", "max_new_tokens", "batch_size", "problems_per_batch", "context_window",
                     "max_traces", "heatmap_bins", "min_count", "top_k"):
            if getattr(self, name) < (0 if name in ("max_traces", "min_count", "top_k") else 1):
                raise PMIConfigError(f"{name}={getattr(self, name)} must be >= 1")
        for name in ("max_rollouts", "max_tokens", "max_problems", "check_rollouts"):
            v = getattr(self, name)
            if v is not None and v < (0 if name == "check_rollouts" else 1):
                raise PMIConfigError(f"{name}={v} must be >= 1 (or unset for no limit)")
        if not self.temperature > 0:
            raise PMIConfigError(f"temperature={self.temperature} must be > 0 (log-probs use logits / temperature)")
        if not 0 < self.ci_level < 1:
            raise PMIConfigError(f"ci_level={self.ci_level} must be in (0, 1)")
        if self.bootstrap < 0:
            raise PMIConfigError(f"bootstrap={self.bootstrap} must be >= 0 (0: no intervals)")
        if not self.color_scale > 0 or not self.heatmap_min_logp < 0:
            raise PMIConfigError(f"color_scale={self.color_scale} must be > 0 and heatmap_min_logp={self.heatmap_min_logp} < 0")
        if self.bootstrap_unit not in ("rollout", "token"):
            raise PMIConfigError(f"bootstrap_unit={self.bootstrap_unit!r} is not valid; choose one of ['rollout', 'token']")
        if self.heatmap_scale not in ("logprob", "prob"):
            raise PMIConfigError(f"heatmap_scale={self.heatmap_scale!r} is not valid; choose one of ['logprob', 'prob']")
        try:
            _ = self.context_config
        except ValueError as e:
            raise PMIConfigError(f"privileged context: {e}") from None
        from antisd.pmi.aggregate import parse_token_classes

        try:
            parse_token_classes(self.token_class)
        except ValueError as e:
            raise PMIConfigError(str(e)) from None

    def data_config(self, dataset: str | None = None) -> DataConfig:
        """antisd.data.problems.DataConfig for --dataset (or ``dataset``): the shared data fields as set here."""
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(DataFields)}
        return DataConfig(dataset_name=dataset or self.dataset, max_samples=self.max_problems, **shared)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def build_parser() -> DataclassParser:
    """The parser of ``antisd pmi``: every PMIConfig field is an option (``--config`` included)."""
    return DataclassParser([PMIConfig], prog="antisd pmi",
                           description="Per-token PMI u_t between a privileged self-teacher and the student.")


def parse_args(argv: Sequence[str]) -> PMIConfig:
    """PMIConfig from command-line arguments; a bad setting raises PMIConfigError (one line), a
    malformed flag exits through argparse (usage, code 2)."""
    try:
        values, _ = parse_with_configs(build_parser(), argv, config_files=False)
    except CliError as e:
        raise PMIConfigError(str(e)) from None
    return PMIConfig(**values)
