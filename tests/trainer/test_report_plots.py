"""The training report's plots show what they claim (axes checked, not pixels), and the progress line of the log."""

from __future__ import annotations

import pytest

from antisd.trainer.progress import format_duration, progress_line
from antisd.trainer.report import PANELS, gate_off_spans, run_figure, write_report


def history(logging_steps=5, steps=100, off=(20, 40)):
    """A run whose reward equals its accuracy (the verifier's 0/1 reward) and whose gate is off in (off[0], off[1]]."""
    rows = []
    for s in range(logging_steps, steps + 1, logging_steps):
        acc = 0.5 + s / 400
        rows.append({"step": s, "loss": 0.1, "reward": acc, "accuracy": acc, "gate/on": 0.0 if off[0] < s <= off[1] else 1.0,
                     "teacher/entropy_mean": 1.0, "gate/reference": 1.0, "gate/off_threshold": 0.93,
                     "gate/on_threshold": 1.0, "gate/lambda": 0.0 if off[0] < s <= off[1] else 0.5})
    return rows


def test_reward_and_accuracy_have_their_own_panels():
    fig, panels = run_figure(history(), "t")
    assert [line.get_label() for line in panels["reward"].lines] == ["reward"]
    assert [line.get_label() for line in panels["accuracy"].lines] == ["accuracy"]
    assert panels["reward"] is not panels["accuracy"] and len(fig.axes) == len(PANELS)


@pytest.mark.parametrize("logging_steps", [1, 5, 10])
def test_gate_off_bands_cover_the_steps_the_gate_was_off(logging_steps):
    rows = history(logging_steps=logging_steps)
    assert gate_off_spans(rows) == [(20.0, 40.0)]  # the logs at 25..40 (or 21..40, 30..40) stand for (20, 40]
    _, panels = run_figure(rows)
    for ax in panels.values():  # shaded on every panel, 20 steps wide: not a hairline
        spans = [p for p in ax.patches if p.get_gid() == "gate-off"]
        assert len(spans) == 1
        assert (spans[0].get_x(), spans[0].get_width()) == pytest.approx((20.0, 20.0))  # data units: steps
        assert spans[0].get_alpha() >= 0.2


def test_gate_that_never_turns_off_draws_no_band_and_separate_runs_stay_separate():
    assert gate_off_spans(history(off=(0, 0))) == []
    rows = history(off=(20, 40))
    for row in rows:
        if 60 < row["step"] <= 70:
            row["gate/on"] = 0.0
    assert gate_off_spans(rows) == [(20.0, 40.0), (60.0, 70.0)]


def test_report_of_synthetic_run(tmp_path):
    import json

    (tmp_path / "trainer_state.json").write_text(json.dumps({"global_step": 100, "max_steps": 100,
                                                              "log_history": history()}))
    text = write_report(tmp_path, title="my run").read_text()
    assert text.startswith("# my run\n") and (tmp_path / "plots" / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_progress_line_gives_speed_and_time_left():
    line = progress_line(40, 400, 40, 30.0, {"reward": 0.61349, "accuracy": 0.6, "loss": 0.1})
    assert line == ("step 40/400 (10%): 1.33 steps/s, elapsed 0:00:30, about 0:04:30 left; reward 0.613, "
                    "accuracy 0.600")
    assert progress_line(400, 400, 10, 10.0).endswith("elapsed 0:00:10, done")  # resumed at 390: 10 steps here
    assert "speed not known yet" in progress_line(0, 10, 0, 0.0)
    assert format_duration(90061) == "1 day, 1:01:01" and format_duration(float("nan")) == "?"
