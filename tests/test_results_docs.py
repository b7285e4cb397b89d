"""The documented tables are the records' (issue 25): docs/benchmarks.md's generated sections equal what
benchmarks/results_report.py makes of results/, and the report's statistics against hand values."""

import math
import random
import statistics
from pathlib import Path

import pytest

from antisd.trainer.records import load_records, make_record, pack_bits, write_record
from bench_helpers import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rep():
    return load_benchmark("results_report")


def test_documented_numbers_match_the_records(rep):
    """Regenerating docs/benchmarks.md from the committed records changes nothing: a number typed by hand into a
    generated section, or a record added without regenerating, fails here (python benchmarks/results_report.py)."""
    records = rep.load_all(ROOT / "results")
    for doc in rep.DOCS:
        text = (ROOT / doc).read_text(encoding="utf-8")
        assert "<!-- generated:" in text, f"{doc} has no generated section"
        new = rep.regenerate(text, records, doc)
        assert new == text, f"{doc}: sections {rep.changed_sections(text, new)} differ from the records"


def _record(base, arm, seed, accs_acc, big, n_acc=16, n_big=32, rng=None, history=None, equations=None):
    """A record whose curve is made of per-problem bits with the given accuracies (rounded to whole problems)."""
    rng = rng or random.Random(seed)

    def point(step, kind, n, acc):
        k = round(acc * n)
        bits = [1] * k + [0] * (n - k)
        rng.shuffle(bits)
        return {"step": step, "kind": kind, "n": n, "acc": k / n, "correct": pack_bits(bits)}

    curve = [point(100 * i, "acc", n_acc, a) for i, a in enumerate(accs_acc)]
    curve += [point(step, "big", n_big, a) for step, a in big.items()]
    hist = history or [{"step": s, "loss": 0.0} for s in range(1, 5)]
    return make_record(study="guard_control", run=f"{base}-{arm}-s{seed}", seed=seed, steps=100 * (len(accs_acc) - 1),
                       settings={"arm": arm}, base={"name": f"toybase-{base}", "sha256": "0" * 64}, curve=curve,
                       history=hist, heldout={str(n_big): {"rows": n_big, "distinct_prompts": n_big,
                                                           "distinct_equations": equations or 16}},
                       runtime_s=60.0, machine={"cpu": "unit", "torch_threads": 1, "torch": "x"},
                       extra={"arm": arm, "base_label": base})


def test_two_level_bootstrap_against_hand_cases(rep):
    n = 40
    clusters = tuple(i // 4 for i in range(n))  # 10 clusters of 4 problems
    same = [([1.0] * n, [0.0] * n), ([1.0] * n, [0.0] * n)]
    assert rep.two_level_bootstrap(same, clusters) == (1.0, 1.0, 1.0)  # a constant difference: no spread
    rng = random.Random(0)
    pairs = [([float(rng.random() < 0.6) for _ in range(n)], [float(rng.random() < 0.4) for _ in range(n)])
             for _ in range(5)]
    point, lo, hi = rep.two_level_bootstrap(pairs, clusters)
    assert point == pytest.approx(statistics.fmean(statistics.fmean(a) - statistics.fmean(g) for a, g in pairs))
    assert lo < point < hi
    # whole-cluster resampling of problems that agree within a cluster is wider than treating rows as independent
    blocky = [([float(j // 4 % 2) for j in range(n)], [0.0] * n) for _ in range(3)]
    _, lo_c, hi_c = rep.two_level_bootstrap(blocky, clusters)
    _, lo_r, hi_r = rep.two_level_bootstrap(blocky, tuple(range(n)))
    assert hi_c - lo_c > 1.3 * (hi_r - lo_r)
    with pytest.raises(ValueError, match="3 cluster ids for 40 problems"):
        rep.two_level_bootstrap(pairs, (0, 1, 2))


def test_per_problem_vectors_give_the_curve_figures(rep):
    r = _record("S", "grpo", 0, [0.25, 0.5, 0.75], {0: 0.25, 200: 0.5})
    assert statistics.fmean(rep.final_vector(r)) == 0.5  # the big evaluation at the last step
    assert statistics.fmean(rep.auc_vector(r)) == pytest.approx(load_benchmark("toy_robustness_report").auc(r))
    assert rep.equation_clusters(2048)[:3] == rep.equation_clusters(3)
    assert len(set(rep.equation_clusters(2048))) == 505  # the count of distinct equations in n = 2,048


def test_regenerate_rewrites_sections_and_a_tampered_number_is_caught(rep, tmp_path):
    hist = [{"step": s, "loss": 0.0, "gate/on": float(s > 2), "gate/lambda": 0.5 * (s > 2),
             "token_term/active": float(s > 2), "token_term/size_ratio": 0.03, "token_term/wrong_nonzero_frac": 0.0}
            for s in range(1, 5)]
    recs = []
    eq = len(set(rep.equation_clusters(32)))  # what the real first 32 held-out problems hold
    for seed in range(3):
        recs.append(_record("S", "grpo", seed, [0.5, 0.6, 0.7], {0: 0.5, 200: 0.7}, equations=eq))
        recs.append(_record("S", "antisd_correct", seed, [0.5, 0.62, 0.72], {0: 0.5, 200: 0.72}, history=hist,
                            equations=eq))
    for r in recs:
        write_record(tmp_path / r["study"] / f"{r['run']}.json", r)
    records = load_records(tmp_path)
    doc = ("# x\n<!-- generated:guard_control (do not edit) -->\nold\n<!-- /generated -->\n"
           "text\n<!-- generated:records -->\n<!-- /generated -->\n")
    new = rep.regenerate(doc, records, "x.md")
    assert rep.regenerate(new, records, "x.md") == new  # stable
    assert rep.changed_sections(doc, new) == ["guard_control", "records"]
    row = next(ln for ln in new.splitlines() if ln.startswith("| S | guarded default"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "3" and cells[4].startswith("0.719")  # 0.71875 = 23/32 on every seed
    assert cells[5].startswith("+0.031")  # 23/32 - 22/32 paired on every seed
    assert cells[10:14] == ["0.50", "0.0300", "0.00", "0.50"]  # term on 2 of 4 steps, size 0.03 of |A|, gate
    tampered = new.replace(cells[4], "0.800", 1)
    assert rep.regenerate(tampered, records, "x.md") != tampered
    assert rep.changed_sections(tampered, rep.regenerate(tampered, records, "x.md")) == ["guard_control"]
    assert f"n = 32: 32 rows, 32 distinct prompts, {eq} distinct equations" in new
    # a record whose eval set is not the default task's held-out set is refused, naming it
    wrong = [_record("S", "grpo", 9, [0.5, 0.7], {0: 0.5, 100: 0.7}, equations=eq + 1),
             _record("S", "antisd_correct", 9, [0.5, 0.7], {0: 0.5, 100: 0.7}, equations=eq + 1)]
    with pytest.raises(ValueError, match=f"S-antisd_correct-s9: heldout\\[32\\] has {eq + 1} distinct equations"):
        rep.section_guard_control(wrong)
    with pytest.raises(ValueError, match="x.md: generated section 'nope' has no generator"):
        rep.regenerate("<!-- generated:nope -->\n<!-- /generated -->\n", records, "x.md")
    with pytest.raises(ValueError, match="generated section 'records' has no '<!-- /generated -->' end marker"):
        rep.regenerate("<!-- generated:records -->\nno end\n", records, "x.md")


def test_verdicts_follow_the_pre_stated_rules(rep):
    assert rep.rule((0.05, 0.01, 0.09)) == "above GRPO"
    assert rep.rule((-0.05, -0.09, -0.01)) == "below GRPO"
    assert rep.rule((0.0, -0.015, 0.019)) == "equivalent (inside ±0.02)"
    assert rep.rule((0.0, -0.03, 0.01)) == "inconclusive"
    assert not math.isnan(rep.EQUIV)


def test_claim1_pmi_section_applies_the_pre_stated_rule(rep):
    from antisd.trainer.records import make_pmi_record

    def pmi(name, d, c):
        rec = make_pmi_record(study="claim1_pmi", run=name, settings={}, base={"name": name, "sha256": "1" * 64},
                              result={"style": "search", "n_rollouts": 512, "accuracy": 0.6,
                                      "forms": {"answer": {"claim1": {"deliberation_after_fail": d,
                                                                      "correct_candidate": c}}}},
                              runtime_s=1.0, machine={"cpu": "unit"})
        rec["base_label"] = name
        return rec

    below = {"n": 100, "rollouts": 50, "mean": -0.4, "lo": -0.5, "hi": -0.3}
    above = {"n": 80, "rollouts": 60, "mean": 0.7, "lo": 0.6, "hi": 0.8}
    across = {"n": 80, "rollouts": 60, "mean": 0.05, "lo": -0.1, "hi": 0.2}
    lines = rep.section_claim1_pmi([pmi("S", below, above), pmi("search", below, across)])
    assert lines[2].endswith("| supported |") and "-0.400 [-0.500, -0.300] (100, 50)" in lines[2]
    assert lines[3].startswith("| search |") and lines[3].endswith("| not supported |")
    assert "PMI checks: `claim1_pmi/S`" in "\n".join(rep.section_records([pmi("S", below, above)]))


def test_realmodel_claim1_classes_intervals_rule_and_section(rep, tmp_path, monkeypatch):
    """benchmarks/realmodel_claim1.py on hand-made scored rollouts (no model): token classes, class means with
    cluster-bootstrap intervals, the pre-stated rule, and the generated section."""
    import json

    from antisd.trainer.records import make_pmi_record

    claim1 = load_benchmark("realmodel_claim1")
    assert claim1.classify([" Wait", ",", " 1", "2", " is", " 1", "2", "0", " So"], "12") == [
        "deliberation", "other", "gold_answer", "gold_answer", "other", "number", "number", "number", "connective"]
    rng = random.Random(0)
    lines = []
    for i in range(40):  # deliberation always lowered (u < 0), the gold answer's digits raised (u > 0)
        tokens = [" Wait", " the", " sum", " is", " 1", "2", "."]
        s = [-1.0] * len(tokens)
        t = [-1.0 - 1.0 - rng.random(), -1.0, -1.0, -1.0, -0.5 + rng.random() * 0.1, -0.6, -1.0]
        lines.append(json.dumps({"tokens": tokens, "student_logps": s, "teacher_logps": t, "problem_id": f"p{i}",
                                 "correct": i % 4 == 0}))
    (tmp_path / "records.jsonl").write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(claim1, "gold_answers", lambda dataset: {f"p{i}": "12" for i in range(40)})
    result = claim1.analyse(tmp_path, "unused", n_boot=200, max_new_tokens=7)
    table = result["classes"]["all"]
    assert (table["deliberation"]["n"], table["gold_answer"]["n"], table["number"]["n"]) == (40, 80, 0)
    assert math.isclose(table["other"]["mean_u"], 0.0) and table["deliberation"]["ci"][1] < -1.0
    assert table["gold_answer"]["ci"][0] > 0 and result["verdict"] == "the sign split appears"
    assert (result["n_rollouts"], result["n_correct"], result["n_at_limit"]) == (40, 10, 40)
    assert result["classes"]["correct"]["deliberation"]["n"] == 10
    assert "not testable" in claim1.verdict({**table, "gold_answer": {**table["gold_answer"], "n": 5}})
    rec = make_pmi_record(study="realmodel_claim1", run="m", settings={}, base={"name": "m", "sha256": "2" * 64},
                          result=result, runtime_s=1.0, machine={"cpu": "unit"})
    text = "\n".join(rep.section_realmodel_claim1([rec]))
    assert "Verdict by the rule: **the sign split appears**" in text and "| deliberation | -" in text
