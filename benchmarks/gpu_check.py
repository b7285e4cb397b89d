"""One script for the day a GPU is there: PASS/FAIL lines for the parts of antisd that only a GPU can prove (issue 16).

On a machine with one CUDA GPU and this repository (no internet: the tiny and toy models are built
locally or ship with antisd), in under 10 minutes:

    python benchmarks/gpu_check.py                 # on the GPU machine
    python benchmarks/gpu_check.py --dry-run       # anywhere: the same checks at toy sizes on the CPU (CI runs it)

Checks, one line each (PASS, FAIL, or SKIP with the reason):
1. cuda-train: 3 AntiSD steps of the tiny model on the GPU in bf16 (the default float32 output layer):
   finite losses, the weights move, the token term is logged.
2. triton-head: TRL's fused LM head (Triton on a GPU) against ``antisd.lm.logprobs`` on the same batch
   (Qwen's vocabulary, float32 weights): log-probs and entropies equal within 2e-3, and the time of
   each (forward + backward), the faster named.
3. bf16-noise: ``benchmarks/precision.py`` on the GPU (toy world): the error of u in bf16 against
   float32, with TRL's head in bf16 and with the default float32 head; PASS when the default is
   below the 2% line. GPU kernels pick algorithms by shape, so the largest |u| with the student's own
   prompt (true u = 0) is also reported (on the CPU: 1e-4 to 5e-2 in bf16, docs/benchmarks.md).
4. step-cost: ``benchmarks/step_cost.py --with-sdpo`` at L = 1024 (2 prompts x 8 completions, 2 steps):
   its PASS/FAIL lines (AntiSD against its floor, against GRPO, memory against SDPO).
5. vllm-colocate: 2 AntiSD steps with ``use_vllm=True, vllm_mode="colocate"`` when vLLM is installed
   (SKIP otherwise): finite losses, importance ratios near 1 after the first weight sync.

The dry run uses the CPU, toy sizes (vocabulary 2,000, 16-token completions) and skips what needs CUDA
(the Triton kernel, vLLM); its lines say DRY. The exit code is 1 when any line is FAIL.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # precision.py and step_cost.py are siblings


def line(status: str, name: str, text: str) -> str:
    out = f"{status} {name}: {text}"
    print(out, flush=True)
    return out


def tiny(path: Path, vocab: int, hidden: int = 64) -> Path:
    from antisd.lm.tiny import make_tiny_checkpoint

    return make_tiny_checkpoint(path, vocab_size=vocab, hidden_size=hidden, seed=0)


def trainer(model_path: Path, out: Path, device: str, **kw):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback

    from antisd.trainer.config import AntiSDConfig
    from antisd.trainer.core import AntiSDTrainer

    rows = [{"prompt": f"What is {i % 5} + {i // 5}?", "answer": str(i % 5 + i // 5),
             "solution": f"{i % 5} + {i // 5} = {i % 5 + i // 5}"} for i in range(16)]

    def parity(prompts, completions, **_):
        return [float(len(c) % 2 == 0) for c in completions]

    args = dict(output_dir=str(out), report_to=[], max_steps=3, seed=0, per_device_train_batch_size=8,
                num_generations=4, max_completion_length=16, logging_steps=1, save_strategy="no", learning_rate=1e-3,
                beta=0.0, disable_tqdm=True, dataloader_num_workers=0, gate_warmup_steps=1, use_cpu=device == "cpu",
                bf16=device == "cuda")
    args.update(kw)
    tr = AntiSDTrainer(model=AutoModelForCausalLM.from_pretrained(model_path), reward_funcs=[parity],
                       args=AntiSDConfig(**args), train_dataset=Dataset.from_list(rows),
                       processing_class=AutoTokenizer.from_pretrained(model_path))
    tr.remove_callback(PrinterCallback)
    return tr


# ------------------------------------------------------------------------------------ checks
def check_train(work: Path, device: str, dry: bool) -> str:
    path = tiny(work / "train_model", vocab=2000)
    tr = trainer(path, work / "train", device)
    before = [p.detach().clone() for p in tr.model.parameters()]
    tr.train()
    logs = [h for h in tr.state.log_history if "loss" in h]
    moved = max(float((p.detach() - b).abs().max()) for p, b in zip(tr.model.parameters(), before))
    ok = (len(logs) == 3 and all(math.isfinite(h["loss"]) for h in logs) and moved > 0
          and all(math.isfinite(h.get("pmi/mean", float("nan"))) for h in logs))
    where = f"{tr.accelerator.device}, bf16={tr.args.bf16}, cast_lm_head_to_fp32={tr.args.cast_lm_head_to_fp32}"
    return line("PASS" if ok else "FAIL", "cuda-train" + (" (DRY, CPU)" if dry else ""),
                f"3 AntiSD steps on {where}: losses {[round(h['loss'], 4) for h in logs]}, largest weight change "
                f"{moved:.2e}, pmi/mean {[round(h.get('pmi/mean', float('nan')), 4) for h in logs]}")


def _time(fn, repeats: int) -> float:
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - t0) / repeats


def check_head(work: Path, device: str, dry: bool) -> str:
    vocab, hidden, tokens = (2000, 64, 16) if dry else (151_936, 1024, 1024)
    path = tiny(work / "head_model", vocab=vocab, hidden=hidden)
    tr = trainer(path, work / "head", device, bf16=False, fast_logprobs="false")
    model = tr.model.to(tr.accelerator.device)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (4, 64 + tokens), generator=g).to(model.device)
    mask = torch.ones_like(ids)
    results = {}
    for name, fast in (("TRL", False), ("antisd.lm.logprobs", True)):
        tr.fast_logprobs = fast
        lp, ent, _ = tr._get_per_token_logps_and_entropies(model, ids, mask, tokens, compute_entropy=True)

        def step():
            model.zero_grad(set_to_none=True)
            out, e, _ = tr._get_per_token_logps_and_entropies(model, ids, mask, tokens, compute_entropy=True)
            (out.sum() + e.sum()).backward()

        results[name] = (lp.detach().float(), ent.detach().float(), _time(step, 2 if dry else 5))
    (lp_t, en_t, t_t), (lp_a, en_a, t_a) = results["TRL"], results["antisd.lm.logprobs"]
    d_lp, d_en = float((lp_t - lp_a).abs().max()), float((en_t - en_a).abs().max())
    ok = d_lp < 2e-3 and d_en < 2e-3
    kernel = "Triton" if torch.cuda.is_available() else "no Triton (CPU)"
    return line("PASS" if ok else "FAIL", "triton-head" + (" (DRY, CPU)" if dry else ""),
                f"TRL's fused head ({kernel}) vs antisd.lm.logprobs, 4 x {tokens} tokens, vocabulary {vocab}: max |diff| "
                f"log-probs {d_lp:.1e}, entropies {d_en:.1e}; forward+backward {t_t * 1e3:.1f} ms (TRL) vs "
                f"{t_a * 1e3:.1f} ms (antisd.lm.logprobs): {'antisd.lm.logprobs' if t_a < t_t else 'TRL'} is faster")


def check_noise(work: Path, device: str, dry: bool) -> str:
    import precision

    args = precision.parse_args(["--steps", "1", "--problems", "1" if dry else "4", "--threads", "0"])
    use_cpu = device == "cpu"
    figures = {}
    for name in ("amp-trl", "amp-trl-fp32"):
        setting = precision.SETTINGS[name]
        got = _quiet(precision.run, setting, args, False, use_cpu=use_cpu)
        own = _quiet(precision.run, setting, args, True, use_cpu=use_cpu)
        noise = float((got["delta"] - got["delta_exact"]).abs().mean())
        figures[name] = (noise / float(got["delta_exact"].abs().mean()), float(own["u"].abs().max()))
    ratio_default = figures["amp-trl-fp32"][0]
    ok = ratio_default <= precision.NOISE_FRACTION
    text = "; ".join(f"{n}: noise {r:.2%} of the signal, own-prompt max |u| {m:.1e}" for n, (r, m) in figures.items())
    return line("PASS" if ok else "FAIL", "bf16-noise" + (" (DRY, CPU)" if dry else ""),
                f"{text} (line {precision.NOISE_FRACTION:.0%}, for the default float32 head)")


def check_step_cost(work: Path, device: str, dry: bool) -> list[str]:
    import step_cost

    argv = (["--lengths", "16", "--steps", "1", "--vocab-size", "2000", "--with-sdpo", "--ratio-length", "16"] if dry
            else ["--threads", "0", "--lengths", "1024", "--prompts", "2", "--generations", "8", "--steps", "2",
                  "--with-sdpo", "--ratio-length", "1024"])
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        step_cost.main(argv)
    found = [x for x in buf.getvalue().splitlines() if x.startswith(("PASS", "FAIL", "INFO"))]
    tag = " (DRY, CPU: figures not meaningful)" if dry else ""
    out = []
    for x in found:
        status, rest = x.split(" ", 1)
        status = "INFO" if dry and status == "FAIL" else status  # toy sizes on a CPU prove only that it runs
        out.append(line(status, "step-cost" + tag, rest))
    if not found:
        out.append(line("FAIL", "step-cost" + tag, "step_cost.py printed no verdict"))
    return out


def check_vllm(work: Path, device: str, dry: bool) -> str:
    from trl.import_utils import is_vllm_available

    if dry or not torch.cuda.is_available():
        return line("SKIP", "vllm-colocate", "needs CUDA (tests/trainer/test_vllm.py covers the boundary with fakes)")
    if not is_vllm_available():
        return line("SKIP", "vllm-colocate", "vLLM is not installed (pip install vllm)")
    path = tiny(work / "vllm_model", vocab=2000, hidden=128)
    tr = trainer(path, work / "vllm", device, max_steps=2, use_vllm=True, vllm_mode="colocate",
                 vllm_gpu_memory_utilization=0.2, vllm_importance_sampling_correction=True)
    ratios = []
    original = tr._generate_and_score_completions

    def capture(inputs):
        out = original(inputs)
        r = out.get("importance_sampling_ratio")
        if r is not None:
            ratios.append(float(r[out["completion_mask"].bool()].float().mean()))
        return out

    tr._generate_and_score_completions = capture
    tr.train()
    logs = [h for h in tr.state.log_history if "loss" in h]
    ok = len(logs) == 2 and all(math.isfinite(h["loss"]) for h in logs) and all(abs(r - 1) < 0.1 for r in ratios)
    return line("PASS" if ok else "FAIL", "vllm-colocate",
                f"2 AntiSD steps with vLLM colocate: losses {[round(h['loss'], 4) for h in logs]}, mean importance "
                f"ratio per step {[round(r, 4) for r in ratios]}")


def _quiet(fn, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


CHECKS = {"cuda-train": check_train, "triton-head": check_head, "bf16-noise": check_noise,
          "step-cost": check_step_cost, "vllm-colocate": check_vllm}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="CPU, toy sizes: proves the script runs (CI)")
    p.add_argument("--checks", nargs="+", default=list(CHECKS), choices=list(CHECKS))
    args = p.parse_args(argv)
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    cuda = torch.cuda.is_available()
    if not cuda and not args.dry_run:
        line("FAIL", "gpu", "no CUDA device; run with --dry-run on a CPU")
        return 1
    device = "cpu" if args.dry_run else "cuda"
    print(f"gpu_check: {torch.cuda.get_device_name() if cuda and not args.dry_run else 'CPU (dry run)'}; "
          f"torch {torch.__version__}; command: {' '.join(sys.argv)}", flush=True)
    t0 = time.perf_counter()
    lines = []
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        for name in args.checks:
            try:
                got = CHECKS[name](Path(tmp), device, args.dry_run)
                lines.extend(got if isinstance(got, list) else [got])
            except Exception as e:  # noqa: BLE001 - one failing check must not hide the others
                lines.append(line("FAIL", name, f"{type(e).__name__}: {e}"))
                traceback.print_exc(file=sys.stderr)
    failed = sum(x.startswith("FAIL") for x in lines)
    print(f"gpu_check: {len(lines)} lines, {failed} FAIL; {time.perf_counter() - t0:.0f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
