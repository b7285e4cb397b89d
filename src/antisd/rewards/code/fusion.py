"""`Executor` backend for a Sandbox Fusion service (bytedance/SandboxFusion; the sandbox verl uses).

One run is one ``POST {endpoint}/run_code`` with the request schema of the ``sandbox-fusion``
client (``RunCodeRequest``: code, language, stdin, run_timeout, compile_timeout, files,
fetch_files) plus ``memory_limit_MB`` (as verl sends it). The code is the driver itself
(`antisd.rewards.code.bundle.DRIVER_SOURCE`), with its config set at the top; the harness request
travels on stdin; the driver writes its records to ``antisd_results.jsonl`` in the run's directory,
fetched back base64-encoded through ``fetch_files``. Response mapping (``RunCodeResponse``):

- ``status == "SandboxError"``, a transport error, or an HTTP error -> ``sandbox_error``;
- ``run_result.status == "TimeLimitExceeded"`` -> ``timeout`` (the records fetched so far count);
- otherwise ``finished``; the program's exit code does not matter, only the records do.

Isolation, limits and the network policy are the service's. `Transport` is the HTTP seam:
`HttpTransport` (urllib, no extra dependency) in production; tests use a fake that behaves like
the service (tests/rewards/code/fusion_fake.py).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
import urllib.error
import urllib.request
from typing import Any, Protocol

from antisd.rewards.code.bundle import DRIVER_SOURCE
from antisd.rewards.code.executor import Limits, RunResult, reader_for

logger = logging.getLogger(__name__)

RESULT_FILE = "antisd_results.jsonl"


class SandboxServiceError(RuntimeError):
    """The service could not be reached or refused the request."""


class Transport(Protocol):
    def post(self, url: str, payload: dict[str, Any], timeout_s: float) -> dict[str, Any]: ...


class HttpTransport:
    """JSON over HTTP with urllib; raises SandboxServiceError on any transport or HTTP error."""

    def post(self, url: str, payload: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        body = json.dumps(payload).encode("utf-8")
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - configured endpoint
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise SandboxServiceError(f"{url} answered HTTP {exc.code}: {exc.read()[:300]!r}") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise SandboxServiceError(f"{url}: {exc}") from exc


def driver_program(limits: Limits) -> str:
    """The driver source with its config (result file, rlimits) fixed in ``sys.argv``."""
    config = {"result_fd": None, "result_file": RESULT_FILE, "uid": None, "gid": None,
              "rlimits": {"FSIZE": limits.file_size_bytes, "NOFILE": limits.max_open_files, "CORE": 0}}
    return f"import sys\nsys.argv[1:] = [{json.dumps(config)!r}]\n" + DRIVER_SOURCE


class SandboxFusionExecutor:
    """Runs the driver on a Sandbox Fusion service (module docstring)."""

    name = "sandbox_fusion"

    def __init__(self, endpoint: str = "http://localhost:8080", *, transport: Transport | None = None,
                 language: str = "python", max_attempts: int = 3, retry_delay_s: float = 1.0) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts={max_attempts} must be >= 1")
        self.endpoint = endpoint.rstrip("/")
        self.transport = transport or HttpTransport()
        self.language = language
        self.max_attempts = max_attempts
        self.retry_delay_s = retry_delay_s

    def payload(self, request: dict[str, Any], limits: Limits) -> dict[str, Any]:
        """The ``/run_code`` request body for one harness request."""
        return {"code": driver_program(limits), "language": self.language,
                "stdin": json.dumps(request), "run_timeout": limits.wall_s, "compile_timeout": 10.0,
                "memory_limit_MB": max(1, limits.memory_bytes >> 20), "files": {}, "fetch_files": [RESULT_FILE]}

    def run(self, request: dict[str, Any], limits: Limits) -> RunResult:
        payload = self.payload(request, limits)
        start = time.monotonic()
        error = ""
        for attempt in range(self.max_attempts):
            try:
                response = self.transport.post(f"{self.endpoint}/run_code", payload, limits.wall_s + 30.0)
                return map_response(response, limits, time.monotonic() - start, request)
            except SandboxServiceError as exc:
                error = str(exc)
                logger.warning("sandbox fusion attempt %d/%d failed: %s", attempt + 1, self.max_attempts, error)
                if attempt + 1 < self.max_attempts:
                    time.sleep(self.retry_delay_s)
        return RunResult(status="sandbox_error", wall_s=time.monotonic() - start, message=error)


def map_response(response: Any, limits: Limits, elapsed_s: float, request: dict[str, Any]) -> RunResult:
    """RunCodeResponse (a dict) -> RunResult; anything malformed is a sandbox_error.

    The records arrive all at once, so no per-input time is measured on this side: per-input limits
    are the in-sandbox alarm's and the service's ``run_timeout`` (docs/code.md)."""
    if not isinstance(response, dict) or response.get("status") not in ("Success", "Failed", "SandboxError"):
        return RunResult(status="sandbox_error", wall_s=elapsed_s, message=f"malformed response: {str(response)[:300]}")
    if response["status"] == "SandboxError":
        return RunResult(status="sandbox_error", wall_s=elapsed_s, message=str(response.get("message", ""))[:300])
    run = response.get("run_result") or {}
    files = response.get("files") or {}
    try:
        data = base64.b64decode(files.get(RESULT_FILE) or "", validate=True)
    except (binascii.Error, ValueError, TypeError):
        return RunResult(status="sandbox_error", wall_s=elapsed_s, message="result file is not valid base64")
    status = "timeout" if run.get("status") == "TimeLimitExceeded" else "finished"
    reader = reader_for(request, limits)
    reader.feed(data, None)
    if reader.over_limit:
        status = "output_limit"
    wall = run.get("execution_time")
    return RunResult(status=status, items=reader.items, control=dict(reader.control), malformed_lines=reader.malformed,
                     wall_s=float(wall) if isinstance(wall, (int, float)) else elapsed_s,
                     returncode=run.get("return_code") if isinstance(run.get("return_code"), int) else None,
                     stderr=str(run.get("stderr") or "")[-limits.max_stderr_bytes:], message=str(response.get("message", "")))
