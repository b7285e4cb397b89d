"""``antisd eval``: sample k completions per problem, score them with math-verify, write results.

For every model x benchmark, k completions are sampled per problem (vLLM when it is installed and
a GPU is present, else batched transformers ``generate``), each is scored by
``antisd.rewards.check_answer`` against the reference answer, and the run writes under
``output_dir``:

    samples/<model>__<benchmark>.jsonl        one line per sample (problem id, sample index,
                                              completion, extracted answer, outcome, correct,
                                              tokens, truncated); appended per problem
    samples/<model>__<benchmark>.config.json  the settings fingerprint of that file
    summary.md / summary.csv                  avg@k, pass@1..k, mean length, truncation rate,
                                              failure counts; "mean" rows average the
                                              benchmarks (the paper's headline number)
    pass_at_k.png                             pass@k curves, one panel per benchmark

How it departs from a plain eval loop: a rerun skips finished problems (resume after a crash),
refuses to mix samples drawn with other settings (the fingerprint; ``--overwrite`` discards the
old file), and ``--rescore`` re-scores the stored completions without generating. Unparseable
answers, empty completions, truncations and reference answers that math-verify cannot parse
are counted in the summary, never raised. Paper protocol: avg@32 on AIME 24/25/26 and HMMT Feb
25, avg@4 on Minerva (the preset defaults); sampling settings are not stated in the paper, the
defaults here are temperature 0.6, top-p 0.95, no top-k (project choice, Qwen3's thinking-mode
recommendation).

CPU:  antisd eval --models path/to/ckpt --benchmarks aime24 --data_dir ../shared/data \\
          --limit 2 --k 2 --max_new_tokens 64
GPU:  antisd eval --models Qwen/Qwen3-8B grpo=runs/grpo/checkpoint-200 \\
          --benchmarks aime24 aime25 aime26 hmmt25 minerva --max_new_tokens 32768
      (python -m antisd.evaluate ... works the same; docs/evaluation.md has the details)

Inside training, ``EvalCallback`` samples a held-out problem list every N steps with the
training model and logs ``eval/avg@k`` and ``eval/pass@k`` through the trainer's ``log``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import gc
import hashlib
import importlib.util
import json
import logging
import math
import os
import re
import sys
import types
import typing
import urllib.parse
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import TrainerCallback

from antisd.data import DEFAULT_SYSTEM_PROMPT, DataConfig, DataError, load_raw, map_problems
from antisd.metrics import avg_at_k, mean_over_benchmarks, pass_at_k_table
from antisd.rewards import Outcome, check_answer, extract_answer

logger = logging.getLogger("antisd.evaluate")  # not __name__: under `python -m` that is "__main__"

RESULTS_VERSION = 1
DATA_DIR_ENV = "ANTISD_DATA_DIR"
PAPER_BENCHMARKS = ("aime24", "aime25", "aime26", "hmmt25", "minerva")
GSM8K_FINAL_COLUMN = "_gsm8k_final_answer"
_NAME_RE = re.compile(r"^[A-Za-z0-9._-]+$")


class EvalError(ValueError):
    """A usage error found before or instead of generation (mixed settings, bad spec)."""


# ======================================================================================= benchmarks


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: where its problems live and how its columns map to problem/answer/id."""

    name: str
    source: str  # hub dataset name, or a local .jsonl/.json/.parquet/.csv file or directory
    split: str = "train"
    config: str | None = None
    problem_column: str = "problem"
    answer_column: str = "answer"
    id_column: str | None = None
    solution_column: str | None = "solution"
    answer_format: Literal["plain", "gsm8k"] = "plain"  # gsm8k: the answer is the text after "####"
    k: int = 4  # samples per problem unless EvalConfig.n_samples says otherwise


@dataclass(frozen=True)
class Preset:
    hub: Benchmark  # the usual hub dataset and its columns
    local_file: str  # file name in a data dir (as in /work/shared/data: columns id, problem, answer)


PRESETS: dict[str, Preset] = {
    "aime24": Preset(Benchmark("aime24", "HuggingFaceH4/aime_2024", "train", id_column="id", k=32), "aime2024.jsonl"),
    "aime25": Preset(Benchmark("aime25", "MathArena/aime_2025", "train", id_column="problem_idx",
                               solution_column=None, k=32), "aime2025.jsonl"),
    "aime26": Preset(Benchmark("aime26", "math-ai/aime26", "test", id_column="id", solution_column=None, k=32),
                     "aime2026.jsonl"),
    "hmmt25": Preset(Benchmark("hmmt25", "MathArena/hmmt_feb_2025", "train", id_column="problem_idx",
                               solution_column=None, k=32), "hmmt_feb2025.jsonl"),
    "minerva": Preset(Benchmark("minerva", "math-ai/minervamath", "test", problem_column="question",
                                solution_column=None, k=4), "minerva_math.jsonl"),
    "math500": Preset(Benchmark("math500", "HuggingFaceH4/MATH-500", "test", id_column="unique_id", k=4),
                      "math500.jsonl"),
    "gsm8k": Preset(Benchmark("gsm8k", "openai/gsm8k", "test", config="main", problem_column="question",
                              solution_column="answer", answer_format="gsm8k", k=4), "gsm8k_test.jsonl"),
}

_SPEC_KEYS = {"problem": "problem_column", "answer": "answer_column", "id": "id_column",
              "solution": "solution_column", "split": "split", "config": "config", "k": "k",
              "answer_format": "answer_format", "like": None}


def preset_benchmark(name: str, data_dir: str | None = None) -> Benchmark:
    """A preset: the local file in `data_dir` when it is there, else the hub dataset."""
    if name not in PRESETS:
        raise EvalError(f"benchmark {name!r} is not a preset; presets: {sorted(PRESETS)} "
                        "(other data: NAME=PATH_OR_HUB_NAME?problem=COL&answer=COL)")
    preset = PRESETS[name]
    if data_dir:
        path = Path(data_dir).expanduser() / preset.local_file
        if path.is_file():
            return Benchmark(name, str(path.resolve()), "train", id_column="id", k=preset.hub.k)
        logger.warning("%s is not in data_dir %s: %s uses the hub dataset %s", preset.local_file, data_dir,
                       name, preset.hub.source)
    return preset.hub


def parse_benchmark(spec: str, data_dir: str | None = None) -> Benchmark:
    """A benchmark from ``PRESET`` or ``NAME=SOURCE``, optionally followed by ``?key=value&...``.

    Keys: problem, answer, id, solution (column names; empty = none), split, config, k,
    answer_format (plain|gsm8k), like=PRESET (start from that preset's hub columns, e.g. for a
    downloaded copy of the hub file).
    """
    head, _, query = spec.partition("?")
    opts = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(opts) - set(_SPEC_KEYS))
    if unknown:
        raise EvalError(f"benchmark {spec!r}: unknown option(s) {unknown}; valid: {sorted(_SPEC_KEYS)}")
    name, eq, source = (s.strip() for s in head.partition("="))
    if not _NAME_RE.match(name):
        raise EvalError(f"benchmark {spec!r}: the name {name!r} must match [A-Za-z0-9._-]+ (it names result files)")
    if not eq:
        bench = preset_benchmark(name, data_dir)
    elif not source:
        raise EvalError(f"benchmark {spec!r}: give a source after '=' (a local file or a hub dataset name)")
    elif "like" in opts:
        bench = dataclasses.replace(preset_benchmark(opts["like"]), name=name, source=source)
    else:
        bench = Benchmark(name, source)
    if eq and Path(source).expanduser().exists():  # one spelling per file, for the fingerprint
        bench = dataclasses.replace(bench, source=str(Path(source).expanduser().resolve()))
    changes: dict[str, Any] = {}
    for key, value in opts.items():
        if key == "like":
            continue
        if key == "k":
            if not value.isdigit() or int(value) < 1:
                raise EvalError(f"benchmark {spec!r}: k={value!r} must be a positive integer")
            changes["k"] = int(value)
        elif key == "answer_format" and value not in ("plain", "gsm8k"):
            raise EvalError(f"benchmark {spec!r}: answer_format={value!r}; choose plain or gsm8k")
        else:
            changes[_SPEC_KEYS[key]] = value or None
    return dataclasses.replace(bench, **changes)


def gsm8k_final_answer(text: Any) -> str | None:
    """GSM8K's answer field ends in ``#### N``: N, or None when there is no ``####``."""
    if not isinstance(text, str) or "####" not in text:
        return None
    return text.rsplit("####", 1)[1].strip() or None


def load_benchmark(bench: Benchmark, *, limit: int | None = None, prompt_format: str = "chat",
                   system_prompt: str | None = DEFAULT_SYSTEM_PROMPT) -> Any:
    """Canonical columns (prompt, answer, solution, problem_id) of the first `limit` problems,
    validated by ``antisd.data`` (file order, no shuffle)."""
    dcfg = DataConfig(
        dataset_name=bench.source, dataset_config=bench.config, dataset_split=bench.split,
        problem_column=bench.problem_column, answer_column=bench.answer_column,
        solution_column=bench.solution_column, id_column=bench.id_column, system_prompt=system_prompt,
        prompt_format=prompt_format, max_samples=limit,  # type: ignore[arg-type]
    )
    try:
        raw = load_raw(dcfg)
    except DataError as e:
        if bench.source in {p.hub.source for p in PRESETS.values()}:
            raise DataError(f"{e}; or point --data_dir (or ${DATA_DIR_ENV}) at a folder holding "
                            f"{PRESETS[bench.name].local_file if bench.name in PRESETS else 'the local file'}") from e
        raise
    if bench.answer_format == "gsm8k":
        if bench.answer_column not in raw.column_names:
            raise DataError(f"benchmark {bench.name}: answer column {bench.answer_column!r} is not in "
                            f"{raw.column_names}")
        raw = raw.map(lambda row: {GSM8K_FINAL_COLUMN: gsm8k_final_answer(row[bench.answer_column])})
        dcfg = dataclasses.replace(dcfg, answer_column=GSM8K_FINAL_COLUMN)
    return map_problems(raw, dcfg)


# ======================================================================================= config


def _help(text: str, **extra: Any) -> dict[str, Any]:
    return {"help": text, **extra}


@dataclass
class EvalConfig:
    """What to evaluate, how to sample, where to write. Checked before any model loads."""

    models: list[str] = field(default_factory=list, metadata=_help(
        "Model paths or hub names; LABEL=PATH names a model in the results (default label: the last path "
        "part, parent_checkpoint-N for checkpoints)."))
    benchmarks: list[str] = field(default_factory=lambda: list(PAPER_BENCHMARKS), metadata=_help(
        f"Preset names ({', '.join(PRESETS)}) or NAME=FILE_OR_HUB_NAME?problem=COL&answer=COL&id=COL&split=S"
        "&config=C&k=N&like=PRESET. Default: the paper's five."))
    n_samples: int | None = field(default=None, metadata=_help(
        "k, samples per problem for every benchmark (default: the benchmark's own, 32 for AIME/HMMT, "
        "4 for Minerva/MATH-500/GSM8K and custom files)."))
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
    prompt_format: Literal["chat", "plain"] = field(default="chat", metadata=_help(
        "chat: the tokenizer's chat template with the system prompt; plain: the problem text as is."))
    system_prompt: str | None = field(default=DEFAULT_SYSTEM_PROMPT, metadata=_help(
        "System message of chat prompts ('' or none: no system message)."))
    chat_template_kwargs: dict[str, Any] | None = field(default=None, metadata=_help(
        'Extra chat-template arguments as JSON, e.g. \'{"enable_thinking": false}\' for Qwen3.'))
    limit: int | None = field(default=None, metadata=_help("Evaluate only the first N problems of each benchmark."))
    data_dir: str | None = field(default=None, metadata=_help(
        f"Folder with local benchmark files (aime2024.jsonl, ...); presets read them instead of the hub "
        f"(default: ${DATA_DIR_ENV})."))
    overwrite: bool = field(default=False, metadata=_help(
        "Discard existing samples written with other settings instead of refusing to mix them."))
    rescore: bool = field(default=False, metadata=_help(
        "Re-score every samples/*.jsonl in output_dir with the current verifier and rewrite the summary; "
        "no generation, no models needed."))
    verify_timeout_s: float = field(default=5.0, metadata=_help("math-verify time budget per sample, seconds."))
    plot: bool = field(default=True, metadata=_help("Write pass_at_k.png."))
    show_progress: bool = field(default=True, metadata=_help("Show a progress bar with an ETA."))
    trust_remote_code: bool = field(default=False, metadata=_help("Allow model/tokenizer code from the hub."))
    vllm_gpu_memory_utilization: float = field(default=0.9, metadata=_help("vLLM: fraction of GPU memory to use."))
    vllm_tensor_parallel_size: int = field(default=1, metadata=_help("vLLM: GPUs per model."))
    vllm_max_model_len: int | None = field(default=None, metadata=_help("vLLM: context length (default: the model's)."))

    def __post_init__(self) -> None:
        if self.data_dir is None:
            self.data_dir = os.environ.get(DATA_DIR_ENV) or None
        if self.system_prompt == "":
            self.system_prompt = None
        checks = [
            (self.temperature >= 0, f"temperature={self.temperature} must be >= 0 (0 = greedy)"),
            (0 < self.top_p <= 1, f"top_p={self.top_p} must be in (0, 1]"),
            (self.top_k >= 0, f"top_k={self.top_k} must be >= 0 (0 = off)"),
            (self.max_new_tokens >= 1, f"max_new_tokens={self.max_new_tokens} must be >= 1"),
            (self.n_samples is None or self.n_samples >= 1, f"n_samples={self.n_samples} must be >= 1"),
            (self.batch_size is None or self.batch_size >= 1, f"batch_size={self.batch_size} must be >= 1"),
            (self.limit is None or self.limit >= 1, f"limit={self.limit} must be >= 1 (or none for all problems)"),
            (self.verify_timeout_s > 0, f"verify_timeout_s={self.verify_timeout_s} must be > 0"),
            (self.backend in ("auto", "vllm", "transformers"),
             f"backend={self.backend!r} is not valid; choose one of ['auto', 'transformers', 'vllm']"),
            (self.prompt_format in ("chat", "plain"), f"prompt_format={self.prompt_format!r}; choose chat or plain"),
            (self.dtype in ("auto", "bfloat16", "float16", "float32"),
             f"dtype={self.dtype!r}; choose one of ['auto', 'bfloat16', 'float16', 'float32']"),
            (self.rescore or bool(self.models), "models is empty; give at least one model path or hub name"),
            (bool(self.benchmarks) or self.rescore, "benchmarks is empty; give preset names or NAME=PATH specs"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        if not self.rescore:
            self.model_specs()
            self.benchmark_specs()
            if self.backend == "vllm":
                resolve_backend("vllm")
        if self.temperature == 0:
            logger.warning("temperature=0 is greedy: the k samples of a problem are identical (pass@k = pass@1)")

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
    local = Path(path).expanduser()
    return label, str(local.resolve()) if local.exists() else path  # one spelling per checkpoint


def resolve_backend(backend: str) -> Literal["vllm", "transformers"]:
    """The backend to use: vLLM needs the vllm package and a CUDA device."""
    if backend == "transformers":
        return "transformers"
    have_vllm = importlib.util.find_spec("vllm") is not None
    if have_vllm and torch.cuda.is_available():
        return "vllm"
    if backend == "vllm":
        raise EvalError("backend='vllm' needs the vllm package and a CUDA GPU "
                         f"(vllm installed: {have_vllm}, CUDA: {torch.cuda.is_available()}); use backend auto or transformers")
    return "transformers"


# ======================================================================================= generation


@dataclass
class Sample:
    text: str
    n_tokens: int  # generated tokens, the stop token included
    truncated: bool  # stopped by max_new_tokens, not by an end-of-sequence token


def seed_for(*parts: Any) -> int:
    """A stable 63-bit seed from any JSON-serialisable parts (same parts, same seed, any process)."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def prompt_ids(tokenizer: Any, prompt: str | list[dict[str, str]], chat_template_kwargs: Mapping[str, Any] | None) -> list[int]:
    """Token ids of one prompt: chat messages through the chat template (with the generation
    prompt, no extra special tokens), or plain text with the tokenizer's special tokens."""
    if isinstance(prompt, str):
        return list(tokenizer(prompt)["input_ids"])
    text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True,
                                         **dict(chat_template_kwargs or {}))
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


class TransformersGenerator:
    """Batched ``model.generate`` (left padding); one torch seed per call, global RNG untouched."""

    def __init__(self, model: Any, tokenizer: Any, *, temperature: float, top_p: float, top_k: int,
                 max_new_tokens: int, chat_template_kwargs: Mapping[str, Any] | None = None,
                 synced_gpus: bool = False) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.eos_ids = _eos_ids(model, tokenizer)
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (min(self.eos_ids) if self.eos_ids else 0)
        self.chat_template_kwargs = chat_template_kwargs
        self.gen_kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": temperature > 0,
                                           "pad_token_id": self.pad_id, "use_cache": True,
                                           "eos_token_id": sorted(self.eos_ids) or None, "synced_gpus": synced_gpus}
        if temperature > 0:
            self.gen_kwargs.update(temperature=temperature, top_p=top_p, top_k=top_k)

    def encode(self, prompt: str | list[dict[str, str]]) -> list[int]:
        return prompt_ids(self.tokenizer, prompt, self.chat_template_kwargs)

    def generate(self, prompts: list[list[int]], n: int, seeds: list[int]) -> list[list[Sample]]:
        """n samples for each prompt (token ids). The call's RNG seed is derived from `seeds`."""
        rows = [ids for ids in prompts for _ in range(n)]
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)  # (B, P)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)  # (B, P)
        for i, r in enumerate(rows):
            input_ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
            attention_mask[i, width - len(r):] = 1
        device = next(self.model.parameters()).device
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed_for(*seeds))
            out = self.model.generate(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                                      **self.gen_kwargs)
        completions = out[:, width:].tolist()  # (B, T)
        samples = [self._sample(tokens) for tokens in completions]
        return [samples[i * n:(i + 1) * n] for i in range(len(prompts))]

    def _sample(self, tokens: list[int]) -> Sample:
        for i, token in enumerate(tokens):
            if token in self.eos_ids:
                return Sample(self.tokenizer.decode(tokens[:i], skip_special_tokens=True), i + 1, False)
        return Sample(self.tokenizer.decode(tokens, skip_special_tokens=True), len(tokens), True)


class VLLMGenerator:
    """vLLM ``LLM.generate`` on token-id prompts; one seeded request per problem (n samples)."""

    def __init__(self, llm: Any, tokenizer: Any, *, temperature: float, top_p: float, top_k: int,
                 max_new_tokens: int, chat_template_kwargs: Mapping[str, Any] | None = None) -> None:
        from vllm import SamplingParams

        self.llm, self.tokenizer, self._params = llm, tokenizer, SamplingParams
        self.sampling = {"temperature": temperature, "top_p": top_p, "top_k": top_k if top_k > 0 else -1,
                         "max_tokens": max_new_tokens}
        self.chat_template_kwargs = chat_template_kwargs

    def encode(self, prompt: str | list[dict[str, str]]) -> list[int]:
        return prompt_ids(self.tokenizer, prompt, self.chat_template_kwargs)

    def generate(self, prompts: list[list[int]], n: int, seeds: list[int]) -> list[list[Sample]]:
        params = [self._params(n=n, seed=s % (2**31), **self.sampling) for s in seeds]
        outputs = self.llm.generate([{"prompt_token_ids": ids} for ids in prompts], sampling_params=params, use_tqdm=False)
        return [[Sample(c.text, len(c.token_ids), c.finish_reason == "length") for c in o.outputs] for o in outputs]


def _torch_dtype(name: str) -> Any:
    return {"auto": "auto", "bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


def load_tokenizer(path: str, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def make_generator(cfg: EvalConfig, backend: str, path: str, tokenizer: Any) -> Any:
    """Load the model `path` for `backend` and wrap it in a generator."""
    sampling = {"temperature": cfg.temperature, "top_p": cfg.top_p, "top_k": cfg.top_k,
                "max_new_tokens": cfg.max_new_tokens, "chat_template_kwargs": cfg.chat_template_kwargs}
    if backend == "vllm":
        from vllm import LLM

        llm = LLM(model=path, tokenizer=path, dtype=cfg.dtype, seed=cfg.seed, trust_remote_code=cfg.trust_remote_code,
                  tensor_parallel_size=cfg.vllm_tensor_parallel_size, max_model_len=cfg.vllm_max_model_len,
                  gpu_memory_utilization=cfg.vllm_gpu_memory_utilization)
        return VLLMGenerator(llm, tokenizer, **sampling)
    from transformers import AutoModelForCausalLM

    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    model = AutoModelForCausalLM.from_pretrained(path, dtype=_torch_dtype(cfg.dtype), trust_remote_code=cfg.trust_remote_code)
    return TransformersGenerator(model.to(device).eval(), tokenizer, **sampling)


def release_generator(generator: Any) -> None:
    """Best-effort release of a model's memory before the next model loads."""
    if isinstance(generator, VLLMGenerator):
        try:
            from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

            destroy_model_parallel()
            destroy_distributed_environment()
        except Exception:  # noqa: BLE001 - cleanup only
            logger.debug("vLLM cleanup failed", exc_info=True)
    generator.__dict__.clear()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ======================================================================================= scoring


def score_completion(completion: str, answer: str, timeout_s: float = 5.0) -> dict[str, Any]:
    """Extracted answer, how it was found, the verifier's outcome and correct (bool). Never raises."""
    pred, how = extract_answer(completion)
    outcome = check_answer(completion, answer, timeout_s=timeout_s)
    return {"extracted_answer": pred, "extraction": how, "outcome": outcome.value, "correct": outcome is Outcome.CORRECT}


def check_gold(answer: str, timeout_s: float = 5.0) -> str:
    """"ok" when math-verify parses the reference answer and accepts it boxed as itself;
    "gold_unparseable" when it does not parse (every sample then scores 0);
    "self_check_<outcome>" when it parses but does not verify against itself."""
    if check_answer("\\boxed{0}", answer, timeout_s=timeout_s) is Outcome.GOLD_UNPARSEABLE:
        return "gold_unparseable"
    itself = check_answer(f"\\boxed{{{answer}}}", answer, timeout_s=timeout_s)
    return "ok" if itself is Outcome.CORRECT else f"self_check_{itself.value}"


def sample_problems(generator: Any, problems: Sequence[Mapping[str, Any]], *, k: int, batch_size: int, seed: int,
                    tag: str, timeout_s: float = 5.0, done: Iterable[str] = (),
                    on_chunk: Callable[[list[tuple[Mapping[str, Any], list[dict[str, Any]]]]], None] | None = None,
                    progress: Any = None) -> dict[str, list[dict[str, Any]]]:
    """Sample and score k completions for every problem not in `done`; problem_id -> k scored samples.

    Chunks are fixed slices of `problems` (batch_size // k problems, or one problem in
    ceil(k / batch_size) calls when k > batch_size), so a resumed run draws the same samples
    as an uninterrupted one. `on_chunk` receives each finished chunk (to append it to disk).
    Each problem's samples are seeded by (seed, tag, problem id, part).
    """
    done = set(done)
    per_chunk = max(1, batch_size // k)
    parts = [(start, min(batch_size, k - start)) for start in range(0, k, batch_size)] if k > batch_size else [(0, k)]
    gold_cache: dict[str, str] = {}
    scored: dict[str, list[dict[str, Any]]] = {}
    for first in range(0, len(problems), per_chunk):
        pending = [p for p in problems[first:first + per_chunk] if str(p["problem_id"]) not in done]
        if not pending:
            continue
        ids = [generator.encode(p["prompt"]) for p in pending]
        samples: list[list[Sample]] = [[] for _ in pending]
        for part, (_, n) in enumerate(parts):
            seeds = [seed_for(seed, tag, str(p["problem_id"]), part) for p in pending]
            for acc, new in zip(samples, generator.generate(ids, n, seeds)):
                acc.extend(new)
            if progress is not None:
                progress.update(n * len(pending))
        chunk = []
        for problem, problem_samples in zip(pending, samples):
            answer = str(problem["answer"])
            if answer not in gold_cache:
                gold_cache[answer] = check_gold(answer, timeout_s)
            rows = [{"sample_index": i, "completion": s.text, "n_tokens": s.n_tokens, "truncated": s.truncated,
                     **score_completion(s.text, answer, timeout_s), "gold_check": gold_cache[answer]}
                    for i, s in enumerate(problem_samples)]
            scored[str(problem["problem_id"])] = rows
            chunk.append((problem, rows))
        if on_chunk is not None:
            on_chunk(chunk)
    return scored


# ======================================================================================= results files


def results_path(output_dir: str | Path, model: str, benchmark: str) -> Path:
    return Path(output_dir) / "samples" / f"{model}__{benchmark}.jsonl"


def meta_path(results: Path) -> Path:
    return results.with_name(results.name.removesuffix(".jsonl") + ".config.json")


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Records of a results file; a partial last line (a crash mid-write) or a bad line is skipped."""
    return _read_records(path)[0]


def _read_records(path: str | Path) -> tuple[list[dict[str, Any]], int]:
    records, bad = [], 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                record = json.loads(line) if line.endswith("\n") else None
            except json.JSONDecodeError:
                record = None
            if isinstance(record, dict) and {"problem_id", "sample_index", "correct"} <= record.keys():
                records.append(record)
            elif line.strip():
                bad += 1
    if bad:
        logger.warning("%s: skipped %d unreadable line(s) (an interrupted write?)", path, bad)
    return records, bad


def complete_problems(records: Iterable[Mapping[str, Any]], k: int) -> dict[str, list[Mapping[str, Any]]]:
    """problem_id -> its k records in sample order, for problems with exactly samples 0..k-1."""
    by_problem: dict[str, dict[int, Mapping[str, Any]]] = defaultdict(dict)
    for record in records:
        by_problem[str(record["problem_id"])][int(record["sample_index"])] = record
    return {pid: [s[i] for i in range(k)] for pid, s in by_problem.items() if set(s) == set(range(k))}


def _write_jsonl(path: Path, records: Iterable[Mapping[str, Any]]) -> None:
    """Replace `path` atomically."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def fingerprint(cfg: EvalConfig, label: str, model_path: str, bench: Benchmark) -> dict[str, Any]:
    """The settings that change which samples a results file holds; a rerun must match them."""
    fp = {"version": RESULTS_VERSION, "model": label, "model_path": model_path, "benchmark": bench.name,
          "source": bench.source, "split": bench.split, "config": bench.config,
          "problem_column": bench.problem_column, "answer_column": bench.answer_column, "id_column": bench.id_column,
          "answer_format": bench.answer_format, "n_samples": cfg.samples_for(bench), "temperature": cfg.temperature,
          "top_p": cfg.top_p, "top_k": cfg.top_k, "max_new_tokens": cfg.max_new_tokens, "seed": cfg.seed,
          "prompt_format": cfg.prompt_format, "system_prompt": cfg.system_prompt if cfg.prompt_format == "chat" else None,
          "chat_template_kwargs": cfg.chat_template_kwargs}
    return json.loads(json.dumps(fp))


def prepare_results(path: Path, fp: Mapping[str, Any], *, overwrite: bool, recorded: Mapping[str, Any]) -> None:
    """Check (or write) the fingerprint beside `path`; raise EvalError naming differing fields."""
    meta = meta_path(path)
    if overwrite:
        for p in (path, meta):
            p.unlink(missing_ok=True)
    if meta.exists():
        old = json.loads(meta.read_text(encoding="utf-8")).get("fingerprint", {})
        diffs = [f"{key}: {old.get(key)!r} -> {value!r}" for key, value in fp.items() if old.get(key) != value]
        if diffs:
            raise EvalError(f"{path} holds samples drawn with other settings ({'; '.join(diffs)}); "
                            "pass --overwrite to discard them or use another --output_dir")
        return
    if path.exists():
        raise EvalError(f"{path} exists without its settings file {meta.name}; pass --overwrite to discard it")
    path.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps({"fingerprint": dict(fp), "recorded": dict(recorded)}, indent=2) + "\n", encoding="utf-8")


def score_results(path: str | Path, *, timeout_s: float = 5.0, write: bool = True) -> list[dict[str, Any]]:
    """Re-score stored completions (a results file, or every ``*.jsonl`` in a folder or in its
    ``samples/``) with the current extraction and verifier; rewrite the files when `write`."""
    path = Path(path)
    files = [path] if path.is_file() else sorted((path / "samples" if (path / "samples").is_dir() else path).glob("*.jsonl"))
    if not files:
        raise EvalError(f"no results files (*.jsonl) at {path}")
    out: list[dict[str, Any]] = []
    gold_cache: dict[str, str] = {}
    for file in files:
        records = read_records(file)
        for record in records:
            answer = str(record["answer"])
            if answer not in gold_cache:
                gold_cache[answer] = check_gold(answer, timeout_s)
            record.update(score_completion(str(record.get("completion") or ""), answer, timeout_s),
                          gold_check=gold_cache[answer])
        if write:
            _write_jsonl(file, records)
        logger.info("Re-scored %d samples in %s", len(records), file)
        out.extend(records)
    return out


# ======================================================================================= summary

_COUNTED_OUTCOMES = tuple(o for o in Outcome if o not in (Outcome.CORRECT, Outcome.FORMAT_VIOLATION))
_FAILURE_COUNTS = ("n_empty", *(f"n_{o.value}" for o in _COUNTED_OUTCOMES),
                   "n_gold_unparseable_problems", "n_gold_unverified_problems", "n_incomplete_problems")


def _benchmark_row(model: str, benchmark: str, records: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """One summary row from the records of one model x benchmark (complete problems only)."""
    counts = defaultdict(int)
    for record in records:
        counts[int(record.get("n_samples") or 0)] += 1
    by_problem: dict[str, dict[int, Mapping[str, Any]]] = defaultdict(dict)
    for record in records:
        by_problem[str(record["problem_id"])][int(record["sample_index"])] = record
    k = max(len(s) for s in by_problem.values())
    k = max(k, max(counts))
    complete = {pid: [s[i] for i in range(k)] for pid, s in by_problem.items() if set(s) == set(range(k))}
    if not complete:
        logger.warning("%s / %s: no problem has all its %d samples; no summary row", model, benchmark, k)
        return None
    samples = [r for rows in complete.values() for r in rows]
    outcomes = {pid: [bool(r["correct"]) for r in rows] for pid, rows in complete.items()}
    row: dict[str, Any] = {"model": model, "benchmark": benchmark, "n_problems": len(complete), "k": k,
                           "avg@k": avg_at_k(outcomes)}
    row.update({f"pass@{j}": v for j, v in pass_at_k_table(outcomes).items()})
    row["mean_tokens"] = sum(float(r.get("n_tokens") or 0) for r in samples) / len(samples)
    row["truncation_rate"] = sum(bool(r.get("truncated")) for r in samples) / len(samples)
    no_answer = sum(r.get("outcome") in (Outcome.NO_ANSWER.value, Outcome.UNCLOSED_BOX.value) for r in samples)
    row["no_answer_rate"] = no_answer / len(samples)
    row["n_samples"] = len(samples)
    row["n_empty"] = sum(not str(r.get("completion") or "").strip() for r in samples)
    for outcome in _COUNTED_OUTCOMES:
        row[f"n_{outcome.value}"] = sum(r.get("outcome") == outcome.value for r in samples)
    gold = {pid: next((g for r in rows if (g := r.get("gold_check", "ok")) != "ok"), "ok") for pid, rows in complete.items()}
    row["n_gold_unparseable_problems"] = sum(g == "gold_unparseable" for g in gold.values())
    row["n_gold_unverified_problems"] = sum(g != "ok" for g in gold.values())
    row["n_incomplete_problems"] = len(by_problem) - len(complete)
    return row


def _mean_row(model: str, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The paper's headline: the unweighted mean over benchmarks (pass@j where every benchmark has j)."""
    out: dict[str, Any] = {"model": model, "benchmark": "mean", "n_problems": sum(r["n_problems"] for r in rows),
                           "k": None, "avg@k": mean_over_benchmarks({r["benchmark"]: r["avg@k"] for r in rows})}
    shared = set.intersection(*({key for key in r if key.startswith("pass@")} for r in rows))
    for key in sorted(shared, key=lambda s: int(s[5:])):
        out[key] = sum(r[key] for r in rows) / len(rows)
    for key in ("mean_tokens", "truncation_rate", "no_answer_rate"):
        out[key] = sum(r[key] for r in rows) / len(rows)
    for key in ("n_samples", *_FAILURE_COUNTS):
        out[key] = sum(r[key] for r in rows)
    return out


def summarize(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Summary rows: one per model x benchmark (in first-seen order), then a "mean" row per model
    with two or more benchmarks. Fractions in [0, 1]; pass@j by the unbiased estimator."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for record in records:
        groups[(str(record["model"]), str(record["benchmark"]))].append(record)
    rows = [row for (model, bench), recs in groups.items() if (row := _benchmark_row(model, bench, recs))]
    models = list(dict.fromkeys(r["model"] for r in rows))
    for model in models:
        mine = [r for r in rows if r["model"] == model]
        if len(mine) > 1:
            rows.append(_mean_row(model, mine))
    return rows


def _pass_columns(rows: Sequence[Mapping[str, Any]], all_ks: bool) -> list[str]:
    ks = sorted({int(key[5:]) for r in rows for key in r if key.startswith("pass@")})
    if not all_ks:
        ks = [j for j in ks if j & (j - 1) == 0 or any(r.get("k") == j for r in rows)]
    return [f"pass@{j}" for j in ks]


def format_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """Two markdown tables: scores (percent) and failure counts."""
    def pct(v: Any) -> str:
        return "" if v is None else f"{100 * v:.1f}"

    passes = _pass_columns(rows, all_ks=False)
    head = ["model", "benchmark", "problems", "k", "avg@k", *passes, "mean tokens", "truncated %", "no answer %"]
    lines = ["# antisd eval summary", "",
             "Scores in percent. avg@k: mean accuracy over the k samples of each problem, then over problems. "
             "pass@j: unbiased estimator 1 - C(n-c, j)/C(n, j). mean: unweighted mean over the model's "
             "benchmarks (the paper's headline number).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["model"], r["benchmark"], str(r["n_problems"]), "" if r.get("k") is None else str(r["k"]),
                 pct(r["avg@k"]), *(pct(r.get(p)) for p in passes), f"{r['mean_tokens']:.0f}",
                 pct(r["truncation_rate"]), pct(r["no_answer_rate"])]
        lines.append("| " + " | ".join(cells) + " |")
    counts = ["n_samples", *_FAILURE_COUNTS]
    lines += ["", "## Counted failures", "",
              "Samples: empty completions, verifier outcomes other than correct; problems: reference "
              "answers math-verify cannot parse / that fail the self-check, problems without all k samples.", "",
              "| model | benchmark | " + " | ".join(c.removeprefix("n_") for c in counts) + " |",
              "|" + "---|" * (len(counts) + 2)]
    for r in rows:
        lines.append(f"| {r['model']} | {r['benchmark']} | " + " | ".join(str(r[c]) for c in counts) + " |")
    return "\n".join(lines) + "\n"


def write_summary(rows: Sequence[Mapping[str, Any]], output_dir: str | Path) -> dict[str, Path]:
    """summary.md and summary.csv (fractions, every pass@j) in `output_dir`."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, csv_path = out / "summary.md", out / "summary.csv"
    md.write_text(format_markdown(rows), encoding="utf-8")
    columns = ["model", "benchmark", "n_problems", "k", "avg@k", *_pass_columns(rows, all_ks=True),
               "mean_tokens", "truncation_rate", "no_answer_rate", "n_samples", *_FAILURE_COUNTS]
    with open(csv_path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return {"markdown": md, "csv": csv_path}


def plot_pass_at_k(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path | None:
    """pass@k curves: one panel per benchmark, one line per model (log2 k axis). None if no rows."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    rows = [r for r in rows if r["benchmark"] != "mean"]
    benches = list(dict.fromkeys(r["benchmark"] for r in rows))
    if not benches:
        return None
    ncols = min(4, len(benches))
    nrows = math.ceil(len(benches) / ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.4 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, bench in zip(axes, benches):
        mine = [r for r in rows if r["benchmark"] == bench]
        for r in mine:
            ks = sorted(int(key[5:]) for key in r if key.startswith("pass@"))
            ax.plot(ks, [100 * r[f"pass@{j}"] for j in ks], marker="o", markersize=3, label=r["model"])
        ax.set_xscale("log", base=2)
        ax.set_title(f"{bench} ({mine[0]['n_problems']} problems)")
        ax.set_xlabel("k")
        ax.set_ylabel("pass@k (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in axes[len(benches):]:
        ax.set_visible(False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


# ======================================================================================= run


@dataclass
class EvalSummary:
    """What run_eval returns: the summary rows and the files written."""

    rows: list[dict[str, Any]]
    files: dict[str, Path]

    def row(self, model: str, benchmark: str) -> dict[str, Any]:
        for r in self.rows:
            if r["model"] == model and r["benchmark"] == benchmark:
                return r
        raise KeyError(f"no summary row for model {model!r}, benchmark {benchmark!r}")


def _finish(rows: list[dict[str, Any]], cfg: EvalConfig, files: dict[str, Path]) -> EvalSummary:
    files.update(write_summary(rows, cfg.output_dir))
    if cfg.plot and (plot := plot_pass_at_k(rows, Path(cfg.output_dir) / "pass_at_k.png")):
        files["plot"] = plot
    logger.info("Summary: %s", ", ".join(str(p) for p in files.values()))
    return EvalSummary(rows, files)


def _eval_benchmark(cfg: EvalConfig, generator: Any, label: str, bench: Benchmark, problems: list[dict[str, Any]],
                    path: Path, done: set[str]) -> None:
    """Sample the unfinished problems of one model x benchmark, appending each chunk to `path`."""
    from tqdm.auto import tqdm

    k = cfg.samples_for(bench)
    pending = sum(str(p["problem_id"]) not in done for p in problems)
    batch_size = cfg.batch_size or (4096 if isinstance(generator, VLLMGenerator) else 64)
    with open(path, "a", encoding="utf-8") as f, tqdm(total=pending * k, desc=f"{label} {bench.name}", unit="sample",
                                                      disable=not cfg.show_progress, dynamic_ncols=True) as bar:
        def append(chunk: list[tuple[Mapping[str, Any], list[dict[str, Any]]]]) -> None:
            for problem, rows in chunk:
                for row in rows:
                    record = {"model": label, "benchmark": bench.name, "problem_id": str(problem["problem_id"]),
                              "n_samples": k, "answer": str(problem["answer"]), **row}
                    f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

        sample_problems(generator, problems, k=k, batch_size=batch_size, seed=cfg.seed, tag=bench.name,
                        timeout_s=cfg.verify_timeout_s, done=done, on_chunk=append, progress=bar)


def _existing(path: Path, k: int) -> set[str]:
    """Finished problem ids in `path`; rewrites it without partial problems or broken lines."""
    if not path.exists():
        return set()
    records, bad = _read_records(path)
    complete = complete_problems(records, k)
    kept = [r for rows in complete.values() for r in rows]
    if bad or len(kept) != len(records):
        logger.info("%s: dropping %d sample(s) of unfinished problems and %d broken line(s)", path,
                    len(records) - len(kept), bad)
        _write_jsonl(path, kept)
    return set(complete)


def run_eval(cfg: EvalConfig) -> EvalSummary:
    """Evaluate every model on every benchmark (resuming finished problems); write and return the summary."""
    if cfg.rescore:
        return _finish(summarize(score_results(cfg.output_dir, timeout_s=cfg.verify_timeout_s)), cfg, {})
    backend = resolve_backend(cfg.backend)
    benches = cfg.benchmark_specs()
    data = {b.name: [dict(r) for r in load_benchmark(b, limit=cfg.limit, prompt_format=cfg.prompt_format,
                                                     system_prompt=cfg.system_prompt)] for b in benches}
    files: dict[str, Path] = {}
    records: list[Mapping[str, Any]] = []
    for label, model_path in cfg.model_specs():
        paths = {b.name: results_path(cfg.output_dir, label, b.name) for b in benches}
        for b in benches:  # every fingerprint is checked before the model loads
            prepare_results(paths[b.name], fingerprint(cfg, label, model_path, b), overwrite=cfg.overwrite,
                            recorded={"backend": backend, "dtype": cfg.dtype})
        done = {b.name: _existing(paths[b.name], cfg.samples_for(b)) for b in benches}
        todo = [b for b in benches if any(str(p["problem_id"]) not in done[b.name] for p in data[b.name])]
        if todo:
            logger.info("Model %s (%s): %d benchmark(s) to sample with %s", label, model_path, len(todo), backend)
            tokenizer = load_tokenizer(model_path, cfg.trust_remote_code)
            generator = make_generator(cfg, backend, model_path, tokenizer)
            for b in todo:
                _eval_benchmark(cfg, generator, label, b, data[b.name], paths[b.name], done[b.name])
            release_generator(generator)
        for b in benches:
            wanted = {str(p["problem_id"]) for p in data[b.name]}
            finished = complete_problems(read_records(paths[b.name]), cfg.samples_for(b))
            records.extend(r for pid, rows in finished.items() if pid in wanted for r in rows)
            files[f"samples:{label}:{b.name}"] = paths[b.name]
    return _finish(summarize(records), cfg, files)


# ======================================================================================= training callback


class EvalCallback(TrainerCallback):
    """Every `eval_steps` optimizer steps, sample `k` completions per held-out problem with the
    training model (transformers generate, eval mode, global RNG untouched) and log
    ``eval/avg@k``, ``eval/pass@k``, ``eval/mean_tokens``, ``eval/truncation_rate``,
    ``eval/no_answer_rate`` (``metric_prefix`` replaces ``eval/``).

    Logging: bind the trainer (``EvalCallback(..., trainer=t)``, ``cb.bind(t)`` or
    ``attach_eval_callback``): the metrics then go through ``transformers.Trainer.log`` (the base
    class's, so TRL's GRPOTrainer.log does not flush its averaged training metrics early) to
    ``state.log_history`` and every reporting integration, at the current step. Unbound, they
    are appended to ``state.log_history`` and merged into the next ``on_log`` call's logs (seen
    by the callbacks after this one). Every process generates (ZeRO-3 needs all ranks in
    ``generate``, with synced GPUs); only the main process's integrations report.

    `problems`: rows with ``prompt`` (chat messages or text), ``answer`` and ``problem_id``, e.g.
    ``load_benchmark(...)`` or ``antisd.data.load_problems(...)``. The same seeds are used at
    every evaluation (common random numbers), so step-to-step changes are not sampling noise.
    """

    def __init__(self, problems: Iterable[Mapping[str, Any]], *, eval_steps: int, k: int = 4,
                 max_new_tokens: int = 1024, temperature: float = 0.6, top_p: float = 0.95, top_k: int = 0,
                 batch_size: int = 32, seed: int = 0, verify_timeout_s: float = 5.0, metric_prefix: str = "eval/",
                 chat_template_kwargs: Mapping[str, Any] | None = None, trainer: Any = None) -> None:
        self.problems = [{"problem_id": str(p["problem_id"]), "prompt": p["prompt"], "answer": str(p["answer"])}
                         for p in problems]
        if not self.problems:
            raise ValueError("EvalCallback needs at least one held-out problem")
        for name, value in (("eval_steps", eval_steps), ("k", k), ("max_new_tokens", max_new_tokens),
                            ("batch_size", batch_size)):
            if value < 1:
                raise ValueError(f"{name}={value} must be >= 1")
        self.eval_steps, self.k, self.batch_size, self.seed = eval_steps, k, batch_size, seed
        self.sampling = {"temperature": temperature, "top_p": top_p, "top_k": top_k, "max_new_tokens": max_new_tokens,
                         "chat_template_kwargs": chat_template_kwargs}
        self.verify_timeout_s, self.prefix, self.trainer = verify_timeout_s, metric_prefix, trainer
        self.history: list[dict[str, float]] = []
        self._pending: dict[str, float] = {}

    def bind(self, trainer: Any) -> EvalCallback:
        self.trainer = trainer
        return self

    def evaluate(self, model: Any, tokenizer: Any) -> dict[str, float]:
        """Sample, score and summarise the held-out problems with `model` now."""
        from transformers.integrations import is_deepspeed_zero3_enabled

        synced = is_deepspeed_zero3_enabled() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1
        generator = TransformersGenerator(model, tokenizer, synced_gpus=synced, **self.sampling)
        was_training = model.training
        model.eval()
        try:
            scored = sample_problems(generator, self.problems, k=self.k, batch_size=self.batch_size, seed=self.seed,
                                     tag="eval_callback", timeout_s=self.verify_timeout_s)
        finally:
            model.train(was_training)
        records = [{"model": "m", "benchmark": "b", "problem_id": pid, "n_samples": self.k, **r}
                   for pid, rows in scored.items() for r in rows]
        row = _benchmark_row("m", "b", records)
        assert row is not None, "every held-out problem has k samples"
        p = self.prefix
        return {f"{p}avg@{self.k}": row["avg@k"], f"{p}pass@{self.k}": row[f"pass@{self.k}"],
                f"{p}mean_tokens": row["mean_tokens"], f"{p}truncation_rate": row["truncation_rate"],
                f"{p}no_answer_rate": row["no_answer_rate"]}

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == 0 or state.global_step % self.eval_steps:
            return
        model, tokenizer = kwargs.get("model"), kwargs.get("processing_class")
        if model is None:
            model = getattr(self.trainer, "model", None)
        if tokenizer is None:
            tokenizer = getattr(self.trainer, "processing_class", None)
        if model is None or tokenizer is None:
            raise ValueError("EvalCallback needs the model and its tokenizer (processing_class) from the trainer")
        metrics = self.evaluate(model, tokenizer)
        self.history.append({"step": state.global_step, **metrics})
        logger.info("step %d: %s", state.global_step, ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
        if self.trainer is not None:
            from transformers import Trainer

            Trainer.log(self.trainer, dict(metrics))
        else:
            state.log_history.append({**metrics, "step": state.global_step})
            self._pending.update(metrics)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        if self._pending and logs is not None and self.trainer is None:
            logs.update(self._pending)
            self._pending.clear()


def attach_eval_callback(trainer: Any, problems: Iterable[Mapping[str, Any]], **kwargs: Any) -> EvalCallback:
    """Make an EvalCallback bound to `trainer` and add it; `kwargs` are EvalCallback's."""
    callback = EvalCallback(problems, trainer=trainer, **kwargs)
    trainer.add_callback(callback)
    return callback


# ======================================================================================= CLI

_ALIASES = {"models": ["--model"], "benchmarks": ["--benchmark"], "n_samples": ["--k", "-k"]}
_NONE = ("none", "null", "")


def _str2bool(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "y", "on"):
        return True
    if value.lower() in ("0", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _optional(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(value: str) -> Any:
        return None if value.lower() in _NONE else convert(value)

    parse.__name__ = getattr(convert, "__name__", "value")
    return parse


def _json_object(value: str) -> dict[str, Any]:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e}): {value!r}") from None
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {value!r}")
    return parsed


def _argument(f: dataclasses.Field, hint: Any) -> dict[str, Any]:
    """argparse keyword arguments for a dataclass field of EvalConfig."""
    args = typing.get_args(hint)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), hint) if isinstance(hint, types.UnionType) or optional else hint
    kwargs: dict[str, Any] = {"dest": f.name, "help": f.metadata.get("help", "")}
    if typing.get_origin(base) is list:
        kwargs.update(nargs="+", metavar=f.name.upper().rstrip("S"))
    elif base is bool:
        kwargs.update(type=_str2bool, nargs="?", const=True, metavar="BOOL")
    elif typing.get_origin(base) is Literal:
        kwargs.update(choices=list(typing.get_args(base)))
    elif typing.get_origin(base) is dict:
        kwargs.update(type=_optional(_json_object), metavar="JSON")
    else:
        kwargs.update(type=_optional(base) if optional else base)
    return kwargs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="antisd eval", description=__doc__.split("\n\n")[0],
                                     epilog="Flags take --snake_case or --kebab-case. Details: docs/evaluation.md",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config", action="append", default=[], metavar="YAML",
                        help="YAML file of field: value (repeatable; the command line wins)")
    hints = typing.get_type_hints(EvalConfig)
    for f in dataclasses.fields(EvalConfig):
        flags = list(dict.fromkeys([f"--{f.name}", f"--{f.name.replace('_', '-')}", *_ALIASES.get(f.name, [])]))
        parser.add_argument(*flags, **_argument(f, hints[f.name]))
    defaults = EvalConfig.__dataclass_fields__
    parser.set_defaults(**{name: (fl.default_factory() if fl.default_factory is not dataclasses.MISSING else fl.default)
                           for name, fl in defaults.items()})
    return parser


def parse_args(argv: Sequence[str]) -> EvalConfig:
    """EvalConfig from ``--config`` YAML files and flags (flags win). Raises EvalError on bad input."""
    import yaml

    parser = build_parser()
    pre, _ = parser.parse_known_args(argv)
    names = {f.name for f in dataclasses.fields(EvalConfig)}
    for file in pre.config:
        try:
            data = yaml.safe_load(Path(file).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as e:
            raise EvalError(f"config file {file!r}: {' '.join(str(e).split())}") from None
        if not isinstance(data, dict) or set(data) - names - {"version"}:
            bad = sorted(set(data) - names - {"version"}) if isinstance(data, dict) else data
            raise EvalError(f"config file {file!r}: unknown keys {bad}; valid: {sorted(names)}")
        data.pop("version", None)
        for name in ("models", "benchmarks"):
            if isinstance(data.get(name), str):
                data[name] = [data[name]]
        parser.set_defaults(**data)
    args = vars(parser.parse_args(argv))
    args.pop("config")
    try:
        return EvalConfig(**args)
    except (TypeError, ValueError) as e:
        if isinstance(e, EvalError):
            raise
        raise EvalError(str(e)) from None


def main(argv: Sequence[str] | None = None) -> int:
    """``antisd eval`` / ``python -m antisd.evaluate``. Returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                            datefmt="%H:%M:%S")
        logging.getLogger("antisd").setLevel(logging.INFO)
    try:
        cfg = parse_args(argv)  # config checks raise ValueError
        summary = run_eval(cfg)
    except (EvalError, DataError) as e:
        print(f"antisd eval: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    print(format_markdown(summary.rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
