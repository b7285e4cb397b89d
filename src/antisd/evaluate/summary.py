"""Summary rows (avg@k, pass@j, lengths, counted failures), the markdown/CSV tables and the pass@k plot."""

from __future__ import annotations

import csv
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from antisd.method.passk import avg_at_k, mean_over_benchmarks, pass_at_k_table
from antisd.rewards import Outcome

logger = logging.getLogger("antisd.evaluate")  # one logger name for every submodule of the package

_COUNTED_OUTCOMES = tuple(o for o in Outcome if o not in (Outcome.CORRECT, Outcome.FORMAT_VIOLATION))
_FAILURE_COUNTS = ("n_empty", *(f"n_{o.value}" for o in _COUNTED_OUTCOMES),
                   "n_gold_unparseable_problems", "n_gold_unverified_problems", "n_incomplete_problems")


def benchmark_row(model: str, benchmark: str, records: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """One summary row from the records of one model x benchmark (complete problems only)."""
    counts = defaultdict(int)
    for record in records:
        counts[int(record.get("n_samples") or 0)] += 1
    by_problem: dict[str, dict[int, Mapping[str, Any]]] = defaultdict(dict)
    for record in records:
        by_problem[str(record["problem_id"])][int(record["sample_index"])] = record
    k = max(len(s) for s in by_problem.values())
    k = max(k, max(counts))
    complete = {pid: [s[i] for i in range(k)] for pid, s in by_problem.items() if set(s) == set(range(k))}
    if not complete:
        logger.warning("%s / %s: no problem has all its %d samples; no summary row", model, benchmark, k)
        return None
    samples = [r for rows in complete.values() for r in rows]
    outcomes = {pid: [bool(r["correct"]) for r in rows] for pid, rows in complete.items()}
    row: dict[str, Any] = {"model": model, "benchmark": benchmark, "n_problems": len(complete), "k": k,
                           "avg@k": avg_at_k(outcomes)}
    row.update({f"pass@{j}": v for j, v in pass_at_k_table(outcomes).items()})
    row["mean_tokens"] = sum(float(r.get("n_tokens") or 0) for r in samples) / len(samples)
    row["truncation_rate"] = sum(bool(r.get("truncated")) for r in samples) / len(samples)
    no_answer = sum(r.get("outcome") in (Outcome.NO_ANSWER.value, Outcome.UNCLOSED_BOX.value) for r in samples)
    row["no_answer_rate"] = no_answer / len(samples)
    row["n_samples"] = len(samples)
    row["n_empty"] = sum(not str(r.get("completion") or "").strip() for r in samples)
    for outcome in _COUNTED_OUTCOMES:
        row[f"n_{outcome.value}"] = sum(r.get("outcome") == outcome.value for r in samples)
    gold = {pid: next((g for r in rows if (g := r.get("gold_check", "ok")) != "ok"), "ok") for pid, rows in complete.items()}
    row["n_gold_unparseable_problems"] = sum(g == "gold_unparseable" for g in gold.values())
    row["n_gold_unverified_problems"] = sum(g != "ok" for g in gold.values())
    row["n_incomplete_problems"] = len(by_problem) - len(complete)
    return row


def _mean_row(model: str, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The paper's headline: the unweighted mean over benchmarks (pass@j where every benchmark has j)."""
    out: dict[str, Any] = {"model": model, "benchmark": "mean", "n_problems": sum(r["n_problems"] for r in rows),
                           "k": None, "avg@k": mean_over_benchmarks({r["benchmark"]: r["avg@k"] for r in rows})}
    shared = set.intersection(*({key for key in r if key.startswith("pass@")} for r in rows))
    for key in sorted(shared, key=lambda s: int(s[5:])):
        out[key] = sum(r[key] for r in rows) / len(rows)
    for key in ("mean_tokens", "truncation_rate", "no_answer_rate"):
        out[key] = sum(r[key] for r in rows) / len(rows)
    for key in ("n_samples", *_FAILURE_COUNTS):
        out[key] = sum(r[key] for r in rows)
    return out


def summarize(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Summary rows: one per model x benchmark (in first-seen order), then a "mean" row per model
    with two or more benchmarks. Fractions in [0, 1]; pass@j by the unbiased estimator."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for record in records:
        groups[(str(record["model"]), str(record["benchmark"]))].append(record)
    rows = [row for (model, bench), recs in groups.items() if (row := benchmark_row(model, bench, recs))]
    models = list(dict.fromkeys(r["model"] for r in rows))
    for model in models:
        mine = [r for r in rows if r["model"] == model]
        if len(mine) > 1:
            rows.append(_mean_row(model, mine))
    return rows


def _pass_columns(rows: Sequence[Mapping[str, Any]], all_ks: bool) -> list[str]:
    ks = sorted({int(key[5:]) for r in rows for key in r if key.startswith("pass@")})
    if not all_ks:
        ks = [j for j in ks if j & (j - 1) == 0 or any(r.get("k") == j for r in rows)]
    return [f"pass@{j}" for j in ks]


def format_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """Two markdown tables: scores (percent) and failure counts."""
    def pct(v: Any) -> str:
        return "" if v is None else f"{100 * v:.1f}"

    passes = _pass_columns(rows, all_ks=False)
    head = ["model", "benchmark", "problems", "k", "avg@k", *passes, "mean tokens", "truncated %", "no answer %"]
    lines = ["# antisd eval summary", "",
             "Scores in percent. avg@k: mean accuracy over the k samples of each problem, then over problems. "
             "pass@j: unbiased estimator 1 - C(n-c, j)/C(n, j). mean: unweighted mean over the model's "
             "benchmarks (the paper's headline number).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["model"], r["benchmark"], str(r["n_problems"]), "" if r.get("k") is None else str(r["k"]),
                 pct(r["avg@k"]), *(pct(r.get(p)) for p in passes), f"{r['mean_tokens']:.0f}",
                 pct(r["truncation_rate"]), pct(r["no_answer_rate"])]
        lines.append("| " + " | ".join(cells) + " |")
    counts = ["n_samples", *_FAILURE_COUNTS]
    lines += ["", "## Counted failures", "",
              "Samples: empty completions, verifier outcomes other than correct; problems: reference "
              "answers math-verify cannot parse / that fail the self-check, problems without all k samples.", "",
              "| model | benchmark | " + " | ".join(c.removeprefix("n_") for c in counts) + " |",
              "|" + "---|" * (len(counts) + 2)]
    for r in rows:
        lines.append(f"| {r['model']} | {r['benchmark']} | " + " | ".join(str(r[c]) for c in counts) + " |")
    return "\n".join(lines) + "\n"


def write_summary(rows: Sequence[Mapping[str, Any]], output_dir: str | Path) -> dict[str, Path]:
    """summary.md and summary.csv (fractions, every pass@j) in `output_dir`."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, csv_path = out / "summary.md", out / "summary.csv"
    md.write_text(format_markdown(rows), encoding="utf-8")
    columns = ["model", "benchmark", "n_problems", "k", "avg@k", *_pass_columns(rows, all_ks=True),
               "mean_tokens", "truncation_rate", "no_answer_rate", "n_samples", *_FAILURE_COUNTS]
    with open(csv_path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return {"markdown": md, "csv": csv_path}


def pass_at_k_figure(rows: Sequence[Mapping[str, Any]]) -> Any | None:
    """pass@k curves as a matplotlib Figure: one panel per benchmark, one line per model; None if no rows.
    k runs on a log-2 axis (ticks at the k values) only when a panel has more than one k; with one k the
    panel shows points at that k on a plain axis. The percent axis starts at 0 and ends at or just above
    the highest value (at most 100%)."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state
    from matplotlib.ticker import FixedLocator, NullLocator

    rows = [r for r in rows if r["benchmark"] != "mean"]
    benches = list(dict.fromkeys(r["benchmark"] for r in rows))
    if not benches:
        return None
    ncols = min(4, len(benches))
    nrows = math.ceil(len(benches) / ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.4 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, bench in zip(axes, benches):
        mine = [r for r in rows if r["benchmark"] == bench]
        all_ks: set[int] = set()
        top = 0.0
        for r in mine:
            ks = sorted(int(key[5:]) for key in r if key.startswith("pass@") and r[key] is not None)
            values = [100 * r[f"pass@{j}"] for j in ks]
            all_ks.update(ks)
            top = max([top, *values])
            ax.plot(ks, values, marker="o", markersize=3 if len(ks) > 1 else 6, label=r["model"])
        ticks = sorted(all_ks)
        if len(ticks) > 1:
            ax.set_xscale("log", base=2)
            ax.set_xlim(ticks[0] / 1.25, ticks[-1] * 1.25)
        elif ticks:
            ax.set_xlim(ticks[0] - 1, ticks[0] + 1)
        if ticks:
            ax.xaxis.set_major_locator(FixedLocator(ticks))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xticklabels([str(k) for k in ticks])
        ax.set_ylim(0, min(100.0, top * 1.1) if top > 0 else 1.0)
        ax.set_title(f"{bench} ({mine[0]['n_problems']} problems)")
        ax.set_xlabel("k")
        ax.set_ylabel("pass@k (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in axes[len(benches):]:
        ax.set_visible(False)
    return fig


def plot_pass_at_k(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path | None:
    """Write ``pass_at_k_figure`` of `rows` to `path`; None if there are no rows."""
    fig = pass_at_k_figure(rows)
    if fig is None:
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path
