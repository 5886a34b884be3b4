"""Depth images to clouds (jetgen.modalities.points.depth), the z-buffer rasteriser and depth renderer
(jetgen.modalities.points.raster), and completion with an unknown pose (jetgen.modalities.points.pose): camera JSON
layouts, refusals, back-projection, a rendered view back-projected onto its mesh, the transform's
gradient against finite differences, and a known similarity transform recovered from a rendered scan."""
import json
import os

import numpy as np
import pytest

from jetgen.errors import JetgenError
from jetgen.modalities.points import depth as rd
from jetgen.modalities.points import pose
from jetgen.runtime.images import decode_png, write_png
from jetgen.modalities.points.raster import render_depth, render_mesh_view
from jetgen.runtime.shapes import chamfer_one_sided, read_points

CAM = rd.Intrinsics(200.0, 210.0, 79.5, 59.5, 160, 120)


def box(lo, hi):
    """A closed axis-aligned box mesh: vertices (8, 3), faces (12, 3) wound outwards."""
    (x0, y0, z0), (x1, y1, z1) = lo, hi
    v = np.array([[x, y, z] for x in (x0, x1) for y in (y0, y1) for z in (z0, z1)], dtype=np.float64)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    return v, np.array([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))], dtype=np.int64)


def merge(*meshes):
    vs, fs, n = [], [], 0
    for v, f in meshes:
        vs.append(v)
        fs.append(f + n)
        n += len(v)
    return np.concatenate(vs), np.concatenate(fs)


def surface_points(vertices, faces, n, seed=0):
    """``n`` points spread over a mesh's surface by area (float64 (n, 3))."""
    rng = np.random.RandomState(seed)
    tri = vertices[faces]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    pick = rng.choice(len(faces), n, p=area / area.sum())
    u, v = rng.uniform(size=(2, n))
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    t = tri[pick]
    return t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])


def write_json(path, obj):
    path.write_text(json.dumps(obj))
    return str(path)


# -- camera files --------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", [
    {"fx": 200, "fy": 210, "cx": 79.5, "cy": 59.5, "width": 160, "height": 120},
    {"width": 160, "height": 120, "fx": 200, "fy": 210, "ppx": 79.5, "ppy": 59.5, "model": "brown_conrady"},
    {"width": 160, "height": 120, "K": [200, 0, 79.5, 0, 210, 59.5, 0, 0, 1]},  # ROS CameraInfo: row-major
    {"width": 160, "height": 120, "intrinsic_matrix": [200, 0, 0, 0, 210, 0, 79.5, 59.5, 1]},  # Open3D: column-major
    {"camera_matrix": [[200, 0, 79.5], [0, 210, 59.5], [0, 0, 1]], "width": 160, "height": 120},
    {"intrinsics": {"fx": 200, "fy": 210, "cx": 79.5, "cy": 59.5, "width": 160, "height": 120}},
])
def test_the_common_camera_json_layouts_give_the_same_intrinsics(tmp_path, layout):
    cam = rd.read_intrinsics(write_json(tmp_path / "cam.json", layout))
    assert (cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height) == (200, 210, 79.5, 59.5, 160, 120)


def test_bad_camera_files_are_refused_with_a_sentence(tmp_path):
    with pytest.raises(JetgenError, match="No intrinsics file"):
        rd.read_intrinsics(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(JetgenError, match="as JSON"):
        rd.read_intrinsics(str(bad))
    with pytest.raises(JetgenError, match="no camera intrinsics"):
        rd.read_intrinsics(write_json(tmp_path / "a.json", {"width": 10}))
    with pytest.raises(JetgenError, match="focal lengths must be positive"):
        rd.read_intrinsics(write_json(tmp_path / "b.json", {"fx": 0, "fy": 1, "cx": 1, "cy": 1}))
    with pytest.raises(JetgenError, match="skew"):
        rd.read_intrinsics(write_json(tmp_path / "c.json", {"K": [[200, 3, 80], [0, 200, 60], [0, 0, 1]]}))
    cam = rd.read_intrinsics(write_json(tmp_path / "d.json", {"fx": 200, "fy": 200, "cx": 319.5, "cy": 239.5,
                                                              "width": 640, "height": 480}))
    with pytest.raises(JetgenError, match="for a 640x480 image but the depth image is 160x120"):
        rd.check_intrinsics(cam, (120, 160))
    with pytest.raises(JetgenError, match="principal point"):
        rd.check_intrinsics(rd.Intrinsics(200, 200, 319.5, 239.5), (120, 160))
    with pytest.raises(JetgenError, match="not a rotation"):
        rd.read_extrinsics(write_json(tmp_path / "t.json", {"T": np.diag([2.0, 1, 1, 1]).tolist()}))


# -- depth files ---------------------------------------------------------------------------------
def test_a_16_bit_png_back_projects_with_the_pinhole_model(tmp_path):
    depth = np.zeros((120, 160))
    depth[30:50, 100:130] = 1.234
    depth[35, 110] = 0.0  # no reading: dropped
    path = str(tmp_path / "d.png")
    rd.write_depth_png(path, depth)
    back = rd.read_depth(path)
    assert back.dtype == np.float32 and back.shape == (120, 160)
    with open(path, "rb") as handle:  # the built-in reader (no pillow) gets the same millimetres
        assert np.array_equal(decode_png(handle.read()), np.round(depth * 1000).astype(np.uint16))
    np.testing.assert_allclose(back, depth, atol=1e-6)
    points = rd.backproject(back, CAM)
    assert len(points) == 20 * 30 - 1
    v, u = 30, 100  # the first pixel, row-major
    np.testing.assert_allclose(points[0], [(u - 79.5) * 1.234 / 200, (v - 59.5) * 1.234 / 210, 1.234], rtol=1e-5)
    mask = np.zeros((120, 160), dtype=bool)
    mask[30:40] = True
    assert len(rd.backproject(back, CAM, mask)) == 10 * 30 - 1
    with pytest.raises(JetgenError, match="no readings inside the object mask"):
        rd.backproject(back, CAM, back == 0)
    # the same through the files: extrinsics move the cloud, a mask of another size is refused
    cam_path = write_json(tmp_path / "cam.json", CAM.as_dict())
    t_path = write_json(tmp_path / "t.json", {"camera_to_world": [[1, 0, 0, 0.5], [0, 1, 0, 0], [0, 0, 1, 0],
                                                                  [0, 0, 0, 1]]})
    world, info = rd.depth_points(path, cam_path, extrinsics_path=t_path)
    np.testing.assert_allclose(world, points + [0.5, 0, 0], atol=1e-6)
    assert info["points"] == len(points) and info["frame"] == "world" and info["image"] == [160, 120]
    write_png(str(tmp_path / "m.png"), np.full((60, 80), 255, np.uint8))
    with pytest.raises(JetgenError, match="mask .* is 80x60 but the depth image is 160x120"):
        rd.depth_points(path, cam_path, mask_path=str(tmp_path / "m.png"))


def test_depth_files_that_are_not_depth_are_refused(tmp_path):
    with pytest.raises(JetgenError, match="No depth image"):
        rd.read_depth(str(tmp_path / "none.png"))
    write_png(str(tmp_path / "rgb.png"), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(JetgenError, match="colour PNG"):
        rd.read_depth(str(tmp_path / "rgb.png"))
    write_png(str(tmp_path / "grey8.png"), np.full((4, 4), 100, np.uint8))
    with pytest.raises(JetgenError, match="8-bit PNG; depth PNGs are 16-bit"):
        rd.read_depth(str(tmp_path / "grey8.png"))
    assert rd.read_depth(str(tmp_path / "grey8.png"), scale=0.01)[0, 0] == pytest.approx(1.0)
    arr = np.full((4, 5), 0.8, dtype=np.float32)
    arr[0, 0] = np.nan  # no reading
    np.save(str(tmp_path / "d.npy"), arr)
    got = rd.read_depth(str(tmp_path / "d.npy"))
    assert got[0, 0] == 0 and got[1, 1] == pytest.approx(0.8)
    np.save(str(tmp_path / "far.npy"), np.full((4, 5), 800.0 * 1000))
    with pytest.raises(JetgenError, match="check the depth scale"):
        rd.read_depth(str(tmp_path / "far.npy"))
    with pytest.raises(JetgenError, match="depth scale must be positive"):
        rd.read_depth(str(tmp_path / "d.npy"), scale=-1)
    with pytest.raises(JetgenError, match="no readings"):
        rd.backproject(np.zeros((120, 160)), CAM)


# -- rendering -----------------------------------------------------------------------------------
def test_a_rendered_depth_view_back_projects_onto_the_mesh():
    v, f = box((-0.2, -0.2, -0.2), (0.2, 0.2, 0.2))
    depth = render_depth(v, f, CAM, translation=[0.0, 0.0, 1.0])
    points = rd.backproject(depth, CAM)
    np.testing.assert_allclose(points[:, 2], 0.8, atol=1e-6)  # only the front face is seen
    side = 0.4 * np.array([CAM.fx, CAM.fy]) / 0.8  # the face's size in pixels
    assert abs(len(points) - side.prod()) < 2 * side.sum() + 4
    assert np.abs(points[:, :2]).max() <= 0.2 + 1e-6
    turned = render_depth(v, f, CAM, pose.yaw(0.5), [0.0, 0.0, 1.0])  # two faces seen, all on the box
    p = rd.backproject(turned, CAM) - [0.0, 0.0, 1.0]
    local = p.dot(pose.yaw(0.5))  # back into the box's frame
    assert np.all(np.abs(local) <= 0.2 + 1e-5) and np.mean(np.abs(np.abs(local).max(axis=1) - 0.2) < 1e-5) == 1.0


def test_the_sensor_model_adds_noise_that_grows_with_depth_quantises_and_drops():
    rng = np.random.RandomState(0)
    ideal = np.concatenate([np.full((100, 200), 0.5), np.full((100, 200), 2.0)])
    got = rd.simulate_sensor(ideal, rng)
    near, far = got[:100][got[:100] > 0], got[100:][got[100:] > 0]
    assert np.std(far - 2.0) > 8 * np.std(near - 0.5) > 0  # sigma ~ d^2: 16x
    assert np.allclose(np.round(got * 1000), got * 1000, atol=1e-3)  # whole millimetres
    assert 0.01 < np.mean(got == 0) < 0.05
    assert np.mean(got[99] == 0) > 0.3 > 0.1 > np.mean(got[100] == 0)  # the near side of a jump loses readings


def test_shaded_mesh_views_fill_triangles_and_keep_patch_tints():
    v, f = box((-0.5, -0.5, -0.5), (0.5, 0.5, 0.5))
    colours = np.tile([[0.9, 0.2, 0.2]], (8, 1))
    img = render_mesh_view(v, f, 96, 20.0, 45.0, colours)
    filled = (img != 255).any(axis=2)
    assert filled.mean() > 0.3 and filled[48, 48]  # a solid silhouette (a dot per vertex would be 1%)
    body = img[filled].astype(float)
    assert np.all(body[:, 0] > body[:, 1])  # still red
    assert len(np.unique(body[:, 0])) >= 2  # faces at other angles are shaded differently


# -- pose ----------------------------------------------------------------------------------------
def test_the_transform_gradient_matches_finite_differences():
    rng = np.random.RandomState(0)
    p, dec = rng.standard_normal((2, 60, 3)), rng.standard_normal((2, 90, 3))
    w = rng.uniform(0.5, 1.0, (2, 60))
    s, r, t = np.array([1.3, 0.6]), pose.rot_exp(rng.standard_normal((2, 3))), rng.standard_normal((2, 3))
    _, grad = pose.transform_gradient(p, w, s, r, t, dec)
    eps = 1e-6
    for j in range(7):
        d = np.zeros((2, 7))
        d[:, j] = eps

        def f(d):
            return pose.transform_objective(p, w, s * np.exp(d[:, 3]), np.matmul(pose.rot_exp(d[:, 4:]), r),
                                            t + d[:, :3], dec)

        np.testing.assert_allclose((f(d) - f(-d)) / (2 * eps), grad[:, j], rtol=1e-5, atol=1e-8)


class FixedShape(object):
    """A stand-in for a PointModel whose decoder always makes one shape: complete_posed must then
    find the pose alone. Its latent_grad is the one-sided Chamfer with a zero latent gradient."""

    class _Prior(object):
        def mean(self):
            return np.zeros(2, np.float32)

        def term(self, z):
            return np.zeros(len(z)), np.zeros_like(z)

        def project(self, z):
            return np.array(z, dtype=np.float64)

    class _Bundle(object):
        def has(self, graph):
            return graph == "latent_grad"

    def __init__(self, cloud):
        self.cloud = np.asarray(cloud, dtype=np.float32)
        self.prior, self.bundle, self.has_encoder = self._Prior(), self._Bundle(), False
        self.points = {"target_points": 400, "loss_scale": 1.0, "prior_weight": 0.0}
        self.faces = np.zeros((0, 3), np.int32)

    def decode(self, z):
        return np.repeat(self.cloud[None], len(z), axis=0)

    def loss_grad(self, z, target, mask):
        from jetgen.runtime.shapes import chamfer_one_sided

        return chamfer_one_sided(target, self.decode(z), mask), np.zeros_like(z, dtype=np.float64)


def test_a_known_similarity_transform_is_recovered_from_a_rendered_scan():
    # an L-shaped object (no symmetry about its up axis), normalised to the model frame (y up)
    shape = merge(box((-0.5, -0.3, -0.25), (0.5, 0.1, 0.25)), box((0.15, 0.1, -0.25), (0.5, 0.45, 0.25)))
    model = FixedShape(surface_points(shape[0], shape[1], 1500))
    # the model frame -> the camera's: a level camera (y down), the object 1.6 m away
    scale, theta, offset = 0.31, np.radians(130.0), np.array([0.06, 0.05, 1.6])
    rotation = pose.rotation_to_up(pose.CAMERA_UP).T.dot(pose.yaw(theta))
    depth = rd.simulate_sensor(render_depth(shape[0] * scale, shape[1], rd.Intrinsics(300, 300, 159.5, 119.5, 320, 240),
                                            rotation, offset), np.random.RandomState(0))
    scan = rd.backproject(depth, rd.Intrinsics(300, 300, 159.5, 119.5, 320, 240))
    result = pose.complete_posed(model, scan, steps=150, yaw_starts=4)
    assert result.scale == pytest.approx(scale, rel=0.05)
    np.testing.assert_allclose(result.rotation, rotation, atol=0.06)
    np.testing.assert_allclose(result.translation, offset, atol=0.02)
    truth = model.cloud.dot(rotation.T) * scale + offset
    assert np.abs(result.x[0] - truth).max() < 0.03  # the completed shape where the object is, in metres
    assert result.chamfer < 1e-4 and result.history[-1] < result.history[0]
    report = result.as_dict()
    np.testing.assert_allclose(np.array(report["matrix"])[:3, :3], scale * rotation, atol=0.03)
    np.testing.assert_allclose(result.rotation.dot([0, 1, 0]), pose.CAMERA_UP, atol=1e-9)  # turned about up only
    assert report["yaw_deg"] == pytest.approx(130.0, abs=3.0)
    free = pose.complete_posed(model, scan, steps=10, yaw_starts=2, full_rotation=True)
    np.testing.assert_allclose(free.rotation.dot(free.rotation.T), np.eye(3), atol=1e-9)
    assert abs(free.rotation.dot([0, 1, 0]).dot(pose.CAMERA_UP)) < 1 - 1e-9  # the tilt is free too


# -- the CLI -------------------------------------------------------------------------------------
def uv_ellipsoid(axes, rings=16, sectors=24):
    """A closed ellipsoid mesh (vertices, faces) with semi-axes ``axes``, in numpy."""
    theta = np.linspace(0, np.pi, rings + 1)[1:-1]
    phi = np.linspace(0, 2 * np.pi, sectors, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    ring = np.stack([np.sin(t) * np.cos(p), np.cos(t), np.sin(t) * np.sin(p)], axis=-1).reshape(-1, 3)
    v = np.concatenate([[[0, 1, 0]], ring, [[0, -1, 0]]]) * np.asarray(axes)
    faces = []
    for s in range(sectors):
        n = (s + 1) % sectors
        faces.append((0, 1 + n, 1 + s))
        for r in range(rings - 2):
            a, b = 1 + r * sectors + s, 1 + r * sectors + n
            faces.extend([(a, b, b + sectors), (a, b + sectors, a + sectors)])
        last = 1 + (rings - 2) * sectors
        faces.append((len(v) - 1, last + s, last + n))
    return v, np.array(faces, dtype=np.int64)


@pytest.fixture(scope="module")
def shapes_bundle(tmp_path_factory):
    from tests.shapes_fixtures import shared_bundle

    return shared_bundle(tmp_path_factory)[0]


def test_complete_from_a_depth_png_and_a_camera_file_through_the_cli(shapes_bundle, tmp_path):
    from click.testing import CliRunner

    from jetgen.cli import main

    cam = rd.Intrinsics(300, 300, 159.5, 119.5, 320, 240)
    v, f = uv_ellipsoid((0.9, 0.5, 0.6))
    scale, offset = 0.2, np.array([0.05, -0.03, 1.2])
    rotation = pose.rotation_to_up(pose.CAMERA_UP).T.dot(pose.yaw(0.7))
    ideal = render_depth(v * scale, f, cam, rotation, offset)
    ideal[:, :40] = 0.6  # a wall beside the object, cut away by the mask
    rd.write_depth_png(str(tmp_path / "depth.png"), rd.simulate_sensor(ideal, np.random.RandomState(1)))
    mask = np.full(ideal.shape, 255, np.uint8)
    mask[:, :50] = 0
    write_png(str(tmp_path / "mask.png"), mask)
    write_json(tmp_path / "camera.json", {"width": 320, "height": 240, "K": cam.matrix.ravel().tolist()})
    args = ["complete", shapes_bundle, "--depth", str(tmp_path / "depth.png"), "--intrinsics",
            str(tmp_path / "camera.json"), "--object-mask", str(tmp_path / "mask.png"), "--steps", "60"]
    result = CliRunner().invoke(main, args + ["--out", str(tmp_path / "done.ply"), "--png", str(tmp_path / "s.png"),
                                              "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["frame"] == "camera" and report["image"] == [320, 240] and report["steps"] == 60
    done = read_points(str(tmp_path / "done.ply"))
    truth = (v * scale).dot(rotation.T) + offset
    size = np.ptp(truth, axis=0).max()
    # written where the object is, in metres (this tiny model's shapes are sheets: only roughly)
    assert np.linalg.norm(done.mean(axis=0) - truth.mean(axis=0)) < 0.5 * size
    scan = rd.depth_points(str(tmp_path / "depth.png"), str(tmp_path / "camera.json"),
                           mask_path=str(tmp_path / "mask.png"))[0]
    assert scan[:, 0].min() > (50 - 159.5) * 0.6 / 300 + 0.01  # the wall is masked out
    measured = chamfer_one_sided(scan[None], done[None])[0]
    assert report["chamfer"] == pytest.approx(measured, rel=0.5) and measured < (0.1 * size) ** 2
    matrix = np.array(report["transform"]["matrix"])
    assert report["transform"]["scale"] == pytest.approx(np.cbrt(np.linalg.det(matrix[:3, :3])), rel=1e-6)
    assert os.path.getsize(str(tmp_path / "s.png")) > 1000
    # one sentence, never a traceback, for what a user gets wrong
    for extra, message in ((["--intrinsics", str(tmp_path / "nope.json")], "No intrinsics file"),
                           (["--input", str(tmp_path / "depth.png")], "exactly one of --input")):
        bad = CliRunner().invoke(main, [a for a in args if a != "--intrinsics" and not a.endswith("camera.json")] +
                                 extra + ["--out", str(tmp_path / "x.ply")])
        assert bad.exit_code == 1 and message in bad.output and "Traceback" not in bad.output, bad.output
    bad = CliRunner().invoke(main, ["complete", shapes_bundle, "--depth", str(tmp_path / "depth.png"), "--out",
                                    str(tmp_path / "x.ply")])
    assert bad.exit_code == 1 and "needs --intrinsics" in bad.output
    bad = CliRunner().invoke(main, args + ["--mask-region", "center", "--out", str(tmp_path / "x.ply")])
    assert bad.exit_code == 1 and "drop --mask" in bad.output and "Traceback" not in bad.output, bad.output


DEVICE_FILES = ["jetgen/runtime/depth.py", "jetgen/runtime/pose.py", "jetgen/runtime/raster.py",
                "jetgen/runtime/lettering.py", "jetgen/cli/clouds.py"]


def test_depth_pose_and_raster_run_without_torch_and_are_python36_code(tmp_path):
    import subprocess
    import sys
    import textwrap

    from tests.test_runtime_torchfree import BLOCKED, ROOT

    code = textwrap.dedent("""
        import sys

        class Block(object):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {blocked!r}:
                    raise ImportError("blocked for this test: " + name)
                return None

        sys.meta_path.insert(0, Block())
        import numpy as np
        from jetgen.modalities.points import depth, pose, raster
        import jetgen.cli.clouds
        cam = depth.Intrinsics(100, 100, 31.5, 23.5, 64, 48)
        v = np.array([[-1, -1, 3], [1, -1, 3], [0, 1, 3]], float)
        d = raster.render_depth(v, [[0, 1, 2]], cam)
        depth.write_depth_png({png!r}, d)
        assert len(depth.backproject(depth.read_depth({png!r}), cam)) == (d > 0).sum() > 100
        loaded = sorted(n for n in sys.modules if n.split(".")[0] in {blocked!r})
        assert not loaded, loaded
        print("torch-free ok")
    """).format(blocked=BLOCKED, png=str(tmp_path / "d.png"))
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=120)
    assert proc.returncode == 0 and "torch-free ok" in proc.stdout, proc.stderr
    vermin = os.path.join(os.path.dirname(sys.executable), "vermin")
    proc = subprocess.run([vermin, "-t=3.6-", "--no-tips", "--violations"] + DEVICE_FILES, cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=120)
    assert proc.returncode == 0 and "requires" not in proc.stdout and "not met" not in proc.stdout, proc.stdout


def test_depth_completion_takes_its_own_step_count_unless_steps_is_given(shapes_bundle, tmp_path):
    from click.testing import CliRunner

    from jetgen.cli import main

    cam = rd.Intrinsics(100, 100, 39.5, 29.5, 80, 60)
    v, f = uv_ellipsoid((0.5, 0.4, 0.3), 8, 12)
    rd.write_depth_png(str(tmp_path / "d.png"), render_depth(v * 0.2, f, cam, translation=[0, 0, 0.8]))
    write_json(tmp_path / "c.json", cam.as_dict())
    args = ["complete", shapes_bundle, "--depth", str(tmp_path / "d.png"), "--intrinsics", str(tmp_path / "c.json"),
            "--out", str(tmp_path / "o.npy"), "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["steps"] == pose.POSE_STEPS
    assert np.load(str(tmp_path / "o.npy")).shape[1:] == (100, 3)
