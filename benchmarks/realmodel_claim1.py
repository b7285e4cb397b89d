"""Claim 1 (the PMI sign split) on a real pretrained model: SmolLM2-135M-Instruct's own GSM8K rollouts.

The analysis is stated in docs/realmodel.md ("Claim 1 on a model no one here designed") before it ran.
Step 1 runs ``antisd pmi`` (the model samples its own completions; the teacher is the same weights with
GSM8K's worked solution and the correctness feedback in its prompt) into ``--out``; step 2 reads the
scored rollouts (``records.jsonl``) and computes mean u_t = log pi(y_t | x, c, y_<t) - log pi(y_t | x, y_<t)
per token class, on all rollouts and split by correct / wrong, with 95% percentile intervals from
2,000 resamples of whole rollouts (``antisd.pmi.bootstrap_ci``), and writes a PMI record
(``antisd.trainer.records``) to ``--results/realmodel_claim1/<model>.json``.

Token classes (a token belongs to a word class when its text without surrounding whitespace is the word):

- ``deliberation``: Wait, Let, Maybe, Alternatively, Hmm, But (the trainer's deliberation words);
- ``connective``: So, Therefore, Thus, Hence, Then, Now, Next, Finally, First, Since, Because (and lower case);
- ``number``: digit tokens (this tokenizer writes every digit as its own token);
- ``gold_answer``: digit tokens inside an occurrence of the problem's final answer (GSM8K's ``#### N``) in
  the completion, as a whole number (not inside a longer one): the tokens that commit to the right answer;
- ``other``: every token in none of the above.

    python benchmarks/realmodel_claim1.py                       # 256 problems x 2 rollouts, one torch thread
    python benchmarks/realmodel_claim1.py --reuse               # step 2 only, on the folder of an earlier run
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path

import numpy as np

from antisd.pmi.aggregate import CONNECTIVE_WORDS as CONNECTIVE  # antisd pmi's default word classes
from antisd.pmi.aggregate import DELIBERATION_WORDS as DELIBERATION

CLASSES = ("deliberation", "connective", "number", "gold_answer", "other")


def pmi_argv(args: argparse.Namespace) -> list[str]:
    """The pre-stated ``antisd pmi`` command (docs/realmodel.md)."""
    return ["--model", args.model, "--dataset", args.dataset, "--id_column", "id", "--max_problems", str(args.problems),
            "--shuffle_seed", "0", "--samples_per_problem", str(args.samples), "--max_new_tokens", str(args.max_new_tokens),
            "--temperature", "1.0", "--solution_sources", "dataset", "--problems_per_batch", "8",
            "--batch_size", str(args.batch_size), "--seed", "0", "--check_rollouts", "32",
            "--answer_extraction", args.answer_extraction, "--output_dir", str(args.out)]


def gold_answers(dataset: str) -> dict[str, str]:
    """Problem id -> final answer, from the dataset file or a shipped preset name."""
    from antisd.data.problems import DataConfig, column_values, load_raw  # noqa: PLC0415 - keeps --help fast

    raw = load_raw(DataConfig(dataset_name=dataset))
    ids, answers = column_values(raw, "id", "id_column"), column_values(raw, "answer", "answer_column")
    return {str(i): str(a).strip() for i, a in zip(ids, answers)}


def gold_spans(text: str, answer: str) -> list[tuple[int, int]]:
    """Character spans of `answer` in `text` as a whole number (no digit, comma or point joined on either side)."""
    answer = answer.replace(",", "")
    if not answer:
        return []
    pattern = re.compile(r"(?<![\d.,])" + re.escape(answer) + r"(?![\d]|[.,]\d)")
    return [(m.start(), m.end()) for m in pattern.finditer(text)]


def classify(tokens: list[str], answer: str | None) -> list[str]:
    """One class name per token (``CLASSES``; gold_answer before number)."""
    text = "".join(tokens)
    spans = gold_spans(text, answer) if answer else []
    out, pos = [], 0
    for tok in tokens:
        word = tok.strip()
        a, b = pos, pos + len(tok)
        pos = b
        if word.isdigit() and any(a < hi and lo < b for lo, hi in spans):
            out.append("gold_answer")
        elif word.isdigit():
            out.append("number")
        elif word in DELIBERATION:
            out.append("deliberation")
        elif word in CONNECTIVE:
            out.append("connective")
        else:
            out.append("other")
    return out


def class_table(rollouts: list[dict], n_boot: int, seed: int) -> dict[str, dict]:
    """Per class: tokens, rollouts, mean u (token-weighted), its 95% cluster-bootstrap interval, share of u < 0."""
    from antisd.pmi import bootstrap_ci  # noqa: PLC0415

    table = {}
    for name in CLASSES:
        sums, counts, neg, n_tok = [], [], 0, 0
        for r in rollouts:
            us = [u for u, c in zip(r["u"], r["classes"]) if c == name]
            if us:
                sums.append(math.fsum(us))
                counts.append(len(us))
                neg += sum(u < 0 for u in us)
                n_tok += len(us)
        if not n_tok:
            table[name] = {"n": 0, "n_rollouts": 0, "mean_u": None, "ci": [None, None], "neg_frac": None}
            continue
        lo, hi = bootstrap_ci(sums, counts, n_boot=n_boot, seed=seed)
        table[name] = {"n": n_tok, "n_rollouts": len(sums), "mean_u": math.fsum(sums) / n_tok, "ci": [lo, hi],
                       "neg_frac": neg / n_tok}
    return table


def verdict(table: dict[str, dict], min_tokens: int = 30) -> str:
    """The pre-stated rule: the sign split appears when deliberation's interval lies below 0 and gold_answer's
    above 0; reversed when deliberation's lies above 0 or gold_answer's below; otherwise not resolved."""
    d, g = table["deliberation"], table["gold_answer"]
    if d["n"] < min_tokens or g["n"] < min_tokens:
        return f"not testable (fewer than {min_tokens} tokens: deliberation {d['n']}, gold_answer {g['n']})"
    if d["ci"][1] < 0 < g["ci"][0]:
        return "the sign split appears"
    if d["ci"][0] > 0 or g["ci"][1] < 0:
        return "reversed on at least one side"
    return "not resolved (an interval contains 0)"


def analyse(out: Path, dataset: str, n_boot: int, max_new_tokens: int = 128) -> dict:
    answers = gold_answers(dataset)
    rollouts = []
    with open(out / "records.jsonl", encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            u = [t - s for t, s in zip(rec["teacher_logps"], rec["student_logps"])]
            answer = answers.get(str(rec.get("problem_id")))
            rollouts.append({"u": u, "classes": classify(rec["tokens"], answer), "correct": bool(rec.get("correct")),
                             "at_limit": len(rec["tokens"]) >= max_new_tokens})
    split = {"all": rollouts, "correct": [r for r in rollouts if r["correct"]],
             "wrong": [r for r in rollouts if not r["correct"]]}
    tables = {k: class_table(v, n_boot, seed=0) for k, v in split.items()}
    all_u = np.concatenate([np.asarray(r["u"]) for r in rollouts]) if rollouts else np.zeros(0)
    return {"n_rollouts": len(rollouts), "n_correct": len(split["correct"]),
            "n_at_limit": sum(r["at_limit"] for r in rollouts), "n_tokens": int(all_u.size),
            "mean_u": float(all_u.mean()) if all_u.size else None,
            "neg_frac": float((all_u < 0).mean()) if all_u.size else None,
            "classes": tables, "verdict": verdict(tables["all"])}


def print_result(result: dict) -> None:
    print(f"{result['n_rollouts']} rollouts ({result['n_correct']} correct, {result['n_at_limit']} reached the token "
          f"limit), {result['n_tokens']} tokens, mean u {result['mean_u']:+.3f}, {100 * result['neg_frac']:.0f}% < 0")
    for part, table in result["classes"].items():
        print(f"\n{part}:\n| class | tokens | rollouts | mean u | 95% interval | u < 0 |\n|---|---:|---:|---:|---|---:|")
        for name, row in table.items():
            if not row["n"]:
                print(f"| {name} | 0 | 0 | - | - | - |")
                continue
            print(f"| {name} | {row['n']} | {row['n_rollouts']} | {row['mean_u']:+.3f} | [{row['ci'][0]:+.3f}, "
                  f"{row['ci'][1]:+.3f}] | {100 * row['neg_frac']:.0f}% |")
    print(f"\nverdict (pre-stated rule): {result['verdict']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--dataset", default="gsm8k_test")
    ap.add_argument("--problems", type=int, default=256)
    ap.add_argument("--samples", type=int, default=2, help="rollouts per problem")
    ap.add_argument("--max_new_tokens", type=int, default=128)
    ap.add_argument("--batch_size", type=int, default=16)
    ap.add_argument("--out", type=Path, default=Path("runs/realmodel_claim1"))
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--n_boot", type=int, default=2000)
    ap.add_argument("--reuse", action="store_true", help="analyse an earlier run's folder; do not sample")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--answer_extraction", choices=["strict", "flexible"], default="strict",
                    help="how a rollout's correctness (the teacher's feedback) is read; flexible: the run is named "
                         "<model>-flexible")
    args = ap.parse_args(argv)
    run_name = args.model + ("-flexible" if args.answer_extraction == "flexible" else "")

    import torch  # noqa: PLC0415

    from antisd.lm.names import resolve_model  # noqa: PLC0415
    from antisd.pmi.run import main as pmi_main  # noqa: PLC0415
    from antisd.lm.realmodel import read_manifest  # noqa: PLC0415
    from antisd.trainer.records import make_pmi_record, write_record  # noqa: PLC0415

    torch.set_num_threads(args.threads)
    start = time.monotonic()
    if not args.reuse:
        code = pmi_main(pmi_argv(args))
        if code:
            return code
    runtime = time.monotonic() - start
    result = analyse(args.out, args.dataset, args.n_boot, args.max_new_tokens)
    print_result(result)
    folder = resolve_model(args.model, what="--model").path
    manifest = read_manifest(folder)
    base = {"name": args.model, "folder": Path(folder).name,
            "sha256": manifest["files"]["model.safetensors"]["sha256"]}
    settings = {"pmi_argv": pmi_argv(args)[2:-2], "classes": {"deliberation": DELIBERATION, "connective": CONNECTIVE,
                                                             "number": "digit tokens",
                                                             "gold_answer": "digits of the final answer"}}
    path = args.results / "realmodel_claim1" / f"{run_name}.json"
    if args.reuse:  # the sampling and scoring time of the run that made the folder, when its record is there
        runtime = json.loads(path.read_text())["runtime_s"] if path.exists() else 0.0
    rec = make_pmi_record(study="realmodel_claim1", run=run_name, settings=settings, base=base, result=result,
                          runtime_s=runtime)
    path = write_record(path, rec)
    print(f"record: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
