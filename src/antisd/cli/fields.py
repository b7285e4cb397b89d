"""The reward settings that several commands take, declared once with their help text and their check.

    ExtractionField   answer_extraction: where a maths response's answer is read (the choices are
                      ``antisd.rewards.extract.EXTRACTIONS``): ``antisd train`` (RewardArgs), ``antisd eval``
                      (EvalConfig) and, unset by default, ``antisd pmi`` (PMIConfig)
    SandboxFields     code_sandbox, code_workers: where and in how many processes programs run
                      (``antisd.rewards.code``): ``antisd train`` (RewardArgs) and ``antisd eval`` (EvalConfig)

A dataclass mixes a group in and calls its ``check_*`` method from its own ``__post_init__``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from antisd.cli.validate import check_choice
from antisd.rewards.extract import EXTRACTIONS

SANDBOXES = ("auto", "bwrap", "none")  # or the http(s) URL of a Sandbox Fusion service


@dataclass
class ExtractionField:
    """Where the answer of a maths response is read (``antisd.rewards.extract``)."""

    answer_extraction: str = field(default=EXTRACTIONS[0], metadata={
        "help": "Maths: where a response's answer is read: strict (the last \\boxed{}, else an 'Answer:' line or "
                "'final answer is'); flexible (the same, then the response's last number: lm-evaluation-harness's "
                "GSM8K flexible-extract, for small models that answer '2 + 3 = 5').",
        "choices": list(EXTRACTIONS)})

    def check_extraction(self) -> None:
        """Raise ValueError for an ``answer_extraction`` that is not one of ``EXTRACTIONS``."""
        check_choice("answer_extraction", self.answer_extraction, EXTRACTIONS)


@dataclass
class SandboxFields:
    """Where the programs of the code reward run, and how many worker processes score them."""

    code_sandbox: str = field(default="auto", metadata={
        "help": "Code: where programs run: auto (bubblewrap when it works, else a logged fallback), bwrap (required), "
                "none (process limits only), or the http(s) URL of a Sandbox Fusion service."})
    code_workers: int | None = field(default=None, metadata={
        "help": "Code: sandbox worker processes (0: score in the calling process; default: this machine's CPUs, "
                "shared out among the local training processes under antisd train)."})

    def check_sandbox(self) -> None:
        """Raise ValueError for a ``code_sandbox`` that is none of ``SANDBOXES`` nor a URL, or negative workers."""
        if self.code_sandbox not in SANDBOXES and not self.code_sandbox.startswith(("http://", "https://")):
            raise ValueError(f"code_sandbox={self.code_sandbox!r}: expected auto, bwrap, none or a Sandbox Fusion URL")
        if self.code_workers is not None and self.code_workers < 0:
            raise ValueError(f"code_workers={self.code_workers} must be >= 0 (0: score in the calling process)")
