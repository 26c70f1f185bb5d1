"""The run directory's tables: one row per trial and per rejected relation set, and the Pareto front."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nlrd.nonlocalness import NonLocalness
from search.prefilter import SetDecision
from search.trainable import RELATIONS_KEY

FINISHED, STOPPED, ERROR, REJECTED = "finished", "stopped_by_asha", "error", "rejected_by_prefilter"
#: Front axes: the set's non-localness score (higher is better) against target MPJPE (lower is better).
SCORE, OBJECTIVE = "set_score", "mpjpe"


def trial_rows(results: Any, decisions: list[SetDecision], max_evaluations: int) -> list[dict[str, Any]]:
    """Rows for the trials of a Tune ``ResultGrid``."""
    scores = {d.label: d.score for d in decisions}
    rows = []
    for result in results:
        config = dict(result.config or {})
        label = config.pop(RELATIONS_KEY, "")
        metrics = result.metrics or {}
        history = result.metrics_dataframe
        iterations = int(metrics.get("training_iteration", 0) or 0)
        if result.error is not None:
            status = ERROR
        elif iterations >= max_evaluations:
            status = FINISHED
        else:
            status = STOPPED
        row = {
            "trial_id": metrics.get("trial_id", Path(result.path).name if result.path else ""),
            "relation_set": label,
            "set_size": len(label.split("+")) if label else 0,
            SCORE: scores.get(label, np.nan),
            "status": status,
            "mpjpe": metrics.get("mpjpe", np.nan),
            "pa_mpjpe": metrics.get("pa_mpjpe", np.nan),
            "best_mpjpe": float(history["mpjpe"].min()) if history is not None and "mpjpe" in history else np.nan,
            "evaluations": iterations,
            "steps": metrics.get("step", np.nan),
            "time_s": metrics.get("time_total_s", np.nan),
            "error": "" if result.error is None else f"{type(result.error).__name__}: {result.error}".splitlines()[0],
        }
        row.update({f"param_{name}": value for name, value in config.items()})
        rows.append(row)
    return rows


def rejected_rows(decisions: list[SetDecision]) -> list[dict[str, Any]]:
    return [
        {"relation_set": d.label, "set_size": len(d.relations), SCORE: d.score, "status": REJECTED, "error": d.reason}
        for d in decisions
        if not d.kept
    ]


def trials_table(rows: list[dict[str, Any]], scores: dict[str, NonLocalness]) -> pd.DataFrame:
    """All rows, with each member relation's normalised non-localness as ``nl_<relation>`` columns."""
    table = pd.DataFrame(rows)
    for name, value in sorted(scores.items()):
        members = table["relation_set"].str.split("+")
        table[f"nl_{name}"] = [value.normalised if name in m else np.nan for m in members]
    table["pareto"] = pareto_mask(table)
    return table


def pareto_mask(table: pd.DataFrame) -> np.ndarray:
    """Finished trials that no other finished trial beats on both score (higher) and MPJPE (lower)."""
    mask = np.zeros(len(table), dtype=bool)
    done = table.index[(table["status"] == FINISHED) & table[OBJECTIVE].notna()]
    score = table.loc[done, SCORE].to_numpy(float)
    error = table.loc[done, OBJECTIVE].to_numpy(float)
    for i, row in enumerate(done):
        dominated = (score >= score[i]) & (error <= error[i]) & ((score > score[i]) | (error < error[i]))
        mask[table.index.get_loc(row)] = not dominated.any()
    return mask


def write_atomic(path: Path, write: Callable[[str], None]) -> None:
    """Write through a temporary file in the same folder, then rename: readers never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_tables(
    run_dir: Path, table: pd.DataFrame, decisions: list[SetDecision], source_only: dict[str, float]
) -> None:
    """``trials.csv``, ``trials.parquet``, ``prefilter.csv`` and ``pareto.json`` in ``run_dir``.

    ``source_only``: the unadapted source encoder's target metrics, recorded beside the front.
    """
    write_atomic(run_dir / "trials.csv", lambda p: table.to_csv(p, index=False))
    write_atomic(run_dir / "trials.parquet", lambda p: table.to_parquet(p, index=False))
    prefilter = pd.DataFrame(
        [{"relation_set": d.label, SCORE: d.score, "kept": d.kept, "reason": d.reason} for d in decisions]
    )
    write_atomic(run_dir / "prefilter.csv", lambda p: prefilter.to_csv(p, index=False))
    front = table[table["pareto"]].sort_values(SCORE)
    payload = {
        "axes": {SCORE: "max", OBJECTIVE: "min"},
        "source_only": source_only,
        "front": json.loads(front.to_json(orient="records")),
    }
    write_atomic(run_dir / "pareto.json", lambda p: Path(p).write_text(json.dumps(payload, indent=2)))
