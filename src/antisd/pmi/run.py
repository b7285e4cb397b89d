"""``antisd pmi``: load, sample or read rollouts, score them, aggregate, write the report folder.

See the package docstring (``antisd.pmi``) and docs/pmi.md for what is written and why.

CPU: antisd pmi --model runs/tiny-qwen3 --dataset math500 --max_problems 8 \
         --samples_per_problem 2 --max_new_tokens 64 --output_dir runs/pmi_math500_tiny
GPU: antisd pmi --config recipes/models/qwen3-8b.yaml --max_problems 32 --samples_per_problem 8 \
         --max_new_tokens 4096 --batch_size 16 --check_rollouts 64 --output_dir runs/pmi_qwen3_8b
"""

from __future__ import annotations

import dataclasses

import itertools
import json
import logging
import math
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from antisd.pmi.aggregate import PMIAggregator, PMITables, parse_token_classes
from antisd.pmi.compute import PMIRecord, SkipLog, compute_pmi, records_from_stored
from antisd.pmi.config import PMIConfig, PMIConfigError, parse_args
from antisd.pmi.render import (
    checks_text,
    classes_markdown,
    entropy_markdown,
    plot_heatmap,
    plot_strip,
    render_html,
    tokens_markdown,
    write_csv,
)
from antisd.pmi.sources import load_problem_rows, read_rollouts, sample_rollouts
from antisd.lm.sampling import load_tokenizer as load_pretrained_tokenizer
from antisd.lm.sampling import resolve_device, torch_dtype
from antisd.cli.interrupt import install as install_sigint
from antisd.cli.interrupt import interrupted
from antisd.cli.validate import InputError, check_output_dir, check_tokenizer, one_line

logger = logging.getLogger(__name__)


def load_tokenizer(cfg: PMIConfig):
    """The tokenizer of ``cfg`` (--tokenizer, else --model), pad token = eos token if it has none."""
    name = cfg.tokenizer or cfg.model
    if name.startswith(("/", "./", "../", "~")) and not Path(name).expanduser().exists():
        raise FileNotFoundError(f"{'tokenizer' if cfg.tokenizer else 'model'}={name!r}: no such local directory")
    return load_pretrained_tokenizer(name, trust_remote_code=cfg.trust_remote_code)


def load_model(cfg: PMIConfig, device: str):
    from transformers import AutoModelForCausalLM

    dtype = torch_dtype(cfg.dtype, device)  # auto: float32 on CPU, bfloat16 on a GPU
    logger.info("Loading %s (%s on %s)", cfg.model, dtype, device)
    model = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=dtype, trust_remote_code=cfg.trust_remote_code)
    return model.to(device).eval()


def _checked(fn, *args, **kwargs):
    """Call a loader; its ValueError/OSError (bad path, column, file type) becomes a PMIConfigError."""
    try:
        return fn(*args, **kwargs)
    except (ValueError, OSError) as e:
        raise PMIConfigError(" ".join(str(e).split())) from None


def iter_records(cfg: PMIConfig, skips: SkipLog) -> tuple[Iterator[PMIRecord], int | None, dict[str, Any]]:
    """The scored records of ``cfg`` (lazy), the expected count (for the progress bar), run info."""
    info: dict[str, Any] = {"context": cfg.context_config.__dict__ | {"sources": list(cfg.context_config.sources)}}
    tokenizer = _checked(load_tokenizer, cfg) if cfg.model or cfg.tokenizer else None
    if cfg.use_stored_logps:
        rollouts = _checked(read_rollouts, cfg.rollouts, data_cfg=cfg.data_config("unused"), skips=skips, use_stored=True)
        return records_from_stored(rollouts, tokenizer, max_tokens=cfg.max_tokens, skips=skips), None, info
    if cfg.dataset is not None and cfg.prompt_format == "chat" and not getattr(tokenizer, "chat_template", None):
        raise PMIConfigError(
            f"prompt_format='chat' needs a tokenizer with a chat template, and {cfg.tokenizer or cfg.model!r} has none; "
            "give --prompt_format plain (the problem text is the prompt) or a tokenizer with a chat template")
    device = resolve_device(cfg.device)
    model = _checked(load_model, cfg, device)
    info.update(device=device, dtype=str(next(model.parameters()).dtype).removeprefix("torch."))
    expected = None
    if cfg.rollouts is not None:
        rollouts = _checked(read_rollouts, cfg.rollouts, data_cfg=cfg.data_config("unused"), skips=skips)
    else:
        max_problems = cfg.max_problems
        if max_problems is None and cfg.max_rollouts is not None:
            max_problems = math.ceil(cfg.max_rollouts / cfg.samples_per_problem)
        data_cfg = dataclasses.replace(cfg.data_config(), max_samples=max_problems)
        problems = _checked(load_problem_rows, data_cfg, skips)
        expected = len(problems) * cfg.samples_per_problem
        info["n_problems"] = len(problems)
        rollouts = sample_rollouts(
            model, tokenizer, problems, cfg.context_config, samples_per_problem=cfg.samples_per_problem,
            max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, batch_size=cfg.batch_size,
            problems_per_batch=cfg.problems_per_batch, seed=cfg.seed, skips=skips,
            answer_extraction=cfg.answer_extraction,
        )
        # Scoring takes rollouts a context window at a time, so sampling has its own bar: without it nothing
        # moves while the first window is sampled (minutes on a real model on a CPU).
        from tqdm.auto import tqdm

        rollouts = tqdm(rollouts, total=expected, desc="sampled", unit="rollout", position=1, leave=False,
                        disable=not cfg.progress, file=sys.stderr)
    records = compute_pmi(
        model, tokenizer, rollouts, cfg.context_config, temperature=cfg.temperature, batch_size=cfg.batch_size,
        max_tokens=cfg.max_tokens, check_rollouts=cfg.check_rollouts, context_window=cfg.context_window,
        seed=cfg.seed, skips=skips, answer_extraction=cfg.answer_extraction,
    )
    if cfg.max_rollouts is not None:
        expected = cfg.max_rollouts if expected is None else min(expected, cfg.max_rollouts)
    return records, expected, info


def default_rtol(cfg: PMIConfig, info: dict[str, Any]) -> float:
    if cfg.telescoping_rtol is not None:
        return cfg.telescoping_rtol
    return 1e-5 if info.get("dtype", "float32") in ("float32", "float64") else 2e-2


def write_outputs(cfg: PMIConfig, tables: PMITables, traced: Sequence[PMIRecord], skips: SkipLog, info: dict[str, Any]) -> str:
    """Write tables, figures, HTML and report.md under cfg.output_dir; returns the report text."""
    out = Path(cfg.output_dir)
    write_csv(tables.tokens, out / "tokens.csv")
    write_csv(tables.classes, out / "classes.csv")
    if tables.entropy:
        write_csv(tables.entropy, out / "entropy.csv")
    write_csv(tables.rollouts, out / "rollouts.csv")
    (out / "tokens.md").write_text(tokens_markdown(tables, min_count=cfg.min_count, top_k=cfg.top_k), encoding="utf-8")
    (out / "classes.md").write_text(classes_markdown(tables), encoding="utf-8")
    plot_heatmap(tables, out / "heatmap.png")
    strips = out / "strips"
    strips.mkdir(exist_ok=True)
    strip_files = [plot_strip(r, strips / f"strip_{k:03d}.png").name for k, r in enumerate(traced)]
    checks = checks_text(tables)
    header = f"<pre>{_html_escape(_run_line(cfg, info))}\n{_html_escape(checks)}</pre>"
    (out / "traces.html").write_text(render_html(traced, scale=cfg.color_scale, title=f"PMI traces: {cfg.model or cfg.rollouts}",
                                                 header=header), encoding="utf-8")
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(skips.counts.items())) or "none"
    report = "\n".join([
        "# PMI diagnostics", "", _run_line(cfg, info), "",
        f"Scored {tables.summary['n_rollouts']} rollouts ({tables.summary['truncated']} cut at max_tokens), "
        f"mean reward {tables.summary['mean_reward']:.3f}, context sources {tables.summary['sources']}; skipped: {skipped}.",
        "", "## Checks", "", "```", checks, "```", "", "## Token classes", "", classes_markdown(tables),
        "## By the student's entropy (fork tokens: the top 20%)", "",
        "u and the AntiSD term -phi(u) where the student is uncertain (high entropy: the forks where the "
        "continuation is decided) vs where it is not; term_mass_frac is the share of the term's absolute mass.", "",
        entropy_markdown(tables),
        "## Tokens ranked by mean u", "", tokens_markdown(tables, min_count=cfg.min_count, top_k=cfg.top_k),
        "## Files", "",
        "traces.html (per-token colours, hover for values), strips/ (u_t over positions: "
        + ", ".join(strip_files[:3]) + ("..." if len(strip_files) > 3 else "") + "), heatmap.png, tokens.csv/.md, "
        "classes.csv/.md, entropy.csv, rollouts.csv, records.jsonl (every token's s, t, u, entropy), summary.json", "",
    ])
    (out / "report.md").write_text(report, encoding="utf-8")
    summary = {"config": cfg.to_dict(), "info": info, "summary": tables.summary, "classes": tables.classes,
               "skipped": dict(skips.counts), "skip_messages": skips.messages}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    return report


def _html_escape(s: str) -> str:
    import html

    return html.escape(s)


def _run_line(cfg: PMIConfig, info: dict[str, Any]) -> str:
    src = f"rollouts {cfg.rollouts}" if cfg.rollouts else f"dataset {cfg.dataset} ({info.get('n_problems', '?')} problems x {cfg.samples_per_problem} samples)"
    ctx = info.get("context", {})
    return (f"model {cfg.model} ({info.get('dtype', 'stored log-probs')} on {info.get('device', '-')}), {src}, "
            f"temperature {cfg.temperature}, context sources {ctx.get('sources')}, template {ctx.get('template', '')[:60]!r}...")


def check_inputs(cfg: PMIConfig) -> PMIConfig:
    """The model, tokenizer and problem file of ``cfg`` (``antisd.cli.validate``, ``antisd.data.problems``): a bad
    one raises ``InputError`` (one line) before anything is written. The rows of a --dataset are
    validated as ``antisd train`` validates them; a --rollouts file is read row by row later (an
    unusable row is skipped and counted). Returns ``cfg`` with the model name resolved to its folder."""
    from antisd.data.problems import load_problems
    from antisd.lm.names import resolve_model

    check_output_dir(cfg.output_dir)
    if cfg.model and not cfg.use_stored_logps:  # toyworld, a local folder or a hub id (antisd.lm.names)
        cfg = dataclasses.replace(cfg, model=resolve_model(cfg.model, what="model", tokenizer=cfg.tokenizer is None).path)
    if cfg.tokenizer:
        check_tokenizer(cfg.tokenizer)
    if cfg.dataset is not None:
        load_problems(cfg.data_config())
    return cfg


def run(cfg: PMIConfig) -> tuple[PMITables, SkipLog, str]:
    """Do everything ``antisd pmi`` does; returns (tables, skips, report text)."""
    from tqdm.auto import tqdm

    cfg = check_inputs(cfg)  # the model name resolved to its folder: a new config, the caller's is not changed
    skips = SkipLog()
    records, expected, info = iter_records(cfg, skips)  # the model, tokenizer and templates load here
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.max_rollouts is not None:
        records = itertools.islice(records, cfg.max_rollouts)
    agg = PMIAggregator(
        classes=parse_token_classes(cfg.token_class), heatmap_scale=cfg.heatmap_scale, heatmap_bins=cfg.heatmap_bins,
        heatmap_min_logp=cfg.heatmap_min_logp, telescoping_atol=cfg.telescoping_atol,
        telescoping_rtol=default_rtol(cfg, info),
    )
    traced: list[PMIRecord] = []
    with open(out / "records.jsonl", "w", encoding="utf-8") as fh:
        for rec in tqdm(records, total=expected, desc="scored", unit="rollout", position=0, disable=not cfg.progress,
                        file=sys.stderr):
            agg.add(rec)
            fh.write(rec.to_json() + "\n")
            if len(traced) < cfg.max_traces:
                traced.append(rec)
    tables = agg.result(n_boot=cfg.bootstrap, unit=cfg.bootstrap_unit, level=cfg.ci_level, seed=cfg.seed)
    report = write_outputs(cfg, tables, traced, skips, info)
    return tables, skips, report


def main(argv: Sequence[str] | None = None) -> int:
    """``antisd pmi [options]`` / ``python -m antisd.pmi``. Exit 0; 1 if the telescoping check
    fails or nothing could be scored; 2 for a bad option, model, file or config (one line, before anything
    is written or any model loads)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    install_sigint()
    cfg = None
    try:
        cfg = parse_args(argv)
        tables, skips, report = run(cfg)
    except (PMIConfigError, FileNotFoundError, InputError) as e:
        print(f"antisd pmi: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return interrupted("pmi", pmi_kept(cfg))
    print(report)
    s = tables.summary
    if s["n_rollouts"] == 0:
        print(f"antisd pmi: no rollout could be scored (skipped: {dict(skips.counts)})", file=sys.stderr)
        return 1
    return 1 if s["telescoping_failed"] else 0


def pmi_kept(cfg: PMIConfig | None) -> str:
    """What an interrupted ``antisd pmi`` kept: the records of the rollouts scored so far, without the report
    (aggregates need every rollout), and how to go on (the same command starts over; it does not resume)."""
    records = Path(cfg.output_dir) / "records.jsonl" if cfg is not None else None
    if records is None or not records.is_file():
        return "no rollout was scored yet, so nothing was written; run the same command again to start"
    with open(records, encoding="utf-8", errors="replace") as f:
        n = sum(1 for line in f if line.endswith("\n"))
    if not n:
        return f"no rollout was scored yet ({records} is empty); run the same command again to start"
    return (f"{n} scored rollouts kept in {records}, no report written; run the same command again to start over "
            "(--max_rollouts N scores fewer)")
