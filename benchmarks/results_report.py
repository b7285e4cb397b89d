"""Regenerate the documented tables from the per-run records in ``results/`` (issue 25).

    python benchmarks/results_report.py            # rewrites the generated sections of docs/benchmarks.md
    python benchmarks/results_report.py --check    # exit 1 (and a diff) when a section would change

Every table between ``<!-- generated:NAME ... -->`` and ``<!-- /generated -->`` in the documents of
``DOCS`` is written here from the records (``antisd.trainer.records``: one JSON per finished run, written by
``benchmarks/toy_robustness.py`` into ``results/<study>/``); nothing in such a section is typed by hand,
and ``tests/test_results_docs.py`` fails when a section does not equal what the records give.

Sections (the analysis pre-stated in docs/benchmarks.md, "Pre-stated: the guard put to a control, claim 1 on
the search base"):

- ``guard_control``, ``claim1_search``: per base and arm, final and area-under-curve differences to GRPO paired
  by seed (95% t-interval over seed pairs, and a two-level paired bootstrap that resamples seed pairs and, within
  them, the held-out problems in clusters of one equation, the same draw for both arms), collapses, and the
  token term's size (share of steps it is non-zero, its size against |A_seq|, its reach on wrong rollouts).
- ``guard_control_verdicts``, ``claim1_search_verdicts``: the pre-stated decision rules applied.
- ``claim1_pmi``: claim 1 per base from the PMI records of ``benchmarks/claim1_pmi.py`` (rollout-bootstrap
  intervals) and its pre-stated verdict.
- ``records``: what the records are (studies, runs, bases and their checksums, settings hashes, machines) and
  the held-out set's effective sample size (distinct problems and equations, not rows).
"""

from __future__ import annotations

import argparse
import difflib
import functools
import math
import re
import statistics
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import toy_robustness_report as rr  # noqa: E402 - the shared statistics of the robustness study

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("docs/benchmarks.md", "docs/realmodel.md")
N_BOOT = 2000
EQUIV = 0.02  # the equivalence band of every verdict: a difference inside [-0.02, +0.02]
ALIVE = 0.10  # the term is alive on wrong rollouts: non-zero on >= 10% of their tokens when it is active
MARKER = re.compile(r"(<!-- generated:(\w+)[^>]*-->\n)(.*?)(<!-- /generated -->)", re.S)
GUARD_ARMS = ("grpo", "antisd_correct", "antisd_correct_nogate", "antisd_mult")
SEARCH_ARMS = ("grpo", "antisd", "antisd_correct")
ARM_NAMES = {"grpo": "GRPO", "antisd": "canonical AntiSD", "antisd_correct": "guarded default (Eq. 12)",
             "antisd_correct_nogate": "guard, gate off", "antisd_mult": "multiplicative (Eq. 6)"}


# ----------------------------------------------------------------------------- per-problem vectors
@functools.lru_cache(maxsize=None)
def equation_clusters(n: int) -> tuple[int, ...]:
    """Cluster index (one per distinct equation, the held-out split's unit) of each of the first ``n`` held-out
    problems the toy runs score (``antisd.toyworld.base_policy.heldout_rows``: seed EVAL_SEED, the default task)."""
    from antisd.toyworld import ToyTaskConfig, make_problems
    from antisd.toyworld.base_policy import EVAL_SEED

    keys = [p.split_key for p in make_problems(n, split="heldout", seed=EVAL_SEED, config=ToyTaskConfig())]
    index: dict[str, int] = {}
    return tuple(index.setdefault(k, len(index)) for k in keys)


def _bits(point: dict) -> list[int]:
    from antisd.trainer.records import unpack_bits

    if not point.get("correct"):
        raise ValueError(f"curve point at step {point['step']} ({point['kind']}) has no per-problem bits")
    return unpack_bits(point["correct"], point["n"])


def final_vector(rec: dict) -> list[float]:
    """Per held-out problem: solved (1) or not (0) at the run's final evaluation (the n = big one)."""
    step = rr.final_step(rec)
    pts = sorted((p for p in rec["curve"] if p["step"] == step), key=lambda p: p["kind"] != "big")
    return [float(b) for b in _bits(pts[0])]


def auc_vector(rec: dict) -> list[float]:
    """Per problem of the curve's evaluation set: the trapezoid area of its 0/1 outcome over the curve's steps,
    normalised by the steps (the mean over problems is ``toy_robustness_report.auc``)."""
    pts = sorted((p for p in rec["curve"] if p["kind"] == "acc"), key=lambda p: p["step"])
    steps, bits = [p["step"] for p in pts], [_bits(p) for p in pts]
    span = steps[-1] - steps[0]
    return [sum((steps[i + 1] - steps[i]) * (bits[i][j] + bits[i + 1][j]) / 2 for i in range(len(steps) - 1)) / span
            for j in range(len(bits[0]))]


def two_level_bootstrap(pairs: list[tuple[list[float], list[float]]], clusters: tuple[int, ...],
                        n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float, float]:
    """Mean over seed pairs of (arm - reference) per-problem means, and its 95% percentile interval from
    ``n_boot`` resamples of the seed pairs and, jointly, of the problems in whole clusters (the same cluster
    draw for every pair and both arms: paired by problem and by seed)."""
    import numpy as np

    diff = np.array([np.asarray(a) - np.asarray(g) for a, g in pairs])  # (K, n)
    k, n = diff.shape
    if len(clusters) != n:
        raise ValueError(f"{len(clusters)} cluster ids for {n} problems")
    cl = np.asarray(clusters)
    n_cl = int(cl.max()) + 1
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n_cl, np.full(n_cl, 1.0 / n_cl), size=n_boot)  # (B, C): draws of each cluster
    w = counts[:, cl].astype(float)  # (B, n): weight of each problem
    per_pair = (w @ diff.T) / w.sum(axis=1, keepdims=True)  # (B, K)
    pick = rng.integers(0, k, size=(n_boot, k))  # (B, K) seed pairs drawn
    boots = np.sort(np.take_along_axis(per_pair, pick, axis=1).mean(axis=1))
    point = float(diff.mean())
    return point, float(boots[int(0.025 * n_boot)]), float(boots[int(0.975 * n_boot) - 1])


# ----------------------------------------------------------------------------- grouping
def group(records: list[dict], study: str) -> dict[tuple[str, str], dict[int, dict]]:
    runs: dict[tuple[str, str], dict[int, dict]] = defaultdict(dict)
    for r in records:
        if r["study"] == study:
            runs[(r["base_label"], r["arm"])][r["seed"]] = r
    return runs


def pairs_for(runs, base: str, arm: str, ref: str = "grpo") -> list[tuple[dict, dict]]:
    """(arm record, reference record) of the same base and seed and final step, by seed."""
    a, g = runs.get((base, arm), {}), runs.get((base, ref), {})
    return [(a[s], g[s]) for s in sorted(a) if s in g and rr.final_step(a[s]) == rr.final_step(g[s])]


def compare(pairs: list[tuple[dict, dict]]) -> dict[str, tuple[float, float, float]]:
    """Final and AUC differences: t-intervals over seed pairs and two-level bootstrap intervals."""
    out = {}
    for name, vec in (("final", final_vector), ("auc", auc_vector)):
        vecs = [(vec(a), vec(g)) for a, g in pairs]
        clusters = equation_clusters(len(vecs[0][0]))
        for rec in (r for pair in pairs for r in pair):  # the records' eval sets are the ones clustered here
            want = rec["heldout"].get(str(len(clusters)), {}).get("distinct_equations")
            if want is not None and want != len(set(clusters)):
                raise ValueError(f"{rec['study']}/{rec['run']}: heldout[{len(clusters)}] has {want} distinct "
                                 f"equations, the default task's held-out set {len(set(clusters))}")
        out[f"{name}_t"] = rr.t_interval([statistics.fmean(x) - statistics.fmean(y) for x, y in vecs])
        out[f"{name}_boot"] = two_level_bootstrap(vecs, clusters)
    return out


def _summary(recs: list[dict], *keys: str) -> float | None:
    vals = []
    for r in recs:
        v = r["summary"]
        for k in keys:
            v = v.get(k) if isinstance(v, dict) else None
        if isinstance(v, (int, float)) and math.isfinite(v):
            vals.append(float(v))
    return statistics.fmean(vals) if vals else None


def _f(x: float | None, fmt: str = "{:.3f}") -> str:
    return "—" if x is None else fmt.format(x)


def _ci(t: tuple[float, float, float]) -> str:
    return rr.fmt_ci(*t)


def _boot(t: tuple[float, float, float]) -> str:
    return f"[{t[1]:+.3f}, {t[2]:+.3f}]"


# ----------------------------------------------------------------------------- sections
def arm_table(runs, bases: list[str], arms: tuple[str, ...]) -> list[str]:
    lines = ["| base | arm | seeds | step 0 | final (mean ± sd) | final − GRPO, t [95% CI] | two-level bootstrap "
             "| AUC − GRPO, t [95% CI] | two-level bootstrap | collapses | term non-zero (share of steps) "
             "| term / \\|A\\| when non-zero | wrong rollouts: tokens with a term, when non-zero | gate on |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for base in bases:
        for arm in arms:
            rs = [runs[(base, arm)][s] for s in sorted(runs.get((base, arm), {}))]
            if not rs:
                continue
            finals = [rr.endpoint(r, rr.final_step(r)) for r in rs]
            pairs = pairs_for(runs, base, arm) if arm != "grpo" else []
            cells = ["—"] * 4
            if pairs:
                c = compare(pairs)
                cells = [_ci(c["final_t"]), _boot(c["final_boot"]), _ci(c["auc_t"]), _boot(c["auc_boot"])]
            sd = f" ± {statistics.stdev(finals):.3f}" if len(finals) > 1 else ""
            k = sum(rr.collapsed(r) for r in rs)
            lines.append(
                f"| {base} | {ARM_NAMES.get(arm, arm)} | {len(rs)} | {statistics.fmean(rr.endpoint(r, 0) for r in rs):.3f} "
                f"| {statistics.fmean(finals):.3f}{sd} | " + " | ".join(cells) + f" | {k}/{len(rs)} "
                f"| {_f(_summary(rs, 'token_term', 'active_frac'), '{:.2f}')} "
                f"| {_f(_summary(rs, 'token_term', 'size_ratio_mean_when_active'), '{:.4f}')} "
                f"| {_f(_summary(rs, 'token_term', 'wrong_nonzero_frac_when_active'), '{:.2f}')} "
                f"| {_f(_summary(rs, 'gate', 'on_frac'), '{:.2f}')} |")
    return lines


def rule(boot: tuple[float, float, float]) -> str:
    """The pre-stated reading of a difference's two-level bootstrap interval."""
    _, lo, hi = boot
    if lo > 0:
        return "above GRPO"
    if hi < 0:
        return "below GRPO"
    if lo >= -EQUIV and hi <= EQUIV:
        return "equivalent (inside ±0.02)"
    return "inconclusive"


def guard_verdicts(runs, bases: list[str]) -> list[str]:
    lines = ["| question | base | pairs | final: reading [bootstrap 95% CI] | AUC: reading [bootstrap 95% CI] "
             "| collapses | answer |", "|---|---|---|---|---|---|---|"]
    for base in bases:
        for arm, question in (("antisd_correct", "Q1: guarded default vs GRPO"),
                              ("antisd_correct_nogate", "Q1': guard with the gate off vs GRPO"),
                              ("antisd_mult", "Q2: multiplicative vs GRPO")):
            pairs = pairs_for(runs, base, arm)
            if not pairs:
                continue
            c = compare(pairs)
            rs = [a for a, _ in pairs]
            k = sum(rr.collapsed(r) for r in rs)
            readings = {rule(c["final_boot"]), rule(c["auc_boot"])}
            if arm == "antisd_mult":
                alive = _summary(rs, "token_term", "wrong_nonzero_frac_when_active")
                answer = (f"{'avoids' if k == 0 else 'does not avoid'} the collapse; term on wrong rollouts "
                          f"{'alive' if alive is not None and alive >= ALIVE else 'not alive'} ({_f(alive, '{:.2f}')})")
            elif readings & {"above GRPO", "below GRPO"}:
                answer = "distinguishable from GRPO"
            elif readings == {"equivalent (inside ±0.02)"}:
                answer = "indistinguishable from GRPO (equivalent)"
            else:
                answer = "inconclusive"
            if len(pairs) < 5:
                answer += f" (provisional: {len(pairs)} of 5 seeds)"
            lines.append(f"| {question} | {base} | {len(pairs)} | {rule(c['final_boot'])} {_boot(c['final_boot'])} "
                         f"| {rule(c['auc_boot'])} {_boot(c['auc_boot'])} | {k}/{len(rs)} | {answer} |")
    return lines


def search_verdicts(runs, base: str) -> list[str]:
    lines = ["| arm vs GRPO | pairs | better: final [bootstrap 95% CI] | better: AUC [bootstrap 95% CI] "
             "| faster: steps to GRPO's final [95% CI] | collapses |", "|---|---|---|---|---|---|"]
    for arm in SEARCH_ARMS[1:]:
        pairs = pairs_for(runs, base, arm)
        if not pairs:
            continue
        c = compare(pairs)
        cells = []
        for key in ("final_boot", "auc_boot"):
            m, lo, hi = c[key]
            cells.append(f"{rr.verdict(lo, hi)}: {m:+.3f} [{lo:+.3f}, {hi:+.3f}]")
        budget = rr.final_step(pairs[0][1])
        point, lo, hi = rr.steps_to_interval(pairs)
        fast = ("inconclusive (too few seeds)" if len(pairs) < 2 else "supported" if hi < budget
                else "not supported" if point is None or lo >= budget else "inconclusive")
        k = sum(rr.collapsed(a) for a, _ in pairs)
        lines.append(f"| {ARM_NAMES[arm]} | {len(pairs)} | " + " | ".join(cells)
                     + f" | {fast}: {point if point is not None else 'not reached'} [{lo:.0f}, {hi:.0f}] | {k}/{len(pairs)} |")
    return lines


def _none_yet(study: str) -> list[str]:
    return [f"No records yet in `results/{study}/`."]


def section_guard_control(records: list[dict]) -> list[str]:
    runs = group(records, "guard_control")
    bases = [b for b in ("S", "A0") if any((b, a) in runs for a in GUARD_ARMS)]
    return arm_table(runs, bases, GUARD_ARMS) if bases else _none_yet("guard_control")


def section_guard_control_verdicts(records: list[dict]) -> list[str]:
    runs = group(records, "guard_control")
    bases = [b for b in ("S", "A0") if pairs_for(runs, b, "antisd_correct") or pairs_for(runs, b, "antisd_mult")
             or pairs_for(runs, b, "antisd_correct_nogate")]
    return guard_verdicts(runs, bases) if bases else [f"No pair of records (an arm and GRPO, same base and seed) yet "
                                                       f"in `results/guard_control/`."]


def section_claim1_search(records: list[dict]) -> list[str]:
    runs = group(records, "claim1_search")
    return arm_table(runs, ["search"], SEARCH_ARMS) if any(("search", a) in runs for a in SEARCH_ARMS) \
        else _none_yet("claim1_search")


def section_claim1_search_verdicts(records: list[dict]) -> list[str]:
    runs = group(records, "claim1_search")
    return search_verdicts(runs, "search") if pairs_for(runs, "search", "antisd") or \
        pairs_for(runs, "search", "antisd_correct") else \
        ["No pair of records (an arm and GRPO, same seed) yet in `results/claim1_search/`."]


def section_claim1_pmi(records: list[dict]) -> list[str]:
    recs = {r["base_label"]: r for r in records if r.get("kind") == "pmi" and r["study"] == "claim1_pmi"}
    if not recs:
        return _none_yet("claim1_pmi")
    lines = ["| base | privileged style | rollouts | base accuracy | deliberation after a failed try: mean u [95% CI] "
             "(tokens, rollouts) | correct candidate: mean u [95% CI] (tokens, rollouts) | claim 1 |",
             "|---|---|---|---|---|---|---|"]

    def cell(c: dict) -> str:
        if not c.get("n"):
            return "none"
        return f"{c['mean']:+.3f} [{c['lo']:+.3f}, {c['hi']:+.3f}] ({c['n']}, {c['rollouts']})"

    for name in [b for b in ("S", "A0", "search") if b in recs] + sorted(set(recs) - {"S", "A0", "search"}):
        res = recs[name]["result"]
        c1 = res["forms"]["answer"]["claim1"]
        d, c = c1["deliberation_after_fail"], c1["correct_candidate"]
        ok = bool(d.get("n")) and bool(c.get("n")) and d["hi"] < 0 < c["lo"]
        lines.append(f"| {name} | `{res['style']}` | {res['n_rollouts']} | {res['accuracy']:.3f} | {cell(d)} | {cell(c)} "
                     f"| {'supported' if ok else 'not supported'} |")
    return lines


def section_realmodel_claim1(records: list[dict]) -> list[str]:
    """u by token class on a real model's own rollouts (``benchmarks/realmodel_claim1.py``)."""
    recs = [r for r in records if r.get("kind") == "pmi" and r["study"] == "realmodel_claim1"]
    if not recs:
        return _none_yet("realmodel_claim1")
    lines = []
    for rec in sorted(recs, key=lambda r: r["run"]):
        res = rec["result"]
        lines += [f"**{rec['run']}** (`results/realmodel_claim1/{rec['run']}.json`): {res['n_rollouts']} rollouts "
                  f"({res['n_correct']} correct, {res['n_at_limit']} reached the token limit), {res['n_tokens']:,} "
                  f"tokens, mean u {res['mean_u']:+.3f}, {100 * res['neg_frac']:.0f}% of tokens with u < 0. "
                  f"Verdict by the rule: **{res['verdict']}**.", "",
                  "| class | all rollouts: mean u [95% CI] (tokens, rollouts) | u < 0 | correct rollouts | "
                  "wrong rollouts |", "|---|---|---:|---|---|"]

        def cell(row: dict) -> str:
            if not row["n"]:
                return "none"
            lo, hi = row["ci"]
            return f"{row['mean_u']:+.3f} [{lo:+.3f}, {hi:+.3f}] ({row['n']:,}, {row['n_rollouts']})"

        table = res["classes"]["all"]
        order = [c for c in ("deliberation", "connective", "number", "gold_answer", "other") if c in table]
        for name, row in [(c, table[c]) for c in order + sorted(set(table) - set(order))]:
            neg = f"{100 * row['neg_frac']:.0f}%" if row["n"] else "-"
            lines.append(f"| {name} | {cell(row)} | {neg} | {cell(res['classes']['correct'][name])} | "
                         f"{cell(res['classes']['wrong'][name])} |")
    return lines


def _curve(rec: dict) -> dict[int, float]:
    return {int(p["step"]): float(p["acc"]) for p in rec["curve"] if "acc" in p}


def _mean_acc(rec: dict) -> float:
    """The area under the held-out curve, as the mean over its evaluation points (equally spaced)."""
    c = _curve(rec)
    return statistics.fmean(c.values())


def section_realmodel_pilot(records: list[dict]) -> list[str]:
    """SmolLM2 RL pilot (``benchmarks/realmodel_pilot.py``): stage 0's learning-rate probe, then the arms by seed."""
    probe = sorted((r for r in records if r["study"].startswith("realmodel_pilot_lr")),
                   key=lambda r: r["settings"]["train"]["learning_rate"])
    pilot = sorted((r for r in records if r["study"] == "realmodel_pilot"), key=lambda r: (r["seed"], r["arm"]))
    if not probe and not pilot:
        return _none_yet("realmodel_pilot")
    lines = []
    if probe:
        steps = sorted({s for r in probe for s in _curve(r)})
        lines += ["Stage 0, the learning rate (GRPO, seed 0; held-out accuracy, 64 problems x 4 samples):", "",
                  "| learning rate | " + " | ".join(f"step {s}" for s in steps) + " | not below step 0 at the end |",
                  "|---|" + "---|" * len(steps) + "---|"]
        for r in probe:
            c = _curve(r)
            ok = c[max(c)] >= c[0]
            lines.append(f"| {r['settings']['train']['learning_rate']:g} | " + " | ".join(_f(c.get(s)) for s in steps)
                         + f" | {'yes' if ok else 'no'} |")
        chosen = [r for r in probe if _curve(r)[max(_curve(r))] >= _curve(r)[0]]
        if chosen:
            lines += ["", f"By the stated rule the pilot uses learning rate "
                      f"{max(r['settings']['train']['learning_rate'] for r in chosen):g}."]
    if pilot:
        steps = sorted({s for r in pilot for s in _curve(r)})
        lines += ["", "The pilot (held-out accuracy at each evaluation; AUC: the mean over the evaluations; paired "
                  "with GRPO of the same seed; descriptive: 2 seeds cannot separate arms by a few points):", "",
                  "| arm | seed | " + " | ".join(f"step {s}" for s in steps) + " | AUC | final − GRPO | AUC − GRPO "
                  "| collapse | gate on | term / \\|A\\| when non-zero |",
                  "|---|---|" + "---|" * len(steps) + "---|---|---|---|---|---|"]
        grpo = {r["seed"]: r for r in pilot if r["arm"] == "grpo"}
        for r in pilot:
            c, ref = _curve(r), grpo.get(r["seed"])
            last = max(c)
            dfinal = dauc = "—"
            if ref is not None and r["arm"] != "grpo" and last in _curve(ref):
                dfinal, dauc = f"{c[last] - _curve(ref)[last]:+.3f}", f"{_mean_acc(r) - _mean_acc(ref):+.3f}"
            collapse = "yes" if c[last] < 0.5 * c[0] else "no"
            lines.append(f"| {ARM_NAMES.get(r['arm'], r['arm'])} | {r['seed']} | "
                         + " | ".join(_f(c.get(s)) for s in steps)
                         + f" | {_mean_acc(r):.3f} | {dfinal} | {dauc} | {collapse} "
                         f"| {_f(_summary([r], 'gate', 'on_frac'), '{:.2f}')} "
                         f"| {_f(_summary([r], 'token_term', 'size_ratio_mean_when_active'), '{:.4f}')} |")
    return lines


def section_records(records: list[dict]) -> list[str]:
    pmi = [r for r in records if r.get("kind") == "pmi"]
    records = [r for r in records if r.get("kind", "training") == "training"]
    if not records and not pmi:
        return ["No records yet in `results/`."]
    lines = ["| study | runs | bases (weights sha256, first 12) | arms: settings hash | machines (CPU, torch threads, "
             "torch) | run time |", "|---|---|---|---|---|---|"] if records else []
    by_study: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_study[r["study"]].append(r)
    for study, rs in sorted(by_study.items()):
        bases = sorted({f"{r['base_label']} `{r['base']['name']}` ({(r['base'].get('sha256') or '?')[:12]})" for r in rs})
        arms = sorted({f"{r['arm']}: {r['settings_hash']}" for r in rs})
        machines = sorted({f"{r['machine'].get('cpu')}, {r['machine'].get('torch_threads')}, "
                           f"{r['machine'].get('torch')}" for r in rs})
        total = sum(r["runtime_s"] for r in rs)
        lines.append(f"| {study} | {len(rs)} | {'; '.join(bases)} | {'; '.join(arms)} | {'; '.join(machines)} "
                     f"| {total / 3600:.1f} h ({statistics.median(r['runtime_s'] for r in rs) / 60:.1f} min per run) |")
    sizes = sorted({(n, d["rows"], d["distinct_prompts"], d["distinct_equations"])
                    for r in records for n, d in r["heldout"].items()}, key=lambda x: int(x[0]))
    lines += ["", "Held-out sets (the effective sample size is the number of distinct equations: the split is by "
              "equation, and the two-level bootstrap resamples them):", ""]
    lines += [f"- n = {int(n):,}: {rows:,} rows, {p:,} distinct prompts, {e:,} distinct equations" for n, rows, p, e in sizes]
    if pmi:
        lines += ["", "PMI checks: " + "; ".join(
            f"`{r['study']}/{r['run']}` (base `{r['base']['name']}`, {(r['base'].get('sha256') or '?')[:12]}; "
            f"settings {r['settings_hash']}; {r['machine'].get('cpu')}, {r['runtime_s']:.0f} s)" for r in pmi)]
    return lines


SECTIONS: dict[str, Callable[[list[dict]], list[str]]] = {
    "guard_control": section_guard_control,
    "guard_control_verdicts": section_guard_control_verdicts,
    "claim1_search": section_claim1_search,
    "claim1_search_verdicts": section_claim1_search_verdicts,
    "claim1_pmi": section_claim1_pmi,
    "realmodel_claim1": section_realmodel_claim1,
    "realmodel_pilot": section_realmodel_pilot,
    "records": section_records,
}


# ----------------------------------------------------------------------------- documents
def regenerate(text: str, records: list[dict], where: str = "document") -> str:
    """``text`` with every generated section rewritten from ``records``; an unknown section name or a
    section without its end marker raises, naming it."""
    opened = re.findall(r"<!-- generated:(\w+)", text)
    closed = MARKER.findall(text)
    if len(opened) != len(closed):
        names = [m[1] for m in closed]
        missing = [n for n in opened if n not in names] or opened
        raise ValueError(f"{where}: generated section {missing[0]!r} has no '<!-- /generated -->' end marker")

    def fill(m: re.Match) -> str:
        name = m.group(2)
        if name not in SECTIONS:
            raise ValueError(f"{where}: generated section {name!r} has no generator; known: {sorted(SECTIONS)}")
        return m.group(1) + "\n".join(SECTIONS[name](records)) + "\n" + m.group(4)

    return MARKER.sub(fill, text)


def changed_sections(old: str, new: str) -> list[str]:
    """Names of the generated sections whose text differs between two versions of a document."""
    a = {m.group(2): m.group(3) for m in MARKER.finditer(old)}
    b = {m.group(2): m.group(3) for m in MARKER.finditer(new)}
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def load_all(results: str | Path) -> list[dict]:
    """The training and PMI records under ``results`` (none when the folder does not exist)."""
    from antisd.trainer.records import load_records

    if not Path(results).exists():
        return []
    return load_records(results) + load_records(results, kind="pmi")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default=str(ROOT / "results"))
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 when a section would change")
    a = ap.parse_args(argv)
    records = load_all(a.results)
    status = 0
    for doc in DOCS:
        path = ROOT / doc
        old = path.read_text(encoding="utf-8")
        new = regenerate(old, records, doc)
        if new == old:
            print(f"{doc}: up to date ({len(records)} records)")
            continue
        if a.check:
            status = 1
            print(f"{doc}: generated sections {changed_sections(old, new)} do not match the records:")
            sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), new.splitlines(True), doc, doc + " (records)"))
        else:
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(new, encoding="utf-8")
            tmp.replace(path)
            print(f"{doc}: rewrote {changed_sections(old, new)} from {len(records)} records")
    return status


if __name__ == "__main__":
    sys.exit(main())
