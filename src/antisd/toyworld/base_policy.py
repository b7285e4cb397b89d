"""The toy base policy: a tiny Qwen3 warm-started by SFT (TRL's SFTTrainer) on toy traces, cached.

``ensure_base_policy(config, cache_dir)`` returns the directory of a saved model + tokenizer
(load both by path with ``AutoModelForCausalLM``/``AutoTokenizer``) plus ``build_info.json``
(recipe, held-out accuracy, timings). The directory is named by a hash of the recipe
(`antisd.toyworld.recipes`: `ToyBaseConfig` and the named recipes, importable from here too), so a
changed recipe rebuilds and an unchanged one is reused. Builds go to a temporary directory next
to the target and are renamed into place when complete, so a crash never leaves half a cache;
the temporary folders of builds that died are removed by the next build (``clean_stale_builds``).
The cache is ``$ANTISD_CACHE_DIR/toyworld``, else the user's cache folder (``~/.cache/antisd/toyworld``
on Linux), the same for every working folder.

SFT data: fresh problems from the train split every step (``steps * batch_size`` examples),
each written as a student trace (prompt = problem) or, with probability ``privileged_frac``, a
privileged trace (prompt = problem + reference + feedback, see ``traces``). Loss on completion
tokens only (prompt masked), eos included.

CPU: ``python -m antisd.toyworld.base_policy`` (default recipe, ~8 min on 2 cores)
     ``python -m antisd.toyworld.base_policy --recipe tiny`` (seconds; for tests)
GPU: the same commands; SFTTrainer puts the model on the GPU when one is visible.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import random
import shutil
import sys
import time
import uuid
from pathlib import Path

from antisd.toyworld.recipes import RECIPE_VERSION, RECIPES, ToyBaseConfig, recipe
from antisd.toyworld.tasks import iter_problems, make_problems
from antisd.toyworld.traces import sft_example

__all__ = ["BUILD_INFO", "EVAL_SEED", "RECIPES", "RECIPE_VERSION", "SHIPPED_DIR", "SHIPPED_SHA256",
           "STALE_BUILD_AGE_S", "ToyBaseConfig", "build_base_policy", "build_model", "clean_stale_builds",
           "default_cache_dir", "ensure_base_policy", "heldout_rows", "load_build_info", "main", "pick_num_threads",
           "pid_alive", "recipe", "sft_dataset", "sft_rows", "shipped_base_policy", "user_cache_dir",
           "weights_sha256"]

logger = logging.getLogger(__name__)

SHIPPED_DIR = Path(__file__).resolve().parents[1] / "resources" / "toy_base"  # package data
# sha256 of the weights (model.safetensors) of each shipped build; shipped_base_policy checks it, so every
# machine trains from these exact weights. S: the default recipe; A0: recipe "a0" (the 1,000-step default of
# before, 0.197 held-out); search: recipe "search" (the default with the search privileged style, 0.717);
# docs/toyworld.md.
SHIPPED_SHA256 = {
    "toybase-commit-7bcae44ced1b": "91302accc642be1ef13a1b0415a4044ed64aecc81f2b11f20e07a1e2d917497b",
    "toybase-commit-feb26b9dcbe8": "72162022970a755fe993a88a4bc48143e77e348c1d79da62504ac0a71fcbacb9",
    "toybase-search-226198b7bcd0": "ba579703d90e158cacd2c3a063f077554e17bb0f0469d9dc6e7bac2f437d19ff",
}
BUILD_INFO = "build_info.json"
STALE_BUILD_AGE_S = 2 * 24 * 3600.0  # a temporary build folder this old is removed even if its pid is in use
EVAL_SEED = 12345  # the held-out evaluation set is the same for every recipe with the same task config


def user_cache_dir() -> Path:
    """The platform's per-user cache folder for antisd: ``$XDG_CACHE_HOME/antisd`` or
    ``~/.cache/antisd`` (Linux and others), ``~/Library/Caches/antisd`` (macOS),
    ``%LOCALAPPDATA%/antisd/Cache`` (Windows)."""
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "antisd"
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "antisd" / "Cache"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "antisd"


def default_cache_dir() -> Path:
    """``$ANTISD_CACHE_DIR/toyworld``, else ``user_cache_dir()/toyworld``: one build for every folder."""
    root = os.environ.get("ANTISD_CACHE_DIR")
    return (Path(root).expanduser() if root else user_cache_dir()) / "toyworld"


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this machine (a temporary file named by it may still be written)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's live process, or no way to tell: keep its folder
    return True


def clean_stale_builds(cache_dir: str | Path, *, max_age_s: float = STALE_BUILD_AGE_S) -> list[Path]:
    """Remove the temporary build folders (``.tmp-<name>-<pid>-<hex>``) of builds that died: their
    process is gone, or they are older than `max_age_s`. Returns the removed paths."""
    removed = []
    for tmp in Path(cache_dir).glob(".tmp-*"):
        pid_text = tmp.name.rsplit("-", 2)[-2] if tmp.name.count("-") >= 3 else ""
        age = time.time() - tmp.stat().st_mtime
        if (pid_text.isdigit() and not pid_alive(int(pid_text))) or age > max_age_s:
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
            removed.append(tmp)
            logger.info("Removed a stale temporary build folder %s (its build died)", tmp)
    return removed


def load_build_info(path: str | Path) -> dict:
    return json.loads((Path(path) / BUILD_INFO).read_text())


def weights_sha256(folder: str | Path) -> str:
    """sha256 of a saved base policy's weights (``model.safetensors``)."""
    h = hashlib.sha256()
    with open(Path(folder) / "model.safetensors", "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def shipped_base_policy(config: ToyBaseConfig) -> Path | None:
    """The build of ``config`` that ships with antisd (``antisd/resources/toy_base/<name>``), if there is one.

    The base policies the docs use ship (weights, tokenizer, build info: ~1.7 MB each; ``SHIPPED_SHA256``), so
    every machine starts from the same model: the recipe rebuilds them, but SFT on another CPU's float kernels
    gives other weights (and, at 1,000 SFT steps, held-out accuracies from 0.20 to 0.42; docs/toyworld.md).
    """
    folder = SHIPPED_DIR / config.name
    if not (folder / BUILD_INFO).exists():
        return None
    if load_build_info(folder).get("recipe_hash") != config.recipe_hash:
        raise RuntimeError(f"the shipped base policy {folder} does not belong to recipe {config.recipe_hash}: "
                           "rebuild it (python -m antisd.toyworld.base_policy --force) and ship the result")
    want, got = SHIPPED_SHA256.get(config.name), weights_sha256(folder)
    if want != got:
        raise RuntimeError(f"the shipped base policy {folder}: model.safetensors has sha256 {got}, "
                           f"SHIPPED_SHA256[{config.name!r}] records {want}: the file is damaged or was replaced "
                           "without recording its checksum")
    return folder


def ensure_base_policy(config: ToyBaseConfig | None = None, cache_dir: str | Path | None = None, *, force: bool = False) -> Path:
    """The base policy of ``config``: the build shipped with antisd (``shipped_base_policy``), else the cached
    build, else a build made now into the cache. ``force`` always builds anew (into the cache). The shipped build
    wins over a cached one of the same recipe: a build made on another CPU has other weights."""
    config = config or ToyBaseConfig()
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cache_dir / config.name
    shipped = None if force else shipped_base_policy(config)
    if shipped is not None:
        logger.info("toy base policy %s: the build shipped with antisd (%s)", config.name, shipped)
        return shipped
    if (target / BUILD_INFO).exists() and not force:
        logger.info("toy base policy cached at %s", target)
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    clean_stale_builds(cache_dir)
    tmp = cache_dir / f".tmp-{config.name}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        build_base_policy(config, tmp)
        if target.exists():
            if force:
                shutil.rmtree(target)
            else:  # built concurrently by someone else: keep theirs
                shutil.rmtree(tmp)
                return target
        os.rename(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def build_model(config: ToyBaseConfig, tokenizer):
    """A randomly initialised Qwen3ForCausalLM for ``config`` (``antisd.lm.tiny.build_qwen3``: seeded
    by ``config.seed``, tied embeddings, vocabulary = the tokenizer's, 512 positions), whose
    generation config samples at temperature 1 (no top-k/top-p) up to ``max_new_tokens``. In
    train mode, ready for SFT."""
    from antisd.lm.tiny import build_qwen3

    model = build_qwen3(
        tokenizer, hidden_size=config.hidden_size, num_layers=config.num_layers, num_heads=config.num_heads,
        num_kv_heads=config.num_kv_heads, intermediate_size=config.intermediate_size, tie_word_embeddings=True,
        seed=config.seed, max_position_embeddings=512,
        generation={"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0,
                    "max_new_tokens": config.max_new_tokens},
    )
    return model.train()


def sft_rows(config: ToyBaseConfig) -> list[dict[str, str]]:
    """``sft_steps * batch_size`` prompt-completion pairs from fresh train-split problems."""
    rng = random.Random(f"toy-sft-{config.seed}")
    problems = iter_problems(config.task, "train", config.seed)
    return [sft_example(next(problems), rng, config.traces, privileged=rng.random() < config.privileged_frac)
            for _ in range(config.sft_steps * config.batch_size)]


def heldout_rows(config: ToyBaseConfig, n: int | None = None) -> list[dict[str, str]]:
    """The fixed held-out evaluation problems (seed ``EVAL_SEED``) as dataset rows."""
    return [p.row() for p in make_problems(n or config.eval_samples, split="heldout", seed=EVAL_SEED, config=config.task)]


class _ProgressLog:
    """A TrainerCallback that logs SFT progress through ``logging`` and, when ``adapt_threads``,
    re-picks torch's thread count every 50 steps from the load the *other* processes make."""

    def __new__(cls, total: int, adapt_threads: bool):
        import torch
        from transformers import TrainerCallback

        class _CB(TrainerCallback):
            def __init__(self) -> None:
                self.t0 = time.perf_counter()

            def on_step_begin(self, args, state, control, **kw):
                if adapt_threads and state.global_step % 50 == 0:
                    own = torch.get_num_threads()
                    new = pick_num_threads(own_load=own)
                    if new != own:
                        logger.info("step %d: load average %.1f, switching torch threads %d -> %d", state.global_step, _load(), own, new)
                        torch.set_num_threads(new)

            def on_log(self, args, state, control, logs=None, **kw):
                if logs and "loss" in logs:
                    el = time.perf_counter() - self.t0
                    eta = el / max(state.global_step, 1) * (total - state.global_step)
                    logger.info("sft step %d/%d loss %.4f (%.0f s, eta %.0f s, %d threads)", state.global_step, total,
                                float(logs["loss"]), el, eta, torch.get_num_threads())

        return _CB()


def pick_num_threads(own_load: float = 0.0) -> int:
    """Torch threads for a build: ``$ANTISD_TOY_THREADS`` if set; else 1 when other processes
    keep the machine busy (1-min load average minus ``own_load`` >= 0.5), else all cores.
    On a shared 2-core machine two threads per process made each step ~5x slower than one
    (OpenMP barriers wait for descheduled threads), while on an idle one two threads are faster."""
    env = os.environ.get("ANTISD_TOY_THREADS")
    if env:
        return max(1, int(env))
    cores = os.cpu_count() or 1
    others = _load() - own_load
    return 1 if (others >= 0.5 or others != others) else cores  # nan (no getloadavg): 1


def build_base_policy(config: ToyBaseConfig, out_dir: str | Path, *, num_threads: int | None = None) -> dict:
    """Build tokenizer + model, SFT them, evaluate on held-out problems, save to ``out_dir``.

    ``num_threads`` fixes torch's intra-op threads for the build; by default they follow the
    machine's load (``pick_num_threads``, re-checked every 50 steps). Threads do not enter the
    recipe (results agree up to float summation order)."""
    import torch

    threads_before = torch.get_num_threads()
    adapt = num_threads is None and not os.environ.get("ANTISD_TOY_THREADS")
    torch.set_num_threads(num_threads or pick_num_threads())
    try:
        return _build(config, Path(out_dir), adapt)
    finally:
        torch.set_num_threads(threads_before)


def sft_dataset(tokenizer, rows: list[dict[str, str]]):
    """SFT rows as a ``datasets.Dataset`` of input_ids, labels (prompt masked with -100, eos appended) and
    length (for group_by_length).

    Tokenized here (batched, fast) and handed to SFTTrainer as input_ids + labels: the same loss as its
    completion_only_loss on prompt/completion pairs, without its per-example map passes (~1 min for 96k
    examples on a busy 2-core machine)."""
    from datasets import Dataset

    enc_p = tokenizer([r["prompt"] for r in rows], add_special_tokens=False)["input_ids"]
    enc_c = tokenizer([r["completion"] + tokenizer.eos_token for r in rows], add_special_tokens=False)["input_ids"]
    return Dataset.from_dict({
        "input_ids": [p + c for p, c in zip(enc_p, enc_c)],
        "labels": [[-100] * len(p) + c for p, c in zip(enc_p, enc_c)],
        "length": [len(p) + len(c) for p, c in zip(enc_p, enc_c)],  # for group_by_length
    })


def _sft_args(config: ToyBaseConfig, sft_dir: Path):
    """SFTConfig of a build: the recipe's optimiser and schedule, nothing saved, one log per 5% of the steps."""
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(sft_dir), max_steps=config.sft_steps, per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate, lr_scheduler_type="cosine", warmup_steps=config.warmup_steps,
        weight_decay=config.weight_decay, max_grad_norm=config.max_grad_norm, seed=config.seed, data_seed=config.seed,
        completion_only_loss=True, max_length=None, packing=False, bf16=False, fp16=False,
        gradient_checkpointing=False, report_to=[], save_strategy="no", logging_steps=max(1, config.sft_steps // 20),
        dataloader_num_workers=0, train_sampling_strategy="group_by_length",  # less padding: ~1.5x faster
        disable_tqdm=not logger.isEnabledFor(logging.INFO),
    )


def _build(config: ToyBaseConfig, out_dir: Path, adapt_threads: bool = False) -> dict:
    """The build itself (`build_base_policy`): tokenizer, model, SFT, held-out evaluation, save, build info."""
    import torch
    import transformers
    import trl
    from trl import SFTTrainer

    from antisd.toyworld.evaluate import evaluate_accuracy
    from antisd.toyworld.tokenizer import build_tokenizer

    out_dir.mkdir(parents=True, exist_ok=True)
    t0, c0 = time.perf_counter(), time.process_time()
    tokenizer = build_tokenizer(config.max_number)
    model = build_model(config, tokenizer)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("building toy base policy %s: %d parameters, %d SFT steps x %d, %d torch threads, load average %.1f",
                config.name, n_params, config.sft_steps, config.batch_size, torch.get_num_threads(), _load())

    dataset = sft_dataset(tokenizer, sft_rows(config))
    t_data = time.perf_counter() - t0

    sft_dir = out_dir / "_sft"  # trainer scratch (nothing is saved there), removed before saving
    trainer = SFTTrainer(model=model, args=_sft_args(config, sft_dir), train_dataset=dataset,
                         processing_class=tokenizer, callbacks=[_ProgressLog(config.sft_steps, adapt_threads)])
    t1 = time.perf_counter()
    result = trainer.train()
    t_sft = time.perf_counter() - t1
    model = trainer.model.cpu() if not torch.cuda.is_available() else trainer.model
    shutil.rmtree(sft_dir, ignore_errors=True)

    ev = evaluate_accuracy(model, tokenizer, heldout_rows(config), max_new_tokens=config.max_new_tokens, seed=EVAL_SEED)
    logger.info("held-out accuracy %.3f +- %.3f (strict %.3f, %d samples, %.0f tokens mean)",
                ev["eval/accuracy"], ev["eval/stderr"], ev["eval/strict_accuracy"], int(ev["eval/n"]), ev["eval/mean_tokens"])
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    info = {
        "name": config.name,
        "recipe_hash": config.recipe_hash,
        "recipe": config.to_dict(),
        "n_parameters": n_params,
        "heldout": ev,
        "train_loss": float(result.training_loss),
        "seconds": {"data": t_data, "sft": t_sft, "eval": ev["eval/seconds"], "total": time.perf_counter() - t0,
                    "cpu_total": time.process_time() - c0},
        "torch_threads": torch.get_num_threads(),
        "load_average_at_end": _load(),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__},
    }
    (out_dir / BUILD_INFO).write_text(json.dumps(info, indent=2))
    logger.info("built %s in %.0f s (SFT %.0f s)", config.name, info["seconds"]["total"], t_sft)
    return info


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover
        return float("nan")



def main(argv: list[str] | None = None) -> Path:
    import argparse

    ap = argparse.ArgumentParser(description="Build (or find cached) the toy base policy and print its path.")
    ap.add_argument("--recipe", default="default", choices=sorted(RECIPES))
    ap.add_argument("--privileged-style", default=None, choices=["commit", "direct", "search"])
    ap.add_argument("--cache-dir", default=None, help="default: $ANTISD_CACHE_DIR/toyworld, else ~/.cache/antisd/toyworld "
                                                       "(the platform's user cache folder)")
    ap.add_argument("--force", action="store_true", help="rebuild even if cached")
    ap.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="override top-level ToyBaseConfig fields, e.g. sft_steps=800")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    types = {f.name: f.type for f in dataclasses.fields(ToyBaseConfig)}
    overrides = {}
    for kv in a.set:
        k, v = kv.split("=", 1)
        if k not in types or k in ("task", "traces"):
            raise SystemExit(f"--set {k}: not a top-level ToyBaseConfig field; valid: {sorted(set(types) - {'task', 'traces'})}")
        overrides[k] = float(v) if types[k] == "float" else int(v)
    cfg = recipe(a.recipe, privileged_style=a.privileged_style, **overrides)
    path = ensure_base_policy(cfg, a.cache_dir, force=a.force)
    info = load_build_info(path)
    print(path)
    print(json.dumps({"heldout_accuracy": info["heldout"]["eval/accuracy"], "seconds": info["seconds"]["total"]}))
    return path


if __name__ == "__main__":
    main()
