"""The ``antisd`` console script: what must happen before the heavy imports, then ``antisd.cli.main.main``.

Two things cannot wait for torch, TRL and transformers to load:

- ``--help`` / ``--help-all`` of ``train``, ``eval`` and ``pmi`` print the shipped help texts
  (``antisd.cli.helptext``) without importing any of them (under 2 s instead of 6-11 s);
- the CPU thread settings (``antisd.cli.threads``: the thread count, OpenMP's passive wait policy) go into
  the environment before torch loads OpenMP, which reads them once, at load. ``--threads N`` (any
  command; ``auto``, a number, or ``off``) or ``$ANTISD_THREADS`` set the count.

``python -m antisd.cli.main`` (e.g. under ``accelerate launch``) comes here too.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

TORCH_COMMANDS = ("train", "eval", "pmi")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``antisd`` console script; returns the exit code (see ``antisd.cli.main.main``).

    A Ctrl-C before the command starts (while torch, TRL and transformers load, several seconds) is one line
    and exit code 130, as it is during the command (``antisd.cli.interrupt``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and not argv[0].startswith("-") else None
    try:
        started = _start(argv)
    except KeyboardInterrupt:
        print(f"antisd{' ' + command if command else ''}: interrupted while starting: nothing was written",
              file=sys.stderr)
        return 130
    if isinstance(started, int):
        return started
    cli_main, argv = started
    return cli_main(argv)


def _start(argv: list[str]):
    """Everything before the command: the --threads flag, --help from the shipped texts, the thread settings,
    the heavy imports. Returns an exit code, or ``(antisd.cli.main.main, argv)`` to run."""
    from antisd.cli import helptext
    from antisd.cli import threads

    try:
        argv, value = threads.pop_threads_flag(argv)
        count = threads.requested(value)
    except ValueError as e:
        command = argv[0] if argv and not argv[0].startswith("-") else "antisd"
        print(f"antisd {command}: error: {e}" if command != "antisd" else f"antisd: error: {e}", file=sys.stderr)
        return 2
    wanted = helptext.help_command(argv)
    if wanted is not None:
        print(helptext.help_text(wanted), end="")
        return 0
    threads.configure_env(count)
    from antisd.cli.main import main as cli_main, setup_logging

    if argv and argv[0] in TORCH_COMMANDS:
        setup_logging()
        threads.apply(count)
    return cli_main, argv


if __name__ == "__main__":
    sys.exit(main())
