"""``Model.open(..., backend="trt")`` end to end on the fake TensorRT and CUDA modules of
tests/test_trt_logic.py (they run the engine with onnxruntime on the CPU): the runtime's sample and
complete take the TensorRT path of each API generation and agree with the ONNX Runtime backend.
This proves the wiring and call order, not GPU numerics (tests/test_trt_gpu.py does that on a GPU)."""
import os

import numpy as np
import pytest

from jetgen.runtime import Model
from tests.runtime_fixtures import make_bundle
from tests.test_trt_logic import fake_device  # noqa: F401  (fixture)


@pytest.mark.parametrize("version,cuda", [("8.2.1", "pycuda"), ("10.3", "cudart")])
def test_model_on_trt_backend_matches_ort(tmp_path, fake_device, version, cuda):  # noqa: F811
    fake_device(version, cuda)
    bundle, _ = make_bundle(str(tmp_path / "m.jetgen"), kind="cvae", latent_dim=4, n_labels=3)
    ref = Model.open(bundle)
    trt = Model.open(bundle, backend="trt", precision="fp32")
    x_ref, x_trt = ref.sample(6, labels=[0, 1, 2, 0, 1, 2], seed=3), trt.sample(6, labels=[0, 1, 2, 0, 1, 2], seed=3)
    np.testing.assert_allclose(x_trt, x_ref, atol=1e-6)
    mask = np.ones_like(x_ref)
    mask[:, :, 4:] = 0
    r_ref = ref.complete(x_ref, mask, labels=1, steps=5, seed=0)
    r_trt = trt.complete(x_ref, mask, labels=1, steps=5, seed=0)
    np.testing.assert_allclose(r_trt.z, r_ref.z, atol=1e-5)
    np.testing.assert_allclose(r_trt.history, r_ref.history, rtol=1e-5)
    assert trt.session("decoder").providers and os.listdir(os.path.join(bundle, "engines"))
    trt.close()


def test_model_trt_defaults_to_auto_precision(tmp_path, fake_device):  # noqa: F811
    fake_device("8.2.1", "pycuda", cc=(5, 3), name="Fake Nano")
    bundle, _ = make_bundle(str(tmp_path / "m.jetgen"), kind="vae", latent_dim=4)
    model = Model.open(bundle, backend="trt")
    model.decode(np.zeros((2, 4), np.float32))
    info = model.session("decoder").engine_info
    assert info["precision"] == "fp16"  # the Nano has fast FP16, so auto picks it
