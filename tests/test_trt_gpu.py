"""Real TensorRT on a real GPU (skipped with the reason where either is missing): engines from small ONNX
graphs against ONNX Runtime, sessions used from many threads through each CUDA binding, and
`jetgen selftest`'s whole run. On an x86 CUDA machine with the TensorRT wheels from PyPI:

    pip install tensorrt cuda-python onnxruntime onnx pytest   # pycuda too, to test it (it builds
    pytest -m gpu tests/test_trt_gpu.py -v -rs                 # against the CUDA toolkit's headers)

It is meant to finish within 10 minutes (the engine builds of a few tiny graphs dominate); no GPU has
run it yet, so that is not a measurement.

On a Jetson, TensorRT comes with JetPack (jetson/setup.sh); run the same pytest line.
"""
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


def _bindings():
    """The CUDA bindings installed here (pycuda, cudart), each tested on its own."""
    from jetgen.runtime.backends.trt import cuda_mem
    have = []
    if cuda_mem._import_pycuda() is not None:
        have.append("pycuda")
    if cuda_mem._import_cudart() is not None:
        have.append("cudart")
    return have


@pytest.mark.parametrize("binding", ["pycuda", "cudart"])
def test_a_real_session_serves_other_threads(tmp_path, binding):
    """The CUDA-context defect on real hardware: a session opened in one thread runs in four others at
    once and closes from yet another, through each binding (pycuda's context is thread-bound)."""
    import threading

    _real_device()
    if binding not in _bindings():
        pytest.skip("the {} binding is not installed".format(binding))
    ort = pytest.importorskip("onnxruntime")
    try:
        from tests.test_trt_logic import Y, Z, make_bundle
    except ImportError:
        from test_trt_logic import Y, Z, make_bundle
    from jetgen.runtime.backends.trt import cuda_mem
    from jetgen.runtime.backends.trt.session import TrtSession

    bundle, manifest = make_bundle(tmp_path, batch=(1, 4, 8))
    path = os.path.join(bundle, "decoder.onnx")
    opened = {}
    maker = threading.Thread(target=lambda: opened.update(s=TrtSession(path, manifest["graphs"]["decoder"], bundle,
                                                                       cuda_api=binding)))
    maker.start()
    maker.join(300)
    session = opened["s"]
    reference = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    rng = np.random.RandomState(0)
    feeds = [{"z": rng.standard_normal((3, Z)).astype(np.float32), "y": np.eye(Y, dtype=np.float32)[[0, 1, 2]]}
             for _ in range(8)]
    got, errors = {}, []

    def work(i):
        try:
            for _ in range(10):
                got[i] = session.run(feeds[i])["x"]
        except Exception as err:  # reported below
            errors.append(err)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(feeds))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[0]
    for i, f in enumerate(feeds):
        np.testing.assert_allclose(got[i], reference.run(None, f)[0], rtol=1e-4, atol=1e-5)
    closer = threading.Thread(target=session.close)
    closer.start()
    closer.join(60)
    assert cuda_mem._OWNERS == {}


def test_selftest_passes_on_this_gpu(tmp_path):
    """`jetgen selftest`'s steps on real TensorRT: builds, verification, benches, serve under client
    threads, completion and engine-cache reuse all pass (none skipped for want of TensorRT)."""
    _real_device()
    pytest.importorskip("onnxruntime")
    from jetgen import selftest

    steps, ctx = selftest.run(str(tmp_path / "work"), threads=1)
    rows = dict((r["step"], r) for r in steps.rows)
    failed = [(r["step"], r["detail"]) for r in steps.rows if r["status"] == "fail"]
    assert not failed, failed
    for step in ("tensorrt and a CUDA binding", "build + verify trt fp32", "bench trt", "serve --backend trt, threads",
                 "complete through trt", "engine cache reuse"):
        assert rows[step]["status"] == "pass", (step, rows[step]["detail"])
    again, _ = selftest.run(str(tmp_path / "work"), threads=1)
    assert "0 built" in dict((r["step"], r) for r in again.rows)["build + verify trt fp32"]["detail"]
