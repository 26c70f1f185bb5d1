"""Unpickling that can only build NumPy arrays and plain containers.

Datasets such as 3DPW ship as pickles, and VideoPose3D's Human3.6M file keeps a dict inside an object ``.npy``.
A plain ``pickle.load`` of a downloaded file runs whatever code the file names; :func:`restricted_load` admits only
the globals that NumPy arrays, NumPy scalars and builtin containers need, and refuses everything else with a
:class:`DatasetError` *before* calling it.  ``_codecs.encode`` is admitted because Python 3 writes ``bytes`` through
it at pickle protocol 2; it only turns a string into bytes.
"""

from __future__ import annotations

import builtins
import codecs
import pickle
from typing import IO, Any

import numpy as np

from nlrd.data.errors import DatasetError

try:  # NumPy >= 2
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # NumPy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]

#: Builtins that pickles call for containers and numbers with no opcode of their own at low protocols.
_BUILTINS = ("dict", "list", "tuple", "set", "frozenset", "slice", "complex", "bytes", "bytearray")
# NumPy 1.x pickles name ``numpy.core``, NumPy 2.x pickles ``numpy._core``: both resolve to the installed module.
_NUMPY_PACKAGES = ("numpy.core", "numpy._core")

#: ``(module, name)`` -> object: the only globals a restricted pickle may reference.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}
for _package in _NUMPY_PACKAGES:
    ALLOWED_GLOBALS[(f"{_package}.multiarray", "_reconstruct")] = _multiarray._reconstruct
    ALLOWED_GLOBALS[(f"{_package}.multiarray", "scalar")] = _multiarray.scalar
    ALLOWED_GLOBALS[(f"{_package}.numeric", "_frombuffer")] = _numeric._frombuffer
for _module in ("builtins", "__builtin__"):  # Python 2 pickles name the builtins module ``__builtin__``
    for _name in _BUILTINS:
        ALLOWED_GLOBALS[(_module, _name)] = getattr(builtins, _name)


class RestrictedUnpickler(pickle.Unpickler):
    """A ``pickle.Unpickler`` whose ``find_class`` resolves only :data:`ALLOWED_GLOBALS`."""

    def __init__(self, file: IO[bytes], source: str, encoding: str = "latin1") -> None:
        super().__init__(file, encoding=encoding)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise DatasetError(
                f"{self.source}: refusing to unpickle the global {module}.{name}; only NumPy arrays and builtin "
                "containers are loaded from untrusted pickles"
            ) from None


def restricted_load(fileobj: IO[bytes], source: str | None = None, encoding: str = "latin1") -> Any:
    """Unpickle ``fileobj`` admitting only NumPy arrays/scalars and builtin containers.

    ``encoding="latin1"`` reads Python 2 pickles (3DPW's) whose arrays were stored as byte strings.  Any other
    global, or a corrupt stream, raises :class:`DatasetError` naming ``source`` (default: the file's name).
    """
    name = source or str(getattr(fileobj, "name", "<pickle stream>"))
    try:
        return RestrictedUnpickler(fileobj, name, encoding=encoding).load()
    except DatasetError:
        raise
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError, IndexError, KeyError) as exc:
        raise DatasetError(f"{name}: not a readable pickle ({type(exc).__name__}: {exc})") from exc
