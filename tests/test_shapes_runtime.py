"""The torch-free 3D runtime pieces: mesh and cloud writers and readers, refusals, the renderer,
Chamfer, cuts; and that they import without torch and stay Python 3.6 code."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from jetgen.errors import JetgenError
from jetgen.runtime import shapes as rs
from jetgen.runtime.images import read_png

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNTIME_FILES = ["jetgen/runtime/shapes.py", "jetgen/runtime/gmm.py"]


def _cloud(n=500, seed=0):
    return np.random.RandomState(seed).uniform(-1, 1, (n, 3)).astype(np.float32)


@pytest.mark.parametrize("name,binary", [("c.ply", True), ("c.ply", False), ("c.npy", True), ("c.xyz", True)])
def test_point_clouds_round_trip(tmp_path, name, binary):
    points = _cloud()
    path = str(tmp_path / name)
    rs.write_points(path, points, binary=binary)
    back = rs.read_points(path)
    assert back.dtype == np.float32 and back.shape == (500, 3)
    np.testing.assert_allclose(back, points, rtol=1e-6, atol=1e-6)


def test_meshes_are_written_as_valid_obj_and_ply(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    box = trimesh.creation.box(extents=[1, 2, 3])
    for name, binary in (("m.obj", True), ("m.ply", True), ("a.ply", False)):
        path = str(tmp_path / name)
        rs.write_mesh(path, box.vertices, box.faces, binary=binary,
                      colours=np.tile([0.2, 0.4, 0.6], (8, 1)) if name != "m.obj" else None)
        back = trimesh.load(path, force="mesh", process=False)
        np.testing.assert_allclose(back.vertices, box.vertices, atol=1e-6)
        assert np.array_equal(back.faces, box.faces) and back.volume == pytest.approx(6.0)
        np.testing.assert_allclose(rs.read_points(path) if name.endswith(".ply") else back.vertices, box.vertices,
                                   atol=1e-6)  # a mesh .ply is also a cloud of its vertices
    vertices, faces = rs.scene(np.stack([box.vertices, box.vertices + 1.0]), box.faces, spacing=5.0)
    assert vertices.shape == (16, 3) and faces.shape == (24, 3) and faces.max() == 15
    assert np.allclose(vertices[8:] - vertices[:8], [5.0 + 1.0, 1.0, 1.0])
    with pytest.raises(JetgenError, match="refers to vertex 9"):
        rs.write_mesh(str(tmp_path / "x.obj"), box.vertices, np.array([[0, 1, 9]]))
    with pytest.raises(JetgenError, match="Cannot write"):
        rs.write_mesh(str(tmp_path / "x.stl"), box.vertices, box.faces)


def _ply_header(count, fmt="binary_little_endian"):
    return ("ply\nformat {} 1.0\nelement vertex {}\nproperty float x\nproperty float y\nproperty float z\n"
            "end_header\n".format(fmt, count)).encode("ascii")


def test_huge_or_truncated_clouds_are_refused_before_reading(tmp_path):
    huge = tmp_path / "huge.ply"
    huge.write_bytes(_ply_header(10 ** 12) + b"\x00" * 24)
    with pytest.raises(JetgenError, match="claims 1000000000000 points"):
        rs.read_points(str(huge))
    (tmp_path / "huge_ascii.ply").write_bytes(_ply_header(10 ** 12, "ascii") + b"0 0 0\n")
    with pytest.raises(JetgenError, match="claims 1000000000000 points"):
        rs.read_points(str(tmp_path / "huge_ascii.ply"))
    short = tmp_path / "short.ply"
    short.write_bytes(_ply_header(1000) + b"\x00" * 24)
    with pytest.raises(JetgenError, match="truncated"):
        rs.read_points(str(short))
    (tmp_path / "short_ascii.ply").write_bytes(_ply_header(3, "ascii") + b"0 0 0\n1 1 1\n")
    with pytest.raises(JetgenError, match="truncated"):
        rs.read_points(str(tmp_path / "short_ascii.ply"))
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 3), np.float32))
    header["shape"] = (10 ** 12, 3)
    with open(str(tmp_path / "huge.npy"), "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        handle.write(b"\x00" * 64)
    with pytest.raises(JetgenError, match="claims 1000000000000 points"):
        rs.read_points(str(tmp_path / "huge.npy"))
    rs.write_points(str(tmp_path / "six.npy"), _cloud(600))
    with pytest.raises(JetgenError, match="claims 600 points"):
        rs.read_points(str(tmp_path / "six.npy"), max_points=500)


def test_broken_clouds_are_refused_with_a_sentence(tmp_path):
    cases = {
        "nan.npy": None, "text.npy": b"hello", "obj.npy": None, "bad.xyz": b"1 2 3\n4 five 6\n",
        "two.xyz": b"1 2\n", "empty.xyz": b"# nothing\n", "noply.ply": b"hello\n",
        "noverts.ply": b"ply\nformat ascii 1.0\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n3 0 1 2\n",
        "weird.ply": b"ply\nformat binary_middle_endian 1.0\nelement vertex 1\nproperty float x\nend_header\n",
    }
    np.save(str(tmp_path / "nan.npy"), np.array([[0, 0, np.nan]], np.float32))
    np.save(str(tmp_path / "obj.npy"), np.array([{"a": 1}], dtype=object), allow_pickle=True)
    for name, data in cases.items():
        if data is not None:
            (tmp_path / name).write_bytes(data)
        with pytest.raises(JetgenError) as err:
            rs.read_points(str(tmp_path / name))
        text = str(err.value)
        assert text.endswith(".") and "\n" not in text, (name, text)
    with pytest.raises(JetgenError, match="No file"):
        rs.read_points(str(tmp_path / "missing.ply"))
    (tmp_path / "x.obj").write_text("v 0 0 0\nv 1 0 0\n")  # a mesh's vertices are a cloud too
    assert rs.read_points(str(tmp_path / "x.obj")).shape == (2, 3)
    (tmp_path / "x.txt").write_text("0 0 0\n")
    with pytest.raises(JetgenError, match="must be"):
        rs.read_points(str(tmp_path / "x.txt"))


def test_render_writes_a_depth_shaded_png(tmp_path):
    cloud = _cloud(2000)
    cloud[:, 2] = 0.0  # a square sheet facing the camera at elevation 0, azimuth 0
    path = str(tmp_path / "r.png")
    rs.save_render(path, [cloud, cloud * 0.5], views=((0.0, 0.0), (90.0, 0.0)), size=64)
    image = read_png(path)
    assert image.shape == (2 * 68 + 4, 2 * 68 + 4, 3)
    front = image[4:68, 4:68]
    assert (front < 0.95).mean() > 0.5  # the sheet covers most of its view
    assert (image[4:68, 72:136] < 0.95).mean() < 0.2  # seen edge-on from above it is a thin line
    tinted = rs.render([cloud], views=((0.0, 0.0),), size=32, colours=[rs.patch_colours(4, 500)])
    assert tinted.dtype == np.uint8 and len(np.unique(tinted.reshape(-1, 3), axis=0)) > 4
    near = rs.render_view(np.array([[0, 0, 0.5], [0, 0, -0.5]], np.float32), size=9, elevation=0, azimuth=0)
    far_only = rs.render_view(np.array([[0, 0, -0.5]], np.float32), size=9, elevation=0, azimuth=0)
    assert near[4, 4].sum() > far_only[4, 4].sum()  # the nearer point is drawn, and brighter
    with pytest.raises(JetgenError, match=".png"):
        rs.save_render(str(tmp_path / "r.jpg"), [cloud])


def test_chamfer_cut_and_padding():
    a, b = _cloud(300, 1), _cloud(200, 2)
    brute = ((a[:, None] - b[None]) ** 2).sum(-1)
    expected = brute.min(1).mean() + brute.min(0).mean()
    assert rs.chamfer(a[None], b[None])[0] == pytest.approx(expected, rel=1e-6)
    mask = np.ones((1, 300))
    mask[0, 150:] = 0
    assert rs.chamfer_one_sided(a[None], b[None], mask)[0] == pytest.approx(brute.min(1)[:150].mean(), rel=1e-6)
    kept, normal = rs.cut_by_plane(a, rng=3)
    assert 140 <= len(kept) <= 160 and np.linalg.norm(normal) == pytest.approx(1.0, abs=1e-6)
    assert ((kept - a.mean(0)).dot(normal) >= ((a - a.mean(0)).dot(normal)).min()).all()
    again, _ = rs.cut_by_plane(a, rng=3)
    assert np.array_equal(kept, again)
    assert len(rs.cut_by_plane(a, rng=3, keep=0.25)[0]) == pytest.approx(75, abs=2)
    points, valid = rs.pad_clouds([kept, a[:10]])
    assert points.shape == (2, len(kept), 3) and valid.sum(1).tolist() == [len(kept), 10]
    assert rs.chamfer_one_sided(points, np.stack([b, b]), valid)[1] == pytest.approx(
        rs.chamfer_one_sided(a[None, :10], b[None])[0])
    with pytest.raises(JetgenError, match="kept fraction"):
        rs.cut_by_plane(a, keep=0.0)


def test_runtime_shapes_run_without_torch(tmp_path):
    code = textwrap.dedent("""
        import sys

        BLOCKED = ("torch", "scipy", "sklearn", "trimesh", "matplotlib", "onnx")

        class Block(object):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError("blocked for this test: " + name)
                return None

        sys.meta_path.insert(0, Block())
        import numpy as np
        from jetgen.runtime import shapes, gmm
        cloud = np.random.RandomState(0).rand(300, 3).astype(np.float32)
        shapes.write_points({ply!r}, cloud)
        back = shapes.read_points({ply!r})
        shapes.save_render({png!r}, [back])
        prior = gmm.GaussianMixturePrior([0.5, 0.5], [[0.0] * 3, [1.0] * 3], [[1.0] * 3, [0.5] * 3], "diag")
        assert prior.sample(4, rng=0).shape == (4, 3)
        loaded = sorted(n for n in sys.modules if n.split(".")[0] in BLOCKED)
        assert not loaded, loaded
        print("torch-free ok")
    """).format(ply=str(tmp_path / "c.ply"), png=str(tmp_path / "c.png"))
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "torch-free ok" in proc.stdout and os.path.isfile(str(tmp_path / "c.png"))


def test_runtime_shapes_are_python36_code():
    vermin = os.path.join(os.path.dirname(sys.executable), "vermin")
    proc = subprocess.run([vermin, "-t=3.6-", "--no-tips", "--violations"] + RUNTIME_FILES, cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=120)
    assert proc.returncode == 0, proc.stdout
    assert "requires" not in proc.stdout and "not met" not in proc.stdout, proc.stdout


def test_a_cloud_npy_claiming_a_huge_header_is_refused_unread(tmp_path):
    """read_points reads .npy headers with the one .npy reader (jetgen.modalities.image.codec.npy_header),
    so a file claiming a 2 GiB header is refused before numpy reads it."""
    import struct

    path = tmp_path / "huge-header.npy"
    path.write_bytes(b"\x93NUMPY\x02\x00" + struct.pack("<I", 2 ** 31) + b"{'descr': '<f4'")
    with pytest.raises(JetgenError, match="header of 2147483648 bytes"):
        rs.read_points(str(path))
