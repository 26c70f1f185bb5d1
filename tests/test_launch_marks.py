"""Launch marks: recorded once, carried once in the first report, turned into non-negative phases."""

from __future__ import annotations

import time

import pytest

from search.launch_marks import MARKS, PREFIX, LaunchMarks, phase_seconds, process_start_time


def test_a_mark_keeps_its_first_time_and_unknown_names_are_refused():
    marks = LaunchMarks()
    marks.mark("ready", at=10.0)
    marks.mark("ready", at=20.0)
    marks.mark("first_step")
    assert marks.marks["ready"] == 10.0
    assert marks.marks["first_step"] >= 10.0
    with pytest.raises(ValueError, match="unknown launch mark"):
        marks.mark("readdy")


def test_the_marks_ride_on_the_first_report_only():
    marks = LaunchMarks({"trial_entered": 1.0})
    marks.mark("loop_entered", at=2.0)
    assert marks.first_report_fields() == {PREFIX + "trial_entered": 1.0, PREFIX + "loop_entered": 2.0}
    assert marks.first_report_fields() == {}


def test_this_process_started_before_now():
    start = process_start_time()
    assert start is not None and start <= time.time()


def test_phases_run_between_present_marks_and_an_earlier_process_start_counts_zero():
    report = {PREFIX + "trial_entered": 100.0, PREFIX + "train_launch": 101.0, PREFIX + "worker_process": 50.0}
    report |= {PREFIX + "loop_entered": 104.0, PREFIX + "ready": 106.5, "mpjpe": 200.0}
    assert phase_seconds(report) == {"train_launch": 1.0, "worker_process": 0.0, "loop_entered": 3.0, "ready": 2.5}
    assert set(phase_seconds(report)) <= set(MARKS)
