from __future__ import annotations

import pytest
import torch

from nlrd import skeleton
from nlrd.models import (
    MotionAE,
    PoseDiscriminator,
    PosePrior,
    ProjectionHead,
    RelationTransformer,
    SmallCNN,
    build_image_encoder,
    set_trainable,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_pose_prior_shapes_and_latent_box():
    prior = PosePrior(latent_dim=8, hidden=32)
    poses = skeleton.rest_pose_mm() + 50 * torch.randn(5, 4, 17, 3)
    z = prior.encode(poses)
    assert z.shape == (5, 4, 8)
    assert z.abs().max() < 10
    assert prior.decode(z).shape == (5, 4, 17, 3)
    assert prior(poses).shape == poses.shape


def test_latents_stay_in_the_box_even_for_huge_activations():
    prior = PosePrior(latent_dim=8, hidden=32)
    with torch.no_grad():
        for p in prior.parameters():
            p.mul_(100)
    assert prior.encode(skeleton.rest_pose_mm() + 50 * torch.randn(64, 17, 3)).abs().max() <= 10


def test_decoded_poses_have_canonical_bone_lengths_and_sit_on_the_root():
    prior = PosePrior(latent_dim=8, hidden=32)
    poses = prior.decode(20 * torch.rand(16, 8) - 10)
    torch.testing.assert_close(
        skeleton.measured_bone_lengths(poses), skeleton.bone_lengths_mm().expand(16, 16), atol=1e-3, rtol=1e-5
    )
    assert torch.equal(poses[:, 0], torch.zeros(16, 3))


def test_discriminator_gives_one_logit_per_pose():
    assert PoseDiscriminator(hidden=16)(torch.randn(3, 5, 17, 3)).shape == (3, 5)


def test_motion_ae_shapes_and_range():
    motion = MotionAE(latent_dim=8, hidden=16, embed_dim=12)
    z = 20 * torch.rand(3, 7, 8) - 10
    v = motion.encode(z)
    assert v.shape == (3, 12) and v.abs().max() < 10
    decoded = motion.decode(v, 11)
    assert decoded.shape == (3, 11, 8) and decoded.abs().max() < 10
    assert motion(z).shape == z.shape


def test_motion_embedding_depends_on_frame_order():
    motion = MotionAE(latent_dim=8, hidden=16, embed_dim=12)
    z = torch.randn(2, 6, 8)
    assert not torch.allclose(motion.encode(z), motion.encode(z.flip(1)))


def test_relation_transformer_shape_and_range():
    t = RelationTransformer(12, hidden=(32, 16))
    out = t(100 * torch.randn(4, 12))
    assert out.shape == (4, 12) and out.abs().max() <= 10


@pytest.mark.parametrize("size", [32, 64])
def test_small_cnn_maps_images_to_bounded_latents(size):
    cnn = SmallCNN(latent_dim=8, width=8)
    z = cnn(torch.rand(3, 3, size, size))
    assert z.shape == (3, 8) and z.abs().max() < 10
    assert [name for name, _ in cnn.named_children()] == ["block1", "block2", "block3", "block4", "head"]


def test_small_cnn_is_the_same_function_in_train_and_eval_mode():
    cnn = SmallCNN(latent_dim=8, width=8)
    x = torch.rand(4, 3, 32, 32)
    train_out = cnn.train()(x)
    torch.testing.assert_close(cnn.eval()(x), train_out)
    # ... and a frame's latent does not depend on the rest of its batch.
    torch.testing.assert_close(cnn(x[:1]), train_out[:1], atol=1e-5, rtol=1e-5)


def test_set_trainable_freezes_everything_but_the_block():
    cnn = SmallCNN(latent_dim=8, width=8)
    params = set_trainable(cnn, "block3")
    trainable = {name for name, p in cnn.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith("block3.") for name in trainable)
    assert {id(p) for p in params} == {id(p) for p in cnn.block3.parameters()}
    set_trainable(cnn, "all")
    assert all(p.requires_grad for p in cnn.parameters())


def test_set_trainable_lists_the_allowed_blocks():
    with pytest.raises(ValueError, match="block5.*block1, block2, block3, block4, head, all"):
        set_trainable(SmallCNN(width=8), "block5")


def test_build_image_encoder():
    assert isinstance(build_image_encoder("small_cnn", latent_dim=8, width=8), SmallCNN)
    with pytest.raises(ValueError, match="resnet18.*small_cnn"):
        build_image_encoder("resnet18")


def test_projection_head_returns_unit_vectors():
    out = ProjectionHead(12, out_dim=16, hidden=32)(torch.randn(5, 12))
    assert out.shape == (5, 16)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(5))
