"""Aggregates of u_t over many rollouts: token ranking, token classes with bootstrap intervals,
the student-vs-teacher histogram, and the checks (telescoping identity, sign fractions).

Token classes (``TokenClass``): a token belongs to a word class when its text, stripped of
whitespace, is one of the words (so a word split over several tokens is not counted, as in the
trainer's deliberation metric); it belongs to a ``@boxed`` class when its characters overlap the
content of a ``\\boxed{...}`` or ``\\fbox{...}`` (balanced braces; an unclosed box runs to the
end; a token's surrounding whitespace does not count). Defaults: ``deliberation`` (Wait, Let,
Maybe, Alternatively, Hmm, But: AntiSDConfig's deliberation_words), ``connective`` (So,
Therefore, Thus, Hence, ...) and ``answer`` (@boxed).

Entropy split (``PMITables.entropy``): u and the AntiSD term -phi(u) by the student's entropy at
the position (quintiles of all scored tokens), and for the "fork" tokens (the top 20% by student
entropy, where the continuation is decided) against the rest, with the share of the term's
absolute mass on fork tokens; the fork/rest means get cluster-bootstrap intervals as classes do.
Records without student entropies (a trainer dump read with ``use_stored_logps``) are left out.

Class means are token-weighted: mean u over all tokens of the class. Their percentile bootstrap
intervals resample whole rollouts by default (a cluster bootstrap: the ratio sum u / count over
a resample of rollouts), since tokens of one rollout are not independent; ``unit="token"``
resamples tokens. Same seed, same intervals. numpy only (no torch).
"""

from __future__ import annotations

import math
import re
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from antisd.pmi.compute import PMIRecord

# Same words as antisd.trainer.config.DELIBERATION_WORDS (not imported: that module imports TRL).
DELIBERATION_WORDS = ("Wait", "Let", "Maybe", "Alternatively", "Hmm", "But")
CONNECTIVE_WORDS = ("So", "Therefore", "Thus", "Hence", "Then", "Now", "Next", "Finally", "First", "Since",
                    "Because", "so", "therefore", "thus", "hence", "then")
BOXED = "@boxed"
_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")


@dataclass(frozen=True)
class TokenClass:
    """A named set of tokens: by word (stripped token text) or by position inside \\boxed{}."""

    name: str
    words: frozenset[str] = frozenset()
    boxed: bool = False

    def members(self, tokens: Sequence[str]) -> list[bool]:
        """One flag per token. (T,) -> (T,)"""
        if self.boxed:
            return boxed_mask(tokens)
        return [t.strip() in self.words for t in tokens]


DEFAULT_CLASSES: tuple[TokenClass, ...] = (
    TokenClass("deliberation", frozenset(DELIBERATION_WORDS)),
    TokenClass("connective", frozenset(CONNECTIVE_WORDS)),
    TokenClass("answer", boxed=True),
)


def parse_token_classes(specs: Sequence[str] | None) -> tuple[TokenClass, ...]:
    """Default classes, with ``NAME=w1,w2`` / ``NAME=@boxed`` specs replacing or adding by name."""
    classes = {c.name: c for c in DEFAULT_CLASSES}
    for spec in specs or ():
        name, sep, rest = spec.partition("=")
        name = name.strip()
        words = [w.strip() for w in rest.split(",") if w.strip()]
        if not sep or not name or not words:
            raise ValueError(f"token_class={spec!r} must look like NAME=word1,word2 or NAME={BOXED}")
        classes[name] = TokenClass(name, boxed=True) if words == [BOXED] else TokenClass(name, frozenset(words))
    return tuple(classes.values())


def boxed_mask(tokens: Sequence[str]) -> list[bool]:
    """Tokens whose characters overlap the content of a \\boxed{...} (or \\fbox{...}). (T,) -> (T,)"""
    text = "".join(tokens)
    spans: list[tuple[int, int]] = []
    for m in _BOX_RE.finditer(text):
        depth, end = 1, len(text)
        for k in range(m.end(), len(text)):
            depth += {"{": 1, "}": -1}.get(text[k], 0)
            if depth == 0:
                end = k
                break
        spans.append((m.end(), end))
    out, pos = [], 0
    for tok in tokens:
        a, b = pos, pos + len(tok)
        if tok.strip():  # the token's visible characters decide (" }" closes the box, is not inside)
            a, b = a + len(tok) - len(tok.lstrip()), a + len(tok.rstrip())
        out.append(any(a < hi and lo < b for lo, hi in spans))
        pos += len(tok)
    return out


def bootstrap_ci(
    sums: Sequence[float], counts: Sequence[float], *, n_boot: int = 2000, level: float = 0.95, seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the ratio sum(sums) / sum(counts), resampling units.

    Units are rollouts (sums = per-rollout sum of u over the class, counts = its token count) or
    tokens (sums = u, counts = 1). Deterministic for a given seed. (nan, nan) without data.
    """
    s, c = np.asarray(sums, dtype=np.float64), np.asarray(counts, dtype=np.float64)
    if n_boot < 1 or s.size == 0 or c.sum() <= 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    n = s.size
    chunk = max(1, min(n_boot, 20_000_000 // n))
    stats = []
    for b in range(0, n_boot, chunk):
        w = rng.multinomial(n, np.full(n, 1.0 / n), size=min(chunk, n_boot - b)).astype(np.float64)  # (m, n)
        num, den = w @ s, w @ c  # (m,), (m,)
        stats.append(num[den > 0] / den[den > 0])
    allv = np.concatenate(stats)
    lo, hi = np.quantile(allv, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


@dataclass
class _TokStat:
    n: int = 0
    sum_u: float = 0.0
    sum_u2: float = 0.0
    n_neg: int = 0
    n_pos: int = 0
    sum_s: float = 0.0
    sum_t: float = 0.0
    sum_h: float = 0.0
    n_h: int = 0

    def add(self, u: float, s: float, t: float, h: float | None) -> None:
        self.n += 1
        self.sum_u += u
        self.sum_u2 += u * u
        self.n_neg += u < 0
        self.n_pos += u > 0
        self.sum_s += s
        self.sum_t += t
        if h is not None and math.isfinite(h):
            self.sum_h += h
            self.n_h += 1

    def row(self) -> dict[str, float]:
        n = max(self.n, 1)
        mean = self.sum_u / n
        var = max(self.sum_u2 / n - mean * mean, 0.0) * (self.n / (self.n - 1) if self.n > 1 else float("nan"))
        return {"n": self.n, "mean_u": mean, "std_u": math.sqrt(var) if var == var else float("nan"),
                "neg_frac": self.n_neg / n, "pos_frac": self.n_pos / n, "mean_s": self.sum_s / n,
                "mean_t": self.sum_t / n, "mean_teacher_entropy": self.sum_h / self.n_h if self.n_h else float("nan")}


@dataclass
class PMITables:
    """Everything ``aggregate`` computes; tables are lists of dict rows."""

    summary: dict[str, Any]
    tokens: list[dict[str, Any]]
    classes: list[dict[str, Any]]
    rollouts: list[dict[str, Any]]
    heatmap: np.ndarray  # (bins, bins): counts, [student bin, teacher bin]
    heatmap_edges: np.ndarray  # (bins + 1,)
    heatmap_scale: str = "logprob"
    entropy: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class PMIAggregator:
    """Streaming aggregation: ``add`` one PMIRecord at a time, then ``result``.

    Memory: O(distinct tokens + rollouts x classes + all u values (8 bytes each, for the median))."""

    classes: Sequence[TokenClass] = DEFAULT_CLASSES
    heatmap_scale: str = "logprob"
    heatmap_bins: int = 80
    heatmap_min_logp: float = -20.0
    telescoping_atol: float = 1e-3
    telescoping_rtol: float = 1e-5
    _tokens: dict[str, _TokStat] = field(default_factory=dict)
    _classes: dict[str, _TokStat] = field(default_factory=dict)
    _class_rollout: dict[str, tuple[array, array]] = field(default_factory=dict)
    _class_values: dict[str, array] = field(default_factory=dict)
    _all: _TokStat = field(default_factory=_TokStat)
    _u: array = field(default_factory=lambda: array("d"))
    _rollouts: list[dict[str, Any]] = field(default_factory=list)
    _heat: np.ndarray | None = None
    _ent: array = field(default_factory=lambda: array("d"))  # student entropy per token (records that have it)
    _ent_u: array = field(default_factory=lambda: array("d"))  # u of those tokens
    _ent_rollout: array = field(default_factory=lambda: array("l"))  # their rollout index

    def __post_init__(self) -> None:
        hi = 1.0 if self.heatmap_scale == "prob" else 0.0
        lo = 0.0 if self.heatmap_scale == "prob" else self.heatmap_min_logp
        self._edges = np.linspace(lo, hi, self.heatmap_bins + 1)
        self._heat = np.zeros((self.heatmap_bins, self.heatmap_bins), dtype=np.int64)
        for c in self.classes:
            self._classes[c.name] = _TokStat()
            self._class_rollout[c.name] = (array("d"), array("d"))
            self._class_values[c.name] = array("d")

    def add(self, rec: PMIRecord) -> None:
        u, s, t = rec.u, rec.student_logps, rec.teacher_logps
        h = rec.teacher_entropy or [None] * len(u)
        for k in range(len(u)):
            self._tokens.setdefault(rec.tokens[k], _TokStat()).add(u[k], s[k], t[k], h[k])
            self._all.add(u[k], s[k], t[k], h[k])
        self._u.extend(u)
        for c in self.classes:
            flags = c.members(rec.tokens)
            stat, (sums, counts), vals = self._classes[c.name], self._class_rollout[c.name], self._class_values[c.name]
            cu = [u[k] for k in range(len(u)) if flags[k]]
            for k in range(len(u)):
                if flags[k]:
                    stat.add(u[k], s[k], t[k], h[k])
            sums.append(math.fsum(cu))
            counts.append(float(len(cu)))
            vals.extend(cu)
        self._add_heat(s, t)
        if rec.student_entropy is not None and len(rec.student_entropy) == len(u):
            self._ent.extend(rec.student_entropy)
            self._ent_u.extend(u)
            self._ent_rollout.extend([len(self._rollouts)] * len(u))
        err = rec.telescoping_error
        tol = None
        if err is not None:
            tol = self.telescoping_atol + self.telescoping_rtol * (abs(rec.seq_student_logp) + abs(rec.seq_teacher_logp))
        self._rollouts.append({
            "rollout_id": rec.rollout_id, "problem_id": rec.problem_id, "source": rec.source, "correct": rec.correct,
            "reward": rec.reward, "n_tokens": len(u), "truncated": rec.truncated, "sum_u": rec.sum_u,
            "seq_pmi": rec.seq_pmi, "telescoping_error": err, "telescoping_tol": tol,
            "telescoping_ok": None if err is None else bool(err <= tol),
        })

    def _add_heat(self, s: Sequence[float], t: Sequence[float]) -> None:
        x, y = np.asarray(s, dtype=np.float64), np.asarray(t, dtype=np.float64)
        if self.heatmap_scale == "prob":
            x, y = np.exp(x), np.exp(y)
        else:
            x, y = np.clip(x, self.heatmap_min_logp, 0.0), np.clip(y, self.heatmap_min_logp, 0.0)
        h, _, _ = np.histogram2d(x, y, bins=[self._edges, self._edges])
        self._heat += h.astype(np.int64)

    def result(self, *, n_boot: int = 2000, unit: str = "rollout", level: float = 0.95, seed: int = 0) -> PMITables:
        tokens = [{"token": tok, **st.row()} for tok, st in self._tokens.items()]
        tokens.sort(key=lambda r: (-r["mean_u"], -r["n"], r["token"]))
        classes = []
        for i, c in enumerate(self.classes):
            st = self._classes[c.name]
            sums, counts = self._class_rollout[c.name]
            if unit == "token":
                vals = self._class_values[c.name]
                lo, hi = bootstrap_ci(vals, [1.0] * len(vals), n_boot=n_boot, level=level, seed=seed + i)
            else:
                lo, hi = bootstrap_ci(sums, counts, n_boot=n_boot, level=level, seed=seed + i)
            row = st.row() if st.n else {"n": 0, "mean_u": float("nan")}
            classes.append({"class": c.name, "definition": BOXED if c.boxed else ",".join(sorted(c.words)),
                            **row, "n_rollouts": sum(1 for x in counts if x > 0), "ci_low": lo, "ci_high": hi})
        entropy = self._entropy_rows(n_boot=n_boot, level=level, seed=seed + len(self.classes))
        return PMITables(self._summary(level), tokens, classes, list(self._rollouts),
                         self._heat.copy(), self._edges.copy(), self.heatmap_scale, entropy)

    def _entropy_rows(self, *, n_boot: int, level: float, seed: int) -> list[dict[str, Any]]:
        """u and -phi(u) by student-entropy quintile, and fork (top 20%) vs rest (see the module docstring)."""
        ent = np.frombuffer(self._ent, dtype=np.float64)
        if ent.size == 0:
            return []
        u = np.frombuffer(self._ent_u, dtype=np.float64)
        rollout = np.frombuffer(self._ent_rollout, dtype=np.int64)
        term = -0.5 * (np.logaddexp(0.0, u) - math.log(2.0))  # -phi(u), docs/method.md Eq. 3-4
        mass = np.abs(term).sum()
        edges = np.quantile(ent, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
        rows = []

        def row(name: str, sel: np.ndarray, lo: float, hi: float, ci: tuple[float, float] | None = None) -> dict:
            n = int(sel.sum())
            return {"group": name, "entropy_from": lo, "entropy_to": hi, "n": n,
                    "mean_u": float(u[sel].mean()) if n else float("nan"),
                    "ci_low": ci[0] if ci else float("nan"), "ci_high": ci[1] if ci else float("nan"),
                    "neg_frac": float((u[sel] < 0).mean()) if n else float("nan"),
                    "mean_antisd_term": float(term[sel].mean()) if n else float("nan"),
                    "term_mass_frac": float(np.abs(term[sel]).sum() / mass) if mass > 0 else float("nan")}

        for q in range(5):
            sel = (ent >= edges[q]) & ((ent < edges[q + 1]) if q < 4 else (ent <= edges[q + 1]))
            rows.append(row(f"entropy quintile {q + 1}", sel, float(edges[q]), float(edges[q + 1])))
        fork = ent >= edges[4]
        n_roll = int(rollout.max()) + 1
        for i, (name, sel) in enumerate((("fork (top 20%)", fork), ("rest", ~fork))):
            sums = np.bincount(rollout[sel], weights=u[sel], minlength=n_roll)
            counts = np.bincount(rollout[sel], minlength=n_roll).astype(np.float64)
            ci = bootstrap_ci(sums, counts, n_boot=n_boot, level=level, seed=seed + i)
            rows.append(row(name, sel, float(ent[sel].min()) if sel.any() else float("nan"),
                            float(ent[sel].max()) if sel.any() else float("nan"), ci))
        return rows

    def _summary(self, level: float) -> dict[str, Any]:
        n = self._all.n
        checked = [r for r in self._rollouts if r["telescoping_error"] is not None]
        rewards = [r["reward"] for r in self._rollouts if r["reward"] is not None]
        sources: dict[str, int] = {}
        for r in self._rollouts:
            sources[str(r["source"])] = sources.get(str(r["source"]), 0) + 1
        return {
            "n_rollouts": len(self._rollouts), "n_tokens": n,
            "mean_u": self._all.sum_u / n if n else float("nan"),
            "median_u": float(np.median(np.frombuffer(self._u, dtype=np.float64))) if n else float("nan"),
            "neg_frac": self._all.n_neg / n if n else float("nan"),
            "pos_frac": self._all.n_pos / n if n else float("nan"),
            "zero_frac": (n - self._all.n_neg - self._all.n_pos) / n if n else float("nan"),
            "mean_s": self._all.sum_s / n if n else float("nan"),
            "mean_t": self._all.sum_t / n if n else float("nan"),
            "mean_teacher_entropy": self._all.sum_h / self._all.n_h if self._all.n_h else float("nan"),
            "mean_sum_u": math.fsum(r["sum_u"] for r in self._rollouts) / len(self._rollouts) if self._rollouts else float("nan"),
            "mean_reward": sum(rewards) / len(rewards) if rewards else float("nan"),
            "truncated": sum(bool(r["truncated"]) for r in self._rollouts),
            "sources": sources,
            "telescoping_checked": len(checked),
            "telescoping_max_abs_error": max((r["telescoping_error"] for r in checked), default=float("nan")),
            "telescoping_failed": sum(not r["telescoping_ok"] for r in checked),
            "telescoping_atol": self.telescoping_atol, "telescoping_rtol": self.telescoping_rtol,
            "ci_level": level,
        }


def aggregate(
    records: Iterable[PMIRecord], classes: Sequence[TokenClass] = DEFAULT_CLASSES, *, n_boot: int = 2000,
    unit: str = "rollout", level: float = 0.95, seed: int = 0, **kwargs: Any,
) -> PMITables:
    """Token ranking, class means with bootstrap CIs, heatmap counts and checks over ``records``.

    ``kwargs`` go to PMIAggregator (heatmap_scale, heatmap_bins, heatmap_min_logp, telescoping_atol/rtol).
    """
    agg = PMIAggregator(classes=tuple(classes), **kwargs)
    for rec in records:
        agg.add(rec)
    return agg.result(n_boot=n_boot, unit=unit, level=level, seed=seed)
