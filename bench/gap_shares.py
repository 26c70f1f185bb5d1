"""Which kinds of error does each kind of domain gap leave a source-only encoder with, and which can relations see?

``python -m bench.gap_shares --gaps clip instance --seeds 0 --target-seed 1000 --out bench/out/gap_shares``

This trains, or reads from ``--cache``, the smoke space's world, pose prior and source encoder (only those stages: no
relation is adapted here).  The source part of the world is the same whatever its ``gap``, so one encoder per seed
meets the target of each ``WorldConfig.gap`` (``nlrd.world.GAPS``): the target validation clips of the world with
that gap (and ``--target-seed``, by default the space's world seed).  It predicts them and their horizontally mirrored
frames, and splits the error with ``nlrd.error_shares``: the share constant within a clip (offset), slower and
faster than ``--cutoff-hz`` (fast: what time relations could see at best), the mirror-breaking share (what
pose-flip can see), and the frames nearer the depth-reversed or left/right-swapped truth.  Beside them: MPJPE of
source only and of the mean pose (``nlrd.reference.mean_pose_metrics``, the line of
``nlrd.pipeline.mean_pose_line``), and the same on fresh source clips (the encoder's in-domain error, the floor under
the gap).  A diagnosis: target labels are read, nothing here chooses a setting of the method.  Writes
``<out>/gap_shares.md`` and ``<out>/gap_shares.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from bench import cli
from bench.ablation import SPACE_DEFAULT, add_stages_space_flag, smoke_configs
from nlrd.core import ClipSet
from nlrd.data_stage import fresh_source_clips
from nlrd.error_shares import CUTOFF_HZ, error_shares
from nlrd.metrics import evaluate_protocols
from nlrd.models import PosePrior, build_image_encoder
from nlrd.pipeline import StageCache, StageConfigs, load_world, restore_module, split_mocap, train_stages
from nlrd.reference import mean_pose_metrics
from nlrd.train.evaluate import predict
from nlrd.world import GAPS, WorldConfig, world_part

#: The stages a source-only encoder needs.
STAGES = ("world", "prior", "source")


def arg_parser() -> argparse.ArgumentParser:
    parser = cli.script_parser("bench.gap_shares", __doc__)
    parser.add_argument("--gaps", nargs="+", choices=sorted(GAPS), default=sorted(GAPS), help="kinds of domain gap")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="source encoder seeds")
    parser.add_argument("--out", type=Path, default=Path("bench/out/gap_shares"))
    parser.add_argument("--cache", type=Path, default=Path("bench/out/stage_cache"))
    parser.add_argument("--target-seed", type=int, help="world seed of the target clips (default: the space's)")
    parser.add_argument("--cutoff-hz", type=float, default=CUTOFF_HZ, help="edge between slow and fast error")
    parser.add_argument("--image-size", type=int, help=SPACE_DEFAULT)
    parser.add_argument("--source-steps", type=int, help=SPACE_DEFAULT)
    parser.add_argument("--source-clips", type=int, help=f"labelled source clips in the world ({SPACE_DEFAULT})")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    add_stages_space_flag(parser)
    return parser


def measure(
    encoder: nn.Module, prior: nn.Module, clips: ClipSet, mocap: torch.Tensor, cutoff_hz: float
) -> dict[str, float | None]:
    """MPJPE and the error shares of ``encoder`` on labelled ``clips``, predicted as they are and mirrored, and the
    MPJPE of the mean pose of ``mocap`` (the stages' training mocap) there."""
    pred = predict(encoder, prior, clips.frames)
    pred_mirror = predict(encoder, prior, clips.frames.flip(-1))
    shares = error_shares(pred, clips.poses, pred_mirror, fps=clips.fps, cutoff_hz=cutoff_hz)
    mpjpe = evaluate_protocols(pred.flatten(0, 1), clips.poses.flatten(0, 1).float())["mpjpe"]
    return {"mpjpe": mpjpe, "mean_pose_mpjpe": mean_pose_metrics(mocap, clips)["mpjpe"], **shares.as_dict()}


COLUMNS = (
    ("mpjpe", "MPJPE (mm)", "{:.1f}"),
    ("offset", "offset", "{:.2f}"),
    ("slow", "slow", "{:.2f}"),
    ("fast", "fast", "{:.2f}"),
    ("mirror", "mirror-breaking", "{:.2f}"),
    ("depth_reversed", "nearer depth-reversed", "{:.0%}"),
    ("left_right_swapped", "nearer L/R-swapped", "{:.0%}"),
)


def table(results: dict) -> str:
    """Markdown: one row per seed and clip set, with the mean pose's MPJPE beside each."""
    lines = [
        "| seed | clips | " + " | ".join(heading for _, heading, _ in COLUMNS) + " | mean pose (mm) | vs mean pose |",
        "|---|---|" + "---|" * (len(COLUMNS) + 2),
    ]
    for seed, rows in results["seeds"].items():
        for clips, row in rows.items():
            cells = [fmt.format(row[key]) for key, _, fmt in COLUMNS]
            mean_pose = row["mean_pose_mpjpe"]
            line = f"{mean_pose:.1f} | {100 * (row['mpjpe'] / mean_pose - 1):+.1f}%"
            lines.append(f"| {seed} | {clips} | {' | '.join(cells)} | {line} |")
    return "\n".join(lines)


def target_val(world: WorldConfig, gap: str, seed: int | None) -> ClipSet:
    """The labelled target validation clips of ``world`` with ``gap`` (and world seed ``seed``, when given)."""
    return world_part(replace(world, gap=gap, seed=world.seed if seed is None else seed), "target_val")


def measure_gaps(
    configs: StageConfigs,
    gaps: list[str],
    seeds: list[int],
    cache: StageCache,
    target_seed: int | None,
    cutoff_hz: float,
) -> dict:
    """Train (or read) the stages for every seed and measure each source encoder on every gap's target and on fresh
    source clips: ``{"seeds": {seed: {clip set: row}}, "stage_seconds": {seed: s}}``."""
    targets = {gap: target_val(configs.world, gap, target_seed) for gap in gaps}
    result: dict = {"seeds": {}, "stage_seconds": {}}
    shared = None  # the world's mocap, the prior and fresh source clips: the same for every source seed
    for seed in seeds:
        seeded = replace(configs, source=replace(configs.source, seed=seed))
        start = time.perf_counter()
        keys = train_stages(seeded, (), cache, only=STAGES)
        result["stage_seconds"][seed] = round(time.perf_counter() - start, 1)
        if shared is None:
            world = load_world(cache, keys.world)
            fresh = fresh_source_clips(configs.world, configs.data, world.mocap)
            shared = split_mocap(world.mocap)[0], restore_module(PosePrior, cache.load(keys.prior)), fresh
        mocap, prior, fresh = shared
        encoder = restore_module(build_image_encoder, cache.load(keys.source))
        clip_sets = {**{f"target {gap}": clips for gap, clips in targets.items()}, "fresh source": fresh}
        rows = {name: measure(encoder, prior, clips, mocap, cutoff_hz) for name, clips in clip_sets.items()}
        result["seeds"][seed] = rows
        summary = ", ".join(f"{name} {row['mpjpe']:.1f} mm" for name, row in rows.items())
        print(f"seed {seed}: {summary} (stages {result['stage_seconds'][seed]} s)", flush=True)
    return result


def main() -> None:
    parser = arg_parser()
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = smoke_configs(
        image_size=args.image_size,
        source_steps=args.source_steps,
        source_clips=args.source_clips,
        space=args.stages_space,
    )
    cache = StageCache(args.cache)
    start = time.perf_counter()
    results = measure_gaps(base, args.gaps, args.seeds, cache, args.target_seed, args.cutoff_hz)
    seconds = round(time.perf_counter() - start, 1)
    markdown = table(results)
    command = cli.command(parser)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gap_shares.md").write_text(
        f"Source-only encoders of seeds {args.seeds} on the target validation clips of each gap (world seed "
        f"{args.target_seed if args.target_seed is not None else base.world.seed}) and fresh source clips, error "
        f"shares of `nlrd.error_shares` (cutoff {args.cutoff_hz:g} Hz; `{command}`, {seconds} s).\n\n{markdown}\n"
    )
    payload = {"command": command, "seconds": seconds, "cutoff_hz": args.cutoff_hz, "results": results}
    (args.out / "gap_shares.json").write_text(json.dumps(payload, indent=2))
    print(f"{markdown}\n({seconds} s)")


if __name__ == "__main__":
    main()
