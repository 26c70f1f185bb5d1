"""Bad input at the command line: each case exits with code 2 and one short paragraph naming the file, key or
path and what is allowed, prints no traceback, and leaves no run directory behind."""

from __future__ import annotations

import copy
import json
import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from nlrd.pipeline import StageCache, stage_keys
from search.run import main
from search.space import load_space, parse_space
from tests.conftest import TINY_SPACE, with_stages, write_space

Case = Callable[[Path], list[str]]


def _space(tmp: Path, edit: Callable[[dict], object] | None = None, name: str = "bad.yaml") -> Path:
    space = copy.deepcopy(TINY_SPACE)
    if edit is not None:
        edit(space)
    return write_space(tmp / name, space)


def _set(path: str, value: object) -> Case:
    """A case: TINY_SPACE with ``path`` (dotted) set to ``value``."""

    def make(tmp: Path) -> list[str]:
        def edit(space: dict) -> None:
            *parents, leaf = path.split(".")
            node = space
            for key in parents:
                node = node.setdefault(key, {})
            node[leaf] = value

        return ["--space", str(_space(tmp, edit)), "--out", str(tmp / "out")]

    return make


def _text(text: str) -> Case:
    def make(tmp: Path) -> list[str]:
        (tmp / "bad.yaml").write_text(text)
        return ["--space", str(tmp / "bad.yaml"), "--out", str(tmp / "out")]

    return make


def _cache_file(relation_or_stage: str, damage: Callable[[Path], None]) -> Case:
    """A case: a valid space whose stage cache holds a damaged file for one stage."""

    def make(tmp: Path) -> list[str]:
        keys = stage_keys(parse_space(TINY_SPACE, "tiny.yaml").stages, TINY_SPACE["relations"]["candidates"])
        key = keys.relations.get(relation_or_stage) or getattr(keys, relation_or_stage)
        cache = StageCache(tmp / "out" / "cache")
        cache.save(key, {"state": {"w": torch.ones(4)}})
        damage(cache.path(key))
        return ["--space", str(_space(tmp, name="tiny.yaml")), "--out", str(tmp / "out")]

    return make


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:40])


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def _foreign_pickle(path: Path) -> None:
    path.write_bytes(pickle.dumps({"state": _Payload()}))


def _resume_dir(manifest: object | None) -> Case:
    def make(tmp: Path) -> list[str]:
        run_dir = tmp / "run"
        run_dir.mkdir()
        if manifest is not None:
            (run_dir / "manifest.json").write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
        return ["--resume", str(run_dir)]

    return make


def _resume_other_space(tmp: Path) -> list[str]:
    run_dir = tmp / "run"
    run_dir.mkdir()
    spec_path = _space(run_dir, name="space.yaml")
    digest = load_space(spec_path).digest
    (run_dir / "manifest.json").write_text(json.dumps({"space_digest": digest, "cache": str(tmp / "cache")}))
    other = _space(tmp, lambda s: s["searcher"].update(num_trials=9), name="other.yaml")
    return ["--resume", str(run_dir), "--space", str(other)]


def _resume_edited_space(tmp: Path) -> list[str]:
    args = _resume_other_space(tmp)
    space = tmp / "run" / "space.yaml"
    space.write_text(space.read_text().replace("num_trials: 4", "num_trials: 5"))
    return args[:2]


def _not_a_bvh(tmp: Path) -> list[str]:
    (tmp / "mocap").mkdir()
    (tmp / "mocap" / "take.bvh").write_text("this is not motion capture")
    return _set("data", {"mocap": {"kind": "bvh", "path": str(tmp / "mocap")}})(tmp)


def _not_an_npz(tmp: Path) -> list[str]:
    (tmp / "poses.npz").write_bytes(b"PK\x03\x04 truncated")
    part = {"kind": "h36m", "npz": str(tmp / "poses.npz"), "frames": str(tmp), "subjects": ["S9"]}
    return _set("data", {"target_val": part})(tmp)


def _existing_run_dir(tmp: Path) -> list[str]:
    (tmp / "out" / "taken").mkdir(parents=True)
    return ["--space", str(_space(tmp)), "--out", str(tmp / "out"), "--name", "taken"]


CASES: dict[str, tuple[Case, list[str]]] = {
    "malformed YAML": (_text("world: [unclosed\n"), ["bad.yaml: not valid YAML"]),
    "a list instead of sections": (_text("- a\n- b\n"), ["bad.yaml", "must hold a mapping"]),
    "missing space file": (lambda t: ["--space", str(t / "nope.yaml")], ["nope.yaml: cannot read"]),
    "space path is a folder": (lambda t: ["--space", str(t)], ["cannot read the search space file"]),
    "misspelt section": (_set("worlds", {}), ["bad.yaml: worlds: unknown key", "did you mean 'world'"]),
    "misspelt key": (_set("searcher.algoritm", "tpe"), ["searcher.algoritm", "did you mean 'algorithm'"]),
    "misspelt stage key": (_set("stages.prior.stepz", 3), ["stages.prior.stepz", "did you mean 'steps'"]),
    "misspelt failure key": (_set("failure.max_retry", 1), ["failure.max_retry", "did you mean 'max_retries'"]),
    "wrong type: int": (_set("world.image_size", "big"), ["world.image_size", "must be an integer"]),
    "wrong type: bool": (_set("prefilter.enabled", "yes"), ["prefilter.enabled", "true or false"]),
    "image size too small": (_set("world.image_size", 4), ["world.image_size", "at least 8 px, got 4"]),
    "zero stage steps": (_set("stages.motion.steps", 0), ["stages.motion.steps", "must be at least 1, got 0"]),
    "negative fixed loss weight": (_set("adapt.w_source", -1), ["adapt.w_source", "must be >= 0, got -1.0"]),
    "tuned temperature reaching 0": (_set("params.tau", "interval(0, 0.2)"), ["params.tau", "must be > 0, got 0.0"]),
    "wrong type: section": (_set("searcher", [1, 2]), ["searcher", "must be a mapping"]),
    "unknown algorithm": (_set("searcher.algorithm", "grid"), ["searcher.algorithm", "Allowed: tpe, random"]),
    "inverted interval": (_set("params.tau", "interval(0.2, 0.1)"), ["params.tau", "low < high"]),
    "empty interval": (_set("params.tau", "interval(0.1, 0.1)"), ["params.tau", "low < high"]),
    "empty range": (_set("params.seed", "range(10, 5)"), ["params.seed", "start < stop"]),
    "log interval from 0": (_set("params.lr_nonlocal", "tag(log, interval(0, 1))"), ["low > 0"]),
    "unknown expression": (_set("params.tau", "uniform(0, 1)"), ["params.tau", "unsupported expression"]),
    "unknown relation": (
        _set("relations.candidates", ["flip", "flip_backwards"]),
        ["relations.candidates[1]", "unknown relation 'flip_backwards'", "did you mean 'flip_backward'"],
    ),
    "set size above the candidates": (_set("relations.max_set_size", 5), ["relations", "max_set_size <= 3"]),
    "set size 0": (_set("relations.min_set_size", 0), ["relations", "1 <= min_set_size"]),
    "together rules leave no set": (
        _set("relations.require_together", [["flip", "inplane5", "flip_backward"]]),
        ["relations", "no relation set satisfies"],
    ),
    "keep fraction 0": (_set("prefilter.keep_fraction", 0.0), ["prefilter.keep_fraction", "(0, 1]"]),
    "zero trial CPUs": (_set("resources.trial_cpus", 0), ["resources.trial_cpus", "must be > 0.1"]),
    "negative GPUs": (_set("resources.trial_gpus", -0.5), ["resources.trial_gpus", "must be >= 0"]),
    "negative retries": (_set("failure.max_retries", -1), ["failure.max_retries", "must be >= 0"]),
    "zero trials": (_set("searcher.num_trials", 0), ["searcher.num_trials", "must be > 0"]),
    "ASHA with two objectives": (
        _set("objectives", [{"metric": "mpjpe"}, {"metric": "nonlocalness", "mode": "max"}]),
        ["scheduler.type", "asha stops trials on one metric"],
    ),
    "unknown objective": (_set("objectives", [{"metric": "mpjpee"}]), ["objectives[0].metric", "Allowed: mpjpe"]),
    "accuracy objective searched the wrong way": (
        _set("objectives", [{"metric": "pck150", "mode": "min"}]),
        ["objectives[0].mode", "worst poses", "Allowed: max."],
    ),
    "unknown logger": (
        _set("loggers", ["tensorbaord"]),
        ["bad.yaml: loggers[0]: unknown logger 'tensorbaord'", "Allowed: tensorboard, mlflow, wandb"],
    ),
    "missing mocap folder": (
        _set("data", {"mocap": {"kind": "bvh", "path": "/nowhere/cmu"}}),
        ["bad.yaml: data.mocap.path: /nowhere/cmu: folder not found"],
    ),
    "missing dataset file": (
        _set("data", {"target_val": {"kind": "h36m", "npz": "/nowhere/h36m.npz", "subjects": ["S9"]}}),
        ["data.target_val.npz: /nowhere/h36m.npz: file not found"],
    ),
    "a file that is not BVH": (_not_a_bvh, ["data.mocap.path", "not a BVH file (expected it to start with HIERARCHY)"]),
    "an npz that is not one": (_not_an_npz, ["data.target_val.npz", "poses.npz: not a readable .npz archive"]),
    "a dataset kind that cannot fill the part": (
        _set("data", {"source": {"kind": "bvh", "path": "x"}}),
        ["data.source.kind: 'bvh' cannot fill source"],
    ),
    "truncated stage checkpoint": (_cache_file("prior", _truncate), ["prior-", "cannot be read as an nlrd checkpoint"]),
    "foreign stage checkpoint": (
        _cache_file("flip", _foreign_pickle),
        ["relation_flip-", "cannot be read as an nlrd checkpoint"],
    ),
    "resume: not a run directory": (_resume_dir(None), ["--resume", "no manifest.json there"]),
    "resume: foreign manifest": (_resume_dir([1, 2]), ["is not a search/run.py manifest"]),
    "resume: corrupt manifest": (_resume_dir("{"), ["cannot read"]),
    "resume: a different space": (_resume_other_space, ["belongs to a different space"]),
    "resume: space edited since": (_resume_edited_space, ["was changed after the run started"]),
    "run directory taken": (_existing_run_dir, ["taken already exists", "--resume it"]),
    "address nobody answers": (
        lambda t: ["--space", str(_space(t)), "--out", str(t / "out"), "--address", "127.0.0.1:9"],
        ["--address 127.0.0.1:9: no Ray cluster answered"],
    ),
    "address without a port": (
        lambda t: ["--space", str(_space(t)), "--out", str(t / "out"), "--address", "head-node"],
        ["--address head-node: expected 'auto' or HOST:PORT"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_clear_error_and_leaves_nothing(tmp_path, capsys, case):
    make, expected = CASES[case]
    args = make(tmp_path)
    out = tmp_path / "out"
    before = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: "), err
    for part in expected:
        assert part in err, err
    assert "Traceback" not in err
    assert len(err) < 800, err  # a paragraph, not a dump
    after = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    assert after == before, "a run directory or file was written"


def test_a_prefilter_that_keeps_nothing_stops_before_any_trial(tmp_path, capsys, ray_cluster, tiny_stages):
    out = with_stages(tmp_path / "out", tiny_stages)
    path = _space(tmp_path, lambda s: s.update(prefilter={"keep_fraction": None, "threshold": 1e6}))
    assert main(["--space", str(path), "--out", str(out), "--name", "run"]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml: prefilter.threshold: 1000000.0 rejects every relation set" in err, err
    assert not (out / "run").exists()
