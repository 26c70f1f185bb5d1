"""The run directory of a search: the name of every file in it, and the manifest that makes a directory ours.

The names are the on-disk format of a run: ``--resume`` reads directories written by earlier versions, so they
do not change.  The directory is passed around as a ``RunDir`` and becomes a string only where Ray takes one
(``storage_path``).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pyarrow.fs
import yaml

from nlrd.atomic import write_text_atomic
from nlrd.pipeline import StageCache
from search.space import SearchSpec, load_space
from search.storage import run_filesystem
from search.trial_reports import TrialReports


class RunDirError(Exception):
    """A directory that cannot be run or resumed: not a run, an unreadable manifest, a space edited since the run
    started, or a run another search holds.  The message starts with the directory."""


@dataclass(frozen=True)
class Manifest:
    """What ``manifest.json`` tells a resumed run: the digest of its space and where its stage cache is.  (The file
    also records the space's original path and when the run started, for people.)"""

    space_digest: str
    cache: Path


@dataclass(frozen=True)
class RunDir:
    """One search's directory.  ``path`` is made absolute: Ray reads it on other nodes."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path).resolve())

    @property
    def manifest_json(self) -> Path:
        """What the run is (``Manifest``); its presence makes the directory one of ours."""
        return self.path / "manifest.json"

    @property
    def space_yaml(self) -> Path:
        """The copy of the space the run searches, as it was when the run started."""
        return self.path / "space.yaml"

    @property
    def prefilter_json(self) -> Path:
        """The pre-filter's scores and verdicts, so a resumed run offers Optuna the same sets."""
        return self.path / "prefilter.json"

    @property
    def study_log(self) -> Path:
        """The Optuna study (a journal file) that dashboards and the multi-objective front read."""
        return self.path / "study.log"

    @property
    def tune(self) -> Path:
        """Tune's experiment folder: its saved search state and one folder per trial."""
        return self.path / "tune"

    @property
    def tuner_state(self) -> Path:
        """Where Tune keeps what the Tuner was built with (its ``tuner.pkl``)."""
        return self.tune / "tuner.pkl"

    @property
    def mlflow_db(self) -> Path:
        """The MLflow store (an SQLite file) of ``loggers: [mlflow]`` when ``MLFLOW_TRACKING_URI`` names none."""
        return self.path / "mlflow.db"

    @property
    def reports(self) -> TrialReports:
        """Each trial's reports, attempts and divergence, under ``reports/``."""
        return TrialReports(self.path / "reports")

    @property
    def trials_csv(self) -> Path:
        return self.path / "trials.csv"

    @property
    def trials_parquet(self) -> Path:
        return self.path / "trials.parquet"

    @property
    def prefilter_csv(self) -> Path:
        return self.path / "prefilter.csv"

    @property
    def pareto_json(self) -> Path:
        return self.path / "pareto.json"

    @property
    def pareto_png(self) -> Path:
        return self.path / "pareto.png"

    @property
    def pareto_svg(self) -> Path:
        return self.path / "pareto.svg"

    @property
    def prefilter_png(self) -> Path:
        return self.path / "prefilter.png"

    @property
    def stage_quality_json(self) -> Path:
        """The stage-quality report (``nlrd.quality``) and the reference lines of the stages the run adapts from."""
        return self.path / "stage_quality.json"

    @property
    def summary_md(self) -> Path:
        return self.path / "summary.md"

    @property
    def best_yaml(self) -> Path:
        """A space that re-runs the best trial's configuration."""
        return self.path / "best.yaml"

    @property
    def best_encoder(self) -> Path:
        """The best trial's adapted encoder (a state dict)."""
        return self.path / "best_encoder.pt"

    @property
    def lock_file(self) -> Path:
        """Locked by the search that runs in the directory (:meth:`hold`); it names that search."""
        return self.path / ".run.lock"

    @property
    def storage_path(self) -> str:
        """The directory as Ray Tune's and Ray Train's ``storage_path``: their runs are folders in it."""
        return str(self.path)

    @property
    def storage_filesystem(self) -> pyarrow.fs.FileSystem:
        """The file system Ray writes ``storage_path`` through: a file Ray writes there is whole or absent, even when
        a kill stops the writer (``search.storage``)."""
        return run_filesystem()

    def trial_run(self, trial_id: str) -> str:
        """The Ray Train run of a trial: a retry finds the run's checkpoint under the same name."""
        return f"train-{trial_id}"

    def stage_run(self, job: str) -> str:
        """The Ray Train run of a shared-stage job (``stage_run("*")``: all of them, as a glob)."""
        return f"stages-{job.replace('+', '-')}"

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the run for this process while the block runs: a second search on it (``--resume`` while it runs, on
        this machine or another that shares the file system) gets ``RunDirError`` naming the holder, instead of two
        searches writing one study.  The lock is the operating system's (``flock``), so it ends with the process
        however the process ends, and a run killed with SIGKILL is free to resume at once."""
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "another process"
                raise RunDirError(
                    f"{self.path}: another search is running in it ({holder}); wait for it to end, or stop it, "
                    "then resume"
                ) from None
            os.ftruncate(fd, 0)
            started = datetime.now().isoformat(sep=" ", timespec="seconds")
            os.pwrite(fd, f"search/run.py, pid {os.getpid()} on {socket.gethostname()}, since {started}".encode(), 0)
            yield
        finally:
            os.close(fd)

    def create(self, spec: SearchSpec, cache: StageCache) -> None:
        """Make the directory of a new run, with its manifest and a copy of its space."""
        try:
            self.path.mkdir(parents=True)
        except FileExistsError:
            raise RunDirError(f"{self.path}: already exists; choose another --name or --out, or --resume it") from None
        manifest = {
            "space": str(spec.path.resolve()),
            "space_digest": spec.digest,
            "cache": str(cache.root),
            "created": datetime.now().isoformat(timespec="seconds"),
        }
        write_text_atomic(self.manifest_json, json.dumps(manifest, indent=2))
        if spec.overrides:  # the merged space, so that --resume and best.yaml see what the run searched
            header = f"# {spec.path} with " + " ".join(f"--set {item}" for item in spec.overrides) + "\n"
            write_text_atomic(self.space_yaml, header + yaml.safe_dump(spec.raw, sort_keys=False))
        else:
            write_text_atomic(self.space_yaml, spec.path.read_text())

    def read_manifest(self) -> Manifest:
        """The manifest of a run to resume; ``RunDirError`` when the directory is not a run of ours.  Tune
        unpickles a run's state, so a directory is as trusted as code: this is checked before Ray sees it."""
        path = self.manifest_json
        try:
            manifest = json.loads(path.read_text())
        except FileNotFoundError:
            raise RunDirError(
                f"{self.path}: no {path.name} there; it is not a run directory of search/run.py"
            ) from None
        except (OSError, json.JSONDecodeError) as exc:
            raise RunDirError(f"{self.path}: cannot read {path} ({exc})") from None
        if not isinstance(manifest, dict) or "space_digest" not in manifest or "cache" not in manifest:
            raise RunDirError(f"{self.path}: {path} is not a search/run.py manifest (no space_digest or cache)")
        return Manifest(space_digest=manifest["space_digest"], cache=Path(manifest["cache"]))

    def read_space(self, manifest: Manifest) -> SearchSpec:
        """The space the run searches, from its copy; ``RunDirError`` when the copy was edited after the run
        started (its digest is no longer the manifest's)."""
        spec = load_space(self.space_yaml)
        if spec.digest != manifest.space_digest:
            raise RunDirError(f"{self.path}: {self.space_yaml.name} was changed after the run started (digest differs)")
        return spec
