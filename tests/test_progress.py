"""The per-epoch progress line that trainings print under DVC: its text, ETA, pacing and when it is on."""

from __future__ import annotations

import io

import pytest

from isdarts.pipeline.progress import EpochProgress, format_duration, progress_for, total_epochs


def test_durations_read_like_a_clock() -> None:
    assert [format_duration(s) for s in (7.4, 59.6, 95, 3725, -3)] == ["7s", "1m00s", "1m35s", "1h02m", "0s"]


def test_the_first_and_last_epochs_print_and_the_rest_at_most_every_interval() -> None:
    now = [0.0]
    out = io.StringIO()
    progress = EpochProgress("search_nb201@darts1-0", 5, every_s=30, stream=out, clock=lambda: now[0])
    for epoch, seconds in enumerate([10, 20, 10, 10, 10], start=1):
        now[0] += seconds
        progress({"epoch": epoch, "epoch_seconds": seconds})
    assert out.getvalue().splitlines() == [
        "search_nb201@darts1-0: epoch 1/5 (20%), 10s/epoch, ETA 40s",
        # 30 s after the first line; the ETA is the mean epoch time (40 s / 3) times the 2 epochs left.
        "search_nb201@darts1-0: epoch 3/5 (60%), 13s/epoch, ETA 27s",
        "search_nb201@darts1-0: epoch 5/5 (100%), 12s/epoch, done",
    ]


def test_a_resumed_run_times_only_its_own_epochs() -> None:
    out = io.StringIO()
    progress = EpochProgress("retrain", 600, stream=out, clock=lambda: 0.0)
    progress({"epoch": 401, "epoch_seconds": 6.0})
    assert out.getvalue().strip() == "retrain: epoch 401/600 (67%), 6s/epoch, ETA 19m54s"


def test_the_epoch_count_comes_from_the_one_settings_block() -> None:
    assert total_epochs({"search": {"epochs": 50, "lr": 0.1}, "seed": 0, "device": "cpu"}) == 50
    assert total_epochs({"retrain": {"epochs": 600}, "run_info": {"method": "isdarts"}}) == 600
    assert total_epochs({"seed": 0}) is None
    assert total_epochs({"a": {"epochs": 1}, "b": {"epochs": 2}}) is None


@pytest.mark.parametrize(("env", "tty", "label"), [
    ({"DVC_STAGE": "search_nb201@isdarts-0"}, True, "search_nb201@isdarts-0"),  # under DVC, even on a terminal
    ({}, False, "nb201-isdarts-seed0"),  # a log file or CI
    ({}, True, None),  # a terminal outside DVC has the progress bars
])
def test_the_line_is_on_under_dvc_or_without_a_terminal(monkeypatch, env, tty, label) -> None:
    monkeypatch.setattr("sys.stderr.isatty", lambda: tty, raising=False)
    progress = progress_for("nb201-isdarts-seed0", {"search": {"epochs": 5}}, env)
    assert (progress.label if progress else None) == label
