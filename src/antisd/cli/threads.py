"""CPU threads of an antisd process: as many as the cores it may use, waiting without spinning.

torch computes on CPU with an OpenMP pool (libgomp in the pip wheels) and MKL. By default the pool has
one thread per core of the machine, and a thread that waits at the end of a parallel region spins
(busy-waits) before it sleeps. On a machine shared with other jobs that is the worst case: the threads
spin while the thread they wait for sits preempted behind another process, and the run burns several
times its CPU time (the main job took 49 min of CPU beside three other jobs, ~10x its idle cost).

``configure_env`` (called by ``antisd.cli.main.main`` before torch is imported) sets, unless already set:

    OMP_NUM_THREADS, MKL_NUM_THREADS   the thread count below
    OMP_WAIT_POLICY=PASSIVE            an idle OpenMP thread sleeps at once (libgomp: no spin)
    KMP_BLOCKTIME=0                    the same for Intel's OpenMP runtime, when torch uses that one
    TOKENIZERS_PARALLELISM=false       no second pool of tokenizer threads

and ``apply`` calls ``torch.set_num_threads``. The thread count: ``--threads N`` of every antisd
command, else ``$ANTISD_THREADS``, else ``$OMP_NUM_THREADS``, else the CPUs this process may run on
(``os.sched_getaffinity``, lowered to a cgroup CPU quota when one is set). ``ANTISD_THREADS=off`` (or ``--threads off``)
leaves every setting to torch and OpenMP. A variable the user set beforehand always wins.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

logger = logging.getLogger(__name__)

ENV = "ANTISD_THREADS"
OFF_WORDS = ("off", "none")
_applied: int | None = None


def cgroup_cpu_limit(root: str | Path = "/sys/fs/cgroup") -> float | None:
    """CPUs allowed by this process's cgroup CPU quota (v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``), or None."""
    root = Path(root)
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def available_cpus() -> int:
    """The CPUs this process may use: its affinity mask, lowered to the cgroup's CPU quota (rounded up)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        n = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    if limit is not None:
        n = min(n, max(1, math.ceil(limit)))
    return max(1, n)


def requested(value: str | int | None = None) -> int | None:
    """The thread count asked for: `value` (``--threads``), else ``$ANTISD_THREADS``, else the available
    CPUs; None for ``off`` (leave torch's defaults). A bad value raises ValueError naming it."""
    where = "--threads"
    if value is None:
        value, where = os.environ.get(ENV), ENV
    if value is None and os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        return int(os.environ["OMP_NUM_THREADS"])  # the user's own setting wins
    if value is None or str(value).strip() == "" or str(value).lower() == "auto":
        return available_cpus()
    if str(value).lower() in OFF_WORDS:
        return None
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"{where}={value!r} is not valid; expected a number of threads >= 1, auto or off") from None
    if n < 1:
        raise ValueError(f"{where}={value!r} is not valid; expected a number of threads >= 1, auto or off")
    return n


def configure_env(threads: int | None) -> dict[str, str]:
    """Set the thread variables of the module docstring that are not set yet, before torch is imported
    (OpenMP reads them when it loads). Returns the variables it set."""
    if threads is None:
        return {}
    wanted = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE",
              "KMP_BLOCKTIME": "0", "TOKENIZERS_PARALLELISM": "false"}
    done = {k: v for k, v in wanted.items() if k not in os.environ}
    os.environ.update(done)
    return done


def apply(threads: int | None, *, log: bool = True) -> int | None:
    """``torch.set_num_threads(threads)`` (None: leave torch's setting); logs the setting once per process.
    Returns the thread count torch uses, or None when left alone."""
    global _applied
    import torch

    if threads is None:
        if log and _applied is None:
            logger.info("CPU threads: left to torch (%s=off): %d", ENV, torch.get_num_threads())
        _applied = -1
        return None
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    if log and _applied != threads:
        wait = os.environ.get("OMP_WAIT_POLICY", "torch's default (spinning)")
        logger.info("CPU threads: %d (of %d CPUs this process may use; --threads or %s to change), OpenMP wait "
                    "policy %s", threads, available_cpus(), ENV, wait)
    _applied = threads
    return threads


def setup(value: str | int | None = None) -> int | None:
    """``configure_env`` + ``apply`` for the thread count ``requested(value)``: what ``antisd.cli.main.main`` runs."""
    threads = requested(value)
    configure_env(threads)
    return apply(threads)


def pop_threads_flag(argv: list[str]) -> tuple[list[str], str | None]:
    """(`argv` without ``--threads N`` / ``--threads=N``, N or None). A ``--threads`` with no value raises
    ValueError."""
    rest: list[str] = []
    value = None
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--threads":
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                raise ValueError("--threads needs a value: a number of threads, auto or off")
            value = argv[i + 1]
            i += 2
            continue
        if arg.startswith("--threads="):
            value = arg.split("=", 1)[1]
        else:
            rest.append(arg)
        i += 1
    return rest, value
