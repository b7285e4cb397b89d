"""antisd.pmi.run: the command end to end (dataset, rollouts file, stored log-probs, the trainer's dump)."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from antisd.pmi import main


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


def test_sampling_and_scoring_each_show_progress(tiny_model_path, tmp_path, capsys):
    """Scoring waits for a whole context window of rollouts, so sampling has a bar of its own."""
    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps({"problem": f"What is {i} + 1?", "answer": str(i + 1)}) + "\n" for i in range(3)))
    assert main(["--model", str(tiny_model_path), "--dataset", str(data), "--samples_per_problem", "2",
                 "--max_new_tokens", "4", "--output_dir", str(tmp_path / "out"), "--bootstrap", "0",
                 "--max_traces", "0"]) == 0
    err = capsys.readouterr().err
    assert "sampled" in err and "6/6" in err and "scored" in err


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


@pytest.mark.slow
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
