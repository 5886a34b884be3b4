"""make demo's 3D depth part: a depth view of a held-out shape written as a camera gives it, completed
by the CLI in a process without torch, scored against the true pose, and shown in the report."""
import json
import os

import numpy as np
import pytest

from jetgen.modalities.points import depth as rd


@pytest.fixture(scope="module")
def shapes_bundle(tmp_path_factory):
    from tests.shapes_fixtures import shared_bundle

    return shared_bundle(tmp_path_factory)[0]


def test_the_depth_view_is_a_16_bit_png_and_camera_file_that_back_project_onto_the_shape(tmp_path):
    from jetgen.demo_shapes import write_depth_view
    from jetgen.runtime.shapes import chamfer_one_sided

    view = write_depth_view(str(tmp_path), seed=3)
    with open(view["depth"], "rb") as handle:
        assert handle.read(25)[24] == 16  # 16-bit grey, millimetres
    with open(view["intrinsics"]) as handle:
        assert json.load(handle)["width"] == 320
    scan, info = rd.depth_points(view["depth"], view["intrinsics"])
    assert info["frame"] == "camera" and len(scan) == view["pixels"] > 500
    assert 0.7 * 0.15 <= view["scale"] <= 1.4 * 0.15
    # the scan lies on the posed whole shape (sensor noise of millimetres, well under 1% of its size)
    near = chamfer_one_sided(scan[None].astype(np.float64), view["whole_camera"][None].astype(np.float64))[0]
    assert np.sqrt(near) < 0.05 * view["scale"]
    other = write_depth_view(str(tmp_path / "b"), seed=4)
    assert other["yaw_deg"] != view["yaw_deg"]


def test_the_demo_completes_the_depth_view_without_torch_and_reports_it(shapes_bundle, tmp_path):
    from jetgen.demo import Step, _pictures
    from jetgen.demo_shapes import SHEETS, depth_completion, report_lines

    log = []
    d = depth_completion(Step(log), str(tmp_path), shapes_bundle, seed=0, centroid_of=lambda name: np.zeros((8, 3)))
    assert log[0]["torch_free"] and log[0]["command"].startswith("jetgen complete") and "--depth" in log[0]["command"]
    assert d["input_points"] == d["pixels"] > 500 and np.isfinite(d["completed"]) and d["completed"] > 0
    assert d["scale_true"] > 0 and d["scale_found"] > 0 and 0 <= d["rotation_error_deg"] <= 180
    assert d["class_centroid"] > d["completed"]  # a point at the origin is no shape
    assert os.path.getsize(str(tmp_path / "depth-completion.png")) > 1000
    s = {"eval": {}, "check": {"deployable": True, "findings": 0}, "completion": [], "train_flags": "", "depth": d}
    text = "\n".join(report_lines(s))
    assert "--depth depth-view/depth.png --intrinsics depth-view/camera.json" in text
    assert "{:.2f}".format(d["completed"]) in text
    for _, path in SHEETS:
        assert "]({})".format(path) in text
    shown = _pictures(str(tmp_path))  # the 16-bit depth PNG is data, not a picture; its preview is one
    assert "depth-completion.png" in shown and os.path.join("depth-view", "depth-preview.png") in shown
    assert os.path.join("depth-view", "depth.png") not in shown
