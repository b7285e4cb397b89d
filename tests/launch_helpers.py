"""Helpers for tests that launch several processes with accelerate."""

import socket


def free_port() -> str:
    """A TCP port nobody listens on now, for one launch's rendezvous, instead of one fixed port that
    back-to-back launches share (one launch of the FSDP tests died with a SIGABRT in gloo on a loaded
    machine; a shared port is one possible cause, not a proven one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])
