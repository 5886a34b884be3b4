"""Golden vectors, the reader side: the manifest rules for `golden`, `jetgen verify` on ONNX Runtime and
on the fake TensorRT, a backend that perturbs its outputs (must fail), `jetgen build` deleting an engine
that fails, and the TensorRT path of `complete` copying target and mask to the device once per call."""
import json
import os
import shutil
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from jetgen.cli import main
from jetgen.errors import JetgenError
from jetgen.runtime import Model
from jetgen.runtime.backends.ort import OrtSession
from jetgen.runtime.verify import errors, verify_model
from tests.golden_fixtures import add_golden
from tests.runtime_fixtures import edit_manifest, make_bundle
from tests.test_trt_logic import fake_device  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def golden_bundle(tmp_path_factory):
    path, weights = make_bundle(str(tmp_path_factory.mktemp("g") / "cvae.jetgen"), kind="cvae", latent_dim=4,
                                n_labels=3)
    add_golden(path, weights)
    return path


def copy(bundle, tmp_path, name="copy.jetgen"):
    dst = str(tmp_path / name)
    shutil.copytree(bundle, dst)
    return dst


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_verify_passes_on_onnx_runtime(golden_bundle):
    result = cli("verify", golden_bundle, "--threads", "1", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] and report["graphs"] == {"decoder": "fp32", "encoder": "fp32", "latent_grad": "fp32"}
    seen = set((r["graph"], r["output"], r["batch"]) for r in report["rows"])
    assert ("decoder", "x", 1) in seen and ("latent_grad", "grad", 5) in seen and ("encoder", "logvar", 5) in seen
    assert all(r["max_abs"] < 1e-4 for r in report["rows"])
    text = cli("verify", golden_bundle, "--threads", "1")
    assert text.exit_code == 0 and "All 10 outputs within tolerance on ort." in text.output


def test_a_backend_that_perturbs_its_outputs_fails(golden_bundle, monkeypatch):
    real = OrtSession.run

    def perturbed(self, feeds, validate=True):
        out = real(self, feeds, validate)
        return dict((k, v * (1.1 if self.name == "latent_grad" and k == "grad" else 1.0)) for k, v in out.items())

    monkeypatch.setattr(OrtSession, "run", perturbed)
    result = cli("verify", golden_bundle, "--threads", "1")
    assert result.exit_code == 1
    assert "FAILED" in result.output and "Verification failed: the latent_grad graph's output 'grad'" in result.output
    assert "Traceback" not in result.output
    with Model.open(golden_bundle, intra_op_threads=1) as model:
        report = verify_model(model)
    assert not report["ok"]
    assert set(r["graph"] for r in report["rows"] if not r["ok"]) == {"latent_grad"}


def test_errors_are_normwise_and_nan_is_infinitely_wrong():
    assert errors(np.array([1.0, 2.0]), np.array([1.0, 2.5])) == (0.5, 0.2)
    assert errors(np.array([np.nan]), np.array([1.0])) == (float("inf"), float("inf"))
    assert errors(np.zeros(3), np.zeros(2))[0] == float("inf")


def test_without_golden_vectors_there_is_nothing_to_verify(tmp_path):
    path, _ = make_bundle(str(tmp_path / "plain.jetgen"))
    result = cli("verify", path, "--threads", "1")
    assert result.exit_code == 1 and "carries no golden vectors" in result.output


@pytest.mark.parametrize("change,message", [
    (lambda g: g[0]["inputs"]["z"].update(file="../z.npy"), "not a plain file name"),
    (lambda g: g[0]["inputs"]["z"].update(file="z.pkl"), "golden files are .npy"),
    (lambda g: g[0]["inputs"]["z"].update(sha256="nothex"), "not a sha256"),
    (lambda g: g[0]["inputs"]["z"].update(shape=[0, 4]), "positive whole numbers"),
    (lambda g: g[0]["inputs"]["z"].update(shape=[5000, 4]), "larger than a golden case may be"),
    (lambda g: g[0]["inputs"]["z"].update(shape=[1, 5]), "expected [batch] + [4]"),
    (lambda g: g[1]["inputs"]["z"].update(shape=[3, 4]), "mixes batch sizes"),
    (lambda g: g[0]["outputs"].update(extra=g[0]["outputs"]["x"]), "has outputs ['extra', 'x']"),
    (lambda g: g[0].update(name="a/b"), "golden case names"),
    (lambda g: g.append(dict(g[0])), "twice"),
    (lambda g: g.extend([{"name": "c{}".format(i), "inputs": {}, "outputs": {}} for i in range(20)]), "at most 16"),
])
def test_golden_entries_are_checked_before_use(golden_bundle, tmp_path, change, message):
    path = copy(golden_bundle, tmp_path)
    edit_manifest(path, lambda m: change(m["graphs"]["decoder"]["golden"]))
    with pytest.raises(JetgenError) as err:
        Model.open(path)
    assert message in str(err.value)


def test_damaged_or_pickled_golden_files_are_refused(golden_bundle, tmp_path):
    path = copy(golden_bundle, tmp_path)
    manifest = json.load(open(os.path.join(path, "manifest.json")))
    entry = manifest["graphs"]["decoder"]["golden"][0]["outputs"]["x"]
    target = os.path.join(path, "golden", entry["file"])
    data = bytearray(open(target, "rb").read())
    data[-1] ^= 1
    open(target, "wb").write(bytes(data))
    result = cli("verify", path, "--threads", "1")
    assert result.exit_code == 1 and "does not match its sha256" in result.output
    # an object array whose sha256 the manifest agrees with: np.load(allow_pickle=False) refuses it
    np.save(target, np.array([{"a": 1}] * 40, dtype=object), allow_pickle=True)
    import hashlib
    entry["sha256"] = hashlib.sha256(open(target, "rb").read()).hexdigest()
    entry["shape"] = [1, 1, 8, 8]
    json.dump(manifest, open(os.path.join(path, "manifest.json"), "w"))
    with Model.open(path, intra_op_threads=1) as model:
        with pytest.raises(JetgenError, match="not a readable .npy array|does not fit shape"):
            verify_model(model)


def test_a_golden_link_out_of_the_bundle_is_refused(golden_bundle, tmp_path):
    path = copy(golden_bundle, tmp_path)
    outside = tmp_path / "elsewhere"
    shutil.move(os.path.join(path, "golden"), str(outside))
    os.symlink(str(outside), os.path.join(path, "golden"))
    result = cli("verify", path, "--threads", "1")
    assert result.exit_code == 1 and "outside the bundle's golden/ directory" in result.output


def test_verify_on_the_fake_tensorrt(golden_bundle, tmp_path, fake_device):  # noqa: F811
    fake_device("10.3", "cudart")
    path = copy(golden_bundle, tmp_path)
    result = cli("verify", path, "--backend", "trt", "--precision", "fp32", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["graphs"]["decoder"] == "fp32"
    auto = json.loads(cli("verify", path, "--backend", "trt", "--json").output)
    assert auto["ok"] and auto["graphs"]["decoder"] == "fp16"  # auto builds fp16 on an Orin: its tolerance applies


def _perturb_engines(monkeypatch, amount=0.1):
    trt = sys.modules["tensorrt"]
    original = trt.Runtime.deserialize_cuda_engine

    class Noisy(object):
        def __init__(self, real):
            self.real = real

        def run(self, names, feeds):
            return [np.asarray(v) * (1 + amount) + amount for v in self.real.run(names, feeds)]

    def deserialize(self, blob):
        engine = original(self, blob)
        if engine is not None:
            engine.session = Noisy(engine.session)
        return engine

    monkeypatch.setattr(trt.Runtime, "deserialize_cuda_engine", deserialize)


def test_build_verifies_each_engine_and_deletes_one_that_fails(golden_bundle, tmp_path, fake_device, monkeypatch):  # noqa: F811,E501
    fake_device("8.6.2", "cudart", cc=(7, 2), name="Xavier")
    path = copy(golden_bundle, tmp_path)
    good = cli("build", path, "--precision", "fp32", "--graph", "decoder")
    assert good.exit_code == 0, good.output
    assert "golden check" in good.output and "ok (2 outputs" in good.output
    engines = sorted(os.listdir(os.path.join(path, "engines")))
    assert any(name.startswith("decoder-fp32-") and name.endswith(".engine") for name in engines)

    _perturb_engines(monkeypatch)
    bad = cli("build", path, "--precision", "fp32", "--graph", "encoder")
    assert bad.exit_code == 1
    assert "Deleted 1 engine(s) that failed the golden check: the encoder graph's output" in bad.output
    assert "beyond the fp32 tolerance" in bad.output and "Traceback" not in bad.output
    left = os.listdir(os.path.join(path, "engines"))
    assert not any(name.startswith("encoder-") for name in left)  # engine and sidecar gone
    assert any(name.startswith("decoder-fp32-") for name in left)  # the good one stays


def test_complete_on_tensorrt_copies_target_and_mask_once(tmp_path, fake_device):  # noqa: F811
    gpu, _ = fake_device("10.3", "cudart")
    bundle, _ = make_bundle(str(tmp_path / "c.jetgen"), kind="cvae", latent_dim=4, n_labels=3)
    ref = Model.open(bundle, intra_op_threads=1)
    trt = Model.open(bundle, backend="trt", precision="fp32")
    x = ref.sample(6, labels=[0, 1, 2, 0, 1, 2], seed=1)
    mask = np.ones_like(x)
    mask[:, :, 4:] = 0
    trt.session("latent_grad")  # built before counting
    del gpu.log[:]
    steps = 7
    r_trt = trt.complete(x, mask, labels=1, steps=steps, seed=0)
    htod = gpu.events().count("htod")
    # target, mask, y once; then z alone for each of the steps + 1 evaluations; then z, y for the decode
    assert htod == 3 + (steps + 1) + 2, gpu.events()
    r_ref = ref.complete(x, mask, labels=1, steps=steps, seed=0)
    np.testing.assert_allclose(r_trt.z, r_ref.z, atol=1e-5)
    np.testing.assert_allclose(r_trt.history, r_ref.history, rtol=1e-5)
    # with early stopping the whole batch still runs from the device copies, and answers stay the same
    del gpu.log[:]
    stop_trt = trt.complete(x, mask, labels=1, steps=60, tol=1e-3, seed=0)
    stop_ref = ref.complete(x, mask, labels=1, steps=60, tol=1e-3, seed=0)
    assert gpu.events().count("htod") == 3 + (stop_trt.steps + 1) + 2
    np.testing.assert_allclose(stop_trt.z, stop_ref.z, atol=1e-5)
    assert stop_trt.steps == stop_ref.steps
    with pytest.raises(JetgenError, match="holds inputs of batch 6"):
        session = trt.session("latent_grad")
        session.hold({"target": x, "mask": mask})
        try:
            session.run({"z": np.zeros((2, 4), np.float32), "y": np.eye(3, dtype=np.float32)[[0, 1]]})
        finally:
            session.release()
    trt.close()
