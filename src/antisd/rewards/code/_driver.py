"""The program that runs INSIDE the sandbox (stdlib only; its source is passed with ``python -I -S -c``).

It is also imported by the trusted side for the plain-data codec (`encode`, `decode`), so the two
sides share one definition of the wire format.

Two ways to start it, by the JSON config in ``argv[1]``:

- **fork server** (``{"serve": true, ...}``, `antisd.rewards.code.forkserver`): a warm interpreter with the
  usual standard-library modules imported once. For each program the trusted side sends a request
  and two pipe ends (records, stderr) over a Unix socket; the server forks ONE fresh child that
  gets its own session, scratch directory, rlimits, uid (when the server is root), the seccomp
  filter of `antisd.rewards.code.seccomp`, and runs the program. On "end" the server kills the child's
  group and everything else the program left (as PID 1 of the sandbox's own PID namespace:
  ``kill(-1)`` until nothing is left; without one, by uid), removes the scratch and reports the
  exit status. Nothing survives from one program to the next.
- **one shot** (no ``serve``; the Sandbox Fusion backend): the request on stdin, records to
  ``result_fd`` or ``result_file``.

Request (one JSON object)::

    {"mode": "io" | "expr" | "check", "program": str, "setup": str, ...}

- ``io`` (EvalPlus style): ``entry_point``, ``inputs`` (encoded argument lists, all decoded before
  the program loads), ``time_limits`` (seconds per input; a cooperative SIGALRM here, while the
  trusted side measures each input's time itself and kills the run when one overruns), ``not_none``
  (null, ``"always"`` or ``"unless_bool"``: report ``out is not None`` instead of out, as EvalPlus
  does for three MBPP tasks). Records ``{"i": k, "out": enc, "t": s}`` / ``{"i": k, "err": "..."}`` /
  ``{"i": k, "timeout": true}``.
- ``expr`` (assertion tests): ``exprs``, per test a list of expression sources (the calls of the
  function under test); records ``{"i": k, "vals": [enc, ...]}`` / ``{"i": k, "err": ...}``.
- ``check`` (the trusted step; no candidate code in this process): ``checks``, per test
  ``{"expr": src, "values": [enc, ...]}``; ``src`` reads the values as ``__antisd_v[j]``; records
  ``{"i": k, "ok": bool}``.

First record: ``{"ready": true}`` once program and setup ran, or ``{"load_error": "..."}``;
last: ``{"done": true}``. Records are written in input order, the index first. Nothing here
decides a verdict, and nothing here is trusted: untrusted code can overwrite anything in this
process, so the parent reads every record as untrusted input (`antisd.rewards.code.records`).
"""

import gc
import json
import math
import os
import signal
import sys
import time

MAX_DEPTH = 100
MAX_SHARED_HASH = 32
_INT_JSON_LIMIT = 1 << 63  # ints at least this large travel as hex (no int/str digit limit on base 16)
PREIMPORT = ("re", "collections", "itertools", "functools", "heapq", "bisect", "string", "typing", "operator",
             "copy", "random", "statistics", "fractions", "decimal", "datetime", "array", "shutil", "socket",
             "struct", "ctypes", "resource", "cmath", "textwrap", "unicodedata", "hashlib", "dataclasses")


class EncodeError(ValueError):
    """A value that is not plain data (or nests deeper than MAX_DEPTH)."""


def _encode_float(x):
    if math.isfinite(x):
        return x
    return {"f": "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")}


def encode(x, depth=0):
    """Plain value -> JSON-able, type-tagged: None, bool, int (hex when huge), float (non-finite
    tagged), str, list; tuple {"t"}, set {"S"}, frozenset {"F"}, dict {"d": [[k, v], ...]},
    complex {"c": [re, im]}, bytes {"b": hex}. Subclasses are stored as their base type; anything
    else raises EncodeError."""
    if depth > MAX_DEPTH:
        raise EncodeError("value nests deeper than %d" % MAX_DEPTH)
    t = type(x)
    if x is None or t is bool or t is str:
        return x
    if t is int:
        return x if -_INT_JSON_LIMIT < x < _INT_JSON_LIMIT else {"i": format(x, "x")}
    if t is float:
        return _encode_float(x)
    if t is list:
        return [encode(v, depth + 1) for v in x]
    if t is tuple:
        return {"t": [encode(v, depth + 1) for v in x]}
    if t is dict:
        return {"d": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in x.items()]}
    if t is set:
        return {"S": [encode(v, depth + 1) for v in x]}
    if t is frozenset:
        return {"F": [encode(v, depth + 1) for v in x]}
    if t is complex:
        return {"c": [_encode_float(x.real), _encode_float(x.imag)]}
    if t is bytes:
        return {"b": x.hex()}
    for base in (bool, int, float, str, list, tuple, dict, set, frozenset, complex, bytes):
        if isinstance(x, base):  # a subclass (Counter, OrderedDict, IntEnum, ...): store the base value
            return encode(base(x) if base is not bool else bool(int(x)), depth)
    raise EncodeError("not plain data: %s" % t.__name__)


def checked_hashes(values):
    """`values`, after checking that at most MAX_SHARED_HASH of them share one hash.

    Building a set or dict from n values with one hash costs n**2 comparisons; values a program
    chose can do that on purpose (ints equal modulo 2**61 - 1 share a hash). Sorting the hashes
    costs n log n and refuses such input before any hash table is built. A real set's distinct
    elements practically never share a 64-bit hash 32 times."""
    hashes = sorted(hash(v) for v in values)
    run = 1
    for a, b in zip(hashes, hashes[1:]):
        run = run + 1 if a == b else 1
        if run > MAX_SHARED_HASH:
            raise ValueError("more than %d values share one hash" % MAX_SHARED_HASH)
    return values


def _decode_float(v):
    if type(v) in (int, float):
        return float(v)
    if type(v) is dict and v.get("f") in ("nan", "inf", "-inf"):
        return float(v["f"])
    raise ValueError("bad float %r" % (str(v)[:80],))


def _decode_dict(v, depth):
    pairs = [(decode(k, depth), decode(e, depth)) for k, e in v]
    checked_hashes([k for k, _ in pairs])
    return dict(pairs)


_SCALAR_TAGS = ("i", "f", "b")
_TAGGED = {
    "t": lambda v, d: tuple(decode(e, d) for e in v),
    "S": lambda v, d: set(checked_hashes([decode(e, d) for e in v])),
    "F": lambda v, d: frozenset(checked_hashes([decode(e, d) for e in v])),
    "d": _decode_dict,
    "i": lambda v, d: int(v, 16),
    "f": lambda v, d: _decode_float({"f": v}),
    "c": lambda v, d: complex(_decode_float(v[0]), _decode_float(v[1])),
    "b": lambda v, d: bytes.fromhex(v),
}


def decode(obj, depth=0):
    """Inverse of `encode`; raises ValueError/TypeError on anything malformed, nested deeper than
    MAX_DEPTH, or built to collide in a hash table (`checked_hashes`)."""
    if depth > MAX_DEPTH:
        raise ValueError("value nests deeper than %d" % MAX_DEPTH)
    t = type(obj)
    if obj is None or t in (bool, int, float, str):
        return obj
    if t is list:
        return [decode(e, depth + 1) for e in obj]
    if t is dict and len(obj) == 1:
        (tag, value), = obj.items()
        if tag in _TAGGED and (tag in _SCALAR_TAGS or type(value) is list):
            return _TAGGED[tag](value, depth + 1)
    raise ValueError("malformed value %r" % (str(obj)[:80],))


# ------------------------------------------------------------------------------------------
# Child side: one program
# ------------------------------------------------------------------------------------------


class _InputTimeout(BaseException):
    pass


def _on_alarm(signum, frame):
    raise _InputTimeout


def _apply_limits(spec):
    import resource

    names = {"AS": "RLIMIT_AS", "FSIZE": "RLIMIT_FSIZE", "NPROC": "RLIMIT_NPROC", "NOFILE": "RLIMIT_NOFILE",
             "CPU": "RLIMIT_CPU", "CORE": "RLIMIT_CORE"}
    for key, value in (spec.get("rlimits") or {}).items():
        which = getattr(resource, names[key])
        value = int(value)
        hard = resource.getrlimit(which)[1]
        if hard != resource.RLIM_INFINITY and value > hard:
            value = hard
        resource.setrlimit(which, (value, value))
    if spec.get("uid") is not None:
        os.setgroups([])
        os.setgid(int(spec["gid"]))
        os.setuid(int(spec["uid"]))


def _describe(exc):
    return ("%s: %s" % (type(exc).__name__, exc))[:300]


def _run_io(request, ns, emit, dumps, calls):
    fn = ns[request["entry_point"]]
    limits = request.get("time_limits")
    not_none = request.get("not_none")
    clock = time.perf_counter
    for k, args in enumerate(calls):
        start = clock()
        try:
            if limits:
                signal.setitimer(signal.ITIMER_REAL, float(limits[k]))
            try:
                out = fn(*args)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            elapsed = clock() - start
            if not_none == "always" or (not_none == "unless_bool" and not isinstance(out, bool)):
                out = out is not None
            record = {"i": k, "out": encode(out), "t": elapsed}
        except _InputTimeout:
            record = {"i": k, "timeout": True}
        except BaseException as exc:  # noqa: BLE001 - the candidate's failures are data here
            record = {"i": k, "err": _describe(exc)}
        _emit_record(record, k, emit, dumps)


def _emit_record(record, k, emit, dumps):
    """Send one record; one that cannot be serialised (MemoryError on a huge output) becomes an error."""
    try:
        line = dumps(record)
    except BaseException as exc:  # noqa: BLE001
        line = dumps({"i": k, "err": "output not sendable: " + _describe(exc)})
    emit(line)


def _run_expr(request, ns, emit, dumps, calls):
    for k, sources in enumerate(request["exprs"]):
        try:
            record = {"i": k, "vals": [encode(eval(src, ns)) for src in sources]}
        except BaseException as exc:  # noqa: BLE001
            record = {"i": k, "err": _describe(exc)}
        _emit_record(record, k, emit, dumps)


def _run_check(request, ns, emit, dumps, calls):
    for k, values in enumerate(calls):
        try:
            ns["__antisd_v"] = values
            record = {"i": k, "ok": bool(eval(request["checks"][k]["expr"], ns))}
        except BaseException as exc:  # noqa: BLE001
            record = {"i": k, "err": _describe(exc)}
        emit(dumps(record))


_RUNNERS = {"io": _run_io, "expr": _run_expr, "check": _run_check}


def run_request(request, fd):
    """Load the program, then run the request's tests, writing records to `fd`."""
    write, dumps = os.write, json.dumps  # bound before untrusted code runs

    def emit(line):
        data = (line + "\n").encode("utf-8", "surrogatepass")
        while data:
            data = data[write(fd, data):]

    mode = request["mode"]
    calls = None
    if mode == "io":
        calls = [decode(encoded) for encoded in request["inputs"]]
    elif mode == "check":
        calls = [[decode(v) for v in check["values"]] for check in request["checks"]]
    signal.signal(signal.SIGALRM, _on_alarm)
    ns = {"__name__": "__antisd_program__", "__builtins__": __builtins__}
    try:
        exec(compile(request["program"], "<program>", "exec"), ns)
        if request.get("setup"):
            exec(compile(request["setup"], "<setup>", "exec"), ns)
    except BaseException as exc:  # noqa: BLE001
        emit(dumps({"load_error": _describe(exc)}))
        return
    emit(dumps({"ready": True}))
    try:
        _RUNNERS[mode](request, ns, emit, dumps, calls)
    except BaseException as exc:  # noqa: BLE001 - e.g. entry point missing
        emit(dumps({"run_error": _describe(exc)}))
        return
    emit(dumps({"done": True}))


def main():
    """One shot: config in argv[1], the request on stdin."""
    config = json.loads(sys.argv[1])
    if config.get("serve"):
        serve(config)
        return
    request = json.loads(sys.stdin.buffer.read())
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    if config.get("result_fd") is not None:
        fd = int(config["result_fd"])
    else:
        fd = os.open(config["result_file"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    _apply_limits(config)
    run_request(request, fd)


# ------------------------------------------------------------------------------------------
# Fork server
# ------------------------------------------------------------------------------------------

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
    _apply_limits(spec)
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
                error = "scratch directory: " + _describe(exc)
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


if __name__ == "__main__":
    main()
