"""BVH files through the loader: which load, with which up axis, how tall the person stands, and why the others fail.

    .venv/bin/python -m bench.bvh_files /path/to/cmu-bvh

reads every file of the folder matching ``--pattern`` with :func:`nlrd.data.load_bvh` as a ``bvh`` mocap part would
(``--units``, ``--mapping``), trying each axis of ``--up`` in turn (default ``y`` then ``z``), and reports per file:
the up axis it loaded with, its frames, the person's height (median over frames of the head-top above the ankles,
after unit inference), the share of frames whose joints keep a person's handedness (the left hip, the trunk and the
left foot in a right-handed frame: a mirrored rig or swapped side names read near 0), or the loader's error.  Check a
mocap folder with it before a long stage job: a data part checks only its first few files.  Each file is judged
alone, so a take that lies down fails on ``up`` (or reads as standing along another axis), where the folder's
loader takes it as long as most of the folder stands.  Writes ``bvh_files.json`` and ``bvh_files.md`` into
``--out``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from bench import cli
from nlrd.data import DatasetError, load_bvh
from nlrd.data.bvh import UNITS_MM, UP_AXES
from nlrd.skeleton import JOINT_NAMES

#: The loader's message when a figure stands along another axis than the one tried.
NOT_UPRIGHT = "does not stand along"


def handedness(joints: np.ndarray) -> np.ndarray:
    """Per frame, whether (left hip - right hip, pelvis -> neck, left ankle -> left foot) is right-handed, as it is
    for a person in our skeleton (``tests/test_data_bvh.py`` checks the same on the loader)."""
    at = {name: joints[:, i] for i, name in enumerate(JOINT_NAMES)}
    across, up = at["l_hip"] - at["r_hip"], at["neck"] - at["pelvis"]
    return np.linalg.det(np.stack([across, up, at["l_foot"] - at["l_ankle"]], axis=-1)) > 0


def check_file(path: Path, ups: list[str], units: str | None, mapping: str | None) -> dict[str, Any]:
    """One file's row: loaded with the first of ``ups`` that works, or the error that stopped it."""
    errors: dict[str, str] = {}
    for up in ups:
        try:
            sequence = load_bvh(path, fps=None, units=units, mapping=mapping, up=up)
        except DatasetError as exc:
            errors[up] = str(exc).removeprefix(f"{path}: ")
            continue
        joints = sequence.joints.numpy()
        ankles = joints[:, [JOINT_NAMES.index("l_ankle"), JOINT_NAMES.index("r_ankle")], 2].mean(axis=1)
        height = np.median(joints[:, JOINT_NAMES.index("head_top"), 2] - ankles) / 1000
        return {
            "up": up,
            "frames": len(sequence),
            "fps": round(sequence.fps, 2),
            "height_m": round(float(height), 3),
            "handedness": round(float(handedness(joints).mean()), 3),
        }
    other = [message for message in errors.values() if NOT_UPRIGHT not in message]
    return {"error": (other or list(errors.values()))[0]}


def markdown(header: str, folder: Path, rows: dict[str, dict[str, Any]]) -> str:
    loaded = sum("error" not in row for row in rows.values())
    lines = [
        f"# BVH files of `{folder}`",
        "",
        header,
        "",
        f"{loaded} of {len(rows)} files load.",
        "",
        "| file | up | frames | fps | height (m) | frames with a person's handedness | error |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        if "error" in row:
            lines.append(f"| `{name}` | | | | | | {row['error'][:300]} |")
        else:
            cells = (row["up"], row["frames"], row["fps"], row["height_m"], f"{row['handedness']:.0%}")
            lines.append(f"| `{name}` | " + " | ".join(map(str, cells)) + " | |")
    return "\n".join(lines) + "\n"


def arg_parser() -> argparse.ArgumentParser:
    parser = cli.script_parser("bench.bvh_files", __doc__)
    parser.add_argument("folder", type=Path, help="a folder of BVH files")
    parser.add_argument("--pattern", default="**/*.bvh", help="files under the folder (default **/*.bvh)")
    parser.add_argument("--up", nargs="+", choices=list(UP_AXES), default=["y", "z"], help="up axes, tried in turn")
    parser.add_argument("--units", choices=list(UNITS_MM), help="the file unit (default: inferred per file)")
    parser.add_argument("--mapping", help="a YAML joint mapping {our_joint: bvh_joint}")
    parser.add_argument("--out", type=Path, default=Path("bench/out/bvh_files"))
    return parser


def main() -> None:
    parser = arg_parser()
    args = parser.parse_args()
    paths = sorted(p for p in args.folder.glob(args.pattern) if p.is_file())
    if not paths:
        parser.error(f"{args.folder}: no file matches {args.pattern!r}")
    rows = {str(p.relative_to(args.folder)): check_file(p, args.up, args.units, args.mapping) for p in paths}
    args.out.mkdir(parents=True, exist_ok=True)
    header = cli.run_header(parser)
    record = {"header": header, "folder": str(args.folder), "files": rows}
    cli.write_result(args.out, "bvh_files", record, markdown(header, args.folder, rows))


if __name__ == "__main__":
    main()
