"""antisd: Anti-Self-Distillation (AntiSD) for reasoning RL.

The packages follow one training step's data (docs/architecture.md):

    data/          problems: load, check and convert maths and code data; the data shipped with antisd
    lm/            the language model: names and loading, plumbing, per-token log-probs, sampling
    rewards/       math-verify answer checking; ``rewards/code/``: the code sandbox and its reward
    method/        pure maths (framework-free tensors): token signals, Eq. 12's guard, advantages,
                   the gate, privileged contexts, the exploitation monitor, pass@k
    trainer/       ``AntiSDTrainer`` (TRL's GRPOTrainer + the token term), its config, checkpoints, the run
    evaluate/      ``antisd eval``: maths and code benchmarks, pass@k tables and plots
    pmi/           ``antisd pmi``: which tokens the privileged self-teacher raises and lowers
    toyworld/      the CPU toy world (its tasks, tokenizer, base policy and built-in defaults)
    integrations/  AntiSD in other RL frameworks' terms (verl)
    cli/           the ``antisd`` command line

The names most users need are importable from here (imported on first use, so ``import antisd`` is cheap).
"""

from __future__ import annotations

from antisd.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {  # public name -> the module that defines it
    "AntiSDTrainer": "antisd.trainer.core",
    "AntiSDConfig": "antisd.trainer.config",
    "ContextConfig": "antisd.method.context",
    "MathReward": "antisd.rewards.reward",
    "CodeReward": "antisd.rewards.code.reward",
    "problems_dataset": "antisd.data.problems",
}

__all__ = ["__version__", *_EXPORTS]


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
