from __future__ import annotations

import pandas as pd
import pytest

from nlrd.atomic import write_atomic, write_text_atomic


def test_a_write_that_fails_half_way_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "trials.csv"
    write_text_atomic(path, "trial_id,mpjpe\na,1.0\n")

    def crash(tmp):
        tmp.write_text("trial_id,mpj")  # half a file, then the writer dies
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, crash)
    assert pd.read_csv(path).to_dict("records") == [{"trial_id": "a", "mpjpe": 1.0}]
    assert [p.name for p in tmp_path.iterdir()] == ["trials.csv"]


def test_writes_create_the_folder_and_replace_the_whole_file(tmp_path):
    path = tmp_path / "run" / "summary.md"
    write_text_atomic(path, "a much longer first version\n")
    write_text_atomic(path, "short\n")
    assert path.read_text() == "short\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["summary.md"]
