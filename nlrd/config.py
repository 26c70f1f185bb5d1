"""Range checks shared by the stage and adaptation configs.

Each config checks its own fields when it is built, so a bad value is refused where it is written (a space
file, a benchmark flag, a Python call) rather than minutes later inside a worker.  ``ConfigError`` names the
field, so the space checker can point at ``stages.source.steps`` or ``params.tau`` in the file.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, fields, is_dataclass
from typing import Any

#: Field metadata of a stage config field added after stage caches existed: at its default the field stays out of
#: the stage's cache key (``key_payload``), so configs that leave it alone keep their keys and their cached stages.
KEY_OMITS_DEFAULT = "key_omits_default"


def key_payload(config: Any) -> Any:
    """What a stage's cache key hashes of ``config``: its fields, less any marked ``KEY_OMITS_DEFAULT`` that holds
    its default.  A config that is not a dataclass is hashed as it is."""
    if not is_dataclass(config):
        return config
    payload = asdict(config)
    for f in fields(config):
        if f.metadata.get(KEY_OMITS_DEFAULT) and getattr(config, f.name) == f.default:
            del payload[f.name]
    return payload


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
