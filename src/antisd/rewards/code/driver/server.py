"""Inside the sandbox: the fork server (stdlib only; started by `antisd.rewards.code.forkserver`).

A warm interpreter with the usual standard-library modules (``PREIMPORT``) imported once. For each program
the trusted side sends a request and two pipe ends (records, stderr) over a Unix socket (frames: a 4-byte
big-endian length, then JSON; the fds travel with a frame's first bytes); the server forks ONE fresh child
that gets its own session, scratch directory, rlimits, uid (when the server is root), the seccomp filter
of `antisd.rewards.code.seccomp`, and runs the program (`antisd.rewards.code.driver.program`). On "end"
the server kills the child's group and everything else the program left (as PID 1 of the sandbox's own
PID namespace: ``kill(-1)`` until nothing is left; without one, by uid), removes the scratch and reports
the exit status. Nothing survives from one program to the next.
"""

import gc
import json
import os
import signal
import time

from antisd.rewards.code.driver.program import apply_limits, describe, run_request

PREIMPORT = ("re", "collections", "itertools", "functools", "heapq", "bisect", "string", "typing", "operator",
             "copy", "random", "statistics", "fractions", "decimal", "datetime", "array", "shutil", "socket",
             "struct", "ctypes", "resource", "cmath", "textwrap", "unicodedata", "hashlib", "dataclasses")
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, PR_SET_CHILD_SUBREAPER = 1, 38, 22, 36
SECCOMP_MODE_FILTER = 2
MS_NOSUID, MS_NODEV, MNT_DETACH = 2, 4, 2


def _send(sock, message):
    data = json.dumps(message).encode()
    sock.sendall(len(data).to_bytes(4, "big") + data)


def _recv_exact(sock, n):
    chunks = bytearray()
    while len(chunks) < n:
        chunk = sock.recv(min(n - len(chunks), 1 << 20))
        if not chunk:
            raise EOFError
        chunks += chunk
    return bytes(chunks)


def _recv_frame(sock):
    """(message, fds) of the next frame; (None, []) at EOF. fds arrive with the frame's first bytes."""
    import socket

    try:
        head, fds, _, _ = socket.recv_fds(sock, 4, 4)
    except ConnectionResetError:
        return None, []
    if not head:
        return None, []
    head += _recv_exact(sock, 4 - len(head))
    return json.loads(_recv_exact(sock, int.from_bytes(head, "big"))), fds


def _libc():
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return libc


def _seccomp_program(program):
    """The seccomp filter (hex of struct sock_filter bytes) as a ``struct sock_fprog`` built once in the server,
    so that each child only makes the two prctl calls: (fprog, the buffer it points to) or None."""
    import ctypes

    if not program:
        return None
    code = bytes.fromhex(program)
    buf = ctypes.create_string_buffer(code, len(code))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    return SockFprog(len(code) // 8, ctypes.cast(buf, ctypes.c_void_p)), buf


def _lockdown(libc, fprog):
    """no_new_privs, then the seccomp filter (`_seccomp_program`), for this process and its children."""
    import ctypes

    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if fprog is not None:
        if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog[0]), 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")


def _make_scratch(config, spec, libc, n):
    """A fresh scratch directory for program `n`: its own size- and inode-capped tmpfs where the
    server may mount one (root in its own mount namespace), else a directory; owned by the run's uid."""
    path = os.path.join(config["scratch_root"], "r%d" % n)
    os.mkdir(path, 0o700)
    mounted = False
    if config.get("mount_scratch"):
        options = "size=%d,nr_inodes=%d,mode=0700" % (spec["scratch_bytes"], spec["scratch_inodes"])
        mounted = libc.mount(b"tmpfs", path.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options.encode()) == 0
    if spec.get("uid") is not None:
        os.chown(path, int(spec["uid"]), int(spec["gid"]))
    return path, mounted


def _drop_scratch(path, mounted, libc):
    import shutil

    if mounted and libc.umount2(path.encode(), MNT_DETACH) == 0:
        os.rmdir(path)
        return

    def unlock(function, name, excinfo):  # a program may leave directories without permissions
        os.chmod(os.path.dirname(name), 0o700)
        os.chmod(name, 0o700) if os.path.isdir(name) else None
        function(name)

    shutil.rmtree(path, onerror=unlock)


def _oom_score_adj():
    """This process's OOM-killer adjustment (the server may start protected, -1000; its programs never are)."""
    try:
        with open("/proc/self/oom_score_adj") as handle:
            return int(handle.read())
    except (OSError, ValueError):
        return 0


def _child(server, spec, body, fds, scratch):
    """In the forked child: isolate, then run the program. Never returns."""
    result_fd, err_fd = fds
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.dup2(err_fd, 2)
    os.dup2(result_fd, 3)
    os.closerange(4, 1 << 16)
    os.chdir(scratch)
    os.environ.clear()
    os.environ.update({"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": scratch, "TMPDIR": scratch})
    if server["protected"]:  # the server's protection must not pass on (raising it is always allowed)
        with open("/proc/self/oom_score_adj", "w") as handle:
            handle.write("0")
    apply_limits(spec)
    _lockdown(server["libc"], server["seccomp"])
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)
    run_request(json.loads(body), 3)


def _stop(pid):
    """Kill the program's process group and reap its first process; return its exit status."""
    for target in (-pid, pid):
        try:
            os.kill(target, signal.SIGKILL)
        except OSError:
            pass
    try:
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    except ChildProcessError:
        return None


def _sweep(config, spec):
    """Kill everything else the program left (whatever session or group it moved to), and reap."""
    if config.get("sweep") == "namespace" and os.getpid() == 1:  # init of a private PID namespace: kill(-1) reaches all of it
        for _ in range(100000):
            try:
                os.kill(-1, signal.SIGKILL)
            except ProcessLookupError:
                break
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                time.sleep(0.001)
    elif spec.get("uid") is not None:  # no PID namespace, but the run had a uid of its own
        sweeper = os.fork()
        if sweeper == 0:
            try:
                os.setuid(int(spec["uid"]))
                for _ in range(3):
                    os.kill(-1, signal.SIGKILL)
                    time.sleep(0.002)
            finally:
                os._exit(0)
        os.waitpid(sweeper, 0)
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                break
        except ChildProcessError:
            break


def serve(config):
    """The fork server's loop (module docstring). Exits when the trusted side closes the socket."""
    import socket

    libc = _libc()
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    protected = _oom_score_adj() < 0
    for name in PREIMPORT:
        try:
            __import__(name)
        except BaseException:  # noqa: BLE001 - a module this interpreter lacks
            pass
    server = {"libc": libc, "protected": protected, "seccomp": _seccomp_program(config.get("seccomp"))}
    # Everything the server holds now goes to the permanent generation: a child's garbage collections
    # never walk (and so never copy-on-write) the pages of the modules it inherited.
    gc.freeze()
    sock = socket.socket(fileno=int(config["control_fd"]))
    _send(sock, {"op": "ready", "oom_protected": bool(protected)})
    running, error, count = None, None, 0
    while True:
        message, fds = _recv_frame(sock)
        if message is None:
            return
        if message["op"] == "run":
            body = _recv_exact(sock, int(message["size"]))
            count += 1
            try:
                scratch, mounted = _make_scratch(config, message["child"], libc, count)
            except OSError as exc:
                error = "scratch directory: " + describe(exc)
                for fd in fds:
                    os.close(fd)
                continue
            pid = os.fork()
            if pid == 0:
                try:
                    sock.close()
                    _child(server, message["child"], body, fds, scratch)
                finally:
                    os._exit(0)
            for fd in fds:
                os.close(fd)
            running = (pid, message["child"], scratch, mounted)
        elif message["op"] == "end":  # answer once the program is dead; clean up before the next request
            returncode = None if running is None else _stop(running[0])
            _send(sock, {"op": "ended", "id": message["id"], "returncode": returncode, "error": error})
            if running is not None:
                _, spec, scratch, mounted = running
                _sweep(config, spec)
                _drop_scratch(scratch, mounted, libc)
            running, error = None, None
