"""The networks of the method: pose prior, motion embedding, relation transformers, image encoders."""

from nlrd.models.heads import ProjectionHead
from nlrd.models.image import (
    IMAGE_ENCODERS,
    SmallCNN,
    build_image_encoder,
    default_trainable_block,
    set_trainable,
    trainable_blocks,
)
from nlrd.models.layers import LATENT_BOUND, bounded
from nlrd.models.motion import MotionAE
from nlrd.models.pose_prior import DiscriminatorLogits, PoseDiscriminator, PosePrior
from nlrd.models.relation import RelationTransformer
from nlrd.models.resnet import ResNet50, load_imagenet_weights

__all__ = [
    "IMAGE_ENCODERS",
    "LATENT_BOUND",
    "DiscriminatorLogits",
    "MotionAE",
    "PoseDiscriminator",
    "PosePrior",
    "ProjectionHead",
    "RelationTransformer",
    "ResNet50",
    "SmallCNN",
    "bounded",
    "build_image_encoder",
    "default_trainable_block",
    "load_imagenet_weights",
    "set_trainable",
    "trainable_blocks",
]
