"""The toy reasoning world: a CPU-sized model organism for GRPO, SD and AntiSD (docs/toyworld.md).

- ``tasks``: procedural search problems with verifiable integer answers, held-out split by hash.
- ``tokenizer``: a word-level tokenizer (deliberation words and ``\\boxed{`` are single tokens).
- ``traces``: student-format and privileged-format SFT traces; the teacher-prompt constants.
- ``recipes``: the base policies' recipes (``ToyBaseConfig``) and their hashes.
- ``defaults``: the built-in names and the default settings of ``antisd train`` on the toy world.
- ``base_policy``: a tiny Qwen3 warm-started with TRL's SFTTrainer, cached by recipe hash.
- ``evaluate``: held-out accuracy at temperature 1 with the project's math reward.
- ``pmi_check``: mean PMI u_t on deliberation vs answer-committing tokens of base rollouts.

Importing this package imports neither torch nor TRL.
"""

from antisd.toyworld.tasks import (
    FAMILIES,
    Problem,
    ToyTaskConfig,
    brute_force,
    iter_problems,
    make_dataset,
    make_problems,
    split_of,
)
from antisd.toyworld.tokenizer import BOX_OPEN, DELIBERATION_WORDS, build_tokenizer
from antisd.toyworld.traces import (
    PRIVILEGED_STYLES,
    TOY_ANSWER_TEMPLATE,
    TOY_FEEDBACK_CORRECT,
    TOY_FEEDBACK_INCORRECT,
    TOY_TEACHER_TEMPLATE,
    ToyTraceConfig,
    render_teacher_prompt,
    toy_context_config,
)
from antisd.toyworld.base_policy import ToyBaseConfig, ensure_base_policy, recipe

__all__ = [
    "BOX_OPEN", "DELIBERATION_WORDS", "FAMILIES", "PRIVILEGED_STYLES", "Problem", "TOY_ANSWER_TEMPLATE",
    "TOY_FEEDBACK_CORRECT", "TOY_FEEDBACK_INCORRECT", "TOY_TEACHER_TEMPLATE", "ToyBaseConfig", "ToyTaskConfig",
    "ToyTraceConfig", "brute_force", "build_tokenizer", "ensure_base_policy", "iter_problems", "make_dataset",
    "make_problems", "recipe", "render_teacher_prompt", "split_of", "toy_context_config",
]
