"""Range checks of the stage and adaptation configs (``nlrd.config``)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nlrd.config import KEY_OMITS_DEFAULT, ConfigError, check_ranges, key_payload
from nlrd.train.adapt import AdaptConfig
from nlrd.train.motion import MotionConfig
from nlrd.train.prior import PriorConfig
from nlrd.train.relation import RelationConfig
from nlrd.train.source import SourceConfig
from nlrd.world import WorldConfig

CONFIGS = (WorldConfig, PriorConfig, MotionConfig, RelationConfig, SourceConfig, AdaptConfig)


@dataclasses.dataclass
class _Toy:
    size: int = 1
    rate: float = 0.1
    weight: float = 0.0
    share: float = 0.5
    mode: str = "a"

    def check(self) -> None:
        check_ranges(
            self,
            counts=("size",),
            positive=("rate",),
            non_negative=("weight",),
            fractions=("share",),
            words={"mode": ("a", "b")},
        )


@pytest.mark.parametrize("cls", CONFIGS)
def test_defaults_are_in_range(cls):
    cls()


@given(
    size=st.integers(-3, 3),
    rate=st.floats(allow_infinity=False),
    weight=st.floats(allow_infinity=False),
    share=st.floats(allow_infinity=False),
)
def test_check_ranges_refuses_exactly_the_values_out_of_range(size, rate, weight, share):
    toy = _Toy(size=size, rate=rate, weight=weight, share=share)
    valid = size >= 1 and rate > 0 and weight >= 0 and 0 <= share <= 1  # False for NaN
    if valid:
        toy.check()
    else:
        with pytest.raises(ConfigError) as caught:
            toy.check()
        assert caught.value.field in ("size", "rate", "weight", "share")
        assert str(caught.value).startswith(f"_Toy.{caught.value.field} must be")


def test_a_word_out_of_range_lists_the_allowed_words():
    with pytest.raises(ConfigError, match=r"_Toy.mode got 'c'; allowed: a, b") as caught:
        _Toy(mode="c").check()
    assert caught.value.allowed == ("a", "b")
    assert isinstance(caught.value, ValueError)  # callers that catch ValueError keep working


@pytest.mark.parametrize(
    ("cls", "change", "field"),
    [
        (WorldConfig, {"clip_len": 0}, "clip_len"),
        (WorldConfig, {"seed": -1}, "seed"),
        (WorldConfig, {"image_size": 4}, "image_size"),
        (WorldConfig, {"source_clips": 12.5}, "source_clips"),
        (PriorConfig, {"warmup_steps": -1}, "warmup_steps"),
        (PriorConfig, {"flip_prob": 1.5}, "flip_prob"),
        (PriorConfig, {"lr_disc": 0.0}, "lr_disc"),
        (MotionConfig, {"num_layers": 0}, "num_layers"),
        (MotionConfig, {"lr": -1e-3}, "lr"),
        (RelationConfig, {"hidden": ()}, "hidden"),
        (RelationConfig, {"hidden": (1024, 0)}, "hidden"),
        (RelationConfig, {"pool_size": 0}, "pool_size"),
        (SourceConfig, {"encoder": "vgg"}, "encoder"),
        (SourceConfig, {"warmup_fraction": -0.1}, "warmup_fraction"),
        (SourceConfig, {"batch_size": 0}, "batch_size"),
        (AdaptConfig, {"eval_every": 0}, "eval_every"),
        (AdaptConfig, {"w_motion": -0.5}, "w_motion"),
        (AdaptConfig, {"lr_source": 0.0}, "lr_source"),
    ],
)
def test_every_config_refuses_a_field_out_of_range(cls, change, field):
    with pytest.raises(ConfigError) as caught:
        cls(**change)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{cls.__name__}.{field} ")


@dataclasses.dataclass
class _Later:
    steps: int = 3
    added: bool = dataclasses.field(default=True, metadata={KEY_OMITS_DEFAULT: True})


def test_key_payload_leaves_out_a_marked_field_at_its_default_only():
    assert key_payload(_Later()) == {"steps": 3}
    assert key_payload(_Later(added=False)) == {"steps": 3, "added": False}
    assert key_payload({"plain": 1}) == {"plain": 1}
    assert "flip_augment" not in key_payload(SourceConfig())
