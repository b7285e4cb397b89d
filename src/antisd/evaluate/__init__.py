"""``antisd eval``: sample k completions per problem, score them with math-verify, write results.

For every model x benchmark, k completions are sampled per problem (vLLM when it is installed and
a GPU is present, else batched transformers ``generate``), each is scored by
``antisd.rewards.check_answer`` against the reference answer, and the run writes under
``output_dir``:

    samples/<model>__<benchmark>.jsonl        one line per sample (problem id, sample index,
                                              completion, extracted answer, outcome, correct,
                                              tokens, truncated); appended per problem
    samples/<model>__<benchmark>.config.json  the settings fingerprint of that file
    summary.md / summary.csv                  avg@k, pass@1..k, mean length, truncation rate,
                                              failure counts; "mean" rows average the
                                              benchmarks (the paper's headline number)
    pass_at_k.png                             pass@k curves, one panel per benchmark

How it departs from a plain eval loop: a rerun skips finished problems (resume after a crash),
refuses to mix samples drawn with other settings (the fingerprint; ``--overwrite`` discards the
old file), and ``--rescore`` re-scores the stored completions without generating. Unparseable
answers, empty completions, truncations and reference answers that math-verify cannot parse
are counted in the summary, never raised. Paper protocol: avg@32 on AIME 24/25/26 and HMMT Feb
25, avg@4 on Minerva (the preset defaults); sampling settings are not stated in the paper, the
defaults here are temperature 0.6, top-p 0.95, no top-k (project choice, Qwen3's thinking-mode
recommendation).

CPU:  antisd eval --models path/to/ckpt --benchmarks aime24 \\
          --limit 2 --k 2 --max_new_tokens 64
GPU:  antisd eval --models Qwen/Qwen3-8B grpo=runs/grpo/checkpoint-200 \\
          --benchmarks aime24 aime25 aime26 hmmt25 minerva --max_new_tokens 32768
      (python -m antisd.evaluate ... works the same; docs/evaluation.md has the details)

Layout: ``benchmarks`` (presets, specs, loading), ``generation`` (seeded sampling), ``samples``
(``SamplesFile``: one samples file, read once, resumed, appended, rewritten atomically), ``results``
(scoring, fingerprints, re-scoring), ``tasks`` (the protocol of a benchmark kind), ``maths`` and
``code`` (the two kinds), ``run`` (the one runner loop over models x benchmarks, and the command),
``summary`` (tables and plot), ``callback`` (evaluation during training).

Inside training, ``EvalCallback`` samples a held-out problem list every N steps with the
training model and logs ``eval/avg@k`` and ``eval/pass@k`` through the trainer's ``log``.
"""

from antisd.evaluate.benchmarks import (
    DATA_DIR_ENV,
    GSM8K_FINAL_COLUMN,
    PAPER_BENCHMARKS,
    PRESETS,
    Benchmark,
    EvalError,
    Preset,
    gsm8k_final_answer,
    load_benchmark,
    parse_benchmark,
    preset_benchmark,
)
from antisd.evaluate.callback import EvalCallback, attach_eval_callback
from antisd.evaluate.config import EvalConfig, build_parser, model_label, parse_args
from antisd.evaluate.code import CodeKind
from antisd.evaluate.generation import (
    MathRows,
    Sample,
    TransformersGenerator,
    VLLMGenerator,
    load_tokenizer,
    make_generator,
    prompt_ids,
    release_generator,
    resolve_backend,
    sample_problems,
    seed_for,
)
from antisd.evaluate.maths import MathsKind
from antisd.evaluate.results import (
    RESULTS_VERSION,
    check_gold,
    complete_problems,
    fingerprint,
    meta_path,
    prepare_results,
    read_records,
    results_path,
    score_completion,
    score_results,
)
from antisd.evaluate.run import EvalSummary, main, run_eval, run_models
from antisd.evaluate.samples import SamplesFile
from antisd.evaluate.summary import benchmark_row, format_markdown, plot_pass_at_k, summarize, write_summary
from antisd.evaluate.tasks import EvalKind, EvalTask

__all__ = [
    "DATA_DIR_ENV", "GSM8K_FINAL_COLUMN", "PAPER_BENCHMARKS", "PRESETS", "RESULTS_VERSION",
    "Benchmark", "CodeKind", "EvalCallback", "EvalConfig", "EvalError", "EvalKind", "EvalSummary", "EvalTask",
    "MathRows", "MathsKind", "Preset", "Sample", "SamplesFile", "TransformersGenerator", "VLLMGenerator",
    "attach_eval_callback", "benchmark_row", "build_parser", "check_gold", "complete_problems", "fingerprint",
    "format_markdown", "gsm8k_final_answer", "load_benchmark", "load_tokenizer", "main", "make_generator",
    "meta_path", "model_label", "parse_args", "parse_benchmark", "plot_pass_at_k", "prepare_results",
    "preset_benchmark", "prompt_ids", "read_records", "release_generator", "resolve_backend", "results_path",
    "run_eval", "run_models", "sample_problems", "score_completion", "score_results", "seed_for", "summarize",
    "write_summary",
]
