"""How much of an encoder's error can each non-local loss see?  Its rise above its floor, per kind and size of error.

``python -m bench.loss_sight --space spaces/smoke.yaml --out bench/out/loss_sight``

A non-local loss compares ``R(T_r(E(anchor)))`` with ``R(E(counterpart))`` for the encoder's predictions (``R``: the
``--nonlocal-space`` readout of ``nlrd.train.adapt.readouts``).  On the truth itself it is not zero: that floor is
the relation transformer's own error.  An encoder error helps adaptation only through what it adds to the loss.
Here the encoder's predictions are held-out mocap windows moved by an error of a known kind and size, all of it
plausible: the truth's prior latents plus noise, decoded (every pose an encoder predicts through ``D_p`` is one), the
noise scaled so that the decoded poses lie ``--rms`` mm (RMS joint error) from the decoded truth.  Kinds:

- ``offset`` (constant over the window), ``slow`` (DCT components 1 and 2 of the window) and ``fast`` (drawn
  independently per frame): an encoder that works frame by frame and commutes with the relation's spatial
  transform, so the counterpart's prediction is the anchor's, reordered and transformed.  What ``nlrd.error_shares``
  calls offset, slow and fast;
- ``independent``: the counterpart's prediction carries its own fast error, as an encoder that does not commute with
  the spatial transform (flip, rotation) would predict: what ``nlrd.error_shares`` calls mirror-breaking.  Only
  for relations with a spatial transform; a frame-wise encoder cannot break a pure reordering.

Prints and writes ``<out>/loss_sight.md`` and ``.json``: per relation the floor and the rise for each kind and size
(pose readout: mean absolute coordinate difference in mm; latent readout: latent L1).  Reads mocap only, no label
of either domain.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import torch
from torch import nn

from bench import cli
from bench.stage_quality import add_space_flags, space_stages
from nlrd.error_shares import dct_matrix
from nlrd.pipeline import (
    StageCache,
    heldout_mocap,
    load_prior_and_motion,
    load_transformers,
    load_world,
    train_stages,
)
from nlrd.relations import RELATION_NAMES, Relation, get_relation
from nlrd.train.adapt import NONLOCAL_SPACES, POSE_SCALE_MM, Readout, readouts
from nlrd.train.relation import relation_latents

#: Temporal kinds of error a frame-wise, equivariant encoder makes, and the one it would make if it did not commute.
KINDS = ("offset", "slow", "fast", "independent")
#: The stages the losses need (no source encoder: no image is read).
STAGES = ("world", "prior", "motion", "relations")
#: Halvings of the bracket of the latent step: the RMS lands within about 0.1% of the size asked.
BISECTIONS = 16


def arg_parser() -> argparse.ArgumentParser:
    parser = cli.script_parser("bench.loss_sight", __doc__)
    parser.add_argument("--cache", type=Path, default=Path("bench/out/stage_cache"))
    parser.add_argument("--out", type=Path, default=Path("bench/out/loss_sight"))
    parser.add_argument("--relations", nargs="+", choices=RELATION_NAMES, help="default: the space's candidates")
    parser.add_argument("--rms", type=float, nargs="+", default=[25.0, 50.0, 100.0], help="error sizes, mm")
    parser.add_argument("--nonlocal-space", choices=NONLOCAL_SPACES, default="pose", help="the losses' readout")
    parser.add_argument("--windows", type=int, default=256, help="held-out mocap windows per relation")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    add_space_flags(parser)
    return parser


def noise(kind: str, shape: tuple[int, int, int], generator: torch.Generator) -> torch.Tensor:
    """Unscaled latent noise ``(B, W, D)`` of a temporal ``kind``: ``offset`` the same in every frame, ``slow``
    DCT components 1 and 2 of the window, ``fast`` (and ``independent``) independent per frame."""
    b, w, d = shape
    if kind == "offset":
        return torch.randn(b, 1, d, generator=generator).expand(shape).clone()
    if kind == "slow":
        coefficients = torch.zeros(shape)
        coefficients[:, 1:3] = torch.randn(b, min(2, w - 1), d, generator=generator)
        return torch.einsum("kt,bkd->btd", dct_matrix(w).float(), coefficients)
    if kind in ("fast", "independent"):
        return torch.randn(shape, generator=generator)
    raise ValueError(f"unknown kind {kind!r}; allowed: {', '.join(KINDS)}")


@torch.no_grad()
def plausible(prior: nn.Module, latents: torch.Tensor, direction: torch.Tensor, rms_mm: float) -> torch.Tensor:
    """``D_p(latents + s * direction)`` ``(B, W, 17, 3)`` mm, with ``s`` found by bisection so that the decoded poses
    are ``rms_mm`` (RMS joint error over all frames) from ``D_p(latents)``."""
    flat, step = latents.flatten(0, 1), direction.flatten(0, 1)
    clean = prior.decode(flat)

    def decoded(scale: float) -> tuple[torch.Tensor, float]:
        poses = prior.decode(flat + scale * step)
        return poses, (poses - clean).square().sum(-1).mean().sqrt().item()

    low, high = 0.0, 1.0
    while decoded(high)[1] < rms_mm:
        low, high = high, 2 * high
        if high > 1e4:
            raise ValueError(f"no latent step reaches {rms_mm} mm")
    for _ in range(BISECTIONS):
        middle = (low + high) / 2
        low, high = (middle, high) if decoded(middle)[1] < rms_mm else (low, middle)
    return decoded((low + high) / 2)[0].unflatten(0, latents.shape[:2])


@torch.no_grad()
def relation_loss(
    prior: nn.Module,
    motion: nn.Module,
    transformer: nn.Module,
    relation: Relation,
    readout: Readout,
    scale: float,
    anchor_side: torch.Tensor,
    counterpart_side: torch.Tensor,
) -> float:
    """The non-local loss ``mean |R(T_r(E(a))) - R(E(c))|`` times ``scale`` with ``a`` the relation's anchor of
    ``anchor_side`` and ``c`` its counterpart of ``counterpart_side`` (predicted windows ``(B, window, 17, 3)`` mm;
    pose level: every frame of them)."""
    if relation.level == "pose":
        anchor_side, counterpart_side = anchor_side.flatten(0, 1), counterpart_side.flatten(0, 1)
    anchor, counterpart = relation_latents(prior, motion, relation, anchor_side)
    if counterpart_side is not anchor_side:
        counterpart = relation_latents(prior, motion, relation, counterpart_side)[1]
    return scale * (readout(transformer(anchor)) - readout(counterpart)).abs().mean().item()


def mocap_windows(mocap: torch.Tensor, length: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` random ``length``-frame windows ``(count, length, 17, 3)`` of ``(M, L, 17, 3)`` mocap."""
    sequence = torch.randint(mocap.shape[0], (count,), generator=generator)
    start = torch.randint(mocap.shape[1] - length + 1, (count,), generator=generator)
    return mocap[sequence[:, None], start[:, None] + torch.arange(length)]


@torch.no_grad()
def sight(
    prior: nn.Module,
    motion: nn.Module,
    transformers: dict[str, nn.Module],
    mocap: torch.Tensor,
    names: Sequence[str],
    clip_len: int,
    sizes: Sequence[float],
    space: str = "pose",
    windows: int = 256,
    seed: int = 0,
) -> dict[str, dict]:
    """``{relation: {"floor": loss on the truth, "rise": {kind: {size: loss - floor}}}}``; ``independent`` is None
    for relations without a spatial transform."""
    generator = torch.Generator().manual_seed(seed)
    by_level = readouts(space, prior, motion, clip_len)
    scale = POSE_SCALE_MM if space == "pose" else 1.0
    result: dict[str, dict] = {}
    for name in names:
        relation = get_relation(name, clip_len)
        raw = mocap_windows(mocap, relation.window if relation.level == "motion" else clip_len, windows, generator)
        latents = prior.encode(raw.flatten(0, 1)).unflatten(0, raw.shape[:2])
        truth = prior.decode(latents.flatten(0, 1)).unflatten(0, raw.shape[:2])
        loss = partial(relation_loss, prior, motion, transformers[name], relation, by_level[relation.level], scale)
        floor = loss(truth, truth)
        rise: dict[str, dict | None] = {}
        for kind in KINDS:
            if kind == "independent" and relation.spatial == "none":
                rise[kind] = None
                continue
            rise[kind] = {}
            for size in sizes:
                moved = plausible(prior, latents, noise(kind, latents.shape, generator), size)
                other = (
                    plausible(prior, latents, noise(kind, latents.shape, generator), size)
                    if kind == "independent"
                    else moved
                )
                rise[kind][size] = loss(moved, other) - floor
        result[name] = {"level": relation.level, "floor": floor, "rise": rise}
    return result


def table(result: dict[str, dict], sizes: Sequence[float]) -> str:
    """Markdown: one row per relation, its floor, then the rise for each kind at each size."""
    heads = [f"{kind} {size:g} mm" for size in sizes for kind in KINDS]
    lines = ["| relation | level | floor | " + " | ".join(heads) + " |", "|---|---|---|" + "---|" * len(heads)]
    for name, row in result.items():
        cells = [
            "—" if row["rise"][kind] is None else f"{row['rise'][kind][size]:+.2f}" for size in sizes for kind in KINDS
        ]
        lines.append(f"| {name} | {row['level']} | {row['floor']:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = arg_parser()
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec, configs = space_stages(parser, args)
    names = args.relations or spec.relations.candidates
    cache = StageCache(args.cache)
    start = time.perf_counter()
    keys = train_stages(configs, names, cache, only=STAGES)
    prior, motion = load_prior_and_motion(cache, keys)
    transformers = load_transformers(cache, keys, names)
    mocap = heldout_mocap(load_world(cache, keys.world)).float()
    result = sight(
        prior, motion, transformers, mocap, names, configs.world.clip_len, args.rms, args.nonlocal_space, args.windows
    )
    seconds = round(time.perf_counter() - start, 1)
    command = cli.command(parser)
    markdown = table(result, args.rms)
    unit = "mm (mean absolute coordinate difference of decoded poses)" if args.nonlocal_space == "pose" else "latent L1"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "loss_sight.md").write_text(
        f"Non-local losses on held-out mocap: floor (the truth) and rise for a plausible error of each kind and size, "
        f"in {unit} (`{command}`, {seconds} s).\n\n{markdown}\n"
    )
    payload = {"command": command, "seconds": seconds, "unit": unit, "result": result}
    (args.out / "loss_sight.json").write_text(json.dumps(payload, indent=2))
    print(f"{markdown}\n({seconds} s, {unit})")


if __name__ == "__main__":
    main()
