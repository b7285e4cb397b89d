"""antisd.pmi: per-token PMI traces, telescoping check, HTML, aggregates, bad inputs. CPU, tiny model."""

from __future__ import annotations

import json
import logging
import math
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch

from antisd.context import ContextConfig, build_teacher_contexts
from antisd.pmi import (
    PMIConfig,
    PMIConfigError,
    PMIRecord,
    Rollout,
    SkipLog,
    TokenClass,
    aggregate,
    bootstrap_ci,
    boxed_mask,
    compute_pmi,
    main,
    parse_token_classes,
    render_html,
    visible_whitespace,
)

SYSTEM = {"role": "system", "content": "Please reason step by step."}


def chat(text: str) -> list[dict[str, str]]:
    return [SYSTEM, {"role": "user", "content": text}]


@pytest.fixture(scope="module")
def model_and_tok(tiny_model_path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model_path).eval(), AutoTokenizer.from_pretrained(tiny_model_path)


def naive_completion_logps(model, prompt_ids: list[int], completion_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference: one unpadded sequence, the model's full logits, log_softmax. -> logps (T,), entropy (T,)."""
    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1:-1].double()  # (T, V)
    logp = torch.log_softmax(logits, dim=-1)
    return logp.gather(1, ids[0, len(prompt_ids):, None]).squeeze(1), -(logp.exp() * logp).sum(-1)


def make_rollouts(tok) -> list[Rollout]:
    g = torch.Generator().manual_seed(0)
    lens = [5, 13, 9, 1]
    comps = [torch.randint(3, len(tok), (n,), generator=g).tolist() for n in lens]
    comps[0][-1] = tok.eos_token_id  # a completion ending with eos, as TRL scores it
    prompts = [chat("What is 1 + 1?"), chat("Compute the sum of the first 10 positive integers, please."),
               chat("What is 1 + 1?"), chat("Find x.")]
    return [
        Rollout(prompt=prompts[0], completion_ids=comps[0], reward=1.0, answer="2", solution="1 + 1 = 2", problem_id="a", rollout_id="r0"),
        Rollout(prompt=prompts[1], completion_ids=comps[1], reward=0.0, answer="55", solution="10 * 11 / 2 = 55", problem_id="b", rollout_id="r1"),
        Rollout(prompt=prompts[2], completion_ids=comps[2], reward=1.0, answer="2", solution=None, problem_id="a", rollout_id="r2"),
        Rollout(prompt=prompts[3], completion_ids=comps[3], reward=0.0, answer="3", solution=None, problem_id="c", rollout_id="r3"),
    ]


# ------------------------------------------------------------------------------------ trace values


def test_trace_values_equal_naive_and_telescope(model_and_tok):
    model, tok = model_and_tok
    rollouts = make_rollouts(tok)
    cfg = ContextConfig()
    expected_ctx = build_teacher_contexts(
        [r.prompt for r in rollouts], [tok.decode(r.completion_ids, skip_special_tokens=True) for r in rollouts],
        [r.reward for r in rollouts], [r.problem_id for r in rollouts], solutions=[r.solution for r in rollouts],
        answers=[r.answer for r in rollouts], config=cfg, seed=7,
    )
    records = list(compute_pmi(model, tok, make_rollouts(tok), cfg, batch_size=3, seed=7))  # padding across a batch
    assert [r.rollout_id for r in records] == ["r0", "r1", "r2", "r3"]
    assert [r.source for r in records] == ["sibling", "dataset", "sibling", "answer"]
    for rec, ro, ctx in zip(records, rollouts, expected_ctx):
        assert rec.teacher_prompt == ctx.prompt and rec.source == ctx.source
        assert rec.token_ids == ro.completion_ids  # never re-tokenized
        s_ids = tok.apply_chat_template(ro.prompt, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
        t_ids = tok.apply_chat_template(ctx.prompt, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
        s_ref, s_ent = naive_completion_logps(model, list(s_ids), ro.completion_ids)
        t_ref, t_ent = naive_completion_logps(model, list(t_ids), ro.completion_ids)
        torch.testing.assert_close(torch.tensor(rec.student_logps, dtype=torch.float64), s_ref, atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(torch.tensor(rec.teacher_logps, dtype=torch.float64), t_ref, atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(torch.tensor(rec.teacher_entropy, dtype=torch.float64), t_ent, atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(torch.tensor(rec.student_entropy, dtype=torch.float64), s_ent, atol=1e-4, rtol=1e-5)
        assert rec.u == [t - s for t, s in zip(rec.teacher_logps, rec.student_logps)]
        # telescoping: sum_t u_t = log pi(y|x,c) - log pi(y|x) from the separate whole-sequence forward
        assert rec.telescoping_error is not None and rec.telescoping_error < 1e-4
        assert math.isclose(rec.seq_pmi, float(t_ref.sum() - s_ref.sum()), abs_tol=1e-6)
        assert len(rec.tokens) == len(rec.token_ids)
    tables = aggregate(records, n_boot=50)
    assert tables.summary["telescoping_checked"] == 4 and tables.summary["telescoping_failed"] == 0


def test_same_prompt_gives_zero_u_and_text_rollouts_tokenized_once(model_and_tok):
    model, tok = model_and_tok
    text = "Let me think step by step. 12 + 35 = 47. The answer is \\boxed{47}."
    prompt = "What is 12 + 35?"
    ros = [Rollout(prompt=prompt, completion=text, teacher_prompt=prompt, context_given=True, rollout_id="same"),
           Rollout(prompt=chat(prompt), completion=text, reward=1.0, answer="47", rollout_id="text")]
    recs = list(compute_pmi(model, tok, ros, max_tokens=12, check_rollouts=1))
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert recs[0].u == [0.0] * 12  # empty privileged context: teacher == student exactly
    assert recs[1].token_ids == ids[:12] and recs[1].truncated  # tokenized once, same ids for both passes
    assert recs[1].telescoping_error is None  # check_rollouts=1: only the first
    assert "".join(recs[1].tokens) == tok.decode(ids[:12])


# ------------------------------------------------------------------------------------ HTML


class _Spans(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[list[str]] = []
        self.open: list[str] = []
        self.in_tok = False
        self.titles: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag not in ("meta", "br", "hr", "img", "link", "input"):  # void elements have no end tag
            self.open.append(tag)
        if tag == "section":
            self.sections.append([])
        if tag == "span" and "tok" in (a.get("class") or "").split():
            self.in_tok = True
            self.sections[-1].append("")
            self.titles.append(a["title"])

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, f"unbalanced </{tag}>"
        self.open.pop()
        if tag == "span":
            self.in_tok = False

    def handle_data(self, data):
        if self.in_tok:
            self.sections[-1][-1] += data


def test_html_is_valid_and_contains_every_token(model_and_tok):
    model, tok = model_and_tok
    records = list(compute_pmi(model, tok, make_rollouts(tok), check_rollouts=0))
    tricky = PMIRecord("tricky <&>", [1, 2, 3, 4, 5], ["<b>", " & ", "\n", "\t\"x\"", "'"], [-1.0] * 5, [-2.0, 0.0, -1.0, -0.5, -1.0],
                       teacher_entropy=[0.1] * 5, prompt="a <script>", teacher_prompt=chat("x & y"))
    page = render_html([*records, tricky], scale=2.0)
    assert "<script>" not in page and "http" not in page  # escaped; no external assets
    p = _Spans()
    p.feed(page)
    p.close()
    assert p.open == []
    assert len(p.sections) == len(records) + 1
    for rec, texts in zip([*records, tricky], p.sections):
        assert texts == [visible_whitespace(t) for t in rec.tokens]
    assert visible_whitespace(" a\nb\t") == "\u00b7a\u21b5\nb\u2192"
    assert "u=-1.000" in p.titles[-5] and "H_T=0.100" in p.titles[-5]


# ------------------------------------------------------------------------------------ aggregates


def hand_records() -> list[PMIRecord]:
    """Known u values (exact binary fractions): u = t - s."""
    r1 = PMIRecord("h1", list(range(7)), ["Wait", ",", " so", " \\boxed{", "4", "2", "}"],
                   [-1.0] * 7, [-3.0, -1.0, 0.0, -0.5, -0.75, -1.0, -1.0])  # u = -2, 0, 1, .5, .25, 0, 0
    r2 = PMIRecord("h2", list(range(4)), [" Wait", " Hmm", ",", " so"],
                   [-2.0] * 4, [-3.0, -2.5, -2.0, -1.0])  # u = -1, -.5, 0, 1
    return [r1, r2]


def test_aggregates_exact_on_hand_built_example():
    classes = parse_token_classes(["commit=so", "answer=@boxed"])
    t = aggregate(hand_records(), classes, n_boot=0)
    rows = {r["token"]: r for r in t.tokens}
    assert rows[","]["n"] == 2 and rows[","]["mean_u"] == 0.0
    assert rows[" so"]["n"] == 2 and rows[" so"]["mean_u"] == 1.0 and rows[" so"]["neg_frac"] == 0.0
    assert rows["Wait"]["mean_u"] == -2.0 and rows[" Wait"]["mean_u"] == -1.0
    assert [r["token"] for r in t.tokens][:2] == [" so", " \\boxed{"]  # ranked by mean u
    assert t.tokens[-1]["token"] == "Wait"
    c = {r["class"]: r for r in t.classes}
    assert c["deliberation"]["n"] == 3 and c["deliberation"]["mean_u"] == (-2.0 - 1.0 - 0.5) / 3
    assert c["deliberation"]["n_rollouts"] == 2
    assert c["commit"]["n"] == 2 and c["commit"]["mean_u"] == 1.0
    assert c["answer"]["n"] == 2 and c["answer"]["mean_u"] == 0.125  # "4", "2" inside \boxed{}
    assert c["connective"]["n"] == 2 and c["connective"]["mean_u"] == 1.0  # "so" is a connective too
    s = t.summary
    assert s["n_tokens"] == 11 and s["n_rollouts"] == 2
    assert s["neg_frac"] == 3 / 11 and s["pos_frac"] == 4 / 11 and s["zero_frac"] == 4 / 11
    assert s["mean_u"] == (-2 + 0 + 1 + .5 + .25 + 0 + 0 - 1 - .5 + 0 + 1) / 11
    assert s["median_u"] == 0.0
    assert [r["sum_u"] for r in t.rollouts] == [-0.25, -0.5]
    assert s["telescoping_checked"] == 0
    assert t.heatmap.sum() == 11
    assert boxed_mask(["a", "\\box", "ed{", "x", "{1}", "}", " b"]) == [False, False, False, True, True, False, False]
    assert boxed_mask(["\\boxed{", "7"]) == [False, True]  # unclosed box runs to the end
    assert boxed_mask([" yes", " \\boxed{", " 6", " }"]) == [False, False, True, False]  # word-level: spaces ignored
    assert TokenClass("d", frozenset({"Wait"})).members([" Wait", "Wait,", "W"]) == [True, False, False]
    with pytest.raises(ValueError, match="NAME=word1"):
        parse_token_classes(["nonsense"])


def test_bootstrap_deterministic_and_contains_mean():
    g = torch.Generator().manual_seed(1)
    sums = (torch.randn(40, generator=g) * 3).tolist()
    counts = torch.randint(1, 6, (40,), generator=g).double().tolist()
    mean = sum(sums) / sum(counts)
    a = bootstrap_ci(sums, counts, n_boot=500, seed=3)
    assert a == bootstrap_ci(sums, counts, n_boot=500, seed=3)
    assert a != bootstrap_ci(sums, counts, n_boot=500, seed=4)
    assert a[0] < mean < a[1]
    t1 = aggregate(hand_records(), n_boot=200, seed=0, unit="token")
    t2 = aggregate(hand_records(), n_boot=200, seed=0, unit="token")
    assert json.dumps(t1.classes) == json.dumps(t2.classes)  # (NaN != NaN, so compare the text)
    d = {r["class"]: r for r in t1.classes}["deliberation"]
    assert d["ci_low"] <= d["mean_u"] <= d["ci_high"]
    assert all(math.isnan(x) for x in bootstrap_ci([], [], n_boot=10))


# ------------------------------------------------------------------------------------ bad input


def test_bad_inputs_skip_with_message_and_process_the_rest(model_and_tok, caplog):
    model, tok = model_and_tok
    skips = SkipLog()
    ros = [
        Rollout(prompt="What is 2 + 2?", completion=" 4", reward=1.0, answer=None, solution=None, problem_id="x", rollout_id="nosol"),
        Rollout(prompt="What is 2 + 3?", completion="", reward=0.0, answer="5", rollout_id="empty"),
        Rollout(prompt=chat("What is 2 + 4?"), completion=" 6", reward=1.0, answer="6", rollout_id="chat"),
        Rollout(prompt="What is 2 + 5?", completion=" \\boxed{7}", answer="7", rollout_id="ok"),
        Rollout(prompt="What is 2 + 6?", completion=" 8", rollout_id="noreward"),
    ]
    tok_nochat = type(tok).from_pretrained(tok.name_or_path)
    tok_nochat.chat_template = None
    with caplog.at_level(logging.WARNING, logger="antisd.pmi"):
        recs = list(compute_pmi(model, tok_nochat, ros, skips=skips))
    assert [r.rollout_id for r in recs] == ["ok"]
    assert recs[0].source == "answer" and recs[0].reward == 1.0  # reward computed from the answer
    assert dict(skips.counts) == {"no_context": 1, "empty_completion": 1, "no_chat_template": 1, "no_reward": 1}
    text = caplog.text
    assert "no verified solution" in text and "solution column missing" in text
    assert "empty completion" in text and "has no chat template" in text and "prompt_format=plain" in text


def test_rollouts_file_without_solution_column(model_and_tok, tmp_path, caplog):
    _, tok = model_and_tok
    rows = [{"prompt": "What is 1 + 1?", "completion": " 2", "answer": "2"},
            {"prompt": "Name a prime.", "completion": " 7", "reward": 1.0},  # no answer, no solution, no sibling
            "not json",
            {"prompt": "What is 1 + 2?", "completion": "", "answer": "3"}]
    f = tmp_path / "r.jsonl"
    f.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        code = main(["--model", str(tok.name_or_path), "--rollouts", str(f), "--output_dir", str(out),
                     "--bootstrap", "20", "--progress", "false"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["summary"]["n_rollouts"] == 1
    assert summary["skipped"] == {"no_context": 1, "bad_row": 1, "empty_completion": 1}
    assert "no 'solution' column" in caplog.text


def test_cli_dataset_end_to_end_and_chat_template_error(tiny_model_path, tmp_path, capsys):
    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in [
        {"problem": "What is 1 + 1?", "answer": "2"},  # no solution column at all
        {"problem": "What is 12 + 35?", "answer": "47"},
    ]))
    out = tmp_path / "out"
    code = main(["--model", str(tiny_model_path), "--dataset", str(data), "--samples_per_problem", "2",
                 "--max_new_tokens", "6", "--output_dir", str(out), "--bootstrap", "20", "--max_traces", "2",
                 "--progress", "false"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "PASS" in printed and "u < 0:" in printed
    for name in ("traces.html", "heatmap.png", "tokens.csv", "tokens.md", "classes.csv", "classes.md",
                 "rollouts.csv", "records.jsonl", "report.md", "summary.json", "strips/strip_001.png"):
        assert (out / name).exists(), name
    assert len((out / "records.jsonl").read_text().splitlines()) == 4
    assert (out / "heatmap.png").stat().st_size < 200_000
    # stored log-probs of a trainer-style dump: no model pass
    recs = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    dump = tmp_path / "rollouts.jsonl"
    dump.write_text("".join(json.dumps({"step": 1, "prompt": r["prompt"], "completion_ids": r["token_ids"],
                                        "teacher_prompt": r["teacher_prompt"], "source": r["source"], "reward": r["reward"],
                                        "student_logps": r["student_logps"], "teacher_logps": r["teacher_logps"],
                                        "teacher_entropy": r["teacher_entropy"]}) + "\n" for r in recs))
    assert main(["--rollouts", str(dump), "--use_stored_logps", "--output_dir", str(tmp_path / "o2"),
                 "--bootstrap", "0", "--progress", "false"]) == 0
    stored = json.loads((tmp_path / "o2" / "summary.json").read_text())["summary"]
    assert stored["n_rollouts"] == 4 and stored["telescoping_checked"] == 0
    # a tokenizer without a chat template and chat prompts: one clear line, exit 2, before sampling
    from transformers import AutoTokenizer

    nochat = tmp_path / "nochat"
    t = AutoTokenizer.from_pretrained(tiny_model_path)
    t.chat_template = None
    t.save_pretrained(nochat)
    (nochat / "chat_template.jinja").unlink(missing_ok=True)
    capsys.readouterr()
    assert main(["--model", str(tiny_model_path), "--tokenizer", str(nochat), "--dataset", str(data),
                 "--output_dir", str(tmp_path / "o3"), "--progress", "false"]) == 2
    assert "has none; give --prompt_format plain" in capsys.readouterr().err


def test_config_reads_context_from_training_yaml(tmp_path):
    y = tmp_path / "run.yaml"
    y.write_text("version: 1\nmodel_name_or_path: m\ndataset_name: d.jsonl\nlearning_rate: 1.0e-6\n"
                 "teacher_template: '{prompt} ref : {solution} . feedback : {feedback} .'\n"
                 "feedback_correct: right\nfeedback_incorrect: wrong\nsolution_sources: [sibling, dataset]\n"
                 "sibling_format: answer\nmax_solution_chars: 99\ntemperature: 0.7\nnum_generations: 3\n")
    cfg = PMIConfig(config=str(y), feedback_incorrect="WRONG")
    ctx = cfg.context_config
    assert ctx.template.startswith("{prompt} ref :") and ctx.feedback_correct == "right"
    assert ctx.feedback_incorrect == "WRONG"  # the command line wins
    assert ctx.sources == ("sibling", "dataset") and ctx.sibling_format == "answer" and ctx.max_solution_chars == 99
    assert (cfg.model, cfg.dataset, cfg.temperature, cfg.samples_per_problem) == ("m", "d.jsonl", 0.7, 3)
    assert PMIConfig(config=str(y), rollouts="r.jsonl").dataset is None
    with pytest.raises(PMIConfigError, match="exactly one of rollouts"):
        PMIConfig(model="m")
    with pytest.raises(PMIConfigError, match="template must contain"):
        PMIConfig(model="m", dataset="d", teacher_template="{prompt}")


def test_rescoring_the_trainers_dump_reproduces_its_values(tiny_model_path, tmp_path):
    """The trainer dumps s, t, entropy before its optimizer step: the same weights must give them back."""
    from trainer_helpers import make_trainer

    make_trainer(tiny_model_path, tmp_path / "run", method="antisd", dump_rollouts_every=1, max_steps=1).train()
    dump_file = tmp_path / "run" / "rollouts" / "rollouts.jsonl"
    assert main(["--model", str(tiny_model_path), "--rollouts", str(dump_file), "--output_dir", str(tmp_path / "pmi"),
                 "--bootstrap", "0", "--max_traces", "1", "--progress", "false"]) == 0
    dump = [json.loads(x) for x in dump_file.read_text().splitlines()]
    dump = [d for d in dump if d["teacher_prompt"] is not None]
    recs = [json.loads(x) for x in (tmp_path / "pmi" / "records.jsonl").read_text().splitlines()]
    assert len(recs) == len(dump) > 0
    for d, r in zip(dump, recs):
        assert r["token_ids"] == d["completion_ids"] and r["teacher_prompt"] == d["teacher_prompt"]
        for key in ("student_logps", "teacher_logps", "teacher_entropy"):
            torch.testing.assert_close(torch.tensor(r[key]), torch.tensor(d[key]), atol=1e-5, rtol=1e-5)
