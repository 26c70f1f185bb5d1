"""Whether a cluster can ever place what a space asks for, checked before any stage or trial starts.

Ray waits without a word for resources no node has: a space that asks each trial for a GPU on a GPU-less machine
would sit after ``[stages] training`` for ever.  Each Ray Train worker (the stage job's, each trial's) is one bundle
that must fit on one node, so the check compares every ask with each node's totals, not with the cluster's sum.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from search.space import ResourcesSpec
from search.space_spec import TRIAL_COORDINATOR_CPU

#: What a node offers: Ray's resource names (``CPU``, ``GPU``) to amounts.
Node = Mapping[str, float]


@dataclass(frozen=True)
class Ask:
    """One bundle a run places: what holds it, its CPUs and GPUs, and the space keys that set them."""

    holder: str
    cpus: float
    gpus: float
    cpu_key: str
    gpu_key: str


def asks(resources: ResourcesSpec) -> list[Ask]:
    """The bundles of a run: the stage job's worker and each trial's worker (``trial_cpus`` less its coordinator's
    ``TRIAL_COORDINATOR_CPU``, which Ray may place on any node)."""
    return [
        Ask("the stage job's worker", resources.stage_cpus, resources.stage_gpus, "stage_cpus", "stage_gpus"),
        Ask("a trial's worker", resources.trial_worker_cpus, resources.trial_gpus, "trial_cpus", "trial_gpus"),
    ]


def _largest(nodes: Sequence[Node]) -> str:
    if not nodes:
        return "the cluster has no node"
    cpus = max(node.get("CPU", 0.0) for node in nodes)
    gpus = max(node.get("GPU", 0.0) for node in nodes)
    return f"its largest node has {cpus:g} CPU and {gpus:g} GPU ({len(nodes)} node{'s' * (len(nodes) != 1)})"


def unplaceable(resources: ResourcesSpec, nodes: Sequence[Node], where: str) -> list[str]:
    """One line per ask no node of ``nodes`` can hold, naming the ``resources`` key to change; empty when every ask
    fits.  ``where``: the cluster's name in the message (e.g. "this machine")."""
    problems = []
    for ask in asks(resources):
        fits = [node for node in nodes if node.get("CPU", 0.0) >= ask.cpus and node.get("GPU", 0.0) >= ask.gpus]
        if fits:
            continue
        short_gpu = not any(node.get("GPU", 0.0) >= ask.gpus for node in nodes)
        key = ask.gpu_key if short_gpu else ask.cpu_key
        value = ask.gpus if short_gpu else ask.cpus
        unit = "GPU" if short_gpu else "CPU"
        if key == "trial_cpus":
            unit += f" (trial_cpus {resources.trial_cpus:g} less {TRIAL_COORDINATOR_CPU:g} for the trial's coordinator)"
        problems.append(
            f"resources.{key}: {ask.holder} asks for {value:g} {unit} on one node, but {where} cannot place it "
            f"({_largest(nodes)}); lower resources.{key} or run on a cluster that has such a node"
        )
    total_cpus = sum(node.get("CPU", 0.0) for node in nodes)
    if not problems and total_cpus < resources.trial_cpus:
        problems.append(
            f"resources.trial_cpus: a trial holds {resources.trial_cpus:g} CPU (its worker and its coordinator's "
            f"{TRIAL_COORDINATOR_CPU:g}), but {where} has {total_cpus:g} CPU in all; lower resources.trial_cpus"
        )
    return problems


def trials_at_once(resources: ResourcesSpec, nodes: Sequence[Node]) -> int:
    """How many trials ``nodes`` hold at the same time: each node fits as many whole trials (worker and
    coordinator together, ``trial_cpus``) as its CPUs and GPUs allow.  A lower bound: a coordinator may also sit on
    another node's leftover CPU."""
    return sum(_bundles(node, resources.trial_cpus, resources.trial_gpus) for node in nodes)


def stage_jobs_at_once(resources: ResourcesSpec, nodes: Sequence[Node]) -> int:
    """How many shared-stage jobs ``nodes`` hold at the same time, each a worker of ``stage_cpus`` and
    ``stage_gpus`` (its controller holds none): the stage graph's two branches run side by side only from 2."""
    return sum(_bundles(node, resources.stage_cpus, resources.stage_gpus) for node in nodes)


def stage_branches_side_by_side(resources: ResourcesSpec, nodes: Sequence[Node], autoscaled: bool) -> bool:
    """Whether the stage graph's two branches run as jobs side by side (``search.stages.STAGE_JOBS``): ``nodes``
    hold two stage jobs at once, or an autoscaler adds nodes that may."""
    return autoscaled or stage_jobs_at_once(resources, nodes) >= 2


def _bundles(node: Node, cpus: float, gpus: float) -> int:
    """How many bundles of ``cpus`` (positive) and ``gpus`` one node holds at once."""
    fit = math.floor(node.get("CPU", 0.0) / cpus + 1e-9)
    if gpus > 0:
        fit = min(fit, math.floor(node.get("GPU", 0.0) / gpus + 1e-9))
    return fit


def this_machine() -> list[Node]:
    """What a local Ray started here would offer: every CPU, and the CUDA GPUs torch sees."""
    import torch

    return [{"CPU": float(os.cpu_count() or 1), "GPU": float(torch.cuda.device_count())}]


def cluster_nodes() -> list[Node]:
    """The alive nodes of the Ray cluster this process is connected to, with their total resources."""
    import ray

    return [dict(node["Resources"]) for node in ray.nodes() if node.get("Alive")]


def autoscaling() -> bool:
    """Whether an autoscaler manages the connected cluster (``ray up``): its monitor publishes a report that then
    includes the autoscaler's; a cluster made with ``ray start`` has none."""
    from ray._private import ray_constants
    from ray.experimental.internal_kv import _internal_kv_get, _internal_kv_initialized

    if not _internal_kv_initialized():
        return False
    status = _internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS)
    if not status:
        return False
    try:
        return bool(json.loads(status).get("autoscaler_report"))
    except (ValueError, AttributeError):
        return False
