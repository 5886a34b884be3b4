"""The torch-free runtime on small real bundles (see runtime_fixtures): trust rules, sampling per
prior family, interpolation, and latent-optimisation completion."""
import json
import os
import shutil

import numpy as np
import pytest

from jetgen.errors import JetgenError
from jetgen.runtime import Model
from jetgen.runtime.bundle import Bundle
from jetgen.runtime.images import decode_png, encode_png, load_images, region_mask, save_outputs
from jetgen.runtime.optim import Adam
from tests.runtime_fixtures import edit_manifest, make_bundle, reference_decode, reference_loss

HALF = region_mask("bottom-half", (1, 8, 8))  # 1 = observed: top half seen, bottom half hidden


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("bundles"))
    out = {}
    specs = {
        "vae": dict(kind="vae"),
        "cvae": dict(kind="cvae", n_labels=3),
        "ad": dict(kind="ad", encoder=False),
        "exp": dict(kind="vad", family="exponential", encoder=False),
        "uni": dict(kind="vad", family="uniform", encoder=False),
        "small": dict(kind="vae", batch_min=2, batch_max=4),  # same weights as "vae", tiny batch range
    }
    for name, spec in specs.items():
        out[name] = make_bundle(os.path.join(root, name + ".jetgen"), **spec)
    return out


def open_model(bundles, name, **kw):
    return Model.open(bundles[name][0], intra_op_threads=1, **kw)


def copy_bundle(bundles, name, tmp_path):
    dst = str(tmp_path / (name + ".jetgen"))
    shutil.copytree(bundles[name][0], dst)
    return dst


# -- trust rules ---------------------------------------------------------------------------------
def test_open_reads_the_manifest(bundles):
    m = open_model(bundles, "cvae")
    assert (m.kind, m.latent_dim, m.conditional, m.labels) == ("cvae", 4, True, ["0", "1", "2"])
    assert m.output_shape == (1, 8, 8) and m.prior.family == "gaussian"
    assert m.manifest["format_version"] == 1 and m.has_encoder


def test_a_changed_byte_is_refused(bundles, tmp_path):
    path = copy_bundle(bundles, "vae", tmp_path)
    f = os.path.join(path, "decoder.onnx")
    data = bytearray(open(f, "rb").read())
    data[-5] ^= 0xFF
    open(f, "wb").write(bytes(data))
    with pytest.raises(JetgenError, match="sha256"):
        Model.open(path)


def test_a_changed_size_is_refused(bundles, tmp_path):
    path = copy_bundle(bundles, "vae", tmp_path)
    with open(os.path.join(path, "encoder.onnx"), "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(JetgenError, match="bytes"):
        Model.open(path)


def test_a_missing_file_is_refused(bundles, tmp_path):
    path = copy_bundle(bundles, "vae", tmp_path)
    os.remove(os.path.join(path, "latent_grad.onnx"))
    with pytest.raises(JetgenError, match="lacks latent_grad.onnx"):
        Model.open(path)


@pytest.mark.parametrize("name", ["../decoder.onnx", "/etc/passwd", "sub/decoder.onnx", "..", ""])
def test_file_names_outside_the_bundle_are_refused(bundles, tmp_path, name):
    path = copy_bundle(bundles, "vae", tmp_path)
    edit_manifest(path, lambda m: m["graphs"]["decoder"].update(file=name))
    with pytest.raises(JetgenError, match="file name"):
        Model.open(path)


def test_a_symlink_leading_outside_is_refused(bundles, tmp_path):
    path = copy_bundle(bundles, "vae", tmp_path)
    outside = str(tmp_path / "elsewhere.onnx")
    shutil.move(os.path.join(path, "decoder.onnx"), outside)
    os.symlink(outside, os.path.join(path, "decoder.onnx"))
    with pytest.raises(JetgenError, match="outside the bundle"):
        Model.open(path)


@pytest.mark.parametrize("change,message", [
    (lambda m: m.update(format_version=3), "format_version 3"),
    (lambda m: m.update(format="something-else"), "not a jetgen bundle"),
    (lambda m: m["model"]["prior"]["params"].update(std=[1.0]), "list of 4 numbers"),
    (lambda m: m["model"].update(kind="gan"), "kind 'gan'"),
    (lambda m: m["graphs"]["decoder"]["inputs"][0].update(name="latent"), "needs"),
    (lambda m: m["graphs"]["decoder"]["inputs"][0].update(dtype="float16"), "float32"),
    (lambda m: m["graphs"].pop("decoder"), "no decoder"),
])
def test_bad_manifests_are_refused(bundles, tmp_path, change, message):
    path = copy_bundle(bundles, "vae", tmp_path)
    edit_manifest(path, change)
    with pytest.raises(JetgenError, match=message):
        Model.open(path)


def test_unreadable_or_missing_manifest(tmp_path):
    with pytest.raises(JetgenError, match="No bundle directory"):
        Model.open(str(tmp_path / "nothing.jetgen"))
    os.makedirs(str(tmp_path / "b.jetgen"))
    with pytest.raises(JetgenError, match="no manifest.json"):
        Model.open(str(tmp_path / "b.jetgen"))
    (tmp_path / "b.jetgen" / "manifest.json").write_text("{not json")
    with pytest.raises(JetgenError, match="damaged"):
        Model.open(str(tmp_path / "b.jetgen"))


def test_graph_shapes_must_match_the_manifest(bundles, tmp_path):
    # a manifest consistent with itself (output 1x4x16) but not with its graphs (1x8x8)
    path = copy_bundle(bundles, "vae", tmp_path)

    def change(m):
        m["model"]["output"]["shape"] = [1, 4, 16]
        for g in m["graphs"].values():
            for t in g["inputs"] + g["outputs"]:
                if t["shape"][1:] == [1, 8, 8]:
                    t["shape"] = ["batch", 1, 4, 16]
    edit_manifest(path, change)
    m = Model.open(path)
    with pytest.raises(JetgenError, match="shape"):
        m.decode(np.zeros((1, 4)))


# -- decode, sample, encode ----------------------------------------------------------------------
def test_decode_matches_numpy(bundles):
    m, (_, w) = open_model(bundles, "cvae"), bundles["cvae"]
    z = np.random.RandomState(0).standard_normal((5, 4))
    x = m.decode(z, labels=[0, 1, 2, 0, 1])
    assert x.dtype == np.float32 and x.shape == (5, 1, 8, 8)
    np.testing.assert_allclose(x, reference_decode(w, z, np.eye(3)[[0, 1, 2, 0, 1]]), atol=1e-5)
    np.testing.assert_allclose(m.decode(z, labels=np.eye(3)[[0, 1, 2, 0, 1]]), x)
    np.testing.assert_allclose(m.decode(z, labels=["0", "1", "2", "0", "1"]), x)


@pytest.mark.parametrize("name", ["vae", "ad", "exp", "uni"])
def test_sample_per_prior_family(bundles, name):
    m = open_model(bundles, name)
    x, z = m.sample(400, seed=7, return_latents=True)
    assert x.shape == (400, 1, 8, 8) and np.all((x >= 0) & (x <= 1))
    assert np.all(m.prior.contains(z))
    x2, z2 = m.sample(400, seed=7, return_latents=True)
    assert np.array_equal(x, x2) and np.array_equal(z, z2)
    assert not np.array_equal(z, m.sample(400, seed=8, return_latents=True)[1])
    if name in ("vae", "ad"):
        np.testing.assert_allclose(z.mean(0), m.prior.mean(), atol=0.25)
        np.testing.assert_allclose(z.std(0), m.prior.std, rtol=0.15)
    if name == "exp":  # mean 1/rate
        np.testing.assert_allclose(z.mean(0), 1 / m.prior.rate, rtol=0.2)


@pytest.mark.parametrize("name", ["vae", "exp", "uni"])
def test_temperature_scales_the_draw(bundles, name):
    m = open_model(bundles, name)
    _, z1 = m.sample(300, seed=1, return_latents=True)
    _, zh = m.sample(300, seed=1, temperature=0.5, return_latents=True)
    centre = m.prior.mean() if name != "exp" else 0.0
    np.testing.assert_allclose(zh - centre, 0.5 * (z1 - centre), atol=1e-5)
    _, z0 = m.sample(3, seed=1, temperature=0.0, return_latents=True)
    assert np.allclose(z0, centre)


def test_sample_labels(bundles):
    m = open_model(bundles, "cvae")
    a = m.sample(4, labels=[2], seed=0)
    assert np.array_equal(a, m.sample(4, labels=2, seed=0))
    assert np.array_equal(a, m.sample(4, labels=[2, 2, 2, 2], seed=0))
    assert np.array_equal(m.sample(6, seed=0), m.sample(6, labels=[0, 0, 1, 1, 2, 2], seed=0))  # none: every label
    with pytest.raises(JetgenError, match="Label 3 is out of range"):
        m.sample(2, labels=[0, 3])
    with pytest.raises(JetgenError, match="Got 3 labels for 4"):
        m.sample(4, labels=[0, 1, 2])
    with pytest.raises(JetgenError, match="not conditional"):
        open_model(bundles, "vae").sample(2, labels=1)


def test_input_validation(bundles):
    m = open_model(bundles, "vae")
    with pytest.raises(JetgenError, match="4 values each"):
        m.decode(np.zeros((2, 5)))
    bad = np.full((1, 1, 8, 8), 0.5)
    bad[0, 0, 3, 3] = np.nan
    with pytest.raises(JetgenError, match="NaN"):
        m.encode(bad)
    with pytest.raises(JetgenError, match="NaN"):
        m.decode([[0, np.inf, 0, 0]])
    x = np.full((2, 1, 8, 8), 0.5)
    with pytest.raises(JetgenError, match="mask has shape"):
        m.complete(x, np.ones((2, 1, 8, 7)))
    with pytest.raises(JetgenError, match="only 0"):
        m.complete(x, np.full((2, 1, 8, 8), 0.5))
    with pytest.raises(JetgenError, match="shape"):
        m.encode(np.zeros((2, 1, 9, 9)))
    with pytest.raises(JetgenError, match="outside this model's range"):
        m.encode(x * 3)
    with pytest.raises(JetgenError, match="no encoder"):
        open_model(bundles, "ad").encode(x)


def test_encode_and_reconstruct(bundles):
    m, (_, w) = open_model(bundles, "vae"), bundles["vae"]
    x = m.sample(3, seed=0)
    mu, logvar = m.encode(x)
    assert mu.shape == logvar.shape == (3, 4)
    np.testing.assert_allclose(mu, x.reshape(3, -1).dot(w["A"]) + w["c"], atol=1e-5)
    assert m.reconstruct(x).shape == x.shape
    ad = open_model(bundles, "ad")
    xa = ad.sample(2, seed=0)
    assert np.abs(ad.reconstruct(xa) - xa).mean() < 0.05


def test_chunks_follow_the_batch_range(bundles):
    big, small = open_model(bundles, "vae"), open_model(bundles, "small")
    z = np.random.RandomState(1).standard_normal((9, 4))
    np.testing.assert_allclose(small.decode(z), big.decode(z), atol=1e-6)
    np.testing.assert_allclose(small.decode(z[:1]), big.decode(z[:1]), atol=1e-6)  # padded up to min 2


# -- interpolation -------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["linear", "slerp"])
def test_interpolation_endpoints(bundles, mode):
    m = open_model(bundles, "vae")
    a, b = m.prior.sample(2, 1.0, 3)
    x, z = m.interpolate(a, b, steps=7, mode=mode)
    assert x.shape == (7, 1, 8, 8) and z.shape == (7, 4)
    np.testing.assert_allclose(z[0], a, atol=1e-5)
    np.testing.assert_allclose(z[-1], b, atol=1e-5)
    np.testing.assert_allclose(x[0], m.decode(a)[0], atol=1e-5)
    if mode == "slerp":  # equal norms stay on the sphere
        b2 = b / np.linalg.norm(b) * np.linalg.norm(a)
        _, zs = m.interpolate(a, b2, steps=5, mode="slerp")
        np.testing.assert_allclose(np.linalg.norm(zs, axis=1), np.linalg.norm(a), rtol=1e-5)


def test_interpolation_between_inputs(bundles):
    m = open_model(bundles, "vae")
    xa, xb = m.sample(2, seed=4)
    x, z = m.interpolate(xa, xb, steps=4)
    np.testing.assert_allclose(z[0], m.encode(xa)[0][0], atol=1e-5)
    ad = open_model(bundles, "ad")
    xa, xb = ad.sample(2, seed=4)
    x, z = ad.interpolate(xa, xb, steps=3)
    assert np.abs(x[0] - xa).mean() < 0.05 and np.abs(x[-1] - xb).mean() < 0.05
    cv = open_model(bundles, "cvae")
    with pytest.raises(JetgenError, match="conditional"):
        cv.interpolate(np.zeros(4), np.ones(4), steps=3)
    assert cv.interpolate(np.zeros(4), np.ones(4), steps=3, labels=1)[0].shape == (3, 1, 8, 8)


# -- completion ----------------------------------------------------------------------------------
def test_graph_gradient_matches_finite_differences(bundles):
    m, (_, w) = open_model(bundles, "vae"), bundles["vae"]
    rng = np.random.RandomState(0)
    z = rng.standard_normal((3, 4))
    target = m.sample(3, seed=1)
    mask = np.broadcast_to(HALF, target.shape).astype(np.float32)
    loss, grad = m.loss_grad(z, target, mask)
    np.testing.assert_allclose(loss, reference_loss(w, z, target, mask), rtol=1e-5)
    eps = 1e-2
    for j in range(4):
        step = np.zeros_like(z)
        step[:, j] = eps
        numeric = (m.loss_grad(z + step, target, mask)[0] - m.loss_grad(z - step, target, mask)[0]) / (2 * eps)
        np.testing.assert_allclose(grad[:, j], numeric, rtol=2e-3, atol=2e-3)


def test_complete_recovers_a_known_latent(bundles):
    m = open_model(bundles, "vae")
    x, z_true = m.sample(6, seed=11, return_latents=True)
    hidden = HALF == 0
    r = m.complete(x, HALF, steps=300, tol=None, prior_weight=0.0)  # tol=None: every one of the 300 steps
    assert r.history.shape == (301, 6) and r.steps == 300
    assert np.all(r.history[-1] < r.history[0])
    err = np.abs(r.decoded - x)[:, hidden].mean()
    mean_fill = np.abs(x - m.sample(2000, seed=5).mean(0))[:, hidden].mean()
    assert err < 0.1 * mean_fill, (err, mean_fill)
    np.testing.assert_allclose(r.z, z_true, atol=0.05)
    assert np.array_equal(r.x[:, HALF == 1], x[:, HALF == 1])  # observed pixels kept
    np.testing.assert_allclose(r.x[:, hidden], r.decoded[:, hidden])


def test_complete_with_the_prior_term_still_helps(bundles):
    m = open_model(bundles, "vae")
    x = m.sample(6, seed=12)
    hidden = HALF == 0
    r = m.complete(x, HALF)  # defaults: prior mean, lr 5e-2, the measured stopping rule, prior weight 1
    mean_fill = np.abs(x - m.sample(2000, seed=5).mean(0))[:, hidden].mean()
    assert np.abs(r.decoded - x)[:, hidden].mean() < 0.5 * mean_fill
    assert np.all(np.diff(r.history.mean(1))[:20] < 0)
    np.testing.assert_allclose(r.loss, r.history.min(0))


def test_batched_completion_equals_one_at_a_time(bundles):
    m = open_model(bundles, "vae")
    x = m.sample(5, seed=2)
    whole = m.complete(x, HALF, steps=40, tol=1e-3)
    for i in range(5):
        one = m.complete(x[i:i + 1], HALF, steps=40, tol=1e-3)
        np.testing.assert_allclose(one.z[0], whole.z[i], atol=1e-4)
        np.testing.assert_allclose(one.loss[0], whole.loss[i], rtol=1e-5)
    chunked = open_model(bundles, "small").complete(x, HALF, steps=40, tol=1e-3)
    np.testing.assert_allclose(chunked.z, whole.z, atol=1e-4)


def test_seeded_completion_repeats_exactly(bundles):
    m = open_model(bundles, "vae")
    x = m.sample(3, seed=2)
    a = m.complete(x, HALF, steps=20, init="random", seed=5)
    b = m.complete(x, HALF, steps=20, init="random", seed=5)
    assert np.array_equal(a.z, b.z) and np.array_equal(a.history, b.history)
    c = m.complete(x, HALF, steps=20, init="random", seed=6)
    assert not np.array_equal(a.history[0], c.history[0])
    e = m.complete(x, HALF, steps=20, init="encoder")
    assert e.z.shape == (3, 4)


def test_early_stop(bundles):
    m = open_model(bundles, "vae")
    x = m.sample(4, seed=3)
    r = m.complete(x, HALF, steps=2000, tol=1e-4)
    assert r.steps < 2000 and r.history.shape == (r.steps + 1, 4)


@pytest.mark.parametrize("name", ["exp", "uni"])
def test_completion_respects_the_constraint(bundles, name):
    m = open_model(bundles, name)
    x = m.sample(4, seed=1)
    # targets made by latents outside the support pull the optimiser across its boundary
    far = m.decode(np.full((4, 4), -3.0 if name == "exp" else 4.0))
    r = m.complete(far, HALF, steps=60, lr=0.2, init="random", seed=0)
    assert np.all(m.prior.contains(r.z))
    boundary = 0.0 if name == "exp" else 1.5
    assert np.any(np.isclose(r.z, boundary))
    assert m.complete(x, HALF, steps=30).loss.shape == (4,)


def test_completion_infers_labels(bundles):
    m = open_model(bundles, "cvae")
    truth = np.array([0, 1, 2, 2, 1, 0])
    x = m.sample(6, labels=truth, seed=9)
    with pytest.raises(JetgenError, match="conditional"):
        m.complete(x, HALF)
    r = m.complete(x, HALF, labels="infer", steps=150)
    assert r.label_losses.shape == (6, 3)
    assert np.mean(r.labels == truth) >= 5 / 6
    given = m.complete(x, HALF, labels=r.labels, steps=150)
    np.testing.assert_allclose(given.loss, r.loss, rtol=1e-4)


def test_adam_rows_are_independent():
    grad = np.random.RandomState(0).standard_normal((3, 2))
    a = Adam((3, 2), lr=0.1)
    p = a.step(np.zeros((3, 2)), grad, rows=np.array([0, 2]))
    assert np.all(p[1] == 0) and np.allclose(np.abs(p[[0, 2]]), 0.1)


# -- image files ---------------------------------------------------------------------------------
def test_builtin_png_round_trip(tmp_path):
    rng = np.random.RandomState(0)
    grey = rng.randint(0, 256, (5, 7)).astype(np.uint8)
    rgb = rng.randint(0, 256, (4, 3, 3)).astype(np.uint8)
    assert np.array_equal(decode_png(encode_png(grey)), grey)
    assert np.array_equal(decode_png(encode_png(rgb)), rgb)
    from PIL import Image  # pillow writes filtered rows (sub, up, average, paeth): the reader undoes them
    smooth = (np.add.outer(np.arange(20), np.arange(30)) * 4 % 256).astype(np.uint8)
    path = str(tmp_path / "p.png")
    Image.fromarray(smooth).save(path)
    assert np.array_equal(decode_png(open(path, "rb").read()), smooth)
    with pytest.raises(JetgenError, match="not a PNG"):
        decode_png(b"GIF89a....")
    with pytest.raises(JetgenError, match="readable"):
        decode_png(encode_png(grey)[:40])


def test_outputs_and_inputs_round_trip(tmp_path):
    x = np.random.RandomState(0).random_sample((3, 1, 8, 8)).astype(np.float32)
    save_outputs(str(tmp_path / "x.npy"), x)
    assert np.array_equal(load_images(str(tmp_path / "x.npy"), (1, 8, 8)), x)
    save_outputs(str(tmp_path / "one.png"), x[:1])
    back = load_images(str(tmp_path / "one.png"), (1, 8, 8))
    assert np.abs(back - x[:1]).max() <= 0.5 / 255 + 1e-6
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nrubbish")
    with pytest.raises(JetgenError, match="Cannot read"):
        load_images(str(tmp_path / "bad.png"), (1, 8, 8))
    with pytest.raises(JetgenError, match=r"\.png or \.npy"):
        save_outputs(str(tmp_path / "x.jpg"), x)


def test_bundle_open_without_verify_then_check(bundles):
    b = Bundle.open(bundles["vae"][0], verify=False)
    assert b.verified == {} and b.graph_path("decoder").endswith("decoder.onnx") and b.verified["decoder"]
    assert json.load(open(os.path.join(b.path, "manifest.json")))["format"] == "jetgen-bundle"


def test_bundles_written_before_the_restructure_still_open(tmp_path):
    """A cvae bundle exported by jetgen at commit ac40d87 (format_version 1, before jetgen.spec existed)
    opens, samples by label and completes with today's runtime."""
    import shutil

    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "bundle-v1", "cvae-ac40d87.jetgen")
    path = str(tmp_path / "old.jetgen")
    shutil.copytree(here, path)
    m = Model.open(path, intra_op_threads=1)
    assert m.kind == "cvae" and m.latent_dim == 3 and m.labels == [str(i) for i in range(10)]
    x = m.sample(4, labels=[0, 1, 2, 3], seed=0)
    assert x.shape == (4, 1, 28, 28) and np.isfinite(x).all() and 0 <= x.min() and x.max() <= 1
    mask = np.ones_like(x)
    mask[:, :, 14:] = 0
    r = m.complete(x, mask, labels=[0, 1, 2, 3], steps=5)
    assert r.x.shape == x.shape and np.all(r.history[-1] <= r.history[0] + 1e-6)


def test_point_bundles_written_before_the_modality_restructure_still_open(tmp_path):
    """A tiny atlasnet bundle exported by jetgen at commit 7fbe3b7 (format_version 2, no ``modality`` field)
    opens as a point-cloud model, verifies its golden vectors, samples, reconstructs and completes."""
    from jetgen.runtime.points import PointModel
    from jetgen.runtime.verify import verify_model

    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "bundle-v2-points",
                        "atlasnet-7fbe3b7.jetgen")
    path = str(tmp_path / "old.jetgen")
    shutil.copytree(here, path)
    assert "modality" not in json.load(open(os.path.join(path, "manifest.json")))["model"]
    m = Model.open(path, intra_op_threads=1)
    assert isinstance(m, PointModel) and m.modality == "points" and m.kind == "atlasnet" and m.latent_dim == 4 and m.faces.shape == (36, 3)
    assert verify_model(m)["ok"]
    clouds = m.sample(3, seed=0)
    assert clouds.shape == (3, 32, 3) and np.isfinite(clouds).all()
    assert m.reconstruct(clouds).shape == (3, 32, 3)
    r = m.complete(clouds[:, :10], steps=10, seed=0)
    assert r.x.shape == (3, 32, 3) and r.chamfer.shape == (3,) and np.all(r.history[-1] <= r.history[0] + 1e-6)


def test_the_manifest_names_its_modality_and_it_must_fit_the_kind(bundles, tmp_path):
    """model.modality: absent in older manifests (read from the kind: image for vae..vad), checked when present."""
    from jetgen import modalities

    path = copy_bundle(bundles, "vae", tmp_path)
    assert Model.open(path, intra_op_threads=1).modality == "image"
    edit_manifest(path, lambda m: m["model"].update(modality="image"))
    assert Model.open(path, intra_op_threads=1).modality == "image"
    edit_manifest(path, lambda m: m["model"].update(modality="points"))
    with pytest.raises(JetgenError, match="model.modality 'points' does not match its kind vae"):
        Model.open(path)
    edit_manifest(path, lambda m: m["model"].update(modality=3))
    with pytest.raises(JetgenError, match="model.modality has the wrong type"):
        Model.open(path)
    with pytest.raises(JetgenError, match="Unknown modality 'voxels'"):
        modalities.part("voxels", "codec")
    assert modalities.part("points", "runtime_model").__name__ == "PointModel"
    assert modalities.part("image", "serve") is None  # the generic serve code handles images
