"""``AntiSDConfig``: TRL's ``GRPOConfig`` plus the AntiSD / SD fields (docs/method.md).

Defaults are the paper's canonical AntiSD: JSD-ascent token signal -phi(u), additive composition, the
teacher-entropy Schmitt gate of Eq. 7 with the warm-up, ratios and lambda_max of
``antisd.method.gate.SchmittGate`` (their one definition; ``GATE_DEFAULTS``). ``method="grpo"`` leaves TRL's
GRPO untouched; ``method="sd"`` is the paper's default self-distillation (+u, no gate). Every ablation of
docs/method.md's table is a field value:

    reverse-KL ascent          token_signal="antisd_rkl"
    no gate                    gate="none"
    gate thresholds            gate_down_ratio=0.90 / 0.95
    multiplicative             composition="multiplicative"
    student-perplexity gate    gate="student_perplexity"
    continual AntiSD           start from a GRPO checkpoint (model path), fresh gate warm-up

A config is validated once, by ``__post_init__``, and not changed afterwards; what the validation itself
settles (unset derived values, normalised spellings) is listed in its docstring.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from trl import GRPOConfig

from antisd.cli.validate import check_choice
from antisd.method.context import ContextFields
from antisd.method.gate import SchmittGate, gate_kinds, get_gate_kind
from antisd.method.monitor import MonitorThresholds
from antisd.method.signals import centering_modes, composition_modes, signal_kinds
from antisd.trainer.trl_ranges import check_trl_ranges

logger = logging.getLogger(__name__)

METHODS = ("grpo", "sd", "antisd")
DEFAULT_SIGNAL = {"sd": "sd", "antisd": "antisd"}
DEFAULT_GATE = {"sd": "none", "antisd": "teacher_entropy"}
GATE_STATISTICS = ("mean", "median")
GATE_POPULATIONS = ("token_term", "context")
TOKEN_TERM_ROLLOUTS = ("all", "correct")
FAST_LOGPROBS = ("auto", "true", "false")
DELIBERATION_WORDS = ("Wait", "Let", "Maybe", "Alternatively", "But", "Hmm")
# The gate's defaults (warmup_steps, down_ratio, up_ratio, lambda_max, ...): SchmittGate's, defined there once.
GATE_DEFAULTS: dict[str, Any] = {name: p.default for name, p in inspect.signature(SchmittGate).parameters.items()
                                 if p.default is not inspect.Parameter.empty}
# AntiSDConfig field -> the column of antisd.data.problems.load_problems' output (its canonical columns): the
# fields' defaults, and what antisd train always uses (antisd.cli.options.trainer_values).
CANONICAL_COLUMNS = {"answer_column": "answer", "solution_column": "solution", "problem_id_column": "problem_id"}


# `antisd train --help`: the AntiSD fields by section, in this order (antisd.cli.main.train_help); an AntiSD field
# listed nowhere is shown under "other AntiSD options".
HELP_SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("AntiSD method (docs/method.md)", ("method", "token_signal", "lambda_max", "composition", "correctness_reward")),
    ("gate", ("gate", "gate_warmup_steps", "gate_down_ratio", "gate_up_ratio", "gate_statistic",
              "gate_population", "reset_gate_on_resume")),
    ("guards", ("gate_ceiling_ratio", "token_term_centering", "token_term_rollouts", "stop_on_nonfinite", "exploit_monitor",
                "monitor_window", "monitor_pmi_drop", "monitor_reward_drop", "monitor_entropy_ratio")),
    ("privileged context (the teacher's prompt)", ("teacher_template", "feedback_correct", "feedback_incorrect",
                                                   "solution_sources", "sibling_format", "answer_template",
                                                   "max_solution_chars", "strip_think", "correct_threshold")),
    ("speed (same computation)", ("fast_logprobs", "generation_prune_finished", "logps_batch_rows",
                                  "teacher_batch_size", "reuse_loss_logps")),
    ("diagnostics", ("dump_rollouts_every", "deliberation_words")),
    ("columns the trainer reads (set by antisd train)", ("answer_column", "solution_column", "problem_id_column")),
)
_PRECISION_LOGGED: list[bool] = []  # bf16 chosen for the machine: logged once per process


def antisd_field_names() -> list[str]:
    """The fields AntiSDConfig adds to TRL's GRPOConfig, in declaration order."""
    trl_fields = {f.name for f in fields(GRPOConfig)}
    return [f.name for f in fields(AntiSDConfig) if f.name not in trl_fields]


def machine_supports_bf16() -> bool:
    """Whether bf16 mixed precision can run here (a CUDA/XPU/NPU device with bf16); never on CPU."""
    from transformers.utils import is_torch_bf16_gpu_available

    return bool(is_torch_bf16_gpu_available())


@dataclass
class AntiSDConfig(ContextFields, GRPOConfig):
    """GRPOConfig with the AntiSD fields and the privileged-context fields (``antisd.method.context.ContextFields``,
    which also gives ``context_config``). See the module docstring for the ablation map."""

    # ---------------------------------------------------------------- method
    method: Literal["grpo", "sd", "antisd"] = field(
        default="antisd",
        metadata={"help": "grpo: TRL's GRPO unchanged; sd: self-distillation (+u); antisd: anti-self-distillation.",
                  "choices": list(METHODS)},
    )
    token_signal: str | None = field(
        default=None,
        metadata={"help": "Per-token term delta_t: antisd (-phi(u), JSD ascent), sd (+u, reverse-KL descent), "
                          "sd_jsd (+phi(u)), antisd_rkl (-u, reverse-KL ascent). Default: antisd for method=antisd, "
                          "sd for method=sd."},
    )
    lambda_max: float = field(default=GATE_DEFAULTS["lambda_max"], metadata={"help": "Weight lambda of the token term when the gate is on."})
    composition: str = field(
        default="additive",
        metadata={"help": "additive: A_seq + lambda*delta; multiplicative: A_seq * (1 + lambda*delta)."},
    )
    # ---------------------------------------------------------------- gate
    gate: str | None = field(
        default=None,
        metadata={"help": "teacher_entropy (canonical), student_perplexity (ablation) or none. "
                          "Default: teacher_entropy for antisd, none for sd."},
    )
    gate_warmup_steps: int = field(default=GATE_DEFAULTS["warmup_steps"], metadata={"help": "Generation batches with lambda=0 whose statistics set H_warm (their median)."})
    gate_down_ratio: float = field(default=GATE_DEFAULTS["down_ratio"], metadata={"help": "The gate turns off when the statistic leaves down_ratio*H_warm."})
    gate_up_ratio: float = field(default=GATE_DEFAULTS["up_ratio"], metadata={"help": "An off gate turns back on at up_ratio*H_warm (hysteresis)."})
    gate_statistic: Literal["mean", "median"] = field(
        default="mean",
        metadata={"help": "Per-step statistic over the response tokens of the rollouts that carry the token term (every "
                          "rollout with a privileged context; only the correct ones under token_term_rollouts correct): "
                          "mean (project default) or median.",
                  "choices": list(GATE_STATISTICS)},
    )
    gate_population: Literal["token_term", "context"] = field(
        default="token_term",
        metadata={"help": "Whose response tokens the gate's statistic (and teacher/entropy_*) is taken over: token_term "
                          "(project default: the rollouts that carry the token term, so only the correct ones under "
                          "token_term_rollouts correct) or context (every rollout with a privileged context, whatever "
                          "the guard: the teacher then also scores the rollouts the guard leaves at plain GRPO). "
                          "antisd.method.guard.",
                  "choices": list(GATE_POPULATIONS)},
    )
    gate_ceiling_ratio: float | None = field(
        default=None,
        metadata={"help": "Two-sided gate (project guard, docs/method.md Eq. 9): the teacher-entropy gate also turns "
                          "off when the entropy rises above ceiling_ratio*H_warm, and back on at H_warm/up_ratio. "
                          "None: the paper's one-sided gate."},
    )
    token_term_centering: str = field(
        default="none",
        metadata={"help": "Guard on the token term before composition (docs/method.md Eq. 10-11): none (the paper), "
                          "sequence (zero mean over each rollout's tokens: credit moves between tokens, no net "
                          "advantage is added), batch_cap (the batch mean of the token term is at most 0)."},
    )
    token_term_rollouts: Literal["all", "correct"] = field(
        default="all",
        metadata={"help": "Rollouts that get AntiSD's token term: all (the paper) or correct (guard, docs/method.md "
                          "Eq. 12: an incorrect rollout keeps its plain GRPO advantage, so tokens the teacher rejects "
                          "in a wrong attempt are never paid for; the toy world's built-in default). SD imitates the "
                          "teacher on every rollout, so method sd takes all (with a warning if correct was set).",
                  "choices": list(TOKEN_TERM_ROLLOUTS)},
    )
    exploit_monitor: bool = field(
        default=True,
        metadata={"help": "Watch for token-term exploitation (antisd.method.monitor): log monitor/* every step and warn when "
                          "the sampled tokens' mean PMI has fallen by monitor_pmi_drop and the reward has fallen by "
                          "monitor_reward_drop or the teacher's entropy risen to monitor_entropy_ratio x H_warm."},
    )
    monitor_window: int = field(default=MonitorThresholds.window, metadata={"help": "Logged steps the monitor averages (and its baseline: the first ones)."})
    monitor_pmi_drop: float = field(default=MonitorThresholds.pmi_drop_max, metadata={"help": "Monitor: fall of the mean PMI below its start, in nats."})
    monitor_reward_drop: float = field(default=MonitorThresholds.reward_drop_max, metadata={"help": "Monitor: fall of the reward below its best window."})
    monitor_entropy_ratio: float = field(default=MonitorThresholds.entropy_ratio_max, metadata={"help": "Monitor: rise of the teacher's entropy over H_warm (ratio)."})
    reset_gate_on_resume: bool = field(
        default=False,
        metadata={"help": "Continual mode: ignore a checkpoint's gate state and start a fresh warm-up."},
    )
    # ---------------------------------------------------------------- correctness and columns (context: ContextFields)
    correctness_reward: str | None = field(
        default=None,
        metadata={"help": "Name of the reward function that decides correctness (default: the first one)."},
    )
    # The columns of the trainer's dataset. antisd train trains on antisd.data.problems' output and keeps them at
    # their defaults (CANONICAL_COLUMNS); its --answer_column and --solution_column are DataConfig's: the source's.
    solution_column: str = field(
        default=CANONICAL_COLUMNS["solution_column"],
        metadata={"help": "Column of the trainer's dataset holding worked solutions (optional); antisd train: "
                          "solution, the column antisd.data.problems writes."},
    )
    answer_column: str = field(
        default=CANONICAL_COLUMNS["answer_column"],
        metadata={"help": "Column of the trainer's dataset holding final answers; antisd train: answer, the column "
                          "antisd.data.problems writes."},
    )
    problem_id_column: str | None = field(
        default=CANONICAL_COLUMNS["problem_id_column"],
        metadata={"help": "Column of the trainer's dataset identifying a problem across groups (a dataset without it, "
                          "or None: the prompt text); antisd train: problem_id, the column antisd.data.problems writes "
                          "(id_column names the source data's id column)."},
    )
    # ---------------------------------------------------------------- diagnostics
    deliberation_words: list[str] = field(
        default_factory=lambda: list(DELIBERATION_WORDS),
        metadata={"help": "Words counted as deliberation tokens in the metrics (when single tokens)."},
    )
    dump_rollouts_every: int = field(
        default=0, metadata={"help": "Every N generation batches write rollouts with per-token s, t, u to "
                                     "<output_dir>/rollouts/ (0: never)."},
    )
    reuse_loss_logps: bool = field(
        default=True,
        metadata={"help": "Take the student log-probs of the token term from the loss's own forward pass (no extra "
                          "student forward). False: a separate no-grad student pass at generation time (reference path)."},
    )
    teacher_batch_size: int | None = field(
        default=None,
        metadata={"help": "Sequences per teacher forward (default: per_device_train_batch_size). A batch of unequal "
                          "lengths is padded and the attention then builds a (batch x S x S) mask, quadratic in the "
                          "teacher length S; 1 avoids both (on CPU also faster; docs/benchmarks.md)."},
    )
    fast_logprobs: str = field(
        default="auto",
        metadata={"help": "Compute the loss's and the teacher's per-token log-probs and entropies with "
                          "antisd.lm.logprobs (scores only real completion tokens; the backward recomputes each chunk's "
                          "softmax) instead of TRL's fused LM head: true, false, or auto (true when training on CPU, "
                          "where it measured 3-4.5x faster forward+backward, docs/benchmarks.md; false on a GPU, where "
                          "TRL's Triton head is the better kernel; the choice is logged). Equal to TRL's path up to "
                          "float rounding; false gives TRL's GRPO exactly. Text-only models without an MoE aux loss; "
                          "others keep TRL's path.", "choices": list(FAST_LOGPROBS)},
    )

    generation_prune_finished: bool = field(
        default=False,
        metadata={"help": "Sample with antisd.lm.pruned_generation (the same distribution as transformers' generate; each "
                          "sequence leaves the batch and the KV cache as soon as it ends) instead of generate. Faster "
                          "for small models on CPU; ignored (with a log line) under vLLM, DeepSpeed, FSDP, PEFT or "
                          "generation settings it does not support."},
    )
    stop_on_nonfinite: bool = field(
        default=True,
        metadata={"help": "Stop with a clear error when a step's loss or gradient is NaN/inf, before the optimizer "
                          "applies it, after saving a checkpoint of the last good step (rather than training on "
                          "garbage). Under DeepSpeed the gradients are sharded and only the loss is checked."},
    )
    logps_batch_rows: int | None = field(
        default=None,
        metadata={"help": "Rows per forward in the loss's and the student's log-prob passes, sorted by length and cut to "
                          "each chunk's own width (antisd.lm.batching; same values up to float rounding, less padding). "
                          "None: one pass over the whole batch, as TRL does."},
    )

    # TRL's field (default False), unset here so that a bf16/fp16 run of sd/antisd gets the float32 output layer by
    # default (docs/benchmarks.md, "Precision": a bf16 head more than doubles the noise in u).
    cast_lm_head_to_fp32: bool | None = field(
        default=None,
        metadata={"help": "TRL's option: compute the output layer in float32 on TRL's fused LM head (fast_logprobs "
                          "does so always). None (default): true for sd/antisd under bf16/fp16, where a half-precision "
                          "head adds noise to u = t - s (docs/benchmarks.md, Precision), else false (TRL's default)."},
    )

    def __post_init__(self) -> None:
        """Validate, once, in small steps. What validation itself settles is set here and never later: an unset
        token_signal and gate (the method's), method sd's token_term_rollouts (all: SD imitates the teacher on
        every rollout; logged), fast_logprobs spelled as a word, solution_sources and deliberation_words given as
        comma-separated text as lists, an unset bf16 and cast_lm_head_to_fp32 (the machine's; the run's)."""
        check_trl_ranges(self)
        self._resolve_method()
        self._check_choices()
        self._check_gate()
        self._check_sizes()
        self._normalise()
        _ = self.context_config  # the context settings, before any model loads (raises with the field name)
        self._resolve_precision()
        super().__post_init__()

    def _resolve_method(self) -> None:
        check_choice("method", self.method, METHODS)
        if self.method == "grpo":
            return
        if self.token_signal is None:
            self.token_signal = DEFAULT_SIGNAL[self.method]
        if self.gate is None:
            self.gate = DEFAULT_GATE[self.method]
        if self.method == "sd" and self.token_term_rollouts == "correct":
            # the guard is against AntiSD's ascent being paid on wrong attempts; SD's descent toward the teacher
            # is the paper's baseline on every rollout (so --method sd on the toy default stays the paper's SD)
            logger.warning("token_term_rollouts=correct is AntiSD's guard; method sd imitates the teacher on every "
                           "rollout, so token_term_rollouts=all")
            self.token_term_rollouts = "all"

    def _check_choices(self) -> None:
        if self.token_signal is not None:
            check_choice("token_signal", self.token_signal, signal_kinds())
        if self.gate is not None:
            check_choice("gate", self.gate, gate_kinds())
        for name, valid in (("gate_population", GATE_POPULATIONS), ("token_term_rollouts", TOKEN_TERM_ROLLOUTS),
                            ("token_term_centering", centering_modes()), ("composition", composition_modes()),
                            ("gate_statistic", GATE_STATISTICS)):
            check_choice(name, getattr(self, name), valid)

    def _check_gate(self) -> None:
        if not self.lambda_max >= 0:
            raise ValueError(f"lambda_max={self.lambda_max} must be >= 0 (the weight of the token term)")
        if self.gate_warmup_steps < 1:
            raise ValueError(f"gate_warmup_steps={self.gate_warmup_steps} must be >= 1 (H_warm is the median of the "
                             "warm-up statistics)")
        if not (0 < self.gate_down_ratio <= self.gate_up_ratio):
            raise ValueError(f"gate_down_ratio={self.gate_down_ratio} must be in (0, gate_up_ratio={self.gate_up_ratio}] "
                             "(the gate turns off below down*H_warm and back on at up*H_warm)")
        if self.gate_ceiling_ratio is None:
            return
        if self.gate is not None and get_gate_kind(self.gate).direction != "below":
            raise ValueError(f"gate_ceiling_ratio={self.gate_ceiling_ratio} applies to the teacher_entropy gate, not "
                             f"gate={self.gate!r}")
        if not self.gate_ceiling_ratio > 1.0 / self.gate_up_ratio:
            raise ValueError(f"gate_ceiling_ratio={self.gate_ceiling_ratio} must be above 1/gate_up_ratio="
                             f"{1.0 / self.gate_up_ratio:.4g} (the gate turns back on at H_warm/up_ratio)")

    def _check_sizes(self) -> None:
        if self.teacher_batch_size is not None and self.teacher_batch_size < 1:
            raise ValueError(f"teacher_batch_size={self.teacher_batch_size} must be >= 1 (or None for "
                             "per_device_train_batch_size)")
        if self.logps_batch_rows is not None and self.logps_batch_rows < 1:
            raise ValueError(f"logps_batch_rows={self.logps_batch_rows} must be >= 1 (or None for one pass)")
        if self.dump_rollouts_every < 0:
            raise ValueError(f"dump_rollouts_every={self.dump_rollouts_every} must be >= 0")
        _ = self.monitor_thresholds  # MonitorThresholds checks the monitor's values

    def _normalise(self) -> None:
        if isinstance(self.fast_logprobs, bool):
            self.fast_logprobs = "true" if self.fast_logprobs else "false"
        self.fast_logprobs = str(self.fast_logprobs).lower()
        check_choice("fast_logprobs", self.fast_logprobs, FAST_LOGPROBS)
        if isinstance(self.solution_sources, str):
            self.solution_sources = [s.strip() for s in self.solution_sources.split(",") if s.strip()]
        if isinstance(self.deliberation_words, str):
            self.deliberation_words = [s.strip() for s in self.deliberation_words.split(",") if s.strip()]

    def _resolve_precision(self) -> None:
        if self.bf16 is None and not self.fp16:  # TRL would set bf16=True, which fails on a CPU
            self.bf16 = machine_supports_bf16() and not self.use_cpu
            if not _PRECISION_LOGGED:
                _PRECISION_LOGGED.append(True)
                logger.info("Precision: %s (bf16 unset; chosen for this machine; set bf16 to override)",
                            "bf16 mixed precision" if self.bf16 else "float32")
        if self.cast_lm_head_to_fp32 is None:  # the safe output layer for bf16/fp16 runs that compute u
            self.cast_lm_head_to_fp32 = bool(self.uses_teacher and (self.bf16 or self.fp16))

    @property
    def uses_teacher(self) -> bool:
        """True for sd/antisd: a privileged teacher pass runs every generation batch."""
        return self.method != "grpo"

    @property
    def guards(self) -> str:
        """The guards against token-term exploitation this run uses (docs/method.md Eq. 9-12), in words."""
        if not self.uses_teacher:
            return "none (no token term)"
        on: list[str] = []
        if self.token_term_rollouts == "correct":
            on.append("token term on correct rollouts only (Eq. 12)")
        if self.token_term_centering != "none":
            on.append(f"token term centering {self.token_term_centering} (Eq. 10-11)")
        if self.gate_ceiling_ratio is not None:
            on.append(f"two-sided gate, ceiling {self.gate_ceiling_ratio:.4g} x H_warm (Eq. 9)")
        return "; ".join(on) if on else "none (the paper's configuration)"

    def check_problem_columns(self) -> None:
        """Raise ValueError unless the trainer reads the columns ``antisd.data.problems`` writes
        (``CANONICAL_COLUMNS``, the defaults): the data of ``antisd.trainer.run.run_train`` has exactly those."""
        wrong = {name: getattr(self, name) for name, column in CANONICAL_COLUMNS.items() if getattr(self, name) != column}
        if wrong:
            given = ", ".join(f"{name}={value!r}" for name, value in wrong.items())
            raise ValueError(f"AntiSDConfig {given}: the problems antisd.data.problems prepares have the columns "
                             f"{sorted(set(CANONICAL_COLUMNS.values()))}; leave AntiSDConfig's columns at their "
                             "defaults and name the source data's columns in DataConfig (answer_column, "
                             "solution_column, id_column)")

    def use_canonical_columns(self) -> dict[str, tuple[str | None, str]]:
        """For earlier callers, which had the columns pointed at ``CANONICAL_COLUMNS`` after validation: a config
        is no longer changed then, so this only checks that they are (``check_problem_columns``) and returns the
        fields it changed: none."""
        self.check_problem_columns()
        return {}

    @property
    def monitor_thresholds(self) -> MonitorThresholds:
        """The exploitation monitor's thresholds (``antisd.method.monitor``); raises ValueError for bad ones."""
        return MonitorThresholds(window=self.monitor_window, pmi_drop_max=self.monitor_pmi_drop,
                                 reward_drop_max=self.monitor_reward_drop, entropy_ratio_max=self.monitor_entropy_ratio)

    @property
    def gate_params(self) -> dict:
        """The ``antisd.method.gate.SchmittGate`` arguments of the gate fields (its kind's direction aside)."""
        return {
            "warmup_steps": self.gate_warmup_steps,
            "down_ratio": self.gate_down_ratio,
            "up_ratio": self.gate_up_ratio,
            "lambda_max": self.lambda_max,
            "ceiling_ratio": self.gate_ceiling_ratio,
        }
