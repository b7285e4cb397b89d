"""PMI diagnostics: which tokens a privileged self-teacher raises and lowers, on any causal LM.

For each rollout y of prompt x, with the privileged prompt (x, c) of training (docs/method.md):

    s_t = log pi(y_t | x, y<t)     t_t = log pi(y_t | x, c, y<t)     u_t = t_t - s_t

(blue: u << 0, deliberation tokens the context lowers; red: u >> 0, shortcut tokens it raises).
``antisd pmi`` samples rollouts on problems (or reads the trainer's dump, or any file of
rollouts), runs the student and teacher passes on the SAME completion ids, and writes to
``--output_dir``: ``traces.html`` (each token coloured by u_t, values on hover), ``strips/*.png``
(u_t over positions), ``heatmap.png`` (student vs teacher log-prob), ``tokens.csv/.md`` (tokens
ranked by mean u), ``classes.csv/.md`` (deliberation / connective / answer-in-\\boxed{} means with
bootstrap intervals), ``rollouts.csv``, ``records.jsonl``, ``summary.json`` and ``report.md``,
which is also printed with the checks: the telescoping identity sum_t u_t = log pi(y|x,c) -
log pi(y|x) against a separate whole-sequence forward, and the fractions of u < 0 and u > 0.

How it departs from the trainer's own dump (``dump_rollouts_every``): any model and any
problems, no training run; an independent whole-sequence check; aggregates and figures.

API::

    from antisd.pmi import compute_pmi, aggregate, Rollout, render_html
    records = list(compute_pmi(model, tokenizer, [Rollout(prompt=..., completion_ids=..., reward=1.0,
                                                          answer="42")], context_cfg))
    tables = aggregate(records)            # tables.tokens, tables.classes, tables.summary

CPU: antisd pmi --model /path/to/tiny --dataset math500 --max_problems 8 \\
         --samples_per_problem 2 --max_new_tokens 64 --output_dir runs/pmi_tiny
     antisd pmi --model runs/x --rollouts runs/x/rollouts/rollouts.jsonl --config run.yaml
GPU: antisd pmi --config recipes/models/qwen3-8b.yaml --max_problems 32 --samples_per_problem 8 \\
         --max_new_tokens 4096 --batch_size 16 --dtype bfloat16 --output_dir runs/pmi_qwen3_8b
(``python -m antisd.pmi ...`` is the same command.)
"""

from antisd.pmi.aggregate import (
    DEFAULT_CLASSES,
    PMIAggregator,
    PMITables,
    TokenClass,
    aggregate,
    bootstrap_ci,
    boxed_mask,
    parse_token_classes,
)
from antisd.pmi.compute import (
    PMIRecord,
    Rollout,
    SkipLog,
    compute_pmi,
    records_from_stored,
    score_completions,
    sequence_logprob,
    token_pieces,
    tokenize_prompt,
)
from antisd.pmi.config import PMIConfig, PMIConfigError, build_parser, parse_args
from antisd.pmi.render import plot_heatmap, plot_strip, render_html, visible_whitespace
from antisd.pmi.run import main, run
from antisd.pmi.sources import read_rollouts, sample_rollouts

__all__ = [
    "DEFAULT_CLASSES", "PMIAggregator", "PMIConfig", "PMIConfigError", "PMIRecord", "PMITables", "Rollout",
    "SkipLog", "TokenClass", "aggregate", "bootstrap_ci", "boxed_mask", "build_parser", "compute_pmi", "main",
    "parse_args", "parse_token_classes",
    "plot_heatmap", "plot_strip", "read_rollouts", "records_from_stored", "render_html", "run", "sample_rollouts",
    "score_completions", "sequence_logprob", "token_pieces", "tokenize_prompt", "visible_whitespace",
]
