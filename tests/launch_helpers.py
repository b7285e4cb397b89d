"""Helpers for tests that launch several processes (``accelerate launch``, torchrun, gloo) and for the scripts they
launch.

Test side: ``free_port`` (each launch's own rendezvous port, never torch's default 29500) and ``launch_env`` (the
environment a launched command gets). Launched side: ``leave_process_group``, the exit every multi-process script
ends with (why it is needed: its docstring).
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import sys
import time
from pathlib import Path

# torch.distributed's rendezvous variables. A launcher sets them for its own processes; any the test process
# holds (TRL's vLLM colocate path writes MASTER_ADDR, MASTER_PORT, RANK, LOCAL_RANK and WORLD_SIZE into
# os.environ) must not reach a launched command, whose processes would then depend on which tests ran before.
RENDEZVOUS_VARS = ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE",
                   "GROUP_RANK", "ROLE_RANK", "ROLE_WORLD_SIZE", "TORCHELASTIC_RUN_ID")

# The name torch gives ProcessGroupGloo's worker threads (those that run the collectives).
GLOO_WORKER_THREAD = "pt_gloo_runloop"


def free_port() -> str:
    """A TCP port free on every address now (the kernel's pick), for one launch's rendezvous
    (``--main_process_port``): no launch binds torch's default 29500, which a running job or another launch
    may hold. The port is released before the launcher binds it; another process taking it in between is
    possible, not likely (the kernel does not hand the same port out again at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return str(s.getsockname()[1])


def launch_env(**extra: str) -> dict[str, str]:
    """The environment for a launched command: this process's, less the rendezvous variables, offline, one
    OpenMP thread per process, no tokenizer threads; ``extra`` on top."""
    env = {k: v for k, v in os.environ.items() if k not in RENDEZVOUS_VARS}
    return {**env, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", **extra}


def thread_names() -> list[str]:
    """The names of this process's threads (Linux: /proc/self/task/*/comm); empty where /proc is absent."""
    names = []
    for comm in Path("/proc/self/task").glob("*/comm"):
        try:
            names.append(comm.read_text().strip())
        except OSError:  # the thread ended between the listing and the read
            continue
    return names


def gloo_workers() -> int:
    """How many of gloo's worker threads this process still has."""
    return sum(name == GLOO_WORKER_THREAD for name in thread_names())


def destroy_groups() -> None:
    """Destroy every process group, through ``deepspeed.comm`` where DeepSpeed set torch.distributed up (it then
    also drops the groups it keeps in ``deepspeed.utils.groups``)."""
    import torch.distributed as dist

    comm = sys.modules.get("deepspeed.comm.comm")  # deepspeed.comm re-exports ``cdb`` as it was at import: None
    backend = getattr(comm, "cdb", None)
    if backend is not None and backend.is_initialized():
        comm.destroy_process_group()
    else:
        dist.destroy_process_group()


def exit_unfinalized() -> None:
    """End the process with status 0 without finalizing the interpreter (stdio and logging flushed first; no
    atexit handlers run), as multiprocessing's child processes end."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(0)


def leave_process_group(wait_s: float = 0.5) -> None:
    """End this process's part in torch.distributed so that its exit cannot abort; a no-op outside a group.

    Why (torch 2.13; gdb backtrace of an aborting rank): ProcessGroupGloo runs each collective on a worker
    thread, which drops its reference to the finished work only after the caller's ``wait()`` has returned.
    When that is the last reference to tensors made in Python (all_gather's outputs), dropping it takes the GIL.
    If the main thread is in ``Py_FinalizeEx`` by then, Python ends the worker with ``pthread_exit``, and that
    unwinding through a ``noexcept`` destructor calls ``std::terminate``: "terminate called without an active
    exception", SIGABRT. The window is a worker descheduled between finishing a work and dropping it, so it
    showed on loaded 2-core machines only. Measured here, two processes that all_gather and exit: 7 aborts in 30
    launches; ending with this function instead: none in 40 (20 with the group dropped, 20 with it held).

    So: a barrier, every group destroyed, then a garbage collection, because the workers are joined by a group's
    destructor, which runs only when the last reference to the group goes (call this after the run's objects
    are out of scope). Where workers are still alive ``wait_s`` seconds later, a library keeps a group for the
    life of the process, and the interpreter's finalization would race with them again: the process then ends
    without it (``exit_unfinalized``), saying so on stderr. Seen here with all three launched scripts: a
    DistributedDataParallel keeps its group after the module itself is collected (even a bare
    ``DDP(nn.Linear)``, held from C++: no Python object refers to the group); under FSDP2 torch's DTensor
    redistribution planner cache keeps the device mesh, which holds its group; under DeepSpeed ZeRO-3
    ``deepspeed.runtime.zero.parameter_offload.FWD_MODULE_STACK`` keeps the model, whose parameters hold theirs.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    dist.barrier()
    destroy_groups()
    gc.collect()
    deadline = time.monotonic() + wait_s
    while gloo_workers() and time.monotonic() < deadline:
        time.sleep(0.05)
    if left := gloo_workers():
        print(f"leave_process_group: {left} gloo worker thread(s) outlive destroy_process_group (an object keeps a "
              "process group); exiting without finalizing the interpreter", file=sys.stderr)
        exit_unfinalized()
