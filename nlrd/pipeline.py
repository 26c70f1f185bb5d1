"""The frozen stages an adaptation starts from."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass
class Stages:
    """Everything adaptation needs from pre-training, frozen.

    ``transformers`` maps a relation name (see ``nlrd.relations``) to its relation transformer.
    """

    prior: nn.Module
    motion: nn.Module
    transformers: dict[str, nn.Module]
    encoder: nn.Module
