"""Step cost of AntiSD against GRPO, side by side in one process (issue 7).

What it does: for each response length L it builds two trainers on the same tiny Qwen3 with
Qwen's vocabulary (151,936; hidden 64, 2 layers, so the output layer dominates, as it does for
a small model on CPU), the same data and the same seed: `AntiSDTrainer(method="grpo")` (TRL's
GRPO exactly with `--logprobs trl`) and `AntiSDTrainer(method="antisd")`. Their real `train()`
loops run in two threads that take turns, one optimizer step at a time (GRPO, AntiSD, floor,
then AntiSD, GRPO, floor, ...), so both see the same machine load; every completion has exactly
L tokens (min_new_tokens = max_completion_length = L). After each AntiSD step the main thread
runs the floor's extra part: one stand-alone no-grad forward over that step's teacher sequences
(one batch, the trainer's own log-prob function, no trainer code around it). The floor is GRPO's
step plus that forward; ratios are medians over steps of per-step (paired) ratios.

Phases are timed by wrapping the trainers' methods on the instances (no library code changes):
`_generate_single_turn` (generation), `_generate_and_score_completions` (generation + rewards +
contexts + teacher + gate), `teacher_pass` and `training_step`; loss + backward =
training_step - generate-and-score, optimizer = step - training_step. Peak memory per phase is
VmHWM after resetting it through /proc/self/clear_refs (CPU RSS; nested phases fold their peaks),
or torch.cuda.max_memory_allocated on a GPU.

How it departs from a real run: the reward is a stand-in (completion length parity), and the
privileged context is the dataset solution (`--context-tokens`, default L tokens: the size of a
successful sibling, the canonical source; 0 gives the short answer-only context), so that the
teacher sequences have a controlled length (the model samples ids beyond the small tokenizer,
which decode to nothing). `--generation synthetic` replaces sampling by uniform token ids:
the training compute alone, without generation.

CPU (the documented command; about 7 minutes on 2 shared cores, 1 torch thread):
    .venv/bin/python benchmarks/step_cost.py
    .venv/bin/python benchmarks/step_cost.py --generation synthetic --steps 4   # no generation
    .venv/bin/python benchmarks/step_cost.py --logprobs trl --steps 2           # TRL's fused LM head
    .venv/bin/python benchmarks/step_cost.py --lengths 2048 --steps 2
GPU:
    python benchmarks/step_cost.py --threads 0 --lengths 1024 2048 --prompts 2 --generations 8
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import transformers  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, TrainerCallback  # noqa: E402

from antisd.trainer.config import AntiSDConfig  # noqa: E402
from antisd.lm.sampling import pad_prompts_and_completions  # noqa: E402
from antisd.lm.tiny import make_tiny_checkpoint  # noqa: E402
from antisd.trainer.core import AntiSDTrainer  # noqa: E402

GIB = 2**30
TRAINERS = ("GRPO", "AntiSD")


# ------------------------------------------------------------------------------------ memory
class PeakMeter:
    """Peak memory over nested phases: CPU RSS (VmHWM, reset via /proc/self/clear_refs) or CUDA
    max_memory_allocated. Before each reset the current peak is folded into every open phase."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.open: dict[str, list[int]] = {}  # phase -> [start, peak]
        self.can_reset = cuda or self._try_reset()

    @staticmethod
    def _status(key: str) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
        raise KeyError(key)

    def _try_reset(self) -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    def current(self) -> int:
        return torch.cuda.memory_allocated() if self.cuda else self._status("VmRSS")

    def _fold(self) -> None:
        peak = torch.cuda.max_memory_allocated() if self.cuda else self._status("VmHWM")
        for v in self.open.values():
            v[1] = max(v[1], peak)

    def begin(self, phase: str) -> None:
        self._fold()
        now = self.current()
        self.open[phase] = [now, now]
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        elif self.can_reset:
            self._try_reset()

    def end(self, phase: str) -> tuple[int, int]:
        """(start, peak) bytes of the phase."""
        self._fold()
        start, peak = self.open.pop(phase)
        return start, peak


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


# ------------------------------------------------------------------------------------ records
@dataclass
class Recorder:
    """Per trainer: a list of per-step dicts of phase -> seconds, and memory phase -> (start, peak)."""

    meter: PeakMeter
    steps: dict[str, list[dict[str, float]]] = field(default_factory=lambda: defaultdict(list))
    current: dict[str, dict[str, float]] = field(default_factory=dict)

    def open_step(self, who: str) -> None:
        self.current[who] = defaultdict(float)
        self.steps[who].append(self.current[who])

    def add(self, who: str, key: str, value: float) -> None:
        self.current[who][key] += value

    def add_mem(self, who: str, key: str, start: int, peak: int) -> None:
        d = self.current[who]
        d[f"{key}_mem_start"] = start if f"{key}_mem_start" not in d else d[f"{key}_mem_start"]
        d[f"{key}_mem_peak"] = max(d.get(f"{key}_mem_peak", 0), peak)


def wrap_timed(tr, who: str, rec: Recorder, method: str, key: str, memory: bool = False, on_call=None) -> None:
    """Replace ``tr.<method>`` (on the instance) with a timed (and memory-tracked) wrapper."""
    orig = getattr(tr, method)

    def wrapper(*args, **kwargs):
        if on_call is not None:
            on_call(*args, **kwargs)
        sync()
        if memory:
            rec.meter.begin(key)
        t0 = time.perf_counter()
        try:
            return orig(*args, **kwargs)
        finally:
            sync()
            rec.add(who, key, time.perf_counter() - t0)
            if memory:
                rec.add_mem(who, key, *rec.meter.end(key))

    setattr(tr, method, wrapper)


def count_forwards(tr, who: str, rec: Recorder) -> None:
    """Count log-prob passes per step, the student passes, and the teacher batches' real and padded
    positions (``teacher_pass`` marks the calls it makes)."""
    in_teacher = [False]
    orig_lp, orig_pass, orig_student = tr._get_per_token_logps_and_entropies, tr.teacher_pass, tr.student_pass

    def logps(model, input_ids, attention_mask, *args, **kwargs):
        rec.add(who, "logprob_passes", 1)
        if in_teacher[0]:
            rec.add(who, "teacher_positions", attention_mask.numel())
            rec.add(who, "teacher_real", float(attention_mask.sum()))
        return orig_lp(model, input_ids, attention_mask, *args, **kwargs)

    def teacher_pass(*args, **kwargs):
        in_teacher[0] = True
        try:
            return orig_pass(*args, **kwargs)
        finally:
            in_teacher[0] = False

    def student_pass(*args, **kwargs):
        rec.add(who, "student_passes", 1)
        return orig_student(*args, **kwargs)

    tr._get_per_token_logps_and_entropies, tr.teacher_pass, tr.student_pass = logps, teacher_pass, student_pass


# ------------------------------------------------------------------------------------ generation
def synthetic_generation(tokenizer, length: int, seed: int):
    """A stand-in for ``_generate_single_turn``: ``length`` ids per prompt, uniform over the
    tokenizer's non-special tokens; the k-th call of every trainer returns the same ids."""
    calls = [0]
    low, high = len(tokenizer.all_special_ids), len(tokenizer)

    def generate(prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        g = torch.Generator().manual_seed(seed * 100_003 + calls[0])
        calls[0] += 1
        ids = torch.randint(low, high, (len(prompt_ids), length), generator=g)
        return ids.tolist(), None

    return generate


def synthetic_text(tokenizer, n_tokens: int, seed: int) -> str:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(len(tokenizer.all_special_ids), len(tokenizer), (n_tokens,), generator=g)
    return tokenizer.decode(ids.tolist())


def parity_reward(prompts, completions, **kwargs) -> list[float]:
    """A stand-in reward that varies within a group: 1 when the completion has an even length."""
    return [float(len(c) % 2 == 0) for c in completions]


# ------------------------------------------------------------------------------------ turn-taking
class Baton(TrainerCallback):
    """Lets a trainer's ``train()`` thread run exactly one optimizer step per turn, and times it."""

    def __init__(self, who: str, rec: Recorder) -> None:
        self.who, self.rec = who, rec
        self.parked = threading.Event()  # the thread waits for a turn (or has finished)
        self.go = threading.Event()
        self.finished = False
        self.error: BaseException | None = None
        self.t0 = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self.parked.set()
        self.go.wait()
        self.go.clear()
        self.rec.open_step(self.who)
        sync()
        self.rec.meter.begin("step")
        self.t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        sync()
        self.rec.add(self.who, "step", time.perf_counter() - self.t0)
        self.rec.add_mem(self.who, "step", *self.rec.meter.end("step"))

    def run(self, trainer) -> None:
        try:
            trainer.train()
        except BaseException as e:  # noqa: BLE001 - re-raised in the main thread
            self.error = e
        finally:
            self.finished = True
            self.parked.set()

    def turn(self) -> None:
        """Main thread: give the trainer one step and wait until it is parked again."""
        self.parked.wait()
        if self.error is not None or self.finished:
            raise RuntimeError(f"{self.who} trainer stopped early") from self.error
        self.parked.clear()
        self.go.set()
        self.parked.wait()
        if self.error is not None:
            raise RuntimeError(f"{self.who} trainer failed") from self.error


# ------------------------------------------------------------------------------------ floor
@dataclass
class TeacherBatches:
    """The teacher sequences of one AntiSD step (teacher prompt + the same completion ids), in
    left-padded batches of the trainer's teacher batch size, sorted by length as the trainer does."""

    batches: list[tuple[torch.Tensor, torch.Tensor, int]]  # (ids (b, P + T), mask (b, P + T), T)
    prompts: list[tuple[torch.Tensor, torch.Tensor]]  # (ids (b, P), mask (b, P))
    real_tokens: int
    completion_tokens: int


def teacher_batches(tr, captured) -> TeacherBatches:
    """Rebuild the step's teacher sequences (tokenising is not part of the floor)."""
    contexts, completion_ids, completion_mask, scored = captured
    device, pad = completion_ids.device, tr._tokenizer.pad_token_id
    rows = [i for i, c in enumerate(contexts) if c.prompt is not None and (scored is None or bool(scored[i]))]
    prompt_ids, _, _ = tr._tokenize_prompts([contexts[i].prompt for i in rows])
    comps = [completion_ids[i][completion_mask[i].bool()].tolist() for i in rows]
    order = sorted(range(len(rows)), key=lambda k: len(prompt_ids[k]) + len(comps[k]))
    bs = tr.args.teacher_batch_size or tr.args.per_device_train_batch_size
    out = TeacherBatches([], [], 0, 0)
    for start in range(0, len(order), bs):
        chunk = order[start:start + bs]
        ids, mask, width = pad_prompts_and_completions([list(prompt_ids[k]) for k in chunk],
                                                       [comps[k] for k in chunk], pad, device)
        p_width = ids.shape[1] - width  # left-padded prompts, then right-padded completions
        out.batches.append((ids, mask, width))
        out.prompts.append((ids[:, :p_width], mask[:, :p_width]))
        out.real_tokens += int(mask.sum())
        out.completion_tokens += sum(len(comps[k]) for k in chunk)
    return out


@torch.no_grad()
def floor_forward(tr, tb: TeacherBatches, rec: Recorder) -> None:
    """One stand-alone no-grad forward over the teacher sequences (teacher log-probs + entropies), with
    the trainer's own log-prob function and batching, outside the trainer (no tokenising, contexts or gate)."""
    sync()
    rec.meter.begin("floor")
    t0 = time.perf_counter()
    for ids, mask, width in tb.batches:
        type(tr)._get_per_token_logps_and_entropies(tr, tr.model, ids, mask, width, compute_entropy=True)
    sync()
    rec.add("floor", "floor", time.perf_counter() - t0)
    rec.add_mem("floor", "floor", *rec.meter.end("floor"))


@torch.no_grad()
def prefix_forward(tr, tb: TeacherBatches, rec: Recorder) -> None:
    """The same function over the teacher prompts alone: an upper bound on what computing a shared
    privileged prefix once (past key values) could save."""
    sync()
    t0 = time.perf_counter()
    for ids, mask in tb.prompts:
        type(tr)._get_per_token_logps_and_entropies(tr, tr.model, ids, mask, 1, compute_entropy=True)
    sync()
    rec.add("floor", "prefix", time.perf_counter() - t0)


# ------------------------------------------------------------------------------------ one length
def build_trainers(args, length: int, workdir: Path, rec: Recorder) -> dict[str, AntiSDTrainer]:
    tok = AutoTokenizer.from_pretrained(args.model_dir)
    n_rows = args.prompts * (args.warmup + args.steps)
    rows = [{
        "prompt": synthetic_text(tok, args.prompt_tokens, seed=1000 + i),
        "answer": str(i),
        "solution": synthetic_text(tok, args.context_tokens or 1, seed=2000 + i),
    } for i in range(n_rows)]
    dataset = Dataset.from_list(rows)
    common = dict(
        bf16=False, report_to=[], max_steps=args.warmup + args.steps, seed=args.seed,
        per_device_train_batch_size=args.prompts * args.generations, num_generations=args.generations,
        max_completion_length=length, logging_steps=1, gradient_checkpointing=False, save_strategy="no",
        learning_rate=1e-5, temperature=1.0, top_k=0, top_p=1.0, beta=0.0, dataloader_num_workers=0,
        disable_tqdm=True, dataloader_pin_memory=False, fast_logprobs=args.logprobs == "antisd",
        generation_kwargs={"min_new_tokens": length} if args.generation == "model" else None,
    )
    sources = ["dataset"] if args.context_tokens else ["answer"]
    methods = {"GRPO": dict(method="grpo"),
               "AntiSD": dict(method="antisd", solution_sources=sources,
                              teacher_batch_size=args.teacher_batch_size or None)}
    trainers = {}
    for who, kw in methods.items():
        cfg = AntiSDConfig(output_dir=str(workdir / who), **common, **kw)
        model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32)
        tr = AntiSDTrainer(model=model, reward_funcs=[parity_reward], args=cfg, train_dataset=dataset,
                           processing_class=tok)
        tr.remove_callback(PrinterCallback)  # the per-step log dicts
        if args.generation == "synthetic":
            tr._generate_single_turn = synthetic_generation(tok, length, args.seed)
        wrap_timed(tr, who, rec, "_generate_single_turn", "generate")
        wrap_timed(tr, who, rec, "_generate_and_score_completions", "gen_score")
        wrap_timed(tr, who, rec, "training_step", "train_step")
        count_forwards(tr, who, rec)
        if who == "AntiSD":
            wrap_timed(tr, who, rec, "teacher_pass", "teacher", memory=True,
                       on_call=lambda c, i, m, s=None, _tr=tr: setattr(_tr, "_bench_captured", (c, i, m, s)))
        trainers[who] = tr
    return trainers


def build_sdpo(args, length: int, workdir: Path, rec: Recorder, dataset, tok):
    """TRL's SDPOTrainer (trl.experimental.sdpo, its defaults: sampled-token reverse KL against an EMA teacher
    copy re-prompted with a successful rollout of the group) on the same model, data, lengths and reward. Its
    teacher context is a successful sibling of L tokens, the size of AntiSD's dataset solution here."""
    from trl.experimental.sdpo import SDPOConfig, SDPOTrainer

    cfg = SDPOConfig(
        output_dir=str(workdir / "SDPO"), bf16=False, report_to=[], max_steps=args.warmup + args.steps,
        seed=args.seed, per_device_train_batch_size=args.prompts * args.generations, num_generations=args.generations,
        max_completion_length=length, logging_steps=1, gradient_checkpointing=False, save_strategy="no",
        learning_rate=1e-5, temperature=1.0, top_k=0, top_p=1.0, beta=0.0, dataloader_num_workers=0,
        disable_tqdm=True, dataloader_pin_memory=False, success_reward_threshold=1.0,
        generation_kwargs={"min_new_tokens": length} if args.generation == "model" else None,
    )
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32)
    tr = SDPOTrainer(model=model, reward_funcs=[parity_reward], args=cfg, train_dataset=dataset, processing_class=tok)
    tr.remove_callback(PrinterCallback)
    if args.generation == "synthetic":
        standin = synthetic_generation(tok, length, args.seed)
        tr._generate = lambda prompt_ids: (prompt_ids, standin(prompt_ids, None, None, None)[0])
    wrap_timed(tr, "SDPO", rec, "_generate", "generate")
    return tr


def state_bytes(trainer) -> int:
    """Bytes of what a trainer keeps between steps: its model's parameters and gradients, the optimizer's
    state and, for SDPO, the teacher copy (each storage counted once)."""
    seen: dict[int, int] = {}

    def add(t):
        if isinstance(t, torch.Tensor):
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()

    for p in trainer.model.parameters():
        add(p)
        add(p.grad)
    teacher = getattr(trainer, "teacher_model", None)
    if teacher is not None and teacher is not trainer.model:
        for p in teacher.parameters():
            add(p)
    if trainer.optimizer is not None:
        for st in trainer.optimizer.state.values():
            for v in st.values():
                add(v)
    return sum(seen.values())


def run_length(args, length: int, workdir: Path, meter: PeakMeter) -> dict:
    rec = Recorder(meter)
    if args.model is None:
        make_tiny_checkpoint(workdir / "model", vocab_size=args.vocab_size, hidden_size=args.hidden_size,
                             num_layers=args.num_layers, seed=args.seed)
        args.model_dir = str(workdir / "model")
    trainers = build_trainers(args, length, workdir, rec)
    names = TRAINERS + (("SDPO",) if args.with_sdpo else ())
    if args.with_sdpo:
        grpo = trainers["GRPO"]
        trainers["SDPO"] = build_sdpo(args, length, workdir, rec, grpo.train_dataset, grpo.processing_class)
    batons = {who: Baton(who, rec) for who in names}
    threads = {}
    for who in names:  # one at a time: set-up runs until the first step, then parks
        trainers[who].add_callback(batons[who])
        threads[who] = threading.Thread(target=batons[who].run, args=(trainers[who],), daemon=True)
        threads[who].start()
        batons[who].parked.wait()
    load_before = os.getloadavg()
    tokens = 0
    for step in range(args.warmup + args.steps):
        order = names if step % 2 == 0 else names[::-1]
        for who in order:
            batons[who].turn()
            print(f"  L={length} step {step + 1}/{args.warmup + args.steps} {who}: "
                  f"{rec.steps[who][-1]['step']:.1f} s", flush=True)
        rec.open_step("floor")
        tb = teacher_batches(trainers["AntiSD"], trainers["AntiSD"]._bench_captured)
        floor_forward(trainers["AntiSD"], tb, rec)
        prefix_forward(trainers["AntiSD"], tb, rec)
        rec.current["floor"]["teacher_tokens"] = tb.real_tokens
        tokens = tb.completion_tokens
    state = {who: state_bytes(tr) for who, tr in trainers.items()}  # after the last step: optimizer state exists
    for who in names:
        batons[who].parked.wait()
        batons[who].go.set()  # release a thread parked past max_steps, if any
        threads[who].join(timeout=60)
    return {"length": length, "steps": {k: v[args.warmup:] for k, v in rec.steps.items()},
            "load": (load_before, os.getloadavg()), "tokens": tokens, "state": state}


# ------------------------------------------------------------------------------------ report
def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def col(steps: list[dict], key: str) -> list[float]:
    return [s.get(key, 0.0) for s in steps]


def derived(steps: list[dict]) -> dict[str, list[float]]:
    """Per-step phase times; loss + backward = training_step - generate-and-score."""
    out = {k: col(steps, k) for k in ("step", "generate", "teacher", "train_step", "gen_score")}
    out["loss_backward"] = [t - g for t, g in zip(out["train_step"], out["gen_score"])]
    out["optimizer"] = [s - t for s, t in zip(out["step"], out["train_step"])]
    out["other"] = [g - gen - te for g, gen, te in zip(out["gen_score"], out["generate"], out["teacher"])]
    out["no_gen"] = [s - g for s, g in zip(out["step"], out["generate"])]
    return out


def fmt(values: list[float]) -> str:
    if len(values) <= 1:
        return f"{values[0]:.2f}" if values else "-"
    return f"{med(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


def paired(num: list[float], den: list[float]) -> float:
    """Median over steps of num_k / den_k (step k of both trainers ran back to back)."""
    return med([n / d for n, d in zip(num, den)])


def summarise(res: dict, vocab: int) -> dict:
    raw_g, raw_a, fl = res["steps"]["GRPO"], res["steps"]["AntiSD"], res["steps"]["floor"]
    g, a, floor_fwd = derived(raw_g), derived(raw_a), col(fl, "floor")
    floor_steps = [x + y for x, y in zip(g["step"], floor_fwd)]  # (B,) per step: GRPO + teacher forward
    extra = lambda steps, key: [p - s0 for p, s0 in zip(col(steps, f"{key}_mem_peak"), col(steps, f"{key}_mem_start"))]
    return {
        "L": res["length"], "grpo": g, "antisd": a, "floor_fwd": floor_fwd, "prefix": col(fl, "prefix"),
        "load": res["load"], "vocab": vocab, "completion_tokens": res["tokens"],
        "teacher_tokens": med(col(fl, "teacher_tokens")),
        "grpo_step": med(g["step"]), "antisd_step": med(a["step"]), "floor": med(floor_steps),
        "floor_fwd_med": med(floor_fwd),
        "r_plain": paired(a["step"], g["step"]), "r_floor": paired(a["step"], floor_steps),
        "r_floor_grpo": paired(floor_steps, g["step"]),
        "r_plain_nogen": paired(a["no_gen"], g["no_gen"]),
        "r_floor_nogen": paired(a["no_gen"], [x + y for x, y in zip(g["no_gen"], floor_fwd)]),
        "grpo_peak": max(col(raw_g, "step_mem_peak")), "antisd_peak": max(col(raw_a, "step_mem_peak")),
        "teacher_peak": max(col(raw_a, "teacher_mem_peak")), "teacher_extra": max(extra(raw_a, "teacher")),
        "grpo_extra": max(extra(raw_g, "step")),
        "padding": 1 - sum(col(raw_a, "teacher_real")) / max(1.0, sum(col(raw_a, "teacher_positions"))),
        "passes": (med(col(raw_g, "logprob_passes")), med(col(raw_a, "logprob_passes"))),
        "student_passes": sum(col(raw_a, "student_passes")),
        "state": res["state"], "antisd_extra": max(extra(raw_a, "step")),
        "sdpo": sdpo_summary(res["steps"]["SDPO"], raw_a, res["state"]) if "SDPO" in res["steps"] else None,
    }


def sdpo_summary(raw_s: list[dict], raw_a: list[dict], state: dict[str, int]) -> dict:
    """SDPO's step and generation times, its peak in the step (above the step's start), and the memory each trainer
    needs: what it keeps between steps (``state_bytes``) + its largest in-step peak above the step's start."""
    extra = lambda steps: max(p - s0 for p, s0 in zip(col(steps, "step_mem_peak"), col(steps, "step_mem_start")))
    step, gen = col(raw_s, "step"), col(raw_s, "generate")
    a_step = col(raw_a, "step")
    return {"step": step, "generate": gen, "no_gen": [x - y for x, y in zip(step, gen)],
            "peak": max(col(raw_s, "step_mem_peak")), "extra": extra(raw_s),
            "need": state["SDPO"] + extra(raw_s), "antisd_need": state["AntiSD"] + extra(raw_a),
            "r_step": paired(a_step, step)}


def print_table(s: dict, args) -> None:
    la, lb = s["load"]
    n = args.prompts * args.generations
    print(f"\n== L={s['L']}: {args.prompts} prompt(s) x {args.generations} completions of exactly {s['L']} tokens; "
          f"teacher sequences {s['teacher_tokens'] / n:.0f} tokens on average; load average {la[0]:.1f} -> {lb[0]:.1f}")
    print(f"| seconds, median [min-max] of {args.steps} steps | GRPO | AntiSD |")
    print("|---|---|---|")
    rows = [("step", "step"), ("  generation", "generate"), ("  teacher pass", "teacher"),
            ("  rewards, contexts, gate", "other"), ("  loss + backward", "loss_backward"),
            ("  optimizer", "optimizer"), ("step without generation", "no_gen")]
    for label, key in rows:
        print(f"| {label} | {fmt(s['grpo'][key]) if key != 'teacher' else '-'} | {fmt(s['antisd'][key])} |")
    print(f"| stand-alone no-grad teacher forward (floor = GRPO step + this) | - | {fmt(s['floor_fwd'])} |")
    print(f"| log-prob calls per step: loss + teacher batches (student passes) | {s['passes'][0]:.0f} | "
          f"{s['passes'][1]:.0f} ({s['student_passes']:.0f}) |")
    print(f"| peak memory in the step (above its start) | {s['grpo_peak'] / GIB:.2f} GiB "
          f"(+{s['grpo_extra'] / 2**20:.0f} MiB) | {s['antisd_peak'] / GIB:.2f} GiB |")
    print(f"| peak memory in the teacher pass (above its start) | - | {s['teacher_peak'] / GIB:.2f} GiB "
          f"(+{s['teacher_extra'] / 2**20:.0f} MiB) |")
    print(f"paired ratios (median over steps): AntiSD/GRPO {s['r_plain']:.3f}, floor/GRPO {s['r_floor_grpo']:.3f}, "
          f"AntiSD/floor {s['r_floor']:.3f}; without generation: AntiSD/GRPO {s['r_plain_nogen']:.3f}, "
          f"AntiSD/floor {s['r_floor_nogen']:.3f}")
    if s["sdpo"] is not None:
        d = s["sdpo"]
        print(f"| SDPO (trl.experimental.sdpo) | step {fmt(d['step'])} s | generation {fmt(d['generate'])} s | "
              f"without generation {fmt(d['no_gen'])} s | peak in the step {d['peak'] / GIB:.2f} GiB "
              f"(+{d['extra'] / 2**20:.0f} MiB) |")
        print(f"memory each trainer needs (kept between steps + its in-step peak above the step's start): "
              f"GRPO {(s['state']['GRPO'] + s['grpo_extra']) / GIB:.2f} GiB, AntiSD {d['antisd_need'] / GIB:.2f} GiB, "
              f"SDPO {d['need'] / GIB:.2f} GiB (kept: GRPO {s['state']['GRPO'] / 2**20:.0f} MiB, AntiSD "
              f"{s['state']['AntiSD'] / 2**20:.0f} MiB, SDPO {s['state']['SDPO'] / 2**20:.0f} MiB with its teacher copy)")
    saving = (1 - 1 / args.generations) * med(s["prefix"])
    print(f"teacher padding: {100 * s['padding']:.1f}% of teacher positions. Shared prefix: the teacher prompts "
          f"alone cost {med(s['prefix']):.2f} s of the {s['floor_fwd_med']:.2f} s forward, so computing each "
          f"group's prefix once could save at most {saving:.2f} s ({100 * saving / s['antisd_step']:.1f}% of "
          "the AntiSD step)")


def verdicts(summaries: list[dict], ratio_length: int) -> list[str]:
    lines = []
    for s in summaries:
        r = s["r_floor"]
        lines.append(f"{'PASS' if r <= 1.05 else 'FAIL'} L={s['L']}: AntiSD step <= 1.05 x floor: {r:.3f} (AntiSD "
                     f"{s['antisd_step']:.2f} s, floor {s['floor']:.2f} s = GRPO {s['grpo_step']:.2f} + teacher "
                     f"forward {s['floor_fwd_med']:.2f})")
    for s in summaries:
        r = s["r_plain"]
        if s["L"] != ratio_length:
            lines.append(f"INFO L={s['L']}: AntiSD/GRPO {r:.3f}")
            continue
        why = "" if r <= 1.10 else (f"; the floor itself is {s['r_floor_grpo']:.3f} x GRPO: one no-grad forward "
                                    f"over the teacher sequences costs {s['floor_fwd_med'] / s['grpo_step']:.0%} "
                                    "of a GRPO step here")
        lines.append(f"{'PASS' if r <= 1.10 else 'FAIL'} L={s['L']}: AntiSD/GRPO {r:.3f} <= 1.10{why}")
    for s in summaries:
        r = s["teacher_peak"] / s["grpo_peak"]
        lines.append(f"{'PASS' if r <= 1.10 else 'FAIL'} L={s['L']}: teacher-pass peak <= 1.10 x GRPO step peak: "
                     f"{r:.3f} ({s['teacher_peak'] / GIB:.2f} GiB against {s['grpo_peak'] / GIB:.2f} GiB)")
    for s in summaries:
        if s["sdpo"] is None:
            continue
        d = s["sdpo"]
        r_mem = d["antisd_need"] / d["need"]
        lines.append(f"{'PASS' if r_mem <= 1 / 3 else 'FAIL'} L={s['L']}: AntiSD memory <= 1/3 of SDPO's: {r_mem:.3f} "
                     f"({d['antisd_need'] / GIB:.2f} GiB against {d['need'] / GIB:.2f} GiB)")
        lines.append(f"{'PASS' if d['r_step'] <= 1.0 else 'FAIL'} L={s['L']}: AntiSD step <= SDPO step: "
                     f"{d['r_step']:.3f} (AntiSD {s['antisd_step']:.2f} s, SDPO {med(d['step']):.2f} s)")
    if len(summaries) < 2:
        return [*lines, "SKIP teacher memory linear in tokens: needs two lengths"]
    lo, hi = min(summaries, key=lambda s: s["L"]), max(summaries, key=lambda s: s["L"])
    slope = (hi["teacher_extra"] - lo["teacher_extra"]) / max(1, hi["completion_tokens"] - lo["completion_tokens"])
    row = 4 * hi["vocab"]  # bytes of one float32 logits row
    naive = hi["completion_tokens"] * row
    lines.append(
        f"{'PASS' if slope < 0.1 * row else 'FAIL'} teacher memory linear in tokens, not tokens x vocab: the teacher "
        f"pass needs +{lo['teacher_extra'] / 2**20:.0f} MiB at L={lo['L']} and +{hi['teacher_extra'] / 2**20:.0f} MiB "
        f"at L={hi['L']}: {slope / 1024:.1f} KiB per completion token (limit: 10% of a float32 vocabulary row, "
        f"{row / 1024:.0f} KiB); (tokens x vocab) float32 logits would be {naive / GIB:.1f} GiB at L={hi['L']}")
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--lengths", type=int, nargs="+", default=[256, 1024], help="response lengths L")
    p.add_argument("--ratio-length", type=int, default=1024, help="L at which AntiSD/GRPO <= 1.10 is checked")
    p.add_argument("--prompts", type=int, default=1, help="prompts per step")
    p.add_argument("--generations", type=int, default=4, help="completions per prompt (group size)")
    p.add_argument("--warmup", type=int, default=0, help="unmeasured steps per trainer")
    p.add_argument("--steps", type=int, default=3, help="measured steps per trainer (median and [min-max])")
    p.add_argument("--logprobs", choices=["antisd", "trl"], default="antisd",
                   help="antisd: fast_logprobs=True (both trainers); trl: TRL's fused LM head (GRPO = TRL's GRPO)")
    p.add_argument("--teacher-batch-size", type=int, default=1,
                   help="AntiSDConfig.teacher_batch_size (default 1: no padding, hence no (B x S x S) attention\n"
                        "mask; 0: the trainer's default, per_device_train_batch_size)")
    p.add_argument("--generation", choices=["model", "synthetic"], default="model",
                   help="model: sample from the model (min_new_tokens=L); synthetic: uniform token ids, no\n"
                        "sampling cost (the training compute alone, and faster)")
    p.add_argument("--context-tokens", type=int, default=None,
                   help="privileged solution length in tokens (default: L); 0: answer-only context")
    p.add_argument("--prompt-tokens", type=int, default=64, help="student prompt length in tokens")
    p.add_argument("--model", default=None,
                   help="a real model instead of the tiny Qwen3 (any name antisd takes, e.g. smollm2-135m after\n"
                        "`antisd model fetch smollm2-135m`, or a folder); --vocab-size/--hidden-size/--num-layers\n"
                        "are then ignored")
    p.add_argument("--vocab-size", type=int, default=151_936)
    p.add_argument("--hidden-size", type=int, default=64)
    p.add_argument("--num-layers", type=int, default=2)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: on a shared 2-core machine two threads make every small op\n"
                        "wait for a descheduled partner; 0 keeps torch's default)")
    p.add_argument("--with-sdpo", action="store_true",
                   help="also run TRL's SDPOTrainer (trl.experimental.sdpo, its defaults) in the same turn-taking:\n"
                        "step time and memory against AntiSD (goal: AntiSD memory <= 1/3 of SDPO's, step time <=)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model is not None:
        from antisd.lm.names import resolve_model

        args.model_dir = resolve_model(args.model, what="--model").path
        config = transformers.AutoConfig.from_pretrained(args.model_dir)
        args.vocab_size, args.hidden_size, args.num_layers = (config.vocab_size, config.hidden_size,
                                                              config.num_hidden_layers)
    cuda = torch.cuda.is_available()
    meter = PeakMeter(cuda)
    device = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} torch threads"
    print(f"step_cost: {device}; torch {torch.__version__}; model {args.model or 'tiny Qwen3'}: "
          f"vocab {args.vocab_size}, hidden {args.hidden_size}, "
          f"{args.num_layers} layers; logprobs={args.logprobs}, generation={args.generation}; "
          f"{args.warmup} warm-up + {args.steps} measured steps per trainer; command: {' '.join(sys.argv)}")
    if not meter.can_reset:
        print("warning: /proc/self/clear_refs is not writable: peaks are process-lifetime maxima")
    summaries = []
    t_start = time.perf_counter()
    for length in args.lengths:
        per_length = argparse.Namespace(**vars(args))
        per_length.context_tokens = length if args.context_tokens is None else args.context_tokens
        with tempfile.TemporaryDirectory(prefix=f"step_cost_L{length}_") as tmp:
            res = run_length(per_length, length, Path(tmp), meter)
        summaries.append(summarise(res, args.vocab_size))
        print_table(summaries[-1], args)
    print("\n".join(["", *verdicts(summaries, args.ratio_length)]))
    print(f"total wall time {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
