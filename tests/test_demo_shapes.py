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
    from jetgen.runtime.shapes import chamfer_one_sided, read_points

    view = write_depth_view(str(tmp_path), seed=3)
    with open(view["depth"], "rb") as handle:
        assert handle.read(25)[24] == 16  # 16-bit grey, millimetres
    with open(view["intrinsics"]) as handle:
        assert json.load(handle)["width"] == 320
    scan, info = rd.depth_points(view["depth"], view["intrinsics"])
    assert info["frame"] == "camera" and len(scan) == view["pixels"] > 500
    assert 0.7 * 0.15 <= view["scale"] <= 1.4 * 0.15
    assert np.allclose(read_points(view["original"]), view["whole_camera"], atol=1e-5)  # the whole, posed
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
    assert d["completed_cli"] == pytest.approx(d["completed"], rel=1e-3)  # --original: the CLI's own score agrees
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


def test_complete_draws_an_original_row_and_scores_against_it_when_the_whole_shape_is_given(shapes_bundle, tmp_path):
    from click.testing import CliRunner

    from jetgen.cli import main
    from jetgen.modalities.points.codec import cut_by_plane, write_points
    from jetgen.runtime import Model
    from jetgen.runtime.images import decode_png
    from jetgen.runtime.shapes import chamfer, read_points

    whole = Model.open(shapes_bundle).sample(1, seed=3)[0]
    write_points(str(tmp_path / "whole.ply"), whole)
    write_points(str(tmp_path / "part.ply"), cut_by_plane(whole, np.random.RandomState(0), 0.5)[0])
    base = ["complete", shapes_bundle, "--input", str(tmp_path / "part.ply"), "--steps", "5", "--json"]
    plain = CliRunner().invoke(main, base + ["--out", str(tmp_path / "a.npy"), "--png", str(tmp_path / "a.png")])
    given = CliRunner().invoke(main, base + ["--original", str(tmp_path / "whole.ply"), "--out",
                                             str(tmp_path / "b.npy"), "--png", str(tmp_path / "b.png")])
    assert plain.exit_code == 0 and given.exit_code == 0, plain.output + given.output
    assert "chamfer_to_original" not in json.loads(plain.output)
    report = json.loads(given.output)
    done = np.load(str(tmp_path / "b.npy")).reshape(-1, 3).astype(np.float64)
    truth = read_points(str(tmp_path / "whole.ply")).astype(np.float64)
    assert report["chamfer_to_original"] == pytest.approx(float(chamfer(done[None], truth[None])[0]), rel=1e-4)
    a, b = (decode_png((tmp_path / name).read_bytes()) for name in ("a.png", "b.png"))
    assert b.shape[0] > a.shape[0] * 1.3 and b.shape[1] == a.shape[1]  # a third row
    bad = CliRunner().invoke(main, base + ["--original", str(tmp_path / "nope.ply"), "--out", str(tmp_path / "c.npy")])
    assert bad.exit_code == 1 and "Traceback" not in bad.output and "nope.ply" in bad.output, bad.output
    images = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "bundle-v1", "cvae-ac40d87.jetgen")
    bad = CliRunner().invoke(main, ["complete", images, "--input", str(tmp_path / "a.npy"), "--mask-region",
                                    "bottom-half", "--original", str(tmp_path / "whole.ply"), "--out",
                                    str(tmp_path / "d.png")])
    assert bad.exit_code == 1 and "--original is for point-cloud bundles" in bad.output, bad.output
