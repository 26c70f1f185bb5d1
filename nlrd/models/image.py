"""Image encoders ``G``: image -> pose latent z, built from named blocks so adaptation can train one.

``SmallCNN`` is the CPU-sized encoder for 64 px worlds.  It uses GroupNorm, not BatchNorm, so a frozen
block computes the same function in train and eval mode and batch composition never leaks into z.
``ResNet50`` (``nlrd.models.resnet``) is the paper's encoder; its frozen BatchNorm layers stay in eval mode.

A *block* is a child module that owns parameters: ``block1``..``block4``, ``head`` for ``small_cnn``;
``conv1``, ``bn1``, ``layer1``..``layer3``, ``head`` for ``resnet50`` (torchvision's layout, kept so that
ImageNet weights load by name).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from nlrd.models.layers import bounded
from nlrd.models.resnet import ResNet50


def _conv_block(n_in: int, n_out: int) -> nn.Sequential:
    """Stride-2 3x3 conv, GroupNorm, ReLU: halves the resolution.  One conv per block keeps a 64 px
    training step on two CPU cores near 1 ms per image."""
    return nn.Sequential(
        nn.Conv2d(n_in, n_out, 3, stride=2, padding=1, bias=False),
        nn.GroupNorm(8, n_out),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """Four conv blocks (``block1``..``block4``, each halving the resolution) and a ``head``.

    ``forward``: ``(B, 3, H, W)`` float images in [0, 1] -> ``(B, latent_dim)`` z in ``(-10, 10)``.
    The head pools to a 4x4 grid (not to 1x1) so that where a limb is stays visible to the regressor.
    """

    def __init__(self, latent_dim: int = 32, width: int = 32) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.block1 = _conv_block(3, width)
        self.block2 = _conv_block(width, 2 * width)
        self.block3 = _conv_block(2 * width, 4 * width)
        self.block4 = _conv_block(4 * width, 8 * width)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(8 * width * 16, 256),
            nn.ReLU(inplace=True),
            nn.Linear(256, latent_dim),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.block4(self.block3(self.block2(self.block1(images - 0.5))))
        return bounded(self.head(x))


def trainable_blocks(module: nn.Module) -> tuple[str, ...]:
    """Names accepted by ``set_trainable`` for ``module``: its children that own parameters, and ``"all"``."""
    return (*(name for name, child in module.named_children() if next(child.parameters(), None) is not None), "all")


def set_trainable(module: nn.Module, block: str) -> list[nn.Parameter]:
    """Freeze every parameter of ``module`` except those of its child ``block`` (``"all"``: train everything).

    The module's train/eval mode is re-applied afterwards, so an encoder that keeps frozen BatchNorm layers
    in eval mode (``ResNet50``) sees the new split.  Returns the parameters left trainable, ready for an
    optimiser.
    """
    allowed = trainable_blocks(module)
    if block not in allowed:
        raise ValueError(f"unknown trainable block {block!r}; allowed: {', '.join(allowed)}")
    module.requires_grad_(block == "all")
    if block != "all":
        getattr(module, block).requires_grad_(True)
    module.train(module.training)
    return [p for p in module.parameters() if p.requires_grad]


IMAGE_ENCODERS: dict[str, Callable[..., nn.Module]] = {"small_cnn": SmallCNN, "resnet50": ResNet50}

#: The block adaptation trains by default: the third stage of each encoder (the paper trains Res-3).
DEFAULT_TRAINABLE_BLOCKS: dict[str, str] = {"small_cnn": "block3", "resnet50": "layer2"}


def default_trainable_block(name: str) -> str:
    """The block adaptation trains for encoder ``name``: ``block3`` for ``small_cnn``, ``layer2`` for
    ``resnet50`` (torchvision's ``layer2`` is the paper's Res-3, its third stage counting the stem)."""
    if name not in DEFAULT_TRAINABLE_BLOCKS:
        raise ValueError(f"unknown image encoder {name!r}; allowed: {', '.join(DEFAULT_TRAINABLE_BLOCKS)}")
    return DEFAULT_TRAINABLE_BLOCKS[name]


def build_image_encoder(name: str = "small_cnn", **kwargs: int) -> nn.Module:
    """Construct an image encoder by name; keyword arguments (``latent_dim``, ``width``) go to its constructor."""
    if name not in IMAGE_ENCODERS:
        raise ValueError(f"unknown image encoder {name!r}; allowed: {', '.join(IMAGE_ENCODERS)}")
    return IMAGE_ENCODERS[name](**kwargs)
