"""The loss-sight study: errors of each temporal kind, plausible and of the size asked, and the losses they add."""

from __future__ import annotations

import pytest
import torch

from bench.loss_sight import KINDS, STAGES, mocap_windows, noise, plausible, sight, table
from nlrd.error_shares import dct_matrix
from nlrd.pipeline import StageCache, heldout_mocap, load_prior_and_motion, load_transformers, load_world, train_stages
from tests.test_pipeline import TINY

RELATIONS = ["flip", "backward"]


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    cache = StageCache(tmp_path_factory.mktemp("sight"))
    keys = train_stages(TINY, RELATIONS, cache, only=STAGES)
    prior, motion = load_prior_and_motion(cache, keys)
    mocap = heldout_mocap(load_world(cache, keys.world)).float()
    return prior, motion, load_transformers(cache, keys, RELATIONS), mocap


def test_each_kind_of_noise_has_its_temporal_shape():
    generator = torch.Generator().manual_seed(0)
    shape = (5, 8, 4)
    offset, slow, fast = (noise(kind, shape, generator) for kind in ("offset", "slow", "fast"))
    assert torch.equal(offset, offset[:, :1].expand(shape))
    spectrum = torch.einsum("kt,btd->bkd", dct_matrix(8).float(), slow)
    assert spectrum[:, 0].abs().max() < 1e-5 and spectrum[:, 3:].abs().max() < 1e-5  # components 1 and 2 only
    assert spectrum[:, 1:3].abs().min() > 0
    assert not torch.allclose(fast[:, 0], fast[:, 1])
    with pytest.raises(ValueError, match="allowed: offset, slow, fast, independent"):
        noise("jitter", shape, generator)


@pytest.mark.parametrize("size", [5.0, 40.0])
def test_plausible_predictions_lie_the_size_asked_from_the_truth(stages, size):
    prior, _, _, mocap = stages
    generator = torch.Generator().manual_seed(1)
    windows = mocap_windows(mocap, TINY.world.clip_len, 16, generator)
    assert windows.shape == (16, TINY.world.clip_len, 17, 3)
    latents = prior.encode(windows.flatten(0, 1)).unflatten(0, windows.shape[:2])
    moved = plausible(prior, latents, noise("fast", latents.shape, generator), size)
    truth = prior.decode(latents.flatten(0, 1)).unflatten(0, latents.shape[:2])
    rms = (moved - truth).square().sum(-1).mean().sqrt().item()
    assert rms == pytest.approx(size, rel=0.01)


def test_sight_measures_every_kind_and_size_and_repeats(stages):
    prior, motion, transformers, mocap = stages
    sizes = [10.0, 60.0]
    result = sight(prior, motion, transformers, mocap, RELATIONS, TINY.world.clip_len, sizes, windows=16)
    again = sight(prior, motion, transformers, mocap, RELATIONS, TINY.world.clip_len, sizes, windows=16)
    assert result == again
    assert result["flip"]["level"] == "pose" and result["backward"]["level"] == "motion"
    assert result["backward"]["rise"]["independent"] is None  # a reordering: a frame-wise encoder cannot break it
    for name in RELATIONS:
        assert result[name]["floor"] > 0
        for kind in KINDS:
            if result[name]["rise"][kind] is not None:
                assert set(result[name]["rise"][kind]) == set(sizes)
    latent = sight(prior, motion, transformers, mocap, ["flip"], TINY.world.clip_len, sizes, "latent", windows=16)
    assert latent["flip"]["floor"] != result["flip"]["floor"]  # another readout, another unit
    lines = table(result, sizes).splitlines()
    assert len(lines) == 2 + len(RELATIONS) and lines[0].count("|") == 4 + len(KINDS) * len(sizes)
    assert "| backward | motion |" in lines[3] and "—" in lines[3]
