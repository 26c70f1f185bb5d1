"""The benchmark statistics (bench/stats.py) on hand-made numbers."""

from __future__ import annotations

import numpy as np
import pytest

from bench import stats


def test_correlations_of_monotone_and_constant_inputs():
    assert stats.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert stats.kendall([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert stats.spearman([1, 1, 1], [1, 2, 3]) == 0.0
    assert stats.kendall([1, 2, 3], [5, 5, 5]) == 0.0


def test_bootstrap_interval_contains_point_and_is_tight_for_clean_data():
    score = np.arange(20.0)
    runs = [[v, v + 0.01] for v in score]
    interval = stats.bootstrap_correlation(score, runs, stats.spearman, resamples=200)
    assert interval.value == pytest.approx(1.0)
    # Duplicated items tie on score but not always on their resampled mean, so the draws sit just below 1.
    assert 0.98 < interval.low <= interval.high <= 1.0


def test_bootstrap_interval_widens_with_seed_noise():
    rng = np.random.default_rng(0)
    score = np.arange(20.0)
    clean = [[v, v] for v in score]
    noisy = [[v + rng.normal(0, 20), v + rng.normal(0, 20)] for v in score]
    width = [
        (lambda i: i.high - i.low)(stats.bootstrap_correlation(score, r, stats.spearman, resamples=300))
        for r in (clean, noisy)
    ]
    assert width[1] > width[0]


def test_paired_difference_is_the_mean_change_with_a_t_interval():
    diff = stats.paired_difference([9.0, 11.0, 10.0, 14.0], [10.0, 10.0, 12.0, 12.0])
    assert diff.value == pytest.approx(0.0)
    half = 3.182446 * np.std([-1.0, 1.0, -2.0, 2.0], ddof=1) / 2  # t(0.975, 3 dof) * standard error
    assert (diff.low, diff.high) == pytest.approx((-half, half), rel=1e-5)
    single = stats.paired_difference([1.0], [3.0])
    assert single.value == -2.0 and np.isnan(single.low) and np.isnan(single.high)
    with pytest.raises(ValueError, match="equally long"):
        stats.paired_difference([1.0, 2.0], [1.0])


def test_keep_count_matches_the_prefilter_rule():
    assert stats.keep_count(45, 0.10) == 5
    assert stats.keep_count(45, 0.25) == 12
    assert stats.keep_count(3, 0.1) == 1


def test_keep_outcome_recall_rank_regret_and_saving():
    error = [10.0, 12.0, 11.0, 20.0, 13.0, 14.0, 15.0]  # true ranks: 1, 3, 2, 7, 4, 5, 6
    cost = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 5.0]
    kept_best = stats.keep_outcome([0, 3], error, cost)
    assert kept_best.top1 == 1.0
    assert kept_best.top5 == pytest.approx(1 / 5)
    assert kept_best.best_rank == 1.0
    assert kept_best.regret == 0.0
    assert kept_best.saved == pytest.approx(1 - 2 / 11)
    missed = stats.keep_outcome([1, 6], error, cost)
    assert missed.top1 == 0.0
    assert missed.best_rank == 3.0
    assert missed.regret == pytest.approx(2.0)
    assert missed.regret_pct == pytest.approx(20.0)
    assert missed.saved == pytest.approx(1 - 6 / 11)


def test_top_by_score_breaks_ties_by_index_or_at_random():
    assert stats.top_by_score([1, 3, 3, 2], 2) == [1, 2]
    assert stats.top_by_score([2, 1, 2, 2], 1) == [0]
    rng = np.random.default_rng(0)
    picks = {stats.top_by_score([1, 1, 1, 0], 1, rng)[0] for _ in range(50)}
    assert picks == {0, 1, 2}


def test_mean_outcome_of_random_keeps_approaches_the_keep_fraction():
    error = np.arange(1.0, 41.0)
    rng = np.random.default_rng(0)
    outcomes = [stats.keep_outcome(rng.permutation(40)[:10].tolist(), error, np.ones(40)) for _ in range(2000)]
    mean = stats.mean_outcome(outcomes)
    assert mean.top1 == pytest.approx(0.25, abs=0.03)
    assert mean.saved == pytest.approx(0.75)


def test_iqm_drops_the_outer_quartiles():
    values = np.array([[0.0], [1.0], [2.0], [3.0], [4.0], [5.0], [6.0], [100.0]])
    assert stats.iqm(values)[0] == pytest.approx(np.mean([2.0, 3.0, 4.0, 5.0]))
    low, high = stats.bootstrap_iqm(values, resamples=200)
    assert low[0] <= stats.iqm(values)[0] <= high[0]


def test_trace_reads_the_incumbent_at_any_trial_epoch_count():
    from bench.search_efficiency import Trace

    trace = Trace(epochs=[6, 7, 13], incumbent=[float("nan"), 250.0, 244.0])
    assert trace.at(np.array([0, 5, 6, 7, 12, 13, 40]), before_any=300.0).tolist() == [
        300.0,
        300.0,
        300.0,
        250.0,
        250.0,
        244.0,
        244.0,
    ]
    assert trace.epochs_to(250.0) == 7
    assert trace.epochs_to(200.0) == float("inf")


def test_tabular_study_spends_its_budget_and_asha_stops_bad_curves_early():
    import optuna

    from bench.search_efficiency import Bench, asha_pruner, run_study

    curves = {f"s{i}": np.array([[300.0 - i, 290.0 - i, 280.0 - i]] * 2) for i in range(6)}
    bench = Bench(curves=curves, truth={k: float(v[0, -1]) for k, v in curves.items()}, scores={})
    labels = sorted(curves)
    full = run_study(bench, labels, optuna.samplers.RandomSampler(seed=0), optuna.pruners.NopPruner(), 30, seed=0)
    assert np.diff([0, *full.epochs]).tolist() == [3] * 10  # every trial runs its 3 evaluations
    asha = run_study(bench, labels, optuna.samplers.RandomSampler(seed=0), asha_pruner(), 30, seed=0)
    assert len(asha.epochs) > len(full.epochs)  # stopped trials leave budget for more trials
    assert asha.epochs[-1] >= 30 and full.epochs[-1] == 30
    assert min(v for v in full.incumbent if not np.isnan(v)) >= 275.0


def test_fidelity_check_ignores_fields_added_later():
    from bench.prefilter_quality import same_fidelity

    recorded = {"adapt": {"steps": 60, "lr": 1e-4}}
    assert same_fidelity(recorded, {"adapt": {"steps": 60, "lr": 1e-4, "bf16": False}})
    assert not same_fidelity(recorded, {"adapt": {"steps": 40, "lr": 1e-4}})
    assert not same_fidelity(recorded, {"adapt": {"steps": 60}})
