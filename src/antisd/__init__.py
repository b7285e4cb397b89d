"""antisd: Anti-Self-Distillation (AntiSD) for reasoning RL.

Pure maths: ``antisd.signals`` (PMI, phi, token signals, advantage composition),
``antisd.gate`` (the Schmitt-trigger gate), ``antisd.metrics`` (pass@k, avg@k),
``antisd.context`` (privileged teacher prompts). Around them: ``antisd.logprobs`` (chunked
per-token log-probs/entropies), ``antisd.rewards`` (math-verify reward), the trainer and the CLI.
"""

__version__ = "0.1.0"
