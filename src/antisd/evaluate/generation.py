"""Sampling: token-id prompts, the transformers and vLLM generators, and seeded k-sample batches."""

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

from antisd.evaluate.benchmarks import EvalError
from antisd.evaluate.results import check_gold, score_completion
from antisd.sampling import (
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


class TransformersGenerator:
    """Batched ``model.generate`` (``antisd.sampling.generate_completions``): one torch seed per
    call, global RNG untouched."""

    def __init__(self, model: Any, tokenizer: Any, *, temperature: float, top_p: float, top_k: int,
                 max_new_tokens: int, chat_template_kwargs: Mapping[str, Any] | None = None,
                 synced_gpus: bool = False) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.eos_ids = eos_token_ids(model, tokenizer)
        self.pad_id = pad_token_id(tokenizer, self.eos_ids)
        self.chat_template_kwargs = chat_template_kwargs
        self.sampling: dict[str, Any] = {"temperature": temperature, "top_p": top_p, "top_k": top_k,
                                         "max_new_tokens": max_new_tokens, "use_cache": True,
                                         "synced_gpus": synced_gpus}

    def encode(self, prompt: str | list[dict[str, str]]) -> list[int]:
        return prompt_ids(self.tokenizer, prompt, self.chat_template_kwargs)

    def generate(self, prompts: list[list[int]], n: int, seeds: list[int]) -> list[list[Sample]]:
        """n samples for each prompt (token ids), in one batch seeded by ``seed_for(*seeds)``."""
        rows = [ids for ids in prompts for _ in range(n)]
        completions = generate_completions(self.model, rows, batch_seeds=[seed_for(*seeds)], eos_ids=self.eos_ids,
                                           pad_id=self.pad_id, **self.sampling)
        samples = [self._sample(c) for c in completions]
        return [samples[i * n:(i + 1) * n] for i in range(len(prompts))]

    def _sample(self, completion: Completion) -> Sample:
        text = self.tokenizer.decode(completion.ids, skip_special_tokens=True)
        return Sample(text, completion.n_tokens, completion.truncated)


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
