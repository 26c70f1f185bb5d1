"""Non-localness of every catalogue relation on the proxy benchmark's held-out mocap, as the paper's bar plots.

``python -m bench.nonlocalness --out bench/out/nonlocalness``

The stages are those of ``bench/ablation.py`` (the shared stages of ``spaces/smoke.yaml``), found in or trained
into ``--cache``.  For each relation: d^z (pose level, through ``E_p``) or d^v (motion level, through
``E_m E_p``), raw and divided by the mean distance between random pairs of the same kind of code; mean +- std over
``--draws`` generator seeds, which draw the random pairs and, where the held-out samples outnumber ``--max-samples``,
the subset measured (with fewer, every sample is used and the raw distance does not vary).  Writes
``<out>/nonlocalness.md``, ``nonlocalness.json`` and ``nonlocalness.png``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from bench import cli, figures
from bench.ablation import SPACE_DEFAULT, add_stages_space_flag, mean_std, smoke_configs
from nlrd.nonlocalness import NonLocalness, nonlocalness
from nlrd.pipeline import StageCache, heldout_mocap, load_prior_and_motion, load_world, train_stages
from nlrd.relations import RELATION_NAMES, catalogue

#: Bar colour per level.
COLOURS = {"pose": "tab:blue", "motion": "tab:orange"}


def arg_parser() -> argparse.ArgumentParser:
    parser = cli.script_parser("bench.nonlocalness", __doc__)
    parser.add_argument("--out", type=Path, default=Path("bench/out/nonlocalness"))
    parser.add_argument("--cache", type=Path, default=Path("bench/out/stage_cache"))
    parser.add_argument("--draws", type=int, default=3, help="generator seeds 0..draws-1 (pairs and subsets)")
    parser.add_argument("--max-samples", type=int, default=2048)
    parser.add_argument("--image-size", type=int, help=SPACE_DEFAULT)
    parser.add_argument("--source-steps", type=int, help=SPACE_DEFAULT)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    add_stages_space_flag(parser)
    return parser


def measure(args: argparse.Namespace) -> dict[str, list[NonLocalness]]:
    """Every catalogue relation's non-localness, once per draw."""
    configs = smoke_configs(image_size=args.image_size, source_steps=args.source_steps, space=args.stages_space)
    cache = StageCache(args.cache)
    keys = train_stages(configs, RELATION_NAMES, cache, only=("world", "prior", "motion"))
    prior, motion = load_prior_and_motion(cache, keys)
    mocap = heldout_mocap(load_world(cache, keys.world))
    relations = catalogue(configs.world.clip_len)
    return {
        name: [
            nonlocalness(
                prior,
                motion,
                mocap,
                relations[name],
                generator=torch.Generator().manual_seed(draw),
                max_samples=args.max_samples,
            )
            for draw in range(args.draws)
        ]
        for name in RELATION_NAMES
    }


def table(results: dict[str, list[NonLocalness]]) -> str:
    """Markdown: one row per relation, sorted by normalised non-localness within each level."""
    lines = [
        "| relation | level | distance | raw | random-pair baseline | normalised |",
        "|---|---|---|---|---|---|",
    ]
    for name in _order(results):
        draws = results[name]
        level = draws[0].level
        cells = [mean_std([getattr(d, k) for d in draws]) for k in ("raw", "baseline", "normalised")]
        raw, base, norm = (f"{m:.3f} ± {s:.3f}" for m, s in cells)
        lines.append(f"| {name} | {level} | {'d^z' if level == 'pose' else 'd^v'} | {raw} | {base} | {norm} |")
    return "\n".join(lines)


def _order(results: dict[str, list[NonLocalness]]) -> list[str]:
    """Pose level first, then motion level; descending normalised non-localness within each."""
    return sorted(
        results, key=lambda n: (results[n][0].level != "pose", -statistics.fmean(d.normalised for d in results[n]))
    )


def plot(results: dict[str, list[NonLocalness]], path: Path) -> None:
    """Two bar panels, raw and normalised, one bar per relation coloured by level, std over draws as error bars."""
    names = _order(results)
    colours = [COLOURS[results[n][0].level] for n in names]
    plt = figures.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    panels = (("raw", "raw latent distance (d^z or d^v)"), ("normalised", "normalised by random-pair distance"))
    for ax, (key, title) in zip(axes, panels, strict=True):
        stats = [mean_std([getattr(d, key) for d in results[n]]) for n in names]
        ax.bar(names, [m for m, _ in stats], yerr=[s for _, s in stats], color=colours, capsize=3)
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=45)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
    axes[1].axhline(1.0, color="grey", linestyle="--", linewidth=1)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in COLOURS.values()]
    axes[0].legend(handles, [f"{level} level" for level in COLOURS], loc="upper right")
    fig.suptitle("Non-localness of the catalogue relations (held-out proxy mocap, frozen E_p / E_m)")
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = arg_parser()
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    results = measure(args)
    markdown = table(results)
    command = f"{parser.prog} --out {args.out} --draws {args.draws}"
    (args.out / "nonlocalness.md").write_text(
        f"Non-localness on held-out mocap, mean ± std over {args.draws} generator seeds (`{command}`).\n\n{markdown}\n"
    )
    payload = {name: [vars(d) for d in draws] for name, draws in results.items()}
    (args.out / "nonlocalness.json").write_text(json.dumps(payload, indent=2))
    plot(results, args.out / "nonlocalness.png")
    print(markdown)


if __name__ == "__main__":
    main()
