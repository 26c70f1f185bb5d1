"""The stage graph and its cache.

World -> pose prior -> motion embedding -> one relation transformer per relation, and
world + prior -> source image encoder.  The "world" stage is the data stage (``nlrd.data_stage``): the proxy
benchmark, or real data sets where ``StageConfigs.data`` names them; its key then also hashes the data files' paths,
sizes and modification times.  Every stage's output is stored under a key that hashes its own
config and the keys of its inputs, so a search trains each stage once and every trial (and every
later run with the same configs) reuses it.  Checkpoints hold only tensors and plain containers and
are read with ``torch.load(weights_only=True)``: a cache never unpickles code.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nlrd.atomic import write_atomic
from nlrd.config import key_payload
from nlrd.core import ClipSet, Report, Stages, World
from nlrd.data import DataConfig
from nlrd.data_stage import build_data, fresh_source_clips
from nlrd.models import MotionAE, PosePrior, RelationTransformer, build_image_encoder
from nlrd.quality import MEASURE_VERSION, StageQuality, measure_stages
from nlrd.reference import mean_pose_metrics
from nlrd.relations import get_relation
from nlrd.train.common import freeze
from nlrd.train.evaluate import evaluate
from nlrd.train.motion import MotionConfig, train_motion
from nlrd.train.prior import PriorConfig, train_prior
from nlrd.train.relation import RelationConfig, train_relations
from nlrd.train.source import SourceConfig, train_source
from nlrd.world import WorldConfig


@dataclass
class StageConfigs:
    """Configs of the shared stages; together with the relation names they fix every cache key."""

    world: WorldConfig = field(default_factory=WorldConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    relation: RelationConfig = field(default_factory=RelationConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    data: DataConfig = field(default_factory=DataConfig)


@dataclass(frozen=True)
class StageKeys:
    """Cache keys of one stage graph: what a trial needs to load its frozen stages."""

    world: str
    prior: str
    motion: str
    source: str
    relations: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def stage_key(stage: str, config: Any, inputs: Sequence[str] = ()) -> str:
    """``"<stage>-<16 hex>"`` from the stage name, its config (a dataclass or JSON-able) and its inputs' keys."""
    text = json.dumps(
        {"stage": stage, "config": key_payload(config), "inputs": list(inputs)}, sort_keys=True, default=str
    )
    return f"{stage}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def data_key_payload(configs: StageConfigs) -> dict[str, Any]:
    """What the data stage's key hashes when real data is named: the world's sizes and the data's fingerprint."""
    return {"world": asdict(configs.world), "data": configs.data.fingerprint()}


def stage_keys(configs: StageConfigs, relations: Sequence[str]) -> StageKeys:
    """All keys of the graph, computed without training anything."""
    world = stage_key("world", configs.world if configs.data.is_proxy else data_key_payload(configs))
    prior = stage_key("prior", configs.prior, [world])
    motion = stage_key("motion", configs.motion, [prior, world])
    source = stage_key("source", configs.source, [prior, world])
    rel = {name: stage_key(f"relation_{name}", configs.relation, [prior, motion, world]) for name in sorted(relations)}
    return StageKeys(world=world, prior=prior, motion=motion, source=source, relations=rel)


class StageCache:
    """A folder of ``<key>.pt`` files, written atomically (temporary file + rename)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    def __contains__(self, key: str) -> bool:
        return self.path(key).is_file()

    def save(self, key: str, payload: dict[str, Any]) -> Path:
        return write_atomic(self.path(key), lambda tmp: torch.save(payload, tmp))

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold an exclusive, cross-process lock on ``key`` (``flock`` on ``.<key>.lock``): whoever trains a
        missing stage under it is the only one, and the others then find it cached."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f".{key}.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def load(self, key: str, mmap: bool = False) -> dict[str, Any]:
        """The payload stored under ``key``.  ``mmap=True`` maps tensors instead of reading them: a cheap way to
        check that a large checkpoint is whole and holds only tensors and plain containers."""
        path = self.path(key)
        if not path.is_file():
            raise FileNotFoundError(f"stage checkpoint {path} is missing: train the stages first")
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except Exception as exc:  # truncated, foreign or tampered files all land here
            why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ValueError(
                f"stage checkpoint {path} cannot be read as an nlrd checkpoint ({why}); delete it to train it again"
            ) from exc


def _module_payload(module: nn.Module, kwargs: dict[str, Any]) -> dict[str, Any]:
    return {"kwargs": kwargs, "state": module.state_dict()}


def restore_module(
    module_cls: Callable[..., nn.Module], payload: dict[str, Any], device: str | torch.device = "cpu"
) -> nn.Module:
    """A cached stage's module, frozen on ``device``: the cache stores its constructor's kwargs and its state."""
    module = module_cls(**payload["kwargs"])
    module.load_state_dict(payload["state"])
    return freeze(module.to(device))


def _world_payload(world: World) -> dict[str, Any]:
    return {
        "mocap": world.mocap,
        "source_frames": world.source.frames,
        "source_poses": world.source.poses,
        "target_train_frames": world.target_train.frames,
        "target_val_frames": world.target_val.frames,
        "target_val_poses": world.target_val.poses,
        "target_val_eval_joints": world.target_val.eval_joints,
        "fps": world.source.fps,
    }


def load_world(cache: StageCache, key: str, mmap: bool = False) -> World:
    """The world stored under ``key``.  ``mmap=True`` maps its tensors instead of reading them: a trial then reads
    only the frames it draws, and trials on one node share the file's pages (read-only to them: writes stay private
    to the process)."""
    data = cache.load(key, mmap=mmap)
    fps = float(data["fps"])
    return World(
        mocap=data["mocap"],
        source=ClipSet(data["source_frames"], data["source_poses"], fps),
        target_train=ClipSet(data["target_train_frames"], None, fps),
        target_val=ClipSet(
            data["target_val_frames"], data["target_val_poses"], fps, eval_joints=data.get("target_val_eval_joints")
        ),
    )


#: Share of the unpaired mocap kept out of stage training, for measuring non-localness.
HELDOUT_FRACTION = 0.2


def split_mocap(mocap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(M, L, 17, 3)`` mocap -> (training part, held-out part): the last ``HELDOUT_FRACTION`` is held out."""
    n_heldout = max(1, round(HELDOUT_FRACTION * mocap.shape[0]))
    if n_heldout >= mocap.shape[0]:
        raise ValueError(f"need at least 2 mocap sequences to hold some out, got {mocap.shape[0]}")
    return mocap[:-n_heldout], mocap[-n_heldout:]


def heldout_mocap(world: World) -> torch.Tensor:
    """The mocap sequences no stage was trained on."""
    return split_mocap(world.mocap)[1]


#: The trainable stages in dependency order; ``train_stages(only=...)`` takes a subset.
STAGE_NAMES = ("world", "prior", "motion", "relations", "source")


def train_stages(
    configs: StageConfigs,
    relations: Sequence[str],
    cache: StageCache,
    report: Report | None = None,
    device: str | torch.device = "cpu",
    only: Sequence[str] = STAGE_NAMES,
) -> StageKeys:
    """Train whatever part of the graph (restricted to the stages in ``only``) is not in ``cache`` yet; return
    the keys of the whole graph.  Stages outside ``only`` that a trained stage needs must be cached.

    Each stage is trained under the cache's lock on its key, so two processes that need the same missing
    stage train it once: the second finds it cached.  ``report`` receives ``{"stage": name, ...}`` progress
    dicts, including ``{"stage": name, "cached": True}`` for stages found in the cache.
    """
    unknown = set(only) - set(STAGE_NAMES)
    if unknown:
        raise ValueError(f"unknown stages {sorted(unknown)}; allowed: {', '.join(STAGE_NAMES)}")
    keys = stage_keys(configs, relations)
    clip_len = configs.world.clip_len

    def tagged(stage: str) -> Report | None:
        return None if report is None else (lambda metrics: report({"stage": stage, **metrics}))

    def announce_cached(stage: str) -> None:
        if report is not None:
            report({"stage": stage, "cached": True})

    with cache.lock(keys.world):
        if keys.world in cache or "world" not in only:
            world = load_world(cache, keys.world)
            announce_cached("world")
        else:
            world = build_data(configs.world, configs.data)
            cache.save(keys.world, _world_payload(world))
    mocap, _ = split_mocap(world.mocap)
    mocap_poses = mocap.reshape(-1, 17, 3)

    with cache.lock(keys.prior):
        if keys.prior in cache or "prior" not in only:
            prior = restore_module(PosePrior, cache.load(keys.prior), device)
            announce_cached("prior")
        else:
            prior = train_prior(configs.prior, mocap_poses, report=tagged("prior"), device=device)
            cache.save(keys.prior, _module_payload(prior, prior_kwargs(configs.prior)))

    if "motion" in only or "relations" in only:
        with cache.lock(keys.motion):
            if keys.motion in cache or "motion" not in only:
                motion = restore_module(MotionAE, cache.load(keys.motion), device)
                announce_cached("motion")
            else:
                motion = train_motion(configs.motion, prior, mocap, clip_len, report=tagged("motion"), device=device)
                cache.save(keys.motion, _module_payload(motion, motion_kwargs(configs.prior, configs.motion)))

    if "relations" in only:
        with contextlib.ExitStack() as locks:
            for key in sorted(keys.relations.values()):  # one order everywhere: no deadlock
                locks.enter_context(cache.lock(key))
            missing = [name for name, key in keys.relations.items() if key not in cache]
            if missing:
                catalogue = [get_relation(name, clip_len) for name in missing]
                trained = train_relations(
                    configs.relation, prior, motion, mocap, catalogue, report=tagged("relations"), device=device
                )
                for relation in catalogue:
                    kwargs = {
                        "dim": relation_dim(configs.prior, configs.motion, relation.level),
                        "hidden": configs.relation.hidden,
                        "residual": configs.relation.residual,
                    }
                    cache.save(keys.relations[relation.name], _module_payload(trained[relation.name], kwargs))
            else:
                announce_cached("relations")

    if "source" in only:
        with cache.lock(keys.source):
            if keys.source in cache:
                announce_cached("source")
            else:
                encoder = train_source(configs.source, prior, world.source, report=tagged("source"), device=device)
                payload = _module_payload(encoder, encoder_kwargs(configs.prior, configs.source))
                payload["target_val"] = evaluate(encoder, prior, world.target_val, device=device)
                cache.save(keys.source, payload)
    return keys


def prior_kwargs(prior: PriorConfig) -> dict[str, Any]:
    return {"latent_dim": prior.latent_dim, "hidden": prior.hidden}


def motion_kwargs(prior: PriorConfig, motion: MotionConfig) -> dict[str, Any]:
    return {
        "latent_dim": prior.latent_dim,
        "hidden": motion.hidden,
        "embed_dim": motion.embed_dim,
        "num_layers": motion.num_layers,
    }


def encoder_kwargs(prior: PriorConfig, source: SourceConfig) -> dict[str, Any]:
    return {"name": source.encoder, "latent_dim": prior.latent_dim, "width": source.width}


def relation_dim(prior: PriorConfig, motion: MotionConfig, level: str) -> int:
    return prior.latent_dim if level == "pose" else motion.embed_dim


def source_only_metrics(cache: StageCache, keys: StageKeys) -> dict[str, float]:
    """Target-validation metrics of the source encoder before adaptation (every protocol of
    ``nlrd.metrics.evaluate_protocols``): the bar to beat."""
    return dict(cache.load(keys.source)["target_val"])


def mean_pose_line(cache: StageCache, keys: StageKeys) -> dict[str, float]:
    """Target-validation metrics of the constant mean pose of the mocap the stages train on (``nlrd.reference``):
    the line below which an encoder has learnt nothing about the image.  Computed once per world and cached."""
    key = stage_key("meanpose", {}, [keys.world])
    with cache.lock(key):
        if key in cache:
            return dict(cache.load(key)["target_val"])
        world = load_world(cache, keys.world, mmap=True)
        train, _ = split_mocap(world.mocap)
        metrics = mean_pose_metrics(train, world.target_val)
        cache.save(key, {"target_val": metrics})
    return metrics


def reference_lines(cache: StageCache, keys: StageKeys) -> dict[str, dict[str, float]]:
    """Every reference line a search can draw without target labels in training, each as target-validation
    metrics: ``mean_pose`` and ``source_only`` (the oracle needs labelled target clips: ``bench/ablation.py``)."""
    return {"mean_pose": mean_pose_line(cache, keys), "source_only": source_only_metrics(cache, keys)}


def load_prior_and_motion(
    cache: StageCache, keys: StageKeys, device: str | torch.device = "cpu"
) -> tuple[nn.Module, nn.Module]:
    """The frozen pose prior and motion embedding: all the pre-filter needs."""
    return restore_module(PosePrior, cache.load(keys.prior), device), restore_module(
        MotionAE, cache.load(keys.motion), device
    )


def load_stages(
    cache: StageCache, keys: StageKeys, relations: Sequence[str], device: str | torch.device = "cpu"
) -> Stages:
    """The frozen stages an adaptation with ``relations`` starts from."""
    prior, motion = load_prior_and_motion(cache, keys, device)
    transformers = load_transformers(cache, keys, relations, device)
    encoder = restore_module(build_image_encoder, cache.load(keys.source), device)
    return Stages(prior=prior, motion=motion, transformers=transformers, encoder=encoder)


def load_transformers(
    cache: StageCache, keys: StageKeys, relations: Sequence[str], device: str | torch.device = "cpu"
) -> dict[str, nn.Module]:
    """The frozen relation transformer of each of ``relations``: what the pre-filter needs beside the prior and the
    motion embedding, without the source encoder."""
    return {name: restore_module(RelationTransformer, cache.load(keys.relations[name]), device) for name in relations}


def quality_key(keys: StageKeys) -> str:
    """Cache key of a stage graph's quality report: it reads every stage, so it hashes all their keys."""
    return stage_key(
        "quality",
        {"measure": MEASURE_VERSION},
        [keys.world, keys.prior, keys.motion, keys.source, *sorted(keys.relations.values())],
    )


def stage_quality(
    configs: StageConfigs, cache: StageCache, keys: StageKeys, device: str | torch.device = "cpu"
) -> StageQuality:
    """The graph's ``nlrd.quality.StageQuality``, measured once (seconds) and cached beside the stages."""
    key = quality_key(keys)
    with cache.lock(key):
        if key in cache:
            return StageQuality.from_dict(cache.load(key)["quality"])
        world = load_world(cache, keys.world, mmap=True)
        train, heldout = split_mocap(world.mocap)
        names = sorted(keys.relations)
        quality = measure_stages(
            load_stages(cache, keys, names, device),
            heldout,
            configs.world.clip_len,
            {name: get_relation(name, configs.world.clip_len) for name in names},
            world.target_val,
            train,
            fresh_source_clips(configs.world, configs.data, world.mocap),
            device=device,
        )
        cache.save(key, {"quality": quality.as_dict()})
    return quality
