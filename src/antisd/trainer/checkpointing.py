"""The trainer's checkpoints: crash-safe folders that hold everything a resume needs.

transformers' ``_save_checkpoint`` writes the weights, optimizer, scheduler, RNG states and trainer state; here it
writes them into a staging folder (``antisd.trainer.checkpoints``), ``STATE_FILE`` (the gate's state and the
generation index) is added last, and the folder is fsynced and renamed to ``checkpoint-N`` in one step; older ones
are rotated after. On resume the AntiSD state is read back and the data order put past the finished epochs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from antisd.files import atomic_write_json
from antisd.trainer.checkpoints import (
    STATE_FILE,
    STATE_VERSION,
    ResumeDataOrder,
    publish,
    read_state,
    remove_leftovers,
    rotate_checkpoints,
    staging_dir,
)

logger = logging.getLogger(__name__)


def antisd_state(trainer) -> dict[str, Any]:
    """What ``STATE_FILE`` holds: the generation index and the gate's state."""
    return {"version": STATE_VERSION, "generation_index": trainer.generation_index,
            "gate": None if trainer.gate is None else trainer.gate.state_dict(), "method": trainer.args.method}


def save_checkpoint(trainer, model, trial, save) -> None:
    """Run transformers' checkpoint writer ``save(model, trial)`` into a staging folder, add ``STATE_FILE``,
    publish the folder as ``checkpoint-N`` and rotate older ones."""
    run_dir = Path(trainer._get_output_dir(trial=trial))
    name = f"{PREFIX_CHECKPOINT_DIR}-{trainer.state.global_step}"
    staging = staging_dir(run_dir, name)
    if trainer.args.should_save:
        remove_leftovers(run_dir)
    trainer.accelerator.wait_for_everyone()
    trainer.checkpoint_staging = staging  # transformers writes <its output dir>/checkpoint-N: the staging folder
    try:
        save(model, trial)
    finally:
        trainer.checkpoint_staging = None
    if trainer.args.should_save:
        best = trainer.state.best_model_checkpoint
        if best is not None and Path(best).parent == staging:  # it names the staged copy
            trainer.state.best_model_checkpoint = str(run_dir / Path(best).name)
            trainer.state.save_to_json(str(staging / name / TRAINER_STATE_NAME))
        atomic_write_json(staging / name / STATE_FILE, antisd_state(trainer))
    trainer.accelerator.wait_for_everyone()  # every process's files (RNG states, optimizer shards) are in
    if trainer.args.should_save:
        publish(staging / name, run_dir / name)
        rotate_checkpoints(run_dir, trainer.args.save_total_limit, trainer.state.best_model_checkpoint)


def restore(trainer, checkpoint: str) -> None:
    """After transformers restored the optimizer and scheduler: the data order and the AntiSD state."""
    order = next((cb for cb in trainer.callback_handler.callbacks if isinstance(cb, ResumeDataOrder)), None)
    if order is None:
        order = ResumeDataOrder()
        trainer.add_callback(order)
    order.arm()  # the sampler is past the checkpoint's finished epochs before the first batch
    a = trainer.args
    if (trainer.state.global_step * a.gradient_accumulation_steps) % (a.steps_per_generation * trainer.num_iterations):
        logger.warning("Resuming at step %d, inside a generation batch (steps_per_generation=%d, num_iterations=%d): "
                       "its remaining rollouts are generated anew, so the run will not repeat an uninterrupted "
                       "one exactly", trainer.state.global_step, a.steps_per_generation, trainer.num_iterations)
    state = read_state(checkpoint)  # None without STATE_FILE; a damaged file raises, naming it
    if state is not None:
        trainer.generation_index = int(state["generation_index"])
    if state is None or a.reset_gate_on_resume:
        if a.reset_gate_on_resume:
            logger.info("Resuming with a fresh gate warm-up (reset_gate_on_resume=True).")
        elif trainer.gate is not None:
            logger.warning("%s has no %s (a checkpoint of another trainer, or an incomplete one of an older "
                           "antisd): the gate starts a fresh warm-up; set reset_gate_on_resume=true to say so",
                           checkpoint, STATE_FILE)
        return
    if trainer.gate is not None and state.get("gate") is not None:
        trainer.gate.load_state_dict(state["gate"])
    logger.info("Restored AntiSD state from %s (generation %d).", checkpoint, trainer.generation_index)
