"""How large is each adaptation loss at the start?  What the weights of the weighted schedule must balance.

``python -m bench.loss_scales --seeds 0 1 2 --source-clips 1536 --nonlocal-space pose --out bench/out/loss_scales``

For the stages of ``bench/ablation.py`` (source encoder seed ``s`` for each ``--seeds``), the unweighted value of
every loss of the full ablation row (LCR, HCR, pose-flip, flip-backward, slow-backward) on ``--batches`` random
target training batches, before any adaptation (``nlrd.train.adapt.loss_scales``).  Target labels are not read.
Writes ``<out>/loss_scales.md`` and ``<out>/loss_scales.json``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace
from pathlib import Path

import torch

from bench import cli
from bench.ablation import RELATIONS, SPACE_DEFAULT, add_stages_space_flag, build, mean_std, smoke_configs
from nlrd.pipeline import StageCache, load_stages, load_world
from nlrd.train.adapt import NONLOCAL_SPACES, AdaptConfig, loss_scales


def arg_parser() -> argparse.ArgumentParser:
    parser = cli.script_parser("bench.loss_scales", __doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("bench/out/loss_scales"))
    parser.add_argument("--cache", type=Path, default=Path("bench/out/stage_cache"))
    parser.add_argument("--nonlocal-space", default="pose", choices=NONLOCAL_SPACES)
    parser.add_argument("--batches", type=int, default=16, help="random batches per seed")
    parser.add_argument("--batch-clips", type=int, default=4)
    parser.add_argument("--source-clips", type=int, help=f"labelled source clips in the world ({SPACE_DEFAULT})")
    parser.add_argument("--source-steps", type=int, help=SPACE_DEFAULT)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    add_stages_space_flag(parser)
    return parser


def main() -> None:
    parser = arg_parser()
    args = parser.parse_args()
    command = cli.command(parser)
    torch.set_num_threads(args.threads)
    configs = smoke_configs(source_steps=args.source_steps, source_clips=args.source_clips, space=args.stages_space)
    cache = StageCache(args.cache)
    cfg = AdaptConfig(relations=RELATIONS, batch_clips=args.batch_clips, nonlocal_space=args.nonlocal_space)
    per_seed: dict[int, dict[str, float]] = {}
    for seed in args.seeds:
        keys, _ = build(replace(configs, source=replace(configs.source, seed=seed)), cache)
        world = load_world(cache, keys.world)
        stages = load_stages(cache, keys, RELATIONS)
        clip_len = configs.world.clip_len
        per_seed[seed] = loss_scales(replace(cfg, seed=seed), stages, world.target_train, clip_len, args.batches)
        print(f"seed {seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in per_seed[seed].items()), flush=True)
    names = list(per_seed[args.seeds[0]])
    lines = [
        f"Unweighted adaptation losses before training, mean ± std over seeds {args.seeds} of the per-seed mean over "
        f"{args.batches} batches (`{command}`).",
        "",
        "| loss | value |",
        "|---|---|",
    ]
    for name in names:
        mean, std = mean_std([per_seed[s][name] for s in args.seeds])
        lines.append(f"| {name} | {mean:.4f} ± {std:.4f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "loss_scales.md").write_text("\n".join(lines) + "\n")
    payload = {"command": command, "adapt": asdict(cfg), "per_seed": per_seed}
    (args.out / "loss_scales.json").write_text(json.dumps(payload, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
