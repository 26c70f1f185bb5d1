"""Search efficiency on the tabular benchmark: random search, TPE, TPE+ASHA and TPE+ASHA+pre-filter.

``nice -n 10 .venv/bin/python -m bench.search_efficiency --table bench/out/prefilter_quality/tabular.json``

A tabular simulation (the NAS-Bench / HPOBench method): every relation set of the enumerable space was trained
once per seed by ``bench/prefilter_quality.py``, with every evaluation recorded.  Here each search is a real Optuna
study whose trials "train" by reading those records: a trial samples a relation set (Optuna's categorical), draws
one of the recorded seeds at random (a re-run's noise), and reports the recorded target MPJPE at each evaluation.
Real training would cost ~10-20 s per trial on this machine; the table makes hundreds of studies affordable and lets
every variant see exactly the same outcomes.

ASHA is Optuna's ``SuccessiveHalvingPruner`` (asynchronous successive halving, Li et al. 2018) with the smoke
space's settings (grace period 1 evaluation, reduction factor 2): a trial stops at a rung unless its value is in the
top half of the trials that reached that rung.  Cost is counted in trial-epochs = evaluations consumed.  The
incumbent is the finished trial with the lowest observed (single-seed) MPJPE, as a real search would pick it; it is
scored by its set's true error (mean over seeds).  ``--incumbent mean`` instead picks the set with the lowest mean
over its own finished trials, which resists a lucky seed (the winner's curse) once a set has been re-run.  The
pre-filter variant restricts the categorical to the sets the pre-filter keeps (``search.prefilter.decide``, ranking
by ``--score`` under ``--aggregate``; tables written before the candidates existed hold ``latent`` only).

Writes ``<out>/efficiency.md``, ``<out>/efficiency.json`` and ``<out>/curves.png``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import optuna

from bench import cli, figures, stats
from bench.prefilter_quality import Table, set_rows, table_scores
from nlrd.relation_scores import CANDIDATES, RelationScores
from search.prefilter import decide, parse_set_label
from search.space import PrefilterSpec

RANDOM = "random search"
TPE = "TPE"
TPE_ASHA = "TPE+ASHA"


@dataclass(frozen=True)
class Bench:
    """The tabular benchmark as the simulation needs it.

    ``curves[label]``: ``(seeds, evaluations)`` recorded MPJPE (mm); ``truth[label]``: mean over seeds of the final
    evaluation, the set's true error; ``scores``: per-relation scores for the pre-filter.
    """

    curves: dict[str, np.ndarray]
    truth: dict[str, float]
    scores: dict[str, RelationScores]

    @property
    def best(self) -> float:
        return min(self.truth.values())

    @property
    def evaluations(self) -> int:
        return next(iter(self.curves.values())).shape[1]


def load_bench(path: Path) -> Bench:
    data = json.loads(path.read_text())
    table = Table(data["meta"], data["scores"], data["runs"])
    seeds = sorted({int(s) for runs in table.runs.values() for s in runs})
    rows = set_rows(table, seeds)
    curves = {
        r.label: np.array([[e["mpjpe"] for e in table.runs[r.label][str(s)]["evals"]] for s in seeds]) for r in rows
    }
    return Bench(curves=curves, truth={r.label: r.mpjpe for r in rows}, scores=table_scores(table))


@dataclass
class Trace:
    """One study's history: after each trial, the trial-epochs spent so far and the incumbent's true error."""

    epochs: list[int] = field(default_factory=list)
    incumbent: list[float] = field(default_factory=list)

    def at(self, grid: np.ndarray, before_any: float) -> np.ndarray:
        """Incumbent true error at each trial-epoch count of ``grid`` (``before_any`` until a trial finished)."""
        idx = np.searchsorted(np.array(self.epochs), grid, side="right") - 1
        values = np.array(self.incumbent + [before_any])  # index -1 -> before_any
        return np.where(np.isnan(values), before_any, values)[idx]  # nan: trials ended, none finished yet

    def epochs_to(self, target: float) -> float:
        """Trial-epochs spent when the incumbent first came within ``target``; inf when it never did."""
        return next((e for e, v in zip(self.epochs, self.incumbent, strict=True) if v <= target), float("inf"))


def run_study(
    bench: Bench,
    labels: list[str],
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
    budget: int,
    seed: int,
    incumbent_rule: str = "observed",
) -> Trace:
    """One Optuna study over ``labels`` until ``budget`` trial-epochs are spent."""
    rng = np.random.default_rng(seed)
    trace = Trace()
    spent = 0
    finished: dict[str, list[float]] = {}
    incumbent = float("nan")

    def objective(trial: optuna.Trial) -> float:
        nonlocal spent
        label = trial.suggest_categorical("relations", labels)
        curve = bench.curves[label][rng.integers(len(bench.curves[label]))]
        for step, value in enumerate(curve, 1):
            spent += 1
            trial.report(float(value), step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return float(curve[-1])

    study = optuna.create_study(direction="minimize", sampler=sampler, pruner=pruner)
    while spent < budget:
        trial = study.ask({"relations": optuna.distributions.CategoricalDistribution(labels)})
        try:
            value = objective(trial)
        except optuna.TrialPruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, value)
            finished.setdefault(trial.params["relations"], []).append(value)
            pick = min if incumbent_rule == "observed" else np.mean
            incumbent = bench.truth[min(finished, key=lambda label: pick(finished[label]))]
        trace.epochs.append(spent)
        trace.incumbent.append(incumbent)
    return trace


@dataclass(frozen=True)
class Variant:
    """A search method: the relation sets it may propose, its sampler and pruner (built per study seed)."""

    name: str
    labels: list[str]
    sampler: Callable[[int], optuna.samplers.BaseSampler]
    asha: bool


def variants(bench: Bench, keep_fractions: list[float], score: str, aggregate: str, startup: int) -> list[Variant]:
    labels = sorted(bench.truth)

    def tpe(seed: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)

    out = [
        Variant(RANDOM, labels, lambda seed: optuna.samplers.RandomSampler(seed=seed), asha=False),
        Variant(TPE, labels, tpe, asha=False),
        Variant(TPE_ASHA, labels, tpe, asha=True),
    ]
    sets = [parse_set_label(label) for label in labels]
    for f in keep_fractions:
        rule = PrefilterSpec(keep_fraction=f, score=score, aggregate=aggregate)
        decisions = decide(sets, bench.scores, rule, "<bench>")
        kept = [d.label for d in decisions if d.kept]
        out.append(Variant(f"TPE+ASHA+pre-filter (keep {f:.0%})", kept, tpe, asha=True))
    return out


def asha_pruner() -> optuna.pruners.BasePruner:
    """The smoke space's ASHA: grace period 1 evaluation, reduction factor 2."""
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2, min_early_stopping_rate=0)


def summarise(traces: list[Trace], target: float, budget: int) -> dict[str, float]:
    """Trial-epochs to the target over study seeds: median (inf when half never reach it), quartiles, hit rate."""
    hits = np.array([t.epochs_to(target) for t in traces])
    # inverted_cdf picks observed values (no interpolation), so studies that never reached the target (inf) count.
    q25, median, q75 = np.quantile(hits, [0.25, 0.5, 0.75], method="inverted_cdf")
    return {
        "median": float(median),
        "q25": float(q25),
        "q75": float(q75),
        "hit_rate": float(np.isfinite(hits).mean()),
        "budget": budget,
        "per_seed": hits.tolist(),
    }


def rung_correlations(bench: Bench) -> list[float]:
    """Spearman, over every recorded run, between the MPJPE at each evaluation and the final one: how well an early
    rung predicts the end, which is what ASHA bets on."""
    runs = np.concatenate(list(bench.curves.values()))
    return [stats.spearman(runs[:, k], runs[:, -1]) for k in range(runs.shape[1])]


def fmt_epochs(value: float, budget: int) -> str:
    return f"> {budget}" if not np.isfinite(value) else f"{value:.0f}"


def markdown(result: dict, bench: Bench, tolerance: float) -> str:
    budget = result["budget"]
    rows = result["summary"]
    base_random, base_asha = rows[RANDOM]["median"], rows[TPE_ASHA]["median"]
    within = sum(v <= (1 + tolerance) * bench.best for v in bench.truth.values())
    lines = [
        f"Tabular simulation (recorded runs, not live training): {len(bench.truth)} relation sets, "
        f"{result['study_seeds']} study seeds per method, budget {budget} trial-epochs per study ("
        f"{budget / (len(bench.truth) * bench.evaluations):g}x training every set once to the end), "
        f"{bench.evaluations} evaluations per full trial; incumbent rule `{result['args']['incumbent']}`. "
        "Target: incumbent's true MPJPE within "
        f"{tolerance:.0%} of the exhaustive best ({bench.best:.1f} mm); {within} of {len(bench.truth)} sets meet it. "
        "Spearman of each evaluation's MPJPE with the final one over all recorded runs (ASHA's premise): "
        + ", ".join(f"{r:.2f}" for r in result["rung_vs_final_spearman"])
        + ".",
        "",
        "| method | sets offered | trial-epochs to target, median [IQR] | reached within budget | "
        "vs random search | vs TPE+ASHA |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in rows.items():
        iqr = f"[{fmt_epochs(s['q25'], budget)}, {fmt_epochs(s['q75'], budget)}]"
        lines.append(
            f"| {name} | {result['offered'][name]} | {fmt_epochs(s['median'], budget)} {iqr} | {s['hit_rate']:.0%} | "
            f"{ratio(base_random, s['median'])} | {ratio(base_asha, s['median'])} |"
        )
    return "\n".join(lines) + "\n"


def ratio(base: float, value: float) -> str:
    """How many times fewer trial-epochs than ``base``; undefined when either never reached the target."""
    if not (np.isfinite(base) and np.isfinite(value)) or value == 0:
        return "n/a"
    return f"{base / value:.2f}x"


def plot(curves: dict[str, np.ndarray], grid: np.ndarray, target: float, tolerance: float, path: Path) -> None:
    """IQM over study seeds of the incumbent's true MPJPE vs trial-epochs, with a bootstrap 95% band."""
    with figures.axes(path, figsize=(6.4, 4.2)) as ax:
        for name, values in curves.items():
            centre = stats.iqm(values)
            low, high = stats.bootstrap_iqm(values, resamples=500)
            ax.plot(grid, centre, lw=1.3, label=name)
            ax.fill_between(grid, low, high, alpha=0.2)
        ax.axhline(target, ls="--", c="0.3", lw=0.8, label=f"target (best + {tolerance:.0%})")
        ax.set_xlabel("trial-epochs (evaluations consumed)")
        ax.set_ylabel("true MPJPE of the incumbent (mm)")
        ax.set_title("Tabular simulation: IQM over study seeds, 95% bootstrap band", fontsize=9)


def arg_parser() -> argparse.ArgumentParser:
    parser = cli.script_parser("bench.search_efficiency", __doc__)
    parser.add_argument("--table", type=Path, default=Path("bench/out/prefilter_quality/tabular.json"))
    parser.add_argument("--out", type=Path, default=Path("bench/out/search_efficiency"))
    parser.add_argument("--study-seeds", type=int, default=30, help="independent studies per method")
    parser.add_argument("--keep-fractions", type=float, nargs="+", default=[0.25, 0.5])
    parser.add_argument(
        "--score",
        default=PrefilterSpec.score,
        choices=CANDIDATES,
        help="the relation score the pre-filter variants rank by (default: the shipped spaces', %(default)s)",
    )
    parser.add_argument("--aggregate", default=PrefilterSpec.aggregate)
    parser.add_argument("--tolerance", type=float, default=0.02, help="target: within this share of the best")
    parser.add_argument("--startup", type=int, default=10, help="TPE's random start-up trials")
    parser.add_argument(
        "--incumbent",
        choices=("observed", "mean"),
        default="observed",
        help="best single finished trial, or best set by the mean of its finished trials",
    )
    parser.add_argument(
        "--budget-factor",
        type=float,
        default=2.0,
        help="trial-epochs per study, in units of the exhaustive cost (every set trained once)",
    )
    return parser


def main() -> None:
    args = arg_parser().parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    bench = load_bench(args.table)
    budget = round(args.budget_factor * len(bench.truth) * bench.evaluations)
    target = (1 + args.tolerance) * bench.best
    worst = max(bench.truth.values())
    grid = np.arange(budget + 1)
    summary, curves, offered, seconds = {}, {}, {}, {}
    for variant in variants(bench, args.keep_fractions, args.score, args.aggregate, args.startup):
        start = time.perf_counter()
        traces = [
            run_study(
                bench,
                variant.labels,
                variant.sampler(seed),
                asha_pruner() if variant.asha else optuna.pruners.NopPruner(),
                budget,
                seed,
                args.incumbent,
            )
            for seed in range(args.study_seeds)
        ]
        seconds[variant.name] = time.perf_counter() - start
        summary[variant.name] = summarise(traces, target, budget)
        curves[variant.name] = np.stack([t.at(grid, worst) for t in traces])
        offered[variant.name] = len(variant.labels)
        print(
            f"{variant.name}: median {summary[variant.name]['median']} trial-epochs "
            f"({seconds[variant.name]:.0f} s for {args.study_seeds} studies)",
            flush=True,
        )
    result = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "budget": budget,
        "target_mpjpe": target,
        "best_mpjpe": bench.best,
        "study_seeds": args.study_seeds,
        "offered": offered,
        "summary": summary,
        "simulation_seconds": seconds,
        "iqm_curves": {name: stats.iqm(v).tolist() for name, v in curves.items()},
        "rung_vs_final_spearman": rung_correlations(bench),
    }
    (args.out / "efficiency.json").write_text(json.dumps(result, indent=1, default=asdict))
    (args.out / "efficiency.md").write_text(markdown(result, bench, args.tolerance))
    plot(curves, grid, target, args.tolerance, args.out / "curves.png")
    print((args.out / "efficiency.md").read_text())


if __name__ == "__main__":
    main()
