"""Figures of a run, drawn with matplotlib's non-interactive backend."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from nlrd.atomic import write_atomic  # noqa: E402
from nlrd.metrics import PROTOCOLS  # noqa: E402
from search.export import set_size_baseline  # noqa: E402
from search.space import ObjectiveSpec  # noqa: E402
from search.trials import FINISHED, METRIC_COLUMNS, OBJECTIVE, REFERENCE_LINES, REJECTED, SCORE, STOPPED  # noqa: E402

#: Characters per line of the pre-filter plot's title at its font size: what its 6-inch width holds.
TITLE_CHARS = 70
#: How each reference line is drawn across the Pareto plot.
REFERENCE_STYLES = {"mean_pose": {"c": "0.35", "ls": ":"}, "source_only": {"c": "tab:blue", "ls": "--"}}


def _legend_below(ax: plt.Axes) -> None:
    """The legend under the axes, outside the data, so it never covers the best points."""
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)


def _save(fig: plt.Figure, paths: Sequence[Path]) -> None:
    """Save ``fig`` once per path, in the format its suffix names (``.png``, ``.svg``)."""
    for path in paths:
        write_atomic(path, lambda tmp, path=path: fig.savefig(tmp, format=path.suffix.lstrip(".")))
    plt.close(fig)


def metric_subject(metric: str) -> str:
    """How titles name a metric: ``target PCK@150mm`` for the accuracy metrics, else the metric's key."""
    return f"target {PROTOCOLS[metric].name}" if metric in PROTOCOLS else metric


def axis_label(objective: ObjectiveSpec) -> str:
    """What an objective's axis shows, unit and better direction, e.g. ``target PCK@150mm (%, higher is better)``."""
    unit = f"{PROTOCOLS[objective.metric].unit}, " if objective.metric in PROTOCOLS else ""
    better = "higher" if objective.mode == "max" else "lower"
    return f"{metric_subject(objective.metric)} ({unit}{better} is better)"


def pareto_plot(
    table: pd.DataFrame,
    paths: Sequence[Path],
    references: dict[str, dict[str, float]] | None = None,
    title: str = "",
    objective: ObjectiveSpec | None = None,
    score_name: str = "set score",
) -> None:
    """Set score (``score_name``: what ranked the sets) vs ``objective`` (default: target MPJPE): the front
    highlighted, other trials grey, pre-filter rejects marked, and the reference lines' values of that metric
    (``references``: ``mean_pose``, ``source_only``, where they have it) drawn across: the mean pose is what no image
    gives, source only the line adaptation must beat."""
    objective = objective or ObjectiveSpec(OBJECTIVE, "min")
    y = METRIC_COLUMNS.get(objective.metric, objective.metric)
    fig, ax = plt.subplots(figsize=(6.4, 5.2), dpi=120)
    for name, words in REFERENCE_LINES.items():
        value = (references or {}).get(name, {}).get(objective.metric)
        if value is not None:
            ax.axhline(value, lw=1, label=words, **REFERENCE_STYLES[name])
    finished = table[table["status"] == FINISHED]
    stopped = table[table["status"] == STOPPED]
    front = finished[finished["pareto"]].sort_values(SCORE)
    dominated = finished[~finished["pareto"]]
    ax.scatter(dominated[SCORE], dominated[y], c="0.6", s=30, label="finished, dominated")
    ax.scatter(
        stopped[SCORE],
        stopped[y],
        facecolors="none",
        edgecolors="0.6",
        s=30,
        label="stopped early by ASHA (last value)",
    )
    ax.step(front[SCORE], front[y], where="post", c="tab:red", lw=1.2, alpha=0.7)
    ax.scatter(front[SCORE], front[y], c="tab:red", s=50, zorder=3, label="Pareto front")
    for _, row in front.iterrows():
        ax.annotate(
            row["relation_set"],
            (row[SCORE], row[y]),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=7,
            color="tab:red",
        )
    rejected = table[table["status"] == REJECTED]
    if len(rejected):
        # Above the plotting area, at their scores: they have no error, so nothing may read them as results.
        ax.plot(
            rejected[SCORE],
            [1.03] * len(rejected),
            "|",
            c="0.3",
            ms=9,
            transform=ax.get_xaxis_transform(),
            clip_on=False,
            label="rejected by the pre-filter (not trained; marked above the plot at its score)",
        )
    ax.set_xlabel(f"relation-{score_name} (pre-filter; higher ranks first)")
    ax.set_ylabel(axis_label(objective))
    ax.set_title(title or f"Pre-filter {score_name} vs {metric_subject(objective.metric)}", pad=14)
    ax.grid(alpha=0.3)
    _legend_below(ax)
    fig.tight_layout()
    _save(fig, paths)


def prefilter_plot(
    table: pd.DataFrame,
    path: Path,
    correlation: dict[str, float] | None,
    title: str = "",
    score_name: str = "set score",
) -> None:
    """Set score (``score_name``: what ranked the sets) vs trained target MPJPE of finished trials, with the rank
    correlations when there are enough trials to compute them: the picture of how well the pre-filter predicts
    training."""
    fig, ax = plt.subplots(figsize=(6.0, 4.9), dpi=120)
    y = correlation["column"] if correlation is not None else OBJECTIVE  # what the correlations were computed on
    finished = table[table["status"] == FINISHED]
    ax.scatter(finished[SCORE], finished[y], c="tab:blue", s=30, label="finished trials")
    stopped = table[table["status"] == STOPPED]
    ax.scatter(stopped[SCORE], stopped[y], facecolors="none", edgecolors="tab:blue", s=30, label="stopped")
    if correlation is not None:
        text = (
            f"Spearman {correlation['spearman']:+.2f} (p={correlation['spearman_p']:.2g}), "
            f"Kendall {correlation['kendall']:+.2f} (p={correlation['kendall_p']:.2g}), "
            f"n = {correlation['n']} trials, {correlation['basis']}\n{set_size_baseline(correlation)}"
        )
    else:
        text = "too few finished trials for rank correlations"
    ax.set_xlabel(f"relation-{score_name} (pre-filter)")
    ax.set_ylabel("trained target MPJPE (mm)" if y == OBJECTIVE else "target MPJPE at the first evaluation (mm)")
    # The correlations under the title, outside the data (a text box inside covered points), wrapped to the figure's
    # width (a long line was cut at both edges).
    lines = [wrapped for line in text.split("\n") for wrapped in textwrap.wrap(line, TITLE_CHARS)]
    ax.set_title("\n".join([title or "Does the pre-filter predict training?", *lines]), fontsize=10)
    ax.grid(alpha=0.3)
    _legend_below(ax)
    fig.tight_layout()
    _save(fig, [path])
