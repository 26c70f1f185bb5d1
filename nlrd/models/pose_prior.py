"""Pose prior: an adversarial auto-encoder between 3D poses and a bounded 32-d latent box.

Every point of the box ``(-10, 10)^latent_dim`` should decode to a plausible pose, which is what lets the
later stages (motion embedding, relation transformers, image encoder) work purely in latent space.

Input representation: the 16 *global* unit bone directions of ``skeleton.to_bone_directions`` (our documented
choice; the authors use parent-relative local frames).  Bone ``j`` is the bone ending at joint ``j``.

The networks are part-wise hierarchies, as in the paper and the authors' code:

* level 0, parts (``PART_BONES``): trunk, right arm, left arm, right leg, left leg, each its own MLP;
* level 1, limb + trunk (``LIMB_TRUNK``): trunk with each limb, 4 nodes;
* level 2, halves (``HALVES``): upper body (both arm+trunk nodes), lower body (both leg+trunk nodes);
* level 3, body: both halves, then z.

Trunk bones: pelvis->neck, neck->head, neck->R/L-shoulder and pelvis->R/L-hip.  The clavicle and hip bones
move rigidly with the torso, so they belong with it: the trunk feature then carries the whole torso frame
(facing direction, lean, twist), which every limb is combined with at level 1, and the trunk's part logit
can judge torso rigidity by itself.  The limbs are the freely moving segments: an arm is upper arm and
forearm, a leg is thigh, shin and foot.  (``skeleton.PARTS`` groups *joints* and puts shoulders and hips in
the limbs; this grouping is of *bones* and only the prior uses it.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nlrd import skeleton
from nlrd.models.layers import bounded, mlp

#: Level 0: each part and the joints whose incoming bones it encodes.
PART_BONES: dict[str, tuple[int, ...]] = {
    "trunk": (1, 8, 2, 5, 9, 13),
    "right_arm": (3, 4),
    "left_arm": (6, 7),
    "right_leg": (10, 11, 12),
    "left_leg": (14, 15, 16),
}
PART_NAMES: tuple[str, ...] = tuple(PART_BONES)
#: Level 1: the trunk combined with each limb.
LIMB_TRUNK: dict[str, tuple[str, ...]] = {
    "trunk_right_arm": ("trunk", "right_arm"),
    "trunk_left_arm": ("trunk", "left_arm"),
    "trunk_right_leg": ("trunk", "right_leg"),
    "trunk_left_leg": ("trunk", "left_leg"),
}
#: Level 2: upper and lower body.
HALVES: dict[str, tuple[str, ...]] = {
    "upper_body": ("trunk_right_arm", "trunk_left_arm"),
    "lower_body": ("trunk_right_leg", "trunk_left_leg"),
}
#: Level 3: the whole body.
BODY: dict[str, tuple[str, ...]] = {"body": ("upper_body", "lower_body")}
#: Levels above the parts, bottom-up; each maps a node to the nodes of the level below that it pools.
LEVELS: tuple[dict[str, tuple[str, ...]], ...] = (LIMB_TRUNK, HALVES, BODY)

#: Joints of the bones in part order, and where each of the 16 bones sits in that order.
_PART_ORDER: tuple[int, ...] = tuple(j for bones in PART_BONES.values() for j in bones)
_FROM_PART_ORDER: tuple[int, ...] = tuple(sorted(range(len(_PART_ORDER)), key=_PART_ORDER.__getitem__))


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2)


def level_widths(hidden: int) -> tuple[int, int, int, int]:
    """Feature widths of (parts, limb+trunk, halves, body): ``hidden // 2``, ``hidden // 2``, ``hidden``, ``hidden``.

    The authors' widths (32, 64, 128, 512) narrow four- to sixteenfold towards the parts; scaled down to
    ``hidden = 64`` (8, 16, 32, 64) they ended 400 steps at about twice the reconstruction error of these
    widths, so the lower levels are narrowed only by 2.
    """
    return hidden // 2, hidden // 2, hidden, hidden


def init_leaky(module: nn.Module) -> nn.Module:
    """He initialisation for LeakyReLU(0.2) on every linear layer, biases zero; returns ``module``.

    The hierarchy is six linear layers deep; PyTorch's default linear initialisation shrinks the signal
    about threefold per layer, and with it the prior barely learnt in a few hundred steps.
    """
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_uniform_(m.weight, a=0.2, nonlinearity="leaky_relu")
            nn.init.zeros_(m.bias)
    return module


def _bone_index(joints: tuple[int, ...]) -> list[int]:
    """Rows of the ``(..., 16, 3)`` direction array holding the bones that end at ``joints``."""
    return [j - 1 for j in joints]


class HierarchicalEncoder(nn.Module):
    """``E_p`` body: ``(..., 16, 3)`` bone directions -> node features, level by level, and z.

    Each node is one linear layer and LeakyReLU over the concatenated features of what it pools; only
    the body has a second layer before the latent.
    """

    def __init__(self, latent_dim: int, hidden: int) -> None:
        super().__init__()
        widths = level_widths(hidden)
        self.parts = nn.ModuleDict(
            {name: nn.Sequential(nn.Linear(3 * len(b), widths[0]), _act()) for name, b in PART_BONES.items()}
        )
        self.levels = nn.ModuleList(
            nn.ModuleDict(
                {
                    node: nn.Sequential(nn.Linear(len(children) * widths[i], widths[i + 1]), _act())
                    for node, children in level.items()
                }
            )
            for i, level in enumerate(LEVELS)
        )
        self.to_latent = nn.Sequential(nn.Linear(widths[3], widths[3]), _act(), nn.Linear(widths[3], latent_dim))

    def features(self, directions: torch.Tensor) -> dict[str, torch.Tensor]:
        """Features of every node (parts, limb+trunk, halves, body) for ``(..., 16, 3)`` directions."""
        out = {
            name: net(directions[..., _bone_index(PART_BONES[name]), :].flatten(-2)) for name, net in self.parts.items()
        }
        for level, nets in zip(LEVELS, self.levels, strict=True):
            for node, net in nets.items():
                out[node] = net(torch.cat([out[child] for child in level[node]], dim=-1))
        return out

    def forward(self, directions: torch.Tensor) -> torch.Tensor:
        """``(..., 16, 3)`` -> ``(..., latent_dim)`` in ``(-10, 10)``."""
        return bounded(self.to_latent(self.features(directions)["body"]))


class HierarchicalDecoder(nn.Module):
    """``D_p`` body: z -> body -> halves -> limb+trunk -> parts -> per-part bone directions ``(..., 16, 3)``.

    It mirrors the encoder: each node emits one slice per node of the level below that it pools, and a node
    pooled by several (the trunk, by all four limb+trunk nodes) sums its slices before the LeakyReLU.
    """

    def __init__(self, latent_dim: int, hidden: int) -> None:
        super().__init__()
        widths = level_widths(hidden)
        self.widths = widths
        self.from_latent = nn.Sequential(
            nn.Linear(latent_dim, widths[3]), _act(), nn.Linear(widths[3], widths[3]), _act()
        )
        self.levels = nn.ModuleList(
            nn.ModuleDict(
                {node: nn.Linear(widths[i + 1], len(children) * widths[i]) for node, children in level.items()}
            )
            for i, level in enumerate(LEVELS)
        )
        self.act = _act()
        self.heads = nn.ModuleDict({name: nn.Linear(widths[0], 3 * len(b)) for name, b in PART_BONES.items()})

    def features(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Features of every node, top-down, for ``(..., latent_dim)`` latents."""
        out = {"body": self.from_latent(z)}
        for i in reversed(range(len(LEVELS))):
            sums: dict[str, torch.Tensor] = {}
            for node, net in self.levels[i].items():
                for child, piece in zip(LEVELS[i][node], net(out[node]).split(self.widths[i], dim=-1), strict=True):
                    sums[child] = sums[child] + piece if child in sums else piece
            out.update({child: self.act(total) for child, total in sums.items()})
        return out

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``(..., latent_dim)`` -> ``(..., 16, 3)`` unnormalised bone directions."""
        feats = self.features(z)
        in_part_order = torch.cat([head(feats[name]).unflatten(-1, (-1, 3)) for name, head in self.heads.items()], -2)
        return in_part_order[..., list(_FROM_PART_ORDER), :]


class PosePrior(nn.Module):
    """Encoder ``E_p`` (pose -> z) and decoder ``D_p`` (z -> pose with canonical bone lengths).

    ``hidden`` sets the widths of the hierarchy (see ``level_widths``).
    """

    def __init__(self, latent_dim: int = 32, hidden: int = 256) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = init_leaky(HierarchicalEncoder(latent_dim, hidden))
        self.decoder = init_leaky(HierarchicalDecoder(latent_dim, hidden))

    def encode(self, joints_mm: torch.Tensor) -> torch.Tensor:
        """``(..., 17, 3)`` poses in mm -> ``(..., latent_dim)`` latents in ``(-10, 10)``.

        Only bone directions enter, so the code ignores bone lengths and global scale.
        """
        return self.encoder(skeleton.to_bone_directions(joints_mm))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(..., latent_dim)`` latents -> ``(..., 17, 3)`` root-relative poses in mm, canonical bone lengths."""
        return skeleton.from_bone_directions(self.decoder(z))

    def forward(self, joints_mm: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``D_p(E_p(pose))``, ``(..., 17, 3)`` mm."""
        return self.decode(self.encode(joints_mm))


@dataclass
class DiscriminatorLogits:
    """The critic's logits (high = real): ``joint`` ``(..., 17)`` in joint order, ``part`` ``(..., 5)`` in
    ``PART_NAMES`` order, ``body`` ``(...,)``."""

    joint: torch.Tensor
    part: torch.Tensor
    body: torch.Tensor


class PoseDiscriminator(nn.Module):
    """Real-vs-decoded critic in pose space with one logit per joint (17), per part (5) and for the body.

    A shared MLP embeds every bone direction; joint ``j``'s logit is a linear head (its own weights) on the
    feature of the bone ending at ``j``, and the root's is a head on the trunk feature.  Part features pool
    their bones' features (``PART_BONES``), the body feature pools the parts.  Local logits say *which*
    joint or part looks wrong, which a single whole-body logit cannot.

    It sees bone directions, not positions, so it cannot tell decoded poses (canonical bone lengths)
    from real ones (any lengths) by proportions alone.
    """

    def __init__(self, hidden: int = 256) -> None:
        super().__init__()
        bone_width, part_width = max(8, hidden // 8), hidden // 2  # the authors' bone width is 32 (at 256)
        self.bone = nn.Sequential(nn.Linear(3, bone_width), _act(), nn.Linear(bone_width, bone_width), _act())
        self.joint_weight = nn.Parameter(torch.randn(skeleton.NUM_BONES, bone_width) / bone_width**0.5)
        self.joint_bias = nn.Parameter(torch.zeros(skeleton.NUM_BONES))
        self.root_head = nn.Linear(part_width, 1)
        self.parts = nn.ModuleDict(
            {name: nn.Sequential(nn.Linear(len(b) * bone_width, part_width), _act()) for name, b in PART_BONES.items()}
        )
        self.part_heads = nn.ModuleDict({name: nn.Linear(part_width, 1) for name in PART_BONES})
        self.body = mlp((len(PART_BONES) * part_width, hidden, hidden, 1))
        init_leaky(self)

    def forward(self, joints_mm: torch.Tensor) -> DiscriminatorLogits:
        """``(..., 17, 3)`` poses in mm -> logits for every joint, part and the body."""
        bones = self.bone(skeleton.to_bone_directions(joints_mm))  # (..., 16, F)
        bone_logits = (bones * self.joint_weight).sum(-1) + self.joint_bias  # (..., 16)
        parts = {
            name: net(bones[..., _bone_index(PART_BONES[name]), :].flatten(-2)) for name, net in self.parts.items()
        }
        joint = torch.cat([self.root_head(parts["trunk"]), bone_logits], dim=-1)
        part = torch.cat([self.part_heads[name](parts[name]) for name in PART_NAMES], dim=-1)
        body = self.body(torch.cat([parts[name] for name in PART_NAMES], dim=-1)).squeeze(-1)
        return DiscriminatorLogits(joint=joint, part=part, body=body)
