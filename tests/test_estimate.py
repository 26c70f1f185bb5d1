"""The ``--dry-run`` time estimate: its arithmetic by hand, its refusals where nothing was measured, and the smoke
search's measured times inside its ranges.  No Ray."""

from __future__ import annotations

import copy

import pytest

from search.estimate import (
    CPU_2CORE,
    duration,
    estimate_lines,
    search_seconds,
    stage_seconds,
    step_seconds,
    trial_steps,
)
from search.space import load_space, parse_space
from tests.conftest import REPO, TINY_SPACE


def _tiny(**sections) -> dict:
    """The tiny space at the measured image size (64 px), with sections replaced."""
    space = copy.deepcopy(TINY_SPACE)
    space["world"]["image_size"] = 64
    space.update(sections)
    return space


def test_search_range_by_hand():
    """6 trials, 2 at a time, 10 or 40 steps, 0.1-0.3 s a step, launches 15-25 s."""
    low, high = search_seconds(6, 2, (10, 40), (0.1, 0.3), (15.0, 25.0), asha=True)
    assert high == pytest.approx(3 * (25 + 40 * 0.3))  # three waves of trials running all 40 steps
    assert low == pytest.approx((5 * (15 + 10 * 0.1) + (15 + 40 * 0.1)) / 2)  # five stopped at 10 steps, one full
    no_asha = search_seconds(6, 2, (10, 40), (0.1, 0.3), (15.0, 25.0), asha=False)
    assert no_asha == pytest.approx((3 * (15 + 4), high))


def test_search_range_never_below_one_whole_trial_nor_above_the_trials_slots():
    assert search_seconds(1, 4, (2, 6), (1.0, 1.0), (10.0, 10.0), asha=True) == pytest.approx((16.0, 16.0))
    low, _ = search_seconds(3, 8, (2, 100), (1.0, 1.0), (0.0, 0.0), asha=True)
    assert low == pytest.approx(100.0)  # the one trial that runs to the end bounds it below


def test_trial_steps_are_the_first_rung_and_the_longest_trial():
    assert trial_steps(parse_space(_tiny(), "s.yaml")) == (2, 6)  # grace 1 x eval_every 2; steps 6
    space = _tiny(adapt={"batch_clips": 2, "eval_every": 5}, scheduler={"type": "asha", "grace_period": 2})
    space["params"] = {"steps": "int(interval(8, 80))"}
    assert trial_steps(parse_space(space, "s.yaml")) == (8, 80)  # the rung at 10 steps, but a trial may stop at 8


def test_step_seconds_take_the_slowest_schedule_and_scale_with_the_frames_of_a_step():
    spec = parse_space(_tiny(), "s.yaml")  # round robin, 2 clips x 8 frames: a quarter of the measured 64 frames
    slow = CPU_2CORE.step_s["round_robin"] / 4
    assert step_seconds(spec, CPU_2CORE) == pytest.approx((slow * CPU_2CORE.faster, slow))
    tuned = _tiny()
    tuned["params"]["schedule"] = "choice(round_robin, weighted)"
    assert step_seconds(parse_space(tuned, "s.yaml"), CPU_2CORE)[1] == pytest.approx(CPU_2CORE.step_s["weighted"] / 4)


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: s["world"].update(image_size=32),
        lambda s: s["stages"]["source"].update(encoder="resnet50"),
        lambda s: s["resources"].update(trial_gpus=0.5, stage_gpus=1),
    ],
)
def test_nothing_is_scaled_to_a_setting_that_was_not_measured(edit):
    space = _tiny()
    edit(space)
    if space["stages"]["source"].get("encoder") == "resnet50":
        space["adapt"]["trainable_block"] = "layer2"
    spec = parse_space(space, "s.yaml")
    assert step_seconds(spec, CPU_2CORE) is None and stage_seconds(spec, ["world"], CPU_2CORE) is None
    lines = "\n".join(estimate_lines(spec, ["world"]))
    assert "stages: 1 to train; not estimated" in lines and "adaptation not estimated" in lines


def test_cached_stages_count_zero_and_each_missing_stage_its_steps():
    spec = parse_space(_tiny(), "s.yaml")
    assert stage_seconds(spec, [], CPU_2CORE) == (0.0, 0.0)
    per_step, batch = CPU_2CORE.stage_step_s["source"]
    source = 10 * per_step * 32 / batch  # TINY_SPACE: source 10 steps, batch 32
    low, high = stage_seconds(spec, ["source"], CPU_2CORE)
    assert high == pytest.approx(source + CPU_2CORE.launch_s[1])  # one Ray Train job
    assert low == pytest.approx(source * CPU_2CORE.faster / 2 + CPU_2CORE.launch_s[0])  # stage_cpus: 2 threads
    two = stage_seconds(spec, ["relation flip", "relation inplane5"], CPU_2CORE)[1] - CPU_2CORE.launch_s[1]
    assert two == pytest.approx(2 * stage_seconds(spec, ["relation flip"], CPU_2CORE)[1] - 2 * CPU_2CORE.launch_s[1])


def test_a_cluster_holding_one_stage_job_launches_one_for_the_whole_graph():
    spec = parse_space(_tiny(), "s.yaml")
    every = ["world", "prior", "motion", "source", "relation flip"]
    three = stage_seconds(spec, every, CPU_2CORE)
    one = stage_seconds(spec, every, CPU_2CORE, side_by_side=False)
    assert three[1] - one[1] == pytest.approx(2 * CPU_2CORE.launch_s[1])
    assert three[0] - one[0] == pytest.approx(2 * CPU_2CORE.launch_s[0])
    assert stage_seconds(spec, ["source"], CPU_2CORE, side_by_side=False) == stage_seconds(spec, ["source"], CPU_2CORE)


def test_the_estimate_says_what_it_assumes():
    spec = parse_space(_tiny(), "s.yaml")
    text = "\n".join(estimate_lines(spec, []))
    assert "stages: every stage is cached: 0 s" in text
    assert "4 trials, 2 at a time (searcher.max_concurrent)" in text
    assert "ASHA stopping every trial but one at its first rung (2 steps)" in text
    assert "every trial runs all 6 steps (ASHA's worst case)" in text and "total:" in text
    assert "not counted: the pre-filter" in text


def test_the_smoke_searchs_measured_times_fall_inside_its_estimate():
    """bench/RESULTS.md, 2026-12-05, a fresh clone of 71d6dde (today's smoke space, two trials at once, three stage
    jobs): stages 211 s on an empty cache, the search about 76 s; 2026-12-06, 9134ab5 (one stage job on 2 cores):
    stages 217 s, the search about 88 s."""
    spec = load_space(REPO / "spaces" / "smoke.yaml")
    missing = ["world", "prior", "motion", "source", *(f"relation {r}" for r in spec.relations.candidates)]
    low, high = stage_seconds(spec, missing, CPU_2CORE)
    assert low <= 211 <= high
    low, high = stage_seconds(spec, missing, CPU_2CORE, side_by_side=False)
    assert low <= 217 <= high
    search = spec.searcher
    steps = trial_steps(spec)
    low, high = search_seconds(
        search.num_trials, search.max_concurrent, steps, step_seconds(spec, CPU_2CORE), CPU_2CORE.launch_s, True
    )
    assert low <= 76 <= high and low <= 88 <= high


@pytest.mark.parametrize("seconds, text", [(45, "45 s"), (119.4, "119 s"), (750, "12 min"), (9000, "2.5 h")])
def test_durations_read_as_precisely_as_an_estimate_deserves(seconds, text):
    assert duration(seconds) == text
