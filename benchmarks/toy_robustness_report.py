"""The pre-stated analysis of the robustness study (docs/benchmarks.md, issue 15), from the runs of
``benchmarks/toy_robustness.py``: tables, verdicts, mechanism traces and plots.

    python benchmarks/toy_robustness_report.py --out runs/robust            # writes runs/robust/report.md + PNGs

Per base and pooled over bases, for every arm against GRPO (paired by seed):
1. final accuracy difference at the last step (the n = 2,048 endpoint): mean and 95% t-interval;
2. steps for the seed-mean arm curve to reach the seed-mean GRPO final, 95% bootstrap interval
   over seed pairs (2,000 resamples); speed-up 400 / steps;
3. area under the held-out curve (trapezoid over the n = 512 curve, normalised by the steps):
   paired difference, mean and 95% t-interval;
4. collapse: final < the run's own step-0 accuracy - 0.03 (both n = 2,048); count with a 95%
   Wilson interval; mean peak-to-final drop of the curve.
Only finished runs (``result.json``) enter the tables.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
from collections import defaultdict
from pathlib import Path

COLLAPSE_MARGIN = 0.03
# two-sided 95% Student t quantiles t(0.975, df), df = 1..30 (beyond: 1.96)
T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]
MECHANISM = ("pmi/mean", "signal/pos_mass_frac", "signal/mean", "teacher/entropy_mean", "student/entropy_mean",
             "completions/mean_length", "deliberation/token_frac", "fork/signal_mass_frac", "fork/pmi_mean",
             "gate/on", "accuracy")


def t_interval(xs: list[float]) -> tuple[float, float, float]:
    """(mean, low, high) of the 95% t-interval; NaN bounds for fewer than 2 values."""
    m = statistics.fmean(xs)
    if len(xs) < 2:
        return m, math.nan, math.nan
    half = (T975[len(xs) - 2] if len(xs) - 1 <= len(T975) else 1.96) * statistics.stdev(xs) / math.sqrt(len(xs))
    return m, m - half, m + half


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k / n."""
    if n == 0:
        return math.nan, math.nan
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)  # rounding can leave [0, 1] by 1e-17


def endpoint(run: dict, step: int) -> float | None:
    """The n = 2,048 accuracy at ``step`` (else the curve's point there)."""
    big = [p["acc"] for p in run["curve"] if p["step"] == step and p["kind"] == "big"]
    acc = [p["acc"] for p in run["curve"] if p["step"] == step and p["kind"] == "acc"]
    return (big or acc or [None])[0]


def curve(run: dict) -> tuple[list[int], list[float]]:
    pts = sorted((p["step"], p["acc"]) for p in run["curve"] if p["kind"] == "acc")
    return [s for s, _ in pts], [a for _, a in pts]


def peak_step(run: dict) -> int:
    """The curve step of the highest held-out accuracy (the first, on ties)."""
    steps, accs = curve(run)
    return steps[max(range(len(accs)), key=accs.__getitem__)]


def auc(run: dict) -> float:
    steps, accs = curve(run)
    area = sum((steps[i + 1] - steps[i]) * (accs[i] + accs[i + 1]) / 2 for i in range(len(steps) - 1))
    return area / (steps[-1] - steps[0])


def final_step(run: dict) -> int:
    return max(p["step"] for p in run["curve"])


def collapsed(run: dict) -> bool:
    return endpoint(run, final_step(run)) < endpoint(run, 0) - COLLAPSE_MARGIN


def steps_to(arm_runs: list[dict], target: float) -> int | None:
    """First step > 0 at which the seed-mean curve of ``arm_runs`` reaches ``target``."""
    steps, _ = curve(arm_runs[0])
    for i, s in enumerate(steps):
        if s > 0 and statistics.fmean(curve(r)[1][i] for r in arm_runs) >= target:
            return s
    return None


def steps_to_interval(pairs: list[tuple[dict, dict]], n_boot: int = 2000, seed: int = 0) -> tuple[int | None, float, float]:
    """Point estimate and 95% bootstrap interval (over seed pairs) of the steps to GRPO's final accuracy;
    'not reached' counts as one step past the budget."""
    budget = final_step(pairs[0][1])

    def stat(sample):
        target = statistics.fmean(endpoint(g, final_step(g)) for _, g in sample)
        s = steps_to([a for a, _ in sample], target)
        return budget + 1 if s is None else s

    point = stat(pairs)
    rng = random.Random(seed)
    boots = sorted(stat([rng.choice(pairs) for _ in pairs]) for _ in range(n_boot))
    return (None if point > budget else point), boots[int(0.025 * n_boot)], boots[int(0.975 * n_boot) - 1]


def load_runs(out: Path) -> dict[tuple[str, str], dict[int, dict]]:
    runs: dict[tuple[str, str], dict[int, dict]] = defaultdict(dict)
    for path in sorted(out.glob("*/*/result.json")):
        r = json.loads(path.read_text())
        hist = path.parent / "log_history.json"
        r["history"] = json.loads(hist.read_text()) if hist.exists() else []
        runs[(r["base"], r["arm"])][r["seed"]] = r
    return runs


def fmt_ci(m: float, lo: float, hi: float, signed: bool = True) -> str:
    f = "{:+.3f}" if signed else "{:.3f}"
    return f"{f.format(m)} [{f.format(lo)}, {f.format(hi)}]" if not math.isnan(lo) else f.format(m)


def verdict(lo: float, hi: float, margin: float = 0.02) -> str:
    if math.isnan(lo):
        return "inconclusive (too few seeds)"
    if lo > 0:
        return "supported"
    if hi < 0 or (lo >= -margin and hi <= margin):
        return "not supported"
    return "inconclusive"


def paired(runs, keys: list[tuple[str, str]]) -> list[tuple[dict, dict]]:
    """(arm run, GRPO run) of the same base and seed, both run to the same final step."""
    return [(r, runs[(b, "grpo")][s]) for b, arm in keys for s, r in runs.get((b, arm), {}).items()
            if s in runs.get((b, "grpo"), {}) and final_step(r) == final_step(runs[(b, "grpo")][s])]


def arm_rows(runs, bases: list[str], arms: list[str]) -> list[str]:
    lines = ["| base | arm | seeds | step 0 | final (mean ± sd) | final − GRPO [95% CI] | AUC − GRPO [95% CI] "
             "| steps to GRPO's final [95% CI] | collapses [95% CI] | peak − final |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for base in bases + ["pooled"]:
        for arm in arms:
            keys = [(b, arm) for b in (bases if base == "pooled" else [base])]
            rs = [r for k in keys for r in runs.get(k, {}).values()]
            if not rs:
                continue
            finals = [endpoint(r, final_step(r)) for r in rs]
            starts = [endpoint(r, 0) for r in rs]
            pairs = paired(runs, keys) if arm != "grpo" else []
            d_final = d_auc = reach = "—"
            if len(pairs) >= 1:
                d_final = fmt_ci(*t_interval([endpoint(a, final_step(a)) - endpoint(g, final_step(g)) for a, g in pairs]))
                d_auc = fmt_ci(*t_interval([auc(a) - auc(g) for a, g in pairs]))
                point, lo, hi = steps_to_interval(pairs)
                reach = f"{point if point is not None else 'not reached'} [{lo:.0f}, {hi:.0f}]"
            k = sum(collapsed(r) for r in rs)
            wl, wh = wilson(k, len(rs))
            drop = statistics.fmean(max(curve(r)[1]) - endpoint(r, final_step(r)) for r in rs)
            sd = f" ± {statistics.stdev(finals):.3f}" if len(finals) > 1 else ""
            lines.append(f"| {base} | {arm} | {len(rs)} | {statistics.fmean(starts):.3f} | "
                         f"{statistics.fmean(finals):.3f}{sd} | {d_final} | {d_auc} | {reach} | "
                         f"{k}/{len(rs)} [{wl:.2f}, {wh:.2f}] | {drop:.3f} |")
    return lines


def verdict_rows(runs, bases: list[str], arms: list[str]) -> list[str]:
    """The pre-stated verdicts for "arm better / faster than GRPO", per base and pooled."""
    lines = ["| base | arm | pairs | better: final [95% CI] | better: AUC [95% CI] | faster: steps to GRPO's final [95% CI] |",
             "|---|---|---|---|---|---|"]
    for base in bases + ["pooled"]:
        for arm in arms:
            if arm == "grpo":
                continue
            pairs = paired(runs, [(b, arm) for b in (bases if base == "pooled" else [base])])
            if not pairs:
                continue
            budget = final_step(pairs[0][1])
            cells = []
            for diffs in ([endpoint(a, final_step(a)) - endpoint(g, final_step(g)) for a, g in pairs],
                          [auc(a) - auc(g) for a, g in pairs]):
                m, lo, hi = t_interval(diffs)
                cells.append(f"{verdict(lo, hi)}: {fmt_ci(m, lo, hi)}")
            point, lo, hi = steps_to_interval(pairs)
            fast = ("inconclusive (too few seeds)" if len(pairs) < 2 else "supported" if hi < budget
                    else "not supported" if point is None or lo >= budget else "inconclusive")
            speed = f", {budget / point:.1f}x" if point else ""
            cells.append(f"{fast}: {point if point is not None else 'not reached'} [{lo:.0f}, {hi:.0f}]{speed}")
            lines.append(f"| {base} | {arm} | {len(pairs)} | " + " | ".join(cells) + " |")
    return lines


def monitor_rows(runs, bases: list[str], arms: list[str]) -> list[str]:
    """How the exploitation monitor (``monitor/exploit`` in the logged history) read each group of runs:
    collapsed runs it flagged (and when, against the step of the curve's peak), healthy runs it flagged."""
    lines = ["| base | arm | collapsed runs flagged | first flag (median step) | curve peak (median step) "
             "| healthy runs flagged | flagged share of healthy runs' steps |", "|---|---|---|---|---|---|---|"]
    for base in bases:
        for arm in arms:
            rs = [r for r in runs.get((base, arm), {}).values() if any("monitor/exploit" in h for h in r["history"])]
            if not rs:
                continue
            flags = {id(r): [h["step"] for h in r["history"] if h.get("monitor/exploit", 0) > 0] for r in rs}
            bad, good = [r for r in rs if collapsed(r)], [r for r in rs if not collapsed(r)]
            firsts = [flags[id(r)][0] for r in bad if flags[id(r)]]
            peaks = [peak_step(r) for r in bad]
            share = [len(flags[id(r)]) / max(1, sum("monitor/exploit" in h for h in r["history"])) for r in good]
            lines.append(f"| {base} | {arm} | {sum(bool(flags[id(r)]) for r in bad)}/{len(bad)} | "
                         f"{statistics.median(firsts) if firsts else '—'} | {statistics.median(peaks) if peaks else '—'} | "
                         f"{sum(bool(flags[id(r)]) for r in good)}/{len(good)} | "
                         f"{f'{statistics.fmean(share):.3f}' if share else '—'} |")
    return lines


def window_mean(history: list[dict], key: str, lo: float, hi: float) -> float:
    """Mean of ``key`` over the logged steps in the fraction [lo, hi) of the run."""
    steps = [h for h in history if key in h and isinstance(h[key], (int, float)) and math.isfinite(h[key])]
    if not steps:
        return math.nan
    last = max(h["step"] for h in history)
    xs = [h[key] for h in steps if lo * last <= h["step"] < hi * last + (1 if hi >= 1 else 0)]
    return statistics.fmean(xs) if xs else math.nan


def mechanism_rows(runs, bases: list[str], arms: list[str]) -> list[str]:
    """First 10% vs last 10% of steps, collapsed and healthy runs separately."""
    lines = ["| base | arm | runs | group | " + " | ".join(MECHANISM) + " |",
             "|---|---|---|---|" + "---|" * len(MECHANISM)]
    for base in bases:
        for arm in arms:
            rs = list(runs.get((base, arm), {}).values())
            for group, members in (("collapsed", [r for r in rs if collapsed(r)]),
                                   ("healthy", [r for r in rs if not collapsed(r)])):
                if not members:
                    continue
                for label, lo, hi in (("first 10%", 0.0, 0.1), ("last 10%", 0.9, 1.0)):
                    vals = []
                    for key in MECHANISM:
                        xs = [window_mean(r["history"], key, lo, hi) for r in members]
                        xs = [x for x in xs if not math.isnan(x)]
                        vals.append(f"{statistics.fmean(xs):.3f}" if xs else "—")
                    lines.append(f"| {base} | {arm} | {len(members)} | {group}, {label} | " + " | ".join(vals) + " |")
    return lines


def plot_curves(runs, bases: list[str], arms: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(bases), figsize=(5.5 * len(bases), 4), squeeze=False)
    for ax, base in zip(axes[0], bases):
        for i, arm in enumerate(arms):
            rs = list(runs.get((base, arm), {}).values())
            if not rs:
                continue
            for r in rs:
                s, a = curve(r)
                ax.plot(s, a, color=f"C{i}", alpha=0.25, lw=0.8)
            s, _ = curve(rs[0])
            mean = [statistics.fmean(curve(r)[1][j] for r in rs) for j in range(len(s))]
            ax.plot(s, mean, color=f"C{i}", lw=2, label=f"{arm} (n={len(rs)})")
        ax.set_title(f"base {base}")
        ax.set_xlabel("RL step")
        ax.set_ylabel("held-out accuracy (n=512)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_mechanism(runs, base: str, arm: str, path: Path) -> bool:
    """Traces of a collapsed and a healthy run of the same arm side by side (False when there is no such pair)."""
    rs = list(runs.get((base, arm), {}).values())
    bad = [r for r in rs if collapsed(r)]
    good = [r for r in rs if not collapsed(r)]
    if not bad or not good:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ("pmi/mean", "signal/mean", "signal/pos_mass_frac", "teacher/entropy_mean", "completions/mean_length",
            "gate/on")
    fig, axes = plt.subplots(2, 3, figsize=(14, 7))
    for ax, key in zip(axes.flat, keys):
        for r, color in ((bad[0], "C3"), (good[0], "C2")):
            h = [x for x in r["history"] if key in x]
            ax.plot([x["step"] for x in h], [x[key] for x in h], color=color, lw=0.8,
                    label=f"seed {r['seed']} ({'collapsed' if r in bad else 'healthy'})")
        ax.set_title(key)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"base {base}, {arm}: a collapsed and a healthy run")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def continual_rows(runs, bases: list[str], steps: tuple[int, ...] = (250, 300)) -> list[str]:
    """AntiSD resumed from each GRPO run's checkpoint-200 vs the same GRPO run, paired by seed, at each of
    ``steps`` (250: the paper's +50 steps, from the n = 512 curve; 300: +100, n = 2,048)."""
    lines = ["| base | step | seeds | AntiSD from GRPO@200 | GRPO continued | difference [95% CI] |",
             "|---|---|---|---|---|---|"]
    for base in bases:
        cont = runs.get((base, "antisd_from_grpo200"), {})
        grpo = runs.get((base, "grpo"), {})
        for step in steps:
            seeds = sorted(s for s in cont if s in grpo and endpoint(grpo[s], step) is not None
                           and endpoint(cont[s], step) is not None)
            if not seeds:
                continue
            a = [endpoint(cont[s], step) for s in seeds]
            g = [endpoint(grpo[s], step) for s in seeds]
            lines.append(f"| {base} | {step} | {len(seeds)} | {statistics.fmean(a):.3f} | {statistics.fmean(g):.3f} | "
                         f"{fmt_ci(*t_interval([x - y for x, y in zip(a, g)]))} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/robust")
    a = ap.parse_args(argv)
    out = Path(a.out)
    runs = load_runs(out)
    bases = sorted({b for b, _ in runs})
    order = ["grpo", "antisd", "antisd_nogate", "antisd_2sided", "antisd_seqcenter", "antisd_batchcap",
             "antisd_correct", "sd",
             "antisd_from_grpo200"]
    arms = [x for x in order if any((b, x) in runs for b in bases)]
    arms += sorted({x for _, x in runs} - set(arms))
    main_arms = [x for x in arms if x != "antisd_from_grpo200"]
    md = ["# Robustness study: results", "", "## Accuracy, speed, collapse", ""] + arm_rows(runs, bases, main_arms)
    md += ["", "## Verdicts (pre-stated rules)", ""] + verdict_rows(runs, bases, main_arms)
    md += ["", "## Mechanism: first and last 10% of steps", ""] + mechanism_rows(runs, bases, main_arms)
    md += ["", "## Exploitation monitor", ""] + monitor_rows(runs, bases, main_arms)
    md += ["", "## Continual mode", ""] + continual_rows(runs, bases)
    plot_curves(runs, bases, main_arms, out / "curves.png")
    md += ["", "![curves](curves.png)"]
    for base in bases:
        for arm in main_arms:
            png = out / f"mechanism_{base}_{arm}.png"
            if plot_mechanism(runs, base, arm, png):
                md += ["", f"![mechanism {base} {arm}]({png.name})"]
    (out / "report.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
