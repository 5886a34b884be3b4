"""A real TensorRT engine from a small ONNX, compared with ONNX Runtime (needs TensorRT and a GPU)."""
import os

import numpy as np
import pytest

pytestmark = pytest.mark.gpu


def _real_device():
    """Skip (with the reason) unless a real tensorrt imports and a CUDA device answers."""
    from jetgen.errors import JetgenError
    from jetgen.runtime.backends.trt import cuda_mem, api as trt_api
    try:
        trt_api.import_tensorrt()
    except JetgenError:
        pytest.skip("TensorRT's Python module is not installed (it comes with JetPack: python3-libnvinfer)")
    try:
        memory = cuda_mem.open_memory()
    except JetgenError as err:
        pytest.skip("no CUDA binding: {}".format(err))
    except Exception as err:  # no device, no driver
        pytest.skip("no usable CUDA device: {}".format(err))
    try:
        return memory.device_info()
    finally:
        memory.close()


@pytest.mark.parametrize("graph_name", ["decoder", "encoder"])
def test_real_engine_matches_onnxruntime(tmp_path, graph_name):
    _real_device()
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    try:
        from tests.test_trt_logic import SHAPE, Y, Z, make_bundle
    except ImportError:  # tests/ run as plain modules
        from test_trt_logic import SHAPE, Y, Z, make_bundle
    from jetgen.runtime.backends.trt.session import TrtSession

    bundle, manifest = make_bundle(tmp_path, batch=(1, 4, 8))
    graph = manifest["graphs"][graph_name]
    onnx_path = os.path.join(bundle, graph_name + ".onnx")
    rng = np.random.RandomState(0)
    if graph_name == "decoder":
        feeds = {"z": rng.standard_normal((11, Z)).astype(np.float32),
                 "y": np.eye(Y, dtype=np.float32)[rng.randint(0, Y, 11)]}
    else:
        feeds = {"x": rng.uniform(size=(11,) + SHAPE).astype(np.float32)}
    reference = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    expected = dict(zip([o.name for o in reference.get_outputs()], reference.run(None, feeds)))
    with TrtSession(onnx_path, graph, bundle, precision="fp32") as session:
        got = session.run(feeds)  # 11 > max 8: two chunks
        assert session.engine_info["status"] == "built"
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-4, atol=1e-5)
    with TrtSession(onnx_path, graph, bundle, precision="fp32") as again:
        assert again.engine_info["status"] == "cached"
        np.testing.assert_allclose(again.run(feeds)[list(expected)[0]], expected[list(expected)[0]],
                                   rtol=1e-4, atol=1e-5)
