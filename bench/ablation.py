"""The paper's ablation on the proxy benchmark: source only -> + contrastive -> + pose-flip -> + flip-backward ->
+ slow-backward, target-validation MPJPE / PA-MPJPE (mm), mean +- std over seeds.

``python -m bench.ablation --seeds 0 1 2 --out bench/out/ablation --steps 200``

Seed ``s`` trains the source encoder with ``SourceConfig(seed=s)`` (unless ``--fixed-source``) and runs every
adaptation row with ``AdaptConfig(seed=s)``; the world, prior, motion embedding and relation transformers are
shared by all seeds.  Stages are cached in ``--cache`` and reused across runs.  No Ray: plain nlrd calls.
Writes ``<out>/ablation.md`` (the tables) and ``<out>/ablation.json`` (every per-seed number and the timings).

``--rows`` runs a subset of the rows (source only is always run) and ``--contrastive-weight`` sets ``w_lcr`` and
``w_hcr`` (0 leaves contrastive learning out; the contrastive-only row then has nothing to train).
``--source-weight`` adds the supervised source anchor (``AdaptConfig.w_source``, not in the paper) to every adapted
row; the first adapted row is then named after what it trains (e.g. "+ source anchor" without contrastive terms).

``--steps-per-turn N`` (round robin only) gives each adapted row ``N`` steps per loss in its turn instead of
``--steps`` for every row, so that adding a relation adds its own updates rather than taking turns from the losses
already there (with ``--steps 150`` pose-flip gets 50 updates in its row and 30 in the slow-backward row).

``--set FIELD=VALUE`` (repeatable) sets any other ``AdaptConfig`` field of every adapted row after the flags above,
e.g. ``--set w_lcr=0.12 --set w_motion=2`` for weights found by a search.

``--device cuda --bf16`` trains the stages and adapts on the GPU with bf16 autocast everywhere (the stage keys then
differ from the float32 ones); the world is rendered on the CPU either way.

Every table has the reference lines beside the rows: **mean pose** (the constant average pose of the mocap the
stages train on; no image) and **oracle** (the source encoder's architecture, config and seed supervised on the
labelled target training clips instead, evaluated on the same validation clips: what a label-free method could at
best reach with that encoder).  ``--no-oracle`` leaves the oracle out (it trains one more encoder per seed; its
metrics are cached in ``--cache``).

``--target-seed N`` swaps the world's target clips (training and validation) for those of the world with seed
``N``: same domain, different samples, same stages.  Settings are chosen on such a development target, so the
world's own validation labels are only read for the reported numbers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any, TypeVar

import torch

from bench import cli, stats
from nlrd.config import ConfigError
from nlrd.core import ClipSet
from nlrd.device import DEVICE_NAMES, resolve_device
from nlrd.pipeline import (
    StageCache,
    StageConfigs,
    StageKeys,
    load_prior_and_motion,
    load_stages,
    load_world,
    split_mocap,
    stage_key,
    train_stages,
)
from nlrd.reference import mean_pose_metrics
from nlrd.relations import get_relation
from nlrd.train.adapt import NONLOCAL_SPACES, SCHEDULES, AdaptConfig, adapt, loss_weights
from nlrd.train.evaluate import evaluate
from nlrd.train.source import SourceConfig, train_source
from nlrd.world import GAPS, build_world, world_part
from search.space import load_space

#: Ablation rows in the paper's order: (label, relations, adapt at all).
ROWS: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("source only", (), False),
    ("+ contrastive (LCR+HCR)", (), True),
    ("+ pose-flip", ("flip",), True),
    ("+ flip-backward", ("flip", "flip_backward"), True),
    ("+ slow-backward", ("flip", "flip_backward", "slow_backward"), True),
)
RELATIONS = ("flip", "flip_backward", "slow_backward")
#: Table columns: (protocol key of ``nlrd.train.evaluate``, heading); PA-MPJPE first, the paper's headline.
PROTOCOLS = (
    ("pa_mpjpe", "PA-MPJPE"),
    ("mpjpe", "MPJPE"),
    ("mpjpe_gtbone", "MPJPE, GT bones"),
    ("pa_mpjpe_gtbone", "PA-MPJPE, GT bones"),
)
#: Flags that set the ``AdaptConfig`` field of their own name.
ADAPT_FLAGS = (
    "steps",
    "batch_clips",
    "lr_contrastive",
    "trainable_block",
    "schedule",
    "nonlocal_space",
    "lr_source",
    "bf16",
)
#: Flags that set the ``smoke_configs`` argument of their own name.
STAGE_FLAGS = ("image_size", "source_steps", "relation_steps", "source_clips", "motion_steps", "gap")
#: The space whose shared stages the benchmarks train (``smoke_configs``).
SMOKE_SPACE = Path(__file__).resolve().parent.parent / "spaces" / "smoke.yaml"
#: Help of the flags whose default is the smoke space's value.
SPACE_DEFAULT = "default: the smoke space's"

Config = TypeVar("Config")


def arg_parser() -> argparse.ArgumentParser:
    parser = cli.script_parser("bench.ablation", __doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("bench/out/ablation"))
    parser.add_argument("--cache", type=Path, default=Path("bench/out/stage_cache"))
    parser.add_argument("--steps", type=int, default=200, help="adaptation steps per run")
    parser.add_argument(
        "--steps-per-turn", type=int, help="round robin: steps per loss of the row, instead of --steps for every row"
    )
    parser.add_argument("--batch-clips", type=int, default=4)
    parser.add_argument("--lr-contrastive", type=float, default=1e-4)
    parser.add_argument("--lr-nonlocal", type=float, default=1e-4)
    parser.add_argument("--trainable-block", default="block3")
    parser.add_argument("--schedule", default="round_robin", choices=SCHEDULES)
    parser.add_argument("--nonlocal-space", default="latent", choices=NONLOCAL_SPACES)
    parser.add_argument("--relation-steps", type=int, help=f"relation transformer training steps ({SPACE_DEFAULT})")
    parser.add_argument("--target-seed", type=int, help="adapt and evaluate on the target clips of this world seed")
    parser.add_argument("--fixed-source", action="store_true", help="one source encoder (seed 0) for every seed")
    parser.add_argument("--no-oracle", action="store_true", help="leave out the oracle line (target-supervised)")
    parser.add_argument(
        "--rows",
        type=int,
        nargs="+",
        choices=range(len(ROWS)),
        help="indices of the rows to run (0 = source only, always run; default: all)",
    )
    parser.add_argument("--contrastive-weight", type=float, default=1.0, help="w_lcr = w_hcr (0: no contrastive)")
    parser.add_argument(
        "--source-weight", type=float, default=0.0, help="w_source: the supervised source anchor (0: off, as the paper)"
    )
    parser.add_argument("--lr-source", type=float, default=AdaptConfig.lr_source)
    parser.add_argument("--image-size", type=int, help=SPACE_DEFAULT)
    parser.add_argument("--source-steps", type=int, help=SPACE_DEFAULT)
    parser.add_argument("--source-clips", type=int, help=f"labelled source clips in the world ({SPACE_DEFAULT})")
    parser.add_argument("--motion-steps", type=int, help=f"motion embedding training steps ({SPACE_DEFAULT})")
    parser.add_argument("--gap", choices=sorted(GAPS), help=f"the world's kind of domain gap ({SPACE_DEFAULT})")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help=f"where stages and adaptation train: {', '.join(DEVICE_NAMES)}")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast in every stage and in adaptation (CUDA)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="an AdaptConfig field of every adapted row, after the flags above (repeatable)",
    )
    add_stages_space_flag(parser)
    return parser


def adapt_overrides(items: list[str]) -> dict[str, Any]:
    """``--set FIELD=VALUE`` items as AdaptConfig fields, each value of its field's type."""
    defaults = AdaptConfig()
    allowed = [f.name for f in fields(AdaptConfig) if f.name not in ("relations", "seed")]  # set per row and seed
    overrides: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or name not in allowed:
            sys.exit(f"--set {item!r}: expected FIELD=VALUE with FIELD one of {', '.join(allowed)}")
        try:
            overrides[name] = cli.field_value(text, getattr(defaults, name))
        except ValueError as exc:
            sys.exit(f"--set {item!r}: {name} {exc}")
    return overrides


#: The stages with a training loop (and a ``bf16`` flag); the world is rendered, not trained.
TRAINED_STAGES = ("prior", "motion", "relation", "source")


def smoke_configs(
    *,
    image_size: int | None = None,
    source_steps: int | None = None,
    relation_steps: int | None = None,
    source_clips: int | None = None,
    motion_steps: int | None = None,
    gap: str | None = None,
    space: Path = SMOKE_SPACE,
) -> StageConfigs:
    """The shared stages of ``space`` (default ``spaces/smoke.yaml``, read by ``search.space.load_space``); each
    other argument given replaces the space's value."""
    stages = load_space(space).stages
    return replace(
        stages,
        world=replace_given(stages.world, image_size=image_size, source_clips=source_clips, gap=gap),
        motion=replace_given(stages.motion, steps=motion_steps),
        relation=replace_given(stages.relation, steps=relation_steps),
        source=replace_given(stages.source, steps=source_steps),
    )


def add_stages_space_flag(parser: argparse.ArgumentParser) -> None:
    """``--stages-space``: the space whose stages a benchmark trains, so that figures measured on an earlier smoke
    space (``bench/spaces/smoke-2026-12-02.yaml``) can be reproduced."""
    parser.add_argument(
        "--stages-space",
        type=Path,
        default=SMOKE_SPACE,
        help="the space whose shared stages to train (default: spaces/smoke.yaml)",
    )


def replace_given(config: Config, **values: Any) -> Config:
    """``config`` (a dataclass) with each field whose value here is not None replaced."""
    return replace(config, **{name: value for name, value in values.items() if value is not None})


class StageTimer:
    """Report callback: the wall time of each stage, from the end of the previous stage to its last report."""

    def __init__(self) -> None:
        self.mark = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def __call__(self, metrics: dict) -> None:
        now = time.perf_counter()
        stage = metrics["stage"]
        if metrics.get("cached"):
            self.seconds.setdefault(stage, 0.0)
        else:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self.mark
        self.mark = now


def build(configs: StageConfigs, cache: StageCache, device: torch.device) -> tuple[StageKeys, dict[str, float]]:
    """Train (or find) the stages: their keys and seconds per stage (0 when cached; the world build counts in
    the prior's time)."""
    timer = StageTimer()
    keys = train_stages(configs, RELATIONS, cache, report=timer, device=device)
    return keys, timer.seconds


def first_row_label(cfg: AdaptConfig) -> str:
    """The label of the first adapted row, which trains the losses every later row keeps: the paper's
    contrastive pair, the source anchor, or both."""
    parts = ["contrastive (LCR+HCR)"] if cfg.w_lcr or cfg.w_hcr else []
    parts += ["source anchor"] if cfg.w_source else []
    return "+ " + " + ".join(parts) if parts else "+ no loss (contrastive weight and source weight are 0)"


def active_losses(cfg: AdaptConfig, relations: tuple[str, ...], clip_len: int) -> int:
    """How many losses take turns in a row (``nlrd.train.adapt.loss_weights``)."""
    return len(loss_weights(cfg, [get_relation(name, clip_len) for name in relations]))


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def table(results: dict[str, dict[int, dict[str, float]]]) -> str:
    """Markdown: one row per ablation row run, mean +- std over seeds of every protocol, each with its change of the
    mean vs source only."""
    base = {m: mean_std([r[m] for r in results[ROWS[0][0]].values()])[0] for m, _ in PROTOCOLS}
    lines = [
        "| row | " + " | ".join(f"{heading} (mm) | vs source only" for _, heading in PROTOCOLS) + " |",
        "|---|" + "---|---|" * len(PROTOCOLS),
    ]
    for label in results:
        cells = []
        for m, _ in PROTOCOLS:
            mean, std = mean_std([r[m] for r in results[label].values()])
            cells += [f"{mean:.1f} ± {std:.1f}", f"{100 * (mean / base[m] - 1):+.1f}%"]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    return "\n".join(lines)


def paired_table(results: dict[str, dict[int, dict[str, float]]]) -> str:
    """Markdown: what each added term changes, paired by seed (the row minus the row before it, and the last row
    minus source only), mean and 95% t-interval in mm for PA-MPJPE and MPJPE, and on how many seeds it helped."""
    labels = [label for label in results if label not in (MEAN_POSE_ROW, ORACLE_ROW)]
    pairs = list(zip(labels[1:], labels[:-1], strict=True))
    if len(labels) > 2:
        pairs.append((labels[-1], labels[0]))
    lines = [
        "| change | PA-MPJPE (mm) | MPJPE (mm) | seeds better (PA) |",
        "|---|---|---|---|",
    ]
    for after, before in pairs:
        seeds = sorted(set(results[after]) & set(results[before]))
        cells = []
        for metric in ("pa_mpjpe", "mpjpe"):
            diff = stats.paired_difference(
                [results[after][s][metric] for s in seeds], [results[before][s][metric] for s in seeds]
            )
            cells.append(f"{diff.value:+.1f} [{diff.low:+.1f}, {diff.high:+.1f}]")
        better = sum(results[after][s]["pa_mpjpe"] < results[before][s]["pa_mpjpe"] for s in seeds)
        lines.append(f"| {after} vs {before} | {' | '.join(cells)} | {better}/{len(seeds)} |")
    return "\n".join(lines)


def dev_target(configs: StageConfigs, seed: int) -> tuple[ClipSet, ClipSet]:
    """Target training and validation clips of the world with ``seed`` (sizes as ``configs.world``); the
    other parts of that world are built as small as allowed, since only the target is used."""
    world = build_world(replace(configs.world, seed=seed, mocap_sequences=2, source_clips=1))
    return world.target_train, world.target_val


#: The reference lines' row labels: below every row, and above (the oracle) them.
MEAN_POSE_ROW, ORACLE_ROW = "mean pose (constant, no image)", "oracle (target labels, same encoder and budget)"


def mean_pose_row(cache: StageCache, keys: StageKeys, target: tuple[ClipSet, ClipSet] | None) -> dict[str, float]:
    """The mean-pose line on the target validation clips the rows are evaluated on."""
    world = load_world(cache, keys.world)
    train_mocap, _ = split_mocap(world.mocap)
    return mean_pose_metrics(train_mocap, world.target_val if target is None else target[1])


def oracle_row(
    configs: StageConfigs,
    cache: StageCache,
    keys: StageKeys,
    source: SourceConfig,
    target_seed: int | None,
    device: torch.device,
) -> dict[str, float]:
    """The oracle line: ``source`` (the source encoder's config and seed) trained on the labelled target training
    clips of the world (or of the world with ``target_seed``), evaluated on that world's target validation clips.
    Only its metrics are cached: no search reads the encoder."""
    key = stage_key("oracle", source, [keys.prior, keys.world, f"target_seed={target_seed}"])
    with cache.lock(key):
        if key in cache:
            return dict(cache.load(key)["target_val"])
        world = configs.world if target_seed is None else replace(configs.world, seed=target_seed)
        train = world_part(world, "target_train", with_labels=True)
        prior, _ = load_prior_and_motion(cache, keys, device)
        encoder = train_source(source, prior, train, device=device)
        metrics = evaluate(encoder, prior, world_part(world, "target_val"), device=device)
        cache.save(key, {"target_val": metrics})
    return metrics


def run_row(
    cfg: AdaptConfig,
    cache: StageCache,
    keys: StageKeys,
    relations: tuple[str, ...],
    adapted: bool,
    target: tuple[ClipSet, ClipSet] | None,
    device: torch.device,
) -> tuple[dict[str, float], float]:
    """Final target-validation metrics of one ablation row and the adaptation's seconds (0 for source only).

    ``target``: (training, validation) clips to use instead of the world's own.  The source encoder is evaluated
    afresh rather than read from its checkpoint, so every row has every protocol whenever the cache was filled.
    """
    world = load_world(cache, keys.world)
    if target is None:
        target = world.target_train, world.target_val
    stages = load_stages(cache, keys, relations, device)
    if not adapted:
        return evaluate(stages.encoder, stages.prior, target[1], device=device), 0.0
    start = time.perf_counter()
    encoder = adapt(replace(cfg, relations=relations), stages, *target, source=world.source, device=device)
    seconds = time.perf_counter() - start
    return evaluate(encoder, stages.prior, target[1], device=device), seconds


def main() -> None:
    parser = arg_parser()
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    configs = smoke_configs(**{name: getattr(args, name) for name in STAGE_FLAGS}, space=args.stages_space)
    if args.bf16:
        configs = replace(configs, **{name: replace(getattr(configs, name), bf16=True) for name in TRAINED_STAGES})
    try:
        device = resolve_device(args.device)
    except (ValueError, RuntimeError) as exc:
        sys.exit(f"--device: {exc}")
    cache = StageCache(args.cache)
    target = None if args.target_seed is None else dev_target(configs, args.target_seed)
    if args.steps_per_turn is not None and args.schedule != "round_robin":
        sys.exit("--steps-per-turn counts turns of the round robin; the weighted schedule trains every loss each step")
    args.out.mkdir(parents=True, exist_ok=True)
    adapt_cfg = AdaptConfig(
        eval_every=args.steps,
        lr_nonlocal=args.lr_nonlocal,
        w_lcr=args.contrastive_weight,
        w_hcr=args.contrastive_weight,
        w_source=args.source_weight,
        **{name: getattr(args, name) for name in ADAPT_FLAGS},
    )
    try:
        adapt_cfg = replace(adapt_cfg, **adapt_overrides(args.overrides))
    except ConfigError as exc:
        sys.exit(f"--set: {exc}")
    if adapt_cfg.schedule == "weighted" and adapt_cfg.lr_nonlocal != AdaptConfig.lr_nonlocal:
        sys.exit("--lr-nonlocal has no effect under --schedule weighted: use --set lr_weighted=VALUE, its one rate")
    rows = [ROWS[i] for i in sorted({0, *(range(len(ROWS)) if args.rows is None else args.rows)})]
    rows = [(first_row_label(adapt_cfg), *row[1:]) if row is ROWS[1] else row for row in rows]
    timings: dict[str, dict[str, float]] = {}
    results: dict[str, dict[int, dict[str, float]]] = {label: {} for label in (MEAN_POSE_ROW, *(r[0] for r in rows))}
    if not args.no_oracle:
        results[ORACLE_ROW] = {}
    adapt_seconds: list[float] = []
    adapt_steps: list[int] = []
    for seed in args.seeds:
        source = replace(configs.source, seed=0 if args.fixed_source else seed)
        keys, timings[f"stages seed {seed}"] = build(replace(configs, source=source), cache, device)
        results[MEAN_POSE_ROW][seed] = mean_pose_row(cache, keys, target)
        if not args.no_oracle:
            start = time.perf_counter()
            results[ORACLE_ROW][seed] = oracle_row(configs, cache, keys, source, args.target_seed, device)
            timings[f"stages seed {seed}"]["oracle"] = time.perf_counter() - start
            print(f"seed {seed} | {ORACLE_ROW}: MPJPE {results[ORACLE_ROW][seed]['mpjpe']:.1f} mm", flush=True)
        for label, relations, adapted in rows:
            cfg = replace(adapt_cfg, seed=seed)
            if args.steps_per_turn is not None and adapted:
                steps = args.steps_per_turn * active_losses(cfg, relations, configs.world.clip_len)
                cfg = replace(cfg, steps=steps, eval_every=steps)
            metrics, seconds = run_row(cfg, cache, keys, relations, adapted, target, device)
            results[label][seed] = metrics
            if adapted:
                adapt_seconds.append(seconds)
                adapt_steps.append(cfg.steps)
            print(
                f"seed {seed} | {label}: MPJPE {metrics['mpjpe']:.1f} PA-MPJPE {metrics['pa_mpjpe']:.1f} mm"
                + (f" ({seconds:.0f} s)" if adapted else ""),
                flush=True,
            )
    for name, stage_seconds in timings.items():
        print(f"[time] {name}: " + ", ".join(f"{k} {v:.0f} s" for k, v in stage_seconds.items()))
    adapt_times: dict[str, float] = {}
    if adapt_seconds:  # none when only the reference rows and source only ran
        run_s, step_s = statistics.fmean(adapt_seconds), sum(adapt_seconds) / sum(adapt_steps)
        adapt_times = {"adapt_run_mean": run_s, "adapt_step_mean": step_s}
        mean_steps = statistics.fmean(adapt_steps)
        print(f"[time] one adaptation run: {run_s:.0f} s on average ({mean_steps:.0f} steps), {step_s:.2f} s/step")
    markdown = table(results)
    if len(results) - len({MEAN_POSE_ROW, ORACLE_ROW} & set(results)) > 1:
        markdown += "\n\nPaired by seed (mean, 95% t-interval):\n\n" + paired_table(results)
    command = cli.command(parser)
    (args.out / "ablation.md").write_text(
        f"Target-validation error, mean ± std over seeds {args.seeds} (`{command}`).\n\n{markdown}\n"
    )
    payload = {
        "command": command,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "stages": asdict(configs),
        "adapt": asdict(adapt_cfg),
        "results": results,
        "timings_s": {**timings, **adapt_times},
    }
    (args.out / "ablation.json").write_text(json.dumps(payload, indent=2))
    print(markdown)


if __name__ == "__main__":
    main()
