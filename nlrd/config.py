"""Range checks shared by the stage and adaptation configs.

Each config checks its own fields when it is built, so a bad value is refused where it is written (a space
file, a benchmark flag, a Python call) rather than minutes later inside a worker.  ``ConfigError`` names the
field, so the space checker can point at ``stages.source.steps`` or ``params.tau`` in the file.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class ConfigError(ValueError):
    """A config field out of range.  ``field``: its name; ``problem``: what is wrong; ``allowed``: the words it
    may take, where it takes one of a few."""

    def __init__(self, owner: str, field: str, problem: str, allowed: Iterable[Any] | None = None) -> None:
        self.field, self.problem = field, problem
        self.allowed = None if allowed is None else tuple(allowed)
        message = f"{owner}.{field} {problem}"
        if self.allowed is not None:
            message += f"; allowed: {', '.join(map(str, self.allowed))}"
        super().__init__(message)


def check_ranges(
    cfg: Any,
    *,
    counts: Iterable[str] = (),
    positive: Iterable[str] = (),
    non_negative: Iterable[str] = (),
    fractions: Iterable[str] = (),
    words: dict[str, Iterable[str]] | None = None,
) -> None:
    """Raise ``ConfigError`` for the first field of ``cfg`` out of its range.

    ``counts``: integers of at least 1 (steps, sizes); ``positive``: numbers above 0 (learning rates,
    temperatures); ``non_negative``: numbers of at least 0 (loss weights, where 0 turns a term off);
    ``fractions``: numbers in [0, 1]; ``words``: field -> the words it may take.
    """
    owner = type(cfg).__name__
    for name in counts:
        if getattr(cfg, name) < 1:
            raise ConfigError(owner, name, f"must be at least 1, got {getattr(cfg, name)}")
    for name in positive:
        if not getattr(cfg, name) > 0:
            raise ConfigError(owner, name, f"must be > 0, got {getattr(cfg, name)}")
    for name in non_negative:
        if not getattr(cfg, name) >= 0:
            raise ConfigError(owner, name, f"must be >= 0, got {getattr(cfg, name)}")
    for name in fractions:
        if not 0 <= getattr(cfg, name) <= 1:
            raise ConfigError(owner, name, f"must be in [0, 1], got {getattr(cfg, name)}")
    for name, allowed in (words or {}).items():
        if getattr(cfg, name) not in tuple(allowed):
            raise ConfigError(owner, name, f"got {getattr(cfg, name)!r}", allowed)
