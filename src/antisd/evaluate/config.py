"""EvalConfig (what to evaluate, how to sample, where to write) and its command line
(``antisd.cli.parser.DataclassParser``, like ``antisd train`` and ``antisd pmi``).

Imports only ``antisd.evaluate.benchmarks`` of this package: generation, results and the run
take an ``EvalConfig``, so it sits below them. Whether ``backend="vllm"`` can run (vllm and a
GPU) is checked by ``run_eval`` before any model loads.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from antisd.cli.configfiles import CliError, export_env
from antisd.cli.fields import ExtractionField, SandboxFields
from antisd.cli.parser import NONE_WORDS, DataclassParser, parse_with_configs
from antisd.cli.validate import check_choice
from antisd.data.config import PromptFields
from antisd.evaluate.benchmarks import (
    CODE_PRESETS,
    DATA_DIR_ENV,
    PAPER_BENCHMARKS,
    PRESETS,
    Benchmark,
    EvalError,
    parse_benchmark,
)
from antisd.lm.names import builtin_model_path, resolve_model, toy_settings
from antisd.cli.validate import InputError, read_utf8

logger = logging.getLogger("antisd.evaluate")  # one logger name for every submodule of the package


def _help(text: str, **extra: Any) -> dict[str, Any]:
    return {"help": text, **extra}


@dataclass
class EvalTargets:
    """What to evaluate and how to sample: ``EvalConfig``'s first fields (and the first options of ``--help``)."""

    models: list[str] = field(default_factory=list, metadata=_help(
        "Model paths or hub names; LABEL=PATH names a model in the results (default label: the last path "
        "part, parent_checkpoint-N for checkpoints).", aliases=["--model"], metavar="MODEL"))
    benchmarks: list[str] = field(default_factory=lambda: list(PAPER_BENCHMARKS), metadata=_help(
        f"Preset names ({', '.join(PRESETS)}; code: {', '.join(CODE_PRESETS)}) or NAME=FILE_OR_HUB_NAME?problem=COL"
        "&answer=COL&id=COL&split=S&config=C&k=N&like=PRESET. Default: the paper's five.", aliases=["--benchmark"],
        metavar="BENCHMARK"))
    n_samples: int | None = field(default=None, metadata=_help(
        "k, samples per problem for every benchmark (default: the benchmark's own, 32 for AIME/HMMT, "
        "4 for Minerva/MATH-500/GSM8K and custom files, 10 for the code presets).", aliases=["--k", "-k"]))
    temperature: float = field(default=0.6, metadata=_help(
        "Sampling temperature; 0 = greedy (then all k samples are identical). Project choice: the paper "
        "does not state it."))
    top_p: float = field(default=0.95, metadata=_help("Nucleus sampling mass in (0, 1]."))
    top_k: int = field(default=0, metadata=_help("Top-k sampling; 0 = off (HF generate would otherwise apply 50)."))
    max_new_tokens: int = field(default=32768, metadata=_help(
        "Completion token budget; a completion that reaches it is counted as truncated."))
    seed: int = field(default=0, metadata=_help(
        "Base seed; each problem's samples use a seed derived from it, the benchmark and the problem id."))
    batch_size: int | None = field(default=None, metadata=_help(
        "Sequences per generation call and per chunk written to disk (default: 64 with transformers, "
        "4096 with vLLM)."))
    backend: Literal["auto", "vllm", "transformers"] = field(default="auto", metadata=_help(
        "auto: vLLM when it is installed and a GPU is present, else transformers generate."))
    output_dir: str = field(default="outputs/eval", metadata=_help("Where samples/, summary.* and the plot go."))
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = field(default="auto", metadata=_help(
        "Weights dtype (auto: the checkpoint's own)."))
    device: str = field(default="auto", metadata=_help("transformers backend: cpu, cuda, cuda:1 ... (auto: cuda if present)."))


@dataclass
class EvalConfig(SandboxFields, ExtractionField, PromptFields, EvalTargets):
    """What to evaluate, how to sample, where to write. Checked before any model loads. The prompt settings
    (``antisd.data.config.PromptFields``), ``answer_extraction`` and the sandbox settings
    (``antisd.cli.fields``) are declared once for every command that takes them."""

    chat_template_kwargs: dict[str, Any] | None = field(default=None, metadata=_help(
        'Extra chat-template arguments as JSON, e.g. \'{"enable_thinking": false}\' for Qwen3.'))
    limit: int | None = field(default=None, metadata=_help("Evaluate only the first N problems of each benchmark."))
    data_dir: str | None = field(default=None, metadata=_help(
        f"Folder with your own copies of the preset files (aime2024.jsonl, math500.jsonl, ... or .jsonl.gz); "
        f"presets read them instead of the copies shipped with antisd (default: ${DATA_DIR_ENV})."))
    overwrite: bool = field(default=False, metadata=_help(
        "Discard existing samples written with other settings instead of refusing to mix them."))
    rescore: bool = field(default=False, metadata=_help(
        "Re-score every samples/*.jsonl in output_dir with the current verifier and rewrite the summary; "
        "no generation, no models needed."))
    verify_timeout_s: float = field(default=5.0, metadata=_help("math-verify time budget per sample, seconds."))
    samples: str | None = field(default=None, metadata=_help(
        "Code: score this EvalPlus samples file (JSONL of task_id with solution or completion) on the one code "
        "benchmark given (humaneval_plus or mbpp_plus) instead of generating; no models needed."))
    plot: bool = field(default=True, metadata=_help("Write pass_at_k.png."))
    show_progress: bool = field(default=True, metadata=_help("Show a progress bar with an ETA."))
    trust_remote_code: bool = field(default=False, metadata=_help("Allow model/tokenizer code from the hub."))
    vllm_gpu_memory_utilization: float = field(default=0.9, metadata=_help("vLLM: fraction of GPU memory to use."))
    vllm_tensor_parallel_size: int = field(default=1, metadata=_help("vLLM: GPUs per model."))
    vllm_max_model_len: int | None = field(default=None, metadata=_help("vLLM: context length (default: the model's)."))

    def __post_init__(self) -> None:
        """Validate once; an unset data_dir takes ``$ANTISD_DATA_DIR`` (``DATA_DIR_ENV``), an empty system prompt None."""
        if self.data_dir is None:
            self.data_dir = os.environ.get(DATA_DIR_ENV) or None
        if self.system_prompt == "":
            self.system_prompt = None
        self._check_values()
        check_choice("backend", self.backend, ("auto", "vllm", "transformers"))
        check_choice("dtype", self.dtype, ("auto", "bfloat16", "float16", "float32"))
        self.check_prompt_fields()
        self.check_extraction()
        self.check_sandbox()
        if not self.rescore:
            self._check_inputs()
        if self.temperature == 0:
            logger.warning("temperature=0 is greedy: the k samples of a problem are identical (pass@k = pass@1)")

    def _check_values(self) -> None:
        checks = [
            (self.temperature >= 0, f"temperature={self.temperature} must be >= 0 (0 = greedy)"),
            (0 < self.top_p <= 1, f"top_p={self.top_p} must be in (0, 1]"),
            (self.top_k >= 0, f"top_k={self.top_k} must be >= 0 (0 = off)"),
            (self.max_new_tokens >= 1, f"max_new_tokens={self.max_new_tokens} must be >= 1"),
            (self.n_samples is None or self.n_samples >= 1, f"n_samples={self.n_samples} must be >= 1"),
            (self.batch_size is None or self.batch_size >= 1, f"batch_size={self.batch_size} must be >= 1"),
            (self.limit is None or self.limit >= 1, f"limit={self.limit} must be >= 1 (or none for all problems)"),
            (self.verify_timeout_s > 0, f"verify_timeout_s={self.verify_timeout_s} must be > 0"),
            (self.rescore or bool(self.samples) or bool(self.models),
             "models is empty; give at least one model path or hub name"),
            (not (self.samples and self.models), "give --samples FILE (score a samples file) or --models (generate), "
                                                 "not both"),
            (bool(self.benchmarks) or self.rescore, "benchmarks is empty; give preset names or NAME=PATH specs"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def _check_inputs(self) -> None:
        """The models' labels, the benchmarks, and a samples file with its one code benchmark."""
        self.model_specs()
        benches = self.benchmark_specs()
        if self.samples is None:
            return
        if len(benches) != 1 or benches[0].kind != "code":
            raise ValueError(f"samples={self.samples!r} is scored on one code benchmark; give --benchmarks "
                             f"{' or '.join(CODE_PRESETS)} alone (got {self.benchmarks})")
        if not Path(self.samples).expanduser().is_file():
            raise ValueError(f"samples={self.samples!r}: no such file")
        read_utf8(self.samples, what="samples")  # bytes that are not UTF-8: the file, line and offset

    def model_specs(self) -> list[tuple[str, str]]:
        """(label, path) per model; labels are unique file-name-safe strings."""
        specs = [model_label(spec) for spec in self.models]
        labels = [label for label, _ in specs]
        dupes = sorted({label for label in labels if labels.count(label) > 1})
        if dupes:
            raise ValueError(f"models {self.models} give the same label {dupes}; name them LABEL=PATH")
        return specs

    def benchmark_specs(self) -> list[Benchmark]:
        benches = [parse_benchmark(spec, self.data_dir) for spec in self.benchmarks]
        names = [b.name for b in benches]
        if len(set(names)) != len(names):
            raise ValueError(f"benchmarks {self.benchmarks} repeat a name; give each a distinct NAME=")
        return benches

    def samples_for(self, bench: Benchmark) -> int:
        return self.n_samples if self.n_samples is not None else bench.k


def model_label(spec: str) -> tuple[str, str]:
    """(label, path) of ``LABEL=PATH`` or ``PATH`` (label: last path part; parent_checkpoint-N)."""
    label, eq, path = spec.partition("=")
    if not eq:
        path = spec
        p = Path(spec.rstrip("/"))
        label = f"{p.parent.name}_{p.name}" if p.name.startswith("checkpoint-") and p.parent.name else p.name
    label = re.sub(r"[^A-Za-z0-9._-]", "_", label.strip()) or "model"
    path = path.strip()
    if not path:
        raise ValueError(f"model {spec!r}: give a path or hub name after '='")
    builtin = builtin_model_path(path, what=f"models ({label})")  # toyworld, smollm2-135m, a .gguf (antisd.lm.names)
    if builtin is not None:
        return label, builtin
    local = Path(path).expanduser()
    return label, str(local.resolve()) if local.exists() else path  # one spelling per checkpoint


# ======================================================================================= command line


def _summary_line() -> str:
    """The first paragraph of the package docstring (``antisd.evaluate``), the command's description."""
    return sys.modules[__package__].__doc__.split("\n\n")[0]  # the package is imported before its modules


def build_parser() -> DataclassParser:
    """The parser of ``antisd eval``: one option per EvalConfig field, ``none``/``null`` for unset."""
    return DataclassParser([EvalConfig], prog="antisd eval", description=_summary_line(), config_flag=True,
                           none_words=NONE_WORDS, bool_metavar="BOOL", negations=False,
                           epilog="Flags take --snake_case or --kebab-case. Details: docs/evaluation.md")


def check_models(cfg: EvalConfig) -> EvalConfig:
    """`cfg`, its models checked: each is a loadable model with a tokenizer (``antisd.lm.names.resolve_model``: a
    built-in name, a local folder or a hub id; an unknown name fails at once); raises EvalError (one line) before
    anything is written. When every model is the toy model, a ``max_new_tokens`` left at its default (far
    beyond the 512 positions the toy model has) becomes the toy model's response budget (logged): the result is
    then a new config, built and validated with it (`cfg` itself is not changed)."""
    if cfg.rescore:
        return cfg
    toy = []
    for label, path in cfg.model_specs():
        try:
            toy.append(resolve_model(path, what=f"models ({label})").toy)
        except InputError as e:
            raise EvalError(str(e)) from None
    budget = toy_settings().get("max_completion_length")
    if toy and all(toy) and budget and cfg.max_new_tokens == EvalConfig.__dataclass_fields__["max_new_tokens"].default:
        logger.info("max_new_tokens %d -> %d: the toy model's response budget (recipes/toy/antisd.yaml)",
                    cfg.max_new_tokens, budget)
        return dataclasses.replace(cfg, max_new_tokens=int(budget))
    return cfg


def parse_args(argv: Sequence[str]) -> EvalConfig:
    """EvalConfig from ``--config`` YAML files and flags (flags win), its models checked
    (``check_models``). Raises EvalError on bad input."""
    try:
        values, env = parse_with_configs(build_parser(), argv)
    except CliError as e:
        raise EvalError(str(e)) from None
    export_env(env)
    try:
        cfg = EvalConfig(**values)
    except (TypeError, ValueError) as e:
        if isinstance(e, EvalError):
            raise
        raise EvalError(str(e)) from None
    return check_models(cfg)
