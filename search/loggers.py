"""The experiment trackers a space names (``loggers: [tensorboard, mlflow, wandb]``), as Ray Tune's own logger
callbacks for the ``RunConfig`` of the search.

Tune already writes CSV, JSON and TensorBoard files into every trial's folder (``tensorboardX`` comes with
``ray[tune]``); naming ``tensorboard`` makes those event files a requirement the space checker verifies, and
``mlflow`` and ``wandb`` add those trackers.  Each reports every evaluation of every trial:

* tensorboard: ``RUN_DIR/tune/<trial folder>/events.out.tfevents.*``; ``tensorboard --logdir RUN_DIR/tune``;
* mlflow: to ``MLFLOW_TRACKING_URI`` when set, else to the SQLite store ``RUN_DIR/mlflow.db`` (MLflow 3 refuses
  its former folder store, ``mlruns``, unless ``MLFLOW_ALLOW_FILE_STORE`` is set), in the experiment
  ``MLFLOW_EXPERIMENT_NAME`` or else the space's name; ``mlflow ui --backend-store-uri <that URI>`` shows it;
* wandb: to the project ``WANDB_PROJECT`` or else the space's name, in the mode ``WANDB_MODE`` when set (``offline``
  keeps everything on disk, ``disabled`` turns it off), with its local files under ``RUN_DIR/wandb``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ray import tune
from ray.air.integrations.mlflow import MLflowLoggerCallback
from ray.air.integrations.wandb import WandbLoggerCallback
from ray.tune.logger import TBXLoggerCallback

from search.run_dir import RunDir
from search.space import SearchSpec


def tensorboard_callback(spec: SearchSpec, run_dir: RunDir) -> TBXLoggerCallback:
    """Event files in each trial's folder of Tune's experiment (``RunDir.tune``)."""
    return TBXLoggerCallback()


def mlflow_callback(spec: SearchSpec, run_dir: RunDir) -> MLflowLoggerCallback:
    """An MLflow run per trial; the default store is a file of the run directory, so nothing leaves the machine
    unless the user points ``MLFLOW_TRACKING_URI`` at a server."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{run_dir.mlflow_db.resolve()}"
    return MLflowLoggerCallback(tracking_uri=uri, experiment_name=os.environ.get("MLFLOW_EXPERIMENT_NAME", spec.name))


def wandb_callback(spec: SearchSpec, run_dir: RunDir) -> WandbLoggerCallback:
    """A W&B run per trial.  ``WANDB_MODE`` is handed to ``wandb.init`` explicitly: Ray starts the logging actors
    with only ``WANDB_API_KEY`` from the driver's environment."""
    mode = os.environ.get("WANDB_MODE")
    return WandbLoggerCallback(
        project=os.environ.get("WANDB_PROJECT") or spec.name,
        dir=str(run_dir.path),
        **({"mode": mode} if mode else {}),
    )


#: How each name of ``search.space_spec.LOGGER_PACKAGES`` becomes a callback.
LOGGER_CALLBACKS: dict[str, Callable[[SearchSpec, RunDir], tune.Callback]] = {
    "tensorboard": tensorboard_callback,
    "mlflow": mlflow_callback,
    "wandb": wandb_callback,
}


def logger_callbacks(spec: SearchSpec, run_dir: RunDir) -> list[tune.Callback]:
    """The callbacks of the space's ``loggers``, in its order (the checker has made sure each package is here)."""
    return [LOGGER_CALLBACKS[name](spec, run_dir) for name in spec.loggers]
