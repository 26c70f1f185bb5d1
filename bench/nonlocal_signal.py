"""Does the pose-flip loss see the source encoder's target errors?  Latent vs pose-space readout, per frame.

``python -m bench.nonlocal_signal --out bench/out/nonlocal_signal``

For the source encoder G of ``bench/ablation.py`` (seed ``--seed``) on source frames and on labelled target
validation frames: MPJPE, the flip loss as the paper computes it (``mean |T_flip(G(x)) - G(flip x)|`` on latents),
the same pair decoded by ``D_p`` (per-frame MPJPE between ``D_p(T_flip(G(x)))`` and ``D_p(G(flip x))``), and the
exact pose flip ``flip(D_p(G(x)))`` against ``D_p(G(flip x))``; each with its Pearson correlation with the frame's
MPJPE; and the MPJPE and PA-MPJPE of the symmetrised prediction ``(p + flip(p_flipped)) / 2``, the source encoder
made flip-consistent without any training: what flip consistency, and nothing else, gives.  Per clip, the same
with the predicted latent sequence projected through the frozen motion embedding, ``D_p(D_m(E_m(z_1..T)))``:
what pulling predictions onto the motion the embedding represents, and nothing else, gives, alone and after
symmetrising; the motion relations' losses are small only where predictions are such motion.  ``--target-seed N``
reads the target validation clips of the world with seed ``N``, as ``bench.ablation`` does.  Also the relation
transformers' own error on held-out mocap, in latent L1 and decoded (mm).  A diagnosis:
target labels are read, so nothing here may choose a setting.  Writes ``<out>/signal.md``.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import torch

from bench import cli
from bench.ablation import RELATIONS, SPACE_DEFAULT, add_stages_space_flag, dev_target, smoke_configs
from nlrd import skeleton
from nlrd.core import ClipSet, Stages
from nlrd.metrics import mpjpe, pa_mpjpe
from nlrd.pipeline import StageCache, heldout_mocap, load_stages, load_world, train_stages
from nlrd.relations import get_relation
from nlrd.train.common import augment_poses
from nlrd.train.relation import relation_latents, sample_raw


def arg_parser() -> argparse.ArgumentParser:
    parser = cli.script_parser("bench.nonlocal_signal", __doc__)
    parser.add_argument("--out", type=Path, default=Path("bench/out/nonlocal_signal"))
    parser.add_argument("--cache", type=Path, default=Path("bench/out/stage_cache"))
    parser.add_argument("--seed", type=int, default=0, help="source encoder seed")
    parser.add_argument("--frames", type=int, default=384, help="frames per domain")
    parser.add_argument("--source-steps", type=int, help=SPACE_DEFAULT)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--target-seed", type=int, default=None, help="target validation clips of this world seed")
    add_stages_space_flag(parser)
    return parser


def _corr(u: torch.Tensor, v: torch.Tensor) -> float:
    return torch.corrcoef(torch.stack([u, v]))[0, 1].item()


@torch.no_grad()
def domain_row(name: str, stages: Stages, clips: ClipSet, frames: int) -> str:
    """One markdown row: per-frame error and the three flip-consistency readouts with their correlations."""
    x = clips.images().flatten(0, 1)[:frames]
    y = clips.poses.flatten(0, 1)[:frames]
    prior, flip_t = stages.prior, stages.transformers["flip"]
    z, z_flipped = stages.encoder(x), stages.encoder(x.flip(-1))
    pose, pose_flipped = prior.decode(z), prior.decode(z_flipped)
    error = (pose - y).norm(dim=-1).mean(-1)
    latent = (flip_t(z) - z_flipped).abs().mean(-1)
    decoded = (prior.decode(flip_t(z)) - pose_flipped).norm(dim=-1).mean(-1)
    exact = (skeleton.flip(pose) - pose_flipped).norm(dim=-1).mean(-1)
    symmetrised = 0.5 * (pose + skeleton.flip(pose_flipped))
    cells = [
        f"{error.mean():.1f}",
        f"{mpjpe(symmetrised, y).item():.1f}",
        f"{pa_mpjpe(pose, y).item():.1f}",
        f"{pa_mpjpe(symmetrised, y).item():.1f}",
    ] + [
        f"{v.mean():.3f} ({_corr(v, error):+.2f})" if i == 0 else f"{v.mean():.1f} ({_corr(v, error):+.2f})"
        for i, v in enumerate((latent, decoded, exact))
    ]
    return f"| {name} | {' | '.join(cells)} |"


def first_clips(clips: ClipSet, frames: int) -> ClipSet:
    """The first clips holding ``frames`` frames (at least one clip): ``--frames`` per domain, in whole clips."""
    n = max(1, frames // clips.clip_len)
    return ClipSet(clips.frames[:n], clips.poses[:n], clips.fps, clips.eval_joints)


@torch.no_grad()
def projection_row(name: str, stages: Stages, clips: ClipSet) -> str:
    """One markdown row, per clip of T frames: MPJPE and PA-MPJPE of the prediction, of its projection through the
    motion embedding, of the symmetrised prediction and of the symmetrised projection."""
    x, y = clips.images(), clips.poses.flatten(0, 1)
    prior, motion = stages.prior, stages.motion

    def encode(frames: torch.Tensor) -> torch.Tensor:
        return stages.encoder(frames.flatten(0, 1)).unflatten(0, frames.shape[:2])

    z, z_flipped = encode(x), encode(x.flip(-1))
    plain, projected = (prior.decode(zs.flatten(0, 1)) for zs in (z, motion(z)))
    plain_flipped, projected_flipped = (prior.decode(zs.flatten(0, 1)) for zs in (z_flipped, motion(z_flipped)))
    predictions = (
        plain,
        projected,
        0.5 * (plain + skeleton.flip(plain_flipped)),
        0.5 * (projected + skeleton.flip(projected_flipped)),
    )
    cells = [f"{mpjpe(p, y).item():.1f} / {pa_mpjpe(p, y).item():.1f}" for p in predictions]
    return f"| {name} | {' | '.join(cells)} |"


@torch.no_grad()
def transformer_row(stages: Stages, mocap: torch.Tensor, name: str, clip_len: int) -> str:
    """Transformer error on held-out mocap vs the identity map, in latent L1 and in decoded pose (mm)."""
    relation = get_relation(name, clip_len)
    anchor, counterpart = relation_latents(
        stages.prior, stages.motion, relation, augment_poses(sample_raw(mocap, relation, 1024))
    )
    mapped = stages.transformers[name](anchor)

    def decode(code: torch.Tensor) -> torch.Tensor:
        latents = code if relation.level == "pose" else stages.motion.decode(code, clip_len)
        return stages.prior.decode(latents)

    cells = [
        f"{(mapped - counterpart).abs().mean():.3f}",
        f"{(anchor - counterpart).abs().mean():.3f}",
        f"{mpjpe(decode(mapped), decode(counterpart)):.1f}",
        f"{mpjpe(decode(anchor), decode(counterpart)):.1f}",
    ]
    return f"| {name} | {' | '.join(cells)} |"


def main() -> None:
    parser = arg_parser()
    args = parser.parse_args()
    command = cli.command(parser)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    configs = smoke_configs(source_steps=args.source_steps, space=args.stages_space)
    configs = replace(configs, source=replace(configs.source, seed=args.seed))
    cache = StageCache(args.cache)
    keys = train_stages(configs, RELATIONS, cache)
    stages = load_stages(cache, keys, RELATIONS)
    world = load_world(cache, keys.world)
    clip_len = configs.world.clip_len
    if args.target_seed is None:
        target_name, target_val = "target validation", world.target_val
    else:
        target_name, target_val = (
            f"target validation, world seed {args.target_seed}",
            dev_target(configs, args.target_seed)[1],
        )
    lines = [
        f"Flip-consistency signal of source encoder seed {args.seed} (`{command}`); in brackets the",
        "Pearson correlation with the frame's MPJPE.",
        "",
        "| frames | MPJPE (mm) | MPJPE of 0.5(p + flip(p_flipped)) | PA-MPJPE (mm) | PA-MPJPE of 0.5(p + "
        "flip(p_flipped)) | latent L1 T(z) vs z_flipped (the paper's loss) | decoded via T (mm) "
        "| exact pose flip (mm) |",
        "|---|---|---|---|---|---|---|---|",
        domain_row("source (training clips)", stages, world.source, args.frames),
        domain_row(target_name, stages, target_val, args.frames),
        "",
        "MPJPE / PA-MPJPE (mm) per clip of T frames, with the latent sequence projected through the motion "
        "embedding (`D_p(D_m(E_m(z)))`):",
        "",
        "| clips | prediction | motion-projected | symmetrised | symmetrised, then motion-projected |",
        "|---|---|---|---|---|",
        projection_row("source (training clips)", stages, first_clips(world.source, args.frames)),
        projection_row(target_name, stages, first_clips(target_val, args.frames)),
        "",
        "| relation transformer (held-out mocap) | latent L1, T(a) vs c | latent L1, a vs c | decoded, T(a) vs c (mm) "
        "| decoded, a vs c (mm) |",
        "|---|---|---|---|---|",
        *(transformer_row(stages, heldout_mocap(world), name, clip_len) for name in RELATIONS),
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "signal.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
