"""Built-in names of the toy reasoning world, and the default of ``antisd train`` on it.

``antisd train`` with no ``--config``/``--recipe`` and no model, or the toy model, runs
``recipes/toy/antisd.yaml`` (canonical AntiSD on the toy world; ``TOY_TRAIN`` is that file read,
from the packaged recipes). Any other model gets the general defaults (``antisd train --help``):
the toy world's plain prompts, templates and hyper-parameters never reach a real model. Two
built-in names make the toy world usable from any config:

    model_name_or_path: toyworld        the toy base policy (shipped with antisd; another recipe is built on
                        toyworld:tiny   first use and cached; tiny is a seconds-long one for smoke tests;
                        toyworld:a0     toyworld:a0 and toyworld:search, the weak base A0 and the search-style
                        toyworld:search base of docs/benchmarks.md, ship as well)
    dataset_name:       toyworld        fresh training problems of the toy task families, written
                                        once to the cache as JSONL (id, problem, answer, solution)

The cache is ``$ANTISD_CACHE_DIR``, else the user's cache folder (``~/.cache/antisd`` on Linux;
``antisd.toyworld.base_policy.default_cache_dir``), so every folder reuses one build. After
training on the toy world, the run's held-out accuracy (and the base policy's, from its build)
goes into ``report.md`` next to the curves.

CPU:  antisd train                      (minutes on 2 cores; docs/toyworld.md, "The main job, measured")
      antisd train --method grpo --output_dir runs/toy-grpo
GPU:  the same; nothing here needs one.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from antisd.cli.configfiles import RECIPES_DIR, CliError, read_yaml
from antisd.files import TMP_INFIX, atomic_write

logger = logging.getLogger(__name__)

TOY_MODEL = "toyworld"
TOY_DATASET = "toyworld"
TOY_TRAIN_PROBLEMS = 20_000  # > steps x problems per step: every step sees fresh problems

TOY_RECIPE = RECIPES_DIR / "toy" / "antisd.yaml"
# The settings of `antisd train` without --config (the recipe file is their only copy); empty
# when the recipes folder is not installed (antisd train then needs --config or --recipe).
TOY_TRAIN: dict[str, Any] = read_yaml(TOY_RECIPE) if TOY_RECIPE.is_file() else {}


def default_train_argv() -> list[str]:
    """``--config recipes/toy/antisd.yaml``: the arguments ``antisd train`` puts before the user's own
    when the toy world's defaults apply (``antisd.cli.main``)."""
    if not TOY_RECIPE.is_file():
        raise CliError(f"no --config or --recipe given, and the built-in default {str(TOY_RECIPE)!r} is not in "
                       "this install; run antisd train --config FILE.yaml or --recipe MODEL METHOD")
    return ["--config", str(TOY_RECIPE)]


def model_flag(argv: list[str]) -> str | None:
    """The value of ``--model_name_or_path`` (or ``--model-name-or-path``, ``--flag=value``) in `argv`, else None."""
    names = ("--model_name_or_path", "--model-name-or-path")
    value = None
    for i, arg in enumerate(argv):
        if arg in names and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(tuple(f"{n}=" for n in names)):
            value = arg.split("=", 1)[1]
    return value


def is_toy_model(name: str) -> bool:
    return name == TOY_MODEL or name.startswith(TOY_MODEL + ":")


def toy_dataset_file(n: int = TOY_TRAIN_PROBLEMS, seed: int = 0, cache_dir: str | Path | None = None) -> Path:
    """Write (once) ``n`` training problems of the toy world as JSONL (``antisd.files.atomic_write``: a reader
    never sees half a file; a dead writer's leftover is removed); return the path."""
    from antisd.toyworld import ToyTaskConfig, make_problems
    from antisd.toyworld.base_policy import default_cache_dir, pid_alive
    from antisd.toyworld.tasks import config_dict

    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    task = ToyTaskConfig()
    tag = hashlib.sha256(json.dumps(config_dict(task), sort_keys=True, default=list).encode()).hexdigest()[:10]
    path = cache / "data" / f"train-n{n}-seed{seed}-{tag}.jsonl"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".*{TMP_INFIX}*"):  # left by writers (of any data file) that died
        pid = stale.name.rsplit(TMP_INFIX, 1)[-1]
        if pid.isdigit() and not pid_alive(int(pid)):
            stale.unlink(missing_ok=True)
    atomic_write(path, "".join(
        json.dumps({"id": f"toy-{i:06d}", "problem": p.prompt, "answer": str(p.answer), "solution": p.solution,
                    "family": p.family}) + "\n"
        for i, p in enumerate(make_problems(n, split="train", seed=seed, config=task))))
    logger.info("Wrote %d toy training problems to %s", n, path)
    return path


def resolve_model(model_args):
    """``toyworld`` / ``toyworld:<recipe>`` as the local path of the cached toy base policy."""
    if not is_toy_model(model_args.model_name_or_path):
        return model_args
    from antisd.toyworld import ensure_base_policy, recipe

    name = model_args.model_name_or_path.partition(":")[2] or "default"
    logger.info("Built-in model %r: the toy base policy of recipe %s",
                model_args.model_name_or_path, name)
    return replace(model_args, model_name_or_path=str(ensure_base_policy(recipe(name))))


def resolve_dataset(data_cfg):
    """``toyworld`` as the cached JSONL of toy training problems (and its columns)."""
    if data_cfg.dataset_name != TOY_DATASET:
        return data_cfg
    return replace(data_cfg, dataset_name=str(toy_dataset_file(seed=0)), problem_column="problem",
                   answer_column="answer", solution_column="solution", id_column="id")


def resolve_builtins(model_args, data_cfg):
    """Replace the built-in names ``toyworld`` (model, dataset) by real local paths."""
    return resolve_model(model_args), resolve_dataset(data_cfg)


def evaluate_toy_policy(model, tokenizer, base_policy_path: str | Path, *, max_new_tokens: int = 96,
                        n: int | None = None, samples_out: list[dict] | None = None) -> dict[str, float]:
    """Held-out accuracy of ``model`` on the same problems the base policy was scored on
    (``samples_out``: see ``antisd.toyworld.evaluate.evaluate_accuracy``)."""
    from antisd.toyworld.base_policy import EVAL_SEED, ToyBaseConfig, heldout_rows, load_build_info
    from antisd.toyworld.evaluate import evaluate_accuracy

    cfg = ToyBaseConfig.from_dict(load_build_info(base_policy_path)["recipe"])
    return evaluate_accuracy(model, tokenizer, heldout_rows(cfg, n), max_new_tokens=max_new_tokens, seed=EVAL_SEED,
                             samples_out=samples_out)
