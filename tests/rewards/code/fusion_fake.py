"""A local stand-in for a Sandbox Fusion service's ``/run_code`` (the cases the tests use).

It behaves like the service for them: the request is validated as the service's pydantic model
would (unknown language or a non-string code -> HTTP 422, raised as SandboxServiceError), the code
is written to a file in a fresh directory together with ``files`` (base64), run with ``stdin`` and
``run_timeout``, and the response has the service's shape: status Success/Failed, run_result with
Finished/Error/TimeLimitExceeded, execution_time, return_code, stdout, stderr, and the requested
``fetch_files`` base64-encoded (missing files are left out). No isolation: tests only.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from antisd.rewards.code.fusion import SandboxServiceError


class FakeSandboxFusion:
    def __init__(self, *, sandbox_error: str | None = None, http_failures: int = 0, corrupt_files: bool = False):
        self.sandbox_error = sandbox_error
        self.http_failures = http_failures
        self.corrupt_files = corrupt_files
        self.requests: list[dict[str, Any]] = []

    def post(self, url: str, payload: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        self.requests.append(payload)
        if not url.endswith("/run_code"):
            raise SandboxServiceError(f"{url} answered HTTP 404")
        if self.http_failures > 0:
            self.http_failures -= 1
            raise SandboxServiceError(f"{url} answered HTTP 503: overloaded")
        if payload.get("language") != "python" or not isinstance(payload.get("code"), str):
            raise SandboxServiceError(f"{url} answered HTTP 422: invalid request")
        if self.sandbox_error:
            return {"status": "SandboxError", "message": self.sandbox_error, "run_result": None, "files": {}}
        with tempfile.TemporaryDirectory() as workdir:
            for name, content in (payload.get("files") or {}).items():
                with open(os.path.join(workdir, name), "wb") as handle:
                    handle.write(base64.b64decode(content or ""))
            with open(os.path.join(workdir, "main.py"), "w") as handle:
                handle.write(payload["code"])
            start = time.monotonic()
            try:
                proc = subprocess.run([sys.executable, "main.py"], cwd=workdir, input=(payload.get("stdin") or "").encode(),
                                      capture_output=True, timeout=float(payload.get("run_timeout", 10)))
                run = {"status": "Finished" if proc.returncode == 0 else "Error", "return_code": proc.returncode,
                       "stdout": proc.stdout.decode(errors="replace"), "stderr": proc.stderr.decode(errors="replace")}
            except subprocess.TimeoutExpired:
                run = {"status": "TimeLimitExceeded", "return_code": None, "stdout": "", "stderr": ""}
            run["execution_time"] = time.monotonic() - start
            files = {}
            for name in payload.get("fetch_files") or []:
                path = os.path.join(workdir, name)
                if os.path.exists(path):
                    with open(path, "rb") as handle:
                        files[name] = "!!notbase64" if self.corrupt_files else base64.b64encode(handle.read()).decode()
        status = "Success" if run["status"] == "Finished" else "Failed"
        return {"status": status, "message": "", "compile_result": None, "run_result": run,
                "executor_pod_name": None, "files": files}
