"""``jetgen serve --backend trt`` under its real threads, on fakes that bind CUDA contexts to threads
the way the real bindings do (tests/test_trt_logic.py): pycuda's context is current only where it was
pushed (``pycuda.autoinit`` pushes it in the importing thread), cuda-python's runtime binds the
primary context of the thread's device on first use. Several clients at once (ThreadingMixIn request
threads) sample, decode and complete, and completion jobs (their own threads) run and are cancelled;
every answer must match the ONNX Runtime backend's and every job must end as asked."""
import threading
import time

import numpy as np
import pytest

from jetgen.runtime import Model
from jetgen.runtime.backends.trt import cuda_mem
from jetgen.runtime.images import region_mask
from tests.runtime_fixtures import make_bundle
from tests.test_serve_api import TIMEOUT, Served, pngs_to_array
from tests.test_trt_logic import fake_device  # noqa: F401  (fixture)

CLIENTS = 6


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(str(tmp_path_factory.mktemp("trt-serve") / "cvae.jetgen"), kind="cvae", n_labels=3,
                       batch_max=16)[0]


def _wait_over(served, poll):
    deadline = time.time() + TIMEOUT
    while time.time() < deadline:
        status, _, snap = served.call("GET", poll)
        if status != 200 or snap["state"] not in ("queued", "running"):
            return snap
        time.sleep(0.02)
    return snap


# pycuda: the JetPack 4 binding (TensorRT 8.2, bindings API), device 0 through autoinit before the fix;
# cuda-python (TensorRT 10.3, tensors API) on the second of two GPUs (--device 1), where the runtime's default
# binding (device 0) is the wrong one in every thread that did not call cudaSetDevice.
@pytest.mark.parametrize("version,cuda,device,count", [("8.2.1", "pycuda", None, 1), ("10.3", "cudart", "1", 2)])
def test_serve_on_trt_answers_concurrent_clients_and_jobs(bundle, fake_device, version, cuda, device, count):  # noqa: F811
    gpu, _ = fake_device(version, cuda, count=count)
    with Model.open(bundle, intra_op_threads=1) as ref:
        want_samples = {i: ref.sample(4, labels=[0, 1, 2, 0], seed=i) for i in range(CLIENTS)}
        z = np.random.RandomState(0).standard_normal((3, 4)).astype(np.float32)
        want_decode = ref.decode(z, labels=[2, 1, 0])
        target = ref.sample(1, labels=[1], seed=7)[0, 0]
        mask = region_mask("bottom-half", (1, 8, 8))
        want_complete = ref.complete(target[None, None], mask, labels=1, steps=20, lr=0.05, seed=0)
    served = Served([bundle], backend="trt", precision="fp32", device=device)
    failures, results = [], {}

    def client(i):
        try:
            status, _, out = served.call("POST", "/api/models/cvae/sample",
                                         {"n": 4, "labels": [0, 1, 2, 0], "seed": i})
            assert status == 200, out
            np.testing.assert_allclose(pngs_to_array(out["images"]), np.round(want_samples[i] * 255) / 255,
                                       atol=1.01 / 255)
            status, _, out = served.call("POST", "/api/models/cvae/decode",
                                         {"z": z.tolist(), "labels": [2, 1, 0]})
            assert status == 200, out
            np.testing.assert_allclose(pngs_to_array(out["images"]), np.round(want_decode * 255) / 255,
                                       atol=1.01 / 255)
            body = {"image": target.tolist(), "region": "bottom-half", "labels": 1, "steps": 20, "lr": 0.05,
                    "seed": 0}
            if i % 3 == 0:  # waits for its job's thread
                status, _, out = served.call("POST", "/api/models/cvae/complete", dict(body, wait=True))
                assert status == 200 and out["state"] == "done", out
                np.testing.assert_allclose(out["result"]["latents"], want_complete.z, atol=1e-5)
            elif i % 3 == 1:  # polls a job
                status, _, job = served.call("POST", "/api/models/cvae/complete", body)
                assert status == 202, job
                snap = _wait_over(served, job["poll"])
                assert snap["state"] == "done", snap
                np.testing.assert_allclose(snap["result"]["latents"], want_complete.z, atol=1e-5)
            else:  # cancels a long one
                status, _, job = served.call("POST", "/api/models/cvae/complete", dict(body, steps=2000))
                assert status == 202, job
                status, _, out = served.call("POST", "/api/jobs/{}/cancel".format(job["job"]), {})
                assert status == 200 and out["cancelled"] is True, out
                snap = _wait_over(served, job["poll"])
                assert snap["state"] == "cancelled" and snap["error"] == "The completion was cancelled.", snap
            results[i] = True
        except BaseException as err:  # the main thread reports it
            failures.append((i, err))

    try:
        threads = [threading.Thread(target=client, args=(i,), name="client-{}".format(i)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(2 * TIMEOUT)
        info = served.call("GET", "/api/models/cvae")[2]
    finally:
        served.stop()
    assert not failures, failures[0]
    assert sorted(results) == list(range(CLIENTS))
    assert info["providers"] == ["tensorrt"]
    # the GPU work really ran in many threads: request threads and job threads
    workers = set(name for event, name in gpu.log if event == "execute")
    assert len(workers) >= 3 and any(name.startswith("job-") for name in workers), workers
    assert "trt-error" not in gpu.events()
    assert cuda_mem._OWNERS == {}  # closing the server let go of the device's context
