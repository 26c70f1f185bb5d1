"""The BVH-folder check: a y-up file, a z-up file, a mirrored rig and a rig with unknown names, reported per file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench import bvh_files
from tests.test_data_bvh import STANDING, bvh_text, common_skeleton, joints_of, write, z_up_skeleton


def test_every_file_gets_a_row_with_its_up_axis_height_and_handedness_or_its_error(tmp_path: Path, monkeypatch):
    folder = tmp_path / "mocap"
    folder.mkdir()
    write(folder, bvh_text(common_skeleton(), [STANDING] * 3), "a_y_up.bvh")
    write(folder, bvh_text(z_up_skeleton(), [{"Hips": {"Zposition": 95.0}}] * 2), "b_z_up.bvh")
    mirrored = common_skeleton()
    for j in joints_of(mirrored):  # the side names swapped: the rig's "left" is the person's right
        j.name = j.name.replace("Left", "Side").replace("Right", "Left").replace("Side", "Right")
    write(folder, bvh_text(mirrored, [STANDING]), "c_mirrored.bvh")
    unknown = common_skeleton()
    for j in joints_of(unknown):
        j.name = j.name.replace("LeftUpLeg", "L_Thigh")
    write(folder, bvh_text(unknown, [STANDING]), "d_unknown.bvh")
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["bvh_files", str(folder), "--out", str(out)])
    bvh_files.main()
    rows = json.loads((out / "bvh_files.json").read_text())["files"]
    assert rows["a_y_up.bvh"] == {"up": "y", "frames": 3, "fps": 30.0, "height_m": 1.65, "handedness": 1.0}
    assert rows["b_z_up.bvh"]["up"] == "z" and rows["b_z_up.bvh"]["height_m"] == 1.65
    assert rows["c_mirrored.bvh"]["handedness"] == 0.0
    assert rows["d_unknown.bvh"]["error"].startswith("cannot map 1 of our joints: l_hip")
    text = (out / "bvh_files.md").read_text()
    assert "3 of 4 files load." in text and "| `b_z_up.bvh` | z | 2 |" in text
