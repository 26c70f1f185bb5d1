from __future__ import annotations

import copy

import optuna
import pytest
from ray import cloudpickle

from search.space import parse_space
from search.tuner import NSGAIISampler, make_sampler
from tests.conftest import TINY_SPACE


def _sampler(algorithm: str) -> optuna.samplers.BaseSampler:
    space = copy.deepcopy(TINY_SPACE)
    space["searcher"]["algorithm"] = algorithm
    return make_sampler(parse_space(space, "tiny.yaml"))


@pytest.mark.parametrize("algorithm", ["tpe", "random", "gp", "nsga2"])
def test_every_sampler_survives_the_pickling_tune_does_and_still_samples(algorithm):
    """Tune pickles its searcher, sampler included, when it saves the search; Optuna 5.1's NSGA-II holds a
    thread lock that pickle refuses unless the project's subclass leaves it out."""
    sampler = cloudpickle.loads(cloudpickle.dumps(_sampler(algorithm)))
    directions = ["minimize", "maximize"] if algorithm == "nsga2" else ["minimize"]
    study = optuna.create_study(directions=directions, sampler=sampler)
    study.optimize(lambda t: [t.suggest_float("x", -1.0, 1.0) ** 2, 1.0][: len(directions)], n_trials=6)
    assert len(study.trials) == 6 and all(t.state.is_finished() for t in study.trials)


def test_the_picklable_nsga2_writes_optunas_study_attributes():
    assert NSGAIISampler._get_generation_key() == optuna.samplers.NSGAIISampler._get_generation_key()
    assert isinstance(_sampler("nsga2"), NSGAIISampler)
