from __future__ import annotations

import pytest
import torch
from torch import nn

from nlrd import skeleton
from nlrd.models import (
    MotionAE,
    PoseDiscriminator,
    PosePrior,
    ProjectionHead,
    RelationTransformer,
    ResNet50,
    SmallCNN,
    build_image_encoder,
    default_trainable_block,
    load_imagenet_weights,
    set_trainable,
    trainable_blocks,
)
from nlrd.models.pose_prior import PART_BONES, PART_NAMES


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


def test_part_bones_cover_every_bone_once_and_name_the_skeleton_parts():
    assert sorted(j for bones in PART_BONES.values() for j in bones) == list(range(1, 17))
    assert set(PART_NAMES) == set(skeleton.PARTS)


def _move_left_arm(poses: torch.Tensor) -> torch.Tensor:
    """The same poses with new directions for the left upper arm and forearm only (bones ending at 6, 7)."""
    directions = skeleton.to_bone_directions(poses).clone()
    directions[..., [5, 6], :] = torch.randn(*poses.shape[:-2], 2, 3)
    return skeleton.from_bone_directions(directions)


def test_encoder_hierarchy_is_part_wise():
    prior = PosePrior(latent_dim=8, hidden=32)
    poses = skeleton.rest_pose_mm() + 50 * torch.randn(6, 17, 3)
    before = prior.encoder.features(skeleton.to_bone_directions(poses))
    after = prior.encoder.features(skeleton.to_bone_directions(_move_left_arm(poses)))
    unchanged = ("trunk", "right_arm", "right_leg", "left_leg", "trunk_right_arm", "trunk_right_leg")
    for node in (*unchanged, "trunk_left_leg", "lower_body"):
        torch.testing.assert_close(after[node], before[node], msg=node)
    for node in ("left_arm", "trunk_left_arm", "upper_body", "body"):
        assert not torch.allclose(after[node], before[node]), node


def test_decoder_heads_write_their_own_bones():
    prior = PosePrior(latent_dim=8, hidden=32)
    with torch.no_grad():
        for name, head in prior.decoder.heads.items():
            head.weight.zero_()
            head.bias.copy_(torch.tensor(PART_BONES[name], dtype=torch.float32).repeat_interleave(3))
    directions = prior.decoder(torch.randn(4, 8))
    torch.testing.assert_close(directions, torch.arange(1.0, 17.0)[:, None].expand(4, 16, 3))


def test_discriminator_gives_joint_part_and_body_logits():
    logits = PoseDiscriminator(hidden=16)(torch.randn(3, 5, 17, 3))
    assert logits.joint.shape == (3, 5, 17) and logits.part.shape == (3, 5, 5) and logits.body.shape == (3, 5)


def test_discriminator_local_logits_see_only_their_bones():
    critic = PoseDiscriminator(hidden=32)
    poses = skeleton.rest_pose_mm() + 50 * torch.randn(6, 17, 3)
    before, after = critic(poses), critic(_move_left_arm(poses))
    moved_joints, left_arm = [6, 7], PART_NAMES.index("left_arm")
    keep_joints = [j for j in range(17) if j not in moved_joints]
    keep_parts = [i for i in range(5) if i != left_arm]
    torch.testing.assert_close(after.joint[:, keep_joints], before.joint[:, keep_joints])
    torch.testing.assert_close(after.part[:, keep_parts], before.part[:, keep_parts])
    assert (after.joint[:, moved_joints] != before.joint[:, moved_joints]).all()
    assert (after.part[:, left_arm] != before.part[:, left_arm]).all()
    assert (after.body != before.body).all()


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


def test_a_residual_relation_transformer_starts_as_the_identity_and_learns_the_change():
    t = RelationTransformer(12, hidden=(32, 16), residual=True)
    z = 3 * torch.randn(4, 12)
    assert torch.allclose(t(z), z, atol=1e-4)
    assert t(100 * torch.randn(4, 12)).abs().max() <= 10
    opt = torch.optim.Adam(t.parameters(), lr=1e-2)
    for _ in range(50):
        opt.zero_grad()
        (t(z) - (z + 0.5)).abs().mean().backward()
        opt.step()
    assert (t(z) - (z + 0.5)).abs().mean() < 0.25  # it moved towards the shifted counterpart


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


# --- ResNet-50 trunk ---------------------------------------------------------------------------------------

_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def torchvision_trunk_keys() -> list[str]:
    """torchvision's ``resnet50().state_dict()`` keys up to ``layer3``, in order, written out from its definition."""
    keys = ["conv1.weight", *(f"bn1.{s}" for s in _BN)]
    for layer, blocks in ((1, 3), (2, 4), (3, 6)):
        for block in range(blocks):
            prefix = f"layer{layer}.{block}."
            for i in (1, 2, 3):
                keys += [f"{prefix}conv{i}.weight", *(f"{prefix}bn{i}.{s}" for s in _BN)]
            if block == 0:
                keys += [f"{prefix}downsample.0.weight", *(f"{prefix}downsample.1.{s}" for s in _BN)]
    return keys


def bottleneck_params(inplanes: int, planes: int, project: bool) -> int:
    """Trainable parameters of one Bottleneck: three convs, three BNs (2 per channel), maybe a projection."""
    out = 4 * planes
    convs = inplanes * planes + 9 * planes * planes + planes * out
    bns = 2 * (planes + planes + out)
    return convs + bns + (inplanes * out + 2 * out if project else 0)


def test_resnet50_trunk_has_torchvision_names_shapes_and_size():
    model = ResNet50(latent_dim=32)
    trunk = [k for k in model.state_dict() if not k.startswith("head.")]
    assert trunk == torchvision_trunk_keys()
    assert len(trunk) == 258  # 43 convs + 43 BNs x 5 entries
    assert trunk[:7] == [
        "conv1.weight",
        "bn1.weight",
        "bn1.bias",
        "bn1.running_mean",
        "bn1.running_var",
        "bn1.num_batches_tracked",
        "layer1.0.conv1.weight",
    ]
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["conv1.weight"] == (64, 3, 7, 7)
    assert shapes["layer1.0.downsample.0.weight"] == (256, 64, 1, 1)
    assert shapes["layer3.5.conv3.weight"] == (1024, 256, 1, 1)
    assert model.layer2[0].conv2.stride == (2, 2) and model.layer2[0].conv1.stride == (1, 1)  # v1.5
    expected = 64 * 3 * 49 + 2 * 64
    for planes, blocks in ((64, 3), (128, 4), (256, 6)):
        inplanes = 64 if planes == 64 else 2 * planes
        expected += bottleneck_params(inplanes, planes, True) + (blocks - 1) * bottleneck_params(
            4 * planes, planes, False
        )
    n_trunk = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("head."))
    assert n_trunk == expected == 8_543_296


def test_resnet50_maps_64px_images_to_bounded_latents():
    model = ResNet50(latent_dim=32)
    nn.init.normal_(model.head[-1].weight, std=0.05)
    z = model.eval()(torch.rand(2, 3, 64, 64))
    assert z.shape == (2, 32) and z.abs().max() < 10
    assert not torch.allclose(z[0], z[1])


def test_resnet50_blocks_and_defaults():
    model = build_image_encoder("resnet50", latent_dim=8, width=8)
    assert isinstance(model, ResNet50)
    assert trainable_blocks(model) == ("conv1", "bn1", "layer1", "layer2", "layer3", "head", "all")
    assert default_trainable_block("resnet50") == "layer2" and default_trainable_block("small_cnn") == "block3"
    assert default_trainable_block("small_cnn") in trainable_blocks(SmallCNN(width=8))
    with pytest.raises(ValueError, match="vgg.*small_cnn, resnet50"):
        default_trainable_block("vgg")
    params = set_trainable(model, "layer2")
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith("layer2.") for name in trainable)
    assert {id(p) for p in params} == {id(p) for p in model.layer2.parameters()}


def _batchnorms(module: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]


def test_frozen_resnet_blocks_are_the_same_function_in_train_and_eval_mode():
    model = ResNet50(latent_dim=8, width=8)
    model.train()
    set_trainable(model, "layer2")  # after train(): set_trainable re-applies the mode
    assert not any(bn.training for bn in (model.bn1, *_batchnorms(model.layer1), *_batchnorms(model.layer3)))
    assert all(bn.training for bn in _batchnorms(model.layer2))
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    x = torch.rand(4, 8, 16, 16)
    out_train = model.layer1(x)
    model(torch.rand(4, 3, 64, 64))
    changed = {k for k, v in model.state_dict().items() if "running" in k and not torch.equal(v, stats[k])}
    assert changed and all(k.startswith("layer2.") for k in changed)
    torch.testing.assert_close(model.eval().layer1(x), out_train)
    # The trainable block does use batch statistics in train mode (so the check above can fail).
    y = torch.rand(4, 32, 8, 8)
    assert not torch.allclose(model.train().layer2(y), model.eval().layer2(y))


def _imagenet_like_file(path, width: int = 8, drop: tuple[str, ...] = (), extra: tuple[str, ...] = ()) -> dict:
    """A torchvision-style state dict of a randomised trunk, with ``layer4``/``fc`` entries and edits."""
    source = ResNet50(latent_dim=8, width=width)
    with torch.no_grad():
        for tensor in source.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn_like(tensor).abs())
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("head.") and k not in drop}
    state.update(
        {"layer4.0.conv1.weight": torch.randn(2, 2, 1, 1), "fc.weight": torch.randn(3, 4), "fc.bias": torch.randn(3)}
    )
    state.update({k: torch.zeros(1) for k in extra})
    torch.save(state, path)
    return state


def test_load_imagenet_weights_round_trip(tmp_path):
    path = tmp_path / "resnet50.pth"
    no_counters = tuple(k for k in torchvision_trunk_keys() if k.endswith("num_batches_tracked"))
    state = _imagenet_like_file(path, drop=no_counters)  # older torchvision files lack the counters
    model = ResNet50(latent_dim=8, width=8)
    head = {k: v.clone() for k, v in model.head.state_dict().items()}
    assert load_imagenet_weights(model, path) is model
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items() if not k.startswith(("layer4.", "fc.")))
    assert all(torch.equal(model.head.state_dict()[k], v) for k, v in head.items())


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"drop": ("layer2.3.bn2.running_var",)}, r"missing \['layer2.3.bn2.running_var'\]"),
        ({"extra": ("layer3.6.conv1.weight",)}, r"unexpected \['layer3.6.conv1.weight'\]"),
        ({"width": 16}, r"wrong shape \['conv1.weight \(16, 3, 7, 7\) != \(8, 3, 7, 7\)'"),
    ],
)
def test_load_imagenet_weights_names_what_does_not_fit(tmp_path, edit, message):
    path = tmp_path / "weights.pth"
    _imagenet_like_file(path, **edit)
    with pytest.raises(ValueError, match=f"weights.pth.*{message}"):
        load_imagenet_weights(ResNet50(latent_dim=8, width=8), path)
