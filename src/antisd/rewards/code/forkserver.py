"""The trusted side of the sandbox's fork server: start it, run one program through it, read the
records with deadlines kept here, end the program.

One `ForkServer` per executor per process (each scoring worker has its own). It starts
`antisd.rewards.code.driver` in serve mode once, inside bubblewrap or as a plain process, optionally in a
cgroup of its own (`antisd.rewards.code.cgroup.RunGroup`: total memory, process count and a CPU quota for
the server and the one program it runs). Each program then costs a fork of a warm interpreter
instead of an interpreter start. A program is given two fresh pipes (records, stderr) over the
server's Unix socket; this side reads them with `antisd.rewards.code.records.RecordReader` until the final
record, end of file, the wall clock, the per-input deadline or the output cap, then asks the server
to end the program (kill its group and everything it left, drop its scratch) and waits for that.
A server that stops answering is killed whole and started again for the next program.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

from antisd.rewards.code.records import RecordReader

START_TIMEOUT_S = 30.0
END_TIMEOUT_S = 10.0
_SH_JOIN = ('n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 97; shift; n=$((n - 1)); done; '
            '[ "$1" = oom ] && echo -1000 > /proc/self/oom_score_adj; shift; exec "$@"')


class ServerError(OSError):
    """The fork server could not be started or stopped answering."""


@dataclass
class Outcome:
    """What one program run produced: the reader (records, timing), how it ended, and stderr."""

    reader: RecordReader
    status: str  # finished | timeout | output_limit | sandbox_error
    killed_at: int | None = None  # the input that overran its time limit, when that ended the run
    returncode: int | None = None
    stderr: bytes = b""
    wall_s: float = 0.0
    message: str = ""


@dataclass
class ForkServer:
    """A running fork server (module docstring). `argv` starts the driver with `config` appended
    as JSON after its control fd is known; `env`/`cwd` are the launch environment."""

    argv: list[str]
    config: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = "/"
    join_files: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    sock: socket.socket | None = None
    info: dict[str, Any] = field(default_factory=dict)
    _ids: int = 0

    def start(self) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        config = dict(self.config, control_fd=child.fileno())
        argv = self.argv + [json.dumps(config)]
        if self.join_files:  # join the cgroups before bwrap forks; as root, ask the OOM killer to spare the server
            oom = "oom" if self.config.get("oom_protect") else "-"
            argv = ["/bin/sh", "-c", _SH_JOIN, "sh", str(len(self.join_files)), *self.join_files, oom, *argv]
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE, pass_fds=(child.fileno(),), env=self.env,
                                         cwd=self.cwd, start_new_session=True, close_fds=True)
        finally:
            child.close()
        self.sock = parent
        ready, _ = self._read_message(time.monotonic() + START_TIMEOUT_S)
        if ready is None or ready.get("op") != "ready":
            err = self._stderr_tail()
            self.close()
            raise ServerError(f"the sandbox's fork server did not start: {err or 'no answer'}")
        self.info = ready
        assert self.proc.stderr is not None
        self.proc.stderr.close()  # from here the server writes nothing; the programs' stderr has its own pipe

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and self.sock is not None

    def _stderr_tail(self) -> str:
        if self.proc is None or self.proc.stderr is None or self.proc.stderr.closed:
            return ""
        try:
            self.proc.kill()
            return self.proc.stderr.read(4096).decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""

    def _read_message(self, deadline: float) -> tuple[dict[str, Any] | None, str]:
        """The server's next message, or (None, why) at EOF, on a malformed frame or at `deadline`."""
        assert self.sock is not None
        data = bytearray()
        need = 4
        while len(data) < need:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                return None, "timed out"
            chunk = self.sock.recv(need - len(data))
            if not chunk:
                return None, "closed"
            data += chunk
            if need == 4 and len(data) == 4:
                need = 4 + int.from_bytes(data, "big")
                if need > 1 << 20:
                    return None, "oversized frame"
        try:
            return json.loads(bytes(data[4:])), ""
        except ValueError:
            return None, "malformed frame"

    def run(self, request: bytes, child: dict[str, Any], reader: RecordReader, wall_s: float,
            max_stderr_bytes: int) -> Outcome:
        """Run one program: send it, read its records under the deadlines, end it (module docstring)."""
        if not self.alive:
            self.start()
        assert self.sock is not None
        self._ids += 1
        run_id = self._ids
        rec_r, rec_w = os.pipe()
        err_r, err_w = os.pipe()
        start = time.monotonic()
        reader.begin(start)
        try:
            header = json.dumps({"op": "run", "id": run_id, "child": child, "size": len(request)}).encode()
            socket.send_fds(self.sock, [len(header).to_bytes(4, "big") + header], [rec_w, err_w])
            os.close(rec_w)
            os.close(err_w)
            rec_w = err_w = -1
            self.sock.sendall(request)
            outcome = _read_run(reader, rec_r, err_r, self.sock, start + wall_s, max_stderr_bytes)
        except OSError as exc:
            self.close()
            return Outcome(reader, "sandbox_error", wall_s=time.monotonic() - start,
                           message=f"the sandbox's fork server failed: {exc}")
        finally:
            for fd in (rec_r, err_r, rec_w, err_w):
                if fd >= 0:
                    os.close(fd)
        outcome.wall_s = time.monotonic() - start
        ended = self._end(run_id)
        if ended is None:
            outcome.status, outcome.message = "sandbox_error", "the sandbox's fork server stopped answering"
        else:
            outcome.returncode = ended.get("returncode")
            if ended.get("error"):
                outcome.status, outcome.message = "sandbox_error", str(ended["error"])[:300]
        return outcome

    def _end(self, run_id: int) -> dict[str, Any] | None:
        try:
            header = json.dumps({"op": "end", "id": run_id}).encode()
            assert self.sock is not None
            self.sock.sendall(len(header).to_bytes(4, "big") + header)
            message, _ = self._read_message(time.monotonic() + END_TIMEOUT_S)
        except OSError:
            message = None
        if message is None or message.get("op") != "ended" or message.get("id") != run_id:
            self.close()
            return None
        return message

    def close(self) -> None:
        """Kill the server and everything in its process group (its programs included)."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            if self.proc.stderr is not None and not self.proc.stderr.closed:
                self.proc.stderr.close()
            self.proc = None


def _read_run(reader: RecordReader, rec_fd: int, err_fd: int, sock: socket.socket, wall_deadline: float,
              max_stderr_bytes: int) -> Outcome:
    """Read records and stderr until the final record, EOF, a deadline, the output cap or the server's death."""
    fds = {rec_fd, err_fd, sock.fileno()}
    err = bytearray()
    status, killed_at = "finished", None
    while rec_fd in fds:
        now = time.monotonic()
        deadline = reader.deadline()
        if now >= wall_deadline:
            status = "timeout"
            break
        if deadline is not None and now >= deadline:
            status, killed_at = "timeout", reader.next_index if "ready" in reader.control else None
            break
        wait = min(wall_deadline, deadline if deadline is not None else wall_deadline) - now
        ready, _, _ = select.select(list(fds), [], [], wait)
        now = time.monotonic()
        for fd in ready:
            if fd == sock.fileno():
                return Outcome(reader, "sandbox_error", stderr=bytes(err),
                               message="the sandbox's fork server ended during the run")
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                fds.discard(fd)
            elif fd == err_fd:
                err += chunk[: max(0, max_stderr_bytes - len(err))]
            else:
                reader.feed(chunk, now)
        if reader.over_limit:
            status = "output_limit"
            break
        if reader.final:
            break
    return Outcome(reader, status, killed_at=killed_at, stderr=bytes(err))
