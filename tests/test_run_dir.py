"""The run directory: its file names and manifest are the on-disk format that ``--resume`` reads."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from types import SimpleNamespace

import pandas as pd
import pytest
from ray import cloudpickle

import search.export
import search.trainable
from nlrd.nonlocalness import NonLocalness
from nlrd.pipeline import StageCache
from search.prefilter import SetDecision
from search.run_dir import RunDir, RunDirError
from search.space import ObjectiveSpec, load_space, parse_space
from search.trial_reports import TrialReports
from search.tuner import LiveTables, StudyRecorder
from tests.conftest import REPO, TINY_SPACE, write_space


def test_the_file_names_stay_those_earlier_runs_have(tmp_path):
    run_dir = RunDir(tmp_path)
    names = {
        run_dir.manifest_json: "manifest.json",
        run_dir.space_yaml: "space.yaml",
        run_dir.prefilter_json: "prefilter.json",
        run_dir.study_log: "study.log",
        run_dir.tune: "tune",
        run_dir.reports.root: "reports",
        run_dir.trials_csv: "trials.csv",
        run_dir.trials_parquet: "trials.parquet",
        run_dir.prefilter_csv: "prefilter.csv",
        run_dir.pareto_json: "pareto.json",
        run_dir.pareto_png: "pareto.png",
        run_dir.pareto_svg: "pareto.svg",
        run_dir.prefilter_png: "prefilter.png",
        run_dir.stage_quality_json: "stage_quality.json",
        run_dir.summary_md: "summary.md",
        run_dir.best_yaml: "best.yaml",
        run_dir.best_encoder: "best_encoder.pt",
    }
    assert all(path == tmp_path / name for path, name in names.items())
    assert run_dir.storage_path == str(tmp_path)
    assert run_dir.trial_run("ab12") == "train-ab12"
    assert run_dir.stage_run("motion+relations") == "stages-motion-relations"


def test_a_created_run_reads_back_its_manifest_and_space(tmp_path):
    spec = load_space(write_space(tmp_path / "tiny.yaml", TINY_SPACE))
    run_dir = RunDir(tmp_path / "out" / ".." / "run")
    assert run_dir.path == tmp_path / "run"  # absolute and resolved: Ray reads it on other nodes
    run_dir.create(spec, StageCache(tmp_path / "cache"))
    manifest = json.loads(run_dir.manifest_json.read_text())
    assert list(manifest) == ["space", "space_digest", "cache", "created"]
    assert manifest["space"] == str(spec.path.resolve()) and manifest["cache"] == str(tmp_path / "cache")
    read = run_dir.read_manifest()
    assert read.space_digest == spec.digest and read.cache == tmp_path / "cache"
    assert run_dir.read_space(read).digest == spec.digest
    run_dir.space_yaml.write_text(run_dir.space_yaml.read_text().replace("num_trials: 4", "num_trials: 5"))
    with pytest.raises(RunDirError, match=f"^{run_dir.path}: space.yaml was changed after the run started"):
        run_dir.read_space(read)


def test_a_run_made_with_set_overrides_records_and_resumes_the_merged_space(tmp_path):
    path = write_space(tmp_path / "tiny.yaml", TINY_SPACE)
    spec = load_space(path, ["searcher.num_trials=7"])
    run_dir = RunDir(tmp_path / "run")
    run_dir.create(spec, StageCache(tmp_path / "cache"))
    text = run_dir.space_yaml.read_text()
    assert text.startswith(f"# {path} with --set searcher.num_trials=7\n")
    resumed = run_dir.read_space(run_dir.read_manifest())
    assert resumed.digest == spec.digest and resumed.searcher.num_trials == 7


def _saved_before(module: object, name: str, state: dict, monkeypatch: pytest.MonkeyPatch) -> object:
    """An object as an earlier version pickled it: of class ``<module>.<name>``, where that version defined the
    class, with ``state`` as its attributes."""
    old = type(name, (), {"__module__": module.__name__, "__qualname__": name})
    monkeypatch.setattr(module, name, old, raising=False)
    obj = old()
    obj.__dict__.update(state)
    return obj


def test_tune_state_saved_before_the_run_dir_existed_still_resumes(tmp_path, monkeypatch):
    """Tune's ``tuner.pkl`` holds the callbacks.  In runs started before ``RunDir`` it holds ``LiveTables`` as
    ``search.export.LiveTables`` with the directory as a ``Path`` and its ``search.trainable.TrialReports``, and
    ``StudyRecorder`` with a ``Path``; before ``prefilter.score`` ``LiveTables`` held each relation's
    ``NonLocalness``, which ranked the sets: ``--resume`` must still unpickle them into working callbacks."""
    recorder = StudyRecorder(RunDir(tmp_path), parse_space(TINY_SPACE, "tiny.yaml"), {}, 3)
    recorder.__dict__["run_dir"] = tmp_path
    with monkeypatch.context() as old_names:
        reports = _saved_before(search.trainable, "TrialReports", {"root": tmp_path / "reports"}, old_names)
        state = {
            "run_dir": tmp_path,
            "decisions": [SetDecision(("flip",), 0.9, True, "kept")],
            "scores": {"flip": NonLocalness("flip", "pose", 0.7, 0.875, 0.8)},
            "objectives": (ObjectiveSpec("mpjpe", "min"),),
            "max_evaluations": 3,
            "failed": {},
            "reports": reports,
        }
        saved = cloudpickle.dumps([_saved_before(search.export, "LiveTables", state, old_names), recorder])
    tables, recorder = cloudpickle.loads(saved)
    assert isinstance(tables, LiveTables) and isinstance(tables.reports, TrialReports)
    assert tables.run_dir == RunDir(tmp_path) and recorder.run_dir == RunDir(tmp_path)
    trial = SimpleNamespace(trial_id="t1", status="TERMINATED", config={"relations": "flip"}, last_result={})
    trial.metric_analysis = {}
    tables.on_trial_start(0, [trial], trial)
    tables.on_trial_complete(0, [trial], trial)
    assert tables.reports.ended("t1") and (tmp_path / "trials.csv").is_file()
    assert pd.read_csv(tmp_path / "trials.csv")["nl_flip"].tolist() == [0.8]


def test_a_held_run_refuses_a_second_holder_until_it_lets_go(tmp_path):
    run_dir = RunDir(tmp_path)
    refused = pytest.raises(RunDirError, match=f"another search is running in it .search/run.py, pid {os.getpid()} on")
    with run_dir.hold(), refused, run_dir.hold():
        pass
    with run_dir.hold():  # let go at the end of the block
        pass


def test_a_killed_holder_frees_the_run_at_once(tmp_path):
    """The lock is the kernel's: SIGKILL, a lost node or a power cut leave nothing to clean up before a resume."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from search.run_dir import RunDir\n"
            f"with RunDir({str(tmp_path)!r}).hold():\n    print('held', flush=True); time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirError, match=f"pid {holder.pid} on"), RunDir(tmp_path).hold():
            pass
    finally:
        holder.kill()
        holder.wait()
    with RunDir(tmp_path).hold():
        assert f"pid {os.getpid()} on" in RunDir(tmp_path).lock_file.read_text()


def test_the_lock_file_gets_the_mode_the_umask_gives(tmp_path):
    saved = os.umask(0o022)
    try:
        with RunDir(tmp_path).hold():
            pass
    finally:
        os.umask(saved)
    assert stat.S_IMODE(RunDir(tmp_path).lock_file.stat().st_mode) == 0o644


def test_creating_a_run_that_appeared_meanwhile_is_a_clear_error(tmp_path):
    spec = load_space(write_space(tmp_path / "tiny.yaml", TINY_SPACE))
    (tmp_path / "run").mkdir()
    with pytest.raises(RunDirError, match="run: already exists; choose another --name or --out, or --resume it"):
        RunDir(tmp_path / "run").create(spec, StageCache(tmp_path / "cache"))
