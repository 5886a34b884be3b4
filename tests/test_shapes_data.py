"""3D data sets: the procedural shapes (determinism, normalisation, cache), mesh and point-cloud folders."""
import os

import numpy as np
import pytest
import torch

from jetgen.errors import JetgenError
from jetgen.runtime.shapes import write_points
from jetgen.train import shapes
from jetgen.train.shapes import SHAPE_CLASSES, cache_path, load_meshes, load_points, load_shape_dataset, \
    procedural_shapes

trimesh = pytest.importorskip("trimesh")

SMALL = dict(n_train=3, n_test=1, points=300)


def test_procedural_shapes_are_deterministic_normalised_and_split(tmp_path):
    data = procedural_shapes(directory=str(tmp_path), **SMALL)
    assert data.name == "shapes" and data.classes == list(SHAPE_CLASSES) and len(SHAPE_CLASSES) >= 5
    assert data.train_x.dtype == torch.float32 and tuple(data.train_x.shape) == (3 * 6, 300, 3)
    assert tuple(data.test_x.shape) == (6, 300, 3) and data.image_shape == (300, 3)
    assert data.train_y.tolist() == [c for c in range(6) for _ in range(3)] and data.test_y.tolist() == list(range(6))
    radius = data.train_x.norm(dim=2).amax(1)
    assert float(radius.max()) <= 1.0 + 1e-5 and float(radius.min()) > 0.85  # on the unit sphere's scale
    assert data.train_x[torch.tensor([0, 5])].shape == (2, 300, 3)  # the trainer indexes batches this way

    again = procedural_shapes(directory=str(tmp_path / "elsewhere"), **SMALL)
    assert torch.equal(again.train_x, data.train_x) and torch.equal(again.test_x, data.test_x)
    other = procedural_shapes(directory=str(tmp_path), seed=1, **SMALL)
    assert not torch.equal(other.train_x, data.train_x)
    # the split is fixed: more training shapes per class keep the same first ones and the same test shapes
    bigger = procedural_shapes(directory=str(tmp_path), n_train=4, n_test=1, points=300)
    assert torch.equal(bigger.train_x[::4][:1], data.train_x[:1])


def test_every_class_makes_valid_varied_meshes():
    for name in SHAPE_CLASSES:
        meshes = [shapes.make_mesh(name, seed) for seed in range(3)]
        for mesh in meshes:
            assert len(mesh.faces) > 0 and mesh.area > 0
            assert np.linalg.norm(mesh.vertices, axis=1).max() == pytest.approx(1.0)
        assert not np.allclose(meshes[0].extents, meshes[1].extents)  # random parameters per instance


def test_cache_is_reused_and_a_corrupt_cache_is_regenerated(tmp_path, monkeypatch):
    monkeypatch.setenv("JETGEN_CACHE", str(tmp_path))
    assert shapes.cache_dir() == str(tmp_path)
    first = procedural_shapes(**SMALL)
    path, _ = cache_path("shapes", {"version": shapes.GENERATOR_VERSION, "classes": list(SHAPE_CLASSES),
                                    "n_train": 3, "n_test": 1, "points": 300, "seed": 0, "sample_seed": 0})
    assert os.path.isfile(path) and os.path.dirname(path) == str(tmp_path)

    def no_generation(*a, **k):
        raise AssertionError("generated again although the cache is intact")

    with monkeypatch.context() as m:
        m.setattr(shapes, "make_mesh", no_generation)
        assert torch.equal(procedural_shapes(**SMALL).train_x, first.train_x)

    with open(path, "r+b") as handle:  # cut the file in half
        handle.truncate(os.path.getsize(path) // 2)
    told = []
    again = procedural_shapes(log=told.append, **SMALL)
    assert torch.equal(again.train_x, first.train_x)
    assert told and "generating it again" in told[0]
    assert np.load(path)["train_x"].shape == (18, 300, 3)  # rewritten whole


def _write_mesh_folder(root):
    (root / "boxes").mkdir(parents=True)
    (root / "round").mkdir()
    trimesh.creation.box(extents=[1, 2, 3]).export(str(root / "boxes" / "a.obj"))
    trimesh.creation.box(extents=[2, 1, 1]).export(str(root / "boxes" / "b.stl"))
    trimesh.creation.box(extents=[1, 1, 4]).export(str(root / "boxes" / "c.glb"))
    trimesh.creation.icosphere().export(str(root / "round" / "a.ply"))
    trimesh.creation.cylinder(radius=1, height=3).export(str(root / "round" / "b.off"))
    trimesh.creation.capsule().export(str(root / "round" / "c.obj"))
    (root / "round" / "broken.stl").write_bytes(b"solid x\nfacet normal 0 0 banana\n")
    (root / "boxes" / "empty.ply").write_text("ply\nformat ascii 1.0\nelement vertex 0\nelement face 0\n"
                                              "property list uchar int vertex_indices\nend_header\n")
    (root / "boxes" / "notes.txt").write_text("not a mesh")


def test_mesh_folder_skips_broken_and_empty_meshes(tmp_path):
    _write_mesh_folder(tmp_path / "m")
    told = []
    data = load_meshes(str(tmp_path / "m"), points=256, test_fraction=0.34, log=told.append)
    assert data.classes == ["boxes", "round"]
    assert len(data.train_x) + len(data.test_x) == 6 and len(data.test_x) == 2
    assert sorted(data.test_y.tolist()) == [0, 1]
    skipped = {os.path.basename(p): reason for p, reason in data.skipped}
    assert set(skipped) == {"broken.stl", "empty.ply"} and all(skipped.values())
    assert told and "Skipped 2 of 8 files" in told[0]
    radius = torch.cat([data.train_x, data.test_x]).norm(dim=2).amax(1)
    assert float(radius.max()) <= 1.0 + 1e-5 and float(radius.min()) > 0.9
    same = load_shape_dataset("meshes", str(tmp_path / "m"), points=256, test_fraction=0.34)
    assert torch.equal(same.train_x, data.train_x)


def test_mesh_folder_with_train_and_test_splits(tmp_path):
    for split in ("train", "test"):
        (tmp_path / split / "cube").mkdir(parents=True)
        trimesh.creation.box().export(str(tmp_path / split / "cube" / "x.obj"))
    data = load_meshes(str(tmp_path), points=64)
    assert (len(data.train_x), len(data.test_x), data.classes) == (1, 1, ["cube"])


def test_folders_that_hold_nothing_usable_are_refused(tmp_path):
    with pytest.raises(JetgenError, match="not a directory"):
        load_meshes(str(tmp_path / "missing"))
    (tmp_path / "only" / "a").mkdir(parents=True)
    (tmp_path / "only" / "a" / "bad.obj").write_text("v 0 0 0\n")
    with pytest.raises(JetgenError, match="all 1 files were skipped"):
        load_meshes(str(tmp_path / "only"), points=16)
    with pytest.raises(JetgenError, match="Unknown 3D data set"):
        load_shape_dataset("voxels")


def test_point_cloud_folder(tmp_path):
    rng = np.random.RandomState(0)
    (tmp_path / "p" / "blob").mkdir(parents=True)
    (tmp_path / "p" / "line").mkdir()
    for i, ext in enumerate((".npy", ".xyz", ".ply")):
        write_points(str(tmp_path / "p" / "blob" / ("c" + str(i) + ext)), rng.randn(500, 3) * 5 + 10)
        write_points(str(tmp_path / "p" / "line" / ("c" + str(i) + ext)), np.outer(rng.rand(100), [1, 2, 3]))
    (tmp_path / "p" / "line" / "bad.ply").write_text("ply\nformat ascii 1.0\nelement vertex 1000000000000\n"
                                                     "property float x\nproperty float y\nproperty float z\nend_header\n")
    data = load_points(str(tmp_path / "p"), points=200, test_fraction=0.34)
    assert len(data.train_x) + len(data.test_x) == 6 and data.train_x.shape[1:] == (200, 3)
    assert [os.path.basename(p) for p, _ in data.skipped] == ["bad.ply"] and "claims" in data.skipped[0][1]
    radius = data.train_x.norm(dim=2).amax(1)
    assert float(radius.max()) <= 1.0 + 1e-5 and float(radius.min()) > 0.9
