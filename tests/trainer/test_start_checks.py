"""Every check that can fail before work starts runs before work starts (issue 26, item 2), through the
command line and the Python API: chat templates, numeric ranges (the learning rate, negative numbers as
values), output paths, encodings, header-only CSV files (tests/cli/test_validate.py runs that one through every
command); a failed start leaves no file behind; Ctrl-C ends train, eval and pmi with one line that says what
was kept and how to go on, exit code 130."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from antisd.toyworld.defaults import toy_dataset_file
from antisd.cli.main import main
from antisd.cli.validate import InputError

BAD = Path(__file__).resolve().parents[1] / "bad_inputs"
GOOD = BAD / "good.jsonl"


@pytest.fixture(scope="module")
def toy_problems(tmp_path_factory) -> Path:
    return toy_dataset_file(n=40, seed=0, cache_dir=tmp_path_factory.mktemp("toydata"))


@pytest.fixture(scope="module")
def no_template_model(tiny_model_path, tmp_path_factory) -> Path:
    """The tiny model with its chat template removed (a base model's tokenizer)."""
    path = tmp_path_factory.mktemp("no_template")
    shutil.copytree(tiny_model_path, path, dirs_exist_ok=True)
    (path / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((path / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (path / "tokenizer_config.json").write_text(json.dumps(config))
    return path


def run(argv, capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def one_line(err: str, command: str, kind: str = "error") -> str:
    lines = [line for line in err.splitlines() if line.startswith(f"antisd {command}: {kind}: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ---------------------------------------------------------------------------------------- templates


def test_eval_without_a_chat_template_fails_before_any_file_and_the_corrected_rerun_runs(
        no_template_model, tmp_path, capsys):
    out = tmp_path / "eval"
    argv = ["eval", "--models", f"m={no_template_model}", "--benchmarks", f"b={GOOD}?id=id", "--limit", "1", "--k", "1",
            "--max_new_tokens", "4", "--output_dir", str(out), "--plot", "false", "--show_progress", "false"]
    code, err = run(argv, capsys)
    assert code == 2 and "its tokenizer has no chat template, and prompt_format is chat; give --prompt_format plain" in \
        one_line(err, "eval")
    assert not out.exists()  # no settings fingerprint left to block the rerun
    code, err = run([*argv, "--prompt_format", "plain"], capsys)
    assert code == 0, err
    assert len((out / "samples" / "m__b.jsonl").read_text().splitlines()) == 1


def test_a_settings_file_without_samples_does_not_block_a_rerun(tiny_model_path, tmp_path, capsys):
    """A start that failed or was stopped before its first sample (an older antisd left such a file)."""
    out = tmp_path / "eval"
    (out / "samples").mkdir(parents=True)
    (out / "samples" / "m__b.config.json").write_text(json.dumps({"fingerprint": {"temperature": 0.1}}))
    code, err = run(["eval", "--models", f"m={tiny_model_path}", "--benchmarks", f"b={GOOD}?id=id", "--limit", "1",
                     "--k", "1", "--max_new_tokens", "4", "--output_dir", str(out), "--plot", "false",
                     "--show_progress", "false"], capsys)
    assert code == 0 and "other settings" not in err, err
    stored = json.loads((out / "samples" / "m__b.config.json").read_text())["fingerprint"]
    assert stored["temperature"] == 0.6


def test_the_trainer_fails_at_construction_on_chat_prompts_without_a_chat_template(no_template_model, tmp_path):
    from antisd.trainer.config import AntiSDConfig
    from antisd.data.problems import problems_dataset
    from antisd.rewards import MathReward
    from antisd.trainer.core import AntiSDTrainer

    args = AntiSDConfig(output_dir=str(tmp_path / "out"), max_steps=1, num_generations=4, per_device_train_batch_size=4,
                        max_completion_length=8, report_to=[], bf16=False)
    train = problems_dataset(str(GOOD))  # chat prompts, the default
    with pytest.raises(InputError, match=r"train_dataset holds chat prompts .* has no chat template; build the "
                                         r"dataset with prompt_format='plain'"):
        AntiSDTrainer(model=str(no_template_model), reward_funcs=[MathReward()], args=args, train_dataset=train)
    plain = problems_dataset(str(GOOD), prompt_format="plain")
    AntiSDTrainer(model=str(no_template_model), reward_funcs=[MathReward()], args=args, train_dataset=plain)


# ---------------------------------------------------------------------------------------- numeric ranges


@pytest.mark.parametrize("flags", [["--learning_rate=-1e-4"], ["--learning_rate", "-1e-4"]])
def test_a_negative_learning_rate_fails_before_the_model_loads(tmp_path, capsys, caplog, flags):
    out = tmp_path / "run"
    code, err = run(["train", *flags, "--max_steps", "1", "--output_dir", str(out)], capsys)
    assert code == 2 and one_line(err, "train").endswith("learning_rate=-0.0001 must be >= 0")
    assert not any("Loading the" in r.getMessage() for r in caplog.records) and not out.exists()


def test_negative_numbers_are_values_on_every_command_line(capsys):
    from antisd.evaluate.config import build_parser as eval_parser
    from antisd.pmi.config import parse_args as pmi_args

    code, err = run(["train", "--lambda_max", "-5e-1", "--max_steps", "1"], capsys)
    assert code == 2 and one_line(err, "train").endswith("lambda_max=-0.5 must be >= 0 (the weight of the token term)")
    assert pmi_args(["--model", "m", "--dataset", "d", "--heatmap_min_logp", "-1e1"]).heatmap_min_logp == -10.0
    assert eval_parser().parse_args(["--seed", "-3", "--temperature", "-.5"]).temperature == -0.5


def test_the_python_config_checks_trl_ranges_when_built(tmp_path):
    from antisd.trainer.config import AntiSDConfig

    for field, value, expected in [("learning_rate", -1e-4, "learning_rate=-0.0001 must be >= 0"),
                                   ("temperature", 0.0, "temperature=0.0 must be > 0"),
                                   ("top_p", 1.5, "top_p=1.5 must be in (0, 1]"),
                                   ("max_completion_length", 0, "max_completion_length=0 must be >= 1")]:
        with pytest.raises(ValueError, match=expected.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
            AntiSDConfig(output_dir=str(tmp_path), report_to=[], bf16=False, **{field: value})


# ---------------------------------------------------------------------------------------- output paths, encodings


def test_an_output_dir_that_is_a_file_is_one_line_in_every_entry_point(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    commands = {
        "train": ["train", "--max_steps", "1", "--output_dir", str(afile)],
        "eval": ["eval", "--models", "toyworld", "--benchmarks", f"b={GOOD}?id=id", "--output_dir", str(afile)],
        "pmi": ["pmi", "--model", "toyworld", "--dataset", str(GOOD), "--output_dir", str(afile)],
    }
    for command, argv in commands.items():
        code, err = run(argv, capsys)
        assert code == 2 and one_line(err, command).endswith(f"output_dir={str(afile)!r} is a file, not a folder; "
                                                             "give a new or an existing folder"), (command, err)
    code, err = run(["train", "--max_steps", "1", "--output_dir", str(afile / "run")], capsys)
    assert code == 2 and f"cannot be created: {str(afile)!r} is a file, not a folder" in one_line(err, "train")
    from antisd.trainer.config import AntiSDConfig
    from antisd.rewards import MathReward
    from antisd.trainer.core import AntiSDTrainer

    args = AntiSDConfig(output_dir=str(afile), report_to=[], bf16=False, num_generations=4, per_device_train_batch_size=4)
    with pytest.raises(InputError, match="is a file, not a folder"):
        AntiSDTrainer(model="toyworld", reward_funcs=[MathReward()], args=args, train_dataset=[])
    assert afile.read_text() == "not a folder"


def test_a_samples_file_that_is_not_utf8_names_the_file_and_the_byte_offset(tmp_path, capsys):
    samples = tmp_path / "samples.jsonl"
    samples.write_bytes(b'{"task_id": "HumanEval/0", "solution": "caf\xe9"}\n')
    out = tmp_path / "eval"
    code, err = run(["eval", "--benchmarks", "humaneval_plus", "--samples", str(samples), "--output_dir", str(out)],
                    capsys)
    line = one_line(err, "eval")
    assert code == 2 and f"samples={str(samples)!r} is not UTF-8 text: byte 0xe9 at line 1 (offset 43)" in line
    assert "code sandbox" not in err and not out.exists()  # before the sandbox starts, nothing written


# ---------------------------------------------------------------------------------------- no partial files


def test_a_start_that_fails_after_the_model_loads_leaves_no_run_file(toy_problems, tmp_path, capsys, caplog):
    """The trainer's construction fails (an unknown correctness_reward): antisd_run.yaml is written only after it."""
    out = tmp_path / "run"
    code, err = run(["train", "--dataset_name", str(toy_problems), "--correctness_reward", "nope", "--max_steps", "1",
                     "--output_dir", str(out), "--report_to", "none"], capsys)
    assert code == 2 and "correctness_reward='nope' is not a reward function" in one_line(err, "train")
    assert any("Loading the model" in r.getMessage() for r in caplog.records)  # it failed after the model loaded
    assert not (out / "antisd_run.yaml").exists()


# ---------------------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_of_eval_keeps_the_finished_samples_and_the_same_command_resumes(toy_problems, tmp_path, capsys,
                                                                               monkeypatch):
    import antisd.evaluate.run as eval_run

    out = tmp_path / "eval"
    argv = ["eval", "--models", "toyworld", "--benchmarks", f"toy={toy_problems}", "--limit", "3", "--k", "2",
            "--batch_size", "2", "--max_new_tokens", "8", "--output_dir", str(out), "--plot", "false",
            "--show_progress", "false"]
    real = eval_run.sample_problems

    def stopped_after_one_problem(*args, on_chunk, **kwargs):
        def chunk_then_stop(chunk):
            on_chunk(chunk)
            raise KeyboardInterrupt
        return real(*args, on_chunk=chunk_then_stop, **kwargs)

    monkeypatch.setattr(eval_run, "sample_problems", stopped_after_one_problem)
    code, err = run(argv, capsys)
    assert code == 130 and one_line(err, "eval", "interrupted") == (
        f"antisd eval: interrupted: 2 samples kept in {out} (1 file(s)); run the same command again to resume "
        "(finished problems are skipped)")
    monkeypatch.setattr(eval_run, "sample_problems", real)
    code, err = run(argv, capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in (out / "samples" / "toyworld__toy.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and len({r["problem_id"] for r in rows}) == 3


def test_ctrl_c_of_pmi_says_what_was_scored(toy_problems, tmp_path, capsys, monkeypatch):
    import antisd.pmi  # noqa: F401 - its run module (the package's name `run` is the function)

    pmi_run = sys.modules["antisd.pmi.run"]
    out = tmp_path / "pmi"
    calls = []

    def add(self, record):
        calls.append(record)
        if len(calls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(pmi_run.PMIAggregator, "add", add)
    code, err = run(["pmi", "--model", "toyworld", "--dataset", str(toy_problems), "--max_problems", "2",
                     "--samples_per_problem", "2", "--max_new_tokens", "8", "--progress", "false",
                     "--output_dir", str(out)], capsys)
    assert code == 130 and one_line(err, "pmi", "interrupted") == (
        f"antisd pmi: interrupted: 2 scored rollouts kept in {out / 'records.jsonl'}, no report written; run the same "
        "command again to start over (--max_rollouts N scores fewer)")
    assert not (out / "report.md").exists()


@pytest.mark.slow
def test_ctrl_c_of_train_names_the_checkpoint_and_the_resume_goes_on_from_it(toy_problems, tmp_path, capsys,
                                                                              monkeypatch):
    from antisd.trainer.core import AntiSDTrainer

    out = tmp_path / "run"
    argv = ["train", "--dataset_name", str(toy_problems), "--max_steps", "2", "--per_device_train_batch_size", "8",
            "--num_generations", "4", "--max_completion_length", "8", "--save_steps", "1", "--output_dir", str(out),
            "--report_to", "none", "--disable_tqdm", "true"]
    real = AntiSDTrainer._save_checkpoint

    def save_then_stop(self, model, trial):
        real(self, model, trial)
        raise KeyboardInterrupt

    monkeypatch.setattr(AntiSDTrainer, "_save_checkpoint", save_then_stop)
    code, err = run(argv, capsys)
    assert code == 130 and one_line(err, "train", "interrupted") == (
        f"antisd train: interrupted: the newest checkpoint is {out / 'checkpoint-1'} (step 1); run the same command "
        "with --resume_from_checkpoint true to go on from it")
    monkeypatch.setattr(AntiSDTrainer, "_save_checkpoint", real)
    code, err = run([*argv, "--resume_from_checkpoint", "true"], capsys)
    assert code == 0, err
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 2


def test_ctrl_c_of_train_before_a_checkpoint_says_nothing_was_kept(tmp_path):
    from types import SimpleNamespace

    from antisd.cli.interrupt import train_kept

    config = SimpleNamespace(output_dir=str(tmp_path), save_strategy="steps", save_steps=100,
                             resume_from_checkpoint=None)
    assert train_kept(config) == (f"no checkpoint was written yet (checkpoints: every 100 steps), so nothing was kept "
                                  f"in {tmp_path}; run the same command again to start over")


def test_a_ctrl_c_inside_a_finalizer_is_not_lost(monkeypatch):
    """Garbage collection runs __del__ methods anywhere; Python drops an exception raised in one ("Exception
    ignored in ..."), so a Ctrl-C landing there would be lost with a stray traceback (seen in antisd pmi)."""
    from antisd.cli import interrupt

    class Finalized:
        def __del__(self):
            signal.raise_signal(signal.SIGINT)  # the handler runs while this __del__ runs
            sum(range(1000))

    dropped: list = []
    monkeypatch.setattr(sys, "unraisablehook", dropped.append)
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        interrupt.install()
        assert signal.getsignal(signal.SIGINT) is interrupt._on_sigint
        with pytest.raises(KeyboardInterrupt):
            Finalized()
            time.sleep(2)  # the interrupt comes again, outside the finalizer
    finally:
        signal.signal(signal.SIGINT, old)
    assert not dropped


def _terminal_sigint() -> None:
    """In the child before exec: SIGINT as a terminal's foreground job has it (default action). A process
    started with SIGINT ignored (any background job of a non-interactive shell, e.g. a CI runner's ``cmd &``)
    keeps it ignored across exec, and Python then installs no KeyboardInterrupt handler at all: that, not the
    eval, is why this test once lost its Ctrl-C in CI (exit 0 after the whole eval) and once "hung"."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["process", "group"])
def test_a_real_ctrl_c_of_eval_is_one_line_and_exit_130(toy_problems, tmp_path, target):
    """SIGINT while antisd eval samples, to the command's process (``kill -INT``) or, as a terminal's Ctrl-C,
    to its whole process group (the command and any worker it started)."""
    out = tmp_path / "eval"
    proc = subprocess.Popen([sys.executable, "-m", "antisd.cli.main", "eval", "--models", "toyworld", "--benchmarks",
                             f"toy={toy_problems}", "--k", "32", "--batch_size", "4", "--output_dir", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=_terminal_sigint, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(proc.stderr))
    reader.start()
    samples = out / "samples" / "toyworld__toy.jsonl"
    deadline = time.monotonic() + 120
    while not (samples.exists() and samples.stat().st_size) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, "".join(err)  # still sampling
    if target == "group":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGINT)
    assert proc.wait(120) == 130
    reader.join()
    text = "".join(err)
    assert "Traceback" not in text and "Exception ignored" not in text, text
    assert text.splitlines()[-1].startswith("antisd eval: interrupted: ") and "samples kept in" in text.splitlines()[-1]


def test_ctrl_c_while_the_libraries_load_is_one_line_and_exit_130(monkeypatch, capsys):
    """A KeyboardInterrupt before the command starts (the heavy imports, the thread settings) is one line."""
    from antisd.cli import entry
    from antisd.cli import threads

    def interrupted(count):
        raise KeyboardInterrupt

    monkeypatch.setattr(threads, "apply", interrupted)
    assert entry.main(["eval", "--models", "toyworld"]) == 130
    err = capsys.readouterr().err
    assert err == "antisd eval: interrupted while starting: nothing was written\n"


@pytest.mark.slow
def test_a_real_ctrl_c_in_the_first_second_is_one_line_and_exit_130(toy_problems, tmp_path):
    """SIGINT one second after ``antisd eval`` starts (torch and transformers still loading on most machines,
    the command already running on a fast one): either way one line, exit code 130, nothing else."""
    proc = subprocess.Popen([sys.executable, "-m", "antisd.cli.entry", "eval", "--models", "toyworld", "--benchmarks",
                             f"toy={toy_problems}", "--k", "32", "--output_dir", str(tmp_path / "eval")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=_terminal_sigint, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert err.splitlines()[-1].startswith("antisd eval: interrupted"), err
