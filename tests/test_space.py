from __future__ import annotations

import copy
import importlib.util
import re

import optuna
import pandas as pd
import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.ablation import smoke_configs
from nlrd.metrics import evaluate_protocols
from nlrd.pipeline import stage_keys
from nlrd.relation_scores import CANDIDATES
from search.export import best_space
from search.space import ACCURACY_METRICS, OBJECTIVE_METRICS, SpaceError, load_space, parse_space
from search.space_grammar import parse_expression
from tests.conftest import REPO, TINY_SPACE, write_space


@pytest.mark.parametrize("name", ["smoke", "default", "paper"])
def test_shipped_spaces_are_valid(name):
    spec = load_space(REPO / "spaces" / f"{name}.yaml")
    assert spec.name == name
    assert spec.relations.sets()
    assert {p.name for p in spec.params}


@pytest.mark.parametrize("path", ["spaces/smoke.yaml", "spaces/default.yaml", "spaces/paper.yaml",
                                  "spaces/h36m.yaml", "spaces/3dhp.yaml", "bench/spaces/search-live.yaml"])  # fmt: skip
def test_shipped_spaces_rank_by_the_score_the_study_chose(path):
    """bench/RESULTS.md, "2b. Label-free score candidates": ``latent_in_support`` under ``mean`` (``max``, as good by
    the study, ties every set that shares its best member)."""
    text = (REPO / path).read_text()
    prefilter = yaml.safe_load(text)["prefilter"]
    assert (prefilter["score"], prefilter["aggregate"]) == ("latent_in_support", "mean")


def test_the_prefilter_score_defaults_to_latent_in_support_and_takes_every_candidate():
    assert parse_space(copy.deepcopy(TINY_SPACE), "s.yaml").prefilter.score == "latent_in_support"
    for score in CANDIDATES:
        assert parse_space(_with("prefilter.score", score), "s.yaml").prefilter.score == score


@pytest.mark.parametrize("name", ["weights-flip", "weights-motion"])
def test_benchmark_spaces_are_valid_and_reuse_the_ablation_stages(name):
    """The loss-weight searches of bench/RESULTS.md run on the stages ``bench/ablation.py --source-clips 1536``
    cached with the smoke space of then: same configs, so the same stage keys."""
    spec = load_space(REPO / "bench" / "spaces" / f"{name}.yaml")
    assert spec.name == name and spec.adapt["schedule"] == "weighted"
    relations = spec.relations.candidates
    earlier = REPO / "bench" / "spaces" / "smoke-2026-12-02.yaml"
    ablation = smoke_configs(image_size=64, source_steps=1200, relation_steps=200, source_clips=1536, space=earlier)
    assert stage_keys(spec.stages, relations) == stage_keys(ablation, relations)


def test_tiny_space_parses_into_configs():
    spec = parse_space(copy.deepcopy(TINY_SPACE), "tiny.yaml")
    assert spec.stages.world.clip_len == 8
    assert spec.stages.prior.steps == 30
    assert spec.adapt == {"steps": 6, "eval_every": 2, "batch_clips": 2}
    params = {p.name: p for p in spec.params}
    lr = params["lr_nonlocal"].distribution()
    assert isinstance(lr, optuna.distributions.FloatDistribution) and lr.log and lr.low == 1e-5
    assert params["tau"].distribution().choices == (0.07, 0.1)


@pytest.mark.parametrize(
    "grammar, kind, expected",
    [
        ("interval(0.1, 0.5)", optuna.distributions.FloatDistribution, (0.1, 0.5, False)),
        ("tag(log, interval(1e-5, 1e-2))", optuna.distributions.FloatDistribution, (1e-5, 1e-2, True)),
        ("int(interval(10, 40))", optuna.distributions.IntDistribution, (10, 40, False)),
        ("tag(log, int(interval(8, 64)))", optuna.distributions.IntDistribution, (8, 64, True)),
        ("range(10, 50, step=10)", optuna.distributions.IntDistribution, (10, 40, False)),
        ("range(10, 41, 10)", optuna.distributions.IntDistribution, (10, 40, False)),
        ("range(2, 5)", optuna.distributions.IntDistribution, (2, 4, False)),
        ("range(0.05, 0.2, step=0.05)", optuna.distributions.FloatDistribution, (0.05, 0.15, False)),
    ],
)
def test_grammar_maps_to_optuna_distributions(grammar, kind, expected):
    name = "steps" if kind is optuna.distributions.IntDistribution else "lr_nonlocal"
    space = copy.deepcopy(TINY_SPACE)
    space["adapt"].pop(name, None)
    space["params"] = {name: grammar}
    dist = parse_space(space, "s.yaml").params[0].distribution()
    assert isinstance(dist, kind)
    assert (dist.low, pytest.approx(dist.high), dist.log) == expected


def test_range_steps_reach_optuna():
    space = copy.deepcopy(TINY_SPACE)
    space["adapt"].pop("steps", None)
    space["params"] = {"steps": "range(10, 50, step=10)", "tau": "range(0.05, 0.2, step=0.05)"}
    steps, tau = (p.distribution() for p in parse_space(space, "s.yaml").params)
    assert steps.step == 10 and tau.step == 0.05


def test_objectives_sections_and_multi_objective():
    space = copy.deepcopy(TINY_SPACE)
    space["objectives"] = [{"metric": "mpjpe", "mode": "min"}, {"metric": "nonlocalness", "mode": "max"}]
    space["scheduler"] = {"type": "none"}
    space["searcher"]["algorithm"] = "nsga2"
    spec = parse_space(space, "s.yaml")
    assert spec.multi_objective and spec.objective.metric == "mpjpe"
    assert [o.mode for o in spec.objectives] == ["min", "max"]


def test_accuracy_objectives_default_to_their_direction():
    space = copy.deepcopy(TINY_SPACE)
    space["objectives"] = [
        {"metric": "pck150", "mode": "max"},
        {"metric": "auc"},
        {"metric": "pa_mpjpe_gtbone"},
        {"metric": "nonlocalness", "mode": "min"},
        {"metric": "device_seconds", "mode": "max"},
    ]
    space["scheduler"] = {"type": "none"}
    spec = parse_space(space, "s.yaml")
    assert [(o.metric, o.mode) for o in spec.objectives] == [
        ("pck150", "max"),
        ("auc", "max"),
        ("pa_mpjpe_gtbone", "min"),
        ("nonlocalness", "min"),
        ("device_seconds", "max"),
    ]
    assert parse_space({**TINY_SPACE, "objectives": [{"metric": "device_seconds"}]}).objective.mode == "min"


def test_accuracy_metrics_are_what_a_trial_reports_and_point_to_better_poses():
    """A perfect prediction is the best value of every accuracy metric in its declared direction."""
    target = torch.randn(4, 17, 3) * 200.0
    target -= target[:, :1].clone()  # root-relative, as targets are
    perfect = evaluate_protocols(target.clone(), target)
    assert set(perfect) == set(ACCURACY_METRICS) and set(ACCURACY_METRICS) <= set(OBJECTIVE_METRICS)
    worse = evaluate_protocols(target + torch.randn_like(target) * 100.0, target)
    for metric, mode in ACCURACY_METRICS.items():
        assert (perfect[metric] > worse[metric]) == (mode == "max"), metric


def test_choice_accepts_bare_words():
    space = copy.deepcopy(TINY_SPACE)
    space["params"] = {"trainable_block": "choice(block3, block4)"}
    assert parse_space(space, "s.yaml").params[0].choices == ("block3", "block4")


def _error(space: dict) -> str:
    with pytest.raises(SpaceError) as info:
        parse_space(space, "bad.yaml")
    return str(info.value)


def _with(path: str, value) -> dict:
    space = copy.deepcopy(TINY_SPACE)
    *parents, leaf = path.split(".")
    node = space
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return space


@pytest.mark.parametrize(
    "path, value, expected",
    [
        ("searcher.algoritm", "tpe", ["bad.yaml: searcher.algoritm: unknown key", "did you mean 'algorithm'"]),
        ("worlds", {}, ["bad.yaml: worlds: unknown key", "did you mean 'world'"]),
        ("stages.prior.stepz", 3, ["stages.prior.stepz", "did you mean 'steps'"]),
        ("world.image_size", "big", ["world.image_size", "must be an integer"]),
        ("searcher.algorithm", "grid", ["searcher.algorithm", "Allowed: tpe, random, nsga2, gp"]),
        ("params.seed", "range(10, 5)", ["params.seed", "start < stop"]),
        ("params.seed", "range(10, 50, step=0)", ["params.seed", "step > 0"]),
        ("params.seed", "range(10, 50, stride=5)", ["params.seed", "range(start, stop, step=s)"]),
        ("params.lr_nonlocal", "tag(log, range(1, 5))", ["params.lr_nonlocal", "tag(log, ...) wraps an interval"]),
        ("params.tau", "range(a, b)", ["params.tau", "must be numbers"]),
        ("relations.require_together", [["flip", "flipp"]], ["relations.require_together[0][1]", "not a candidate"]),
        ("relations.forbid_together", [["flip"]], ["relations.forbid_together[0]", "at least two relations"]),
        (
            "relations.require_together",
            [["flip", "inplane5", "flip_backward"]],
            ["relations", "no relation set satisfies"],
        ),
        ("relations.require_together", "flip", ["relations.require_together", "must be a list"]),
        ("prefilter.enabled", "yes", ["prefilter.enabled", "true or false"]),
        ("adapt.trainable_block", "layer2", ["adapt.trainable_block", "not a block of the small_cnn encoder"]),
        ("params.trainable_block", "choice(block3, block9)", ["params.trainable_block", "'block9' is not a block"]),
        ("stages.source.encoder", "vgg", ["stages.source.encoder", "Allowed: small_cnn, resnet50"]),
        ("adapt.nonlocal_space", "poses", ["adapt.nonlocal_space", "got 'poses'", "Allowed: latent, pose"]),
        ("adapt.schedule", "sum", ["adapt.schedule", "Allowed: round_robin, weighted"]),
        ("params.nonlocal_space", "choice(latent, mm)", ["params.nonlocal_space", "got 'mm'", "latent, pose"]),
        ("world.image_size", 4, ["world.image_size", "at least 8 px, got 4"]),
        ("stages.source.steps", 0, ["stages.source.steps", "must be at least 1, got 0"]),
        ("stages.prior.flip_prob", 1.5, ["stages.prior.flip_prob", "in [0, 1], got 1.5"]),
        ("stages.relation.hidden", [], ["stages.relation.hidden", "non-empty list"]),
        ("adapt.tau", -1, ["adapt.tau", "must be > 0, got -1.0"]),
        ("adapt.w_source", -1, ["adapt.w_source", "must be >= 0, got -1.0"]),
        ("params.tau", "interval(-0.1, 0.1)", ["params.tau", "must be > 0, got -0.1"]),
        ("params.w_pose", "interval(-1, 1)", ["params.w_pose", "must be >= 0, got -1.0"]),
        ("params.seed", "int(interval(-1, 20))", ["params.seed", "must be >= 0, got -1"]),
        ("params.lr_source", "choice(1e-4, 0)", ["params.lr_source", "must be > 0, got 0"]),
        ("params.tau", "interval(0.2, 0.1)", ["params.tau", "low < high"]),
        ("params.tau", "interval(0.1, 0.1)", ["params.tau", "low < high"]),
        ("params.lr_nonlocal", "tag(log, interval(0, 1))", ["params.lr_nonlocal", "low > 0"]),
        ("params.tau", "uniform(0, 1)", ["params.tau", "unsupported expression", "interval(lo, hi)"]),
        ("params.tau", "interval(0.1,", ["params.tau", "cannot parse"]),
        ("params.relations", "choice(flip)", ["params.relations", "unknown key"]),
        ("params.seed", "interval(5, 9)", ["params.seed", "int(interval(5.0, 9.0))"]),
        ("params.batch_clips", "choice(2, 4)", ["params.batch_clips", "also fixed in the adapt section"]),
        (
            "relations.candidates",
            ["flip", "flipp"],
            ["relations.candidates[1]", "unknown relation 'flipp'", "did you mean 'flip'"],
        ),
        ("relations.candidates", [], ["relations.candidates", "at least one"]),
        ("relations.max_set_size", 5, ["relations", "max_set_size <= 3"]),
        ("relations.min_set_size", 0, ["relations", "1 <= min_set_size"]),
        ("prefilter.keep_fraction", 0.0, ["prefilter.keep_fraction", "(0, 1]"]),
        ("prefilter.threshold", 0.5, ["prefilter", "exactly one of keep_fraction and threshold"]),
        ("prefilter.aggregate", "median", ["prefilter.aggregate", "Allowed: mean, max, min, sum"]),
        (
            "prefilter.score",
            "non_locality",
            [
                "bad.yaml: prefilter.score",
                "got 'non_locality'",
                "Allowed: latent, pose, latent_in_support, pose_in_support, latent_x_transformer",
            ],
        ),
        ("prefilter.warmup", -1, ["prefilter.warmup", "must be >= 0"]),
        ("resources.trial_cpus", 0, ["resources.trial_cpus", "must be > 0.1"]),
        ("resources.trial_cpus", 0.1, ["resources.trial_cpus", "its worker the rest"]),
        ("resources.trial_gpus", -1, ["resources.trial_gpus", "must be >= 0"]),
        ("scheduler.reduction_factor", 1, ["scheduler.reduction_factor", "at least 2"]),
        ("objectives", {"metric": "mpjpe"}, ["objectives", "non-empty list"]),
        ("objectives", [], ["objectives", "non-empty list"]),
        (
            "objectives",
            [{"metric": "mpjpee"}],
            ["objectives[0].metric", "Allowed: mpjpe, pa_mpjpe, mpjpe_gtbone", "pck150, auc", "nonlocalness"],
        ),
        (
            "objectives",
            [{"metric": "pck150", "mode": "min"}],
            ["objectives[0].mode", "pck150 is an accuracy in percent, higher", "worst poses", "Allowed: max."],
        ),
        (
            "objectives",
            [{"metric": "mpjpe"}, {"metric": "mpjpe_gtbone", "mode": "max"}],
            ["objectives[1].mode", "mpjpe_gtbone is an error in mm, lower is better", "Allowed: min."],
        ),
        ("objectives", [{"metric": "mpjpe", "mode": "down"}], ["objectives[0].mode", "Allowed: min, max"]),
        ("objectives", [{"metric": "mpjpe"}, {"metric": "mpjpe"}], ["objectives", "lists a metric twice"]),
        (
            "objectives",
            [{"metric": "mpjpe"}, {"metric": "nonlocalness", "mode": "max"}],
            ["scheduler.type", "asha stops trials on one metric"],
        ),
        ("objective", {"metric": "mpjpe"}, ["objective: unknown key", "did you mean 'objectives'"]),
        (
            "loggers",
            ["tensorbord"],
            [
                "bad.yaml: loggers[0]: unknown logger 'tensorbord'",
                "did you mean 'tensorboard'",
                "Allowed: tensorboard, mlflow, wandb.",
            ],
        ),
        ("loggers", "tensorboard", ["bad.yaml: loggers: must be a list of logger names", "Allowed: tensorboard"]),
        ("loggers", None, ["bad.yaml: loggers: must be a list of logger names"]),
        ("loggers", ["tensorboard", "tensorboard"], ["bad.yaml: loggers: lists a logger twice"]),
        ("logger", ["tensorboard"], ["logger: unknown key", "did you mean 'loggers'"]),
    ],
)
def test_bad_spaces_name_file_key_and_allowed_values(path, value, expected):
    message = _error(_with(path, value))
    for part in expected:
        assert part in message


@pytest.mark.parametrize(
    "section, value",
    [("adapt", 3e-4), ("params", "tag(log, interval(1e-5, 1e-3))")],
)
def test_lr_nonlocal_under_the_weighted_schedule_names_lr_weighted(section, value):
    """The weighted schedule's one optimiser runs at lr_weighted: an lr_nonlocal there would change nothing."""
    space = _with("adapt.schedule", "weighted")
    space["params"] = {"tau": "choice(0.07, 0.1)"}
    space[section]["lr_nonlocal"] = value
    message = _error(space)
    assert f"bad.yaml: {section}.lr_nonlocal: has no effect under schedule: weighted" in message
    assert "set lr_weighted instead" in message


def test_lr_nonlocal_counts_where_the_round_robin_may_run():
    weighted = _with("adapt.schedule", "weighted")
    weighted["params"] = {"lr_weighted": "tag(log, interval(1e-5, 1e-3))"}
    assert parse_space(weighted, "s.yaml").adapt_config((), {"lr_weighted": 3e-4}).lr_weighted == 3e-4
    tuned = copy.deepcopy(TINY_SPACE)
    tuned["params"]["schedule"] = "choice(round_robin, weighted)"
    assert {p.name for p in parse_space(tuned, "s.yaml").params} == {"lr_nonlocal", "tau", "schedule"}


def test_a_trial_config_is_the_space_fixed_fields_over_the_encoder_defaults():
    space = _with("stages.source.encoder", "resnet50")
    spec = parse_space(space, "s.yaml")
    shared = spec.adapt_config((), {})
    assert shared.trainable_block == "layer2" and shared.steps == 6 and shared.relations == ()
    trial = spec.adapt_config(("flip",), {"tau": 0.1})
    assert trial.relations == ("flip",) and trial.tau == 0.1 and trial.batch_clips == 2


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(SpaceError, match="cannot read"):
        load_space(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("world: [unclosed\n")
    with pytest.raises(SpaceError, match="bad.yaml: not valid YAML"):
        load_space(bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(SpaceError, match="must hold a mapping"):
        load_space(bad)


@pytest.mark.parametrize("text", ["", "\n", "# a comment only\n", "{}\n", "null\n", "---\n"])
def test_a_space_without_sections_is_refused_not_run_as_the_defaults(tmp_path, text):
    empty = tmp_path / "empty.yaml"
    empty.write_text(text)
    with pytest.raises(SpaceError) as error:
        load_space(empty)
    message = str(error.value)
    assert message.startswith(f"{empty}: the file holds no sections")
    assert "at least one section" in message and "Allowed: name, world, data, stages" in message


@settings(max_examples=30, deadline=None)
@given(
    low=st.floats(1e-6, 1.0),
    width=st.floats(1e-3, 10.0),
    log=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
    max_set=st.integers(1, 3),
    score=st.sampled_from(CANDIDATES),
)
def test_yaml_round_trip(tmp_path_factory, low, width, log, seed, max_set, score):
    """Writing a space to YAML and reading it back gives the same spec."""
    space = copy.deepcopy(TINY_SPACE)
    space["prefilter"] = {**space["prefilter"], "score": score}
    expression = f"interval({low!r}, {low + width!r})"
    space["params"] = {"lr_nonlocal": f"tag(log, {expression})" if log else expression}
    space["searcher"]["seed"] = seed
    space["relations"]["max_set_size"] = max_set
    path = write_space(tmp_path_factory.mktemp("rt") / "space.yaml", space)
    spec = load_space(path)
    again = parse_space(yaml.safe_load(yaml.safe_dump(spec.raw)), path)
    assert again == spec
    assert again.digest == spec.digest
    assert spec.params[0].low == pytest.approx(low) and spec.params[0].log == log
    assert again.prefilter.score == score


@pytest.mark.parametrize("name", ["smoke", "default", "paper"])
def test_shipped_spaces_search_the_loss_weights(name):
    """The weighted schedule's weights are searched beside the relation sets, and a best configuration carries them
    into its ``best.yaml``."""
    spec = load_space(REPO / "spaces" / f"{name}.yaml")
    tuned = {p.name for p in spec.params}
    assert {"w_lcr", "w_hcr", "w_motion", "lr_weighted"} <= tuned
    assert spec.adapt.get("schedule") == "weighted" or "schedule" in tuned
    sampled = {p.name: p.choices[-1] if p.choices else 0.1 for p in spec.params}  # choice: weighted where tuned
    row = pd.Series({"relation_set": spec.relations.candidates[0], **{f"param_{k}": v for k, v in sampled.items()}})
    best = parse_space(best_space(spec, row), "best.yaml")
    assert best.params == () and all(best.adapt[w] == 0.1 for w in ("w_lcr", "w_hcr", "w_motion"))
    assert "lr_nonlocal" not in best.adapt  # sampled, but the weighted schedule ignores it
    config = best.adapt_config(best.relations.sets()[0], {})
    assert (config.schedule, config.w_lcr, config.lr_weighted) == ("weighted", 0.1, 0.1)


def test_set_overrides_are_merged_before_the_checks_and_recorded(tmp_path):
    path = write_space(tmp_path / "tiny.yaml", TINY_SPACE)
    spec = load_space(path, ["searcher.num_trials=9", "relations.candidates=[flip, inplane5]", "adapt.w_lcr=0.1"])
    assert spec.searcher.num_trials == 9 and spec.relations.candidates == ("flip", "inplane5")
    assert spec.adapt["w_lcr"] == 0.1 and spec.overrides == (
        "searcher.num_trials=9",
        "relations.candidates=[flip, inplane5]",
        "adapt.w_lcr=0.1",
    )
    assert spec.digest != load_space(path).digest
    assert load_space(path, ["stages.motion.steps=7"]).stages.motion.steps == 7  # a missing section is made


@pytest.mark.parametrize(
    "item, message",
    [
        ("searcher.num_trials", "expected KEY.PATH=VALUE"),
        ("searcher..seed=1", "expected KEY.PATH=VALUE"),
        ("name.first=x", "name is a value, not a section with keys"),
        ("searcher.num_trial=4", "searcher.num_trial"),
        ("searcher.num_trials=-1", "searcher.num_trials"),
        ("adapt.tau=[1", "the value is not valid YAML"),
    ],
)
def test_a_bad_set_override_fails_like_the_file_would(tmp_path, item, message):
    path = write_space(tmp_path / "tiny.yaml", TINY_SPACE)
    with pytest.raises(SpaceError, match=re.escape(message)):
        load_space(path, [item])


def test_loggers_default_to_none_and_keep_their_order():
    assert parse_space(copy.deepcopy(TINY_SPACE), "s.yaml").loggers == ()
    assert parse_space(_with("loggers", ["tensorboard"]), "s.yaml").loggers == ("tensorboard",)


@pytest.mark.parametrize("logger, package", [("mlflow", "mlflow"), ("wandb", "wandb"), ("tensorboard", "tensorboardX")])
def test_a_logger_whose_package_is_missing_is_refused_with_the_pip_command(monkeypatch, logger, package):
    """Checked where the space is read, before any stage trains; ``find_spec`` looks without importing."""
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == package else find_spec(name, *a))
    message = _error(_with("loggers", [logger]))
    assert message.startswith(f"bad.yaml: loggers[0]: {logger} needs the Python package {package}")
    assert f"`pip install {package}`" in message and "nlrd-search[loggers]" in message


@pytest.mark.parametrize(
    "grammar, described",
    [
        ("tag(log, interval(3e-5, 3e-4))", "float, log-uniform on [3e-05, 0.0003]"),
        ("interval(0.05, 0.2)", "float, uniform on [0.05, 0.2]"),
        ("int(interval(20, 80))", "int, uniform on [20, 80]"),
        ("tag(log, int(interval(8, 64)))", "int, log-uniform on [8, 64]"),
        ("range(10, 50, step=10)", "int, uniform on [10, 40], step 10"),
        ("range(0.05, 0.2, step=0.05)", "float, uniform on [0.05, 0.15], step 0.05"),
        ("choice(block3, block4)", "choice of block3, block4"),
    ],
)
def test_a_tuned_value_describes_its_distribution(grammar, described):
    assert parse_expression("x", grammar).describe() == described


def test_knob_range_spans_a_tuned_field_or_is_the_shared_value():
    space = copy.deepcopy(TINY_SPACE)
    space["adapt"] = {"batch_clips": 2}
    space["params"] = {"steps": "int(interval(20, 80))", "eval_every": "choice(10, 5, 20)"}
    spec = parse_space(space, "s.yaml")
    assert spec.knob_range("steps") == (20, 80) and spec.knob_range("eval_every") == (5, 20)
    assert spec.knob_range("batch_clips") == (2, 2)
