"""antisd.trainer.records: the per-run record (issue 25): bits, hashes, the history summary against hand values,
validation that names the field, atomic writing."""

import json
import math
from pathlib import Path

import pytest

from antisd.trainer.records import (
    final_point,
    history_summary,
    load_records,
    make_record,
    pack_bits,
    read_record,
    stable_hash,
    training_settings,
    unpack_bits,
    validate_record,
    write_record,
)

MACHINE = {"cpu": "test cpu", "cores": 2, "torch_threads": 1}
ROOT = Path(__file__).resolve().parents[2]


def _curve():
    return [{"step": 0, "kind": "acc", "n": 4, "acc": 0.25, "correct": pack_bits([0, 1, 0, 0])},
            {"step": 0, "kind": "big", "n": 8, "acc": 0.5, "correct": pack_bits([1, 1, 0, 0, 1, 1, 0, 0])},
            {"step": 10, "kind": "acc", "n": 4, "acc": 0.75, "correct": pack_bits([1, 1, 0, 1])},
            {"step": 10, "kind": "big", "n": 8, "acc": 0.625, "correct": pack_bits([1, 1, 1, 0, 1, 1, 0, 0])}]


def _history():
    """10 logged steps: gate off in warm-up (steps 1-5), on for 6-8, off for 9-10; the token term follows it."""
    hist = []
    for step in range(1, 11):
        on = 6 <= step <= 8
        hist.append({"step": step, "loss": 0.1, "accuracy": step / 10, "gate/on": float(on),
                     "gate/lambda": 0.5 if on else 0.0, "pmi/mean": -0.1 * step,
                     "token_term/active": float(on), "token_term/size_ratio": 0.02 * on if step != 7 else math.nan,
                     "token_term/abs_mean": 0.01 * on, "token_term/wrong_nonzero_frac": 0.5 * on,
                     "monitor/exploit": 1.0 if step == 9 else 0.0})
    hist.append({"step": 10, "train_runtime": 5.0})  # transformers' last entry: no loss, not a step
    return hist


def _record(**over):
    kw = dict(study="unit", run="S-grpo-s0", seed=0, steps=10, settings={"train": {"method": "grpo"}},
              base={"name": "toybase-x", "sha256": "ab" * 32}, curve=_curve(), history=_history(),
              heldout={"8": {"rows": 8, "distinct_prompts": 7, "distinct_equations": 3}}, runtime_s=12.34,
              machine=MACHINE)
    kw.update(over)
    return make_record(**kw)


@pytest.mark.parametrize("n", [1, 7, 8, 9, 2048])
def test_bits_round_trip(n):
    vals = [(i * 7919) % 3 == 0 for i in range(n)]
    text = pack_bits(vals)
    assert unpack_bits(text, n) == [int(v) for v in vals]
    assert len(text) <= 4 * ((n + 7) // 8 + 2) // 3 + 4  # base64 of n/8 bytes: 2,048 rows in 344 characters
    with pytest.raises(ValueError, match="cannot hold exactly"):
        unpack_bits(text, n + 8)


def test_stable_hash_ignores_key_order_and_sees_values():
    a = {"x": 1, "y": [1, 2], "z": {"b": 0.5, "a": None}}
    b = {"z": {"a": None, "b": 0.5}, "y": [1, 2], "x": 1}
    assert stable_hash(a) == stable_hash(b) and len(stable_hash(a)) == 12
    assert stable_hash(a) != stable_hash({**a, "x": 2})
    assert stable_hash({"v": math.nan}) == stable_hash({"v": None})  # NaN is written as null


def test_history_summary_against_hand_values():
    s = history_summary(_history())
    assert s["logged_steps"] == 10 and s["last_step"] == 10
    assert s["gate"]["on_frac"] == pytest.approx(0.3)
    assert s["gate"]["lambda_mean"] == pytest.approx(0.15) and s["gate"]["lambda_zero_frac"] == pytest.approx(0.7)
    # windows as toy_robustness_report.window_mean: first 10% = steps in [0, 0.1 * last), last 10% = [0.9 * last, last]
    assert s["gate"]["lambda_last10"] == 0.0  # steps 9 and 10
    tt = s["token_term"]
    assert tt["active_frac"] == pytest.approx(0.3)
    # size_ratio is finite on 9 steps (NaN at 7): 0.02 at 6 and 8, 0 elsewhere
    assert tt["size_ratio_mean"] == pytest.approx(0.04 / 9) and tt["size_ratio_undefined_steps"] == 1
    assert tt["size_ratio_mean_when_active"] == pytest.approx(0.02)
    assert tt["size_ratio_median"] == 0.0
    assert tt["wrong_nonzero_frac"] == pytest.approx(0.15) and tt["wrong_nonzero_frac_when_active"] == 0.5
    # first 10% of 10 steps: [0, 1) holds no logged step; last 10%: steps 9 and 10
    assert s["accuracy"]["first10"] is None and s["accuracy"]["last10"] == pytest.approx(0.95)
    assert s["pmi/mean"]["last10"] == pytest.approx(-0.95)
    assert s["monitor"] == {"checked_steps": 10, "flagged_steps": 1, "first_flag_step": 9}
    assert "token_term" not in history_summary([{"step": 1, "loss": 0.0, "accuracy": 0.5}])  # GRPO: no term
    assert history_summary([]) == {"logged_steps": 0}


def test_final_point_prefers_the_big_evaluation_of_the_last_step():
    assert final_point(_curve()) == {"step": 10, "kind": "big", "n": 8, "acc": 0.625}
    assert final_point(_curve()[:1]) == {"step": 0, "kind": "acc", "n": 4, "acc": 0.25}
    with pytest.raises(ValueError, match="curve"):
        final_point([])


def test_record_round_trip_and_settings_hash_include_the_base(tmp_path):
    rec = _record()
    assert rec["settings"]["base_sha256"] == "ab" * 32
    other = _record(base={"name": "toybase-x", "sha256": "cd" * 32})
    assert other["settings_hash"] != rec["settings_hash"]  # same flags, other weights: another hash
    assert _record(seed=3, run="S-grpo-s3")["settings_hash"] == rec["settings_hash"]  # the seed is not a setting
    path = write_record(tmp_path / "unit" / "S-grpo-s0.json", rec)
    assert read_record(path) == json.loads(json.dumps(rec))
    assert [r["run"] for r in load_records(tmp_path)] == ["S-grpo-s0"]
    assert not list(tmp_path.rglob(".*tmp*"))  # no temporary file left
    assert path.stat().st_size < 4000


@pytest.mark.parametrize("field,value,message", [
    ("seed", "0", "field 'seed' is str"),
    ("curve", None, "field 'curve' is NoneType"),
    ("settings_hash", "000000000000", "field 'settings_hash' 000000000000 does not match"),
    ("version", 99, "field 'version' is 99"),
])
def test_validation_names_the_field(field, value, message):
    rec = _record()
    rec[field] = value
    with pytest.raises(ValueError, match=message):
        validate_record(rec, "results/unit/S-grpo-s0.json")
    del rec[field]
    with pytest.raises(ValueError, match=f"field '{field}' is missing"):
        validate_record(rec, "x")


def test_validation_checks_the_bits_against_the_accuracy(tmp_path):
    rec = _record()
    rec["curve"][2]["acc"] = 0.5  # the bits say 3 of 4
    with pytest.raises(ValueError, match=r"curve\[2\] \(step 10, acc\): its 'correct' bits give 0.75"):
        validate_record(rec, "r")
    rec["curve"][2]["step"] = "10"
    with pytest.raises(ValueError, match=r"curve\[2\] field 'step'"):
        validate_record(rec, "r")
    bad = tmp_path / "s" / "bad.json"
    bad.parent.mkdir()
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        read_record(bad)


def test_training_settings_take_the_method_and_budget_but_not_paths_or_seed(tmp_path):
    from antisd.trainer.config import AntiSDConfig

    cfg = AntiSDConfig(output_dir=str(tmp_path), bf16=False, method="antisd", composition="multiplicative",
                       max_steps=7, seed=5, dump_rollouts_every=3)
    st = training_settings(cfg)
    assert st["composition"] == "multiplicative" and st["max_steps"] == 7 and st["method"] == "antisd"
    assert st["lr_scheduler_type"] == "linear"  # enums as their values
    assert "seed" not in st and "output_dir" not in st and "dump_rollouts_every" not in st
    assert str(tmp_path) not in json.dumps(st)


def test_pmi_records_are_validated_and_kept_apart(tmp_path):
    from antisd.trainer.records import make_pmi_record

    pmi = make_pmi_record(study="claim1_pmi", run="search", settings={"n_problems": 128},
                          base={"name": "toybase-search-x", "sha256": "ef" * 32},
                          result={"claim1": {"correct_candidate": {"n": 3, "mean": 0.5, "lo": 0.1, "hi": 0.9}}},
                          runtime_s=3.0, machine=MACHINE)
    write_record(tmp_path / "claim1_pmi" / "search.json", pmi)
    write_record(tmp_path / "unit" / "S-grpo-s0.json", _record())
    assert [r["run"] for r in load_records(tmp_path)] == ["S-grpo-s0"]
    assert [r["run"] for r in load_records(tmp_path, kind="pmi")] == ["search"]
    bad = dict(pmi)
    del bad["result"]
    with pytest.raises(ValueError, match="field 'result' is missing"):
        validate_record(bad, "p")
    with pytest.raises(ValueError, match="field 'kind' is 'other'"):
        validate_record({**pmi, "kind": "other"}, "p")


def test_machine_info_names_the_code_commit():
    import subprocess

    from antisd.trainer.records import code_version, machine_info

    info = machine_info()
    assert info["torch_threads"] >= 1 and info["cpu"]
    code = code_version()
    assert info["code"] == code
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:  # a git checkout: the commit is HEAD's
        assert code["commit"] == head.stdout.strip() and isinstance(code["dirty"], bool)
    else:
        assert code == {"commit": None, "dirty": None}
