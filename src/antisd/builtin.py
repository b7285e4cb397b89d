"""Built-in names of the toy reasoning world, and the default of ``antisd train`` on it.

``antisd train`` with no ``--config`` runs ``recipes/toy/antisd.yaml`` (canonical AntiSD on the
toy world; ``TOY_TRAIN`` is that file read). Two built-in names make the toy world usable from
any config:

    model_name_or_path: toyworld        the cached toy base policy (built on first use, ~4 min on 2 idle cores;
                        toyworld:tiny   a seconds-long one for smoke tests)
    dataset_name:       toyworld        fresh training problems of the toy task families, written
                                        once to the cache as JSONL (id, problem, answer, solution)

After training on the toy world, the run's held-out accuracy (and the base policy's, from its
build) goes into ``report.md`` next to the curves.

CPU:  antisd train                      (14-16 min on 2 idle cores once the base policy is cached)
      antisd train --method grpo --output_dir runs/toy-grpo
GPU:  the same; nothing here needs one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from antisd.configio import RECIPES_DIR, CliError, read_yaml

logger = logging.getLogger(__name__)

TOY_MODEL = "toyworld"
TOY_DATASET = "toyworld"
TOY_TRAIN_PROBLEMS = 20_000  # > steps x problems per step: every step sees fresh problems

TOY_RECIPE = RECIPES_DIR / "toy" / "antisd.yaml"
# The settings of `antisd train` without --config (the recipe file is their only copy); empty
# when the recipes folder is not installed (antisd train then needs --config or --recipe).
TOY_TRAIN: dict[str, Any] = read_yaml(TOY_RECIPE) if TOY_RECIPE.is_file() else {}


def default_train_argv() -> list[str]:
    """``--config recipes/toy/antisd.yaml``: the arguments ``antisd train`` puts before the user's own."""
    if not TOY_RECIPE.is_file():
        raise CliError(f"no --config or --recipe given, and the built-in default {str(TOY_RECIPE)!r} is not in "
                       "this install; run antisd train --config FILE.yaml or --recipe MODEL METHOD")
    return ["--config", str(TOY_RECIPE)]


def is_toy_model(name: str) -> bool:
    return name == TOY_MODEL or name.startswith(TOY_MODEL + ":")


def toy_dataset_file(n: int = TOY_TRAIN_PROBLEMS, seed: int = 0, cache_dir: str | Path | None = None) -> Path:
    """Write (once) ``n`` training problems of the toy world as JSONL; return the path."""
    from antisd.toyworld import ToyTaskConfig, make_problems
    from antisd.toyworld.base_policy import default_cache_dir
    from antisd.toyworld.tasks import config_dict

    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    task = ToyTaskConfig()
    tag = hashlib.sha256(json.dumps(config_dict(task), sort_keys=True, default=list).encode()).hexdigest()[:10]
    path = cache / "data" / f"train-n{n}-seed{seed}-{tag}.jsonl"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as fh:
        for i, p in enumerate(make_problems(n, split="train", seed=seed, config=task)):
            fh.write(json.dumps({"id": f"toy-{i:06d}", "problem": p.prompt, "answer": str(p.answer),
                                 "solution": p.solution, "family": p.family}) + "\n")
    os.replace(tmp, path)
    logger.info("Wrote %d toy training problems to %s", n, path)
    return path


def resolve_builtins(model_args, data_cfg):
    """Replace the built-in names ``toyworld`` (model, dataset) by real local paths."""
    if is_toy_model(model_args.model_name_or_path):
        from antisd.toyworld import ensure_base_policy, recipe

        name = model_args.model_name_or_path.partition(":")[2] or "default"
        logger.info("Built-in model %r: the toy base policy (recipe %s; built once, then cached)",
                    model_args.model_name_or_path, name)
        model_args = replace(model_args, model_name_or_path=str(ensure_base_policy(recipe(name))))
    if data_cfg.dataset_name == TOY_DATASET:
        data_cfg = replace(data_cfg, dataset_name=str(toy_dataset_file(seed=0)), problem_column="problem",
                           answer_column="answer", solution_column="solution", id_column="id")
    return model_args, data_cfg


def evaluate_toy_policy(model, tokenizer, base_policy_path: str | Path, *, max_new_tokens: int = 96,
                        n: int | None = None, samples_out: list[dict] | None = None) -> dict[str, float]:
    """Held-out accuracy of ``model`` on the same problems the base policy was scored on
    (``samples_out``: see ``antisd.toyworld.evaluate.evaluate_accuracy``)."""
    from antisd.toyworld.base_policy import EVAL_SEED, ToyBaseConfig, heldout_rows, load_build_info
    from antisd.toyworld.evaluate import evaluate_accuracy

    cfg = ToyBaseConfig.from_dict(load_build_info(base_policy_path)["recipe"])
    return evaluate_accuracy(model, tokenizer, heldout_rows(cfg, n), max_new_tokens=max_new_tokens, seed=EVAL_SEED,
                             samples_out=samples_out)
