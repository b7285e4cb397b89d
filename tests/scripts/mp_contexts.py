"""Run 1 generation step of AntiSD and dump the teacher contexts (used by tests/trainer/test_multiprocess.py).

Launched as a single process or with ``accelerate launch --multi_gpu --num_processes 2`` (gloo on a CPU
machine); greedy decoding (top_k=1) makes the completions independent of the process layout. A launched
process leaves the process group before exiting (``launch_helpers.leave_process_group``).
usage: mp_contexts.py MODEL_PATH OUTPUT_DIR PER_DEVICE_BATCH
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from launch_helpers import leave_process_group  # noqa: E402
from trainer_helpers import make_trainer, toy_rows  # noqa: E402


def prompt_reward(prompts, completions, answer, **kwargs):
    """Correct for odd answers: groups are all-correct (siblings) or all-wrong (dataset/answer)."""
    return [float(int(a) % 2 == 1) for a in answer]


def main(model_path: str, out_dir: str, per_device: int) -> None:
    """One training step; the run's objects go with this frame, before leave_process_group."""
    dist = {"ddp_backend": "gloo"} if int(os.environ.get("WORLD_SIZE", "1")) > 1 else {}
    tr = make_trainer(model_path, out_dir, rows=toy_rows(12), reward=prompt_reward, method="antisd",
                      per_device_train_batch_size=per_device, num_generations=4, max_steps=1, top_k=1,
                      dump_rollouts_every=1, gate="none", use_cpu=True, **dist)
    tr.train()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
    leave_process_group()
