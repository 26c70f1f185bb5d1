"""The rules a search space must meet before any work starts, each failing with one ``SpaceError`` paragraph
that names the file, the key path and what is allowed.

Field types and keys are checked by ``nlrd.typed_fields``, each config's ranges by the config itself, the ``data``
section by ``nlrd.data.sources.DataConfig``; the checker adds what needs the space as a whole (relation sets, the
encoder's blocks, objectives and their directions, the scheduler against the objectives) and says where in the
file every problem is.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from nlrd.config import ConfigError
from nlrd.data.errors import DatasetError
from nlrd.data.sources import DataConfig, DataConfigError
from nlrd.models.image import build_image_encoder, default_trainable_block, trainable_blocks
from nlrd.relations import RELATION_NAMES, TILTED_FORM, is_relation_name
from nlrd.train.adapt import AdaptConfig
from nlrd.typed_fields import field_types, join_key, known_keys, mapping, typed_fields, typed_value
from search.space_grammar import ExpressionError, Param, parse_expression
from search.space_spec import (
    ACCURACY_METRICS,
    ALLOWED_AGGREGATES,
    ALLOWED_ALGORITHMS,
    ALLOWED_MODES,
    ALLOWED_SCHEDULERS,
    ALLOWED_SCORES,
    LOGGER_PACKAGES,
    OBJECTIVE_METRICS,
    TRIAL_COORDINATOR_CPU,
    FailureSpec,
    ObjectiveSpec,
    PrefilterSpec,
    RelationsSpec,
    ResourcesSpec,
    SchedulerSpec,
    SearcherSpec,
    trial_adapt_config,
)

#: AdaptConfig fields the search owns: the relation set is chosen by the searcher, never by hand.
_SEARCH_OWNED = ("relations",)
#: AdaptConfig fields a space may fix (``adapt``) or tune (``params``), with their types.
_ADAPT_FIELDS = field_types(AdaptConfig, exclude=_SEARCH_OWNED)


class SpaceError(ValueError):
    """A search space that cannot run; the message says where and what is allowed."""


class SpaceChecker:
    """The rules of a space read from ``path``; every failure is a ``SpaceError`` naming ``path`` and the key."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, key: str, problem: str, allowed: Any = None) -> SpaceError:
        where = f"{self.path}: {key}" if key else f"{self.path}"
        message = f"{where}: {problem}."
        if allowed is not None:
            message += f" Allowed: {', '.join(map(str, allowed))}."
        return SpaceError(message)

    def fail(self, key: str, problem: str, allowed: Any = None) -> typing.NoReturn:
        raise self.error(key, problem, allowed)

    def not_empty(self, raw: Any, sections: Iterable[str]) -> None:
        """Refuse a file with no sections (empty, only comments, ``{}`` or ``null``): running the default search
        from it silently would hide a wrong path or an unsaved file."""
        if raw is None or raw == {}:
            self.fail(
                "",
                "the file holds no sections (it is empty, only comments, {} or null); a search space must be a YAML "
                "mapping with at least one section, each section left out taking its defaults "
                "(spaces/smoke.yaml is a small complete example)",
                sections,
            )

    def dataclass(self, key: str, cls: type, value: Any) -> Any:
        """The section ``value`` as a ``cls``: known keys, typed values, the config's own ranges."""
        fields = typed_fields(key, field_types(cls), value)
        return self.built(key, lambda: cls(**fields))

    def built(self, key: str, make: Callable[[], Any]) -> Any:
        """``make()``, with the config's own range checks reported at ``key.<field>``."""
        try:
            return make()
        except ConfigError as exc:
            self.fail(join_key(key, exc.field), exc.problem, exc.allowed)

    def data(self, value: Any) -> DataConfig:
        """The ``data`` section's structure (kinds, keys, types); the files are checked by ``data_files``."""
        try:
            return DataConfig.from_mapping(value)
        except DataConfigError as exc:
            self.fail(f"data.{exc.key}" if exc.key else "data", str(exc))

    def data_files(self, data: DataConfig) -> None:
        """Every path the data section names exists and holds what its kind expects."""
        try:
            data.check()
        except DataConfigError as exc:
            self.fail(f"data.{exc.key}", str(exc))
        except DatasetError as exc:
            self.fail("data", str(exc))

    def _adapt_config(self, key: str, encoder: str, fields: dict[str, Any]) -> None:
        """Build the config a trial with these values would get, so its range checks speak for ``key``."""
        self.built(key, lambda: trial_adapt_config(encoder, fields, (), {}))

    def adapt_fields(self, value: Any, encoder: str) -> dict[str, Any]:
        """The fixed ``adapt`` fields, checked as every trial's config with the ``encoder``'s defaults."""
        fields = typed_fields("adapt", _ADAPT_FIELDS, value)
        self._adapt_config("adapt", encoder, fields)
        return fields

    def params(self, value: Any, fixed: dict[str, Any], encoder: str) -> tuple[Param, ...]:
        """The tuned fields; every choice, or both ends of an interval, passes the field's range check."""
        value = mapping("params", value)
        known_keys("params", value, _ADAPT_FIELDS)
        params = []
        for name, text in value.items():
            key, hint = f"params.{name}", _ADAPT_FIELDS[name]
            if name in fixed:
                self.fail(key, "is also fixed in the adapt section; keep it in one place")
            try:
                param = parse_expression(name, text)
            except ExpressionError as exc:
                self.fail(key, exc.problem, exc.allowed)
            if param.choices is not None:
                values = [typed_value(key, hint, choice) for choice in param.choices]
            elif hint is int and not param.integer:
                self.fail(key, f"'{name}' is an integer: write int(interval({param.low}, {param.high}))")
            elif hint not in (int, float):
                self.fail(key, f"'{name}' is not numeric: use choice(...)")
            else:
                values = [hint(param.low), hint(param.high)]
            for item in values:
                self._adapt_config("params", encoder, {**fixed, name: item})
            params.append(param)
        return tuple(params)

    def weighted_rates(self, adapt: dict[str, Any], params: tuple[Param, ...]) -> None:
        """Under a fixed weighted schedule one optimiser trains every loss at ``lr_weighted``; ``lr_nonlocal``
        (the round robin's rate of the non-local losses) would change nothing."""
        if adapt.get("schedule") != "weighted":
            return
        for section, names in (("adapt", set(adapt)), ("params", {p.name for p in params})):
            if "lr_nonlocal" in names:
                self.fail(
                    f"{section}.lr_nonlocal",
                    "has no effect under schedule: weighted, whose one optimiser trains every loss at lr_weighted; "
                    "set lr_weighted instead",
                )

    def objectives(self, value: Any) -> tuple[ObjectiveSpec, ...]:
        if not isinstance(value, list) or not value:
            self.fail("objectives", f"must be a non-empty list of {{metric, mode}} mappings, got {value!r}")
        objectives = tuple(self.objective(f"objectives[{i}]", item) for i, item in enumerate(value))
        metrics = [o.metric for o in objectives]
        if len(set(metrics)) != len(metrics):
            self.fail("objectives", f"lists a metric twice: {metrics}")
        return objectives

    def objective(self, key: str, value: Any) -> ObjectiveSpec:
        """One ``{metric, mode}``; an accuracy metric searched the wrong way would hunt for the worst poses."""
        value = mapping(key, value)
        objective = self.dataclass(key, ObjectiveSpec, value)
        self.one_of(f"{key}.metric", objective.metric, OBJECTIVE_METRICS)
        better = ACCURACY_METRICS.get(objective.metric)
        if "mode" not in value:
            return dataclasses.replace(objective, mode=better or objective.mode)
        self.one_of(f"{key}.mode", objective.mode, ALLOWED_MODES)
        if better is not None and objective.mode != better:
            kind = "an error in mm, lower" if better == "min" else "an accuracy in percent, higher"
            self.fail(
                f"{key}.mode",
                f"{objective.metric} is {kind} is better, so mode {objective.mode} would search for the worst poses; "
                f"write mode: {better} or leave mode out",
                (better,),
            )
        return objective

    def encoder_blocks(self, encoder: str, adapt: dict[str, Any], params: tuple[Param, ...]) -> None:
        """Every trainable block the space fixes or tunes is one of the (checked) encoder's blocks."""
        allowed = trainable_blocks(build_image_encoder(encoder, width=8))  # a thin copy: only names matter
        tuned = {p.name: p for p in params}
        if "trainable_block" in tuned:
            key, blocks = "params.trainable_block", tuned["trainable_block"].choices or ()
        else:
            key = "adapt.trainable_block"
            blocks = (adapt.get("trainable_block", default_trainable_block(encoder)),)
        for block in blocks:
            if block not in allowed:
                self.fail(key, f"{block!r} is not a block of the {encoder} encoder", allowed)

    def one_of(self, key: str, value: Any, allowed: tuple[Any, ...]) -> None:
        if value not in allowed:
            self.fail(key, f"got {value!r}", allowed)

    def positive(self, key: str, value: float) -> None:
        if value <= 0:
            self.fail(key, f"must be > 0, got {value}")

    def relations(self, spec: RelationsSpec) -> None:
        if not spec.candidates:
            self.fail("relations.candidates", "needs at least one relation", RELATION_NAMES)
        for i, name in enumerate(spec.candidates):
            if not is_relation_name(name):
                close = difflib.get_close_matches(name, RELATION_NAMES, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                allowed = (*RELATION_NAMES, TILTED_FORM)
                self.fail(f"relations.candidates[{i}]", f"unknown relation {name!r}{hint}", allowed)
        if len(set(spec.candidates)) != len(spec.candidates):
            self.fail("relations.candidates", "lists a relation twice")
        n = len(spec.candidates)
        if not 1 <= spec.min_set_size <= spec.max_set_size <= n:
            self.fail(
                "relations",
                f"set sizes must satisfy 1 <= min_set_size <= max_set_size <= {n} (the number of candidates), "
                f"got min_set_size={spec.min_set_size}, max_set_size={spec.max_set_size}",
            )
        for rule in ("require_together", "forbid_together"):
            for i, group in enumerate(getattr(spec, rule)):
                if len(group) < 2:
                    self.fail(f"relations.{rule}[{i}]", f"a group needs at least two relations, got {list(group)}")
                for j, name in enumerate(group):
                    if name not in spec.candidates:
                        self.fail(f"relations.{rule}[{i}][{j}]", f"{name!r} is not a candidate", spec.candidates)
        if not spec.sets():
            self.fail(
                "relations",
                f"no relation set satisfies set sizes {spec.min_set_size}..{spec.max_set_size} together with "
                f"require_together={[list(g) for g in spec.require_together]} and "
                f"forbid_together={[list(g) for g in spec.forbid_together]}; loosen one of them",
            )

    def prefilter(self, spec: PrefilterSpec) -> None:
        if (spec.keep_fraction is None) == (spec.threshold is None):
            self.fail("prefilter", "set exactly one of keep_fraction and threshold (the other to null)")
        if spec.keep_fraction is not None and not 0 < spec.keep_fraction <= 1:
            self.fail("prefilter.keep_fraction", f"must be in (0, 1], got {spec.keep_fraction}")
        self.one_of("prefilter.score", spec.score, ALLOWED_SCORES)
        self.one_of("prefilter.aggregate", spec.aggregate, ALLOWED_AGGREGATES)
        if spec.warmup < 0:
            self.fail("prefilter.warmup", f"must be >= 0 (how many best-scoring sets run first), got {spec.warmup}")

    def searcher(self, spec: SearcherSpec) -> None:
        self.one_of("searcher.algorithm", spec.algorithm, ALLOWED_ALGORITHMS)
        self.positive("searcher.num_trials", spec.num_trials)
        self.positive("searcher.max_concurrent", spec.max_concurrent)

    def scheduler(self, spec: SchedulerSpec, objectives: tuple[ObjectiveSpec, ...]) -> None:
        """ASHA stops trials on one metric, so it cannot serve several objectives."""
        self.one_of("scheduler.type", spec.type, ALLOWED_SCHEDULERS)
        self.positive("scheduler.grace_period", spec.grace_period)
        if spec.reduction_factor < 2:
            self.fail("scheduler.reduction_factor", f"must be at least 2, got {spec.reduction_factor}")
        if spec.type == "asha" and len(objectives) > 1:
            self.fail(
                "scheduler.type",
                "asha stops trials on one metric, so it needs a single objective; with several objectives set "
                "scheduler.type: none (NSGA-II or TPE then trade them off)",
                ALLOWED_SCHEDULERS,
            )

    def resources(self, spec: ResourcesSpec) -> None:
        self.positive("resources.stage_cpus", spec.stage_cpus)
        if spec.trial_cpus <= TRIAL_COORDINATOR_CPU:
            self.fail(
                "resources.trial_cpus",
                f"must be > {TRIAL_COORDINATOR_CPU:g} (a trial's coordinator holds {TRIAL_COORDINATOR_CPU:g} CPU of "
                f"it, its worker the rest), got {spec.trial_cpus}",
            )
        for key in ("trial_gpus", "stage_gpus"):
            if getattr(spec, key) < 0:
                self.fail(f"resources.{key}", f"must be >= 0, got {getattr(spec, key)}")

    def failure(self, spec: FailureSpec) -> None:
        for key in ("max_retries", "worker_restarts"):
            if getattr(spec, key) < 0:
                self.fail(f"failure.{key}", f"must be >= 0, got {getattr(spec, key)}")

    def loggers(self, value: Any) -> tuple[str, ...]:
        """The experiment trackers the search reports to.  Tune runs its logger callbacks in the driver, this process,
        so each tracker's package must be importable here; ``find_spec`` says so without importing it."""
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.fail("loggers", f"must be a list of logger names, e.g. [tensorboard], got {value!r}", LOGGER_PACKAGES)
        for i, name in enumerate(value):
            if name not in LOGGER_PACKAGES:
                close = difflib.get_close_matches(name, LOGGER_PACKAGES, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                self.fail(f"loggers[{i}]", f"unknown logger {name!r}{hint}", LOGGER_PACKAGES)
        if len(set(value)) != len(value):
            self.fail("loggers", f"lists a logger twice: {value}")
        for i, name in enumerate(value):
            package = LOGGER_PACKAGES[name]
            if importlib.util.find_spec(package) is None:
                self.fail(
                    f"loggers[{i}]",
                    f"{name} needs the Python package {package}, which is not installed here; install it with "
                    f"`pip install {package}` (or all three trackers with `pip install 'nlrd-search[loggers]'`), or "
                    f"leave {name} out",
                )
        return tuple(value)

    def name(self, name: Any) -> str:
        if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
            self.fail("name", f"must be a short name of letters, digits, '-' and '_', got {name!r}")
        return name
