"""``search.trainable``: a trial restored at its last step reports its last evaluation again, and a trial's own
process needs no torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ray import cloudpickle

from nlrd.pipeline import StageCache, stage_keys
from search.run_dir import RunDir
from search.space import load_space
from search.trainable import LAST_REPORT_FILE, make_trainable, report_again

REPO = Path(__file__).resolve().parent.parent


def test_a_trial_restored_at_its_last_step_reports_its_last_evaluation_again(tmp_path):
    (tmp_path / LAST_REPORT_FILE).write_text(json.dumps({"step": 12, "mpjpe": 150.5, "resumed_from_step": 0}))
    assert report_again(tmp_path, resumed_from=12, steps=12) == {"step": 12, "mpjpe": 150.5, "resumed_from_step": 12}


def test_a_trial_with_steps_left_trains_them_instead(tmp_path):
    (tmp_path / LAST_REPORT_FILE).write_text(json.dumps({"step": 6, "mpjpe": 160.0}))
    assert report_again(tmp_path, resumed_from=6, steps=12) is None
    assert report_again(tmp_path, resumed_from=0, steps=12) is None


def test_a_checkpoint_without_its_report_trains_as_before(tmp_path):
    assert report_again(tmp_path, resumed_from=12, steps=12) is None


def test_a_trial_process_unpickles_its_trainable_without_torch(tmp_path):
    """Tune ships the trial function to a fresh actor process; only the Train worker needs torch and ``nlrd`` (the
    run directory's file system brings the standard-library-only ``nlrd.atomic``)."""
    spec = load_space(REPO / "spaces" / "smoke.yaml")
    relations = spec.relations.candidates
    trainable = make_trainable(
        spec,
        StageCache(tmp_path / "cache"),
        stage_keys(spec.stages, relations),
        RunDir(tmp_path / "run"),
        {"flip": 0.5},
    )
    blob = tmp_path / "trainable.pkl"
    blob.write_bytes(cloudpickle.dumps(trainable))
    check = (
        "import pickle, sys; pickle.loads(open(sys.argv[1], 'rb').read()); "
        "print(sorted(m for m in sys.modules if m in ('torch', 'search.space') "
        "or m.startswith('nlrd') and m not in ('nlrd', 'nlrd.atomic')))"
    )
    out = subprocess.run([sys.executable, "-c", check, str(blob)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
