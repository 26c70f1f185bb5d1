"""One trial as the tables and figures see it: its status, its record and its row.

Rows come from two places with one shape: live from Tune's ``Trial`` objects as each trial ends (so a
finished trial is on disk at once), and at the end from the ``ResultGrid``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from search.errors import first_error_line
from search.prefilter import SetDecision, parse_set_label
from search.space import ACCURACY_METRICS
from search.trainable import RELATIONS_KEY
from search.trial_reports import TrialReports

FINISHED, STOPPED, ERROR, REJECTED, RUNNING = "finished", "stopped_by_asha", "error", "rejected_by_prefilter", "running"
#: A trial that was running when the search was interrupted (``--resume`` continues it).
INTERRUPTED = "interrupted"
#: A reference line's row (``mean_pose``, ``source_only``): no trial, the values every trial is read against.
REFERENCE = "reference"
#: The reference lines, in the order the tables show them, with the words they are shown with.
REFERENCE_LINES = {"mean_pose": "mean pose (constant, no image)", "source_only": "source only (before adaptation)"}
#: The set's pre-filter score column (the score that ranked the sets), and target MPJPE: the default objective, the
#: error ``best_mpjpe`` tracks and the pre-filter check correlates with the score.
SCORE, OBJECTIVE = "set_score", "mpjpe"
#: The objective at a trial's first evaluation: the one fidelity every ended trial reached.
FIRST = "first_mpjpe"
#: How trial metrics appear as table columns (``nonlocalness`` is the ``set_score`` column).
METRIC_COLUMNS = {"nonlocalness": SCORE}


@dataclass(frozen=True)
class TrialRecord:
    """What the tables need from one trial, whichever Ray object it came from."""

    trial_id: str
    config: dict[str, Any]
    last: dict[str, Any]
    best_mpjpe: float
    error: str | None
    ended: bool
    #: The objective's value at the trial's first evaluation: every ended trial has one, whenever ASHA stopped it.
    first_mpjpe: float = np.nan


def _first_mpjpe(history: list[dict[str, Any]] | None) -> float:
    return float(history[0].get(OBJECTIVE, np.nan)) if history else np.nan


def record_from_trial(
    trial: Any, ended: bool = False, failed: bool = False, reports: TrialReports | None = None
) -> TrialRecord:
    """From a Tune ``Trial`` (callbacks see these while the search runs).  ``ended``/``failed``: what the
    callback was just told, which the trial's own status does not show yet; ``reports``: where an ended trial's
    history is (its first evaluation)."""
    error = None
    if failed or trial.status == "ERROR":
        error = first_error_line(trial.get_error() or "error (no message recorded yet; see the trial's error.txt)")
    analysis = (trial.metric_analysis or {}).get(OBJECTIVE, {})
    return TrialRecord(
        trial_id=trial.trial_id,
        config=dict(trial.config),
        last=dict(trial.last_result or {}),
        best_mpjpe=float(analysis.get("min", np.nan)),
        error=error,
        ended=ended or failed or trial.status in ("TERMINATED", "ERROR"),
        first_mpjpe=_first_mpjpe(reports.replay(trial.trial_id)) if reports is not None else np.nan,
    )


def record_from_result(result: Any, reports: TrialReports) -> TrialRecord:
    """From a ``ResultGrid`` entry (what ``Tuner.fit`` returns).  It has ended when it failed or when the live
    callback marked it done in ``reports``: a trial that was running when the search was interrupted has not."""
    metrics = dict(result.metrics or {})
    history = result.metrics_dataframe
    best = float(history[OBJECTIVE].min()) if history is not None and OBJECTIVE in history else np.nan
    error = None if result.error is None else first_error_line(f"{type(result.error).__name__}: {result.error}")
    trial_id = metrics.get("trial_id") or (Path(result.path).name if result.path else "")
    ended = error is not None or reports.ended(trial_id)
    first = (
        float(history[OBJECTIVE].iloc[0]) if history is not None and OBJECTIVE in history and len(history) else np.nan
    )
    return TrialRecord(trial_id, dict(result.config or {}), metrics, best, error, ended, first)


def ran_to_the_end(last: dict[str, Any], max_evaluations: int) -> bool:
    """Whether a trial whose last result is ``last`` adapted for all its planned steps (rather than being stopped
    early).  Counted in steps, not reports: a trial resumed from a checkpoint reports fewer times."""
    if last.get("planned_steps") is not None and last.get("step") is not None:
        return last["step"] >= last["planned_steps"]
    return int(last.get("training_iteration", 0) or 0) >= max_evaluations


def trial_row(
    record: TrialRecord, scores: dict[str, float], max_evaluations: int, attempts: int = 1, unended: str = RUNNING
) -> dict[str, Any]:
    """One table row; ``attempts``: how often the trial was started (1 + its retries); ``unended``: the status of
    a trial that has not ended (``running`` while the search runs, ``interrupted`` once it has returned)."""
    config = dict(record.config)
    label = config.pop(RELATIONS_KEY, "")
    last = record.last
    iterations = int(last.get("training_iteration", 0) or 0)
    if record.error is not None:
        status = ERROR
    elif not record.ended:
        status = unended
    else:
        status = FINISHED if ran_to_the_end(last, max_evaluations) else STOPPED
    row = {
        "trial_id": record.trial_id,
        "relation_set": label,
        "set_size": len(parse_set_label(label)) if label else 0,
        SCORE: scores.get(label, np.nan),
        "status": status,
        **{metric: last.get(metric, np.nan) for metric in ACCURACY_METRICS},
        "best_mpjpe": record.best_mpjpe,
        FIRST: record.first_mpjpe,
        "evaluations": iterations,
        "steps": last.get("step", np.nan),
        "time_s": last.get("time_total_s", np.nan),
        "device_seconds": last.get("device_seconds", np.nan),
        "checkpoint": last.get("checkpoint_path", ""),
        "attempts": attempts,
        "resumed_from_step": last.get("resumed_from_step", np.nan),
        "error": record.error or "",
    }
    row.update({f"param_{name}": value for name, value in config.items()})
    return row


def rejected_rows(decisions: list[SetDecision]) -> list[dict[str, Any]]:
    return [
        {"relation_set": d.label, "set_size": len(d.relations), SCORE: d.score, "status": REJECTED, "error": d.reason}
        for d in decisions
        if not d.kept
    ]


def reference_rows(references: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """One row per reference line, its name in ``trial_id``, so that ``trials.csv`` shows the lines beside the
    trials; every other trial column is empty."""
    return [
        {
            "trial_id": name,
            "relation_set": "",
            "set_size": 0,
            "status": REFERENCE,
            **{metric: references[name].get(metric, np.nan) for metric in ACCURACY_METRICS},
        }
        for name in REFERENCE_LINES
        if name in references
    ]
