"""Verification worker processes with a hard deadline, for checks off the main thread.

A `VerifierPool` sends each (gold, pred) pair to a persistent worker process (``python -P
checker.py``, so the worker imports math-verify but not the antisd package or torch). The
worker runs the same timed in-process check as the main thread (soft deadline, no restart); the
parent waits at most ``timeout_s + grace_s`` for the reply and otherwise kills the worker (hard
deadline, which also covers hangs in C code and crashes) and starts a fresh one on the next
call. Workers are plain subprocesses (not `multiprocessing`), so they also work inside daemonic
DataLoader workers, and a pool notices a fork and never talks to its parent's workers.
"""

from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
import weakref

from antisd.rewards import checker
from antisd.rewards.checker import Outcome

logger = logging.getLogger(__name__)

WORKER_SCRIPT = os.path.abspath(checker.__file__)
"""The worker's script: ``antisd.rewards.checker`` run as ``python -P`` (no antisd, no torch)."""


def _kill_process(proc: subprocess.Popen[bytes], owner_pid: int) -> None:
    """Kill and reap `proc`; a forked child that does not own it only closes its pipe copies."""
    if os.getpid() == owner_pid:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()


class _Worker:
    """One ``python -P checker.py`` process speaking JSON lines on stdin/stdout."""

    def __init__(self, startup_timeout_s: float) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-P", WORKER_SCRIPT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,  # a Ctrl-C in the terminal does not kill it mid-call
        )
        self._owner_pid = os.getpid()
        self._buffer = b""
        self._finalizer = weakref.finalize(self, _kill_process, self._proc, self._owner_pid)
        try:
            ready = self._read_line(time.monotonic() + startup_timeout_s)
        except EOFError:
            ready = None
        if ready is None:
            self.kill()
            raise RuntimeError(
                f"reward worker ({sys.executable} -P {WORKER_SCRIPT}) did not start within "
                f"startup_timeout_s={startup_timeout_s}; is math-verify importable there?"
            )

    @property
    def pid(self) -> int:
        return self._proc.pid

    def alive(self) -> bool:
        return self._proc.poll() is None and os.getpid() == self._owner_pid

    def kill(self) -> None:
        self._finalizer()

    def verify(self, gold: str, pred: str, timeout_s: float, grace_s: float) -> Outcome:
        """Send one pair; kill the worker if no reply within timeout_s + grace_s."""
        request = json.dumps({"gold": gold, "pred": pred, "timeout_s": timeout_s}).encode() + b"\n"
        deadline = time.monotonic() + timeout_s + grace_s
        line = self._read_line(deadline) if self._write_all(request, deadline) else None
        if line is None:
            logger.warning("reward worker %d missed its deadline of %.1f s; restarting it", self.pid, timeout_s + grace_s)
            self.kill()
            return Outcome.TIMEOUT
        return Outcome(json.loads(line)["outcome"])

    def _write_all(self, data: bytes, deadline: float) -> bool:
        """Write `data` to the worker's stdin; False at the deadline (a stuck worker)."""
        assert self._proc.stdin is not None
        fd = self._proc.stdin.fileno()
        view = memoryview(data)
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([], [fd], [], remaining)[1]:
                return False
            view = view[os.write(fd, view[: select.PIPE_BUF]) :]
        return True

    def _read_line(self, deadline: float) -> bytes | None:
        """Next line from the worker, or None at the deadline; EOFError if it exited."""
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise EOFError(f"reward worker {self.pid} exited with code {self._proc.poll()}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line


class VerifierPool:
    """Persistent verification worker processes, each call under a hard deadline.

    A call takes an idle worker (or starts one, ~1.5 s), so concurrent callers get their own
    processes; at most `max_idle` idle workers are kept. Safe to share between threads, and
    after a fork the child starts its own workers. Close it (or use ``with``) when done;
    idle workers also exit when this process exits (their stdin closes).
    """

    def __init__(self, max_idle: int = 4, grace_s: float = 2.0, startup_timeout_s: float = 120.0) -> None:
        if max_idle < 0 or grace_s < 0 or startup_timeout_s <= 0:
            raise ValueError(
                f"max_idle={max_idle} and grace_s={grace_s} must be >= 0 and "
                f"startup_timeout_s={startup_timeout_s} > 0"
            )
        self.max_idle = max_idle
        self.grace_s = grace_s
        self.startup_timeout_s = startup_timeout_s
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def verify(self, gold: str, pred: str, timeout_s: float) -> Outcome:
        """Outcome of parsing and comparing in a worker (raises only if no worker starts).

        An idle worker found dead mid-call (killed while it waited) is replaced and the pair
        retried; a freshly started worker that dies gives `Outcome.ERROR` (the input may be
        what kills it).
        """
        while True:
            worker, fresh = self._acquire()
            try:
                return worker.verify(gold, pred, timeout_s, self.grace_s)
            except (OSError, EOFError) as error:
                logger.warning("reward worker %d died (%s)%s", worker.pid, error, "" if fresh else "; retrying")
                worker.kill()
                if fresh:
                    return Outcome.ERROR
            except (ValueError, KeyError) as error:  # a garbled reply
                logger.warning("reward worker %d sent a bad reply (%s); restarting it", worker.pid, error)
                worker.kill()
                return Outcome.ERROR
            finally:
                self._release(worker)

    def worker_pids(self) -> list[int]:
        """Pids of the idle workers (for tests and monitoring)."""
        with self._lock:
            return [worker.pid for worker in self._idle]

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.kill()

    def __enter__(self) -> VerifierPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _acquire(self) -> tuple[_Worker, bool]:
        """An idle worker (False) or a freshly started one (True)."""
        if os.getpid() != self._pid:  # forked: the idle workers belong to the parent
            for inherited in self._idle:
                inherited.kill()  # closes this process's copies of its pipes, nothing more
            self._idle, self._lock, self._pid = [], threading.Lock(), os.getpid()
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.alive():
                    return worker, False
                worker.kill()
        return _Worker(self.startup_timeout_s), True

    def _release(self, worker: _Worker) -> None:
        with self._lock:
            if worker.alive() and len(self._idle) < self.max_idle and os.getpid() == self._pid:
                self._idle.append(worker)
                return
        worker.kill()


_default_pool: VerifierPool | None = None


def default_pool() -> VerifierPool:
    """The process-wide pool used off the main thread when no pool is passed (made lazily).

    Unlocked on purpose (a lock held across a fork would deadlock the child): two threads
    racing here may each make a pool; the loser's workers die with it when it is collected.
    """
    global _default_pool
    if _default_pool is None:
        _default_pool = VerifierPool()
    return _default_pool
