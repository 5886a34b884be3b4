"""The 3D commands on a point-cloud bundle: sample, interpolate and complete write meshes that trimesh
reads, info shows the 3D settings, bad inputs are one sentence, and a trained run exports with its
fitted latent mixture and transfer provenance."""
import json
import os

import numpy as np
import pytest
import trimesh
from click.testing import CliRunner

from jetgen.cli import main
from jetgen.runtime.shapes import cut_by_plane, write_mesh, write_points
from tests.runtime_fixtures import make_bundle
from tests.shapes_fixtures import SETTINGS, ellipsoids, shared_bundle

N_POINTS, N_FACES = 100, 128  # 4 patches of a 5x5 grid


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return shared_bundle(tmp_path_factory)[0]


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


def one_sentence(code, output):
    assert code == 1, output
    assert "Traceback" not in output
    message = output.strip().splitlines()[-1]
    assert message.startswith("Error: ") and message.endswith("."), output
    return message


def test_sample_writes_one_mesh_per_shape_a_scene_clouds_and_a_render(bundle, tmp_path):
    from PIL import Image

    code, out = run("sample", bundle, "--n", 3, "--seed", 1, "--out", tmp_path / "shapes.obj")
    assert code == 0, out
    for i in range(3):
        mesh = trimesh.load(str(tmp_path / "shapes-{}.obj".format(i)), process=False)
        assert mesh.vertices.shape == (N_POINTS, 3) and mesh.faces.shape == (N_FACES, 3)
    code, out = run("sample", bundle, "--n", 3, "--seed", 1, "--scene", "--out", tmp_path / "scene.ply")
    assert code == 0, out
    scene = trimesh.load(str(tmp_path / "scene.ply"), process=False)
    assert scene.vertices.shape == (3 * N_POINTS, 3) and scene.faces.shape == (3 * N_FACES, 3)
    first = trimesh.load(str(tmp_path / "shapes-0.obj"), process=False)
    np.testing.assert_allclose(scene.vertices[:N_POINTS], first.vertices, atol=1e-5)  # the first shape sits at 0
    code, out = run("sample", bundle, "--n", 2, "--seed", 1, "--out", tmp_path / "clouds.npy")
    assert code == 0 and np.load(str(tmp_path / "clouds.npy")).shape == (2, N_POINTS, 3)
    code, out = run("sample", bundle, "--n", 2, "--out", tmp_path / "render.png")
    assert code == 0, out
    image = np.asarray(Image.open(str(tmp_path / "render.png")))
    assert image.ndim == 3 and image.shape[0] >= 2 * 160 and len(np.unique(image.reshape(-1, 3), axis=0)) > 8


def test_interpolate_between_two_clouds_and_two_seeds(bundle, tmp_path):
    clouds = ellipsoids(2, 300, 9)
    write_points(str(tmp_path / "a.ply"), clouds[0])
    write_points(str(tmp_path / "b.xyz"), clouds[1])
    code, out = run("interpolate", bundle, "--from", tmp_path / "a.ply", "--to", tmp_path / "b.xyz", "--frames", 4,
                    "--out", tmp_path / "path.obj")
    assert code == 0, out
    meshes = [trimesh.load(str(tmp_path / "path-{}.obj".format(i)), process=False) for i in range(4)]
    assert all(m.faces.shape == (N_FACES, 3) for m in meshes)
    assert not np.allclose(meshes[0].vertices, meshes[-1].vertices)
    code, out = run("interpolate", bundle, "--from", "seed:1", "--to", "seed:2", "--frames", 3, "--json",
                    "--out", tmp_path / "path.npy")
    assert code == 0, out
    assert np.load(str(tmp_path / "path.npy")).shape == (3, N_POINTS, 3)


def test_complete_a_partial_scan_into_a_mesh_and_a_sheet(bundle, tmp_path):
    partial = cut_by_plane(ellipsoids(1, 400, 11)[0], 1)[0]
    write_points(str(tmp_path / "partial.ply"), partial)
    code, out = run("complete", bundle, "--input", tmp_path / "partial.ply", "--out", tmp_path / "completed.obj",
                    "--png", tmp_path / "sheet.png", "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["init"] == "multistart" and report["loss"] <= report["loss_start"]
    assert report["input_points"] == len(partial) and report["files"][-1].endswith("sheet.png")
    mesh = trimesh.load(str(tmp_path / "completed.obj"), process=False)
    assert mesh.vertices.shape == (N_POINTS, 3) and mesh.faces.shape == (N_FACES, 3)
    assert os.path.getsize(str(tmp_path / "sheet.png")) > 1000
    write_mesh(str(tmp_path / "partial.obj"), partial, None)  # a mesh's vertices are a cloud too
    code, out = run("complete", bundle, "--input", tmp_path / "partial.obj", "--out", tmp_path / "again.npy",
                    "--json")
    assert code == 0, out
    assert json.loads(out)["input_points"] == len(partial)


def test_info_shows_the_3d_settings(bundle):
    code, out = run("info", bundle)
    assert code == 0, out
    assert "4 patches of a 5x5 grid: 100 points and 128 faces" in out
    assert "encoder reads 64 points, completion 96 observed points" in out


def _huge_ply(path):
    with open(path, "w") as handle:
        handle.write("ply\nformat ascii 1.0\nelement vertex 900000000\nproperty float x\nproperty float y\n"
                     "property float z\nend_header\n0 0 0\n")


@pytest.mark.parametrize("name, write, expect", [
    ("empty.xyz", lambda p: open(p, "w").close(), "no points"),
    ("nan.npy", lambda p: np.save(p, np.array([[0, 0, 0], [np.nan, 1, 1]], np.float32)), "NaN"),
    ("columns.npy", lambda p: np.save(p, np.zeros((5, 2), np.float32)), "(N, 3)"),
    ("huge.ply", _huge_ply, "downsample"),
    ("image.png", lambda p: __import__("PIL.Image").Image.new("L", (8, 8)).save(p), "point clouds must be"),
])
def test_bad_clouds_are_one_sentence(bundle, tmp_path, name, write, expect):
    path = str(tmp_path / name)
    write(path)
    message = one_sentence(*run("complete", bundle, "--input", path, "--out", tmp_path / "c.obj"))
    assert expect in message, message


def test_an_image_bundle_refuses_clouds_and_meshes(tmp_path):
    images, _ = make_bundle(str(tmp_path / "img.jetgen"))
    write_points(str(tmp_path / "cloud.ply"), ellipsoids(1, 50, 0)[0])
    message = one_sentence(*run("sample", images, "--n", 2, "--out", tmp_path / "x.obj"))
    assert "makes images" in message
    message = one_sentence(*run("complete", images, "--input", tmp_path / "cloud.ply", "--mask-region", "bottom-half",
                                "--out", tmp_path / "c.png"))
    assert "cloud.ply" in message


def test_a_trained_run_exports_with_its_mixture_prior_and_transfer_provenance(tmp_path):
    """`jetgen train atlasnet` (an AE, then a VAE started from it) on a folder of clouds, then export: the
    bundle carries the run's fitted mixture as its prior and the transfer record in its provenance."""
    data_dir = tmp_path / "clouds"
    for c, cls in enumerate(("round", "flat")):
        os.makedirs(str(data_dir / cls))
        for i, cloud in enumerate(ellipsoids(7, 300, 20 + c)):
            np.save(str(data_dir / cls / "{}.npy".format(i)), cloud * (1.0, 0.4 + 0.6 * c, 1.0))
    small = ["--data", "points", "--data-dir", data_dir, "--latent-dim", SETTINGS["latent_dim"], "--patches",
             SETTINGS["patches"], "--hidden", SETTINGS["hidden"], "--grid", SETTINGS["grid"], "--train-points", 128,
             "--encoder-points", 64, "--batch-size", 4, "--epochs", 1, "--quiet"]
    ae, vae = str(tmp_path / "ae"), str(tmp_path / "vae")
    for args in (["--variant", "ae", "--out", ae], ["--init-from", ae, "--out", vae]):
        code, text = run("train", "atlasnet", *(small + args))
        assert code == 0, text
    out = str(tmp_path / "run.jetgen")
    code, text = run("export", vae, "--target", "nano", "--out", out)
    assert code == 0, text
    with open(os.path.join(out, "manifest.json")) as handle:
        manifest = json.load(handle)
    with open(os.path.join(vae, "latent_prior.json")) as handle:
        fitted = json.load(handle)
    assert manifest["graphs"]["latent_grad"]["batch"]["max"] == 16  # the point-cloud default fits a Nano
    assert manifest["model"]["prior"] == fitted and fitted["family"] == "gmm"
    record = manifest["provenance"]["init_from"]
    assert record["run"] == os.path.abspath(ae) and len(record["checkpoint_sha256"]) == 64 and record["loaded"] > 0
    assert manifest["model"]["points"]["prior_weight"] == 0.01
    code, text = run("sample", out, "--n", 2, "--seed", 0, "--out", tmp_path / "g.ply")
    assert code == 0, text
    code, text = run("verify", out)
    assert code == 0, text
    # bench on a 3D bundle: meshes decoded per second and completion time, torch eager against the runtime
    code, text = run("bench", out, "--run", vae, "--backend", "torch,onnxruntime,ort", "--batch-sizes", "1,4",
                     "--sample-batch", 8, "--complete-batch", 64, "--complete-steps", 3, "--min-time", 0.01,
                     "--complete-min-time", 0.01, "--warmup", 1, "--max-iters", 5, "--no-memory", "--json")
    assert code == 0, text
    rows = json.loads(text)["rows"]
    done = {(r["backend"], r["task"], r["batch"]) for r in rows if r["status"] == "ok"}
    for backend in ("torch", "onnxruntime", "ort"):
        for task, batch in (("decode", 1), ("decode", 4), ("sample", 8), ("complete", 16)):  # complete: the cap
            assert (backend, task, batch) in done, (backend, task, batch, rows)
