"""Sampling: token-id prompts, the transformers and vLLM generators, and seeded k-sample batches.

Exact resume (docs/reliability.md): with transformers, sample i of problem p is drawn from its own
random stream, seeded by ``seed_for(seed, benchmark, p, i)`` (``SeededSampler``), so no draw depends
on which other rows share its batch or on how many random numbers they consumed; and a resumed run
regenerates an interrupted chunk whole (``sample_problems``), so every batch, and with it every
floating-point rounding, is the one of an uninterrupted run.
"""

from __future__ import annotations

import gc
import hashlib
import importlib.util
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from transformers import LogitsProcessor, LogitsProcessorList
from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from antisd.evaluate.benchmarks import EvalError
from antisd.evaluate.results import check_gold, score_completion
from antisd.lm.sampling import (
    Completion,
    eos_token_ids,
    generate_completions,
    load_tokenizer,  # noqa: F401 - antisd.evaluate's loader (evaluate.run, the package namespace)
    pad_token_id,
    resolve_device,
    torch_dtype,
)

if TYPE_CHECKING:
    from antisd.evaluate.config import EvalConfig

logger = logging.getLogger("antisd.evaluate")  # one logger name for every submodule of the package


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


class SeededSampler(LogitsProcessor):
    """Draws the next token of row r from its own ``torch.Generator`` (seeded ``row_seeds[r]``).

    Distribution: transformers' sampling, softmax(top_p(top_k(scores / temperature))) with its own
    warpers in its order (top_k 0 = off, top_p 1 = off; a generation config's min_p/typical_p are not
    applied); one ``torch.multinomial`` draw per row and step. Returns scores (B, V) that are 0 at the
    drawn token and -inf elsewhere, so greedy decoding (``do_sample=False``) emits it. A row's draws
    depend on its seed and its own logits only: not on the other rows of the batch, nor on the global RNG.
    """

    def __init__(self, row_seeds: Sequence[int], *, temperature: float, top_k: int, top_p: float) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature={temperature} must be > 0 for sampling (0 is greedy: no sampler)")
        warpers: list[LogitsProcessor] = [TemperatureLogitsWarper(temperature)] if temperature != 1.0 else []
        if top_k:
            warpers.append(TopKLogitsWarper(top_k=top_k, min_tokens_to_keep=1))
        if top_p < 1.0:
            warpers.append(TopPLogitsWarper(top_p=top_p, min_tokens_to_keep=1))
        self.warpers = LogitsProcessorList(warpers)
        self.row_seeds = [int(s) for s in row_seeds]
        self.generators: list[torch.Generator] | None = None  # made on the logits' device at the first step

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if scores.size(0) != len(self.row_seeds):
            raise ValueError(f"SeededSampler has {len(self.row_seeds)} row seeds, the batch {scores.size(0)} rows")
        if self.generators is None:
            self.generators = [torch.Generator(device=scores.device).manual_seed(s) for s in self.row_seeds]
        probs = torch.softmax(self.warpers(input_ids, scores).float(), dim=-1)  # (B, V)
        picks = torch.cat([torch.multinomial(probs[r], 1, generator=g) for r, g in enumerate(self.generators)])  # (B,)
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(1, picks[:, None], 0.0)


class TransformersGenerator:
    """Batched ``model.generate`` (``antisd.lm.sampling.generate_completions``); each sample drawn from its own
    seeded stream (``SeededSampler``), global RNG untouched."""

    def __init__(self, model: Any, tokenizer: Any, *, temperature: float, top_p: float, top_k: int,
                 max_new_tokens: int, chat_template_kwargs: Mapping[str, Any] | None = None,
                 synced_gpus: bool = False) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.eos_ids = eos_token_ids(model, tokenizer)
        self.pad_id = pad_token_id(tokenizer, self.eos_ids)
        self.chat_template_kwargs = chat_template_kwargs
        self.temperature, self.top_p, self.top_k = temperature, top_p, top_k
        self.options: dict[str, Any] = {"max_new_tokens": max_new_tokens, "use_cache": True, "synced_gpus": synced_gpus}

    def encode(self, prompt: str | list[dict[str, str]]) -> list[int]:
        return prompt_ids(self.tokenizer, prompt, self.chat_template_kwargs)

    def generate(self, prompts: list[list[int]], n: int, seeds: Sequence[Sequence[int]]) -> list[list[Sample]]:
        """n samples for each prompt (token ids), in one batch; ``seeds[i][j]`` seeds sample j of prompt i."""
        if any(len(s) != n for s in seeds) or len(seeds) != len(prompts):
            raise ValueError(f"need {n} seeds for each of {len(prompts)} prompts, got {[len(s) for s in seeds]}")
        rows = [ids for ids in prompts for _ in range(n)]
        extra: dict[str, Any] = {}
        if self.temperature > 0:  # sampled by SeededSampler; transformers then decodes greedily
            sampler = SeededSampler([s for row in seeds for s in row], temperature=self.temperature, top_k=self.top_k,
                                    top_p=self.top_p)
            extra["logits_processor"] = LogitsProcessorList([sampler])
        # batch seed 0: generate_completions' global-RNG seed, which neither path consumes
        completions = generate_completions(self.model, rows, batch_seeds=[0], eos_ids=self.eos_ids, pad_id=self.pad_id,
                                           temperature=0.0, **self.options, **extra)
        samples = [self._sample(c) for c in completions]
        return [samples[i * n:(i + 1) * n] for i in range(len(prompts))]

    def _sample(self, completion: Completion) -> Sample:
        text = self.tokenizer.decode(completion.ids, skip_special_tokens=True)
        return Sample(text, completion.n_tokens, completion.truncated)


class VLLMGenerator:
    """vLLM ``LLM.generate`` on token-id prompts; one seeded request per problem and call (n samples). vLLM
    draws a request's samples from one stream, and its kernels depend on the batch: exact resume is not
    promised here (docs/reliability.md)."""

    def __init__(self, llm: Any, tokenizer: Any, *, temperature: float, top_p: float, top_k: int,
                 max_new_tokens: int, chat_template_kwargs: Mapping[str, Any] | None = None) -> None:
        from vllm import SamplingParams

        self.llm, self.tokenizer, self._params = llm, tokenizer, SamplingParams
        self.sampling = {"temperature": temperature, "top_p": top_p, "top_k": top_k if top_k > 0 else -1,
                         "max_tokens": max_new_tokens}
        self.chat_template_kwargs = chat_template_kwargs

    def encode(self, prompt: str | list[dict[str, str]]) -> list[int]:
        return prompt_ids(self.tokenizer, prompt, self.chat_template_kwargs)

    def generate(self, prompts: list[list[int]], n: int, seeds: Sequence[Sequence[int]]) -> list[list[Sample]]:
        """One request per prompt, n samples seeded by the seed of its first sample (``seeds[i][0]``)."""
        params = [self._params(n=n, seed=s[0] % (2**31), **self.sampling) for s in seeds]
        outputs = self.llm.generate([{"prompt_token_ids": ids} for ids in prompts], sampling_params=params, use_tqdm=False)
        return [[Sample(c.text, len(c.token_ids), c.finish_reason == "length") for c in o.outputs] for o in outputs]


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

    device = resolve_device(cfg.device)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype(cfg.dtype), trust_remote_code=cfg.trust_remote_code)
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


def sample_seeds(seed: int, tag: str, problem_id: str, indices: Iterable[int]) -> list[int]:
    """The seeds of samples ``indices`` of one problem: ``seed_for(seed, tag, problem_id, i)`` each."""
    return [seed_for(seed, tag, problem_id, i) for i in indices]


def _check_unique_ids(problems: Sequence[Mapping[str, Any]]) -> None:
    seen: dict[str, int] = {}
    for i, p in enumerate(problems):
        pid = str(p["problem_id"])
        if pid in seen:
            raise ValueError(f"problem_id {pid!r} is both problem {seen[pid]} and problem {i}; results are keyed by "
                             "problem id, so each problem needs its own (antisd.evaluate.run.distinct_problem_ids)")
        seen[pid] = i


def _draw(generator: Any, ids: list[list[int]], pids: list[str], *, k: int, batch_size: int, seed: int, tag: str,
          progress: Any, counted: int) -> list[list[Sample]]:
    """k samples of each prompt: one call, or ceil(k / batch_size) calls of one prompt when k > batch_size.
    `progress` advances by the samples of `counted` prompts (the unfinished ones)."""
    parts = [range(start, min(start + batch_size, k)) for start in range(0, k, batch_size)] if k > batch_size else [range(k)]
    samples: list[list[Sample]] = [[] for _ in ids]
    for part in parts:
        seeds = [sample_seeds(seed, tag, pid, part) for pid in pids]
        for acc, new in zip(samples, generator.generate(ids, len(part), seeds)):
            acc.extend(new)
        if progress is not None:
            progress.update(len(part) * counted)
    return samples


class MathRows:
    """Scores one maths problem's samples (`RowMaker`): per sample its index, completion, tokens, truncation,
    ``score_completion``'s fields against the problem's answer, and the gold check of that answer (made once per
    distinct answer)."""

    def __init__(self, timeout_s: float = 5.0, extraction: str = "strict") -> None:
        self.timeout_s, self.extraction = timeout_s, extraction
        self.gold: dict[str, str] = {}

    def __call__(self, problem: Mapping[str, Any], samples: Sequence[Sample]) -> list[dict[str, Any]]:
        answer = str(problem["answer"])
        if answer not in self.gold:
            self.gold[answer] = check_gold(answer, self.timeout_s)
        return [{"sample_index": i, "completion": s.text, "n_tokens": s.n_tokens, "truncated": s.truncated,
                 **score_completion(s.text, answer, self.timeout_s, self.extraction), "gold_check": self.gold[answer]}
                for i, s in enumerate(samples)]


RowMaker = Callable[[Mapping[str, Any], Sequence[Sample]], list[dict[str, Any]]]
"""Turns the k samples drawn for one problem into its k records (maths: `MathRows`; code: the program of each)."""


def sample_problems(generator: Any, problems: Sequence[Mapping[str, Any]], *, k: int, batch_size: int, seed: int,
                    tag: str, timeout_s: float = 5.0, done: Iterable[str] = (), extraction: str = "strict",
                    on_chunk: Callable[[list[tuple[Mapping[str, Any], list[dict[str, Any]]]]], None] | None = None,
                    progress: Any = None, rows: RowMaker | None = None) -> dict[str, list[dict[str, Any]]]:
    """Sample k completions for every problem not in `done` and make its records; problem_id -> its k records.

    `problems`: mappings with ``problem_id`` and ``prompt`` (chat messages or text), and what `rows` reads.
    `rows` makes one problem's records from its samples (default: ``MathRows(timeout_s, extraction)``, which
    scores them against ``answer``). Sample i of problem p is seeded by ``seed_for(seed, tag, p, i)``
    (``sample_seeds``). Chunks are fixed slices of `problems` (batch_size // k problems, or one problem in
    ceil(k / batch_size) calls when k > batch_size); a chunk with any problem left is generated whole, so that
    a resumed run forms the batches of an uninterrupted one, and only its unfinished problems get records and
    are passed to `on_chunk` (to append them to disk). Problem ids must be distinct (ValueError otherwise).
    """
    _check_unique_ids(problems)
    done = set(done)
    make_rows = rows if rows is not None else MathRows(timeout_s, extraction)
    per_chunk = max(1, batch_size // k)
    made: dict[str, list[dict[str, Any]]] = {}
    for first in range(0, len(problems), per_chunk):
        chunk_problems = problems[first:first + per_chunk]
        pending = [str(p["problem_id"]) not in done for p in chunk_problems]
        if not any(pending):
            continue
        ids = [generator.encode(p["prompt"]) for p in chunk_problems]
        samples = _draw(generator, ids, [str(p["problem_id"]) for p in chunk_problems], k=k, batch_size=batch_size,
                        seed=seed, tag=tag, progress=progress, counted=sum(pending))
        chunk = []
        for problem, problem_samples, todo in zip(chunk_problems, samples, pending):
            if todo:
                made[str(problem["problem_id"])] = records = make_rows(problem, problem_samples)
                chunk.append((problem, records))
        if on_chunk is not None:
            on_chunk(chunk)
    return made
