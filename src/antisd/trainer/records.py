"""Per-run records: what one training run did, as a few KB of JSON that tables are regenerated from
(docs/benchmarks.md).

A study writes one record per finished run into the repository (``results/<study>/<run>.json``);
``benchmarks/results_report.py`` rebuilds the documented tables from them and a test fails when a
documented number does not match its record. A record holds (schema ``RECORD_VERSION``):

    study, run, seed, steps           which run
    settings, settings_hash           the resolved settings that decide the result (``training_settings``: the
                                      method, guards, gate, RL budget and optimiser; the evaluation; the base's
                                      checksum) and a stable hash of them (seed excluded: one hash per arm)
    base                              the base policy: name, recipe hash, sha256 of its weights, its held-out
                                      accuracy from its build
    machine                           CPU model, cores, torch threads, library versions (``machine_info``)
    heldout                           per evaluation size: rows, distinct prompts, distinct equations (the
                                      effective sample size: the held-out split is by equation)
    curve                             held-out accuracy at each evaluation: step, kind ("acc" the curve,
                                      "big" the endpoints), n, acc, strict, len, truncated and ``correct``: which
                                      rows were solved, one bit per row (``pack_bits``), for paired bootstraps
    final                             the last evaluation (the n = ``big`` one where both exist)
    summary                           of the logged history (``history_summary``): the gate, the token term's
                                      size against the sequence advantage, PMI and signal, the monitor, and
                                      training accuracy / length in the first and last 10% of logged steps
    runtime_s, resumed_from           wall time of the session that finished the run

A second kind of record (``kind: "pmi"``, ``make_pmi_record``) holds a PMI check of a base policy
(``antisd.toyworld.pmi_check``: claim 1) instead of a training run: study, run, base, machine, settings and
their hash, the check's ``result``, runtime.

Pure Python (torch and the trainer are only imported where a caller hands over their objects); files are
written atomically.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
import math
import os
import platform
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from antisd.files import atomic_write

RECORD_VERSION = 1
# GRPOConfig / TrainingArguments fields that decide what a run computes (the AntiSD fields are all taken,
# apart from DIAGNOSTIC_FIELDS); logging, saving and output paths are left out.
TRL_FIELDS = (
    "learning_rate", "lr_scheduler_type", "warmup_steps", "weight_decay", "max_grad_norm", "optim", "adam_beta1",
    "adam_beta2", "adam_epsilon", "beta", "temperature", "top_k", "top_p", "min_p", "repetition_penalty",
    "num_generations", "max_completion_length", "per_device_train_batch_size", "gradient_accumulation_steps",
    "max_steps", "num_iterations", "steps_per_generation", "generation_batch_size", "loss_type", "scale_rewards",
    "epsilon", "epsilon_high", "mask_truncated_completions", "importance_sampling_level", "top_entropy_quantile",
    "bf16", "fp16", "cast_lm_head_to_fp32", "use_vllm", "data_seed",
)
DIAGNOSTIC_FIELDS = ("dump_rollouts_every", "answer_column", "solution_column", "problem_id_column")
REQUIRED = {"version": int, "study": str, "run": str, "seed": int, "steps": int, "settings": dict, "settings_hash": str,
            "base": dict, "machine": dict, "heldout": dict, "curve": list, "final": dict, "summary": dict,
            "runtime_s": (int, float)}
REQUIRED_PMI = {"version": int, "kind": str, "study": str, "run": str, "settings": dict, "settings_hash": str,
                "base": dict, "machine": dict, "result": dict, "runtime_s": (int, float)}
CURVE_FIELDS = {"step": int, "kind": str, "n": int, "acc": (int, float)}
WINDOW = 0.1  # first / last 10% of logged steps


def _jsonable(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return _jsonable(value.value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def stable_hash(obj: Any) -> str:
    """First 12 hex digits of the sha256 of ``obj``'s canonical JSON (sorted keys, no spaces)."""
    blob = json.dumps(_jsonable(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def training_settings(config) -> dict[str, Any]:
    """The settings of an ``AntiSDConfig`` that decide what a run computes: every AntiSD field but the
    diagnostics, and ``TRL_FIELDS``; the seed is left out (a record states it on its own)."""
    from antisd.trainer.config import antisd_field_names

    names = [n for n in antisd_field_names() if n not in DIAGNOSTIC_FIELDS] + [n for n in TRL_FIELDS if hasattr(config, n)]
    return {n: _jsonable(getattr(config, n)) for n in names}


def base_identity(path: str | Path) -> dict[str, Any]:
    """A toy base policy folder (``build_info.json`` + ``model.safetensors``): name, recipe hash, sha256 of the
    weights, held-out accuracy and n from its build. Another model folder: its name and weights' sha256."""
    path = Path(path)
    weights = path / "model.safetensors"
    out: dict[str, Any] = {"name": path.name, "sha256": file_sha256(weights) if weights.exists() else None}
    info_path = path / "build_info.json"
    if info_path.exists():
        info = json.loads(info_path.read_text())
        out.update(name=info.get("name", path.name), recipe_hash=info.get("recipe_hash"),
                   heldout_accuracy=info.get("heldout", {}).get("eval/accuracy"),
                   heldout_n=info.get("heldout", {}).get("eval/n"))
    return out


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def code_version() -> dict[str, Any]:
    """The git commit of the antisd source that runs, and whether its tracked files differ from it (``dirty``);
    None values outside a git checkout."""
    import subprocess

    src = Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(src), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no", "--", str(src)) if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def machine_info() -> dict[str, Any]:
    """Where a run ran: CPU model and cores, torch threads, GPU (if any), library versions, the antisd code's
    git commit (``code_version``)."""
    import torch
    import transformers
    import trl

    from antisd import __version__

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "gpu": gpu,
            "system": platform.system(), "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "trl": trl.__version__, "antisd": __version__,
            "code": code_version()}


def pack_bits(values: Sequence[float | bool]) -> str:
    """Row outcomes (truthy = solved) as base64 of a bit string, first row in the highest bit of the first byte."""
    out = bytearray((len(values) + 7) // 8)
    for i, v in enumerate(values):
        if v:
            out[i // 8] |= 0x80 >> (i % 8)
    return base64.b64encode(bytes(out)).decode()


def unpack_bits(text: str, n: int) -> list[int]:
    """The inverse of ``pack_bits`` for ``n`` rows."""
    raw = base64.b64decode(text)
    if len(raw) != (n + 7) // 8:
        raise ValueError(f"{len(raw)} bytes of bits cannot hold exactly {n} rows")
    return [(raw[i // 8] >> (7 - i % 8)) & 1 for i in range(n)]


def _finite(history: Iterable[dict], key: str) -> list[tuple[int, float]]:
    return [(int(h["step"]), float(h[key])) for h in history
            if isinstance(h.get(key), (int, float)) and not isinstance(h.get(key), bool) and math.isfinite(h[key])]


def _mean(xs: Sequence[float]) -> float | None:
    return statistics.fmean(xs) if xs else None


def _window(points: list[tuple[int, float]], last_step: int, lo: float, hi: float) -> float | None:
    """Mean over the points whose step lies in the fraction [lo, hi) of the run (the last step included in hi=1)."""
    return _mean([v for s, v in points if lo * last_step <= s < hi * last_step + (1 if hi >= 1 else 0)])


def history_summary(history: Sequence[dict]) -> dict[str, Any]:
    """What a run's logged history (transformers' ``log_history``, the entries with a ``loss``) says, in a few
    numbers: see the module docstring. Missing metrics (e.g. the token term of a GRPO run) give None."""
    steps = [h for h in history if "loss" in h and "step" in h]
    if not steps:
        return {"logged_steps": 0}
    last = max(int(h["step"]) for h in steps)

    def first_last(key: str) -> dict[str, float | None]:
        pts = _finite(steps, key)
        return {"first10": _window(pts, last, 0.0, WINDOW), "last10": _window(pts, last, 1 - WINDOW, 1.0)}

    out: dict[str, Any] = {"logged_steps": len(steps), "last_step": last}
    for key in ("accuracy", "completions/mean_length", "deliberation/token_frac", "pmi/mean", "signal/mean",
                "signal/pos_mass_frac", "teacher/entropy_mean", "student/entropy_mean"):
        if _finite(steps, key):
            out[key] = first_last(key)
    lam = _finite(steps, "gate/lambda")
    on = _finite(steps, "gate/on")
    if lam or on:
        out["gate"] = {"on_frac": _mean([float(v > 0) for _, v in on]), "lambda_mean": _mean([v for _, v in lam]),
                       "lambda_zero_frac": _mean([float(v == 0) for _, v in lam]),
                       "lambda_last10": _window(lam, last, 1 - WINDOW, 1.0)}
    active = _finite(steps, "token_term/active")
    if active:
        ratio = _finite(steps, "token_term/size_ratio")
        active_steps = {s for s, v in active if v > 0}
        out["token_term"] = {
            "active_frac": _mean([float(v > 0) for _, v in active]),
            "size_ratio_mean": _mean([v for _, v in ratio]),
            "size_ratio_median": statistics.median([v for _, v in ratio]) if ratio else None,
            "size_ratio_mean_when_active": _mean([v for s, v in ratio if s in active_steps]),
            "abs_mean": _mean([v for _, v in _finite(steps, "token_term/abs_mean")]),
            "wrong_nonzero_frac": _mean([v for _, v in _finite(steps, "token_term/wrong_nonzero_frac")]),
            "wrong_nonzero_frac_when_active": _mean([v for s, v in _finite(steps, "token_term/wrong_nonzero_frac")
                                                     if s in active_steps]),
            "wrong_abs_mean": _mean([v for _, v in _finite(steps, "token_term/wrong_abs_mean")]),
            "size_ratio_undefined_steps": len(active) - len(ratio),
        }
    checked = [h for h in steps if "monitor/exploit" in h]
    if checked:
        flags = [int(h["step"]) for h in checked if (h.get("monitor/exploit") or 0) > 0]
        out["monitor"] = {"checked_steps": len(checked), "flagged_steps": len(flags),
                          "first_flag_step": flags[0] if flags else None}
    return _jsonable(out)


def heldout_description(rows: Sequence[dict], split_keys: Sequence[str]) -> dict[str, int]:
    """Rows, distinct prompts and distinct equations (``split_keys``: the held-out split's unit) of an eval set."""
    return {"rows": len(rows), "distinct_prompts": len({r["prompt"] for r in rows}),
            "distinct_equations": len(set(split_keys))}


def final_point(curve: Sequence[dict]) -> dict[str, Any]:
    """The last evaluation: at the last step, the ``big`` one where both kinds exist."""
    if not curve:
        raise ValueError("curve: no evaluation point; a record needs at least one")
    last = max(p["step"] for p in curve)
    at = sorted((p for p in curve if p["step"] == last), key=lambda p: p["kind"] != "big")
    return {k: at[0][k] for k in ("step", "kind", "n", "acc") if k in at[0]}


def make_record(*, study: str, run: str, seed: int, steps: int, settings: dict, base: dict, curve: Sequence[dict],
                history: Sequence[dict], heldout: dict, runtime_s: float, machine: dict | None = None,
                resumed_from: str | None = None, extra: dict | None = None) -> dict[str, Any]:
    """A record (see the module docstring); ``settings`` are hashed together with the base's weights checksum."""
    settings = _jsonable({**settings, "base_sha256": base.get("sha256")})
    rec = {"version": RECORD_VERSION, "study": study, "run": run, "seed": int(seed), "steps": int(steps),
           "settings": settings, "settings_hash": stable_hash(settings), "base": _jsonable(base),
           "machine": machine if machine is not None else machine_info(), "heldout": _jsonable(heldout),
           "curve": _jsonable(sorted(curve, key=lambda p: (p["step"], p["kind"]))), "final": final_point(curve),
           "summary": history_summary(history), "runtime_s": round(float(runtime_s), 1),
           "resumed_from": None if resumed_from is None else Path(resumed_from).name}
    if extra:
        rec.update(_jsonable(extra))
    validate_record(rec, f"{study}/{run}")
    return rec


def make_pmi_record(*, study: str, run: str, settings: dict, base: dict, result: dict, runtime_s: float,
                    machine: dict | None = None) -> dict[str, Any]:
    """A record of a PMI check of a base policy (kind ``pmi``); ``settings`` are hashed with the base's checksum."""
    settings = _jsonable({**settings, "base_sha256": base.get("sha256")})
    rec = {"version": RECORD_VERSION, "kind": "pmi", "study": study, "run": run, "settings": settings,
           "settings_hash": stable_hash(settings), "base": _jsonable(base),
           "machine": machine if machine is not None else machine_info(), "result": _jsonable(result),
           "runtime_s": round(float(runtime_s), 1)}
    validate_record(rec, f"{study}/{run}")
    return rec


def validate_record(rec: dict, where: str = "record") -> None:
    """Raise ValueError naming the record and the field that is missing or of the wrong type."""
    if not isinstance(rec, dict):
        raise ValueError(f"{where}: not a JSON object")
    kind = rec.get("kind", "training")
    if kind not in ("training", "pmi"):
        raise ValueError(f"{where}: field 'kind' is {kind!r}, expected 'training' (the default) or 'pmi'")
    for key, kind in (REQUIRED_PMI if kind == "pmi" else REQUIRED).items():
        if key not in rec:
            raise ValueError(f"{where}: field {key!r} is missing")
        if not isinstance(rec[key], kind) or isinstance(rec[key], bool):
            raise ValueError(f"{where}: field {key!r} is {type(rec[key]).__name__}, expected {kind}")
    if rec["version"] != RECORD_VERSION:
        raise ValueError(f"{where}: field 'version' is {rec['version']}, this antisd reads {RECORD_VERSION}")
    if rec["settings_hash"] != stable_hash(rec["settings"]):
        raise ValueError(f"{where}: field 'settings_hash' {rec['settings_hash']} does not match its settings "
                         f"({stable_hash(rec['settings'])})")
    for i, p in enumerate(rec.get("curve", [])):
        for key, kind in CURVE_FIELDS.items():
            if not isinstance(p.get(key), kind):
                raise ValueError(f"{where}: curve[{i}] field {key!r} is {p.get(key)!r}, expected {kind}")
        if "correct" in p and p["correct"] is not None:
            bits = unpack_bits(p["correct"], p["n"])
            if abs(sum(bits) / p["n"] - p["acc"]) > 1e-9:
                raise ValueError(f"{where}: curve[{i}] (step {p['step']}, {p['kind']}): its 'correct' bits give "
                                 f"{sum(bits) / p['n']}, its 'acc' is {p['acc']}")


def write_record(path: str | Path, rec: dict) -> Path:
    """Validate and write ``rec`` atomically (``antisd.files.atomic_write``)."""
    path = Path(path)
    validate_record(rec, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, json.dumps(rec, indent=1, sort_keys=True, allow_nan=False) + "\n")


def read_record(path: str | Path) -> dict:
    path = Path(path)
    try:
        rec = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    validate_record(rec, str(path))
    return rec


def load_records(root: str | Path, kind: str = "training") -> list[dict]:
    """Every record of ``kind`` under ``root`` (``<study>/<run>.json``), sorted by study and run (all are
    validated, whatever their kind)."""
    recs = [read_record(p) for p in sorted(Path(root).glob("*/*.json"))]
    return [r for r in recs if r.get("kind", "training") == kind]
