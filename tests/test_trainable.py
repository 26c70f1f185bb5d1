"""``search.trainable.report_again``: a trial restored at its last step reports its last evaluation again."""

from __future__ import annotations

import json

from search.trainable import LAST_REPORT_FILE, report_again


def test_a_trial_restored_at_its_last_step_reports_its_last_evaluation_again(tmp_path):
    (tmp_path / LAST_REPORT_FILE).write_text(json.dumps({"step": 12, "mpjpe": 150.5, "resumed_from_step": 0}))
    assert report_again(tmp_path, resumed_from=12, steps=12) == {"step": 12, "mpjpe": 150.5, "resumed_from_step": 12}


def test_a_trial_with_steps_left_trains_them_instead(tmp_path):
    (tmp_path / LAST_REPORT_FILE).write_text(json.dumps({"step": 6, "mpjpe": 160.0}))
    assert report_again(tmp_path, resumed_from=6, steps=12) is None
    assert report_again(tmp_path, resumed_from=0, steps=12) is None


def test_a_checkpoint_without_its_report_trains_as_before(tmp_path):
    assert report_again(tmp_path, resumed_from=12, steps=12) is None
