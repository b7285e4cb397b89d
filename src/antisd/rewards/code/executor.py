"""The `Executor` interface: run the in-sandbox driver on one request within `Limits`, return a `RunResult`.

Two backends implement it: `antisd.rewards.code.sandbox.LocalExecutor` (a local fork server, bubblewrap
where the machine allows) and `antisd.rewards.code.fusion.SandboxFusionExecutor` (a Sandbox Fusion
service). An executor never judges: it returns what the driver (`antisd.rewards.code.driver`) sent back,
read under the caps of `antisd.rewards.code.records` (`reader_for`), with the times this side measured;
verdicts are computed by the caller from the decoded plain data (`antisd.rewards.code.harness`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from antisd.rewards.code.records import Item, RecordReader


@dataclass(frozen=True)
class Limits:
    """Resource limits of one run (all enforced by the kernel or by the trusted side, never by the program)."""

    wall_s: float = 10.0
    memory_bytes: int = 4 << 30  # RLIMIT_AS per process, as EvalPlus; also the run's cgroup total
    file_size_bytes: int = 16 << 20  # RLIMIT_FSIZE: largest file the program may write
    scratch_bytes: int = 64 << 20  # size of the scratch tmpfs (all files together)
    scratch_inodes: int = 4096  # files and directories in the scratch tmpfs (bwrap as root)
    max_processes: int = 32  # RLIMIT_NPROC, and the run's cgroup process cap
    max_open_files: int = 256
    max_record_bytes: int = 1 << 20  # longest record line held; a longer one fails its input
    max_result_bytes: int = 256 << 20  # bytes of records read back before the run is killed
    max_stderr_bytes: int = 8 << 10
    cpus: float = 1.0  # the run's CPU quota (cgroups)
    load_s: float | None = None  # the program must load (define its functions) within this many seconds

    def __post_init__(self) -> None:
        for name in ("wall_s", "memory_bytes", "file_size_bytes", "scratch_bytes", "scratch_inodes",
                     "max_processes", "max_open_files", "max_record_bytes", "max_result_bytes", "cpus"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"Limits.{name}={value!r} must be > 0")


@dataclass
class RunResult:
    """What came back from one run, read under the caps of `antisd.rewards.code.records` (all UNTRUSTED).

    status: "finished" (a final record arrived or the channel closed), "timeout" (killed at the wall
    clock, or at an input's deadline: `killed_at` names that input), "output_limit" (more than
    max_result_bytes of records), "sandbox_error" (the sandbox itself failed: launcher error, service
    error; not the program's fault). items: one entry per input (None: no record came); control:
    the ready/done/load_error/run_error records that arrived.
    """

    status: str
    items: list[Item | None] = field(default_factory=list)
    control: dict[str, Any] = field(default_factory=dict)
    killed_at: int | None = None
    malformed_lines: int = 0
    wall_s: float = 0.0
    returncode: int | None = None
    stderr: str = ""
    message: str = ""

    @property
    def records(self) -> list[dict[str, Any]]:
        """Every record as a decoded JSON object (for tests and diagnostics; the harness reads `items`)."""
        out: list[dict[str, Any]] = [{key: value} for key, value in self.control.items()]
        for item in self.items:
            if item is not None and item.raw is not None:
                try:
                    out.append(json.loads(item.raw))
                except (ValueError, RecursionError):
                    pass
        return out


class Executor(Protocol):
    """Runs the driver on one request within `limits`; never raises for the program's behaviour."""

    name: str

    def run(self, request: dict[str, Any], limits: Limits) -> RunResult: ...


def request_items(request: dict[str, Any]) -> int:
    """How many item records a request asks for (one per input, assertion or check)."""
    key = {"io": "inputs", "expr": "exprs", "check": "checks"}.get(request.get("mode"))  # type: ignore[arg-type]
    if key is None:
        raise ValueError(f"unknown request mode {request.get('mode')!r}")
    return len(request[key])


def reader_for(request: dict[str, Any], limits: Limits) -> RecordReader:
    """The reader of one run's records: its item count, caps and per-input time limits."""
    limits_s = request.get("time_limits") if request.get("mode") == "io" else None
    return RecordReader(request_items(request), max_record_bytes=limits.max_record_bytes,
                        max_total_bytes=limits.max_result_bytes, load_limit_s=limits.load_s,
                        time_limits=[float(t) for t in limits_s] if limits_s else None)
