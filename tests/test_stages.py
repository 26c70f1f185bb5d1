"""The shared-stage jobs: which plan trains the graph, and that either fills the cache."""

from __future__ import annotations

import dataclasses

import pytest

from nlrd.pipeline import StageCache
from search.run_dir import RunDir
from search.space import parse_space
from search.stages import ONE_STAGE_JOB, STAGE_JOBS, ensure_stages, missing_stages
from tests.conftest import TINY_SPACE


def test_both_plans_cover_the_whole_graph_and_the_single_job_needs_no_other():
    def trained(plan):
        return sorted(stage for stages, _ in plan.values() for stage in stages)

    assert trained(STAGE_JOBS) == trained(ONE_STAGE_JOB) == ["motion", "prior", "relations", "source", "world"]
    (only,) = ONE_STAGE_JOB.values()
    assert only[1] == ()
    assert all(set(after) <= set(STAGE_JOBS) for _, after in STAGE_JOBS.values())


@pytest.mark.parametrize(
    "side_by_side, jobs, line",
    [
        (True, ["world+prior", "motion+relations", "source"], "(3 Ray Train jobs: world+prior, motion+relations, "),
        (False, ["all"], "(1 Ray Train job: all; the cluster holds one stage job at a time)"),
    ],
)
def test_stage_jobs_fill_the_cache_as_the_plan_says(tmp_path, capsys, ray_cluster, side_by_side, jobs, line):
    spec = parse_space(TINY_SPACE, "tiny.yaml")
    resources = dataclasses.replace(spec.resources, stage_cpus=1)
    cache, run_dir = StageCache(tmp_path / "cache"), RunDir(tmp_path / "run")
    run_dir.path.mkdir()
    keys = ensure_stages(spec.stages, spec.relations.candidates, cache, resources, run_dir, side_by_side)
    assert missing_stages(cache, keys) == []
    assert line in capsys.readouterr().out
    assert sorted(p.name for p in run_dir.path.iterdir()) == sorted(run_dir.stage_run(job) for job in jobs)
