"""``--help`` as a user runs it (the console script in a subprocess): short, each option once, ours first, TRL's
texts that contradict ours replaced, fast (no torch, TRL or transformers import), and the shipped help current."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ANTISD = Path(sys.executable).with_name("antisd")
ENV = {**os.environ, "COLUMNS": "100"}


def run_help(*args: str) -> tuple[str, float]:
    """(stdout, wall seconds) of ``antisd ARGS`` through the installed console script."""
    start = time.perf_counter()
    done = subprocess.run([str(ANTISD), *args], capture_output=True, text=True, env=ENV, timeout=120)
    elapsed = time.perf_counter() - start
    assert done.returncode == 0, done.stderr
    return done.stdout, elapsed


def options(text: str) -> list[str]:
    """The option names an entry line starts with (``  --name ...``), in order, aliases included."""
    names = []
    for line in text.splitlines():
        m = re.match(r"  (-{1,2}[\w-]+(?:, -{1,2}[\w-]+)*)", line)
        if m:
            names += [n.strip() for n in m.group(1).split(",")]
    return names


def sections(text: str) -> list[str]:
    return [line[:-1] for line in text.splitlines() if line and not line.startswith(" ") and line.endswith(":")]


def test_train_help_is_one_screen_per_section_each_option_once():
    text, _ = run_help("train", "--help")
    names = options(text)
    assert len(text.splitlines()) < 300, len(text.splitlines())  # it was 481 lines
    assert len(names) == len(set(names)), sorted({n for n in names if names.count(n) > 1})
    assert names.count("--answer_column") == 1 and "--answer-column" not in names  # was listed twice
    assert not any(n.startswith("--no_") for n in names)
    heads = sections(text)
    assert heads[:4] == ["AntiSD method (docs/method.md)", "gate", "guards", "privileged context (the teacher's prompt)"]
    assert heads[-1].startswith("TRL options") and heads.index("model") < heads.index("data") < heads.index("reward")
    body = {}  # section -> its lines: each fits a screen
    for line in text.split("\n\n"):
        first = line.split("\n", 1)[0]
        if first.endswith(":") and not first.startswith(" "):
            body[first[:-1]] = line.count("\n")
    assert max(body.values()) <= 50, body
    flat = " ".join(text.split())
    assert "defaults to `True`" not in flat  # TRL's --bf16 text, which contradicts ours
    assert "--bf16 BOOL bf16 mixed precision: true or false; unset: follows the machine" in flat
    assert re.search(r"--resume_from_checkpoint TEXT .*or true \(or last\) for the newest complete checkpoint", flat)
    assert "--threads N" in flat and "ANTISD_THREADS" in flat


def test_help_all_lists_every_option_once():
    text, _ = run_help("train", "--help-all")
    names = options(text)
    assert len(names) == len(set(names))
    for name in ("--adam_beta1", "--gate_down_ratio", "--answer_column", "--problem_id_column", "--loss_type"):
        assert name in names
    heads = sections(text)
    assert heads[-2:] == ["TRL GRPOConfig options", "transformers TrainingArguments options"]
    assert "defaults to `True`" not in " ".join(text.split())
    n = int(re.search(r"lists all (\d+)", run_help("train", "--help")[0]).group(1))
    assert len([x for x in names if x.startswith("--")]) >= n


@pytest.mark.parametrize("command", ["eval", "pmi"])
def test_eval_and_pmi_help_list_each_option_once(command):
    text, _ = run_help(command, "--help")
    names = options(text)
    assert text.startswith(f"usage: antisd {command} [--config YAML ...]")
    assert len(names) == len(set(names)) and "--config" in names and "-h" not in names


def test_help_does_not_import_torch_trl_or_transformers_and_is_fast():
    """The import check holds on any machine; the wall-clock bound is the issue's 2 s target, generous here
    for a loaded shared machine (it took 6-11 s before)."""
    probe = ("import sys, io, contextlib\n"
             "from antisd.cli.entry import main\n"
             "for argv in (['train', '--help'], ['train', '--help-all'], ['eval', '-h'], ['pmi', '--help']):\n"
             "    with contextlib.redirect_stdout(io.StringIO()):\n"
             "        assert main(argv) == 0\n"
             "heavy = sorted(m for m in ('torch', 'trl', 'transformers', 'datasets') if m in sys.modules)\n"
             "print(heavy)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=ENV, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    times = sorted(run_help("train", "--help")[1] for _ in range(3))
    assert times[0] < 4.0, times  # about 0.2-0.5 s here; each used to take 6-11 s


def test_the_other_helps_do_not_import_torch():
    """antisd --help and the help of recipe, report and data build their argparse text live: no torch, no TRL."""
    probe = ("import sys, io, contextlib\n"
             "from antisd.cli.entry import main\n"
             "for argv in (['--help'], ['recipe', '--help'], ['report', '--help'], ['data', '--help']):\n"
             "    try:\n"
             "        with contextlib.redirect_stdout(io.StringIO()):\n"
             "            main(argv)\n"
             "    except SystemExit as e:\n"
             "        assert e.code == 0, (argv, e.code)\n"
             "print(sorted(m for m in ('torch', 'trl') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=ENV, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    text, _ = run_help("--help")
    assert "--threads N" in text


def test_the_shipped_help_is_current():
    """resources/help.json equals the help built from the live parsers (else: python -m antisd.cli.helptext --write)."""
    done = subprocess.run([sys.executable, "-m", "antisd.cli.helptext", "--check"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    from antisd.cli.helptext import CACHE

    shipped = CACHE.read_text(encoding="utf-8")
    for path in {str(Path(__file__).resolve().parents[2]), str(Path.home()), sys.prefix}:
        assert path not in shipped  # the file ships in the wheel: no path of this machine


def test_a_stale_cache_falls_back_to_the_live_parsers(tmp_path, monkeypatch):
    from antisd.cli import helptext

    stale = tmp_path / "help.json"
    stale.write_text('{"files": ["config.py"], "fingerprint": {"versions": {}, "sources": "0"}, '
                     '"specs": {"train": {"usage": "STALE", "groups": []}}}', encoding="utf-8")
    assert helptext.read_cache(stale) is None
    monkeypatch.setattr(helptext, "CACHE", stale)
    text = helptext.help_text("train", width=100)
    assert text.startswith("usage: antisd train") and "STALE" not in text and "--gate_down_ratio X" in text
