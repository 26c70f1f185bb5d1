"""The stage-job benchmark: its timed progress lines, and a run of the tiny space's stages as one job."""

from __future__ import annotations

import io
import json
import sys

from bench import stage_jobs
from bench.stage_jobs import TimedLines, gaps, stage_spans
from tests.conftest import TINY_SPACE, write_space


def test_timed_lines_keep_whole_lines_and_echo_everything():
    echo = io.StringIO()
    timed = TimedLines(0.0, echo)
    timed.write("[stages] prior step 1")
    timed.write("0: loss 1\n[stages] motion step 5: loss 2\npartial")
    assert [line for _, line in timed.lines] == ["[stages] prior step 10: loss 1", "[stages] motion step 5: loss 2"]
    assert echo.getvalue().endswith("partial")


def test_spans_and_gaps_follow_the_stages_in_the_order_they_began():
    lines = [
        (1.0, "[stages] training world, prior (1 Ray Train job: all)"),
        (10.0, "[stages] prior step 50: loss 0.4"),
        (20.0, "[stages] prior step 100: loss 0.2"),
        (32.5, "[stages] relations step 50: loss 0.3"),
        (40.0, "[stages] relations step 100: loss 0.1"),
        (41.0, "[stages] done in 40 s"),
    ]
    spans = stage_spans(lines)
    assert list(spans) == ["prior", "relations"]
    assert spans["prior"] == {"first_s": 10.0, "last_s": 20.0, "last_line": "[stages] prior step 100: loss 0.2"}
    assert gaps(spans) == {"prior -> relations": 12.5}


def test_the_tiny_stages_as_one_job_are_timed_and_written(tmp_path, monkeypatch, ray_cluster):
    space = write_space(tmp_path / "tiny.yaml", TINY_SPACE)
    out = tmp_path / "out"
    argv = ["bench.stage_jobs", "--space", str(space), "--plans", "one", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    stage_jobs.main()
    (run,) = json.loads((out / "stage_jobs.json").read_text())["runs"]
    assert run["plan"] == "one" and list(run["stages"]) == ["prior", "motion", "relations", "source"]
    assert list(run["gaps"]) == ["prior -> motion", "motion -> relations", "relations -> source"]
    assert 0 < run["stages"]["prior"]["first_s"] <= run["stages"]["source"]["last_s"] < run["seconds"]
    text = (out / "stage_jobs.md").read_text()
    assert "| 1 | one |" in text and "Every run's last progress lines are the same." in text
    assert sorted(p.name for p in out.iterdir()) == ["stage_jobs.json", "stage_jobs.md"]  # the cache is gone
