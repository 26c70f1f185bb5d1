from __future__ import annotations

import os
import stat

import pandas as pd
import pytest
import torch

from nlrd import atomic
from nlrd.atomic import current_umask, remove_temporary_files, temporary_file_beside, write_atomic, write_text_atomic


@pytest.fixture
def umask():
    """Set the process's umask for one test and restore it after."""
    saved = os.umask(0o022)
    yield os.umask
    os.umask(saved)


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


@pytest.mark.parametrize(("mask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_files_and_folders_get_the_mode_the_umask_gives(tmp_path, umask, mask, file_mode, dir_mode):
    """Not the temporary file's private 0600: colleagues on a shared file system read results when the umask lets
    them, like every file other tools write."""
    umask(mask)
    text = write_text_atomic(tmp_path / "run" / "trials.csv", "trial_id\n")
    checkpoint = write_atomic(tmp_path / "run" / "cache" / "prior-abc.pt", lambda tmp: torch.save({"w": 1}, tmp))
    assert stat.S_IMODE(text.stat().st_mode) == file_mode
    assert stat.S_IMODE(checkpoint.stat().st_mode) == file_mode
    assert stat.S_IMODE(checkpoint.parent.stat().st_mode) == dir_mode


def test_the_umask_reads_the_same_where_proc_is_missing(tmp_path, umask, monkeypatch):
    umask(0o027)
    assert current_umask() == 0o027
    monkeypatch.setattr(atomic, "_PROC_STATUS", tmp_path / "absent")
    assert current_umask() == 0o027
    assert os.umask(0o027) == 0o027  # reading it left it as it was


def test_the_temporary_files_of_unfinished_writes_are_found_and_removed_and_nothing_else(tmp_path):
    """What a kill between creating a temporary file and renaming it leaves, in any folder below; a user's own files
    that merely look alike stay."""
    (tmp_path / "tune").mkdir()
    left = [temporary_file_beside(tmp_path / "tune" / "tuner.pkl"), temporary_file_beside(tmp_path / "trials.csv")]
    kept = [tmp_path / name for name in ("trials.csv", ".notes.tmp", "a.abcdefgh.tmp", ".x.abcdefghi.tmp")]
    for path in kept:
        path.write_text("mine")
    assert sorted(remove_temporary_files(tmp_path)) == sorted(left)
    assert not any(path.exists() for path in left) and all(path.exists() for path in kept)
    assert remove_temporary_files(tmp_path) == []
