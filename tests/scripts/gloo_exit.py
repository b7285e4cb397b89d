"""Exercise ``launch_helpers.leave_process_group`` in two processes of a gloo group (used by
tests/trainer/test_multiprocess.py).

Launched with ``torch.distributed.run --nproc_per_node 2``. Each process runs an all_gather into tensors made
here (the kind of work whose late release aborted the interpreter's exit) and counts gloo's worker threads.
Then process 0 leaves while it still holds the group (its workers outlive the destroy: it must end without
finalizing the interpreter), and process 1 after dropping it (its workers must be gone, and it exits normally).
Writes ``OUT/rank<R>.json`` ({"workers_before", "workers_after"}; process 0 writes no "workers_after") and, from
an atexit handler, which runs only when the interpreter finalizes, ``OUT/rank<R>.finalized``.
usage: gloo_exit.py OUT
"""

import atexit
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from launch_helpers import gloo_workers, leave_process_group  # noqa: E402


def main(out: Path) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    atexit.register((out / f"rank{rank}.finalized").write_text, "")
    held = [dist.group.WORLD] if rank == 0 else []
    outputs = [torch.empty(2) for _ in range(world)]
    dist.all_gather(outputs, torch.full((2,), float(rank)))
    assert [float(t[0]) for t in outputs] == [float(r) for r in range(world)]
    seen = {"workers_before": gloo_workers()}
    (out / f"rank{rank}.json").write_text(json.dumps(seen))
    leave_process_group()  # process 0 does not come back
    seen["workers_after"] = gloo_workers()
    (out / f"rank{rank}.json").write_text(json.dumps(seen))
    del held


if __name__ == "__main__":
    main(Path(sys.argv[1]))
