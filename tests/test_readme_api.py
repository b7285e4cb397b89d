"""The README's Python block runs verbatim: a tiny local model (antisd.lm.tiny) saved as the folder
it names, a problems.jsonl beside it, two AntiSD steps on this machine's precision."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_the_readme_has_one_python_block_that_uses_the_public_api():
    (block,) = python_blocks()
    assert "problems_dataset(" in block and "AntiSDTrainer(" in block and "..." not in block


def test_the_readme_python_block_runs_verbatim(tmp_path, monkeypatch):
    from antisd.lm.tiny import make_tiny_checkpoint

    (block,) = python_blocks()
    model = re.search(r'^model = "([^"]+)"', block, flags=re.MULTILINE).group(1)
    data = re.search(r'problems_dataset\("([^"]+)"', block).group(1)
    monkeypatch.chdir(tmp_path)
    make_tiny_checkpoint(tmp_path / model, seed=0)
    rows = [{"problem": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(8)]
    (tmp_path / data).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    namespace: dict = {}
    exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - the documented snippet, as a user runs it
    trainer = namespace["trainer"]
    assert trainer.state.global_step == trainer.args.max_steps == 2
    assert trainer.args.bf16 is __import__("antisd.trainer.config", fromlist=["x"]).machine_supports_bf16()
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert [h["step"] for h in logged] == [1, 2] and all("reward" in h for h in logged)


@pytest.mark.slow
def test_the_readme_python_block_runs_with_the_shipped_toy_model(tmp_path, monkeypatch):
    """The same block with the built-in toy model (issue 26; its shipped folder is the same model:
    tests/lm/test_names.py): its chat template and teacher context come with it, so trainer.train() runs
    (one step here, ~35 s on 2 busy cores)."""
    (block,) = python_blocks()
    block = re.sub(r'^model = "[^"]+"', 'model = "toyworld"', block, flags=re.MULTILINE).replace("max_steps=2",
                                                                                               "max_steps=1")
    data = re.search(r'problems_dataset\("([^"]+)"', block).group(1)
    monkeypatch.chdir(tmp_path)
    rows = [{"problem": f"find x in 1 .. 9 with x + {i} = {i + 3} .", "answer": "3"} for i in range(8)]
    (tmp_path / data).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    namespace: dict = {}
    exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - the documented snippet, as a user runs it
    trainer = namespace["trainer"]
    assert trainer.state.global_step == 1 and trainer.args.teacher_template.endswith("feedback : {feedback} .")
    assert [h for h in trainer.state.log_history if "loss" in h][0]["completions/mean_length"] > 0
