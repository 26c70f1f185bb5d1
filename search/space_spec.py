"""What a validated search space holds: the ``SearchSpec`` that ``search/run.py`` runs, its sections' dataclasses,
the objectives a space may name, and how a trial's ``AdaptConfig`` is made from the space.

``search.space`` reads a file into these; ``search.space_checker`` holds the rules a space must meet.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nlrd.metrics import PROTOCOLS
from nlrd.models.image import default_trainable_block
from nlrd.pipeline import StageConfigs
from nlrd.relation_scores import CANDIDATES
from nlrd.train.adapt import AdaptConfig
from search.space_grammar import Param


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
    """Keep the ``keep_fraction`` best-scoring relation sets (or those scoring >= ``threshold``): the cut.

    ``score``: the label-free score of a relation (``nlrd.relation_scores.CANDIDATES``) a set's members are scored by;
    ``aggregate`` makes the set's score of theirs.  ``latent_in_support`` ranked sets best by their trained error at
    the smoke space's config (bench/RESULTS.md, "2b. Label-free score candidates"); ``latent`` is the plain latent
    non-localness that ranked them before.  ``warmup``: run the ``warmup`` best-scoring kept sets first (enqueued in
    the Optuna study, each knob at the middle of its range), the zero-cost warm-up of Abdelfattah et al. (ICLR 2021):
    the score then steers the search softly as well.  ``keep_fraction: 1.0`` with ``warmup`` > 0 is the warm-up
    without the cut.  ``enabled: false`` still scores every set (the scores are reported) but keeps them all and
    warms up none.
    """

    enabled: bool = True
    keep_fraction: float | None = 0.5
    threshold: float | None = None
    score: str = "latent_in_support"
    aggregate: str = "mean"
    warmup: int = 0


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


#: CPU share of a trial's coordinating Tune actor, taken out of ``trial_cpus`` (zero is refused by Ray).
TRIAL_COORDINATOR_CPU = 0.1


@dataclass(frozen=True)
class ResourcesSpec:
    """What one trial holds in all (fractional GPUs allowed), and what the stage job holds.  A trial is a
    coordinating Tune actor (``TRIAL_COORDINATOR_CPU``) and one Ray Train worker with the rest, so ``trial_cpus: 1``
    on a 2-CPU machine runs two trials at once."""

    trial_cpus: float = 1.0
    trial_gpus: float = 0.0
    stage_cpus: float = 1.0
    stage_gpus: float = 0.0

    @property
    def trial_worker_cpus(self) -> float:
        """The CPUs of a trial's Train worker: ``trial_cpus`` less its coordinator's share."""
        return self.trial_cpus - TRIAL_COORDINATOR_CPU


@dataclass(frozen=True)
class FailureSpec:
    """What a failing trial costs.  ``max_retries``: how often Tune starts a trial that raised again, from its
    last checkpoint; a trial whose loss turned NaN/inf ends failed at once (its seed would diverge again).
    ``worker_restarts``: how often Ray Train restarts a trial's worker that died (a lost node, an out-of-memory
    kill), resuming from the trial's last checkpoint."""

    max_retries: int = 1
    worker_restarts: int = 2


#: The learning rates each adaptation schedule ignores (``nlrd.train.AdaptConfig``): the round robin gives each loss
#: its own Adam at its own rate, the weighted sum trains them all with one Adam at ``lr_weighted``.
RATES_UNUSED_UNDER: dict[str, tuple[str, ...]] = {
    "round_robin": ("lr_weighted",),
    "weighted": ("lr_contrastive", "lr_nonlocal", "lr_source"),
}

ALLOWED_ALGORITHMS = ("tpe", "random", "nsga2", "gp")
ALLOWED_SCHEDULERS = ("asha", "none")
#: Target-validation accuracy a trial reports and the direction of better poses (``nlrd.metrics.PROTOCOLS``).
ACCURACY_METRICS = {key: protocol.better for key, protocol in PROTOCOLS.items()}
#: What a trial reports and an objective may name: the target-validation accuracy above, the relation set's
#: pre-filter score (``nonlocalness``: the set score the sets were ranked by, ``PrefilterSpec.score``), and the
#: trial's cost in device-seconds (wall seconds x GPUs held, or CPUs on CPU); the last two may be searched in either
#: direction.
OBJECTIVE_METRICS = (*ACCURACY_METRICS, "nonlocalness", "device_seconds")
ALLOWED_MODES = ("min", "max")
ALLOWED_AGGREGATES = ("mean", "max", "min", "sum")
ALLOWED_SCORES = CANDIDATES
#: The loggers a space may name (``loggers: [...]``), each with the Python package it needs; each package installs
#: under its import name (``pip install tensorboardX``).  ``tensorboardX`` comes with ``ray[tune]``; the other two are
#: the optional ``loggers`` extra.
LOGGER_PACKAGES = {"tensorboard": "tensorboardX", "mlflow": "mlflow", "wandb": "wandb"}


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
    #: Experiment trackers the search reports to besides Tune's own files (``LOGGER_PACKAGES``).
    loggers: tuple[str, ...] = ()
    adapt: dict[str, Any] = field(default_factory=dict)
    params: tuple[Param, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    #: The command line's ``--set KEY.PATH=VALUE`` items already merged into ``raw`` (the run records them).
    overrides: tuple[str, ...] = ()

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

    def adapt_config(self, relations: tuple[str, ...], sampled: Mapping[str, Any]) -> AdaptConfig:
        """The adaptation config of a trial on ``relations`` with the ``sampled`` tuned values; ``relations=()``
        and ``sampled={}`` give the values every trial shares (its fixed fields and the defaults)."""
        return trial_adapt_config(self.stages.source.encoder, self.adapt, relations, sampled)

    def knob_range(self, name: str) -> tuple[Any, Any]:
        """The smallest and largest value a trial may get for the ``AdaptConfig`` field ``name``: its tuned choices or
        interval, else the one value every trial shares."""
        for param in self.params:
            if param.name == name and param.choices is not None:
                return min(param.choices), max(param.choices)
            if param.name == name:
                return param.low, param.high
        shared = getattr(self.adapt_config((), {}), name)
        return shared, shared


def trial_adapt_config(
    encoder: str, fixed: Mapping[str, Any], relations: tuple[str, ...], sampled: Mapping[str, Any]
) -> AdaptConfig:
    """The one way a space's adaptation config is made, for the checker and every trial alike: the trained block
    defaults to the ``encoder``'s (the paper's Res-3), then the space's ``fixed`` fields, then the ``sampled``
    tuned ones."""
    fields = {"trainable_block": default_trainable_block(encoder), **fixed, **sampled}
    return AdaptConfig(relations=relations, **fields)
