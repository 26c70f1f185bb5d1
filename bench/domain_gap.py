"""Which part of the proxy domain gap makes the source encoder fail on the target?  One factor at a time.

``python -m bench.domain_gap --seeds 0 1 2 --out bench/out/domain_gap``

The target domain differs from the source in five groups of ``nlrd.world.Domain`` fields: clothes (bone and face
colours), backdrop (background and texture), camera (elevation, distance, field of view), build (limb thickness)
and motion (the families the clips are drawn from).  For each group this renders labelled clips of the *target*
with that group set back to the source's values, and of the *source* with only that group taken from the target,
and evaluates the source encoders of ``bench/ablation.py`` (seeds ``--seeds``, no adaptation) on them.  Every
variant draws the same motions and appearance noise (same generator seeds), so rows differ only in the factor.

``--adapt`` then asks whether the method closes the gap the factors leave: for the full target, the target with
the source's clothes, and the target recoloured part by part (its own colours, but each body part as distinct from
its neighbours as in the source: ``PART_DISTINCT``), it renders unlabelled target training clips, adapts each
source encoder with pose-space losses (``--adapt-steps``, rows: contrastive only, + pose-flip, + flip-backward +
slow-backward) and evaluates on that domain's labelled clips.
A diagnosis: labels of rendered clips are read, nothing here chooses a setting of the method.  Writes
``<out>/domain_gap.md`` and ``<out>/domain_gap.json``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch

from bench import cli
from bench.ablation import RELATIONS, ROWS, SPACE_DEFAULT, add_stages_space_flag, mean_std, smoke_configs
from nlrd.core import ClipSet, Stages
from nlrd.pipeline import StageCache, StageConfigs, load_stages, train_stages
from nlrd.train.adapt import AdaptConfig, adapt
from nlrd.train.evaluate import evaluate
from nlrd.world import FPS, SOURCE, TARGET, Domain, sample_clips

#: The groups of Domain fields in which the target differs from the source.
FACTORS: dict[str, tuple[str, ...]] = {
    "clothes": ("bone_colors", "face_color"),
    "backdrop": ("background_top", "background_bottom", "texture_noise"),
    "camera": ("elevation_deg", "distance_mm", "view_half_extent_mm"),
    "build": ("limb_radius_mm",),
    "motion": ("families",),
}

#: The target's clothes with the source's part structure: torso and upper arms, thighs and shins differ again
#: (the target dresses each pair alike), all in colours the source never shows.
PART_DISTINCT = {
    **TARGET.bone_colors,
    "upper_arm": (0.80, 0.20, 0.60),
    "shin": (0.90, 0.45, 0.10),
}


def arg_parser() -> argparse.ArgumentParser:
    parser = cli.script_parser("bench.domain_gap", __doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="source encoder seeds")
    parser.add_argument("--out", type=Path, default=Path("bench/out/domain_gap"))
    parser.add_argument("--cache", type=Path, default=Path("bench/out/stage_cache"))
    parser.add_argument("--clips", type=int, default=64, help="labelled clips rendered per variant")
    parser.add_argument("--image-size", type=int, help=SPACE_DEFAULT)
    parser.add_argument("--source-steps", type=int, help=SPACE_DEFAULT)
    parser.add_argument("--source-clips", type=int, help=f"labelled source clips in the world ({SPACE_DEFAULT})")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--adapt", action="store_true", help="also adapt on three target variants")
    parser.add_argument("--adapt-steps", type=int, default=150)
    add_stages_space_flag(parser)
    return parser


def with_factor(domain: Domain, donor: Domain, factor: str) -> Domain:
    """``domain`` with the fields of ``factor`` taken from ``donor``."""
    return replace(
        domain, name=f"{domain.name}+{donor.name} {factor}", **{f: getattr(donor, f) for f in FACTORS[factor]}
    )


def variants() -> list[tuple[str, Domain]]:
    rows = [("target", TARGET)]
    rows += [(f"target, {factor} as the source's", with_factor(TARGET, SOURCE, factor)) for factor in FACTORS]
    rows += [(f"source, {factor} as the target's", with_factor(SOURCE, TARGET, factor)) for factor in FACTORS]
    return [*rows, ("source", SOURCE)]


def render(domain: Domain, clips: int, clip_len: int, image_size: int, seed: int = 1234) -> ClipSet:
    """Labelled clips of ``domain``; the same generator seeds for every domain, so only the domain differs."""
    motion, look = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 4444)
    frames, poses = sample_clips(clips, clip_len, domain, image_size, motion, look)
    return ClipSet(frames, poses, fps=FPS)


def adaptation_table(args: argparse.Namespace, configs: StageConfigs, encoders: dict[int, Stages]) -> tuple[str, dict]:
    """Source only and the ablation's adapted rows on three target variants: markdown and every number."""
    domains = {
        "target": TARGET,
        "target, clothes as the source's": with_factor(TARGET, SOURCE, "clothes"),
        "target, recoloured part by part": replace(TARGET, name="target part-distinct", bone_colors=PART_DISTINCT),
    }
    cfg = AdaptConfig(steps=args.adapt_steps, eval_every=args.adapt_steps, nonlocal_space="pose", lr_contrastive=1e-4)
    clip_len, world = configs.world.clip_len, configs.world
    results: dict[str, dict[str, dict[int, dict[str, float]]]] = {}
    for name, domain in domains.items():
        train = render(domain, world.target_clips, 2 * clip_len, world.image_size, seed=99)
        train = ClipSet(train.frames, None, fps=train.fps)
        val = render(domain, args.clips, clip_len, world.image_size)
        results[name] = {}
        for label, relations, adapted in ROWS:
            results[name][label] = {}
            for seed, stages in encoders.items():
                if adapted:
                    encoder = adapt(replace(cfg, relations=relations, seed=seed), stages, train, val)
                else:
                    encoder = stages.encoder
                results[name][label][seed] = evaluate(encoder, stages.prior, val)
            mean, std = mean_std([r["mpjpe"] for r in results[name][label].values()])
            print(f"[adapt] {name} | {label}: MPJPE {mean:.1f} ± {std:.1f} mm", flush=True)
    lines = ["| target clips | " + " | ".join(label for label, _, _ in ROWS) + " |", "|---|" + "---|" * len(ROWS)]
    for name, rows in results.items():
        base = mean_std([r["mpjpe"] for r in rows[ROWS[0][0]].values()])[0]
        cells = []
        for label, _, _ in ROWS:
            mean, std = mean_std([r["mpjpe"] for r in rows[label].values()])
            cells.append(
                f"{mean:.1f} ± {std:.1f}" + ("" if label == ROWS[0][0] else f" ({100 * (mean / base - 1):+.1f}%)")
            )
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return "\n".join(lines), results


def main() -> None:
    parser = arg_parser()
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    configs = smoke_configs(
        image_size=args.image_size,
        source_steps=args.source_steps,
        source_clips=args.source_clips,
        space=args.stages_space,
    )
    cache = StageCache(args.cache)
    encoders = {}
    for seed in args.seeds:
        keys = train_stages(replace(configs, source=replace(configs.source, seed=seed)), RELATIONS, cache)
        encoders[seed] = load_stages(cache, keys, RELATIONS)
    results: dict[str, dict[int, dict[str, float]]] = {}
    for label, domain in variants():
        clips = render(domain, args.clips, configs.world.clip_len, configs.world.image_size)
        results[label] = {seed: evaluate(s.encoder, s.prior, clips) for seed, s in encoders.items()}
        mean, std = mean_std([r["mpjpe"] for r in results[label].values()])
        print(f"{label}: MPJPE {mean:.1f} ± {std:.1f} mm", flush=True)
    full, none = (mean_std([r["mpjpe"] for r in results[k].values()])[0] for k in ("target", "source"))
    lines = [
        "| clips | MPJPE (mm) | PA-MPJPE (mm) | share of the gap |",
        "|---|---|---|---|",
    ]
    for label, per_seed in results.items():
        mpjpe, mpjpe_std = mean_std([r["mpjpe"] for r in per_seed.values()])
        pa, pa_std = mean_std([r["pa_mpjpe"] for r in per_seed.values()])
        if label.startswith("target, "):
            share = f"{100 * (full - mpjpe) / (full - none):+.0f}% removed"
        elif label.startswith("source, "):
            share = f"{100 * (mpjpe - none) / (full - none):+.0f}% added"
        else:
            share = "—"
        lines.append(f"| {label} | {mpjpe:.1f} ± {mpjpe_std:.1f} | {pa:.1f} ± {pa_std:.1f} | {share} |")
    markdown = "\n".join(lines)
    adapted: dict = {}
    if args.adapt:
        adapt_markdown, adapted = adaptation_table(args, configs, encoders)
        markdown += f"\n\nAdapted ({args.adapt_steps} steps, pose-space losses), target MPJPE (mm):\n\n{adapt_markdown}"
    command = cli.command(parser)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "domain_gap.md").write_text(
        f"Source encoders of seeds {args.seeds}, no adaptation, {args.clips} clips per row (`{command}`).\n\n"
        f"{markdown}\n"
    )
    payload = {"command": command, "seeds": args.seeds, "clips": args.clips, "results": results, "adapted": adapted}
    (args.out / "domain_gap.json").write_text(json.dumps(payload, indent=2))
    print(markdown)


if __name__ == "__main__":
    main()
