"""Figures of a run, drawn with matplotlib's non-interactive backend."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from nlrd.atomic import write_atomic  # noqa: E402
from search.export import FINISHED, OBJECTIVE, REJECTED, SCORE, STOPPED  # noqa: E402


def _save(fig: plt.Figure, paths: Sequence[Path]) -> None:
    """Save ``fig`` once per path, in the format its suffix names (``.png``, ``.svg``)."""
    for path in paths:
        write_atomic(path, lambda tmp, path=path: fig.savefig(tmp, format=path.suffix.lstrip(".")))
    plt.close(fig)


def pareto_plot(
    table: pd.DataFrame, paths: Sequence[Path], source_only_mpjpe: float | None = None, title: str = ""
) -> None:
    """Non-localness score vs target MPJPE: the front highlighted, other trials grey, pre-filter rejects marked,
    and the unadapted source encoder's error as the line to beat."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    if source_only_mpjpe is not None:
        ax.axhline(source_only_mpjpe, c="tab:blue", ls="--", lw=1, label="source only (before adaptation)")
    finished = table[table["status"] == FINISHED]
    stopped = table[table["status"] == STOPPED]
    front = finished[finished["pareto"]].sort_values(SCORE)
    dominated = finished[~finished["pareto"]]
    ax.scatter(dominated[SCORE], dominated[OBJECTIVE], c="0.6", s=30, label="finished, dominated")
    ax.scatter(
        stopped[SCORE],
        stopped[OBJECTIVE],
        facecolors="none",
        edgecolors="0.6",
        s=30,
        label="stopped early by ASHA (last value)",
    )
    ax.step(front[SCORE], front[OBJECTIVE], where="post", c="tab:red", lw=1.2, alpha=0.7)
    ax.scatter(front[SCORE], front[OBJECTIVE], c="tab:red", s=50, zorder=3, label="Pareto front")
    for _, row in front.iterrows():
        ax.annotate(
            row["relation_set"],
            (row[SCORE], row[OBJECTIVE]),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=7,
            color="tab:red",
        )
    rejected = table[table["status"] == REJECTED]
    if len(rejected):
        ax.plot(
            rejected[SCORE],
            [0.0] * len(rejected),
            "x",
            c="0.3",
            ms=7,
            transform=ax.get_xaxis_transform(),
            clip_on=False,
            label="rejected by the pre-filter (not trained)",
        )
    ax.set_xlabel("relation-set non-localness score (normalised, higher = more non-local)")
    ax.set_ylabel("target MPJPE (mm, lower is better)")
    ax.set_title(title or "Non-localness vs target MPJPE")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    _save(fig, paths)


def prefilter_plot(table: pd.DataFrame, path: Path, correlation: dict[str, float] | None, title: str = "") -> None:
    """Set score vs trained target MPJPE of finished trials, with the rank correlations when there are enough
    trials to compute them: the picture of how well the pre-filter predicts training."""
    fig, ax = plt.subplots(figsize=(6.0, 4.2), dpi=120)
    finished = table[table["status"] == FINISHED]
    ax.scatter(finished[SCORE], finished[OBJECTIVE], c="tab:blue", s=30, label="finished trials")
    stopped = table[table["status"] == STOPPED]
    ax.scatter(stopped[SCORE], stopped[OBJECTIVE], facecolors="none", edgecolors="tab:blue", s=30, label="stopped")
    if correlation is not None:
        text = (
            f"Spearman {correlation['spearman']:+.2f} (p={correlation['spearman_p']:.2g})\n"
            f"Kendall {correlation['kendall']:+.2f} (p={correlation['kendall_p']:.2g})\n"
            f"n = {correlation['n']} finished trials"
        )
    else:
        text = "too few finished trials for rank correlations"
    ax.text(0.02, 0.98, text, transform=ax.transAxes, va="top", fontsize=8)
    ax.set_xlabel("relation-set non-localness score (pre-filter)")
    ax.set_ylabel("trained target MPJPE (mm)")
    ax.set_title(title or "Does the pre-filter predict training?")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    _save(fig, [path])
