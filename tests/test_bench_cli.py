"""The benchmark scripts run as ``python -m bench.<name>`` from the repository root, and what they share."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from bench import cli, figures
from bench.ablation import adapt_overrides, smoke_configs
from search.space import load_space
from tests.conftest import REPO

#: Every file of bench/ with a ``main``: the scripts (the others are modules they share).
SCRIPTS = sorted(p.stem for p in (REPO / "bench").glob("*.py") if "\ndef main(" in p.read_text())


def test_every_script_is_found():
    assert {"ablation", "prefilter_quality", "search_efficiency", "throughput"} <= set(SCRIPTS)
    assert "stats" not in SCRIPTS


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_imports_as_bench_module_and_its_help_is_the_command(name: str, capsys: pytest.CaptureFixture):
    module = importlib.import_module(f"bench.{name}")
    assert (REPO / "bench" / f"{name}.py").read_text().endswith('\n\nif __name__ == "__main__":\n    main()\n')
    with pytest.raises(SystemExit) as exit_info:
        module.arg_parser().parse_args(["--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: python -m bench.{name} ")


def test_python_dash_m_runs_a_script_from_the_repository_root():
    result = subprocess.run(
        [sys.executable, "-m", "bench.domain_gap", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m bench.domain_gap ")


def test_smoke_configs_are_the_smoke_space_stages_with_the_arguments_given():
    space = load_space(REPO / "spaces" / "smoke.yaml").stages
    assert smoke_configs() == space
    configs = smoke_configs(image_size=32, source_clips=96, motion_steps=7)
    assert (configs.world.image_size, configs.world.source_clips, configs.motion.steps) == (32, 96, 7)
    assert (configs.prior, configs.relation, configs.source) == (space.prior, space.relation, space.source)
    earlier = REPO / "bench" / "spaces" / "smoke-2026-12-02.yaml"
    assert smoke_configs(space=earlier) == load_space(earlier).stages != space


def test_every_script_that_trains_the_smoke_stages_can_train_an_earlier_spaces():
    for name in ("ablation", "domain_gap", "loss_scales", "nonlocal_signal", "nonlocalness"):
        parser = importlib.import_module(f"bench.{name}").arg_parser()
        assert parser.parse_args(["--stages-space", "x.yaml"]).stages_space == Path("x.yaml"), name


def test_figure_axes_are_saved_with_their_legend(tmp_path: Path):
    path = tmp_path / "figure.png"
    with figures.axes(path, figsize=(2.0, 2.0)) as ax:
        ax.plot([0, 1], [1, 0], label="line")
    assert ax.get_legend() is not None
    assert path.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    "text, current, expected",
    [("true", False, True), ("False", True, False), ("64,32", (1, 2), (64, 32)), ("3e-4", 1e-3, 3e-4), ("7", 1, 7)],
)
def test_a_set_value_takes_its_fields_type(text, current, expected):
    assert cli.field_value(text, current) == expected


@pytest.mark.parametrize("text, current, message", [("yes", True, "takes true or false"), ("x", 1, "takes a int")])
def test_a_set_value_of_the_wrong_type_says_what_the_field_takes(text, current, message):
    with pytest.raises(ValueError, match=message):
        cli.field_value(text, current)


def test_the_ablations_adapt_overrides_are_typed_and_refuse_a_wrong_value():
    assert adapt_overrides(["w_lcr=0.1", "steps=40"]) == {"w_lcr": 0.1, "steps": 40}
    with pytest.raises(SystemExit, match="--set 'steps=many': steps takes a int"):
        adapt_overrides(["steps=many"])
