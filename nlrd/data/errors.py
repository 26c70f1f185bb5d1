"""The one error every real-data loader raises."""

from __future__ import annotations


class DatasetError(ValueError):
    """A data file is missing, malformed or unusable.

    The message names the file (and the key, field or line) and what was expected, so that a user can fix the
    data or the call without reading a traceback into the loader.
    """
