"""The run directory's tables: one row per trial and per rejected relation set, the Pareto front, and the
files that let a user re-run the best configuration."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from nlrd.atomic import write_atomic, write_text_atomic
from nlrd.metrics import PROTOCOLS
from nlrd.quality import Bar, StageQuality, checked_figures
from nlrd.quality import warnings as quality_warnings
from nlrd.train.adapt import ENCODER_FILE, AdaptConfig
from search.prefilter import SetDecision, parse_set_label
from search.run_dir import RunDir
from search.space import ACCURACY_METRICS, ObjectiveSpec, SearchSpec
from search.space_spec import RATES_UNUSED_UNDER
from search.trials import (
    ERROR,
    FINISHED,
    FIRST,
    INTERRUPTED,
    METRIC_COLUMNS,
    OBJECTIVE,
    REFERENCE_LINES,
    REJECTED,
    SCORE,
    STOPPED,
)


def __getattr__(name: str) -> Any:
    """``search.export.LiveTables``, the callback's name before it moved to ``search.tuner``: the Tune state
    (``tune/tuner.pkl``) of runs started then names it, and ``--resume`` unpickles that.  Imported only then, so
    that writing tables does not need Ray."""
    if name == "LiveTables":
        from search.tuner import LiveTables

        return LiveTables
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def trials_table(
    rows: list[dict[str, Any]], relation_values: dict[str, float], objectives: Sequence[ObjectiveSpec]
) -> pd.DataFrame:
    """All rows, with each member relation's value of the score that ranked the sets (``relation_values``,
    ``search.prefilter.PrefilterRecord.relation_values``) as ``nl_<relation>`` columns and the Pareto front of
    ``objectives`` (one objective: set score vs that objective)."""
    table = pd.DataFrame(rows)
    for name, value in sorted(relation_values.items()):
        members = [parse_set_label(label) for label in table["relation_set"]]
        table[f"nl_{name}"] = [value if name in m else np.nan for m in members]
    table["pareto"] = pareto_mask(table, front_axes(objectives))
    return table


def plotted_objective(objectives: Sequence[ObjectiveSpec]) -> ObjectiveSpec:
    """The y axis of the Pareto plot (x: the set score): the single objective, whose front ``front_axes`` draws;
    target MPJPE when several objectives trade off (their front is marked on it) or the objective is the score."""
    if len(objectives) == 1 and objectives[0].metric != "nonlocalness":
        return objectives[0]
    return ObjectiveSpec(OBJECTIVE, "min")


def accuracy_text(metric: str, value: float) -> str:
    """``target PCK@150mm 85.3%``: an accuracy metric's value as the summary and the terminal write it."""
    name, unit = PROTOCOLS[metric].name, PROTOCOLS[metric].unit
    return f"target {name} {value:.1f}{unit if unit == '%' else ' ' + unit}"


def front_axes(objectives: Sequence[ObjectiveSpec]) -> dict[str, str]:
    """Column -> direction of the front: the objectives, or the set score vs the single objective."""
    if len(objectives) == 1:
        return {SCORE: "max", METRIC_COLUMNS.get(objectives[0].metric, objectives[0].metric): objectives[0].mode}
    return {METRIC_COLUMNS.get(o.metric, o.metric): o.mode for o in objectives}


def pareto_mask(table: pd.DataFrame, axes: dict[str, str] | None = None) -> np.ndarray:
    """Finished trials that no other finished trial beats on every axis (``axes``: column -> min|max)."""
    axes = axes or {SCORE: "max", OBJECTIVE: "min"}
    mask = np.zeros(len(table), dtype=bool)
    done = table.index[(table["status"] == FINISHED) & table[list(axes)].notna().all(axis=1)]
    # Flip maximised axes so that lower is better everywhere.
    values = np.stack([table.loc[done, c].to_numpy(float) * (-1 if m == "max" else 1) for c, m in axes.items()], 1)
    for i, row in enumerate(done):
        dominated = (values <= values[i]).all(axis=1) & (values < values[i]).any(axis=1)
        mask[table.index.get_loc(row)] = not dominated.any()
    return mask


def write_trials(run_dir: RunDir, table: pd.DataFrame) -> None:
    """``trials.csv`` and ``trials.parquet``."""
    write_atomic(run_dir.trials_csv, lambda p: table.to_csv(p, index=False))
    write_atomic(run_dir.trials_parquet, lambda p: table.to_parquet(p, index=False))


def write_tables(
    run_dir: RunDir,
    table: pd.DataFrame,
    decisions: list[SetDecision],
    score_name: str,
    references: dict[str, dict[str, float]],
    objectives: Sequence[ObjectiveSpec],
    optuna_front: list[dict[str, Any]] | None = None,
) -> None:
    """``trials.csv``, ``trials.parquet``, ``prefilter.csv`` and ``pareto.json`` in ``run_dir``.

    ``score_name``: what ranked the sets (``search.prefilter.score_label``), ``prefilter.csv``'s ``ranked_by``.
    ``references``: the reference lines' target metrics (``mean_pose``, ``source_only``), recorded beside the front
    (``table`` holds them as rows already).
    ``optuna_front``: for multi-objective runs, the study's own Pareto front (``study.best_trials``).
    """
    write_trials(run_dir, table)
    prefilter = pd.DataFrame(
        [
            {"relation_set": d.label, SCORE: d.score, "ranked_by": score_name, "kept": d.kept, "reason": d.reason}
            for d in decisions
        ]
    )
    write_atomic(run_dir.prefilter_csv, lambda p: prefilter.to_csv(p, index=False))
    axes = front_axes(objectives)
    front = table[table["pareto"]].sort_values(list(axes)[0])
    payload: dict[str, Any] = {
        "axes": axes,
        **{name: references[name] for name in REFERENCE_LINES if name in references},
        "front": json.loads(front.to_json(orient="records")),
    }
    if optuna_front is not None:
        payload["optuna_front"] = optuna_front
    write_text_atomic(run_dir.pareto_json, json.dumps(payload, indent=2))


def best_row(table: pd.DataFrame, objective: ObjectiveSpec) -> pd.Series | None:
    """The finished trial best on the first objective (ties: the earlier trial), or None."""
    column = METRIC_COLUMNS.get(objective.metric, objective.metric)
    done = table[(table["status"] == FINISHED) & table[column].notna()]
    if done.empty:
        return None
    return done.loc[done[column].idxmax() if objective.mode == "max" else done[column].idxmin()]


def best_space(spec: SearchSpec, row: pd.Series) -> dict[str, Any]:
    """A space that re-runs ``row``'s configuration once: its relation set and every knob fixed."""
    raw = json.loads(json.dumps(spec.raw, default=str))
    relations = parse_set_label(row["relation_set"])
    sampled = {p.name: _plain(row[f"param_{p.name}"]) for p in spec.params}
    raw["name"] = f"{spec.name}-best"
    raw["relations"] = {"candidates": list(relations), "min_set_size": len(relations), "max_set_size": len(relations)}
    raw["prefilter"] = {"enabled": False}
    raw["searcher"] = {**raw.get("searcher", {}), "num_trials": 1, "max_concurrent": 1}
    raw["scheduler"] = {"type": "none"}
    adapt = {**raw.get("adapt", {}), **sampled}
    schedule = adapt.get("schedule", AdaptConfig.schedule)
    # A space that tunes the schedule samples both schedules' rates; the one chosen ignores the other's.
    raw["adapt"] = {k: v for k, v in adapt.items() if k not in RATES_UNUSED_UNDER.get(schedule, ()) or k not in sampled}
    raw.pop("params", None)
    return raw


def _plain(value: Any) -> Any:
    """numpy scalars -> Python values, so the YAML stays plain."""
    return value.item() if isinstance(value, np.generic) else value


def _short(value: Any) -> str:
    """A knob's value for prose: three significant digits for a float (``best.yaml`` keeps every digit)."""
    value = _plain(value)
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def write_best(run_dir: RunDir, spec: SearchSpec, table: pd.DataFrame) -> pd.Series | None:
    """``best.yaml`` (re-run with ``search/run.py --space``) and ``best_encoder.pt`` (the adapted encoder's
    state dict, from the trial's last checkpoint); returns the best row, or None when no trial finished."""
    row = best_row(table, spec.objective)
    if row is None:
        return None
    header = f"# Best trial {row['trial_id']} of {spec.name}: re-run with  python search/run.py --space <this file>\n"
    text = header + yaml.safe_dump(best_space(spec, row), sort_keys=False)
    write_text_atomic(run_dir.best_yaml, text)
    checkpoint = Path(str(row.get("checkpoint") or "")) / ENCODER_FILE
    if checkpoint.is_file():
        write_atomic(run_dir.best_encoder, lambda p: shutil.copyfile(checkpoint, p))
    return row


#: Fewest finished trials for which rank correlations are reported.
MIN_CORRELATION_TRIALS = 4


def prefilter_correlation(table: pd.DataFrame) -> dict[str, Any] | None:
    """Spearman and Kendall rank correlation between set score and trained MPJPE (negative = higher-scoring sets
    trained to lower error): over the finished trials' final MPJPE when at least ``MIN_CORRELATION_TRIALS`` finished,
    else over every ended trial's MPJPE at its first evaluation (one fidelity that stopped trials reached too, so a
    small search with ASHA still gets its check); None with too few trials or no spread.  ``basis`` says which.
    ``set_size_spearman``: the same for the sets' sizes, the baseline a score has to beat (None when every trial's
    set has one size)."""
    from scipy import stats

    bases = [
        ("final MPJPE of the finished trials", table["status"] == FINISHED, OBJECTIVE),
        ("MPJPE at the first evaluation of every ended trial", table["status"].isin([FINISHED, STOPPED]), FIRST),
    ]
    for basis, rows, column in bases:
        if column not in table:
            continue
        done = table[rows & table[column].notna()]
        if len(done) >= MIN_CORRELATION_TRIALS and done[SCORE].nunique() > 1 and done[column].nunique() > 1:
            spearman = stats.spearmanr(done[SCORE], done[column])
            kendall = stats.kendalltau(done[SCORE], done[column])
            sized = "set_size" in done and done["set_size"].nunique() > 1
            size = stats.spearmanr(done["set_size"], done[column]) if sized else None
            return {
                "n": len(done),
                "basis": basis,
                "column": column,
                "spearman": float(spearman.statistic),
                "spearman_p": float(spearman.pvalue),
                "kendall": float(kendall.statistic),
                "kendall_p": float(kendall.pvalue),
                "set_size_spearman": float(size.statistic) if size is not None else None,
                "set_size_spearman_p": float(size.pvalue) if size is not None else None,
            }
    return None


def set_size_baseline(correlation: dict[str, Any]) -> str:
    """The set-size baseline beside a pre-filter check: a score that ranks no better than the sets' sizes buys
    nothing a user could not get by counting relations."""
    if correlation.get("set_size_spearman") is None:
        return "Set size, the baseline: one size among these trials, no ranking."
    return (
        f"Set size, the baseline: Spearman {correlation['set_size_spearman']:+.2f} "
        f"(p={correlation['set_size_spearman_p']:.2g}) with the same MPJPE."
    )


def _objective_text(metric: str, values: dict[str, float] | pd.Series) -> str:
    """``, target PCK@150mm 85.3%``: the objective's value where the summary would not show it otherwise."""
    if metric in ("mpjpe", "pa_mpjpe") or metric not in ACCURACY_METRICS or metric not in values:
        return ""
    return f", {accuracy_text(metric, values[metric])}"


def unended_trials(spec: SearchSpec, table: pd.DataFrame) -> int:
    """Trials of the budget that have not ended (interrupted, or never started because the search was stopped)."""
    return spec.searcher.num_trials - int(table["status"].isin([FINISHED, STOPPED, ERROR]).sum())


def _unended_text(spec: SearchSpec, table: pd.DataFrame) -> str:
    return (
        f"The search was interrupted with {unended_trials(spec, table)} of its {spec.searcher.num_trials} trials not"
        " ended; `python search/run.py --resume <this directory>` continues it."
    )


def write_stage_quality(run_dir: RunDir, quality: StageQuality, references: dict[str, dict[str, float]]) -> None:
    """``stage_quality.json``: the stage-quality figures, the bars they missed and the reference lines."""
    payload = {"quality": quality.as_dict(), "warnings": quality_warnings(quality), "references": references}
    write_text_atomic(run_dir.stage_quality_json, json.dumps(payload, indent=2))


def _quality_section(quality: StageQuality) -> list[str]:
    """The stage-quality figures against their bars; a missed bar is a loud line naming the knob to raise."""

    def fitted(bar: Bar) -> str:
        value = bar.fitted_value(quality)
        return "" if value is None else f"{value:.2f}"

    lines = [
        "Stage quality (each stage on data it did not train on, and on the mocap it trained on where it has one; "
        "`stage_quality.json`):",
        "",
        "| figure | value | on its training mocap | bar |",
        "|---|---|---|---|",
        *(
            f"| {label} | {value:.2f}{'' if value <= bar.limit else ' **missed**'} | {fitted(bar)} | "
            f"at most {bar.limit:g} |"
            for label, value, bar in checked_figures(quality)
        ),
        "",
    ]
    missed = quality_warnings(quality)
    if missed:
        lines += ["**Warning: stages below their bars; results on them understate or misstate the method.**", ""]
        lines += [f"- {line}" for line in missed] + [""]
    return lines


def _reference_table(references: dict[str, dict[str, float]], best: pd.Series | None, metric: str) -> list[str]:
    """The reference lines and the best trial side by side, each with its change against source only: a result
    is read against the mean pose (what no image gives) and source only (what adaptation must beat)."""
    columns = ["mpjpe", "pa_mpjpe"]
    if metric in ACCURACY_METRICS and metric not in columns:
        columns.append(metric)
    rows = [(name, words, references[name]) for name, words in REFERENCE_LINES.items() if name in references]
    if best is not None:
        rows.append(("best", f"best trial `{best['trial_id']}`", best))
    source = references.get("source_only", {})

    def cell(name: str, column: str, values: dict[str, float] | pd.Series) -> str:
        value = float(values.get(column, np.nan))
        if name == "source_only" or not source.get(column) or not np.isfinite(value):
            return f"{value:.1f}"
        return f"{value:.1f} ({100 * (value / source[column] - 1):+.1f}% vs source only)"

    header = " | ".join(f"target {PROTOCOLS[c].name} ({PROTOCOLS[c].unit})" for c in columns)
    return [
        "Reference lines (target validation):",
        "",
        f"| | {header} |",
        "|---" * (len(columns) + 1) + "|",
        *(f"| {words} | {' | '.join(cell(name, c, values) for c in columns)} |" for name, words, values in rows),
    ]


def write_summary(
    run_dir: RunDir,
    spec: SearchSpec,
    table: pd.DataFrame,
    references: dict[str, dict[str, float]],
    correlation: dict[str, float] | None,
    best: pd.Series | None,
    elapsed_s: float,
    quality: StageQuality | None = None,
    score_name: str = "set score",
) -> None:
    """``summary.md``: what ran, what came out, where the files are.  ``score_name``: what ranked the sets
    (``search.prefilter.score_label``)."""
    counts = table["status"].value_counts()
    metric = spec.objective.metric
    lines = [
        f"# Search `{spec.name}`",
        "",
        f"Space: `{spec.path}` (digest `{spec.digest}`); searcher {spec.searcher.algorithm}, "
        f"scheduler {spec.scheduler.type}; objectives: "
        + ", ".join(f"{o.metric} ({o.mode})" for o in spec.objectives)
        + f"; wall time of the last session {elapsed_s:.0f} s.",
        "",
        "| status | count |",
        "|---|---|",
        *(f"| {status} | {counts.get(status, 0)} |" for status in (FINISHED, STOPPED, ERROR, REJECTED)),
        *([f"| {INTERRUPTED} | {counts[INTERRUPTED]} |"] if counts.get(INTERRUPTED) else []),
        "",
        *([_unended_text(spec, table), ""] if unended_trials(spec, table) else []),
        *_reference_table(references, best, metric),
        "",
        *(_quality_section(quality) if quality is not None else []),
    ]
    if best is None:
        lines.append("No trial finished, so there is no best configuration.")
    else:
        knobs = ", ".join(f"{c[6:]}={_short(best[c])}" for c in table.columns if c.startswith("param_"))
        lines += [
            f"Best trial `{best['trial_id']}` ({spec.objective.metric}, {spec.objective.mode}): relation set "
            f"`{best['relation_set']}` ({score_name} {best[SCORE]:.3f}){', ' + knobs if knobs else ''}: target MPJPE "
            f"{best['mpjpe']:.1f} mm, PA-MPJPE {best['pa_mpjpe']:.1f} mm{_objective_text(metric, best)}. Re-run it "
            f"with `python search/run.py --space {run_dir.best_yaml.name}`; its adapted encoder is "
            f"`{run_dir.best_encoder.name}`.",
        ]
    lines.append("")
    if correlation is None:
        lines.append(
            f"Pre-filter check of the {score_name}: fewer than {MIN_CORRELATION_TRIALS} ended trials with distinct "
            "values."
        )
    else:
        lines.append(
            f"Pre-filter check over {correlation['n']} trials ({correlation['basis']}): Spearman "
            f"{correlation['spearman']:+.2f} "
            f"(p={correlation['spearman_p']:.2g}), Kendall {correlation['kendall']:+.2f} "
            f"(p={correlation['kendall_p']:.2g}) between the {score_name} and trained MPJPE (negative: "
            f"higher-scoring sets trained to lower error). {set_size_baseline(correlation)}"
        )
    lines += [
        "",
        f"Files: `{run_dir.trials_csv.name}`/`{run_dir.trials_parquet.name}` (every trial, rejected set and "
        "reference line), "
        f"`{run_dir.prefilter_csv.name}`, `{run_dir.stage_quality_json.name}`, `{run_dir.pareto_json.name}`, "
        f"`{run_dir.pareto_png.name}`/"
        f"`{run_dir.pareto_svg.name}`, `{run_dir.prefilter_png.name}`, `{run_dir.best_yaml.name}`, "
        f"`{run_dir.best_encoder.name}`, `{run_dir.study_log.name}` (the Optuna study: `optuna.load_study(storage="
        "optuna.storages.JournalStorage(optuna.storages.journal."
        f"JournalFileBackend('{run_dir.study_log.name}')), study_name=...)`).",
        "",
    ]
    write_text_atomic(run_dir.summary_md, "\n".join(lines))
