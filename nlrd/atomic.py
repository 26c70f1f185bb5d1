"""Files that are either whole or absent: every result and checkpoint is written through a temporary file in the
same folder and renamed into place, so a crash (or a reader racing the writer) never sees half a file.  The file
gets the mode any other tool would give it (``0o666`` less the umask), not the temporary file's private ``0o600``, so
colleagues on a shared file system can read results and caches whenever the umask lets them."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

#: Where Linux reports the process's umask without changing it.
_PROC_STATUS = Path("/proc/self/status")


def current_umask() -> int:
    """The process's umask, read on every call because it can change after import.

    Linux reports it in ``/proc/self/status``; elsewhere it can only be read by setting it, so it is set to the
    strictest mask for that instant: a file another thread creates meanwhile comes out private, never world-writable.
    """
    try:
        for line in _PROC_STATUS.read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


#: The name of a file :func:`temporary_file_beside` makes: ``.<name>.<mkstemp's 8 random characters>.tmp``.
TEMPORARY_NAME = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")


def temporary_file_beside(path: str | os.PathLike) -> Path:
    """A fresh, empty file in ``path``'s folder (``.<name>.<random>.tmp``) with the mode ``path`` should get, to be
    written and then renamed to ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~current_umask())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def write_atomic(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a fresh temporary path beside ``path``, then rename it to ``path``; on any error the
    old ``path`` (if any) is left as it was and the temporary file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_file_beside(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def remove_temporary_files(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of writes that never finished (a process killed between creating one and renaming
    it) anywhere under ``folder``, and return them.  Only for a folder no one writes in at the moment: a write in
    progress would lose its temporary file."""
    stale = [p for p in Path(folder).rglob(".*.tmp") if TEMPORARY_NAME.fullmatch(p.name) and p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
