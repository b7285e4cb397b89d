"""PMI check on base-policy rollouts: is u << 0 on deliberation and u >> 0 on answer tokens?

For rollouts y ~ pi(. | x) of the base policy at temperature 1, with the *same completion ids*
re-scored under the student prompt x and the teacher prompt (x, c):

    u_t = log pi(y_t | x, c, y<t) - log pi(y_t | x, y<t)                        (docs/method.md)

c is rendered with the toy constants (``TOY_TEACHER_TEMPLATE``) by ``antisd.method.context``: the
reference is either the dataset's ``x = <answer>`` (form ``answer``) or a correct sibling's
completion text (form ``sibling``, falling back to the dataset solution when a group has no
other correct rollout); the feedback is the rollout's own correctness. Tokens are classified by
their text (one word per token):

    after_fail        the first token after a failed try (``... small .`` / ``big .`` / ``no .``):
                      Wait, Hmm, Maybe, Let, Alternatively, But (deliberation), or try/so/\\boxed{
    boxed_number      the number right after ``\\boxed{`` (answer-committing)
    correct_candidate the number after ``try`` when it is the answer (answer-committing)
    wrong_candidate   the number after ``try`` when it is not
    eos               the end-of-sequence token
    other             everything else

CPU: ``python -m antisd.toyworld.pmi_check --styles commit direct search``
GPU: the same; the model is tiny, a GPU does not help.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch

from antisd.lm.logprobs import naive_logps_and_entropies
from antisd.lm.plumbing import model_device
from antisd.lm.sampling import load_tokenizer, pad_prompts_and_completions
from antisd.toyworld.tokenizer import BOX_OPEN, DELIBERATION_WORDS
from antisd.toyworld.traces import toy_context_config

logger = logging.getLogger(__name__)

FAIL_VERDICTS = ("small", "big", "no")
CATEGORIES = ("after_fail", "boxed_number", "correct_candidate", "wrong_candidate", "eos", "other")


def classify_tokens(words: Sequence[str], answer: str) -> list[str]:
    """One category per completion token (``words`` = the tokens' strings, eos as ``<eos>``)."""
    cats = []
    for t, w in enumerate(words):
        prev = words[t - 1] if t >= 1 else None
        prev2 = words[t - 2] if t >= 2 else None
        if w == "<eos>":
            cats.append("eos")
        elif prev == "." and prev2 in FAIL_VERDICTS:
            cats.append("after_fail")
        elif prev == BOX_OPEN:
            cats.append("boxed_number")
        elif prev == "try" and w.isdigit():
            cats.append("correct_candidate" if w == answer else "wrong_candidate")
        else:
            cats.append("other")
    return cats


@torch.no_grad()
def completion_logps(model, prompt_ids: list[list[int]], completion_ids: list[list[int]], pad_id: int,
                     batch_size: int = 64) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per-token log p(y_t | prompt, y<t) and the full-vocabulary entropy at each completion
    position, for the given ids (no re-tokenization), from the model's full float32 logits
    (``antisd.lm.logprobs.naive_logps_and_entropies``: prompts left-padded, completions
    right-padded, position ids from the attention mask). Returns lists of (T_i,) tensors."""
    logps, ents = [], []
    device = model_device(model)
    for s in range(0, len(prompt_ids), batch_size):
        P, C = prompt_ids[s:s + batch_size], completion_ids[s:s + batch_size]
        ids, mask, width = pad_prompts_and_completions(P, C, pad_id, device)  # (B, Tp + Tc), Tc
        if width == 0:  # nothing to score in this batch
            tok = ent = torch.zeros(len(C), 0)
        else:
            tok, ent = naive_logps_and_entropies(model, ids, mask, width)  # (B, Tc), (B, Tc)
        for i, c in enumerate(C):
            logps.append(tok[i, :len(c)])
            ents.append(ent[i, :len(c)])
    return logps, ents


def _summary(vals: list[float]) -> dict[str, float]:
    if not vals:
        return {"n": 0}
    return {"n": len(vals), "mean": statistics.fmean(vals), "median": statistics.median(vals),
            "neg_frac": sum(v < 0 for v in vals) / len(vals),
            "stderr": statistics.stdev(vals) / math.sqrt(len(vals)) if len(vals) > 1 else float("nan")}


def rollout_bootstrap(per_rollout: Sequence[Sequence[float]], *, n_boot: int = 2000, seed: int = 0,
                      level: float = 0.95) -> dict[str, float]:
    """Token-weighted mean of the values in ``per_rollout`` (one list per rollout that has such tokens) and its
    percentile interval from ``n_boot`` resamples of whole rollouts (tokens of one rollout are correlated)."""
    import random

    groups = [list(g) for g in per_rollout if len(g)]
    if not groups:
        return {"n": 0, "rollouts": 0}
    sums, counts = [sum(g) for g in groups], [len(g) for g in groups]
    rng = random.Random(seed)
    k = len(groups)
    boots = []
    for _ in range(n_boot):
        idx = [rng.randrange(k) for _ in range(k)]
        boots.append(sum(sums[i] for i in idx) / sum(counts[i] for i in idx))
    boots.sort()
    lo_i = int((1 - level) / 2 * n_boot)
    return {"n": sum(counts), "rollouts": k, "mean": sum(sums) / sum(counts), "lo": boots[lo_i],
            "hi": boots[n_boot - 1 - lo_i]}


def _u_by_category(s_logps: Sequence[torch.Tensor], t_logps: Sequence[torch.Tensor], cats: Sequence[list[str]],
                   words: Sequence[list[str]]) -> tuple[dict, dict, dict, dict[str, list[list[float]]]]:
    """u_t = t_t - s_t of every token, grouped: by category, by word after a failed try, deliberation words
    after the first failed try vs later ones, and per rollout the two claim-1 groups (deliberation after a
    failed try, the correct candidate)."""
    by_cat: dict[str, list[float]] = defaultdict(list)
    by_word: dict[str, list[float]] = defaultdict(list)
    by_fail: dict[str, list[float]] = defaultdict(list)  # first failed try vs later ones
    claim1: dict[str, list[list[float]]] = {"deliberation_after_fail": [], "correct_candidate": []}  # per rollout
    for tl, sl, cs, ws in zip(t_logps, s_logps, cats, words):
        u = (tl - sl).tolist()
        fails = 0
        mine: dict[str, list[float]] = {k: [] for k in claim1}
        for ut, c, w in zip(u, cs, ws):
            by_cat[c].append(ut)
            if c == "correct_candidate":
                mine["correct_candidate"].append(ut)
            if c == "after_fail":
                fails += 1
                by_word[w].append(ut)
                if w in DELIBERATION_WORDS:
                    by_fail["after_first_fail" if fails == 1 else "after_later_fail"].append(ut)
                    mine["deliberation_after_fail"].append(ut)
        for k, v in mine.items():
            claim1[k].append(v)
    return by_cat, by_word, by_fail, claim1


def _form_summary(ctxs: Sequence, s_logps: Sequence[torch.Tensor], t_logps: Sequence[torch.Tensor],
                  t_ents: Sequence[torch.Tensor], cats: Sequence[list[str]], words: Sequence[list[str]], *,
                  n_boot: int, seed: int) -> dict:
    """The summary of one reference form (``run_pmi_check``'s ``forms`` entries)."""
    by_cat, by_word, by_fail, claim1 = _u_by_category(s_logps, t_logps, cats, words)
    delib = [v for w in DELIBERATION_WORDS for v in by_word.get(w, [])]
    ent_all = torch.cat(t_ents).tolist()
    return {
        "sources": {s: sum(c.source == s for c in ctxs) / len(ctxs) for s in ("sibling", "dataset")},
        "categories": {c: _summary(by_cat[c]) for c in CATEGORIES},
        "deliberation_words": _summary(delib),
        "deliberation_by_fail": {k: _summary(by_fail[k]) for k in ("after_first_fail", "after_later_fail")},
        "after_fail_by_word": {w: _summary(v) for w, v in sorted(by_word.items())},
        "teacher_entropy": {"mean": statistics.fmean(ent_all), "median": statistics.median(ent_all)},
        "sum_u_per_rollout": _summary([float((tl - sl).sum()) for tl, sl in zip(t_logps, s_logps)]),
        "claim1": {k: rollout_bootstrap(v, n_boot=n_boot, seed=seed) for k, v in claim1.items()},
    }


def run_pmi_check(model_path: str | Path, *, n_problems: int = 128, group_size: int = 4,
                  max_new_tokens: int | None = None, forms: Sequence[str] = ("answer", "sibling"),
                  seed: int = 0, n_boot: int = 2000) -> dict:
    """Sample ``n_problems x group_size`` held-out rollouts of the policy at ``model_path`` and
    summarise u per token category, for each reference form. Returns a JSON-able dict; its ``claim1`` entry
    per form holds the paper's claim-1 split with rollout-bootstrap intervals (``rollout_bootstrap``): mean u on
    the deliberation words after a failed try and on the correct candidate (this world's answer-committing token)."""
    from transformers import AutoModelForCausalLM

    from antisd.method.context import build_teacher_contexts
    from antisd.toyworld.base_policy import ToyBaseConfig, heldout_rows, load_build_info
    from antisd.toyworld.evaluate import get_reward_fn, sample_completions

    model_path = Path(model_path)
    info = load_build_info(model_path)
    cfg = ToyBaseConfig.from_dict(info["recipe"])
    max_new_tokens = max_new_tokens or cfg.max_new_tokens
    tok = load_tokenizer(str(model_path))
    model = AutoModelForCausalLM.from_pretrained(model_path).eval()
    reward_fn = get_reward_fn()

    problems = heldout_rows(cfg, n_problems)
    rows = [r for r in problems for _ in range(group_size)]
    texts, comp_ids = sample_completions(model, tok, [r["prompt"] for r in rows], max_new_tokens=max_new_tokens,
                                         temperature=1.0, seed=seed)
    eos = tok.eos_token_id
    # keep eos as a scored token when the rollout ended with it (the policy chose to stop)
    comp_ids = [c + [eos] if len(c) < max_new_tokens else c for c in comp_ids]
    rewards = [reward_fn(t, r["answer"]) for t, r in zip(texts, rows)]
    student_prompt_ids = tok([r["prompt"] for r in rows], add_special_tokens=False)["input_ids"]
    s_logps, s_ents = completion_logps(model, student_prompt_ids, comp_ids, tok.pad_token_id)
    words = [tok.convert_ids_to_tokens(c) for c in comp_ids]
    cats = [classify_tokens(w, r["answer"]) for w, r in zip(words, rows)]

    result: dict = {"model": str(model_path), "style": cfg.traces.privileged_style, "n_rollouts": len(rows),
                    "accuracy": sum(rewards) / len(rewards), "mean_tokens": statistics.fmean(map(len, comp_ids)),
                    "forms": {}}
    for form in forms:
        ctx_cfg = toy_context_config(sibling_format="completion" if form == "sibling" else "answer",
                                     sources=("sibling", "dataset") if form == "sibling" else ("dataset",))
        ctxs = build_teacher_contexts([r["prompt"] for r in rows], texts, rewards,
                                      [i // group_size for i in range(len(rows))],
                                      solutions=[r["solution"] for r in rows], answers=[r["answer"] for r in rows],
                                      config=ctx_cfg, seed=seed)
        teacher_prompt_ids = tok([c.prompt for c in ctxs], add_special_tokens=False)["input_ids"]
        t_logps, t_ents = completion_logps(model, teacher_prompt_ids, comp_ids, tok.pad_token_id)
        result["forms"][form] = _form_summary(ctxs, s_logps, t_logps, t_ents, cats, words, n_boot=n_boot, seed=seed)
    s_ent_all = torch.cat(s_ents).tolist()
    result["student_entropy"] = {"mean": statistics.fmean(s_ent_all), "median": statistics.median(s_ent_all)}
    return result


def format_table(result: dict, min_count: int = 10) -> str:
    """A markdown table: one row per token category, per reference form (words after a failed
    try with fewer than ``min_count`` occurrences are pooled)."""
    lines = [f"style `{result['style']}`: {result['n_rollouts']} rollouts, accuracy {result['accuracy']:.3f}, "
             f"{result['mean_tokens']:.1f} tokens per rollout", "",
             "| form | tokens | n | mean u | median u | share u<0 |", "|---|---|---|---|---|---|"]
    for form, fr in result["forms"].items():
        by_word = fr["after_fail_by_word"]
        rare = [w for w, st in by_word.items() if st["n"] < min_count]
        rows = [("after a failed try (all)", fr["categories"]["after_fail"]),
                ("  deliberation words", fr["deliberation_words"]),
                *[(f"  deliberation, {k.replace('_', ' ')}", v) for k, v in fr["deliberation_by_fail"].items()],
                *[(f"  `{w}`", st) for w, st in by_word.items() if w not in rare]]
        if rare:
            rows.append((f"  other words ({len(rare)} kinds)", {"n": sum(by_word[w]["n"] for w in rare), "pooled": True}))
        rows += [(c.replace("_", " "), fr["categories"][c]) for c in CATEGORIES if c != "after_fail"]
        for name, st in rows:
            if st.get("pooled"):
                lines.append(f"| {form} | {name} | {st['n']} | | | |")
            elif st.get("n", 0):
                lines.append(f"| {form} | {name} | {st['n']} | {st['mean']:+.2f} | {st['median']:+.2f} | {st['neg_frac']:.2f} |")
        te = fr["teacher_entropy"]
        lines.append(f"| {form} | teacher entropy, mean / median | | {te['mean']:.3f} | {te['median']:.4f} | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    from antisd.toyworld.base_policy import ensure_base_policy, pick_num_threads, recipe

    ap = argparse.ArgumentParser(description="Mean PMI u on deliberation vs answer tokens of base-policy rollouts.")
    ap.add_argument("--styles", nargs="+", default=["commit"], choices=["commit", "direct", "search"],
                    help="privileged_style of the base policies to check (each is built if not cached)")
    ap.add_argument("--recipe", default="default", choices=["default", "tiny"])
    ap.add_argument("--model", default=None, help="check this saved base policy instead of --styles")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--n-problems", type=int, default=128)
    ap.add_argument("--group-size", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write all results to this file")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(pick_num_threads())
    paths = [Path(a.model)] if a.model else [ensure_base_policy(recipe(a.recipe, privileged_style=s), a.cache_dir) for s in a.styles]
    results = []
    for p in paths:
        res = run_pmi_check(p, n_problems=a.n_problems, group_size=a.group_size, seed=a.seed)
        results.append(res)
        print(format_table(res) + "\n")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
