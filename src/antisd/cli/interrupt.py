"""Ctrl-C (KeyboardInterrupt) of a command: one line that says what was kept and how to go on, exit code 130.

    install()                    Ctrl-C raises KeyboardInterrupt as usual, but never inside a finalizer
                                 (where Python would print "Exception ignored" and lose it): it is raised
                                 again a moment later, outside
    interrupted(command, what)   close the progress bars, print ``antisd COMMAND: interrupted: WHAT``
                                 on stderr, return 130 (128 + SIGINT, the shell's code for it)
    train_kept(config)           what ``antisd train`` kept: the newest complete checkpoint and how to
                                 resume from it, or that there is none yet

``antisd eval`` and ``antisd pmi`` say what they kept in their own modules (samples appended per problem;
records of the rollouts scored so far).
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

EXIT_CODE = 130


def _in_finalizer(frame: Any) -> bool:
    """Whether `frame` runs inside a ``__del__`` or a weakref finalizer, where Python prints an exception as
    "Exception ignored in ..." and drops it."""
    while frame is not None:
        if frame.f_code.co_name == "__del__" or frame.f_globals.get("__name__") == "weakref":
            return True
        frame = frame.f_back
    return False


def _on_sigint(signum: int, frame: Any) -> None:
    """Python's own Ctrl-C (KeyboardInterrupt), except inside a finalizer (garbage collection can run one
    anywhere): there the interrupt would be lost with a stray traceback, so it is raised again a moment later."""
    if _in_finalizer(frame):
        import _thread

        timer = threading.Timer(0.05, _thread.interrupt_main)
        timer.daemon = True
        timer.start()
        return
    raise KeyboardInterrupt


def install() -> None:
    """Use ``_on_sigint`` for Ctrl-C in this process (main thread only; an ignored or custom handler stays)."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)


def close_progress_bars() -> None:
    """Close every open tqdm bar, so that the line printed next starts on a line of its own."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with transformers
        return
    for bar in list(getattr(tqdm, "_instances", ())):
        try:
            bar.close()
        except Exception:  # noqa: BLE001 - a bar half torn down by the interrupt: nothing to keep
            pass


def interrupted(command: str, what: str) -> int:
    """Print the one line of an interrupted command; return its exit code (130)."""
    close_progress_bars()
    sys.stderr.flush()
    print(f"antisd {command}: interrupted: {what}", file=sys.stderr, flush=True)
    return EXIT_CODE


def _resume_given(value: Any) -> bool:
    return value is not None and str(value).lower() not in ("", "false", "none", "no", "0")


def train_kept(config: Any) -> str:
    """What an interrupted ``antisd train`` leaves in ``config.output_dir`` and how to go on."""
    from antisd.trainer.checkpoints import last_complete_checkpoint

    out = config.output_dir
    newest = last_complete_checkpoint(out) if Path(out).is_dir() else None
    if newest is not None:
        step = Path(newest).name.removeprefix("checkpoint-")
        how = ("run the same command again to go on from it" if _resume_given(config.resume_from_checkpoint)
               else "run the same command with --resume_from_checkpoint true to go on from it")
        return f"the newest checkpoint is {newest} (step {step}); {how}"
    strategy = str(getattr(config.save_strategy, "value", config.save_strategy))
    when = f"every {config.save_steps} steps" if strategy == "steps" else f"save_strategy={strategy}"
    return (f"no checkpoint was written yet (checkpoints: {when}), so nothing was kept in {out}; "
            "run the same command again to start over")
