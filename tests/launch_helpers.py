"""Helpers for tests that launch several processes with accelerate."""

import shutil
import socket
import subprocess
from pathlib import Path


def free_port() -> str:
    """A TCP port nobody listens on now, for one launch's rendezvous, instead of one fixed port that
    back-to-back launches share (one launch of the FSDP tests died with a SIGABRT in gloo on a loaded
    machine; a shared port is one possible cause, not a proven one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


GLOO_TEARDOWN_ABORT = "terminate called without an active exception"


def run_relaunching_on_gloo_abort(make_cmd, env: dict, out, relaunch: bool = True):
    """Run ``make_cmd()`` (a new command each call, e.g. with a fresh port) and relaunch it once, into an
    emptied ``out``, only when it died of gloo's teardown abort (a std::thread torn down while joinable;
    seen in full-suite CI runs on 2-core machines, never in a file run alone). Any other failure, or a
    second one, is returned as it is for the caller's assertion. ``relaunch=False`` where ``out`` holds
    state the run needs (a resume's checkpoint)."""
    for attempt in range(2):
        res = subprocess.run(make_cmd(), capture_output=True, text=True, env=env, timeout=600)
        if res.returncode == 0 or attempt or not relaunch or GLOO_TEARDOWN_ABORT not in res.stderr:
            return res
        shutil.rmtree(out, ignore_errors=True)
        Path(out).mkdir(parents=True, exist_ok=True)
    return res
