"""antisd.method.monitor: the exploitation flag on hand-built histories, the callback's log entries, and the
monitor wired into training."""

import logging
import math
from types import SimpleNamespace

import pytest

from antisd.method.monitor import MonitorThresholds, exploit_callback, exploit_status

from trainer_helpers import make_trainer


def _history(pmi, reward, entropy=None, reference=0.3):
    entropy = entropy or [reference] * len(pmi)
    return [{"step": i + 1, "loss": 0.0, "pmi/mean": p, "reward": r, "teacher/entropy_mean": h,
             "gate/reference": reference} for i, (p, r, h) in enumerate(zip(pmi, reward, entropy))]


T = MonitorThresholds(window=5, pmi_drop_max=0.2, reward_drop_max=0.05, entropy_ratio_max=1.15)


def test_nothing_until_two_windows():
    assert exploit_status(_history([-0.1] * 9, [0.3] * 9), T) == {}
    assert set(exploit_status(_history([-0.1] * 10, [0.3] * 10), T)) == {
        "monitor/pmi_drop", "monitor/reward_drop", "monitor/entropy_ratio", "monitor/exploit"}


def test_healthy_run_is_not_flagged():
    st = exploit_status(_history([-0.1] * 30, [0.2 + 0.01 * i for i in range(30)]), T)
    assert st["monitor/exploit"] == 0.0 and st["monitor/pmi_drop"] == pytest.approx(0.0)
    assert st["monitor/reward_drop"] == pytest.approx(0.0)


def test_falling_pmi_with_falling_reward_is_flagged():
    pmi = [-0.1] * 10 + [-0.1 - 0.05 * i for i in range(20)]
    reward = [0.3] * 15 + [0.3 - 0.01 * i for i in range(15)]
    st = exploit_status(_history(pmi, reward), T)
    assert st["monitor/exploit"] == 1.0
    assert st["monitor/pmi_drop"] == pytest.approx(-0.1 - sum(pmi[-5:]) / 5)
    assert st["monitor/reward_drop"] == pytest.approx(0.3 - sum(reward[-5:]) / 5)


def test_falling_pmi_with_rising_teacher_entropy_is_flagged_but_each_sign_alone_is_not():
    pmi = [-0.1] * 10 + [-0.6] * 10
    assert exploit_status(_history(pmi, [0.3] * 20, [0.3] * 10 + [0.4] * 10), T)["monitor/exploit"] == 1.0
    assert exploit_status(_history(pmi, [0.3] * 20), T)["monitor/exploit"] == 0.0  # pmi alone (deliberation grows)
    assert exploit_status(_history([-0.1] * 20, [0.3] * 10 + [0.1] * 10), T)["monitor/exploit"] == 0.0  # reward alone
    ratio = exploit_status(_history(pmi, [0.3] * 20, [0.3] * 10 + [0.4] * 10), T)["monitor/entropy_ratio"]
    assert ratio == pytest.approx(0.4 / 0.3)


def test_nonfinite_values_are_skipped():
    h = _history([-0.1] * 10 + [float("nan")] * 3 + [-0.1] * 10, [0.3] * 23)
    assert math.isfinite(exploit_status(h, T)["monitor/pmi_drop"])


def test_thresholds_are_checked():
    with pytest.raises(ValueError, match="entropy_ratio_max=0.9"):
        MonitorThresholds(entropy_ratio_max=0.9)


def test_callback_adds_the_values_to_the_log_and_history_and_warns_once(caplog):
    cb = exploit_callback(T)
    history = []
    pmi = [-0.1] * 10 + [-0.6] * 10
    ent = [0.3] * 10 + [0.5] * 10
    with caplog.at_level(logging.WARNING, logger="antisd.method.monitor"):
        for entry in _history(pmi, [0.3] * 20, ent):
            history.append(entry)
            logs = {k: v for k, v in entry.items() if k != "step"}
            state = SimpleNamespace(log_history=history, global_step=entry["step"], is_world_process_zero=True)
            cb.on_log(None, state, None, logs=logs)
    assert logs["monitor/exploit"] == 1.0 and history[-1]["monitor/exploit"] == 1.0
    assert "monitor/exploit" not in history[8]  # before two windows
    assert sum("exploitation suspected" in r.message for r in caplog.records) == 1


@pytest.mark.slow
def test_the_monitor_logs_during_training(tiny_model_path, tmp_path):
    tr = make_trainer(tiny_model_path, tmp_path, method="antisd", max_steps=4, monitor_window=1)
    tr.train()
    logs = [h for h in tr.state.log_history if "loss" in h]
    assert all("monitor/exploit" in h for h in logs[1:]) and "monitor/exploit" not in logs[0]
    off = make_trainer(tiny_model_path, tmp_path / "off", method="antisd", max_steps=2, exploit_monitor=False)
    off.train()
    assert not any("monitor/exploit" in h for h in off.state.log_history)
