"""Search spaces: YAML -> validated ``SearchSpec`` -> Optuna distributions.

Tuned values use a grammar close to Hydra's Optuna sweeper, written as YAML strings::

    lr_nonlocal: tag(log, interval(1e-5, 1e-3))   # float, log-uniform
    tau: interval(0.05, 0.2)                       # float, uniform
    steps: int(interval(20, 80))                   # integer, uniform
    eval_every: range(5, 25, step=5)               # 5, 10, 15, 20 (the stop is excluded, as in Python)
    trainable_block: choice(block3, block4)        # categorical

Everything is checked before any work starts; a problem raises ``SpaceError`` naming the file, the key
path and what is allowed.  That includes the data a ``data`` section names (``nlrd.data.sources``): each path
must exist and hold its format, or the run stops before Ray starts.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import hashlib
import itertools
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import yaml

from nlrd.config import ConfigError
from nlrd.data.errors import DatasetError
from nlrd.data.sources import PART_KINDS, PARTS, SOURCE_KINDS, DataConfig, DataConfigError, DataSource
from nlrd.metrics import PROTOCOLS
from nlrd.models.image import build_image_encoder, default_trainable_block, trainable_blocks
from nlrd.pipeline import StageConfigs
from nlrd.relations import RELATION_NAMES
from nlrd.train.adapt import AdaptConfig
from nlrd.train.motion import MotionConfig
from nlrd.train.prior import PriorConfig
from nlrd.train.relation import RelationConfig
from nlrd.train.source import SourceConfig
from nlrd.world import WorldConfig


class SpaceError(ValueError):
    """A search space that cannot run; the message says where and what is allowed."""


@dataclass(frozen=True)
class RelationsSpec:
    """Which relations may be used and how candidate relation sets are formed.

    A candidate set is any subset of ``candidates`` with ``min_set_size <= size <= max_set_size`` that
    honours the two rules: each group in ``require_together`` appears whole or not at all, and no group in
    ``forbid_together`` appears whole.
    """

    candidates: tuple[str, ...] = ("flip", "flip_backward", "slow_backward")
    min_set_size: int = 1
    max_set_size: int = 3
    require_together: tuple[tuple[str, ...], ...] = ()
    forbid_together: tuple[tuple[str, ...], ...] = ()

    def sets(self) -> list[tuple[str, ...]]:
        """Every candidate relation set, smallest first, members in ``candidates`` order."""
        return [
            combo
            for size in range(self.min_set_size, self.max_set_size + 1)
            for combo in itertools.combinations(self.candidates, size)
            if all(set(g).isdisjoint(combo) or set(g) <= set(combo) for g in self.require_together)
            and not any(set(g) <= set(combo) for g in self.forbid_together)
        ]


@dataclass(frozen=True)
class PrefilterSpec:
    """Keep the ``keep_fraction`` best-scoring relation sets (or those scoring >= ``threshold``).

    ``enabled: false`` still scores every set (the scores are reported) but keeps them all.
    """

    enabled: bool = True
    keep_fraction: float | None = 0.5
    threshold: float | None = None
    aggregate: str = "mean"


@dataclass(frozen=True)
class SearcherSpec:
    """The Optuna sampler (``tpe``, ``random``, ``nsga2`` or ``gp``), its seed, the trial budget and how many
    trials run at once."""

    algorithm: str = "tpe"
    seed: int = 0
    num_trials: int = 8
    max_concurrent: int = 1


@dataclass(frozen=True)
class SchedulerSpec:
    """ASHA on the objective, one rung unit per evaluation report; ``type: none`` runs every trial to the end."""

    type: str = "asha"
    grace_period: int = 1
    reduction_factor: int = 2


@dataclass(frozen=True)
class ObjectiveSpec:
    """One objective: a metric every trial reports (see ``OBJECTIVE_METRICS``) and its direction.

    A space that leaves out ``mode`` gets the metric's direction of better poses (``ACCURACY_METRICS``), else min.
    """

    metric: str = "mpjpe"
    mode: str = "min"


@dataclass(frozen=True)
class ResourcesSpec:
    """What one trial's Ray Train worker holds (fractional GPUs allowed), and what the stage job holds."""

    trial_cpus: float = 1.0
    trial_gpus: float = 0.0
    stage_cpus: float = 1.0
    stage_gpus: float = 0.0


@dataclass(frozen=True)
class FailureSpec:
    """What a failing trial costs.  ``max_retries``: how often Tune starts a trial that raised again, from its
    last checkpoint; a trial whose loss turned NaN/inf ends failed at once (its seed would diverge again).
    ``worker_restarts``: how often Ray Train restarts a trial's worker that died (a lost node, an out-of-memory
    kill), resuming from the trial's last checkpoint."""

    max_retries: int = 1
    worker_restarts: int = 2


@dataclass(frozen=True)
class Param:
    """One tuned value: a categorical ``choices`` list or a numeric interval (``high`` included), optionally
    on a grid of ``step``."""

    name: str
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    step: float | None = None

    def distribution(self) -> optuna.distributions.BaseDistribution:
        if self.choices is not None:
            return optuna.distributions.CategoricalDistribution(list(self.choices))
        if self.integer:
            step = 1 if self.step is None else int(self.step)
            return optuna.distributions.IntDistribution(int(self.low), int(self.high), log=self.log, step=step)
        return optuna.distributions.FloatDistribution(float(self.low), float(self.high), log=self.log, step=self.step)


#: The value grammar of ``params``, as error messages list it.
GRAMMAR = (
    "choice(a, b, ...)",
    "interval(lo, hi)",
    "int(interval(lo, hi))",
    "tag(log, interval(lo, hi))",
    "range(start, stop, step=s)",
)
ALLOWED_ALGORITHMS = ("tpe", "random", "nsga2", "gp")
ALLOWED_SCHEDULERS = ("asha", "none")
#: Target-validation accuracy a trial reports and the direction of better poses (``nlrd.metrics.PROTOCOLS``).
ACCURACY_METRICS = {key: protocol.better for key, protocol in PROTOCOLS.items()}
#: What a trial reports and an objective may name: the target-validation accuracy above, the relation set's
#: non-localness score, and the trial's cost in device-seconds (wall seconds x GPUs held, or CPUs on CPU); the
#: last two may be searched in either direction.
OBJECTIVE_METRICS = (*ACCURACY_METRICS, "nonlocalness", "device_seconds")
ALLOWED_MODES = ("min", "max")
ALLOWED_AGGREGATES = ("mean", "max", "min", "sum")
#: AdaptConfig fields the search owns: the relation set is chosen by the searcher, never by hand.
_SEARCH_OWNED = ("relations",)
#: AdaptConfig fields a space may fix (``adapt``) or tune (``params``).
_ADAPT_KEYS = tuple(f.name for f in dataclasses.fields(AdaptConfig) if f.name not in _SEARCH_OWNED)


@dataclass(frozen=True)
class SearchSpec:
    """A validated search space: everything ``search/run.py`` needs."""

    name: str
    path: Path
    stages: StageConfigs
    relations: RelationsSpec
    prefilter: PrefilterSpec
    searcher: SearcherSpec
    scheduler: SchedulerSpec
    objectives: tuple[ObjectiveSpec, ...]
    resources: ResourcesSpec
    failure: FailureSpec = field(default_factory=FailureSpec)
    adapt: dict[str, Any] = field(default_factory=dict)
    params: tuple[Param, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def digest(self) -> str:
        """Hash of the space's content: identifies which space a run directory belongs to."""
        return hashlib.sha256(json.dumps(self.raw, sort_keys=True, default=str).encode()).hexdigest()[:16]

    @property
    def objective(self) -> ObjectiveSpec:
        """The first objective: the one ASHA and the progress line follow."""
        return self.objectives[0]

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def adapt_config(self, relations: tuple[str, ...], sampled: dict[str, Any]) -> AdaptConfig:
        """The trial's adaptation config; the trained block defaults to the encoder's (the paper's Res-3)."""
        fields = {"trainable_block": default_trainable_block(self.stages.source.encoder), **self.adapt, **sampled}
        return AdaptConfig(relations=relations, **fields)


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
    "adapt": AdaptConfig,
    "params": AdaptConfig,
}
_STAGE_SECTIONS = {"prior": PriorConfig, "motion": MotionConfig, "relation": RelationConfig, "source": SourceConfig}


def load_space(path: str | Path) -> SearchSpec:
    """Read and validate a space file; raise ``SpaceError`` on any problem."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpaceError(f"{path}: cannot read the search space file ({exc.strerror or exc}).") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpaceError(f"{path}: not valid YAML: {exc}") from None
    return parse_space(raw, path)


def parse_space(raw: Any, path: str | Path = "<space>") -> SearchSpec:
    """Validate an already-loaded YAML mapping."""
    path = Path(path)
    checker = _Checker(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        checker.fail("", f"the file must hold a mapping of sections, got {type(raw).__name__}", _SECTIONS)
    checker.known_keys("", raw, _SECTIONS)

    stages_raw = checker.mapping("stages", raw.get("stages", {}))
    checker.known_keys("stages", stages_raw, _STAGE_SECTIONS)
    stages = StageConfigs(
        world=checker.dataclass("world", WorldConfig, raw.get("world", {})),
        data=checker.data(raw.get("data", {})),
        **{
            name: checker.dataclass(f"stages.{name}", cls, stages_raw.get(name, {}))
            for name, cls in _STAGE_SECTIONS.items()
        },
    )
    relations = checker.dataclass("relations", RelationsSpec, raw.get("relations", {}))
    prefilter = checker.dataclass("prefilter", PrefilterSpec, raw.get("prefilter", {}))
    searcher = checker.dataclass("searcher", SearcherSpec, raw.get("searcher", {}))
    scheduler = checker.dataclass("scheduler", SchedulerSpec, raw.get("scheduler", {}))
    objectives = checker.objectives(raw.get("objectives", [{}]))
    resources = checker.dataclass("resources", ResourcesSpec, raw.get("resources", {}))
    failure = checker.dataclass("failure", FailureSpec, raw.get("failure", {}))
    adapt = checker.adapt_fields(raw.get("adapt", {}))
    params = checker.params(raw.get("params", {}), fixed=adapt)

    checker.relations(relations)
    checker.encoder_blocks(stages.source.encoder, adapt, params)
    checker.prefilter(prefilter)
    checker.one_of("searcher.algorithm", searcher.algorithm, ALLOWED_ALGORITHMS)
    checker.positive("searcher.num_trials", searcher.num_trials)
    checker.positive("searcher.max_concurrent", searcher.max_concurrent)
    checker.one_of("scheduler.type", scheduler.type, ALLOWED_SCHEDULERS)
    checker.positive("scheduler.grace_period", scheduler.grace_period)
    if scheduler.reduction_factor < 2:
        checker.fail("scheduler.reduction_factor", f"must be at least 2, got {scheduler.reduction_factor}")
    if scheduler.type == "asha" and len(objectives) > 1:
        checker.fail(
            "scheduler.type",
            "asha stops trials on one metric, so it needs a single objective; with several objectives set "
            "scheduler.type: none (NSGA-II or TPE then trade them off)",
            ALLOWED_SCHEDULERS,
        )
    for key in ("trial_cpus", "stage_cpus"):
        checker.positive(f"resources.{key}", getattr(resources, key))
    for key in ("trial_gpus", "stage_gpus"):
        if getattr(resources, key) < 0:
            checker.fail(f"resources.{key}", f"must be >= 0, got {getattr(resources, key)}")
    for key in ("max_retries", "worker_restarts"):
        if getattr(failure, key) < 0:
            checker.fail(f"failure.{key}", f"must be >= 0, got {getattr(failure, key)}")
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
        checker.fail("name", f"must be a short name of letters, digits, '-' and '_', got {name!r}")
    checker.data_files(stages.data)  # last: it reads the data sets' files, everything cheaper is checked first
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
        adapt=adapt,
        params=params,
        raw=raw,
    )


class _Checker:
    """Validation helpers that all fail with one ``SpaceError`` paragraph naming file and key path."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, problem: str, allowed: Any = None) -> typing.NoReturn:
        where = f"{self.path}: {key}" if key else f"{self.path}"
        message = f"{where}: {problem}."
        if allowed is not None:
            message += f" Allowed: {', '.join(map(str, allowed))}."
        raise SpaceError(message)

    def mapping(self, key: str, value: Any) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(key, f"must be a mapping of keys to values, got {type(value).__name__} {value!r}")
        return value

    def known_keys(self, key: str, value: dict[str, Any], allowed: typing.Iterable[str]) -> None:
        allowed = list(allowed)
        for name in value:
            if name not in allowed:
                close = difflib.get_close_matches(str(name), allowed, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                self.fail(_join(key, name), f"unknown key{hint}", allowed)

    def dataclass(self, key: str, cls: type, value: Any) -> Any:
        value = self.mapping(key, value)
        hints = typing.get_type_hints(cls)
        fields = [f.name for f in dataclasses.fields(cls)]
        self.known_keys(key, value, fields)
        typed = {name: self.typed(_join(key, name), hints[name], item) for name, item in value.items()}
        return self.built(key, cls, typed)

    def built(self, key: str, cls: type, fields: dict[str, Any]) -> Any:
        """``cls(**fields)``, with the config's own range checks reported at ``key.<field>``."""
        try:
            return cls(**fields)
        except ConfigError as exc:
            self.fail(_join(key, exc.field), exc.problem, exc.allowed)

    def data(self, value: Any) -> DataConfig:
        """The ``data`` section's structure (kinds, keys, types); the files are checked by ``data_files``."""
        value = self.mapping("data", value)
        self.known_keys("data", value, ("fps", *PARTS))
        fps = self.typed("data.fps", float, value.get("fps", DataConfig.fps))
        self.positive("data.fps", fps)
        return DataConfig(fps=fps, **{part: self.data_source(part, value[part]) for part in PARTS if part in value})

    def data_source(self, part: str, value: Any) -> DataSource:
        key = f"data.{part}"
        value = self.mapping(key, value)
        kind, allowed = value.get("kind", "world"), PART_KINDS[part]
        if kind not in allowed:
            close = difflib.get_close_matches(str(kind), allowed, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            if isinstance(kind, str) and kind in SOURCE_KINDS:  # bvh in a clip part
                hint = f": {kind} has no images; set data.mocap to it and this part to world to render its motion"
            self.fail(f"{key}.kind", f"{kind!r} cannot fill {part}{hint}", allowed)
        cls = SOURCE_KINDS[kind]
        hints = typing.get_type_hints(cls)
        fields = dataclasses.fields(cls)
        self.known_keys(key, value, ["kind", *(f.name for f in fields)])
        for f in fields:
            if f.default is dataclasses.MISSING and f.name not in value:
                self.fail(f"{key}.{f.name}", f"is required for kind {kind}")
        values = {name: self.typed(f"{key}.{name}", hints[name], v) for name, v in value.items() if name != "kind"}
        for name, item in values.items():  # the only integers of a source are strides
            if isinstance(item, int) and not isinstance(item, bool) and item < 1:
                self.fail(f"{key}.{name}", f"must be at least 1, got {item}")
        return cls(**values)

    def data_files(self, data: DataConfig) -> None:
        """Every path the data section names exists and holds what its kind expects."""
        try:
            data.check()
        except DataConfigError as exc:
            self.fail(f"data.{exc.key}", str(exc))
        except DatasetError as exc:
            self.fail("data", str(exc))

    def adapt_fields(self, value: Any) -> dict[str, Any]:
        value = self.mapping("adapt", value)
        hints = typing.get_type_hints(AdaptConfig)
        self.known_keys("adapt", value, _ADAPT_KEYS)
        fields = {name: self.typed(f"adapt.{name}", hints[name], item) for name, item in value.items()}
        self.built("adapt", AdaptConfig, fields)
        return fields

    def params(self, value: Any, fixed: dict[str, Any]) -> tuple[Param, ...]:
        value = self.mapping("params", value)
        hints = typing.get_type_hints(AdaptConfig)
        self.known_keys("params", value, _ADAPT_KEYS)
        params = []
        for name, text in value.items():
            key = f"params.{name}"
            if name in fixed:
                self.fail(key, "is also fixed in the adapt section; keep it in one place")
            param = self.expression(key, name, text)
            if param.choices is not None:
                values = [self.typed(key, hints[name], choice) for choice in param.choices]
            elif hints[name] is int and not param.integer:
                self.fail(key, f"'{name}' is an integer: write int(interval({param.low}, {param.high}))")
            elif hints[name] not in (int, float):
                self.fail(key, f"'{name}' is not numeric: use choice(...)")
            else:
                values = [hints[name](param.low), hints[name](param.high)]
            for item in values:  # every choice, or both ends of the interval, through the field's range check
                self.built("params", AdaptConfig, {name: item})
            params.append(param)
        return tuple(params)

    def expression(self, key: str, name: str, text: Any) -> Param:
        grammar = list(GRAMMAR)
        if not isinstance(text, str):
            self.fail(key, f"must be a search expression string, got {text!r}", grammar)
        try:
            node = ast.parse(text.strip(), mode="eval").body
        except SyntaxError:
            self.fail(key, f"cannot parse {text!r}", grammar)
        param = self._param(key, name, node, grammar)
        if param.choices is None:
            if not (math.isfinite(param.low) and math.isfinite(param.high)) or param.low > param.high:
                self.fail(key, f"interval must have low < high, got ({param.low}, {param.high})")
            if param.low == param.high and param.step is None:
                self.fail(key, f"interval must have low < high, got ({param.low}, {param.high})")
            if param.log and param.low <= 0:
                self.fail(key, f"a log interval needs low > 0, got {param.low}")
        return param

    def _param(self, key: str, name: str, node: ast.AST, grammar: list[str]) -> Param:
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            self.fail(key, f"unsupported expression {ast.unparse(node)!r}", grammar)
        func, args = node.func.id, node.args
        if func == "range":
            return self._range(key, name, node)
        if node.keywords:
            self.fail(key, f"unsupported expression {ast.unparse(node)!r}", grammar)
        if func == "choice":
            if not args:
                self.fail(key, "choice(...) needs at least one value")
            return Param(name, choices=tuple(self._constant(key, arg) for arg in args))
        if func == "interval" and len(args) == 2:
            low, high = (self._constant(key, arg) for arg in args)
            if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (low, high)):
                self.fail(key, f"interval bounds must be numbers, got ({low!r}, {high!r})")
            return Param(name, low=float(low), high=float(high))
        if func == "int" and len(args) == 1:
            inner = self._param(key, name, args[0], grammar)
            if inner.choices is not None:
                self.fail(key, "int(...) wraps an interval", grammar)
            if inner.low != int(inner.low) or inner.high != int(inner.high):
                self.fail(key, f"int(interval(...)) needs integer bounds, got ({inner.low}, {inner.high})")
            return dataclasses.replace(inner, integer=True)
        if func == "tag" and len(args) == 2 and isinstance(args[0], ast.Name) and args[0].id == "log":
            inner = self._param(key, name, args[1], grammar)
            if inner.choices is not None or inner.step is not None:
                self.fail(key, "tag(log, ...) wraps an interval", grammar)
            return dataclasses.replace(inner, log=True)
        self.fail(key, f"unsupported expression {ast.unparse(node)!r}", grammar)

    def _range(self, key: str, name: str, node: ast.Call) -> Param:
        """``range(start, stop[, step])`` or ``range(start, stop, step=s)``: the grid ``start, start+s, ...``
        below ``stop``, integer when all three are integers."""
        keywords = {kw.arg: kw.value for kw in node.keywords}
        if set(keywords) - {"step"} or not 2 <= len(node.args) + len(keywords) <= 3 or len(node.args) < 2:
            self.fail(key, f"write range(start, stop, step=s), got {ast.unparse(node)!r}", GRAMMAR)
        values = [self._constant(key, arg) for arg in [*node.args, *keywords.values()]]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            self.fail(key, f"range bounds and step must be numbers, got {ast.unparse(node)!r}")
        start, stop, step = (*values, 1)[:3]
        if step <= 0 or not start < stop:
            self.fail(key, f"range needs start < stop and step > 0, got start={start}, stop={stop}, step={step}")
        count = math.ceil((stop - start) / step - 1e-9)
        last = start + (count - 1) * step
        integer = all(isinstance(v, int) for v in (start, stop, step))
        return Param(name, low=start, high=last if integer else round(last, 12), integer=integer, step=step)

    def _constant(self, key: str, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool)):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
            return -node.operand.value
        if isinstance(node, ast.Name):  # bare words are strings, as in Hydra: choice(block3, block4)
            return node.id
        self.fail(key, f"expected a number or a word, got {ast.unparse(node)!r}")

    def typed(self, key: str, hint: Any, value: Any) -> Any:
        """Check ``value`` against a dataclass field's type; tuples accept YAML lists."""
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if origin in (typing.Union, types.UnionType):
            if value is None and type(None) in args:
                return None
            inner = [a for a in args if a is not type(None)]
            return self.typed(key, inner[0], value)
        if origin is typing.Literal:
            if value not in args:
                self.fail(key, f"got {value!r}", args)
            return value
        if origin is tuple:
            if not isinstance(value, (list, tuple)):
                self.fail(key, f"must be a list, got {value!r}")
            return tuple(self.typed(f"{key}[{i}]", args[0], item) for i, item in enumerate(value))
        if hint is bool:
            if not isinstance(value, bool):
                self.fail(key, f"must be true or false, got {value!r}")
            return value
        if hint is int:
            if isinstance(value, bool) or not isinstance(value, int):
                self.fail(key, f"must be an integer, got {value!r}")
            return value
        if hint is float:
            if isinstance(value, str):
                try:
                    value = float(value)  # YAML reads 1e-5 (no dot) as a string
                except ValueError:
                    self.fail(key, f"must be a number, got {value!r}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                self.fail(key, f"must be a finite number, got {value!r}")
            return float(value)
        if hint is str:
            if not isinstance(value, str):
                self.fail(key, f"must be a string, got {value!r}")
            return value
        return value

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
        value = self.mapping(key, value)
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
            if name not in RELATION_NAMES:
                close = difflib.get_close_matches(name, RELATION_NAMES, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                self.fail(f"relations.candidates[{i}]", f"unknown relation {name!r}{hint}", RELATION_NAMES)
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
        self.one_of("prefilter.aggregate", spec.aggregate, ALLOWED_AGGREGATES)


def _join(prefix: str, name: Any) -> str:
    return f"{prefix}.{name}" if prefix else str(name)
