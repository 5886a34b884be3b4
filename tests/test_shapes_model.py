"""AtlasNet and Chamfer in torch: distances against brute force, the hand-written gradient against
autograd, the ONNX opset-13 export of the gradient graph, the model interface, transfer, a tiny overfit."""
import io
import warnings

import numpy as np
import pytest
import torch

from jetgen.models.atlasnet import AE_LOGVAR, AtlasNet, grid_faces, init_from
from jetgen.models.chamfer import ChamferLatentGrad, chamfer_distance, chamfer_terms, one_sided_chamfer, \
    one_sided_chamfer_and_grad

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


SMALL = dict(latent_dim=16, patches=4, hidden=32, grid=5, train_points=128, encoder_points=200)
# what a gradient graph may hold: matrix products, reductions, elementwise maths, and shape plumbing
ALLOWED_OPS = {"MatMul", "Gemm", "ReduceMin", "ReduceSum", "ReduceMax", "ReduceMean", "Add", "Sub", "Mul", "Div",
               "Relu", "Clip", "Max", "Min", "Equal", "Greater", "Less", "Cast", "Where", "Neg", "Pow", "Sqrt",
               "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Shape", "Gather", "Concat", "Constant",
               "ConstantOfShape", "Expand", "Identity", "Slice"}


def _brute_force(a, b):
    d = ((a[:, :, None, :] - b[:, None, :, :]) ** 2).sum(-1)
    return d.min(2).values.mean(1), d.min(1).values.mean(1)


def test_chamfer_matches_brute_force_in_value_and_gradient():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 70, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 50, 3, generator=g, dtype=torch.float64, requires_grad=True)
    ref_ab, ref_ba = _brute_force(a, b)
    ga_ref, gb_ref = torch.autograd.grad((ref_ab + 2 * ref_ba).sum(), (a, b))
    d_ab, d_ba = chamfer_terms(a, b, chunk_elements=3 * 50 * 7)  # several chunks of 7 rows
    torch.testing.assert_close(d_ab, ref_ab)
    torch.testing.assert_close(d_ba, ref_ba)
    ga, gb = torch.autograd.grad((d_ab + 2 * d_ba).sum(), (a, b))
    torch.testing.assert_close(ga, ga_ref)
    torch.testing.assert_close(gb, gb_ref)
    torch.testing.assert_close(chamfer_distance(a, b), ref_ab + ref_ba)
    assert float(chamfer_distance(a, a).detach().abs().max()) == 0.0


def test_one_sided_chamfer_by_hand_matches_autograd_with_a_mask():
    g = torch.Generator().manual_seed(1)
    observed = torch.randn(2, 30, 3, generator=g, dtype=torch.float64)
    decoded = torch.randn(2, 45, 3, generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(2, 30, dtype=torch.float64)
    mask[1, 20:] = 0.0
    observed[1, 20:] = 100.0  # padding far away must not count
    ref = one_sided_chamfer(observed, decoded, mask)
    brute = ((observed[:, :, None] - decoded[:, None]) ** 2).sum(-1).min(2).values
    torch.testing.assert_close(ref, (brute * mask).sum(1) / mask.sum(1))
    (ref_grad,) = torch.autograd.grad(ref.sum(), decoded)
    loss, grad = one_sided_chamfer_and_grad(observed, mask, decoded.detach())
    torch.testing.assert_close(loss, ref.detach())
    torch.testing.assert_close(grad, ref_grad)


def test_latent_gradient_by_hand_matches_autograd_through_the_decoder():
    torch.manual_seed(0)
    model = AtlasNet("vae", **SMALL).double().eval().requires_grad_(False)
    module = model.latent_grad_module()
    assert isinstance(module, ChamferLatentGrad)
    z = torch.randn(3, 16, dtype=torch.float64)
    target = torch.randn(3, 40, 3, dtype=torch.float64) * 0.5
    mask = (torch.rand(3, 40) > 0.3).double()
    loss, grad = module(z, target, mask)
    zz = z.clone().requires_grad_(True)
    ref = one_sided_chamfer(target, model.decode(zz), mask)
    (ref_grad,) = torch.autograd.grad(ref.sum(), zz)
    torch.testing.assert_close(loss, ref.detach())
    torch.testing.assert_close(grad, ref_grad)
    assert float(grad.abs().max()) > 0


def _export(module, args, inputs, outputs):
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, buf, dynamo=False, opset_version=13, input_names=inputs,
                          output_names=outputs, dynamic_axes={n: {0: "batch"} for n in inputs + outputs})
    return buf.getvalue()


def _check_ops(data):
    model = onnx.load_from_string(data)
    onnx.checker.check_model(model)
    assert [i.version for i in model.opset_import if i.domain in ("", "ai.onnx")] == [13]
    ops = {n.op_type for n in model.graph.node}
    assert ops <= ALLOWED_OPS, ops - ALLOWED_OPS
    assert not ops & {"ScatterElements", "ScatterND", "ArgMin", "ArgMax", "TopK", "GatherElements"}
    shapes = {o for n in model.graph.node if n.op_type == "Shape" for o in n.output}
    assert all(n.input[0] in shapes for n in model.graph.node if n.op_type == "Gather")  # only shape plumbing
    return ops


def test_gradient_graph_exports_at_opset_13_and_runs_in_onnxruntime():
    torch.manual_seed(0)
    model = AtlasNet("vae", **SMALL).eval().requires_grad_(False)
    module = model.latent_grad_module().eval()
    z, target = torch.randn(2, 16), torch.randn(2, 40, 3) * 0.5
    mask = torch.ones(2, 40)
    data = _export(module, (z, target, mask), ["z", "target", "mask"], ["loss", "grad"])
    ops = _check_ops(data)
    assert {"MatMul", "ReduceMin", "Equal"} <= ops
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    for batch in (1, 3):  # the batch axis is dynamic
        z, target = torch.randn(batch, 16), torch.randn(batch, 40, 3) * 0.5
        mask = torch.ones(batch, 40)
        mask[0, 25:] = 0.0
        loss, grad = session.run(None, {"z": z.numpy(), "target": target.numpy(), "mask": mask.numpy()})
        ref_loss, ref_grad = module(z, target, mask)
        np.testing.assert_allclose(loss, ref_loss.numpy(), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(grad, ref_grad.numpy(), rtol=1e-3, atol=1e-5)


def test_decoder_and_encoder_export_at_opset_13():
    torch.manual_seed(0)
    for variant in ("ae", "vae"):
        model = AtlasNet(variant, **SMALL).eval().requires_grad_(False)
        z, x = torch.randn(2, 16), torch.randn(2, 200, 3)
        dec = _export(model.grid_decoder(), (z,), ["z"], ["points"])
        _check_ops(dec)
        points = ort.InferenceSession(dec, providers=["CPUExecutionProvider"]).run(None, {"z": z.numpy()})[0]
        assert points.shape == (2, 4 * 25, 3)
        np.testing.assert_allclose(points, model.decode(z).detach().numpy(), rtol=1e-4, atol=1e-5)

        class Encoder(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, x):
                return self.m.encode(x)

        enc = _export(Encoder(model), (x,), ["x"], ["mu", "logvar"])
        mu, logvar = ort.InferenceSession(enc, providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})
        ref_mu, ref_logvar = model.encode(x)
        np.testing.assert_allclose(mu, ref_mu.detach().numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(logvar, ref_logvar.detach().numpy(), rtol=1e-4, atol=1e-5)


def test_terms_follow_the_model_interface():
    torch.manual_seed(0)
    x = torch.randn(5, 300, 3)
    for variant in ("ae", "vae"):
        model = AtlasNet(variant, **SMALL)
        assert (model.kind, model.has_encoder, model.conditional, model.latent_dim) == ("atlasnet", True, False, 16)
        t = model.terms(x)
        assert t["recon"].shape == (5,) and t["kl"].shape == (5, 16) and t["reg"].shape == (5,)
        assert t["z"].shape == t["mu"].shape == t["logvar"].shape == (5, 16)
        assert float(t["recon"].detach().min()) > 0
        if variant == "ae":
            assert float(t["kl"].abs().max()) == 0.0 and torch.equal(t["z"], t["mu"])
            assert float(t["logvar"].max()) == AE_LOGVAR
        else:
            assert float(t["kl"].min()) >= 0.0 and not torch.equal(t["z"], t["mu"])
        assert model.decode(t["z"]).shape == (5, 4 * 25, 3) == (5,) + model.output_shape
        assert model.decode(t["z"], grid=3).shape == (5, 4 * 9, 3)
        assert model.prior_sample(7).shape == (7, 16)
        assert model.prior_spec() == {"family": "gaussian", "params": {"mean": [0.0] * 16, "std": [1.0] * 16}}
    with pytest.raises(ValueError, match="variant"):
        AtlasNet("gan")


def test_grid_faces_triangulate_each_patch():
    faces = grid_faces(3, 4)
    assert faces.dtype == np.int32 and faces.shape == (3 * 2 * 9, 3)
    assert faces.min() == 0 and faces.max() == 3 * 16 - 1
    assert all(len(set(f)) == 3 for f in faces.tolist())
    patch = faces // 16
    assert (patch == patch[:, :1]).all()  # no triangle spans two patches
    edges = {}
    for f in faces[:18].tolist():
        for a, b in ((f[0], f[1]), (f[1], f[2]), (f[2], f[0])):
            edges[tuple(sorted((a, b)))] = edges.get(tuple(sorted((a, b))), 0) + 1
    assert set(edges.values()) == {1, 2}  # a sheet: inner edges shared by two triangles, borders by one
    assert sum(v == 1 for v in edges.values()) == 4 * 3  # the border of a 4 x 4 grid has 12 edges
    # the grid decoder's triangles have area: the patch is a sheet, not a line
    model = AtlasNet("ae", **SMALL)
    v = model.decode(torch.randn(1, 16))[0].detach().numpy()
    f = model.faces()
    area = 0.5 * np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1)
    assert (area > 0).mean() > 0.99


def test_init_from_reports_loaded_partial_skipped_and_new_tensors():
    ae = AtlasNet("ae", **SMALL)
    vae = AtlasNet("vae", **SMALL)
    report = init_from(vae, ae.state_dict())
    assert "encoder.mu_head.weight" in report["loaded"] and "decoder.weights.0" in report["loaded"]
    assert report["new"] == ["encoder.logvar_head.weight", "encoder.logvar_head.bias"]
    assert report["skipped"] == [] and report["partial"] == [] and report["unused"] == []
    assert torch.equal(vae.decoder.weights[2], ae.decoder.weights[2])
    x = torch.randn(2, 200, 3)
    torch.testing.assert_close(vae.encode(x)[0], ae.encode(x)[0])

    more = AtlasNet("vae", **dict(SMALL, patches=6))
    report = init_from(more, vae.state_dict())
    assert sorted(report["partial"]) == sorted(n for n in more.state_dict() if n.startswith("decoder."))
    assert torch.equal(more.decoder.weights[1][:4], vae.decoder.weights[1])

    wider = AtlasNet("vae", **dict(SMALL, latent_dim=8))
    report = init_from(wider, vae.state_dict())
    assert "encoder.mu_head.weight" in report["skipped"] and "encoder.point_mlp.0.weight" in report["loaded"]


def test_tiny_overfit_lowers_the_chamfer():
    from jetgen.train.shapes import procedural_shapes

    torch.manual_seed(0)
    data = procedural_shapes(n_train=2, n_test=0, points=256, classes=("sword", "table"))
    x = data.train_x
    model = AtlasNet("ae", latent_dim=16, patches=4, hidden=64, train_points=256, encoder_points=256)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = float(model.terms(x)["recon"].mean())
    for _ in range(150):
        loss = model.terms(x)["recon"].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        z = model.encode(x)[0]
        final = float(chamfer_distance(model.decode(z, grid=8), x).mean()) * model.recon_scale
    assert final < first / 10 and final < 15.0, (first, final)
