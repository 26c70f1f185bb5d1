"""Stage quality and reference lines of a space's shared stages, with any stage field changed: the budget study.

``python -m bench.stage_quality --all-relations --set motion.steps=600 --set relation.residual=true``

Trains (or finds in ``--cache``) the stages of ``--space`` (default ``spaces/smoke.yaml``) with each ``--set
STAGE.FIELD=VALUE`` applied (``STAGE``: world, prior, motion, relation, source), then measures them with
``nlrd.pipeline.stage_quality`` on data no stage trained on and prints each figure against its bar
(``nlrd.quality``), the missed bars, the reference lines (mean pose, source only) and the seconds each stage
trained.  ``--all-relations`` trains a transformer for every catalogue relation instead of the space's candidates.
Writes ``<out>/stage_quality.json``.  No Ray: plain nlrd calls.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from bench import cli
from bench.ablation import StageTimer
from nlrd.config import ConfigError
from nlrd.pipeline import StageCache, StageConfigs, reference_lines, stage_quality, train_stages
from nlrd.quality import checked_figures, warnings
from nlrd.relations import RELATION_NAMES
from search.space import SearchSpec, SpaceError, load_space

#: The stage sections ``--set`` may change, as ``StageConfigs`` names them.
STAGES = ("world", "prior", "motion", "relation", "source")


def arg_parser() -> argparse.ArgumentParser:
    parser = cli.script_parser("bench.stage_quality", __doc__)
    parser.add_argument("--cache", type=Path, default=Path("bench/out/stage_cache"))
    parser.add_argument("--out", type=Path, default=Path("bench/out/stage_quality"))
    parser.add_argument("--all-relations", action="store_true", help="every catalogue relation, not the space's")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    add_space_flags(parser)
    return parser


def add_space_flags(parser: argparse.ArgumentParser) -> None:
    """``--space`` (default the smoke space) and the repeatable ``--set STAGE.FIELD=VALUE`` of its stages."""
    parser.add_argument("--space", type=Path, default=Path("spaces/smoke.yaml"))
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="STAGE.FIELD=VALUE",
        help=f"a stage config field ({', '.join(STAGES)}), e.g. relation.steps=1000 (repeatable)",
    )


def space_stages(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[SearchSpec, StageConfigs]:
    """The space of ``--space`` and its stages with every ``--set`` applied; a bad file or item exits with status 2
    and the error, as argparse does for a bad flag."""
    try:
        spec = load_space(args.space)
        return spec, apply_overrides(spec.stages, args.overrides)
    except (SpaceError, ValueError) as exc:
        parser.exit(2, f"error: {exc}\n")


def apply_overrides(configs: StageConfigs, items: list[str]) -> StageConfigs:
    """``configs`` with each ``STAGE.FIELD=VALUE`` applied; a bad item raises ``ValueError`` naming it."""
    for item in items:
        name, sep, text = item.partition("=")
        stage, _, field = name.partition(".")
        if not sep or stage not in STAGES:
            raise ValueError(f"--set {item!r}: expected STAGE.FIELD=VALUE with STAGE one of {', '.join(STAGES)}")
        section = getattr(configs, stage)
        names = [f.name for f in dataclasses.fields(section)]
        if field not in names:
            raise ValueError(f"--set {item!r}: {stage} has the fields {', '.join(names)}")
        try:
            value = cli.field_value(text, getattr(section, field))
            configs = dataclasses.replace(configs, **{stage: dataclasses.replace(section, **{field: value})})
        except (ValueError, ConfigError) as exc:
            raise ValueError(f"--set {item!r}: {exc}") from None
    return configs


def main() -> None:
    parser = arg_parser()
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec, configs = space_stages(parser, args)
    relations = RELATION_NAMES if args.all_relations else spec.relations.candidates
    cache = StageCache(args.cache)
    timer = StageTimer()
    keys = train_stages(configs, relations, cache, report=timer)
    quality = stage_quality(configs, cache, keys)
    references = reference_lines(cache, keys)
    for label, value, bar in checked_figures(quality):
        fitted = bar.fitted_value(quality)
        trained_on = "" if fitted is None else f"  (on its training mocap {fitted:.3f})"
        print(f"{'ok    ' if value <= bar.limit else 'MISSED'} {value:7.3f} (bar {bar.limit:g})  {label}{trained_on}")
    for line in warnings(quality):
        print(f"[warning] {line}")
    for name, metrics in references.items():
        print(f"[reference] {name}: target MPJPE {metrics['mpjpe']:.1f} mm, PA-MPJPE {metrics['pa_mpjpe']:.1f} mm")
    print("[time] " + ", ".join(f"{stage} {seconds:.0f} s" for stage, seconds in timer.seconds.items()))
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {
        "command": cli.command(parser),
        "stages": dataclasses.asdict(configs),
        "quality": quality.as_dict(),
        "warnings": warnings(quality),
        "references": references,
        "stage_seconds": timer.seconds,
    }
    (args.out / "stage_quality.json").write_text(json.dumps(payload, indent=2, default=str))


if __name__ == "__main__":
    main()
