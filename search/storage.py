"""The file system Ray Tune and Ray Train write a run directory through: the local one, except that a file written
there is whole or absent, never half-written.

Tune copies its saved state (``tuner.pkl``, ``experiment_state-*.json``, the searcher's state) from a staging folder
into the run directory after every step, rewriting each file in place, and Ray Train rewrites its checkpoint
snapshot the same way.  A driver killed during such a copy (SIGKILL, a lost head node) left an empty ``tuner.pkl``,
and ``--resume`` then failed in Tune's unpickling with ``EOFError``.  Through this file system each file is written
to a temporary file beside it and renamed into place when Ray closes it, as ``nlrd.atomic`` does for our own files,
so a kill leaves the last whole copy.
"""

from __future__ import annotations

import os
from typing import Any, BinaryIO

import pyarrow
import pyarrow.fs as pafs

from nlrd.atomic import temporary_file_beside


class _RenamedOnClose:
    """A binary file object that writes a temporary file beside ``path`` and renames it to ``path`` on close.  A
    write that fails marks the file broken: closing it then removes the temporary file and leaves ``path`` as it
    was."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.tmp = temporary_file_beside(path)
        self._file: BinaryIO = self.tmp.open("wb")  # noqa: SIM115 (the stream outlives this call: close() ends it)
        self._broken = False

    @property
    def closed(self) -> bool:
        return self._file.closed

    def write(self, data: Any) -> int:
        try:
            return self._file.write(data)
        except BaseException:
            self._broken = True
            raise

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if self._file.closed:
            return
        try:
            self._file.close()
        except BaseException:
            self._broken = True
            raise
        finally:
            if self._broken:
                os.unlink(self.tmp)
            else:
                os.replace(self.tmp, self.path)


class AtomicLocalHandler(pafs.FileSystemHandler):
    """``pyarrow.fs.LocalFileSystem`` whose output streams and file copies land by rename.  Appends stay appends
    (nothing Ray writes to a run directory appends)."""

    def __init__(self) -> None:
        self._local = pafs.LocalFileSystem()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AtomicLocalHandler)

    def __hash__(self) -> int:
        return hash(AtomicLocalHandler)

    def get_type_name(self) -> str:
        return "local+atomic"

    def normalize_path(self, path: str) -> str:
        return self._local.normalize_path(path)

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return self._local.get_file_info(paths)

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        return self._local.get_file_info(selector)

    def create_dir(self, path: str, recursive: bool) -> None:
        self._local.create_dir(path, recursive=recursive)

    def delete_dir(self, path: str) -> None:
        self._local.delete_dir(path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self._local.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        raise OSError("refusing to delete the contents of the root directory")

    def delete_file(self, path: str) -> None:
        self._local.delete_file(path)

    def move(self, src: str, dest: str) -> None:
        self._local.move(src, dest)

    def copy_file(self, src: str, dest: str) -> None:
        with self._local.open_input_stream(src) as source, self.open_output_stream(dest, None) as target:
            while chunk := source.read(1 << 20):
                target.write(chunk)

    def open_input_stream(self, path: str) -> pyarrow.NativeFile:
        return self._local.open_input_stream(path)

    def open_input_file(self, path: str) -> pyarrow.NativeFile:
        return self._local.open_input_file(path)

    def open_output_stream(self, path: str, metadata: dict | None) -> pyarrow.NativeFile:
        return pyarrow.PythonFile(_RenamedOnClose(path), mode="w")

    def open_append_stream(self, path: str, metadata: dict | None) -> pyarrow.NativeFile:
        return self._local.open_append_stream(path, metadata=metadata)


def run_filesystem() -> pafs.FileSystem:
    """The file system to give Ray as ``storage_filesystem`` beside a run directory's ``storage_path``."""
    return pafs.PyFileSystem(AtomicLocalHandler())
