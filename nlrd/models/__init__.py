"""The networks of the method: pose prior, motion embedding, relation transformers, image encoders."""

from nlrd.models.heads import ProjectionHead
from nlrd.models.image import SmallCNN, build_image_encoder, set_trainable, trainable_blocks
from nlrd.models.layers import LATENT_BOUND, bounded
from nlrd.models.motion import MotionAE
from nlrd.models.pose_prior import PoseDiscriminator, PosePrior
from nlrd.models.relation import RelationTransformer

__all__ = [
    "LATENT_BOUND",
    "MotionAE",
    "PoseDiscriminator",
    "PosePrior",
    "ProjectionHead",
    "RelationTransformer",
    "SmallCNN",
    "bounded",
    "build_image_encoder",
    "set_trainable",
    "trainable_blocks",
]
