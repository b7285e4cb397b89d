"""Fault injection: SIGKILL ``antisd train`` and ``antisd eval`` at chosen moments, resume, and compare
with an uninterrupted run, bit for bit (issue 14, items 3 and 5; figures in docs/reliability.md).

    python benchmarks/fault_injection.py                                   # 32 training + 16 eval trials
    python benchmarks/fault_injection.py --train-trials 4 --eval-trials 3 --workdir /tmp/fi --json fi.json

Set-up (nothing downloaded): a tiny Qwen3 (``antisd.lm.tiny``), 12 training problems, two eval files
(one with an ``id`` column, one without; both repeat some problem texts), a ``run.yaml`` for
canonical AntiSD (the gate's warm-up and reference live in ``antisd_state.json``), 8 steps,
checkpoints every 2 steps, at most 2 kept (so old ones are rotated out).

Each trial runs the CLI in a child process, ``python benchmarks/fault_injection.py inject --point P
--at N --events FILE -- train --config run.yaml``: ``antisd.cli.main.main`` after wrapping the functions
of every kill point (``TRAIN_POINTS``, ``EVAL_POINTS``). Each wrapper appends an event (point, call
count, completed steps) to FILE; on the N-th call of point P it does its part (e.g. leaves the file
it writes half written) and the process SIGKILLs itself. ``timed`` kills come from this process after
a random delay (30-90% of the shorter uninterrupted run), and land where the last event says. A
quarter of the trials kill the resumed run again. The last run is the plain console script, ``antisd train --config run.yaml
--resume_from_checkpoint true`` (``antisd eval`` with the same flags: it resumes by itself). Then:

    training  the final model, and checkpoint-8's weights, optimizer, scheduler, RNG states and
              antisd_state.json, equal to the uninterrupted run's (torch.equal, dict equality);
              per-step metrics (loss, grad norm, reward, lambda, teacher entropy) equal;
              lost steps = steps completed before the kill that the resume had to redo
    eval      every file under samples/ and summary.csv byte-identical to the uninterrupted run's

Prints one table per command (trials, kill points, killed, resumed, identical, lost steps) and one
line per trial; ``--json`` writes them. Exit code 1 when any trial differs.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

TRAIN_POINTS = {
    "generation": "rollout generation (TRL's _generate_single_turn returned)",
    "teacher_pass": "the teacher pass (AntiSDTrainer.teacher_pass, its forwards done)",
    "after_step": "an optimizer step done, before logging and saving",
    "ckpt_weights": "writing model.safetensors (half written)",
    "ckpt_optimizer": "writing optimizer.pt (half written)",
    "ckpt_scheduler": "writing scheduler.pt (half written)",
    "ckpt_rng": "writing rng_state.pth (half written)",
    "ckpt_trainer_state": "writing trainer_state.json (half written)",
    "ckpt_antisd_state": "writing antisd_state.json (temp file half written)",
    "ckpt_publish": "a checkpoint renamed into place, before the rotation",
    "ckpt_rotate": "deleting an old checkpoint (half its files gone)",
    "timed": "a random moment",
}
EVAL_POINTS = {
    "eval_meta": "writing a samples settings file (half written)",
    "eval_generate": "generating a batch",
    "eval_score": "scoring a sample (math-verify)",
    "eval_append": "appending a chunk of samples (a random prefix written)",
    "eval_rewrite": "rewriting a samples file without a torn chunk (half written)",
    "eval_summary": "writing summary.md / summary.csv (half written)",
    "timed": "a random moment",
}
# points reached only by a run that resumes after a kill at another point: (that point, this point)
FOLLOW_UPS = {"eval_rewrite": "eval_append"}
METRICS = ("loss", "grad_norm", "reward", "gate/lambda", "teacher/entropy_mean", "learning_rate")
MAX_STEPS = 8


# ====================================================================== the child: the CLI with kill points


class Injector:
    """Counts calls of every kill point, logs them to the events file, kills at (point, at)."""

    def __init__(self, point: str, at: int, events: str, fraction: float) -> None:
        self.point, self.at, self.fraction = point, at, fraction
        self.counts: Counter[str] = Counter()
        self.step = 0
        self.fd = os.open(events, os.O_WRONLY | os.O_CREAT | os.O_APPEND)

    def log(self, **event: Any) -> None:
        os.write(self.fd, (json.dumps(event) + "\n").encode())

    def hit(self, point: str, before_kill=None) -> None:
        """One call of `point`: log it; at the chosen call, run `before_kill` (tear a file) and SIGKILL."""
        self.counts[point] += 1
        n = self.counts[point]
        self.log(point=point, n=n, step=self.step)
        if point == self.point and n == self.at:
            if before_kill is not None:
                before_kill()
            self.log(point="KILL", at=point, n=n, step=self.step)
            os.kill(os.getpid(), signal.SIGKILL)


def _tear(path: str | os.PathLike, fraction: float = 0.5) -> None:
    """Keep the first `fraction` of a file, as a crash mid-write leaves it."""
    os.truncate(path, int(os.path.getsize(path) * fraction))


def _wrap_method(cls: type, name: str, inj: Injector, point: str) -> None:
    orig = getattr(cls, name)

    def wrapper(self, *args, **kwargs):
        out = orig(self, *args, **kwargs)
        inj.hit(point)
        return out

    setattr(cls, name, wrapper)


def install_train_points(inj: Injector) -> None:
    import torch
    import transformers.modeling_utils as modeling_utils
    from transformers.trainer_callback import TrainerState

    import antisd.trainer.checkpointing as trainer_module
    from antisd.trainer.core import AntiSDTrainer

    _wrap_method(AntiSDTrainer, "_generate_single_turn", inj, "generation")
    _wrap_method(AntiSDTrainer, "teacher_pass", inj, "teacher_pass")
    orig_step = AntiSDTrainer._maybe_log_save_evaluate

    def after_step(self, *args, **kwargs):
        inj.step = self.state.global_step
        inj.hit("after_step")
        return orig_step(self, *args, **kwargs)

    AntiSDTrainer._maybe_log_save_evaluate = after_step
    orig_safe_save = modeling_utils.safe_save_file

    def safe_save(tensors, filename, *args, **kwargs):
        out = orig_safe_save(tensors, filename, *args, **kwargs)
        inj.hit("ckpt_weights", lambda: _tear(filename))
        return out

    modeling_utils.safe_save_file = safe_save
    orig_torch_save = torch.save
    by_name = {"optimizer.pt": "ckpt_optimizer", "scheduler.pt": "ckpt_scheduler", "rng_state.pth": "ckpt_rng"}

    def torch_save(obj, f, *args, **kwargs):
        out = orig_torch_save(obj, f, *args, **kwargs)
        if isinstance(f, (str, os.PathLike)) and os.path.basename(f) in by_name:
            inj.hit(by_name[os.path.basename(f)], lambda: _tear(f))
        return out

    torch.save = torch_save
    orig_state_save = TrainerState.save_to_json

    def state_save(self, json_path):
        out = orig_state_save(self, json_path)
        inj.hit("ckpt_trainer_state", lambda: _tear(json_path))
        return out

    TrainerState.save_to_json = state_save
    orig_atomic = trainer_module.atomic_write_json

    def atomic(path, obj):
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        inj.hit("ckpt_antisd_state", lambda: (tmp.write_text(json.dumps(obj, indent=1)), _tear(tmp)))
        return orig_atomic(path, obj)

    trainer_module.atomic_write_json = atomic
    if hasattr(trainer_module, "publish"):  # the crash-safe checkpoint code (absent before it)
        orig_publish = trainer_module.publish

        def publish(staged, final):
            out = orig_publish(staged, final)
            inj.hit("ckpt_publish")
            return out

        trainer_module.publish = publish
    orig_rmtree = shutil.rmtree

    def rmtree(path, *args, **kwargs):
        p = Path(path)
        if p.is_dir() and p.name.split("checkpoint-")[-1].isdigit() and (p / "config.json").exists():
            def half_gone():
                files = sorted(x for x in p.rglob("*") if x.is_file())
                for x in files[: len(files) // 2]:
                    x.unlink()
            inj.hit("ckpt_rotate", half_gone)
        return orig_rmtree(path, *args, **kwargs)

    shutil.rmtree = rmtree


class _TornFile:
    """A text file whose buffered writes reach the disk only up to `fraction` of them, at the first flush;
    then the process is killed (a crash part-way through a write)."""

    def __init__(self, real, inj: Injector, point: str, path: str) -> None:
        self.real, self.inj, self.point, self.path, self.buffer = real, inj, point, path, []

    def write(self, data: str | bytes) -> int:
        self.buffer.append(data)
        return len(data)

    def flush(self) -> None:
        data = self.buffer[0][:0].join(self.buffer) if self.buffer else ""  # text or bytes, as written
        self.buffer.clear()
        if data:
            def torn():
                self.real.write(data[: int(len(data) * self.inj.fraction)])
                self.real.flush()
            self.inj.hit(self.point, torn)
            self.real.write(data)
        self.real.flush()

    def close(self) -> None:
        self.flush()
        self.real.close()

    def fileno(self) -> int:
        return self.real.fileno()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getattr__(self, name: str):
        return getattr(self.real, name)


def install_eval_points(inj: Injector) -> None:
    import builtins

    import antisd.evaluate.generation as generation

    orig_generate, orig_score = generation.generate_completions, generation.score_completion

    def generate(*args, **kwargs):
        out = orig_generate(*args, **kwargs)
        inj.hit("eval_generate")
        return out

    def score(*args, **kwargs):
        inj.hit("eval_score")
        return orig_score(*args, **kwargs)

    generation.generate_completions, generation.score_completion = generate, score
    orig_open = builtins.open

    def point_of(path: str, mode: str) -> str | None:
        name = os.path.basename(path)
        if name.startswith("summary.") and "w" in mode:
            return "eval_summary"
        if "samples" not in Path(path).parts[-2:-1]:
            return None
        if name.endswith(".jsonl") and "a" in mode:
            return "eval_append"
        if ".jsonl" in name and "w" in mode:
            return "eval_rewrite"
        if ".config.json" in name and "w" in mode:
            return "eval_meta"
        return None

    def fake_open(file, mode="r", *args, **kwargs):
        real = orig_open(file, mode, *args, **kwargs)
        point = point_of(os.fspath(file), mode) if isinstance(file, (str, os.PathLike)) else None
        return _TornFile(real, inj, point, os.fspath(file)) if point else real

    builtins.open = io.open = fake_open


def inject_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="fault_injection.py inject")
    p.add_argument("--point", default="none")
    p.add_argument("--at", type=int, default=0)
    p.add_argument("--fraction", type=float, default=0.5, help="share of a torn write that reaches the disk")
    p.add_argument("--events", required=True)
    p.add_argument("cli", nargs=argparse.REMAINDER, help="-- then the antisd command line")
    args = p.parse_args(argv)
    cli = args.cli[1:] if args.cli[:1] == ["--"] else args.cli
    inj = Injector(args.point, args.at, args.events, args.fraction)
    (install_train_points if cli[0] == "train" else install_eval_points)(inj)
    from antisd.cli.main import main

    code = main(cli)
    inj.log(point="EXIT", code=code, step=inj.step)
    return code


# ====================================================================== the parent: set-up, trials, comparison


def antisd_command() -> list[str]:
    script = Path(sys.executable).with_name("antisd")
    return [str(script)] if script.exists() else [sys.executable, "-m", "antisd.cli.main"]


def setup(work: Path) -> dict[str, Any]:
    """The tiny model, the data files and the two command lines (training, eval)."""
    import yaml

    from antisd.lm.tiny import make_tiny_checkpoint

    work.mkdir(parents=True, exist_ok=True)
    model = make_tiny_checkpoint(work / "model", seed=0)
    train = [{"id": f"t{i}", "problem": f"What is {i % 5} + {i // 5}?", "answer": str(i % 5 + i // 5),
              "solution": f"{i % 5} + {i // 5} = {i % 5 + i // 5}"} for i in range(12)]
    texts = [f"What is {i} times {i + 2}?" for i in range(17)] + ["What is 1 times 3?", "What is 4 times 6?",
                                                                  "What is 1 times 3?"]
    with_ids = [{"id": f"e{i}", "problem": t, "answer": str(int(t.split()[2]) * int(t.split()[4][:-1]))}
                for i, t in enumerate(texts)]
    no_ids = [{"problem": r["problem"], "answer": r["answer"]} for r in with_ids[6:]]
    for name, rows in (("train.jsonl", train), ("with_ids.jsonl", with_ids), ("no_ids.jsonl", no_ids)):
        (work / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    run = {"version": 1, "model_name_or_path": str(model), "dtype": "float32", "dataset_name": str(work / "train.jsonl"),
           "id_column": "id", "method": "antisd", "gate_warmup_steps": 2, "bf16": False,
           "gradient_checkpointing": False, "report_to": [], "per_device_train_batch_size": 8, "num_generations": 4,
           "max_completion_length": 16, "max_steps": MAX_STEPS, "learning_rate": 1e-3, "lr_scheduler_type": "linear",
           "temperature": 1.0, "top_k": 0, "top_p": 1.0, "beta": 0.0, "seed": 0, "save_strategy": "steps",
           "save_steps": 2, "save_total_limit": 2, "logging_steps": 1, "disable_tqdm": True,
           "dataloader_num_workers": 0}
    (work / "run.yaml").write_text(yaml.safe_dump(run, sort_keys=False), encoding="utf-8")
    eval_args = ["eval", "--models", f"tiny={model}", "--benchmarks", f"ids={work / 'with_ids.jsonl'}?k=4",
                 f"noids={work / 'no_ids.jsonl'}?k=16", "--batch_size", "12", "--max_new_tokens", "24",
                 "--temperature", "1.0", "--top_p", "0.95", "--seed", "3", "--plot", "false", "--show_progress", "false"]
    return {"train": ["train", "--config", str(work / "run.yaml")], "eval": eval_args}


CHILD_ENV = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def run_child(cmd: list[str], log: Path, kill_after: float | None = None, timeout: float = 900) -> int:
    """Run `cmd` (stdout and stderr to `log`); SIGKILL it after `kill_after` seconds when given. Returns its code."""
    env = {**os.environ, **CHILD_ENV}
    with open(log, "a") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            proc.wait(timeout=kill_after if kill_after is not None else timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    return proc.returncode


def injected(point: str, at: int, events: Path, cli: list[str], fraction: float = 0.5) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "inject", "--point", point, "--at", str(at),
            "--fraction", f"{fraction:.3f}", "--events", str(events), "--", *cli]


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def landed(events: list[dict[str, Any]]) -> tuple[str, int]:
    """(where the run died, steps completed before): the KILL event, else the last event."""
    if not events:
        return "start-up (no event yet)", 0
    last = events[-1]
    where = f"{last['at']} #{last['n']}" if last["point"] == "KILL" else f"after {last['point']} #{last.get('n', '')}"
    return ("finished" if last["point"] == "EXIT" else where), max(e.get("step", 0) for e in events)


def has_samples(out: Path) -> bool:
    return any(f.stat().st_size for f in (out / "samples").glob("*.jsonl")) if (out / "samples").is_dir() else False


def newest_checkpoint(out: Path) -> int:
    steps = [int(p.name.split("-")[1]) for p in out.glob("checkpoint-*") if p.name.split("-")[1].isdigit()]
    return max(steps, default=0)


# ---------------------------------------------------------------------- comparisons


def _equal(a: Any, b: Any) -> bool:
    import numpy as np
    import torch

    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(map(_equal, a, b))
    return type(a) is type(b) and (a == b or (a != a and b != b))  # NaN == NaN here


def _metrics(folder: Path) -> dict[int, dict[str, Any]]:
    history = json.loads((folder / "trainer_state.json").read_text())["log_history"]
    return {h["step"]: {k: h.get(k) for k in METRICS} for h in history if "loss" in h}


def compare_train(ref: Path, out: Path) -> list[str]:
    """What differs between two finished training runs (empty: bit-identical)."""
    import torch
    from safetensors.torch import load_file

    diffs = []
    ckpt_a, ckpt_b = ref / f"checkpoint-{MAX_STEPS}", out / f"checkpoint-{MAX_STEPS}"
    for name, a, b in (("final model", ref, out), ("checkpoint weights", ckpt_a, ckpt_b)):
        if not (b / "model.safetensors").exists() or not _equal(load_file(a / "model.safetensors"),
                                                                 load_file(b / "model.safetensors")):
            diffs.append(name)
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
        if not (ckpt_b / name).exists() or not _equal(torch.load(ckpt_a / name, weights_only=False),
                                                      torch.load(ckpt_b / name, weights_only=False)):
            diffs.append(name)
    state = ckpt_b / "antisd_state.json"
    if not state.exists() or json.loads(state.read_text()) != json.loads((ckpt_a / "antisd_state.json").read_text()):
        diffs.append("antisd_state.json (gate)")
    if not (ckpt_b / "trainer_state.json").exists() or not _equal(_metrics(ckpt_a), _metrics(ckpt_b)):
        diffs.append("per-step metrics")
    return diffs


def compare_eval(ref: Path, out: Path) -> list[str]:
    names = sorted(p.name for p in (ref / "samples").iterdir()) + ["summary.csv"]
    differ = []
    for name in names:
        a, b = (ref / "samples" / name, out / "samples" / name) if name != "summary.csv" else (ref / name, out / name)
        if not b.exists() or a.read_bytes() != b.read_bytes():
            differ.append(name)
    extra = sorted(p.name for p in (out / "samples").iterdir() if p.name not in names) if (out / "samples").exists() else []
    return differ + [f"unexpected {n}" for n in extra]


# ---------------------------------------------------------------------- trials


def plan(points: list[str], n: int, counts: Counter, rng: random.Random, duration: float) -> list[dict[str, Any]]:
    """n trials cycling through `points` (those the census saw), each at a random call of its point; a
    quarter of them kill the resumed run again, at the first call of a random point."""
    usable = [p for p in points if p == "timed" or counts[p] > 0 or counts[FOLLOW_UPS.get(p, p)] > 0]
    trials = []
    for i in range(n):
        point = usable[i % len(usable)]
        first_point = FOLLOW_UPS.get(point, point)
        first = {"point": first_point, "at": rng.randint(1, max(counts[first_point], 1)),
                 "fraction": rng.uniform(0.05, 0.95), "delay": rng.uniform(0.3, 0.9) * duration if point == "timed" else None}
        kills = [first]
        if point in FOLLOW_UPS:
            kills.append({"point": point, "at": 1, "fraction": rng.uniform(0.05, 0.95), "delay": None})
        elif i % 4 == 3:
            again = rng.choice(usable)
            kills.append({"point": again, "at": 1, "fraction": rng.uniform(0.05, 0.95),
                          "delay": rng.uniform(0.2, 0.9) * duration if again == "timed" else None})
        trials.append({"trial": i, "kills": kills})
    return trials


def run_trial(kind: str, trial: dict[str, Any], cli: list[str], ref: Path, work: Path) -> dict[str, Any]:
    out = work / f"{kind}-{trial['trial']:02d}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    args = [*cli, "--output_dir", str(out)]
    resume = ["--resume_from_checkpoint", "true"] if kind == "train" else []
    result: dict[str, Any] = {"trial": trial["trial"], "kills": [], "lost_steps": 0, "resumed": False}
    log = work / f"{kind}-{trial['trial']:02d}.log"
    for attempt, kill in enumerate(trial["kills"]):
        events = work / f"{kind}-{trial['trial']:02d}.events{attempt}.jsonl"
        events.unlink(missing_ok=True)
        ckpt = newest_checkpoint(out) if kind == "train" else 0
        extra = resume if attempt and ckpt else []
        result["resumed"] |= bool(extra) or (kind == "eval" and attempt > 0 and has_samples(out))
        code = run_child(injected(kill["point"], kill["at"], events, args + extra, kill["fraction"]), log,
                         kill_after=kill["delay"])
        where, steps = landed(read_events(events))
        result["kills"].append({**kill, "code": code, "landed": where, "steps_done": steps, "from_checkpoint": ckpt})
        if code == 0:
            break
        if kind == "train":
            result["lost_steps"] += max(0, steps - newest_checkpoint(out))
    if result["kills"][-1]["code"] != 0:
        final = resume if kind == "train" and newest_checkpoint(out) else []
        result["resumed"] |= bool(final) or (kind == "eval" and has_samples(out))
        code = run_child(antisd_command() + args + final, log)
        if code != 0:
            result["diffs"] = [f"final run exited with code {code}"]
            return result
    result["diffs"] = compare_train(ref, out) if kind == "train" else compare_eval(ref, out)
    result["leftovers"] = sorted(p.name for p in out.glob(".tmp-*"))
    return result


def census(kind: str, cli: list[str], work: Path) -> tuple[Path, Counter, float]:
    """The uninterrupted reference (plain CLI) and one injected run without a kill, which counts every
    point's calls and must equal the reference."""
    ref, counted = work / f"{kind}-reference", work / f"{kind}-census"
    for folder in (ref, counted):
        shutil.rmtree(folder, ignore_errors=True)
    start = time.perf_counter()
    if run_child(antisd_command() + cli + ["--output_dir", str(ref)], work / f"{kind}-reference.log") != 0:
        raise SystemExit(f"the uninterrupted {kind} run failed; see {work / f'{kind}-reference.log'}")
    duration = time.perf_counter() - start
    events = work / f"{kind}-census.events.jsonl"
    events.unlink(missing_ok=True)
    start = time.perf_counter()
    run_child(injected("none", 0, events, cli + ["--output_dir", str(counted)]), work / f"{kind}-census.log")
    duration = min(duration, time.perf_counter() - start)  # the less loaded of the two, for the timed kills
    diffs = compare_train(ref, counted) if kind == "train" else compare_eval(ref, counted)
    if diffs:
        raise SystemExit(f"{kind}: a run with the kill points installed but no kill differs from the plain one: {diffs}")
    counts = Counter(e["point"] for e in read_events(events) if e["point"] not in ("EXIT", "KILL"))
    return ref, counts, duration


def table(kind: str, results: list[dict[str, Any]]) -> str:
    rows = defaultdict(list)
    for r in results:
        rows[" then ".join(dict.fromkeys(k["point"] for k in r["kills"]))
             if r["kills"][-1]["point"] in FOLLOW_UPS else r["kills"][0]["point"]].append(r)
    lines = [f"| {kind} kill point | trials | killed | resumed | identical | lost steps (total / max) |",
             "|---|---|---|---|---|---|"]
    for point, rs in [*rows.items(), ("all", results)]:
        killed = sum(any(k["code"] != 0 for k in r["kills"]) for r in rs)
        lost = [r["lost_steps"] for r in rs]
        lines.append(f"| {point} | {len(rs)} | {killed} | {sum(r['resumed'] for r in rs)} | "
                     f"{sum(not r['diffs'] for r in rs)} | "
                     f"{f'{sum(lost)} / {max(lost, default=0)}' if kind == 'train' else '-'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["inject"]:
        return inject_main(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train-trials", type=int, default=32)
    p.add_argument("--eval-trials", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", type=Path, default=Path("runs/fault_injection"))
    p.add_argument("--json", type=Path, default=None, help="write the trials and tables here")
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    commands = setup(args.workdir)
    report: dict[str, Any] = {}
    for kind, n, points in (("train", args.train_trials, TRAIN_POINTS), ("eval", args.eval_trials, EVAL_POINTS)):
        if n <= 0:
            continue
        ref, counts, duration = census(kind, commands[kind], args.workdir)
        print(f"{kind}: uninterrupted run {duration:.1f} s; calls per point: {dict(counts)}", flush=True)
        results = []
        for trial in plan(list(points), n, counts, rng, duration):
            r = run_trial(kind, trial, commands[kind], ref, args.workdir)
            results.append(r)
            kills = "; then ".join(f"{k['point']}@{k['at']} -> {k['landed']}" for k in r["kills"])
            lost = f"lost {r['lost_steps']} step(s); " if kind == "train" else ""
            print(f"{kind} trial {r['trial']:2d}: {kills}; {lost}"
                  f"{'IDENTICAL' if not r['diffs'] else 'DIFFERS: ' + ', '.join(r['diffs'])}", flush=True)
        report[kind] = {"counts": dict(counts), "reference_seconds": duration, "trials": results,
                        "table": table(kind, results)}
        print("\n" + report[kind]["table"] + "\n", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1), encoding="utf-8")
    return int(any(r["diffs"] for rep in report.values() for r in rep["trials"]))


if __name__ == "__main__":
    sys.exit(main())
