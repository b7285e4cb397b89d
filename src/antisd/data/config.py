"""``DataConfig``: where the training problems come from and how they become prompts; its field groups.

The data settings are declared once, here, with their help text and their check, and shared:

    PromptFields   system_prompt, prompt_format: how a problem becomes a prompt (``antisd train``,
                   ``antisd eval``, ``antisd pmi``)
    SourceFields   the source data's split and columns (problem_column, answer_column, solution_column,
                   id_column, ...)
    DataFields     SourceFields, PromptFields and shuffle_seed: ``DataConfig`` and, unset by default,
                   ``antisd pmi``

The column fields name columns of the *source data*; ``antisd.data.problems.load_problems`` maps them to
its canonical columns (prompt, answer, solution, problem_id), which the trainer reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from antisd.cli.validate import check_choice

DEFAULT_SYSTEM_PROMPT = (
    "Please reason step by step, and put your final answer within \\boxed{}."
)
PROMPT_FORMATS = ("chat", "plain")


@dataclass
class PromptFields:
    """How a problem becomes a prompt: chat messages with a system message, or the plain problem text."""

    system_prompt: str | None = field(
        default=DEFAULT_SYSTEM_PROMPT,
        metadata={"help": "System message of chat prompts ('' or null: no system message). Unused by plain prompts."},
    )
    prompt_format: Literal["chat", "plain"] = field(
        default="chat",
        metadata={"help": "chat: a list of messages, templated later by the tokenizer's chat template; plain: the "
                          "problem text as a string, for tokenizers without a chat template (the toy world).",
                  "choices": list(PROMPT_FORMATS)},
    )

    def check_prompt_fields(self) -> None:
        """Raise ValueError for a ``prompt_format`` that is not one of ``PROMPT_FORMATS``."""
        check_choice("prompt_format", self.prompt_format, PROMPT_FORMATS)


@dataclass
class SourceFields:
    """The source data's split and columns."""

    dataset_config: str | None = field(
        default=None, metadata={"help": "Hub dataset configuration (the `name` of datasets.load_dataset); hub only."},
    )
    dataset_split: str = field(
        default="train",
        metadata={"help": "Split to load, slicing allowed (train[:1000]). Local files have a single split, train."},
    )
    problem_column: str = field(default="problem", metadata={"help": "Column of the source data holding the problem text."})
    answer_column: str = field(
        default="answer",
        metadata={"help": "Column of the source data holding the final answer (numbers become strings); the problems "
                          "the trainer reads have it as their column answer."},
    )
    solution_column: str | None = field(
        default="solution",
        metadata={"help": "Column of the source data holding worked solutions; optional: when absent, every solution is "
                          "None (the teacher then sees a sibling or the answer line)."},
    )
    id_column: str | None = field(
        default=None,
        metadata={"help": "Column of the source data holding a problem id (optional; default: a hash of the problem "
                          "text)."},
    )


@dataclass
class DataFields(PromptFields, SourceFields):
    """The source data's split and columns, the prompt fields and the order of the problems: what
    ``DataConfig`` shares with the commands that read problems too (``antisd pmi``)."""

    shuffle_seed: int | None = field(
        default=None,
        metadata={"help": "Shuffle the problems with this seed before keeping the first ones (default: file order)."},
    )

    def check_data_fields(self) -> None:
        """Raise ValueError for a bad prompt format or an empty problem or answer column."""
        PromptFields.check_prompt_fields(self)
        for name in ("problem_column", "answer_column"):
            if not getattr(self, name):
                raise ValueError(f"{name} is empty; give the name of the dataset column")


@dataclass
class DataSource:
    """The dataset's name: the first field of ``DataConfig`` (required)."""

    dataset_name: str = field(
        metadata={"help": "A local .jsonl/.json (optionally .gz), .parquet or .csv file, a directory of such files, a "
                          "built-in name (dapo_math_17k, math500, gsm8k_test, aime2024, ...: shipped with antisd; "
                          "mbpp_train: 594 Python tasks for the code reward; toyworld: the toy world's problems) or a "
                          "hub dataset name."},
    )


@dataclass
class DataConfig(DataFields, DataSource):
    """Where the training problems come from and how they become prompts."""

    tests_column: str = field(
        default="tests",
        metadata={"help": "Code data: column holding each task's tests (a list of assert statements, or "
                          '{"entry_point", "inputs"} in EvalPlus style; antisd.data.code_problems). Its presence makes '
                          "--reward auto choose the code reward."},
    )
    max_samples: int | None = field(
        default=None, metadata={"help": "Keep only this many problems (after shuffling when shuffle_seed is set)."},
    )

    def __post_init__(self) -> None:
        if self.max_samples is not None and self.max_samples < 1:
            raise ValueError(f"max_samples={self.max_samples} must be >= 1 (or null for all problems)")
        if not self.dataset_name:
            raise ValueError("dataset_name is empty; give a hub name or a local .jsonl/.json/.parquet/.csv path")
        self.check_data_fields()
