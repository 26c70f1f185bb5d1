"""ResNet-50 up to Res-4F (the paper's image encoder), written out because torchvision is not available here.

The trunk is torchvision's ResNet-50 v1.5 (stride on the 3x3 conv of a Bottleneck) up to ``layer3``, with
torchvision's parameter names, so its ImageNet state dict loads with ``load_imagenet_weights``.  In the
paper's caffe naming res2 = ``layer1``, res3 = ``layer2`` (the block adaptation trains), res4 = ``layer3``
(its last unit is Res-4F).  A head (global average pool, linear, ``10·tanh(x/10)``) maps to the latent.

BatchNorm: adaptation trains one block and freezes the rest.  A frozen BatchNorm layer in train mode would
still normalise with batch statistics and update its running statistics, so the frozen blocks would not
compute a fixed function.  ``ResNet50.train`` therefore keeps every BatchNorm layer whose affine parameters
do not require gradients in eval mode.  We chose this over ``FrozenBatchNorm2d`` because the layers stay
ordinary ``nn.BatchNorm2d``: the state dict (``num_batches_tracked`` included) stays torchvision's, and the
source stage, which trains every block, keeps updating the statistics on its own images.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from nlrd.models.layers import bounded

#: ImageNet channel statistics the torchvision weights expect, for images in [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Blocks per stage of the trunk (ResNet-50: 3, 4, 6, 3; the fourth stage is cut off).
STAGE_BLOCKS = (3, 4, 6)
#: State-dict prefixes of a torchvision ResNet-50 beyond the trunk, ignored when loading ImageNet weights.
IGNORED_PREFIXES = ("layer4.", "fc.")


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (carrying the stride) -> 1x1 expanding by 4, plus the identity or a projection shortcut."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


def _stage(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    """One stage: the first block projects the shortcut (``downsample.0`` conv, ``downsample.1`` BN)."""
    out = planes * Bottleneck.expansion
    downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))
    layers = [Bottleneck(inplanes, planes, stride, downsample)]
    layers += [Bottleneck(out, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ResNet50(nn.Module):
    """``(B, 3, H, W)`` images in [0, 1] -> ``(B, latent_dim)`` z in ``(-10, 10)``.

    Children, in order: ``conv1``, ``bn1``, ``relu``, ``maxpool``, ``layer1``, ``layer2``, ``layer3``, ``head``.
    ``width`` is the stem's channel count: 64 is ResNet-50 (and the only width ImageNet weights fit);
    smaller widths give a thinner network of the same shape, for CPU tests.  The output stride is 16: a
    64 px image gives a 4x4 ``layer3`` map, a 224 px crop 14x14.
    """

    def __init__(self, latent_dim: int = 32, width: int = 64) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = width
        for i, blocks in enumerate(STAGE_BLOCKS):
            planes = width * 2**i
            setattr(self, f"layer{i + 1}", _stage(inplanes, planes, blocks, stride=1 if i == 0 else 2))
            inplanes = planes * Bottleneck.expansion
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(inplanes, latent_dim))
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # A zero head starts every image at z = 0, the centre of the latent box; the trunk's features are
        # O(10) at initialisation and would otherwise start z in a saturated corner of the tanh.
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def train(self, mode: bool = True) -> ResNet50:
        """Set train/eval mode, but keep frozen BatchNorm layers (no affine parameter trains) in eval mode."""
        super().train(mode)
        if mode:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d) and not any(p.requires_grad for p in m.parameters()):
                    m.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1((images - self.mean) / self.std))))
        x = self.layer3(self.layer2(self.layer1(x)))
        return bounded(self.head(x))


def trunk_state_keys(model: ResNet50) -> list[str]:
    """The state-dict keys an ImageNet file must provide: everything but the head."""
    return [k for k in model.state_dict() if not k.startswith("head.")]


def load_imagenet_weights(model: ResNet50, path: str | os.PathLike) -> ResNet50:
    """Load a torchvision ResNet-50 ``state_dict`` saved at ``path`` into the trunk of ``model``; returns it.

    The file is read with ``weights_only=True`` (no code is unpickled) and nothing is downloaded.  Its
    ``layer4.*`` and ``fc.*`` entries are ignored; every other trunk key must match in name and shape
    (``num_batches_tracked`` may be absent, as in older torchvision files).  The head keeps its weights.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    trunk = {k: v for k, v in state.items() if not k.startswith(IGNORED_PREFIXES)}
    own = model.state_dict()
    expected = trunk_state_keys(model)
    missing = [k for k in expected if k not in trunk and not k.endswith("num_batches_tracked")]
    unexpected = sorted(k for k in trunk if k not in expected)
    wrong_shape = [
        f"{k} {tuple(trunk[k].shape)} != {tuple(own[k].shape)}"
        for k in expected
        if k in trunk and trunk[k].shape != own[k].shape
    ]
    if missing or unexpected or wrong_shape:
        raise ValueError(
            f"{path} is not a torchvision ResNet-50 state dict for this trunk: "
            f"missing {missing}, unexpected {unexpected}, wrong shape {wrong_shape}"
        )
    model.load_state_dict(trunk, strict=False)
    return model
