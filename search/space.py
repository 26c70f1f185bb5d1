"""Search spaces: YAML -> validated ``SearchSpec`` -> Optuna distributions.

The public entry of the space: ``load_space`` reads a file, ``parse_space`` an already-loaded mapping, section by
section.  What the sections become is ``search.space_spec``; the grammar of tuned values (``params``) is
``search.space_grammar``; the rules a space must meet are ``search.space_checker``.  Everything is checked before
any work starts; a problem raises ``SpaceError`` naming the file, the key path and what is allowed.  That includes
the data a ``data`` section names (``nlrd.data.sources``): each path must exist and hold its format, or the run
stops before Ray starts.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from nlrd.pipeline import StageConfigs
from nlrd.train.adapt import AdaptConfig
from nlrd.train.motion import MotionConfig
from nlrd.train.prior import PriorConfig
from nlrd.train.relation import RelationConfig
from nlrd.train.source import SourceConfig
from nlrd.typed_fields import FieldError, known_keys, mapping
from nlrd.world import WorldConfig
from search.space_checker import SpaceChecker, SpaceError
from search.space_grammar import GRAMMAR, Param
from search.space_spec import (
    ACCURACY_METRICS,
    LOGGER_PACKAGES,
    OBJECTIVE_METRICS,
    FailureSpec,
    ObjectiveSpec,
    PrefilterSpec,
    RelationsSpec,
    ResourcesSpec,
    SchedulerSpec,
    SearcherSpec,
    SearchSpec,
)

__all__ = [
    "ACCURACY_METRICS",
    "GRAMMAR",
    "LOGGER_PACKAGES",
    "OBJECTIVE_METRICS",
    "FailureSpec",
    "ObjectiveSpec",
    "Param",
    "PrefilterSpec",
    "RelationsSpec",
    "ResourcesSpec",
    "SchedulerSpec",
    "SearchSpec",
    "SearcherSpec",
    "SpaceError",
    "load_space",
    "parse_space",
]

_SECTIONS: dict[str, Any] = {
    "name": str,
    "world": WorldConfig,
    "data": None,  # nested: fps and one source per part (mocap / source / target_train / target_val)
    "stages": None,  # nested: prior / motion / relation / source
    "relations": RelationsSpec,
    "prefilter": PrefilterSpec,
    "searcher": SearcherSpec,
    "scheduler": SchedulerSpec,
    "objectives": ObjectiveSpec,  # a list of {metric, mode}
    "resources": ResourcesSpec,
    "failure": FailureSpec,
    "loggers": None,  # a list of tracker names (LOGGER_PACKAGES)
    "adapt": AdaptConfig,
    "params": AdaptConfig,
}
_STAGE_SECTIONS = {"prior": PriorConfig, "motion": MotionConfig, "relation": RelationConfig, "source": SourceConfig}


def load_space(path: str | Path, overrides: Sequence[str] = ()) -> SearchSpec:
    """Read and validate a space file, with the command line's ``--set KEY.PATH=VALUE`` items merged in first (so
    they meet the same checks as the file); raise ``SpaceError`` on any problem."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpaceError(f"{path}: cannot read the search space file ({exc.strerror or exc}).") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpaceError(f"{path}: not valid YAML: {exc}") from None
    if not overrides:
        return parse_space(raw, path)
    return dataclasses.replace(parse_space(with_overrides(raw, overrides, path), path), overrides=tuple(overrides))


def with_overrides(raw: Any, items: Sequence[str], path: Path) -> dict[str, Any]:
    """A copy of the space mapping ``raw`` with each ``KEY.PATH=VALUE`` set; ``VALUE`` is read as YAML
    (``--set searcher.num_trials=4``, ``--set relations.candidates=[flip,inplane5]``).  Missing sections are made;
    a key path through something that is not a section is refused, naming the item."""
    merged = copy.deepcopy(raw) if isinstance(raw, dict) else {}
    for item in items:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise SpaceError(f"--set {item!r}: expected KEY.PATH=VALUE, e.g. searcher.num_trials=4 ({path})")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SpaceError(f"--set {item!r}: the value is not valid YAML: {exc}") from None
        section = merged
        for depth, part in enumerate(parts[:-1]):
            section = section.setdefault(part, {})
            if not isinstance(section, dict):
                where = ".".join(parts[: depth + 1])
                raise SpaceError(f"--set {item!r}: {path}: {where} is a value, not a section with keys")
        section[parts[-1]] = value
    return merged


def parse_space(raw: Any, path: str | Path = "<space>") -> SearchSpec:
    """Validate an already-loaded YAML mapping."""
    path = Path(path)
    checker = SpaceChecker(path)
    try:
        return _sections(raw, path, checker)
    except FieldError as exc:  # a wrong type or key, found where the section was read
        raise checker.error(exc.key, exc.problem, exc.allowed) from None


def _sections(raw: Any, path: Path, check: SpaceChecker) -> SearchSpec:
    """Each section read and checked on its own, then the rules between them; the data files last, since reading
    them is the slow part."""
    check.not_empty(raw, _SECTIONS)
    if not isinstance(raw, dict):
        check.fail("", f"the file must hold a mapping of sections, got {type(raw).__name__}", _SECTIONS)
    known_keys("", raw, _SECTIONS)

    stages_raw = mapping("stages", raw.get("stages", {}))
    known_keys("stages", stages_raw, _STAGE_SECTIONS)
    stages = StageConfigs(
        world=check.dataclass("world", WorldConfig, raw.get("world", {})),
        data=check.data(raw.get("data", {})),
        **{
            name: check.dataclass(f"stages.{name}", cls, stages_raw.get(name, {}))
            for name, cls in _STAGE_SECTIONS.items()
        },
    )
    relations = check.dataclass("relations", RelationsSpec, raw.get("relations", {}))
    prefilter = check.dataclass("prefilter", PrefilterSpec, raw.get("prefilter", {}))
    searcher = check.dataclass("searcher", SearcherSpec, raw.get("searcher", {}))
    scheduler = check.dataclass("scheduler", SchedulerSpec, raw.get("scheduler", {}))
    objectives = check.objectives(raw.get("objectives", [{}]))
    resources = check.dataclass("resources", ResourcesSpec, raw.get("resources", {}))
    failure = check.dataclass("failure", FailureSpec, raw.get("failure", {}))
    encoder = stages.source.encoder
    adapt = check.adapt_fields(raw.get("adapt", {}), encoder)
    params = check.params(raw.get("params", {}), adapt, encoder)

    check.relations(relations)
    check.encoder_blocks(encoder, adapt, params)
    check.weighted_rates(adapt, params)
    check.prefilter(prefilter)
    check.searcher(searcher)
    check.scheduler(scheduler, objectives)
    check.resources(resources)
    check.failure(failure)
    loggers = check.loggers(raw.get("loggers", []))
    name = check.name(raw.get("name", path.stem))
    check.data_files(stages.data)
    return SearchSpec(
        name=name,
        path=path,
        stages=stages,
        relations=relations,
        prefilter=prefilter,
        searcher=searcher,
        scheduler=scheduler,
        objectives=objectives,
        resources=resources,
        failure=failure,
        loggers=loggers,
        adapt=adapt,
        params=params,
        raw=raw,
    )
