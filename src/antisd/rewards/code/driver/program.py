"""Inside the sandbox: load one program and run one request's tests on it (stdlib only).

A request (one JSON object; the package docstring of `antisd.rewards.code.driver` lists its modes and
records) is decoded before any untrusted code runs, the program and its setup are executed in a fresh
namespace, then each input, assertion or check runs in turn and its record is written at once. Nothing
here decides a verdict, and nothing here is trusted: the program can overwrite anything in this process.
"""

import builtins
import json
import os
import signal
import sys
import time

from antisd.rewards.code.driver.wire import decode, encode


class _InputTimeout(BaseException):
    pass


def _on_alarm(signum, frame):
    raise _InputTimeout


def apply_limits(spec):
    """Set ``spec["rlimits"]`` (each capped at its hard limit) and, when ``spec["uid"]`` is set, drop to that
    uid/gid with no supplementary groups: before any untrusted code runs."""
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


def describe(exc):
    """An exception as one short line for a record: ``Type: message``, at most 300 characters."""
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
            record = {"i": k, "err": describe(exc)}
        _emit_record(record, k, emit, dumps)


def _emit_record(record, k, emit, dumps):
    """Send one record; one that cannot be serialised (MemoryError on a huge output) becomes an error."""
    try:
        line = dumps(record)
    except BaseException as exc:  # noqa: BLE001
        line = dumps({"i": k, "err": "output not sendable: " + describe(exc)})
    emit(line)


def _run_expr(request, ns, emit, dumps, calls):
    for k, sources in enumerate(request["exprs"]):
        try:
            record = {"i": k, "vals": [encode(eval(src, ns)) for src in sources]}
        except BaseException as exc:  # noqa: BLE001
            record = {"i": k, "err": describe(exc)}
        _emit_record(record, k, emit, dumps)


def _run_check(request, ns, emit, dumps, calls):
    for k, values in enumerate(calls):
        try:
            ns["__antisd_v"] = values
            record = {"i": k, "ok": bool(eval(request["checks"][k]["expr"], ns))}
        except BaseException as exc:  # noqa: BLE001
            record = {"i": k, "err": describe(exc)}
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
    ns = {"__name__": "__antisd_program__", "__builtins__": builtins}
    try:
        exec(compile(request["program"], "<program>", "exec"), ns)
        if request.get("setup"):
            exec(compile(request["setup"], "<setup>", "exec"), ns)
    except BaseException as exc:  # noqa: BLE001
        emit(dumps({"load_error": describe(exc)}))
        return
    emit(dumps({"ready": True}))
    try:
        _RUNNERS[mode](request, ns, emit, dumps, calls)
    except BaseException as exc:  # noqa: BLE001 - e.g. entry point missing
        emit(dumps({"run_error": describe(exc)}))
        return
    emit(dumps({"done": True}))


def run_one_shot(config):
    """One program without a fork server (the Sandbox Fusion backend): the request on stdin, records to
    ``config["result_fd"]`` or ``config["result_file"]``, the config's rlimits (and uid) applied first."""
    request = json.loads(sys.stdin.buffer.read())
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    if config.get("result_fd") is not None:
        fd = int(config["result_fd"])
    else:
        fd = os.open(config["result_file"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    apply_limits(config)
    run_request(request, fd)
