"""EvalCallback: held-out avg@k / pass@k every N steps of training, logged through the trainer."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from transformers import TrainerCallback

from antisd.evaluate.generation import TransformersGenerator, sample_problems
from antisd.evaluate.summary import benchmark_row

logger = logging.getLogger("antisd.evaluate")  # one logger name for every submodule of the package


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
    ``load_benchmark(...)`` or ``antisd.data.problems.load_problems(...)``. The same seeds are used at
    every evaluation (common random numbers), so step-to-step changes are not sampling noise.
    """

    def __init__(self, problems: Iterable[Mapping[str, Any]], *, eval_steps: int, k: int = 4,
                 max_new_tokens: int = 1024, temperature: float = 0.6, top_p: float = 0.95, top_k: int = 0,
                 batch_size: int = 32, seed: int = 0, verify_timeout_s: float = 5.0, metric_prefix: str = "eval/",
                 answer_extraction: str = "strict",
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
        self.answer_extraction = answer_extraction
        self.history: list[dict[str, float]] = []
        self._pending: dict[str, float] = {}

    def bind(self, trainer: Any) -> EvalCallback:
        self.trainer = trainer
        return self

    def sample(self, model: Any, tokenizer: Any) -> dict[str, list[dict[str, Any]]]:
        """The k scored samples of every held-out problem (problem_id -> rows), drawn with `model` now."""
        from transformers.integrations import is_deepspeed_zero3_enabled

        synced = is_deepspeed_zero3_enabled() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1
        generator = TransformersGenerator(model, tokenizer, synced_gpus=synced, **self.sampling)
        was_training = model.training
        model.eval()
        try:
            scored = sample_problems(generator, self.problems, k=self.k, batch_size=self.batch_size, seed=self.seed,
                                     tag="eval_callback", timeout_s=self.verify_timeout_s,
                                     extraction=self.answer_extraction)
        finally:
            model.train(was_training)
        return scored

    def evaluate(self, model: Any, tokenizer: Any) -> dict[str, float]:
        """Sample, score and summarise the held-out problems with `model` now."""
        scored = self.sample(model, tokenizer)
        records = [{"model": "m", "benchmark": "b", "problem_id": pid, "n_samples": self.k, **r}
                   for pid, rows in scored.items() for r in rows]
        row = benchmark_row("m", "b", records)
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
