"""How well each frozen stage does its job, measured before any trial trusts it.

Adaptation distils what the stages know: a pose prior that cannot reconstruct held-out poses, a motion embedding
that blurs clips, or a relation transformer that does not reach the counterpart's latent hands its own error to the
encoder as if it were the relation.  ``measure_stages`` reads every stage on data none of them trained on:

* ``prior_mm``: MPJPE of ``D_p(E_p(y))`` against held-out mocap poses ``y``;
* ``motion_mm``: MPJPE of ``D_p(D_m(E_m(E_p(Y))))`` against held-out ``T``-frame mocap windows ``Y``;
  both with each decoded bone given the held-out pose's own length (``rescale_to_bone_lengths``, the evaluation's
  ``gtbone`` protocol): the decoder's poses have the skeleton's canonical proportions and real mocap its performers'
  own, which alone costs about 95 mm on public BVH takes (``bench/RESULTS.md``); the procedural mocap has the
  canonical proportions, where the rescaling changes nothing; ``prior_train_mm`` / ``motion_train_mm``: the same on
  the mocap they trained on, so that a miss can be told apart: short of training (both high) or of mocap (held-out
  well above training, as on a few dozen BVH takes);
* ``relations[r]``: the relation transformer's decoded error ``|D(T_r(E(a))) - D(E(c))|`` as a fraction of the
  identity gap ``|D(E(a)) - D(E(c))|`` on held-out anchors ``a`` and counterparts ``c`` (0: the transformer reaches
  the counterpart; 1: it does no better than not moving); motion-level latents decode through ``D_m`` then ``D_p``;
  ``relations_train[r]``: the same on the training mocap;
* ``source_mm`` / ``source_mean_pose_mm``: the source encoder's MPJPE on fresh labelled source clips, and the mean
  pose's there (when fresh clips exist: the proxy world renders them; real data has none to spare);
* ``target_mm`` / ``target_mean_pose_mm``: source only against the mean pose on the target validation split.

``QUALITY_BARS`` says what each figure must reach and which knob raises it; ``warnings`` words the misses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import torch
from torch import nn

from nlrd.core import ClipSet, Stages
from nlrd.metrics import mpjpe, rescale_to_bone_lengths
from nlrd.nonlocalness import chunked, level_codec, level_samples, mocap_windows, random_subset
from nlrd.reference import mean_pose_metrics
from nlrd.relations import Relation
from nlrd.train.evaluate import evaluate

#: The figures' definition: part of a cached report's key, raised when a figure is measured differently, so a cache
#: made before measures its stages again (2: prior and motion figures with the held-out poses' own bone lengths;
#: 3: the same figures on the training mocap; 4: the relation figures there too).
MEASURE_VERSION = 4


@dataclass
class StageQuality:
    """The figures of the module docstring; ``None`` where there was nothing to measure them on."""

    prior_mm: float
    motion_mm: float
    relations: dict[str, float] = field(default_factory=dict)
    prior_train_mm: float | None = None
    motion_train_mm: float | None = None
    relations_train: dict[str, float] = field(default_factory=dict)
    source_mm: float | None = None
    source_mean_pose_mm: float | None = None
    target_mm: float | None = None
    target_mean_pose_mm: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> StageQuality:
        return cls(**values)


@dataclass(frozen=True)
class Bar:
    """A figure must stay at or below ``limit``; ``knob`` is the setting to raise when it does not.  ``fitted`` reads
    the same figure on the data the stage trained on, where there is one (the prior, the motion embedding and each
    relation transformer)."""

    name: str
    limit: float
    knob: str
    fitted: Callable[[StageQuality], float | None] | None = None

    def fitted_value(self, quality: StageQuality) -> float | None:
        """The figure on the training data, or None where the bar has none or ``quality`` predates it."""
        return self.fitted(quality) if self.fitted is not None else None


#: A held-out figure this many times its training figure says the stage lacks data, not steps: on 44 public BVH takes
#: the prior read 78 mm held out against 56 mm on its training mocap, and five times the steps made it 86 against 48
#: (``bench/RESULTS.md``, "The BVH loader on public BVH files"); on the procedural mocap the two agree.
SHORT_OF_DATA_RATIO = 1.3
#: What to give a stage that is short of data.
MORE_MOCAP = "more, or more varied, mocap (world.mocap_sequences; with BVH mocap, more takes)"


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return None if numerator is None or not denominator else numerator / denominator


#: The bars a stage graph should reach before its trials mean anything, and the figure each reads.
QUALITY_BARS: dict[str, tuple[Bar, Callable[[StageQuality], float | None]]] = {
    "prior": (
        Bar("pose prior reconstruction of held-out mocap (mm)", 40.0, "stages.prior.steps", lambda q: q.prior_train_mm),
        lambda q: q.prior_mm,
    ),
    "motion": (
        Bar(
            "motion embedding reconstruction of held-out clips (mm)",
            60.0,
            "stages.motion.steps",
            lambda q: q.motion_train_mm,
        ),
        lambda q: q.motion_mm,
    ),
    "source": (
        Bar(
            "source encoder on fresh source clips, as a fraction of the mean pose's error there",
            0.5,
            "stages.source.steps or world.source_clips",
        ),
        lambda q: _ratio(q.source_mm, q.source_mean_pose_mm),
    ),
    "target": (
        Bar(
            "source only on the target, as a fraction of the mean pose's error there",
            0.75,
            "stages.source.steps or world.source_clips (or a smaller domain gap)",
        ),
        lambda q: _ratio(q.target_mm, q.target_mean_pose_mm),
    ),
}
#: Every relation transformer must close at least 80% of its identity gap.
RELATION_BAR = Bar(
    "relation transformer's decoded error, as a fraction of the identity gap", 0.2, "stages.relation.steps"
)


def checked_figures(quality: StageQuality) -> list[tuple[str, float, Bar]]:
    """Every measured figure that has a bar, as ``(label, value, bar)``: the stage bars in ``QUALITY_BARS``'s
    order, then one per relation transformer by name."""
    figures = []
    for bar, read in QUALITY_BARS.values():
        value = read(quality)
        if value is not None:
            figures.append((bar.name, value, bar))
    for name, left in sorted(quality.relations.items()):
        bar = replace(RELATION_BAR, fitted=lambda q, name=name: q.relations_train.get(name))
        figures.append((f"relation {name}: {RELATION_BAR.name}", left, bar))
    return figures


def warnings(quality: StageQuality) -> list[str]:
    """One line per figure above its bar, naming the figure, its value, the bar and the knob to raise, or, where the
    stage does well on its training data and not held out, that it needs more data instead."""
    lines = []
    for label, value, bar in checked_figures(quality):
        if value <= bar.limit:
            continue
        fitted = bar.fitted_value(quality)
        if fitted is not None and value > SHORT_OF_DATA_RATIO * fitted:
            advice = (
                f"on the mocap it trained on it reads {fitted:.2f}, so it is short of data more than of training: "
                f"give it {MORE_MOCAP} rather than raise {bar.knob}"
            )
        else:
            advice = f"raise {bar.knob}"
        lines.append(f"{label} is {value:.2f}, above the bar {bar.limit:g}: {advice}")
    return lines


def decoded_gap_left(anchor: torch.Tensor, counterpart: torch.Tensor, moved: torch.Tensor) -> float:
    """MPJPE of ``moved`` (the decoded transformer output) against ``counterpart`` as a fraction of the identity gap,
    the MPJPE of ``anchor`` against it; all three decoded poses ``(N, ..., 17, 3)`` mm.  0 when there is no gap."""
    identity = mpjpe(anchor, counterpart).item()
    return mpjpe(moved, counterpart).item() / identity if identity > 0 else 0.0


def relation_gap_left(
    prior: nn.Module, motion: nn.Module, transformer: nn.Module, relation: Relation, raw: torch.Tensor
) -> float:
    """Decoded error of ``transformer`` as a fraction of the identity gap on ``raw`` samples of ``relation``."""
    encode, decode = level_codec(prior, motion, relation.level, relation.clip_len)
    anchor, counterpart = relation.poses(raw)
    z_anchor = chunked(encode, anchor)
    decoded_counterpart = chunked(decode, chunked(encode, counterpart))
    moved = chunked(decode, chunked(transformer, z_anchor))
    return decoded_gap_left(chunked(decode, z_anchor), decoded_counterpart, moved)


@torch.no_grad()
def measure_stages(
    stages: Stages,
    heldout_mocap: torch.Tensor,
    clip_len: int,
    relations: dict[str, Relation],
    target_val: ClipSet,
    train_mocap: torch.Tensor,
    fresh_source: ClipSet | None = None,
    *,
    max_samples: int = 1024,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> StageQuality:
    """Every figure of the module docstring; ``relations`` maps each transformer in ``stages`` to its relation.

    ``heldout_mocap``: ``(M, L, 17, 3)`` mm no stage trained on; ``train_mocap``: the mocap the stages did train on,
    whose mean pose is the reference line.  At most ``max_samples`` poses, windows or pairs (drawn with ``seed``)
    enter each figure, which bounds the cost of the LSTM.
    """
    generator = torch.Generator().manual_seed(seed)
    mocap = heldout_mocap.float()
    prior, motion = stages.prior, stages.motion

    def on_device(x: torch.Tensor) -> torch.Tensor:
        return x.to(device)

    def own_bones_mpjpe(decoded: torch.Tensor, truth: torch.Tensor) -> float:
        return mpjpe(rescale_to_bone_lengths(decoded, truth), truth).item()

    def figures(windows: torch.Tensor) -> tuple[float, float, dict[str, float]]:
        """The prior's and the motion embedding's MPJPE and every relation's gap left, on ``windows``."""
        poses = on_device(random_subset(windows.flatten(0, 1), max_samples, generator))
        clips = on_device(random_subset(mocap_windows(windows, clip_len), max_samples, generator))
        prior_mm = own_bones_mpjpe(chunked(prior, poses), poses)
        motion_mm = own_bones_mpjpe(chunked(lambda x: prior.decode(motion(prior.encode(x))), clips), clips)
        gaps = {}
        for name, relation in sorted(relations.items()):
            raw = random_subset(level_samples(windows, relation.level, relation.window), max_samples, generator)
            gaps[name] = relation_gap_left(prior, motion, stages.transformers[name], relation, on_device(raw))
        return prior_mm, motion_mm, gaps

    prior_mm, motion_mm, gaps = figures(mocap)
    prior_train_mm, motion_train_mm, gaps_train = figures(train_mocap.float())
    quality = StageQuality(
        prior_mm=prior_mm,
        motion_mm=motion_mm,
        relations=gaps,
        prior_train_mm=prior_train_mm,
        motion_train_mm=motion_train_mm,
        relations_train=gaps_train,
    )
    if target_val.poses is not None:
        quality.target_mm = evaluate(stages.encoder, prior, target_val, device=device)["mpjpe"]
        quality.target_mean_pose_mm = mean_pose_metrics(train_mocap, target_val)["mpjpe"]
    if fresh_source is not None and fresh_source.poses is not None:
        quality.source_mm = evaluate(stages.encoder, prior, fresh_source, device=device)["mpjpe"]
        quality.source_mean_pose_mm = mean_pose_metrics(train_mocap, fresh_source)["mpjpe"]
    return quality
