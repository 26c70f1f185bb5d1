"""The space's ``loggers`` as Ray Tune callbacks: built without a Ray cluster, and without mlflow or wandb installed
(stand-ins take their place where Ray's callbacks import them)."""

from __future__ import annotations

import copy
import dataclasses
import sys
import types

import pytest
import ray.air.integrations.wandb as ray_wandb
from ray import cloudpickle
from ray.air.integrations.mlflow import MLflowLoggerCallback
from ray.air.integrations.wandb import WandbLoggerCallback
from ray.tune.logger import TBXLoggerCallback

from search.loggers import LOGGER_CALLBACKS, logger_callbacks
from search.run_dir import RunDir
from search.space import LOGGER_PACKAGES, SearchSpec, parse_space
from tests.conftest import TINY_SPACE


def _spec(*loggers: str) -> SearchSpec:
    """The tiny space with ``loggers`` set past the checker, which would refuse a package this machine lacks."""
    return dataclasses.replace(parse_space(copy.deepcopy(TINY_SPACE), "tiny.yaml"), loggers=loggers)


@pytest.fixture
def fake_trackers(monkeypatch):
    """mlflow and wandb as Ray's callbacks see them, whether or not they are installed."""
    monkeypatch.setitem(sys.modules, "mlflow", types.ModuleType("mlflow"))
    monkeypatch.setattr(ray_wandb, "wandb", types.SimpleNamespace())
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "WANDB_PROJECT", "WANDB_MODE"):
        monkeypatch.delenv(name, raising=False)


def test_every_allowed_logger_has_a_callback():
    assert set(LOGGER_CALLBACKS) == set(LOGGER_PACKAGES)


def test_no_loggers_adds_no_callbacks(tmp_path):
    assert logger_callbacks(_spec(), RunDir(tmp_path)) == []


def test_each_logger_becomes_rays_own_callback_in_the_spaces_order(tmp_path, fake_trackers):
    callbacks = logger_callbacks(_spec("wandb", "tensorboard", "mlflow"), RunDir(tmp_path))
    assert [type(c) for c in callbacks] == [WandbLoggerCallback, TBXLoggerCallback, MLflowLoggerCallback]


def test_mlflow_defaults_to_an_sqlite_store_in_the_run_directory_named_after_the_space(tmp_path, fake_trackers):
    (callback,) = logger_callbacks(_spec("mlflow"), RunDir(tmp_path))
    assert callback.tracking_uri == "sqlite:///" + str((tmp_path / "mlflow.db").resolve())
    assert callback.tracking_uri.startswith("sqlite:////")
    assert callback.experiment_name == "tiny"


def test_mlflow_follows_the_users_tracking_uri_and_experiment(tmp_path, fake_trackers, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "poses")
    (callback,) = logger_callbacks(_spec("mlflow"), RunDir(tmp_path))
    assert (callback.tracking_uri, callback.experiment_name) == ("http://mlflow.example:5000", "poses")


def test_wandb_project_is_the_spaces_name_and_its_files_stay_in_the_run_directory(tmp_path, fake_trackers):
    (callback,) = logger_callbacks(_spec("wandb"), RunDir(tmp_path))
    assert callback.project == "tiny"
    assert callback.kwargs == {"dir": str(tmp_path.resolve())}  # no mode: wandb's own default


def test_wandb_follows_wandb_project_and_mode(tmp_path, fake_trackers, monkeypatch):
    monkeypatch.setenv("WANDB_PROJECT", "nlrd")
    monkeypatch.setenv("WANDB_MODE", "offline")
    (callback,) = logger_callbacks(_spec("wandb"), RunDir(tmp_path))
    assert callback.project == "nlrd" and callback.kwargs["mode"] == "offline"


def test_the_callbacks_survive_the_pickling_tune_does(tmp_path, fake_trackers):
    """Tune pickles its callbacks into ``tuner.pkl``; ``--resume`` unpickles them and goes on reporting."""
    callbacks = logger_callbacks(_spec("tensorboard", "mlflow", "wandb"), RunDir(tmp_path))
    again = cloudpickle.loads(cloudpickle.dumps(callbacks))
    assert [type(c) for c in again] == [type(c) for c in callbacks]
    assert again[1].tracking_uri == callbacks[1].tracking_uri and again[2].project == "tiny"
