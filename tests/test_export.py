from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from nlrd.quality import StageQuality
from search import plots
from search.errors import first_error_line
from search.export import (
    best_row,
    best_space,
    front_axes,
    pareto_mask,
    plotted_objective,
    prefilter_correlation,
    set_size_baseline,
    trials_table,
    write_summary,
    write_tables,
)
from search.plots import pareto_plot, prefilter_plot
from search.prefilter import SetDecision
from search.run_dir import RunDir
from search.space import ACCURACY_METRICS, ObjectiveSpec, parse_space
from search.trainable import RELATIONS_KEY
from search.trials import FINISHED, REFERENCE, REJECTED, STOPPED, TrialRecord, reference_rows, trial_row
from tests.conftest import TINY_SPACE

MPJPE = (ObjectiveSpec("mpjpe", "min"),)
PCK = (ObjectiveSpec("pck150", "max"),)


def _table() -> pd.DataFrame:
    rows = [
        ("a", 0.9, FINISHED, 120.0),  # front: most non-local
        ("b", 0.5, FINISHED, 100.0),  # front: lowest error
        ("c", 0.4, FINISHED, 130.0),  # dominated by a and b
        ("d", 0.95, STOPPED, 90.0),  # stopped early: never on the front
        ("e", 0.1, REJECTED, np.nan),
        ("f", 0.9, FINISHED, 125.0),  # same score as a, worse error: dominated
    ]
    return pd.DataFrame(rows, columns=["relation_set", "set_score", "status", "mpjpe"])


def test_pareto_front_of_finished_trials():
    assert pareto_mask(_table()).tolist() == [True, True, False, False, False, False]


def test_multi_objective_front_uses_the_objectives():
    table = _table()
    table["device_seconds"] = [10.0, 50.0, 5.0, 1.0, np.nan, 20.0]
    axes = front_axes((ObjectiveSpec("mpjpe", "min"), ObjectiveSpec("device_seconds", "min")))
    assert axes == {"mpjpe": "min", "device_seconds": "min"}
    # a (120 mm, 10 s) and b (100 mm, 50 s) and c (130 mm, 5 s) trade off; f (125, 20) is beaten by a.
    assert pareto_mask(table, axes).tolist() == [True, True, True, False, False, False]
    assert front_axes((ObjectiveSpec("mpjpe", "min"), ObjectiveSpec("nonlocalness", "max"))) == {
        "mpjpe": "min",
        "set_score": "max",
    }


def test_a_row_carries_every_reported_accuracy_metric():
    last = {"mpjpe": 120.0, "pa_mpjpe": 90.0, "pck150": 61.5, "auc": 30.2, "step": 6, "planned_steps": 6}
    record = TrialRecord("t1", {RELATIONS_KEY: "flip", "tau": 0.1}, last, 110.0, None, ended=True)
    row = trial_row(record, {"flip": 0.7}, max_evaluations=3)
    assert row["status"] == FINISHED and row["pck150"] == 61.5 and row["auc"] == 30.2
    assert np.isnan(row["mpjpe_gtbone"]) and np.isnan(row["auc_gtbone"])  # not reported: NaN, column still there
    columns = list(row)
    assert columns[columns.index("mpjpe") :][: len(ACCURACY_METRICS) + 1] == [*ACCURACY_METRICS, "best_mpjpe"]


def _pck_table() -> pd.DataFrame:
    """``_table`` with PCK@150mm, higher better: a (0.9, 60%) and b (0.5, 70%) trade off, c (0.4, 55%) is beaten."""
    table = _table()
    table["pck150"] = [60.0, 70.0, 55.0, 80.0, np.nan, 58.0]
    table["mpjpe"] = [100.0, 130.0, 90.0, 80.0, np.nan, 95.0]  # MPJPE alone would pick other trials
    table["pa_mpjpe"] = table["mpjpe"] * 0.8
    return table


def test_front_and_best_follow_a_maximised_objective():
    table = _pck_table()
    axes = front_axes(PCK)
    assert axes == {"set_score": "max", "pck150": "max"}
    assert pareto_mask(table, axes).tolist() == [True, True, False, False, False, False]
    assert best_row(table, PCK[0])["relation_set"] == "b"
    assert best_row(table, MPJPE[0])["relation_set"] == "c"


def test_pareto_plot_follows_the_single_objective(tmp_path, monkeypatch):
    drawn = {}

    def keep(fig, paths):
        ax = fig.axes[0]
        baseline = [line.get_ydata()[0] for line in ax.get_lines() if line.get_linestyle() == "--"]
        mean_pose = [line.get_ydata()[0] for line in ax.get_lines() if line.get_linestyle() == ":"]
        drawn.update(ylabel=ax.get_ylabel(), title=ax.get_title(), baseline=baseline, mean_pose=mean_pose)
        plots.plt.close(fig)

    monkeypatch.setattr(plots, "_save", keep)
    table = _pck_table()
    table["pareto"] = pareto_mask(table, front_axes(PCK))
    references = {
        "source_only": {"mpjpe": 150.0, "pa_mpjpe": 120.0, "pck150": 52.0},
        "mean_pose": {"mpjpe": 240.0, "pa_mpjpe": 170.0, "pck150": 20.0},
    }
    pareto_plot(table, [tmp_path / "pareto.png"], references, objective=plotted_objective(PCK))
    assert drawn == {
        "ylabel": "target PCK@150mm (%, higher is better)",
        "title": "Pre-filter set score vs target PCK@150mm",
        "baseline": [52.0],
        "mean_pose": [20.0],
    }
    table["auc"] = table["pck150"] / 2
    pareto_plot(
        table, [tmp_path / "pareto.png"], {"source_only": {"mpjpe": 150.0}}, objective=ObjectiveSpec("auc", "max")
    )
    assert drawn["ylabel"] == "target AUC (%, higher is better)" and drawn["baseline"] == []  # no source-only AUC
    pareto_plot(table, [tmp_path / "pareto.png"], references)
    assert drawn["ylabel"] == "target MPJPE (mm, lower is better)"
    assert drawn["baseline"] == [150.0] and drawn["mean_pose"] == [240.0]


def test_several_objectives_are_plotted_over_mpjpe():
    assert plotted_objective((ObjectiveSpec("pck150", "max"), ObjectiveSpec("device_seconds", "min"))) == MPJPE[0]
    assert plotted_objective((ObjectiveSpec("nonlocalness", "max"),)) == MPJPE[0]
    assert plotted_objective((ObjectiveSpec("device_seconds", "min"),)) == ObjectiveSpec("device_seconds", "min")


def test_summary_names_the_best_trial_by_its_objective(tmp_path):
    spec = parse_space({**TINY_SPACE, "objectives": [{"metric": "pck150"}]}, "tiny.yaml")
    table = _pck_table()
    best = best_row(table, spec.objective)
    best["trial_id"] = "t2"
    references = {
        "source_only": {"mpjpe": 150.0, "pa_mpjpe": 120.0, "pck150": 52.0},
        "mean_pose": {"mpjpe": 240.0, "pa_mpjpe": 180.0, "pck150": 20.0},
    }
    write_summary(RunDir(tmp_path), spec, table, references, None, best, 1.0)
    text = (tmp_path / "summary.md").read_text()
    assert "objectives: pck150 (max)" in text
    assert "| target MPJPE (mm) | target PA-MPJPE (mm) | target PCK@150mm (%) |" in text
    assert "| mean pose (constant, no image) | 240.0 (+60.0% vs source only) | 180.0 (+50.0% vs source only) |" in text
    assert "| source only (before adaptation) | 150.0 | 120.0 | 52.0 |" in text
    assert "Best trial `t2` (pck150, max): relation set `b`" in text and "target PCK@150mm 70.0%" in text


def test_summary_gives_the_best_trials_knobs_in_three_digits(tmp_path):
    spec = parse_space(TINY_SPACE, "tiny.yaml")
    table = _pck_table()
    table["param_lr_nonlocal"] = np.float64(0.00027592052977704)
    table["param_tau"] = 0.07
    best = best_row(table, spec.objective)
    best["trial_id"] = "t3"
    references = {"source_only": {"mpjpe": 150.0, "pa_mpjpe": 120.0}, "mean_pose": {"mpjpe": 240.0, "pa_mpjpe": 180.0}}
    write_summary(RunDir(tmp_path), spec, table, references, None, best, 1.0)
    assert "lr_nonlocal=0.000276, tau=0.07:" in (tmp_path / "summary.md").read_text()


def test_summary_shows_each_stage_figure_beside_its_training_figure_and_the_advice(tmp_path):
    spec = parse_space(TINY_SPACE, "tiny.yaml")
    quality = StageQuality(
        prior_mm=78.0,
        motion_mm=45.0,
        relations={"flip": 0.66},
        prior_train_mm=55.6,
        motion_train_mm=44.9,
        relations_train={"flip": 0.13},
    )
    write_summary(RunDir(tmp_path), spec, _pck_table(), {}, None, None, 1.0, quality)
    text = (tmp_path / "summary.md").read_text()
    assert "| figure | value | on its training mocap | bar |" in text
    assert "| pose prior reconstruction of held-out mocap (mm) | 78.00 **missed** | 55.60 | at most 40 |" in text
    assert "| motion embedding reconstruction of held-out clips (mm) | 45.00 | 44.90 | at most 60 |" in text
    assert "as a fraction of the identity gap | 0.66 **missed** | 0.13 | at most 0.2 |" in text
    assert "give it more, or more varied, mocap" in text


def test_first_error_line_finds_the_innermost_error():
    trace = (
        "Traceback (most recent call last):\n  File x\nray.train.TrainingFailedError: Training failed\n"
        "Traceback:\n  File y\nFloatingPointError: non-finite loss nan in lcr at step 3\n"
    )
    assert first_error_line(trace) == "FloatingPointError: non-finite loss nan in lcr at step 3"
    assert first_error_line("just text") == "just text"


def test_prefilter_correlation_needs_enough_trials_and_finds_the_sign():
    table = _table()
    assert prefilter_correlation(table.iloc[:3]) is None  # three finished trials are too few
    table.loc[len(table)] = ["g", 0.2, FINISHED, 140.0]
    corr = prefilter_correlation(table)
    assert corr["n"] == 5 and corr["spearman"] < 0 and corr["kendall"] < 0
    assert corr["basis"] == "final MPJPE of the finished trials"
    assert corr["set_size_spearman"] is None  # the table has no sizes: no baseline
    table["set_size"] = [1, 2, 1, 2, 0, 1, 2]  # the rejected set (no MPJPE) is left out
    corr = prefilter_correlation(table)
    ranks = table[table["status"] == FINISHED]
    assert corr["set_size_spearman"] == pytest.approx(stats.spearmanr(ranks["set_size"], ranks["mpjpe"]).statistic)
    assert set_size_baseline(corr).startswith(f"Set size, the baseline: Spearman {corr['set_size_spearman']:+.2f}")


def test_with_few_finished_trials_the_check_reads_every_ended_trial_at_its_first_evaluation():
    """A small search with ASHA finishes few trials; every ended trial has its first evaluation, one fidelity."""
    table = _table()
    table["first_mpjpe"] = [150.0, 140.0, 160.0, 130.0, np.nan, 150.5]
    table.loc[table["relation_set"].isin(["c", "f"]), "status"] = STOPPED  # two finished left: too few
    corr = prefilter_correlation(table)
    assert corr["basis"] == "MPJPE at the first evaluation of every ended trial" and corr["column"] == "first_mpjpe"
    assert corr["n"] == 5 and corr["spearman"] < 0  # a, b, c, d, f; the rejected set has no evaluation
    assert prefilter_correlation(table.drop(columns="first_mpjpe")) is None


def test_best_space_fixes_the_best_configuration_and_parses():
    spec = parse_space(TINY_SPACE, "tiny.yaml")
    row = pd.Series({"relation_set": "flip+flip_backward", "param_lr_nonlocal": np.float64(3e-4), "param_tau": 0.1})
    raw = best_space(spec, row)
    again = parse_space(raw, "best.yaml")
    assert again.relations.sets() == [("flip", "flip_backward")]
    assert again.params == () and again.adapt["lr_nonlocal"] == 3e-4 and again.adapt["tau"] == 0.1
    assert again.searcher.num_trials == 1 and again.scheduler.type == "none" and not again.prefilter.enabled


def test_tables_and_plot_are_written(tmp_path):
    table = _table()
    table["pareto"] = pareto_mask(table)
    decisions = [SetDecision(("a",), 0.9, True, "kept"), SetDecision(("e",), 0.1, False, "score below")]
    references = {"source_only": {"mpjpe": 150.0, "pa_mpjpe": 120.0}, "mean_pose": {"mpjpe": 240.0}}
    ranked_by = "set score (latent_in_support, max)"
    write_tables(RunDir(tmp_path), table, decisions, ranked_by, references, MPJPE)
    pareto_plot(table, [tmp_path / "pareto.png", tmp_path / "pareto.svg"], references)
    prefilter_plot(table, tmp_path / "prefilter.png", prefilter_correlation(table))
    spec = parse_space(TINY_SPACE, "tiny.yaml")
    write_summary(RunDir(tmp_path), spec, table, references, None, None, 12.0, score_name=ranked_by)
    summary = (tmp_path / "summary.md").read_text()
    assert "No trial finished" in summary and f"Pre-filter check of the {ranked_by}: fewer than" in summary
    prefilter = pd.read_csv(tmp_path / "prefilter.csv")
    assert prefilter["ranked_by"].tolist() == [ranked_by] * 2 and prefilter["set_score"].tolist() == [0.9, 0.1]
    assert (tmp_path / "pareto.svg").read_text().lstrip().startswith("<?xml")
    assert (tmp_path / "prefilter.png").read_bytes()[:4] == b"\x89PNG"
    assert pd.read_csv(tmp_path / "trials.csv")["relation_set"].tolist() == list("abcdef")
    assert pd.read_parquet(tmp_path / "trials.parquet").shape == table.shape
    pareto = json.loads((tmp_path / "pareto.json").read_text())
    assert pareto["source_only"] == {"mpjpe": 150.0, "pa_mpjpe": 120.0} and pareto["mean_pose"] == {"mpjpe": 240.0}
    front = pareto["front"]
    assert [p["relation_set"] for p in front] == ["b", "a"]
    assert (tmp_path / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*.tmp"))


def test_reference_lines_are_rows_of_the_table_but_never_results():
    """``trials.csv`` shows the mean pose and source only beside the trials; a line better than every trial is
    still neither on the front nor the best trial."""
    references = {"source_only": {"mpjpe": 80.0, "pa_mpjpe": 60.0}, "mean_pose": {"mpjpe": 240.0, "pa_mpjpe": 170.0}}
    rows = reference_rows(references)
    assert [r["trial_id"] for r in rows] == ["mean_pose", "source_only"]
    assert all(r["status"] == REFERENCE for r in rows) and rows[1]["mpjpe"] == 80.0
    table = trials_table(_table().to_dict("records") + rows, {}, MPJPE)
    assert table["pareto"].tolist() == [True, True, False, False, False, False, False, False]
    assert best_row(table, MPJPE[0])["relation_set"] == "b"


def test_relation_columns_hold_each_member_value_of_the_ranking_score():
    rows = [
        {"relation_set": "flip", "set_score": 0.8, "status": FINISHED, "mpjpe": 100.0},
        {"relation_set": "flip+inplane30", "set_score": 0.8, "status": REJECTED, "mpjpe": np.nan},
    ]
    table = trials_table(rows, {"flip": 0.8, "inplane30": 0.15}, MPJPE)
    assert table["nl_flip"].tolist() == [0.8, 0.8]
    assert np.isnan(table["nl_inplane30"][0]) and table["nl_inplane30"][1] == 0.15


def test_plots_keep_rejected_sets_and_legends_off_the_data(tmp_path, monkeypatch):
    figures = []

    def keep(fig, paths):
        figures.append(fig)

    monkeypatch.setattr(plots, "_save", keep)
    table = _table()
    table["pareto"] = pareto_mask(table)
    ranked_by = "set score (latent_in_support, max)"
    pareto_plot(table, [tmp_path / "pareto.png"], {"source_only": {"mpjpe": 150.0}}, score_name=ranked_by)
    prefilter_plot(table, tmp_path / "prefilter.png", prefilter_correlation(table), score_name=ranked_by)
    pareto_ax, prefilter_ax = (fig.axes[0] for fig in figures)
    assert all(ranked_by in ax.get_xlabel() for ax in (pareto_ax, prefilter_ax))
    (rejected,) = [line for line in pareto_ax.get_lines() if line.get_marker() == "|"]
    assert list(rejected.get_ydata()) == [1.03] and not rejected.get_clip_on()  # above the plot, not at y = 0
    for ax in (pareto_ax, prefilter_ax):
        legend = ax.get_legend()
        assert legend.get_bbox_to_anchor().transformed(ax.transAxes.inverted()).y1 < 0  # under the axes
    assert "Spearman" in prefilter_ax.get_title() and not prefilter_ax.texts
    for fig, ax in zip(figures, (pareto_ax, prefilter_ax), strict=True):
        fig.canvas.draw()
        title = ax.title.get_window_extent()
        assert fig.bbox.x0 <= title.x0 and title.x1 <= fig.bbox.x1  # the title is not cut at the figure's edges
    for fig in figures:
        plots.plt.close(fig)
