"""Crash-safe checkpoint folders: a ``checkpoint-N`` folder is complete or absent, whenever a crash strikes.

transformers writes a checkpoint file by file straight into ``checkpoint-N`` and deletes old
ones with ``shutil.rmtree``, so a process killed while saving (or rotating) leaves a folder that
``--resume_from_checkpoint true`` picks up (transformers takes the highest-numbered
``checkpoint-N``) with a torn ``model.safetensors``, no ``optimizer.pt`` (silently a fresh
optimizer) or no ``trainer_state.json`` (silently step 0). ``AntiSDTrainer._save_checkpoint``
therefore:

1. removes the ``.tmp-*`` leftovers of an earlier crash (``remove_leftovers``);
2. lets transformers write the checkpoint into ``.tmp-checkpoint-N/checkpoint-N`` (``staging_dir``),
   adds ``antisd_state.json`` (``STATE_FILE``, written last, atomically: ``antisd.files.atomic_write_json``);
3. fsyncs every file and folder and renames the folder to ``checkpoint-N`` in one step (``publish``);
4. only then deletes checkpoints beyond ``save_total_limit`` (``rotate_checkpoints``), each renamed to
   ``.tmp-delete-checkpoint-K`` before its files go (``retire``), so no half-deleted folder keeps a
   checkpoint name.

Names starting with ``.tmp-`` match neither transformers' ``^checkpoint-(\\d+)$`` nor
``last_complete_checkpoint``. Checkpoints written before this scheme (or by another trainer) may be
incomplete; ``last_complete_checkpoint`` takes the newest folder that holds ``STATE_FILE``.

Data order on resume (``ResumeDataOrder``): TRL's ``RepeatSampler`` seeds its generator once and
draws one permutation per epoch, and has no ``set_epoch``; transformers skips the batches of the
current epoch but not the permutations of the epochs before, so a run resumed after its first epoch
would see the problems in the first epoch's order again. The callback draws those permutations
before training starts.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from antisd.files import fsync_dir

logger = logging.getLogger(__name__)

STATE_FILE = "antisd_state.json"
STATE_VERSION = 1
LEFTOVER_PREFIX = ".tmp-"
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def fsync_tree(root: Path) -> None:
    """fsync every file under ``root``, then every folder (deepest first), so a rename of ``root`` publishes
    data that is on disk."""
    folders = []
    for folder, _, files in os.walk(root):
        folders.append(Path(folder))
        for name in files:
            if not os.path.islink(os.path.join(folder, name)):
                fsync_dir(Path(folder) / name)
    for folder in reversed(folders):
        fsync_dir(folder)


def staging_dir(run_dir: str | os.PathLike, name: str) -> Path:
    """The folder transformers writes checkpoint ``name`` into (as ``<staging>/<name>``) before it is published."""
    return Path(run_dir) / f"{LEFTOVER_PREFIX}{name}"


def remove_leftovers(run_dir: str | os.PathLike) -> None:
    """Delete the ``.tmp-*`` folders a crash left in ``run_dir`` (unpublished or half-retired checkpoints)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return
    for path in sorted(run_dir.glob(f"{LEFTOVER_PREFIX}checkpoint-*")) + sorted(run_dir.glob(f"{LEFTOVER_PREFIX}delete-*")):
        if path.is_dir():
            logger.info("Removing %s, left by an interrupted save", path)
            shutil.rmtree(path, ignore_errors=True)


def retire(folder: Path) -> None:
    """Delete a checkpoint folder: first renamed out of the ``checkpoint-N`` namespace, then removed."""
    trash = folder.with_name(f"{LEFTOVER_PREFIX}delete-{folder.name}")
    shutil.rmtree(trash, ignore_errors=True)
    os.replace(folder, trash)
    shutil.rmtree(trash, ignore_errors=True)


def publish(staged: Path, final: Path) -> None:
    """Make the complete checkpoint ``staged`` visible as ``final`` (fsync, one rename, fsync of the parent).

    A ``final`` already there (a step redone after resuming from an older checkpoint) is retired first;
    a crash between the two renames leaves the older checkpoints, never a partial one. The emptied
    staging folder is removed.
    """
    fsync_tree(staged)
    if final.exists():
        retire(final)
    os.replace(staged, final)
    fsync_dir(final.parent)
    shutil.rmtree(staged.parent, ignore_errors=True)


def rotate_checkpoints(run_dir: str | os.PathLike, save_total_limit: int | None,
                       best_model_checkpoint: str | None = None) -> list[str]:
    """transformers' rotation (oldest by mtime first; the newest and the best kept), each deletion through
    ``retire``. Returns the deleted paths."""
    from transformers.trainer_utils import sort_checkpoints

    if not save_total_limit or save_total_limit <= 0:
        return []
    checkpoints = [c for c in sort_checkpoints(str(run_dir), use_mtime=True) if CHECKPOINT_RE.match(Path(c).name)]
    protected = {checkpoints[-1]} if checkpoints else set()
    if best_model_checkpoint is not None:
        protected.add(str(Path(best_model_checkpoint)))
    remaining, deleted = len(checkpoints), []
    for checkpoint in checkpoints:
        if remaining <= max(save_total_limit, len(protected)):
            break
        if checkpoint not in protected:
            retire(Path(checkpoint))
            deleted.append(checkpoint)
            remaining -= 1
    return deleted


def read_state(checkpoint: str | os.PathLike) -> dict[str, Any] | None:
    """The AntiSD state of a checkpoint folder; None when it has no ``STATE_FILE``.

    Raises ValueError naming the file when it is not a JSON object with ``version`` 1 and a
    ``generation_index`` (a damaged checkpoint must not be trusted).
    """
    path = Path(checkpoint) / STATE_FILE
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is damaged ({e}); resume from an earlier checkpoint") from None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION or "generation_index" not in state:
        raise ValueError(f"{path}: expected a JSON object with version {STATE_VERSION} and generation_index, "
                         f"got {str(state)[:80]!r}; resume from an earlier checkpoint")
    return state


def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest ``checkpoint-N`` folder of ``output_dir`` that holds ``STATE_FILE`` (None when there is none)."""
    folders = [(int(m.group(1)), p) for p in Path(output_dir).glob("checkpoint-*")
               if (m := CHECKPOINT_RE.match(p.name)) and (p / STATE_FILE).is_file()]
    return str(max(folders)[1]) if folders else None


def fast_forward_sampler(dataloader: Any, epochs: int) -> bool:
    """Draw `epochs` epochs' permutations from the TRL ``RepeatSampler`` inside a (prepared) dataloader, as
    an uninterrupted run has by then. False when no such sampler is found."""
    from trl.trainer.utils import RepeatSampler

    batch_sampler = getattr(dataloader, "batch_sampler", None)
    for sampler in (getattr(dataloader, "sampler", None), getattr(batch_sampler, "sampler", None),
                    getattr(getattr(batch_sampler, "batch_sampler", None), "sampler", None)):
        if isinstance(sampler, RepeatSampler):
            for _ in range(epochs):
                next(iter(sampler), None)  # its __iter__ draws the epoch's permutation first
            return True
    return False


class ResumeDataOrder(TrainerCallback):
    """At the start of a resumed run (``arm``ed by the trainer when it loads a checkpoint), advance the
    train sampler past the epochs the checkpoint has finished (transformers' own count:
    ``global_step // update steps per epoch``); nothing with ``ignore_data_skip``."""

    def __init__(self) -> None:
        self.armed = False

    def arm(self) -> None:
        self.armed = True

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        if not self.armed or train_dataloader is None or args.ignore_data_skip:
            return
        self.armed = False
        n, accumulation = len(train_dataloader), args.gradient_accumulation_steps
        epochs = state.global_step // max(n // accumulation + int(n % accumulation > 0), 1)
        if epochs and not fast_forward_sampler(train_dataloader, epochs):
            logger.warning("Resuming after %d epoch(s) with a train sampler that is not TRL's RepeatSampler: its "
                           "order for the next epochs may differ from an uninterrupted run's", epochs)
