"""The budget study's ``--set STAGE.FIELD=VALUE``: typed like the field, checked like the config."""

from __future__ import annotations

import sys

import pytest

from bench import stage_quality
from bench.stage_quality import apply_overrides
from tests.conftest import TINY_SPACE, write_space
from tests.test_pipeline import TINY


def test_overrides_take_the_fields_type():
    configs = apply_overrides(
        TINY, ["motion.steps=600", "relation.residual=true", "relation.hidden=64,32", "relation.lr=0.002"]
    )
    assert configs.motion.steps == 600 and configs.relation.residual is True
    assert configs.relation.hidden == (64, 32) and configs.relation.lr == 0.002
    assert configs.prior == TINY.prior and TINY.relation.residual is False


@pytest.mark.parametrize(
    "item, message",
    [
        ("steps=3", "expected STAGE.FIELD=VALUE with STAGE one of world, prior, motion, relation, source"),
        ("relation.stride=2", "relation has the fields steps, batch_size"),
        ("relation.residual=yes", "true or false"),
        ("relation.steps=0", "RelationConfig.steps"),
        ("motion.steps=many", "takes a int, got 'many'"),
    ],
)
def test_a_bad_override_names_itself(item, message):
    with pytest.raises(ValueError, match=message) as error:
        apply_overrides(TINY, [item])
    assert str(error.value).startswith(f"--set {item!r}")


def test_the_report_prints_each_figure_beside_its_training_figure(tmp_path, monkeypatch, capsys):
    space = write_space(tmp_path / "tiny.yaml", TINY_SPACE)
    # --threads 1: the script sets torch's thread count for the whole process, and the tests run at one thread
    argv = ["stage_quality", "--space", str(space), "--threads", "1", "--cache", str(tmp_path / "cache")]
    argv += ["--out", str(tmp_path / "out")]
    monkeypatch.setattr(sys, "argv", argv)
    stage_quality.main()
    lines = capsys.readouterr().out.splitlines()
    prior = next(line for line in lines if line.endswith(")") and "pose prior reconstruction" in line)
    assert "(on its training mocap " in prior
    assert any("relation flip" in line and "(on its training mocap " in line for line in lines)
    assert (tmp_path / "out" / "stage_quality.json").is_file()
