"""Point-cloud bundles (issue 11): an AtlasNet VAE exported through export_model for nano and desktop,
checked for every target, its gradient graph against torch autograd, and the torch-free runtime
(sample, interpolate, complete) against the torch model."""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from jetgen.errors import JetgenError
from jetgen.models.chamfer import one_sided_chamfer
from jetgen.runtime.model import Model
from jetgen.runtime.optim import Adam
from jetgen.runtime.shapes import chamfer_one_sided, cut_by_plane
from tests.shapes_fixtures import ellipsoids, export, shared_bundle
from tests.test_runtime_torchfree import BLOCKED, PROGRAM, ROOT


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return shared_bundle(tmp_path_factory)[1:]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return shared_bundle(tmp_path_factory)[0]


def test_the_nano_bundle_holds_three_opset13_graphs_faces_and_the_3d_settings(bundle, trained):
    from jetgen.export.check import check_model
    from jetgen.runtime.targets import TARGETS

    model = trained[0]
    with open(os.path.join(bundle, "manifest.json")) as handle:
        manifest = json.load(handle)
    assert manifest["format_version"] == 2 and manifest["model"]["modality"] == "points"
    assert manifest["model"]["kind"] == "atlasnet" and manifest["model"]["likelihood"]["name"] == "chamfer"
    points = manifest["model"]["points"]
    assert (points["patches"], points["grid"], points["target_points"], points["loss_scale"]) == (4, 5, 96, 1000.0)
    faces = np.load(os.path.join(bundle, "faces.npy"), allow_pickle=False)
    assert faces.dtype == np.int32 and np.array_equal(faces, model.faces()) and points["faces"]["count"] == len(faces)
    graphs = manifest["graphs"]
    assert {g: graphs[g]["opset"] for g in graphs} == {"decoder": 13, "encoder": 13, "latent_grad": 13}
    assert graphs["encoder"]["inputs"][0]["shape"] == ["batch", 64, 3]
    assert [t["shape"] for t in graphs["latent_grad"]["inputs"]] == [["batch", 8], ["batch", 96, 3], ["batch", 96]]
    for target in TARGETS:  # a nano graph (opset 13) deploys everywhere
        report = check_model(bundle, target)
        assert report["deployable"], (target, [f for f in report["findings"] if f["severity"] == "error"])
        assert not [f for f in report["findings"] if f["severity"] == "error"], target


def test_desktop_export_and_the_gradient_graph_uses_no_scatter(trained, tmp_path):
    import onnx

    model, train_x, test_x = trained
    manifest = export(model, train_x, test_x, str(tmp_path / "d.jetgen"), target="desktop", precision="fp16")
    assert manifest.check["deployable"]
    ops = set(n.op_type for n in onnx.load(str(tmp_path / "d.jetgen" / "latent_grad.onnx")).graph.node)
    assert not ops & {"ScatterElements", "ScatterND", "ArgMin", "GatherElements"}, ops
    row = manifest["quality"]["test_chamfer"]  # the reduced-precision study measures the test Chamfer
    assert row["fp32"] > 0 and abs(row["delta"]) < 0.05 * row["fp32"]


def test_latent_grad_graph_matches_torch_autograd_of_the_one_sided_chamfer(bundle, trained):
    model, _, test_x = trained
    m = Model.open(bundle, intra_op_threads=1)
    target, mask = m.observed([cut_by_plane(c, i)[0] for i, c in enumerate(test_x[:3])])
    z = torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
    loss, grad = m.loss_grad(z.numpy(), target, mask)
    zz = z.clone().requires_grad_(True)
    want = one_sided_chamfer(torch.from_numpy(target), model.decode(zz), torch.from_numpy(mask))
    (want_grad,) = torch.autograd.grad(want.sum(), zz)
    np.testing.assert_allclose(loss, want.detach().numpy(), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(grad, want_grad.numpy(), rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(loss, chamfer_one_sided(target, m.decode(z.numpy()), mask), rtol=1e-4)


def torch_completion(model, target, mask, z0, steps, lr, scale, prior_weight):
    """The completion objective minimised with torch autograd and the same Adam: the best objective."""
    adam, z, best = Adam(z0.shape, lr=lr), z0.astype(np.float64), np.inf
    for _ in range(steps + 1):
        zt = torch.from_numpy(z.astype(np.float32)).requires_grad_(True)
        obj = scale * one_sided_chamfer(torch.from_numpy(target), model.decode(zt), torch.from_numpy(mask)) + \
            prior_weight * 0.5 * (zt ** 2).sum(1)
        (grad,) = torch.autograd.grad(obj.sum(), zt)
        best = min(best, float(obj.detach()))
        z = adam.step(z, grad.numpy())
    return best


def test_completion_lowers_the_chamfer_and_matches_a_torch_loop(bundle, trained):
    from jetgen.runtime.points import resample

    model, _, test_x = trained
    m = Model.open(bundle, intra_op_threads=1)
    partial = cut_by_plane(test_x[0], 3)[0]
    r = m.complete(partial, steps=60, tol=None, init="encoder")
    assert r.x.shape == (1, 100, 3) and r.faces.shape == (4 * 2 * 16, 3)
    start = chamfer_one_sided(partial[None], m.reconstruct(partial))[0]
    assert r.chamfer[0] < 0.9 * start
    np.testing.assert_allclose(chamfer_one_sided(m.observed([partial])[0], r.x, m.observed([partial])[1]),
                               r.chamfer, rtol=1e-3)
    target, mask = m.observed([partial])
    with torch.no_grad():
        z0 = model.encode(torch.from_numpy(resample(partial, 64)[None]))[0].numpy()
    want = torch_completion(model, target, mask, z0, 60, 5e-2, 1000.0, 0.01)
    assert abs(r.loss[0] - want) <= 0.02 * want, (r.loss[0], want)


def test_multistart_keeps_the_best_start_and_treats_clouds_independently(bundle, trained):
    _, _, test_x = trained
    m = Model.open(bundle, intra_op_threads=1)
    partials = [cut_by_plane(test_x[i], 5 + i)[0] for i in range(2)]
    encoder = m.complete(partials, steps=0, init="encoder")
    one = m.complete(partials, steps=0, starts=1)  # the single best of the encoder's code and the anchors
    assert (one.history[0] <= encoder.history[0] + 1e-9).all()
    both = m.complete(partials, steps=20, tol=None)
    alone = [m.complete(p, steps=20, tol=None) for p in partials]
    np.testing.assert_allclose(both.loss, [a.loss[0] for a in alone], rtol=1e-5)
    assert both.history.shape == (21, 2) and both.x.shape == (2, 100, 3)
    with pytest.raises(JetgenError, match="starts"):
        m.complete(partials[0], starts=0)


def test_runtime_samples_interpolates_and_completes_without_torch(bundle, tmp_path):
    np.save(str(tmp_path / "a.npy"), ellipsoids(1, 300, 5)[0])
    np.save(str(tmp_path / "part.npy"), cut_by_plane(ellipsoids(1, 300, 6)[0], 0)[0])
    code = PROGRAM.split("import jetgen.runtime")[0] + textwrap.dedent("""
        import numpy as np
        from jetgen.runtime import Model
        m = Model.open({bundle!r}, intra_op_threads=1)
        x = m.sample(3, seed=0)
        assert x.shape == (3, 100, 3) and m.faces.shape == (128, 3)
        a, b = np.load({a!r}), np.load({part!r})
        frames, z = m.interpolate(a, b, steps=4)
        assert frames.shape == (4, 100, 3)
        r = m.complete(b, steps=40)
        assert r.history[-1][0] < r.history[0][0]
        from click.testing import CliRunner
        from jetgen.cli import main
        result = CliRunner().invoke(main, ["complete", {bundle!r}, "--input", {part!r}, "--out", {out!r}, "--steps", "20"])
        assert result.exit_code == 0, result.output
        loaded = sorted(n for n in sys.modules if n.split(".")[0] in BLOCKED)
        assert not loaded, loaded
        print("torch-free ok")
    """).format(bundle=bundle, a=str(tmp_path / "a.npy"), part=str(tmp_path / "part.npy"), out=str(tmp_path / "c.obj"))
    code = code.replace("{blocked!r}", repr(BLOCKED))
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "torch-free ok" in proc.stdout and os.path.isfile(str(tmp_path / "c.obj"))


def test_tampered_faces_are_refused(bundle, tmp_path):
    copy = str(tmp_path / "t.jetgen")
    shutil.copytree(bundle, copy)
    faces = np.load(os.path.join(copy, "faces.npy"))
    faces[0, 0] = 99
    np.save(os.path.join(copy, "faces.npy"), faces, allow_pickle=False)
    m = Model.open(copy)
    with pytest.raises(JetgenError, match="sha256"):
        m.faces
    m.sample(1, seed=0)  # the clouds do not need the faces


def _rewrite_graph(bundle, graph, change):
    """Change a graph's weights and record its new hash, as a broken re-export would."""
    import hashlib

    import onnx
    from onnx import numpy_helper

    path = os.path.join(bundle, graph + ".onnx")
    proto = onnx.load(path)
    change(proto, numpy_helper)
    onnx.save(proto, path)
    with open(os.path.join(bundle, "manifest.json")) as handle:
        manifest = json.load(handle)
    with open(path, "rb") as handle:
        data = handle.read()
    manifest["graphs"][graph].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    with open(os.path.join(bundle, "manifest.json"), "w") as handle:
        json.dump(manifest, handle)


def test_verify_passes_and_fails_on_a_perturbed_decoder(bundle, tmp_path):
    from jetgen.runtime.verify import verify_model

    assert verify_model(Model.open(bundle, intra_op_threads=1))["ok"]
    copy = str(tmp_path / "p.jetgen")
    shutil.copytree(bundle, copy)

    def scale_biggest(proto, numpy_helper):
        init = max(proto.graph.initializer, key=lambda t: numpy_helper.to_array(t).size)
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.5, init.name))

    _rewrite_graph(copy, "decoder", scale_biggest)
    report = verify_model(Model.open(copy, intra_op_threads=1))
    assert not report["ok"]
    assert any(not row["ok"] and row["graph"] == "decoder" for row in report["rows"])


def test_a_version1_manifest_cannot_declare_a_point_cloud_model(bundle, tmp_path):
    from jetgen import spec

    copy = str(tmp_path / "v1.jetgen")
    shutil.copytree(bundle, copy)
    with open(os.path.join(copy, "manifest.json")) as handle:
        manifest = json.load(handle)
    manifest["format_version"] = 1
    with pytest.raises(JetgenError, match="point-cloud bundles are version 2"):
        spec.check_manifest(manifest)
    manifest["format_version"], manifest["model"]["points"]["grid"] = 2, 6
    with pytest.raises(JetgenError, match="re-export"):
        spec.check_manifest(manifest)
