"""jetgen export: every model kind to a bundle for every target, parity with PyTorch, gradients,
reduced precision, and refusals. Small runs are made here (a few optimiser steps on the digits);
each run is exported once per target and shared through module-scoped caches."""
import json
import os

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

from jetgen.cli import main
from jetgen.errors import JetgenError
from jetgen.export import exporter, from_run, onnx_tools
from jetgen.export.graphs import DecoderGraph, EncoderGraph, loss_and_grad
from jetgen.runtime.bundle import Bundle
from jetgen.runtime.targets import TARGETS

# id -> (model, arch, family, likelihood)
KINDS = {
    "vae-mlp": ("vae", "mlp", "gaussian", "bernoulli"),
    "vae-conv": ("vae", "conv", "gaussian", "bernoulli"),
    "cvae-mlp": ("cvae", "mlp", "gaussian", "gaussian"),
    "cvae-conv": ("cvae", "conv", "gaussian", "bernoulli"),
    "ad-dcgan": ("ad", "dcgan", "gaussian", "bernoulli"),
    "vad-gaussian": ("vad", "dcgan", "gaussian", "bernoulli"),
    "vad-exponential": ("vad", "dcgan", "exponential", "bernoulli"),
    "vad-uniform": ("vad", "dcgan", "uniform", "gaussian"),
}


def make_run(path, kind, arch, family="gaussian", likelihood="bernoulli", steps=4, seed=0):
    """A tiny trained run directory: build_model, a few Adam steps on digits, config and checkpoint."""
    from jetgen.models import build_model
    from jetgen.train import rundir
    from jetgen.train.data import load_digits

    data = load_digits()
    config = dict(model=kind, arch=arch, latent_dim=6, image_shape=list(data.image_shape), num_classes=10,
                  num_train=len(data.train_x), channels=[64, 32, 16], hidden=[64], family=family,
                  likelihood=likelihood, sigma=0.1, data="digits", classes=data.classes, epochs=1)
    torch.manual_seed(seed)
    model = build_model(config)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(data.train_x), (32,), generator=gen)
        y = torch.nn.functional.one_hot(data.train_y[idx], 10).float() if model.conditional else None
        terms = model.terms(data.train_x[idx], y, idx)
        loss = (terms["recon"] + terms["kl"].sum(1) + terms["reg"]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    os.makedirs(path, exist_ok=True)
    rundir.write_config(path, config)
    rundir.save_checkpoint(path, model, {}, {"epoch": 1, "step": 0, "global_step": steps})
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("export-runs")
    made = {}

    def get(kind_id):
        if kind_id not in made:
            made[kind_id] = make_run(str(root / kind_id), *KINDS[kind_id])
        return made[kind_id]
    return get


@pytest.fixture(scope="module")
def bundles(runs, tmp_path_factory):
    """bundle(kind_id, target, precision) -> (path, manifest), exported once per module."""
    root = tmp_path_factory.mktemp("bundles")
    made = {}

    def get(kind_id, target, precision="fp32"):
        key = (kind_id, target, precision)
        if key not in made:
            out = str(root / "{}-{}-{}.jetgen".format(*key))
            made[key] = (out, from_run.export_run(runs(kind_id), target, out, precision=precision,
                                                  calib_samples=128))
        return made[key]
    return get


def _feeds(manifest, graph, batch, seed=0):
    rng = np.random.RandomState(seed)
    model = manifest["model"]
    shape = (batch,) + tuple(model["output"]["shape"])
    z = exporter.sample_prior(model["prior"], batch, rng)
    feeds = {"z": z, "x": rng.random_sample(shape).astype(np.float32),
             "target": rng.random_sample(shape).astype(np.float32),
             "mask": (rng.random_sample(shape) > 0.4).astype(np.float32)}
    if model["conditional"]:
        feeds["y"] = np.eye(len(model["labels"]), dtype=np.float32)[rng.randint(0, len(model["labels"]), batch)]
    return {t["name"]: feeds[t["name"]] for t in manifest["graphs"][graph]["inputs"]}


def _torch_model(run_dir):
    from jetgen.train.rundir import load_run
    return load_run(run_dir).model


def _torch_outputs(model, graph, feeds):
    args = [torch.from_numpy(v) for v in feeds.values()]
    if graph == "latent_grad":
        return [t.numpy() for t in loss_and_grad(model, *args)]
    with torch.no_grad():
        out = (DecoderGraph(model) if graph == "decoder" else EncoderGraph(model))(*args)
    return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]


def _assert_close(got, want, tol=1e-4):
    for g, w in zip(got, want):
        scale = max(1.0, float(np.abs(w).max()))
        assert float(np.abs(g - w).max()) <= tol * scale, (float(np.abs(g - w).max()), scale)


# ------------------------------------------------------------------ every kind, nano and orin

@pytest.mark.parametrize("target", ["nano", "orin"])
@pytest.mark.parametrize("kind_id", sorted(KINDS))
def test_every_kind_exports_with_parity(kind_id, target, runs, bundles):
    out, manifest = bundles(kind_id, target)
    kind = KINDS[kind_id][0]
    bundle = Bundle.open(out)  # the runtime's reader accepts it: hashes, names, shapes
    expected = ["decoder", "encoder", "latent_grad"] if kind in ("vae", "cvae") else ["decoder", "latent_grad"]
    assert bundle.graph_names() == expected
    assert manifest["model"]["kind"] == kind and manifest["target"]["name"] == target
    assert manifest["model"]["prior"]["family"] == (KINDS[kind_id][2] if kind == "vad" else "gaussian")
    model = _torch_model(runs(kind_id))
    opset_max = TARGETS[target]["opset_max"]
    for graph, entry in manifest["graphs"].items():
        assert entry["parity"]["max_abs"] <= 1e-4 or entry["parity"]["max_rel"] <= 1e-4
        assert entry["opset"] <= opset_max and entry["batch"] == {"min": 1, "opt": 64, "max": 1024}
        proto = onnx.load(os.path.join(out, entry["file"]))
        assert onnx_tools.default_opset(proto) == entry["opset"]
        if target == "nano":
            assert entry["opset"] == 13
        ops = set(onnx_tools.op_types(proto))
        assert not ops & {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
                          "Reciprocal", "BatchNormalization", "Dropout"}
        for value in list(proto.graph.input) + list(proto.graph.output):
            assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
            assert value.type.tensor_type.shape.dim[0].dim_param == "batch"
        meta = {p.key: p.value for p in proto.metadata_props}
        assert meta["jetgen.kind"] == kind and meta["jetgen.target"] == target
        assert meta["jetgen.checkpoint_sha256"] == manifest["provenance"]["checkpoint_sha256"]
        # an independent run at a batch size not used at export
        feeds = _feeds(manifest, graph, 7, seed=11)
        got = onnx_tools.run(onnx_tools.session(proto), feeds)
        _assert_close(got, _torch_outputs(model, graph, feeds))


@pytest.mark.parametrize("target", ["tx2", "xavier", "desktop"])
def test_other_targets(target, bundles):
    out, manifest = bundles("vae-conv", target)
    Bundle.open(out)
    for entry in manifest["graphs"].values():
        assert entry["opset"] <= TARGETS[target]["opset_max"]
        assert entry["parity"]["max_abs"] <= 1e-4 or entry["parity"]["max_rel"] <= 1e-4
    if target == "tx2":
        assert {e["opset"] for e in manifest["graphs"].values()} == {13}


def test_manifest_fields(bundles, runs):
    out, manifest = bundles("ad-dcgan", "nano")
    on_disk = json.load(open(os.path.join(out, "manifest.json")))
    assert on_disk == json.loads(json.dumps(manifest))
    assert manifest["format"] == "jetgen-bundle" and manifest["format_version"] == 1
    assert manifest["name"] == "ad-dcgan-nano-fp32"
    model = manifest["model"]
    assert model["labels"] == [] and not model["conditional"] and model["output"]["shape"] == [1, 28, 28]
    table = _torch_model(runs("ad-dcgan")).latents.weight.detach().numpy()
    assert np.allclose(model["prior"]["params"]["mean"], table.mean(0), atol=1e-6)
    assert np.allclose(model["prior"]["params"]["std"], table.std(0), atol=1e-6)
    for key in ("jetgen", "torch", "onnx", "onnxruntime", "onnxslim", "python"):
        assert key in manifest["versions"]
    assert manifest["provenance"]["epochs"] == 1 and manifest["provenance"]["data"] == "digits"
    entry = manifest["graphs"]["latent_grad"]
    assert [t["name"] for t in entry["inputs"]] == ["z", "target", "mask"]
    assert entry["outputs"] == [{"name": "loss", "dtype": "float32", "shape": ["batch"]},
                                {"name": "grad", "dtype": "float32", "shape": ["batch", 6]}]
    _, cond = bundles("cvae-conv", "nano")
    assert cond["model"]["labels"] == [str(i) for i in range(10)]
    assert [t["name"] for t in cond["graphs"]["encoder"]["inputs"]] == ["x", "y"]
    assert cond["model"]["likelihood"] == {"name": "bernoulli", "sigma": None}


# ------------------------------------------------------------------ gradients

@pytest.mark.parametrize("kind_id", ["vae-conv", "vad-uniform"])
def test_gradient_matches_autograd_and_finite_difference(kind_id, bundles, runs):
    out, manifest = bundles(kind_id, "nano")
    sess = onnx_tools.session(onnx.load(os.path.join(out, "latent_grad.onnx")))
    feeds = _feeds(manifest, "latent_grad", 4, seed=5)
    loss, grad = onnx_tools.run(sess, feeds)
    model = _torch_model(runs(kind_id)).double()
    args = [torch.from_numpy(v).double() for v in feeds.values()]
    ref_loss, ref_grad = loss_and_grad(model, *args)
    _assert_close([loss, grad], [ref_loss.numpy(), ref_grad.numpy()])
    # central differences of the float64 torch loss for example 0
    z0 = args[0][:1]
    rest = [a[:1] for a in args[1:]]
    from jetgen.export.graphs import latent_loss
    h = 1e-5
    for i in range(z0.shape[1]):
        step = torch.zeros_like(z0)
        step[0, i] = h
        with torch.no_grad():
            fd = (latent_loss(model, z0 + step, *rest) - latent_loss(model, z0 - step, *rest)) / (2 * h)
        assert abs(float(fd) - float(grad[0, i])) <= 1e-3 * max(1.0, abs(float(fd)))


# ------------------------------------------------------------------ reduced precision

def test_fp16_quality(bundles):
    out, manifest = bundles("vae-conv", "xavier", "fp16")
    Bundle.open(out)
    assert manifest["precision"] == "fp16"
    assert {e["precision"] for e in manifest["graphs"].values()} == {"fp16"}
    quality = manifest["quality"]
    assert quality["max_decode_error"] < 1e-2
    assert abs(quality["neg_elbo"]["delta"]) < 1.0
    assert quality["latent_grad_max_rel_error"] < 5e-2
    fp32_bytes = bundles("vae-conv", "xavier")[1]["graphs"]["decoder"]["bytes"]
    assert manifest["graphs"]["decoder"]["bytes"] < 0.7 * fp32_bytes


def test_fp16_auto_decoder_quality_on_the_test_split(run_factory, tmp_path):
    manifest = from_run.export_run(run_factory("ad"), "xavier", str(tmp_path / "ad-fp16.jetgen"), precision="fp16")
    quality = manifest["quality"]
    recon = quality["recon_error"]
    assert "test image" in recon["unit"] and "test split" in quality["data"]
    assert recon["fp32"] < 15  # latents found for unseen digits reconstruct them (the mean image scores ~37)
    assert abs(recon["delta"]) < 0.01 * recon["fp32"]
    assert quality["max_decode_error"] < 1e-2


def test_int8_keeps_conditional_accuracy(run_factory, tmp_path):
    run = run_factory("cvae")
    manifest = from_run.export_run(run, "orin", str(tmp_path / "cvae-int8.jetgen"), precision="int8",
                                   calib_samples=256)
    Bundle.open(str(tmp_path / "cvae-int8.jetgen"))
    assert manifest["graphs"]["decoder"]["precision"] == "int8"
    assert manifest["graphs"]["latent_grad"]["precision"] == "fp16"
    proto = onnx.load(str(tmp_path / "cvae-int8.jetgen" / "decoder.onnx"))
    assert {"QuantizeLinear", "DequantizeLinear"} <= set(onnx_tools.op_types(proto))
    acc = manifest["quality"]["conditional_accuracy"]
    assert acc["fp32"] > 0.6, acc
    assert abs(acc["int8"] - acc["fp32"]) <= 0.05, acc


# ------------------------------------------------------------------ refusals and atomicity

def _cli(*args):
    result = CliRunner().invoke(main, ["export"] + [str(a) for a in args])
    return result, result.output  # click 8.2+: stdout and stderr interleaved


def test_int8_on_nano_refused(runs, tmp_path):
    result, text = _cli(runs("vae-mlp"), "--target", "nano", "--out", tmp_path / "b.jetgen", "--precision", "int8")
    assert result.exit_code == 1 and "INT8" in text and "Traceback" not in text
    assert not (tmp_path / "b.jetgen").exists()


@pytest.mark.parametrize("problem", ["unknown target", "missing run", "corrupt checkpoint", "other version",
                                     "bad precision"])
def test_bad_input_is_one_sentence(problem, runs, tmp_path):
    import shutil

    run = str(tmp_path / "run")
    shutil.copytree(runs("vae-mlp"), run)
    target, precision = "nano", "fp32"
    if problem == "unknown target":
        target = "pi4"
    elif problem == "missing run":
        run = str(tmp_path / "nothing")
    elif problem == "corrupt checkpoint":
        with open(os.path.join(run, "checkpoint", "model.safetensors"), "r+b") as handle:
            handle.seek(100)
            handle.write(b"\x00garbage\x00")
    elif problem == "other version":
        meta_path = os.path.join(run, "checkpoint", "meta.json")
        meta = json.load(open(meta_path))
        meta["format_version"] = 99
        json.dump(meta, open(meta_path, "w"))
    else:
        precision = "fp8"
    result, text = _cli(run, "--target", target, "--out", tmp_path / "b.jetgen", "--precision", precision)
    assert not (tmp_path / "b.jetgen").exists()
    assert "Traceback" not in text
    if problem in ("unknown target", "bad precision"):  # click.Choice: a usage error listing the choices
        assert result.exit_code == 2 and "Invalid value" in text and ("nano" in text or "fp16" in text), text
        return
    assert result.exit_code == 1, text
    assert text.startswith("Error: ") and len(text.strip().splitlines()) == 1


def test_existing_out_refused_unless_force(runs, bundles, tmp_path):
    out = tmp_path / "b.jetgen"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result, text = _cli(runs("vae-mlp"), "--target", "orin", "--out", out)
    assert result.exit_code == 1 and "already exists" in text and "--force" in text
    assert (out / "keep.txt").read_text() == "mine"
    result, text = _cli(runs("vae-mlp"), "--target", "orin", "--out", out, "--force")
    assert result.exit_code == 0, text
    assert not (out / "keep.txt").exists() and (out / "manifest.json").is_file()
    # the summary table: one row per graph
    for graph in ("decoder", "encoder", "latent_grad"):
        assert any(line.startswith(graph) and "ok" in line for line in text.splitlines()), text
    assert "Deployable on orin" in text


def test_injected_failure_leaves_no_bundle(runs, tmp_path, monkeypatch):
    real = exporter._write_graph
    calls = []

    def failing(ctx, graph, *args):
        calls.append(graph)
        if graph == "latent_grad":
            raise RuntimeError("disk full (injected)")
        return real(ctx, graph, *args)

    monkeypatch.setattr(exporter, "_write_graph", failing)
    out = tmp_path / "b.jetgen"
    with pytest.raises(RuntimeError, match="injected"):
        from_run.export_run(runs("vae-mlp"), "orin", str(out))
    assert calls == ["decoder", "encoder", "latent_grad"]
    assert os.listdir(str(tmp_path)) == []  # no bundle, no temporary directory


def test_unexportable_op_named(runs, tmp_path, monkeypatch):
    def forward(self, z, y=None):
        return torch.special.i0e(self.model.decode_logits(z, y))

    monkeypatch.setattr(DecoderGraph, "forward", forward)
    with pytest.raises(JetgenError, match="special_i0e"):
        from_run.export_run(runs("vae-mlp"), "nano", str(tmp_path / "b.jetgen"))
    assert not (tmp_path / "b.jetgen").exists()


def test_cli_json(runs, tmp_path):
    result, text = _cli(runs("ad-dcgan"), "--target", "xavier", "--out", tmp_path / "ad.jetgen", "--json",
                        "--max-batch", "256")
    assert result.exit_code == 0, text
    report = json.loads(result.stdout)
    assert report["manifest"]["graphs"]["decoder"]["batch"] == {"min": 1, "opt": 64, "max": 256}
    assert report["check"]["deployable"] is True
    assert set(report["manifest"]["graphs"]) == {"decoder", "latent_grad"}
