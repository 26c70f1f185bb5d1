"""The run directory's file system: what Ray writes there is whole or absent, even when the writer is killed."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.fs as pafs

from search.storage import run_filesystem


def test_a_writer_killed_mid_file_leaves_the_last_whole_copy(tmp_path):
    """SIGKILL between two writes of a file's new content: the old content stays, whole, under the name."""
    target = tmp_path / "tuner.pkl"
    target.write_bytes(b"the whole old state")
    child = textwrap.dedent(
        f"""
        import os, signal
        from search.storage import run_filesystem
        stream = run_filesystem().open_output_stream({str(target)!r})
        stream.write(b"half of the ")
        stream.flush()
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run([sys.executable, "-c", child], cwd=Path(__file__).parents[1], timeout=120)
    assert done.returncode == -signal.SIGKILL
    assert target.read_bytes() == b"the whole old state"


def test_plain_local_writes_would_leave_half_a_file(tmp_path):
    """The failure the file system exists for, on pyarrow's local file system: the same kill truncates the file."""
    target = tmp_path / "tuner.pkl"
    target.write_bytes(b"the whole old state")
    child = textwrap.dedent(
        f"""
        import os, signal
        import pyarrow.fs
        stream = pyarrow.fs.LocalFileSystem().open_output_stream({str(target)!r})
        stream.write(b"half of the ")
        stream.flush()
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    subprocess.run([sys.executable, "-c", child], timeout=120)
    assert target.read_bytes() == b"half of the "


def test_a_closed_stream_replaces_the_file_and_leaves_no_temporary_file(tmp_path):
    fs = run_filesystem()
    target = tmp_path / "experiment_state.json"
    target.write_text("old")
    with fs.open_output_stream(str(target)) as stream:
        stream.write(b"new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["experiment_state.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary_one(tmp_path):
    """A write the disk refuses (here a file size limit, as a full disk would): the old file stays whole."""
    target = tmp_path / "state.json"
    target.write_text("old")
    child = textwrap.dedent(
        f"""
        import resource, signal
        from search.storage import run_filesystem
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, resource.RLIM_INFINITY))
        try:
            with run_filesystem().open_output_stream({str(target)!r}) as stream:
                stream.write(bytes(100_000))
        except OSError as error:
            print("refused:", error)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", child], cwd=Path(__file__).parents[1], capture_output=True, text=True, timeout=120
    )
    assert "refused:" in done.stdout, done.stdout + done.stderr
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_copying_a_folder_in_gives_the_same_files_with_the_umask_mode(tmp_path):
    """How Tune uploads its staging folder: ``pyarrow.fs.copy_files`` into the file system."""
    source = tmp_path / "staging"
    (source / "trial").mkdir(parents=True)
    (source / "searcher-state.pkl").write_bytes(os.urandom(3_000_000))
    (source / "trial" / "result.json").write_text('{"mpjpe": 1.0}\n')
    old = os.umask(0o022)
    try:
        pafs.copy_files(str(source), str(tmp_path / "run"), destination_filesystem=run_filesystem())
    finally:
        os.umask(old)
    for name in ("searcher-state.pkl", "trial/result.json"):
        copied = tmp_path / "run" / name
        assert copied.read_bytes() == (source / name).read_bytes()
        assert copied.stat().st_mode & 0o777 == 0o644


def test_file_operations_reach_the_local_disk(tmp_path):
    fs = run_filesystem()
    fs.create_dir(str(tmp_path / "a" / "b"))
    (tmp_path / "a" / "b" / "x").write_text("x")
    fs.copy_file(str(tmp_path / "a" / "b" / "x"), str(tmp_path / "a" / "y"))
    fs.move(str(tmp_path / "a" / "y"), str(tmp_path / "a" / "z"))
    with fs.open_input_stream(str(tmp_path / "a" / "z")) as stream:
        assert stream.read() == b"x"
    listed = fs.get_file_info(pafs.FileSelector(str(tmp_path / "a"), recursive=True))
    assert sorted(Path(info.path).name for info in listed) == ["b", "x", "z"]
    fs.delete_dir(str(tmp_path / "a" / "b"))
    assert fs.get_file_info(str(tmp_path / "a" / "b")).type == pafs.FileType.NotFound


def test_it_survives_the_pickling_that_ships_it_to_ray_actors(tmp_path):
    fs = pickle.loads(pickle.dumps(run_filesystem()))
    assert fs.equals(run_filesystem())
    with fs.open_output_stream(str(tmp_path / "f")) as stream:
        stream.write(b"ok")
    assert (tmp_path / "f").read_bytes() == b"ok"
