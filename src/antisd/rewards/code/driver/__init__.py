"""The program that runs INSIDE the sandbox (stdlib only), as a small package.

Its modules are shipped into the sandbox as one program text (`antisd.rewards.code.bundle`: each
module's source, installed in ``sys.modules`` in order, then ``main.main()``), passed with
``python -I -S -c``; the sandbox needs no file of the host. Modules, in load order:

- `wire`: the plain-data codec (`encode`, `decode`); the trusted side imports it too, so the two sides
  share one definition of the wire format.
- `program`: load one program and run one request's tests on it, writing records.
- `server`: the fork server.
- `main`: the entry point.

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
