"""Renderers: the per-token HTML trace page, PNG strip plots and heatmap, CSV/markdown tables, report.

HTML: one self-contained page (inline CSS, no script, no external asset). Each token is a
``<span class="tok">`` coloured by u_t on a diverging scale (blue: u < 0, the context lowers
the token, e.g. deliberation; red: u > 0, the context raises it, e.g. shortcuts), saturating at
|u| = ``scale``; its ``title`` (shown on hover) gives u, s, t and the teacher entropy. Token text
is HTML-escaped and whitespace is made visible: a space is ``·``, a newline ``↵`` (followed by a
real line break), a tab ``→``.
"""

from __future__ import annotations

import csv
import html
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from antisd.pmi.aggregate import PMITables
from antisd.pmi.compute import PMIRecord, prompt_text

BLUE = (33, 102, 172)  # u < 0
RED = (178, 24, 43)  # u > 0
VISIBLE = {" ": "\u00b7", "\n": "\u21b5\n", "\t": "\u2192", "\r": "\u240d"}


def _visible_char(ch: str) -> str:
    if ch in VISIBLE:
        return VISIBLE[ch]
    if ord(ch) < 32:
        return chr(0x2400 + ord(ch))  # control pictures: \x12 -> U+2412
    return "\u2421" if ch == "\x7f" else ch


def visible_whitespace(text: str) -> str:
    """Spaces, newlines, tabs (and other control characters) as visible marks; a newline keeps a
    real line break after its mark."""
    return "".join(_visible_char(ch) for ch in text)


def _plain_label(tok: str, width: int = 12) -> str:
    """A token as a short matplotlib label: stripped (visible marks if all whitespace), unprintable as '?'."""
    text = (tok.strip() or visible_whitespace(tok)).replace("\n", "")[:width]
    return "".join(ch if ch.isprintable() and ord(ch) < 0x2400 or ch in "\u00b7\u21b5\u2192" else "?" for ch in text).replace("$", r"\$")


def u_color(u: float, scale: float) -> str:
    """Background colour of a token: white at u = 0, BLUE / RED at u = -scale / +scale."""
    if not math.isfinite(u):
        return "rgb(200,200,200)"
    a = min(abs(u) / scale, 1.0)
    base = RED if u > 0 else BLUE
    r, g, b = (round(255 + (c - 255) * a) for c in base)
    return f"rgb({r},{g},{b})"


def _fmt(x: float | None, spec: str = "+.3f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;max-width:70em;color:#222}
.trace{font-family:ui-monospace,monospace;white-space:pre-wrap;line-height:1.9;border:1px solid #ccc;padding:.6em}
.tok{padding:1px 0;border-radius:2px}.tok:hover{outline:1px solid #000}
.tok.light{color:#fff}
.meta{color:#555;font-size:.9em}.legend span{display:inline-block;width:2.2em;text-align:center;font-size:.8em}
details pre{white-space:pre-wrap;background:#f6f6f6;padding:.5em}
h2{margin-top:1.8em;border-top:1px solid #ddd;padding-top:.8em}
"""


def _token_span(i: int, tok: str, u: float, s: float, t: float, h: float | None, scale: float) -> str:
    title = f"#{i} {tok!r}  u={_fmt(u)}  s={_fmt(s)}  t={_fmt(t)}  H_T={_fmt(h, '.3f')}"
    light = " light" if math.isfinite(u) and abs(u) / scale > 0.6 else ""
    return (f'<span class="tok{light}" data-i="{i}" style="background:{u_color(u, scale)}" '
            f'title="{html.escape(title, quote=True)}">{html.escape(visible_whitespace(tok))}</span>')


def _legend(scale: float) -> str:
    cells = []
    for k in range(-4, 5):
        u = scale * k / 4
        cells.append(f'<span style="background:{u_color(u, scale)};color:{"#fff" if abs(k) > 2 else "#000"}">{u:+.1f}</span>')
    return ('<p class="legend">u<sub>t</sub> = log &pi;(y<sub>t</sub>|x,c,y<sub>&lt;t</sub>) - '
            'log &pi;(y<sub>t</sub>|x,y<sub>&lt;t</sub>): ' + "".join(cells) +
            ' &nbsp;blue: the privileged context lowers the token; red: it raises it. Hover a token for u, s, t, H_T.</p>')


def render_record_html(rec: PMIRecord, scale: float) -> str:
    """One rollout's section: meta line, prompts (collapsed), the coloured trace."""
    u, h = rec.u, rec.teacher_entropy or [None] * len(rec.tokens)
    spans = "".join(_token_span(i, tok, u[i], rec.student_logps[i], rec.teacher_logps[i], h[i], scale)
                    for i, tok in enumerate(rec.tokens))
    err = rec.telescoping_error
    meta = (f"source {html.escape(str(rec.source))} &middot; correct {rec.correct} &middot; reward {_fmt(rec.reward, '.2f')} "
            f"&middot; {len(u)} tokens{' (cut)' if rec.truncated else ''} &middot; sum u = {_fmt(rec.sum_u)} "
            f"&middot; log &pi;(y|x,c) - log &pi;(y|x) = {_fmt(rec.seq_pmi)} &middot; |diff| = {_fmt(err, '.2e')} "
            f"&middot; u&lt;0: {sum(x < 0 for x in u)}, u&gt;0: {sum(x > 0 for x in u)}")
    return (f'<section class="rollout" id="{html.escape(rec.rollout_id, quote=True)}">'
            f"<h2>Rollout {html.escape(rec.rollout_id)}</h2><p class=\"meta\">{meta}</p>"
            f"<details><summary>student prompt x</summary><pre>{html.escape(prompt_text(rec.prompt))}</pre></details>"
            f"<details><summary>teacher prompt (x, c)</summary><pre>{html.escape(prompt_text(rec.teacher_prompt))}</pre></details>"
            f'<div class="trace">{spans}</div></section>')


def render_html(records: Sequence[PMIRecord], *, scale: float = 4.0, title: str = "PMI traces", header: str = "") -> str:
    """A self-contained HTML page with every record's coloured trace."""
    body = "".join(render_record_html(r, scale) for r in records)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>{header}{_legend(scale)}{body}</body></html>\n")


# ------------------------------------------------------------------------------------ figures


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_strip(rec: PMIRecord, path: str | Path, *, n_labels: int = 10, tick_tokens: int = 90, dpi: int = 80) -> Path:
    """PNG bar strip of u_t over positions (blue u < 0, red u > 0).

    Rollouts of at most ``tick_tokens`` tokens get every token as an x tick label; longer ones
    get the ``n_labels`` largest |u| annotated (those above a tenth of the largest).
    """
    plt = _plt()
    u = rec.u
    short = len(u) <= tick_tokens
    width = min(16.0, max(6.0, len(u) / (7 if short else 25)))
    fig, ax = plt.subplots(figsize=(width, 3.4 if short else 2.6), dpi=dpi)
    colors = ["#%02x%02x%02x" % (RED if x > 0 else BLUE) for x in u]
    ax.bar(range(len(u)), u, width=0.9 if short else 1.0, color=colors, linewidth=0)
    ax.axhline(0, color="black", linewidth=0.6)
    finite = [abs(x) for x in u if math.isfinite(x)]
    top = max(finite + [1e-3])
    if short:
        ax.set_xticks(range(len(u)), [_plain_label(t) for t in rec.tokens], rotation=90, fontsize=7)
    else:
        order = sorted((k for k in range(len(u)) if math.isfinite(u[k]) and abs(u[k]) >= 0.1 * top), key=lambda k: -abs(u[k]))
        for k in order[:n_labels]:
            ax.annotate(_plain_label(rec.tokens[k]), (k, u[k]), fontsize=7, ha="center", va="bottom" if u[k] > 0 else "top",
                        xytext=(0, 2 if u[k] > 0 else -2), textcoords="offset points")
        ax.set_xlabel("completion token position t")
    ax.set_xlim(-0.5, len(u) - 0.5)
    ax.set_ylim(-top * 1.25, top * 1.25)
    ax.set_ylabel("u_t")
    ax.set_title(f"{rec.rollout_id}: sum u = {rec.sum_u:+.2f}, source {rec.source}, correct {rec.correct}", fontsize=9)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing")
        fig.tight_layout()
        fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return Path(path)


def plot_heatmap(tables: PMITables, path: str | Path, *, title: str = "", dpi: int = 80) -> Path:
    """PNG 2-D histogram of student (x) vs teacher (y) log-prob or prob, log colour, diagonal marked."""
    plt = _plt()
    from matplotlib.colors import LogNorm

    e, h = tables.heatmap_edges, tables.heatmap
    fig, ax = plt.subplots(figsize=(5.2, 4.4), dpi=dpi)
    if h.sum() > 0:
        im = ax.pcolormesh(e, e, h.T, norm=LogNorm(vmin=1, vmax=max(h.max(), 1)), cmap="viridis")
        fig.colorbar(im, ax=ax, label="tokens")
    ax.plot([e[0], e[-1]], [e[0], e[-1]], color="red", linewidth=1, linestyle="--", label="t = s (u = 0)")
    what = "probability" if tables.heatmap_scale == "prob" else "log-probability"
    ax.set_xlabel(f"student {what} s_t")
    ax.set_ylabel(f"teacher {what} t_t")
    n = int(h.sum())
    ax.set_title(title or f"{n} tokens: above the diagonal u > 0", fontsize=9)
    ax.legend(loc="upper left", fontsize=7)
    ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return Path(path)


# ------------------------------------------------------------------------------------ tables


def write_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    path = Path(path)
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    return path


def _md_cell(x: Any, column: str = "") -> str:
    if isinstance(x, float):
        if not math.isfinite(x):
            return "n/a"
        return f"{x:.3f}" if column.endswith(("_frac", "entropy")) else f"{x:+.3f}"
    return str(x).replace("|", "\\|")


def md_token(tok: str) -> str:
    """A token for a markdown table cell: visible whitespace, in backticks, pipes escaped."""
    t = visible_whitespace(tok).replace("\n", "").replace("`", "'").replace("|", "\\|")
    return f"`{t}`"


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(md_token(r[c]) if c == "token" else _md_cell(r.get(c, ""), c) for c in columns) + " |")
    return "\n".join(lines)


TOKEN_COLUMNS = ("token", "n", "mean_u", "std_u", "neg_frac", "mean_s", "mean_t", "mean_teacher_entropy")
CLASS_COLUMNS = ("class", "n", "n_rollouts", "mean_u", "ci_low", "ci_high", "neg_frac", "mean_s", "mean_t", "mean_teacher_entropy")


def tokens_markdown(tables: PMITables, *, min_count: int = 5, top_k: int = 20) -> str:
    rows = [r for r in tables.tokens if r["n"] >= min_count]
    top, bottom = rows[:top_k], rows[max(top_k, len(rows) - top_k):][::-1]  # disjoint when there are few rows
    return (f"Tokens seen at least {min_count} times: {len(rows)} of {len(tables.tokens)} distinct.\n\n"
            f"Highest mean u (the privileged context raises them):\n\n{markdown_table(top, TOKEN_COLUMNS)}\n\n"
            f"Lowest mean u (the context lowers them):\n\n{markdown_table(bottom, TOKEN_COLUMNS)}\n")


def classes_markdown(tables: PMITables) -> str:
    level = tables.summary.get("ci_level", 0.95)
    return (f"Class means of u (token-weighted) with {level:.0%} bootstrap intervals:\n\n"
            + markdown_table(tables.classes, CLASS_COLUMNS) + "\n")


def checks_text(tables: PMITables) -> str:
    """The checks: telescoping identity per rollout, and the sign fractions of u."""
    s = tables.summary
    lines = []
    if s["telescoping_checked"]:
        ok = s["telescoping_failed"] == 0
        lines.append(
            f"telescoping sum_t u_t = log pi(y|x,c) - log pi(y|x) (separate whole-sequence forward) on "
            f"{s['telescoping_checked']} rollouts: max |error| = {s['telescoping_max_abs_error']:.3e} "
            f"(tolerance {s['telescoping_atol']:g} + {s['telescoping_rtol']:g} x |log-probs|): "
            f"{'PASS' if ok else 'FAIL on %d rollouts' % s['telescoping_failed']}")
    else:
        lines.append("telescoping check: not run (stored log-probs, or check_rollouts=0)")
    lines.append(f"tokens: {s['n_tokens']} in {s['n_rollouts']} rollouts; u < 0: {_fmt(s['neg_frac'], '.3f')}, "
                 f"u > 0: {_fmt(s['pos_frac'], '.3f')}, u = 0: {_fmt(s['zero_frac'], '.3f')}; mean u {_fmt(s['mean_u'])}, "
                 f"median u {_fmt(s['median_u'])}; mean teacher entropy {_fmt(s['mean_teacher_entropy'], '.3f')}")
    return "\n".join(lines)


ENTROPY_COLUMNS = ("group", "entropy_from", "entropy_to", "n", "mean_u", "ci_low", "ci_high", "neg_frac",
                   "mean_antisd_term", "term_mass_frac")


def entropy_markdown(tables: PMITables) -> str:
    """u and the AntiSD term -phi(u) by the student's entropy (fork tokens: the top 20%)."""
    if not tables.entropy:
        return "(no student entropies: rollouts read with use_stored_logps)\n"
    return markdown_table(tables.entropy, ENTROPY_COLUMNS)
