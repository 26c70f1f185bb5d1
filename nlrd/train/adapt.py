"""Stage 5: self-adaptation of the image encoder to the unlabelled target domain.

G starts as a copy of the source encoder with one block trainable.  It learns from contrastive losses
(LCR on frames, HCR on clips) and from non-local relation distillation: for each chosen relation r,
the frozen transformer ``T_r`` applied to G's latent of the anchor must match G's latent of the
counterpart image/video, so relations learnt on mocap pull the target features into the prior's space.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from nlrd.atomic import write_atomic
from nlrd.config import ConfigError, check_ranges
from nlrd.core import ClipSet, Report, Stages
from nlrd.device import autocast
from nlrd.models import ProjectionHead, set_trainable
from nlrd.models.heads import feature_dim, latent_and_feature
from nlrd.relations import Relation, get_relation
from nlrd.train.common import (
    POSE_SCALE_MM,
    check_finite,
    freeze,
    frozen_copy,
    pose_l1,
    rotate_hue,
    seeded,
    should_report,
)
from nlrd.train.evaluate import evaluate
from nlrd.train.source import labelled_batch

SCHEDULES = ("round_robin", "weighted")
#: Where the non-local losses compare the two sides of a pair: see ``AdaptConfig``.
NONLOCAL_SPACES = ("latent", "pose")
#: Which sides of a pose-level pair the non-local loss trains through: see ``AdaptConfig``.
NONLOCAL_GRADS = ("anchor", "both")
#: What the LCR projection head reads: see ``AdaptConfig``.
LCR_HEAD_INPUTS = ("latent", "feature")
#: File name of the adapted encoder's state dict inside a checkpoint directory.
ENCODER_FILE = "encoder.pt"
#: File name of the full adaptation state (what ``resume_from`` reads) inside a checkpoint directory.
STATE_FILE = "adapt_state.pt"


@dataclass
class AdaptConfig:
    """``relations``: catalogue names distilled (each needs a transformer in the stages).

    ``schedule="round_robin"``: one Adam per loss (``lr_contrastive`` for LCR/HCR, ``lr_nonlocal`` for each
    relation), one loss per step in turn, as in the paper; losses with weight 0 are left out of the turn.
    ``schedule="weighted"``: one Adam at ``lr_weighted`` on ``w_lcr*LCR + w_hcr*HCR + w_pose*sum(pose) +
    w_motion*sum(motion)``; the per-loss rates (``lr_contrastive``, ``lr_nonlocal``, ``lr_source``) serve the
    round robin only.  ``eval_every``: steps between target-validation reports.

    ``nonlocal_space="latent"``: the paper's non-local losses, L1 between latents (z, or v at motion level).
    ``"pose"``: both sides are first decoded to poses by the frozen decoders (``D_p``, or ``D_p D_m``) and
    compared in metres, so each latent direction counts by how much it moves the joints.
    ``exact_pose_map`` (pose space only; not in the paper, which distils every relation into a transformer): the
    pose-level losses compare the relation's exact spatial map (``Relation.map_pose``: the flip, the in-plane
    rotation) of the decoded anchor with the decoded counterpart, instead of the decoded ``T_r`` of the anchor's
    latent, so no transformer error enters them (they are 0 on the truth); motion-level losses keep ``T_r``.
    ``w_source`` (not in the paper, 0 = off): a supervised source term in the objective, L1 of ``D_p(G(x))``
    against the true pose on ``batch_clips * T`` augmented labelled source frames, at ``lr_source`` under
    round robin.  It anchors G to the poses it learnt while the unlabelled losses act, so that more of the
    encoder can be trained for longer without drifting to flip-consistent but wrong poses.
    ``bf16``: bf16 autocast of the loss computations (CUDA only; a no-op on the CPU, see ``nlrd.device``).

    The next three give the paper's choice (or its official code's) where ours differs; their defaults keep ours.
    ``nonlocal_grad="anchor"``: the counterpart of every non-local pair is a fixed target (stop-gradient).
    ``"both"``: the pose-level losses train G through the counterpart too, as the paper's Eq. 2 and the official
    code do, so G may also move the counterpart towards ``T_r`` of the anchor; motion-level counterparts stay
    fixed targets, as in the official code.
    ``lcr_head_input="latent"``: the LCR projection head reads G's latent z.  ``"feature"``: it reads G's feature
    before z (``nlrd.models.heads.latent_and_feature``), as the official code does, so the contrastive loss need not
    spread the latent the decoder reads.  The HCR head reads ``E_m(z)`` either way, as in the paper.
    ``positive_hue`` (0 = off): the contrastive positive's hue also turns, by an angle uniform in
    ``+-positive_hue * 180`` degrees per clip (``nlrd.train.common.rotate_hue``, the source augmentation's hue
    shift), so that telling frames apart cannot rest on colour; the official code shifts the hue of over a third
    of the positives' frames by 108-180 degrees (per frame there, per clip here, so that HCR sees one clip).
    """

    relations: tuple[str, ...] = ("flip", "flip_backward", "slow_backward")
    steps: int = 40
    batch_clips: int = 4
    lr_contrastive: float = 2e-4
    lr_nonlocal: float = 1e-4
    lr_weighted: float = 1e-4
    tau: float = 0.07
    w_lcr: float = 1.0
    w_hcr: float = 1.0
    w_pose: float = 1.0
    w_motion: float = 1.0
    schedule: str = "round_robin"
    trainable_block: str = "block3"
    eval_every: int = 10
    seed: int = 0
    nonlocal_space: str = "latent"
    w_source: float = 0.0
    lr_source: float = 1e-4
    bf16: bool = False
    nonlocal_grad: str = "anchor"
    lcr_head_input: str = "latent"
    positive_hue: float = 0.0
    exact_pose_map: bool = False

    def __post_init__(self) -> None:
        check_ranges(
            self,
            counts=("steps", "batch_clips", "eval_every"),
            positive=("lr_contrastive", "lr_nonlocal", "lr_weighted", "lr_source", "tau"),
            non_negative=("w_lcr", "w_hcr", "w_pose", "w_motion", "w_source", "seed"),
            fractions=("positive_hue",),
            words={
                "schedule": SCHEDULES,
                "nonlocal_space": NONLOCAL_SPACES,
                "nonlocal_grad": NONLOCAL_GRADS,
                "lcr_head_input": LCR_HEAD_INPUTS,
            },
        )
        if self.exact_pose_map and self.nonlocal_space != "pose":
            raise ConfigError("AdaptConfig", "exact_pose_map", "maps decoded poses: it needs nonlocal_space pose")


def photometric(clips: torch.Tensor) -> torch.Tensor:
    """A random pose-preserving appearance change, one draw per clip: brightness, contrast, per-channel
    gain, pixel noise.  ``clips``: ``(B, L, 3, H, W)`` in [0, 1].

    Applied to a raw window before a relation's transforms, it is identical on both sides of a pair.
    """
    b, device = clips.shape[0], clips.device
    brightness = 0.3 * (torch.rand(b, 1, 1, 1, 1, device=device) - 0.5)
    contrast = 0.7 + 0.6 * torch.rand(b, 1, 1, 1, 1, device=device)
    gain = 0.8 + 0.4 * torch.rand(b, 1, 3, 1, 1, device=device)
    noise = 0.04 * torch.rand(b, 1, 1, 1, 1, device=device) * torch.randn(clips.shape, device=device)
    out = ((clips - 0.5) * contrast + 0.5 + brightness) * gain + noise
    return out.clamp(0.0, 1.0)


def info_nce(a: torch.Tensor, b: torch.Tensor, groups: torch.Tensor, tau: float) -> torch.Tensor:
    """Symmetric InfoNCE between unit vectors ``a`` and ``b`` ``(N, D)``: row i of ``a`` must pick row i of ``b``.

    Rows in the same group (frames of one clip) are neither positives nor negatives: near-identical
    neighbouring frames would otherwise be pushed apart.  ``groups``: ``(N,)`` integer labels.
    """
    logits = a @ b.T / tau
    same_group = groups[:, None] == groups[None, :]
    logits = logits.masked_fill(same_group & ~torch.eye(len(a), dtype=torch.bool, device=a.device), float("-inf"))
    target = torch.arange(len(a), device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def jitter_hue(clips: torch.Tensor, fraction: float) -> torch.Tensor:
    """``(B, L, 3, H, W)`` clips with each clip's hue turned by an angle uniform in ``+-fraction * 180`` degrees
    (one draw per clip; nothing is drawn when ``fraction`` is 0).  Not clamped."""
    if fraction == 0:
        return clips
    b, length = clips.shape[:2]
    angle = (2 * torch.rand(b, device=clips.device) - 1) * fraction * math.pi
    return rotate_hue(clips.flatten(0, 1), angle.repeat_interleave(length)).unflatten(0, (b, length))


class _Step:
    """The data of one adaptation step, with the encodings that several losses share computed once.

    ``positive_hue``, ``lcr_head_input``: ``AdaptConfig``'s, for the contrastive views and encodings.
    """

    def __init__(
        self,
        encoder: nn.Module,
        clips: torch.Tensor,
        clip_len: int,
        positive_hue: float = 0.0,
        lcr_head_input: str = "latent",
    ) -> None:
        self.encoder = encoder
        self.clips = clips  # (B, 2T, 3, H, W) raw, in [0, 1]
        self.view = photometric(clips)
        self.clip_len = clip_len
        self.positive_hue, self.lcr_head_input = positive_hue, lcr_head_input

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """``(B, T, 3, H, W)`` -> per-frame latents ``(B, T, latent_dim)``."""
        return self.encoder(frames.flatten(0, 1)).unflatten(0, frames.shape[:2])

    def _encode_view(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T, 3, H, W)`` -> latents ``(B, T, latent_dim)`` and what the LCR head reads ``(B, T, F)``."""
        if self.lcr_head_input == "latent":
            latents = self.encode_frames(frames)
            return latents, latents
        latent, feature = latent_and_feature(self.encoder, frames.flatten(0, 1))
        return latent.unflatten(0, frames.shape[:2]), feature.unflatten(0, frames.shape[:2])

    @cached_property
    def contrastive(self) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """Two independently augmented views of the first T frames, encoded: their latents ``(B, T, latent_dim)``
        (what HCR reads) and what the LCR head reads ``(B, T, F)``.  The second view (the positive) may also
        turn its hue."""
        first = self.clips[:, : self.clip_len]
        (z1, f1), (z2, f2) = (
            self._encode_view(view)
            for view in (self.view[:, : self.clip_len], photometric(jitter_hue(first, self.positive_hue)))
        )
        return (z1, z2), (f1, f2)

    def window(self, length: int) -> torch.Tensor:
        """A random ``length``-frame window of the augmented clips, ``(B, length, 3, H, W)``."""
        start = int(torch.randint(self.view.shape[1] - length + 1, ()))
        return self.view[:, start : start + length]


def _lcr_loss(step: _Step, head: nn.Module, tau: float) -> torch.Tensor:
    """Frame-level InfoNCE: each frame's second view is its positive, other clips' frames the negatives."""
    f1, f2 = step.contrastive[1]
    groups = torch.arange(f1.shape[0], device=f1.device).repeat_interleave(f1.shape[1])
    return info_nce(head(f1.flatten(0, 1)), head(f2.flatten(0, 1)), groups, tau)


def _hcr_loss(step: _Step, motion: nn.Module, head: nn.Module, tau: float) -> torch.Tensor:
    """Clip-level InfoNCE on motion embeddings ``E_m(G(X))`` of the two views."""
    z1, z2 = step.contrastive[0]
    groups = torch.arange(z1.shape[0], device=z1.device)
    return info_nce(head(motion.encode(z1)), head(motion.encode(z2)), groups, tau)


def _source_loss(step: _Step, source: ClipSet, prior: nn.Module) -> torch.Tensor:
    """Supervised anchor: pose L1 (metres) on as many random augmented labelled source frames as the step
    has target frames.  Drawn from the global generator, so a seeded (or resumed) run draws the same frames."""
    images, targets = labelled_batch(source, step.clips.shape[0] * step.clip_len, step.clips.device)
    return pose_l1(prior.decode(step.encoder(images)).float(), targets)


Readout = Callable[[torch.Tensor], torch.Tensor]


def _pose_loss(
    step: _Step,
    relation: Relation,
    transformer: nn.Module,
    readout: Readout,
    through_counterpart: bool = False,
    exact: bool = False,
) -> torch.Tensor:
    """``mean |R(T_r(G(a))) - R(G(c))|`` over the frames of the first T of every clip; ``G(c)`` is a fixed target
    unless ``through_counterpart`` (``AdaptConfig.nonlocal_grad="both"``).  ``exact``
    (``AdaptConfig.exact_pose_map``): ``mean |map_r(R(G(a))) - R(G(c))|`` with the relation's own pose map.

    ``readout`` R: the identity (latent space) or the frozen pose decoder in metres (pose space).
    """
    anchor, counterpart = relation.images(step.view[:, : step.clip_len].flatten(0, 1))
    with torch.set_grad_enabled(through_counterpart and torch.is_grad_enabled()):
        target = readout(step.encoder(counterpart))
    mapped = relation.map_pose(readout(step.encoder(anchor))) if exact else readout(transformer(step.encoder(anchor)))
    return (mapped - target).abs().mean()


def _motion_loss(
    step: _Step, relation: Relation, motion: nn.Module, transformer: nn.Module, readout: Readout
) -> torch.Tensor:
    """``mean |R(T_r(E_m G(A))) - R(E_m G(C))|`` on a random window of every clip; the counterpart is a fixed
    target.  ``readout`` R: the identity (latent space) or ``D_p D_m`` in metres (pose space)."""
    anchor, counterpart = relation.images(step.window(relation.window))
    with torch.no_grad():
        target = readout(motion.encode(step.encode_frames(counterpart)))
    return (readout(transformer(motion.encode(step.encode_frames(anchor)))) - target).abs().mean()


def readouts(space: str, prior: nn.Module, motion: nn.Module, clip_len: int) -> dict[str, Readout]:
    """What the non-local losses compare, per relation level: latents as they are, or decoded poses (metres)."""
    if space == "latent":
        return {"pose": nn.Identity(), "motion": nn.Identity()}
    return {
        "pose": lambda z: prior.decode(z) / POSE_SCALE_MM,
        "motion": lambda v: prior.decode(motion.decode(v, clip_len)) / POSE_SCALE_MM,
    }


@dataclass
class _Term:
    """One loss of the adaptation objective with its weight, learning rate and own parameters (a head)."""

    name: str
    weight: float
    lr: float
    fn: Callable[[_Step], torch.Tensor]
    params: list[nn.Parameter]


def term_name(relation: Relation) -> str:
    """The name of a relation's loss in reports and in ``loss_weights``: ``pose_<name>`` or ``motion_<name>``."""
    return f"{relation.level}_{relation.name}"


def loss_weights(cfg: AdaptConfig, relations: Sequence[Relation]) -> dict[str, float]:
    """The losses of ``cfg``'s objective with weight not 0, by name, in the order the round robin takes them:
    ``lcr``, ``hcr``, ``source``, then one per relation (``term_name``)."""
    weights = {"lcr": cfg.w_lcr, "hcr": cfg.w_hcr, "source": cfg.w_source}
    weights |= {term_name(r): cfg.w_pose if r.level == "pose" else cfg.w_motion for r in relations}
    return {name: weight for name, weight in weights.items() if weight != 0}


def _terms(
    cfg: AdaptConfig,
    relations: list[Relation],
    prior: nn.Module,
    motion: nn.Module,
    transformers: dict[str, nn.Module],
    lcr_head: nn.Module,
    hcr_head: nn.Module,
    source: ClipSet | None,
    clip_len: int,
) -> list[_Term]:
    """The losses of ``loss_weights``, each with its rate, loss function and own parameters (the heads')."""
    made = {
        "lcr": (cfg.lr_contrastive, partial(_lcr_loss, head=lcr_head, tau=cfg.tau), list(lcr_head.parameters())),
        "hcr": (
            cfg.lr_contrastive,
            partial(_hcr_loss, motion=motion, head=hcr_head, tau=cfg.tau),
            list(hcr_head.parameters()),
        ),
        "source": (cfg.lr_source, partial(_source_loss, source=source, prior=prior), []),
    }
    by_level = readouts(cfg.nonlocal_space, prior, motion, clip_len)
    for r in relations:
        transformer, readout = transformers[r.name], by_level[r.level]
        if r.level == "pose":
            fn = partial(
                _pose_loss,
                relation=r,
                transformer=transformer,
                readout=readout,
                through_counterpart=cfg.nonlocal_grad == "both",
                exact=cfg.exact_pose_map,
            )
        else:
            fn = partial(_motion_loss, relation=r, motion=motion, transformer=transformer, readout=readout)
        made[term_name(r)] = (cfg.lr_nonlocal, fn, [])
    return [_Term(name, weight, *made[name]) for name, weight in loss_weights(cfg, relations).items()]


def _resolve_relations(names: tuple[str, ...], clip_len: int, transformers: dict[str, nn.Module]) -> list[Relation]:
    relations = [get_relation(name, clip_len) for name in names]
    missing = [r.name for r in relations if r.name not in transformers]
    if missing:
        raise ValueError(f"no relation transformer in the stages for {missing}; trained: {sorted(transformers)}")
    return relations


def save_encoder(encoder: nn.Module, path: Path) -> None:
    """Write ``encoder``'s state dict to ``path`` through a temporary file, so a reader never sees half of it."""
    write_atomic(path, lambda tmp: torch.save({k: t.detach().cpu() for k, t in encoder.state_dict().items()}, tmp))


def _save_state(
    path: Path, step: int, encoder: nn.Module, heads: dict[str, nn.Module], optimisers: list, device: torch.device
) -> None:
    """Everything a resumed adaptation needs to continue exactly where this one is after ``step``."""
    state = {
        "step": step,
        "encoder": {k: t.detach().cpu() for k, t in encoder.state_dict().items()},
        "heads": {name: head.state_dict() for name, head in heads.items()},
        "optimisers": [opt.state_dict() for opt in optimisers],
        "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }
    write_atomic(path, lambda tmp: torch.save(state, tmp))


def adapt_state_step(path: str | os.PathLike) -> int:
    """The step after which the adaptation state at ``path`` was saved.

    Memory-mapped, so asking costs no read of the weights and optimiser moments (hundreds of MB for ResNet-50).
    """
    return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["step"])


def _load_state(
    path: Path, encoder: nn.Module, heads: dict[str, nn.Module], optimisers: list, device: torch.device
) -> int:
    """Restore what ``_save_state`` wrote (read with ``weights_only=True``); returns the step it was saved after."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        encoder.load_state_dict(state["encoder"])
        for name, head in heads.items():
            head.load_state_dict(state["heads"][name])
        if len(state["optimisers"]) != len(optimisers):
            raise ValueError(f"{len(state['optimisers'])} optimisers saved, this config has {len(optimisers)}")
        for opt, saved in zip(optimisers, state["optimisers"], strict=True):
            opt.load_state_dict(saved)
    except Exception as exc:  # a foreign, truncated or mismatched checkpoint: say which file and why
        raise ValueError(f"cannot resume adaptation from {path}: {exc}") from exc
    torch.set_rng_state(state["rng"])
    if state["cuda_rng"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_rng"], device)
    return int(state["step"])


class _Objective:
    """What ``adapt`` and ``loss_scales`` set up alike: the frozen stages on ``device``, a trainable copy of the
    source encoder, the projection heads and the weighted losses.  Built inside ``seeded``: the heads' initial
    weights are part of a seeded run."""

    def __init__(
        self,
        cfg: AdaptConfig,
        stages: Stages,
        target_train: ClipSet,
        clip_len: int,
        device: torch.device,
        source: ClipSet | None,
    ) -> None:
        if cfg.w_source != 0 and (source is None or source.poses is None):
            raise ValueError("w_source is not 0, so adapt needs the labelled source clips (source=...)")
        relations = _resolve_relations(cfg.relations, clip_len, stages.transformers)
        needed = max([clip_len, *(r.window for r in relations)])
        if target_train.clip_len < needed:
            raise ValueError(f"target_train clips have {target_train.clip_len} frames; these relations need {needed}")
        self.clip_len, self.device, self.cfg = clip_len, device, cfg
        self.prior = frozen_copy(stages.prior, device)
        # Train mode: cuDNN runs LSTM backward only in training mode; the LSTM has no dropout, so it is the
        # same function.
        motion = frozen_copy(stages.motion, device).train()
        transformers = {r.name: frozen_copy(stages.transformers[r.name], device) for r in relations}
        self.encoder = copy.deepcopy(stages.encoder).to(device)
        self.encoder_params = set_trainable(self.encoder, cfg.trainable_block)
        self.encoder.train()
        lcr_dim = self.prior.latent_dim if cfg.lcr_head_input == "latent" else feature_dim(self.encoder)
        self.heads = {
            "lcr": ProjectionHead(lcr_dim).to(device),
            "hcr": ProjectionHead(motion.embed_dim).to(device),
        }
        self.terms = _terms(
            cfg, relations, self.prior, motion, transformers, self.heads["lcr"], self.heads["hcr"], source, clip_len
        )

    def draw(self, target_train: ClipSet, batch_clips: int) -> _Step:
        """One step's data: ``batch_clips`` random target training clips, from the global generator."""
        idx = torch.randint(len(target_train), (batch_clips,))
        clips = target_train.frames[idx].to(self.device).float() / 255.0
        return _Step(self.encoder, clips, self.clip_len, self.cfg.positive_hue, self.cfg.lcr_head_input)


def adapt(
    cfg: AdaptConfig,
    stages: Stages,
    target_train: ClipSet,
    target_val: ClipSet,
    report: Report | None = None,
    device: str | torch.device = "cpu",
    checkpoint_dir: str | os.PathLike | None = None,
    resume_from: str | os.PathLike | None = None,
    source: ClipSet | None = None,
    on_phase: Callable[[str], None] | None = None,
) -> nn.Module:
    """Adapt a copy of ``stages.encoder`` to the target domain; returns it frozen.

    ``target_train``: unlabelled clips of 2T frames (at least the longest relation window).
    ``target_val``: labelled clips of T frames; T is the relations' clip length.  Reports
    ``{"step", "mpjpe", "pa_mpjpe", "loss"}`` (mm; ``loss`` is the last step's total) every ``eval_every``
    steps and at the end.  With ``checkpoint_dir``, the encoder's state is written to
    ``checkpoint_dir/encoder.pt`` just before each report, so every report has a matching checkpoint, together
    with ``adapt_state.pt`` (encoder, heads, optimisers, step, random state).  ``resume_from``: a checkpoint
    directory holding that state; the run continues after its step exactly as if it had never stopped (on the
    CPU, bit for bit) and reports only the later steps.  ``source``: the labelled source clips, needed only
    when ``cfg.w_source`` is not 0.  ``on_phase`` is called with ``"ready"`` once the models and optimisers are
    built (the first step begins) and with ``"first_step"`` after that step: what a launch-time breakdown needs.
    Raises FloatingPointError on a non-finite loss.
    """
    if target_val.poses is None:
        raise ValueError("target_val must be labelled (poses is None)")
    clip_len = target_val.clip_len
    device = torch.device(device)
    with seeded(cfg.seed, device):
        objective = _Objective(cfg, stages, target_train, clip_len, device, source)
        encoder, prior, heads, terms = objective.encoder, objective.prior, objective.heads, objective.terms
        if not terms:
            raise ValueError("every adaptation loss has weight 0 or no relation: nothing to train")
        trained = objective.encoder_params
        if cfg.schedule == "round_robin":
            optimisers = [torch.optim.Adam(trained + t.params, lr=t.lr) for t in terms]
        else:
            head_params = [p for t in terms for p in t.params]
            optimisers = [torch.optim.Adam(trained + head_params, lr=cfg.lr_weighted)]

        done = 0
        if resume_from is not None:
            done = _load_state(Path(resume_from) / STATE_FILE, encoder, heads, optimisers, device)
        if on_phase is not None:
            on_phase("ready")
        for s in range(done + 1, cfg.steps + 1):
            step = objective.draw(target_train, cfg.batch_clips)
            active = [terms[(s - 1) % len(terms)]] if cfg.schedule == "round_robin" else terms
            opt = optimisers[(s - 1) % len(terms)] if cfg.schedule == "round_robin" else optimisers[0]
            total = torch.zeros((), device=device)
            for term in active:
                with autocast(device, cfg.bf16):
                    value = term.fn(step).float()
                check_finite(value, term.name, s)
                total = total + term.weight * value
            opt.zero_grad()
            total.backward()
            opt.step()
            if on_phase is not None and s == done + 1:
                on_phase("first_step")
            if report is not None and should_report(s, cfg.eval_every, cfg.steps):
                metrics = {"step": s, **evaluate(encoder, prior, target_val, device=device), "loss": total.item()}
                if checkpoint_dir is not None:
                    save_encoder(encoder, Path(checkpoint_dir) / ENCODER_FILE)
                    _save_state(Path(checkpoint_dir) / STATE_FILE, s, encoder, heads, optimisers, device)
                report(metrics)
    return freeze(encoder)


@torch.no_grad()
def loss_scales(
    cfg: AdaptConfig,
    stages: Stages,
    target_train: ClipSet,
    clip_len: int,
    batches: int = 8,
    device: str | torch.device = "cpu",
    source: ClipSet | None = None,
) -> dict[str, float]:
    """The unweighted value of every loss ``adapt`` would train (weight not 0), at its start: the source encoder
    and fresh heads on ``batches`` random batches of ``target_train``, averaged.  Nothing is trained.

    Under ``schedule="weighted"`` one optimiser follows the sum, so losses of very different sizes need weights
    that bring them to a common scale; this says what those sizes are.  Keys are the terms' names: ``lcr``,
    ``hcr``, ``source``, ``pose_<relation>``, ``motion_<relation>``.  ``clip_len``: T, the relations' clip length.
    """
    device = torch.device(device)
    with seeded(cfg.seed, device):
        objective = _Objective(cfg, stages, target_train, clip_len, device, source)
        sums = dict.fromkeys((t.name for t in objective.terms), 0.0)
        for _ in range(batches):
            step = objective.draw(target_train, cfg.batch_clips)
            for term in objective.terms:
                with autocast(device, cfg.bf16):
                    sums[term.name] += term.fn(step).float().item()
    return {name: total / batches for name, total in sums.items()}
