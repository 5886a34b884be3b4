"""ONNX Runtime's TensorRT execution provider gets an explicit optimisation profile from the bundle's
batch range (trt_profile_min/opt/max_shapes, ONNX Runtime >= 1.15), so it builds one engine for every
batch size instead of rebuilding whenever a batch falls outside the sizes seen so far."""
import os

import pytest

ort = pytest.importorskip("onnxruntime")

from jetgen.runtime.backends import ort as ort_backend  # noqa: E402
from tests.test_trt_logic import Y, Z, make_bundle  # noqa: E402


def test_profile_strings_follow_the_manifest(tmp_path):
    _, manifest = make_bundle(tmp_path, batch=(2, 8, 32))
    decoder, encoder = manifest["graphs"]["decoder"], manifest["graphs"]["encoder"]
    assert ort_backend.trt_profile_options(decoder, "1.17.0") == {
        "trt_profile_min_shapes": "z:2x{},y:2x{}".format(Z, Y),
        "trt_profile_opt_shapes": "z:8x{},y:8x{}".format(Z, Y),
        "trt_profile_max_shapes": "z:32x{},y:32x{}".format(Z, Y)}
    assert ort_backend.trt_profile_options(encoder, "1.15.1")["trt_profile_max_shapes"] == "x:32x1x2x3,y:32x{}".format(Y)


@pytest.mark.parametrize("version", ["1.14.1", "1.11.0", "dev", ""])
def test_older_or_unreadable_onnxruntime_gets_no_profile_options(tmp_path, version):
    _, manifest = make_bundle(tmp_path)
    assert ort_backend.trt_profile_options(manifest["graphs"]["decoder"], version) == {}


def test_a_graph_without_opt_profiles_at_its_largest_batch(tmp_path):
    _, manifest = make_bundle(tmp_path)
    graph = dict(manifest["graphs"]["decoder"], batch={"min": 1, "max": 16})
    assert ort_backend.trt_profile_options(graph, "1.20.0")["trt_profile_opt_shapes"] == "z:16x{},y:16x{}".format(Z, Y)


def test_the_session_passes_the_profile_to_the_tensorrt_provider(tmp_path, monkeypatch):
    bundle, manifest = make_bundle(tmp_path, batch=(1, 4, 64))
    seen = []
    real = ort.InferenceSession

    def recording(path, sess_options=None, providers=None, provider_options=None):
        seen.append(dict(zip(providers, provider_options)))
        return real(path, sess_options=sess_options, providers=[ort_backend.CPU_EP])
    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: [ort_backend.TRT_EP, ort_backend.CUDA_EP, ort_backend.CPU_EP])
    monkeypatch.setattr(ort, "InferenceSession", recording)
    monkeypatch.setattr(ort, "__version__", "1.16.3")
    ort_backend.OrtSession(os.path.join(bundle, "decoder.onnx"), manifest["graphs"]["decoder"], bundle,
                           device="tensorrt", precision="fp16",
                           trt_options={"trt_profile_opt_shapes": "z:2x4,y:2x3"})
    trt = seen[0][ort_backend.TRT_EP]
    assert trt["trt_profile_min_shapes"] == "z:1x{},y:1x{}".format(Z, Y)
    assert trt["trt_profile_max_shapes"] == "z:64x{},y:64x{}".format(Z, Y)
    assert trt["trt_profile_opt_shapes"] == "z:2x4,y:2x3"  # the caller's trt_options win
    assert trt["trt_fp16_enable"] is True and trt["trt_engine_cache_enable"] is True
    assert "trt_profile_min_shapes" not in seen[0][ort_backend.CUDA_EP]
    monkeypatch.setattr(ort, "__version__", "1.14.1")
    ort_backend.OrtSession(os.path.join(bundle, "decoder.onnx"), manifest["graphs"]["decoder"], bundle,
                           device="tensorrt")
    assert not any(k.startswith("trt_profile") for k in seen[1][ort_backend.TRT_EP])
