"""The program that runs INSIDE the sandbox (stdlib only; its source is passed with ``python -I -S -c``).

It is also imported by the trusted side for the plain-data codec (`encode`, `decode`), so the two
sides share one definition of the wire format.

Protocol. ``argv[1]`` is a JSON config from the trusted parent::

    {"result_fd": int | null, "result_file": str | null,  # where records go (a pipe fd, or a file)
     "uid": int | null, "gid": int | null,                  # drop to this uid/gid before untrusted code
     "rlimits": {"AS": bytes, "FSIZE": bytes, "NPROC": n, "NOFILE": n, "CPU": s, "CORE": 0}}

stdin holds one JSON request (read whole, then stdin is replaced by /dev/null)::

    {"mode": "io" | "expr" | "check", "program": str, "setup": str, ...}

- ``io`` (EvalPlus style): ``entry_point``, ``inputs`` (encoded argument lists), ``time_limits``
  (seconds per input; a SIGALRM per input, best effort: the trusted parent's wall clock is the
  hard limit), ``not_none`` (null, ``"always"`` or ``"unless_bool"``: report ``out is not None``
  instead of out, as EvalPlus does for three MBPP tasks: always for the reference, unless out is
  a bool for a candidate). Records ``{"i": k, "out": enc, "t": s}`` / ``{"i": k, "err": "..."}`` /
  ``{"i": k, "timeout": true}``.
- ``expr`` (assertion tests): ``exprs``, per test a list of expression sources (the calls of the
  function under test); records ``{"i": k, "vals": [enc, ...]}`` / ``{"i": k, "err": ...}``.
- ``check`` (the trusted step; no candidate code in this process): ``checks``, per test
  ``{"expr": src, "values": [enc, ...]}``; ``src`` reads the values as ``__antisd_v[j]``; records
  ``{"i": k, "ok": bool}``.

First record: ``{"ready": true}`` once program and setup ran, or ``{"load_error": "..."}``;
last: ``{"done": true}``. Nothing here decides a verdict: the parent compares the decoded values
(plain data only) with its own expected values. Untrusted code can overwrite anything in this
process, so every record is treated by the parent as untrusted input.
"""

import json
import math
import os
import signal
import sys
import time

MAX_DEPTH = 100
_INT_JSON_LIMIT = 1 << 63  # ints at least this large travel as hex (no int/str digit limit on base 16)


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


def _decode_float(v):
    if type(v) in (int, float):
        return float(v)
    if type(v) is dict and v.get("f") in ("nan", "inf", "-inf"):
        return float(v["f"])
    raise ValueError("bad float %r" % (v,))


_TAGGED = {
    "t": lambda v: tuple(decode(e) for e in v),
    "S": lambda v: {decode(e) for e in v},
    "F": lambda v: frozenset(decode(e) for e in v),
    "d": lambda v: {decode(k): decode(e) for k, e in v},
    "i": lambda v: int(v, 16),
    "f": lambda v: _decode_float({"f": v}),
    "c": lambda v: complex(_decode_float(v[0]), _decode_float(v[1])),
    "b": lambda v: bytes.fromhex(v),
}


def decode(obj):
    """Inverse of `encode`; raises ValueError/TypeError on anything malformed."""
    t = type(obj)
    if obj is None or t in (bool, int, float, str):
        return obj
    if t is list:
        return [decode(e) for e in obj]
    if t is dict and len(obj) == 1:
        (tag, value), = obj.items()
        if tag in _TAGGED:
            return _TAGGED[tag](value)
    raise ValueError("malformed value %r" % (str(obj)[:80],))


# ------------------------------------------------------------------------------------------
# Child side
# ------------------------------------------------------------------------------------------


class _InputTimeout(BaseException):
    pass


def _on_alarm(signum, frame):
    raise _InputTimeout


def _apply_limits(config):
    import resource

    names = {"AS": "RLIMIT_AS", "FSIZE": "RLIMIT_FSIZE", "NPROC": "RLIMIT_NPROC", "NOFILE": "RLIMIT_NOFILE",
             "CPU": "RLIMIT_CPU", "CORE": "RLIMIT_CORE"}
    for key, value in (config.get("rlimits") or {}).items():
        which = getattr(resource, names[key])
        value = int(value)
        hard = resource.getrlimit(which)[1]
        if hard != resource.RLIM_INFINITY and value > hard:
            value = hard
        resource.setrlimit(which, (value, value))
    if config.get("uid") is not None:
        os.setgroups([])
        os.setgid(int(config["gid"]))
        os.setuid(int(config["uid"]))


def _describe(exc):
    return ("%s: %s" % (type(exc).__name__, exc))[:300]


def _run_io(request, ns, emit, dumps):
    fn = ns[request["entry_point"]]
    limits = request.get("time_limits")
    not_none = request.get("not_none")
    clock = time.perf_counter
    for k, encoded in enumerate(request["inputs"]):
        args = decode(encoded)
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


def _run_expr(request, ns, emit, dumps):
    for k, sources in enumerate(request["exprs"]):
        try:
            record = {"i": k, "vals": [encode(eval(src, ns)) for src in sources]}
        except BaseException as exc:  # noqa: BLE001
            record = {"i": k, "err": _describe(exc)}
        _emit_record(record, k, emit, dumps)


def _run_check(request, ns, emit, dumps):
    for k, check in enumerate(request["checks"]):
        try:
            ns["__antisd_v"] = [decode(v) for v in check["values"]]
            record = {"i": k, "ok": bool(eval(check["expr"], ns))}
        except BaseException as exc:  # noqa: BLE001
            record = {"i": k, "err": _describe(exc)}
        emit(dumps(record))


def main():
    config = json.loads(sys.argv[1])
    request = json.loads(sys.stdin.buffer.read())
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    if config.get("result_fd") is not None:
        fd = int(config["result_fd"])
    else:
        fd = os.open(config["result_file"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    _apply_limits(config)
    write, dumps = os.write, json.dumps  # bound before untrusted code runs

    def emit(line):
        data = (line + "\n").encode("utf-8", "surrogatepass")
        while data:
            data = data[write(fd, data):]

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
    runner = {"io": _run_io, "expr": _run_expr, "check": _run_check}[request["mode"]]
    try:
        runner(request, ns, emit, dumps)
    except BaseException as exc:  # noqa: BLE001 - e.g. entry point missing
        emit(dumps({"run_error": _describe(exc)}))
        return
    emit(dumps({"done": True}))


if __name__ == "__main__":
    main()
