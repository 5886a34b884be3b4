"""`jetgen triton`: repositories a real Triton server loads and answers, checked through tritonclient.

One tritonserver (the registry's nvidia-pytriton wheel, jetgen.triton.local) per module serves three
repositories exported by the CLI: a small trained cvae in local mode (the Python model runs the graphs
itself), the same cvae in BLS mode (the default: it calls the graph models) and the shared tiny AtlasNet
point-cloud bundle (BLS). The wheel has
no onnxruntime backend, so tests/triton_standin/onnxruntime (a STAND-IN, see its docstring) serves
the unchanged `platform: "onnxruntime_onnx"` models. Skipped with the reason where the wheel cannot run.
"""
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from jetgen.cli import main
from jetgen.runtime import Model
from jetgen.runtime.verify import errors, load_case, passes
from jetgen.triton import local

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STANDIN = os.path.join(ROOT, "tests", "triton_standin", "onnxruntime")
CVAE = ("cvae", "--arch", "mlp", "--latent-dim", "4", "--epochs", "2", "--batch-size", "64", "--lr", "3e-3")

http = pytest.importorskip("tritonclient.http", reason="tritonclient is not installed (the triton extra)")
from tritonclient.utils import InferenceServerException  # noqa: E402


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def bundles(run_factory, tmp_path_factory):
    """(cvae bundle, atlasnet bundle): a 2-epoch cvae exported by the CLI, and the shared 3D bundle."""
    from tests.shapes_fixtures import shared_bundle

    out = tmp_path_factory.mktemp("triton-bundles")
    cvae = str(out / "cvae.jetgen")
    result = cli("export", run_factory("triton-cvae", *CVAE), "--target", "desktop", "--out", cvae, "--max-batch", "256")
    assert result.exit_code == 0, result.output
    return cvae, shared_bundle(tmp_path_factory)[0]


@pytest.fixture(scope="module")
def repos(bundles, tmp_path_factory):
    root = tmp_path_factory.mktemp("triton-repos")
    made = {}
    for key, bundle, args in (("cvae", bundles[0], ["--name", "cvae", "--max-batch", "64", "--instances", "2", "--mode", "local"]),
                              ("bls", bundles[0], ["--name", "cvae-bls", "--max-batch", "64"]),
                              ("points", bundles[1], ["--name", "shapes"])):
        made[key] = str(root / key)
        result = cli("triton", bundle, "-o", made[key], *args)
        assert result.exit_code == 0, result.output
    return made


@pytest.fixture(scope="module")
def server(repos):
    why = local.problem()
    if why:
        pytest.skip("tritonserver cannot run here: " + why)
    srv = local.LocalServer([repos["cvae"], repos["bls"], repos["points"]], backends={"onnxruntime": STANDIN})
    srv.start(timeout=120)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    c = http.InferenceServerClient(server.url, connection_timeout=60, network_timeout=120)
    yield c
    c.close()


def tensor(name, value, dtype=None):
    value = np.asarray(value, dtype=dtype)
    kind = "BYTES" if value.dtype == object else {"float32": "FP32", "int32": "INT32", "int64": "INT64"}[str(value.dtype)]
    t = http.InferInput(name, list(value.shape), kind)
    t.set_data_from_numpy(value)
    return t


def ask(client, model, op, outputs=("x", "z"), **inputs):
    """One request to a Python model: op plus typed inputs; the named outputs as numpy."""
    types = {"n": np.int32, "labels": np.int32, "steps": np.int32, "seed": np.int64}
    sent = [tensor("op", np.array([op.encode()], dtype=object))]
    for name, value in inputs.items():
        value = np.asarray(value, dtype=types.get(name, np.float32))
        sent.append(tensor(name, value.reshape(-1) if name in types or name == "temperature" else value))
    result = client.infer(model, sent, outputs=[http.InferRequestedOutput(o) for o in outputs])
    return [result.as_numpy(o) for o in outputs]


def run_graph(client, model, entry, feeds):
    result = client.infer(model, [tensor(n, feeds[n], np.float32) for n in feeds],
                          outputs=[http.InferRequestedOutput(t["name"]) for t in entry["outputs"]])
    return dict((t["name"], result.as_numpy(t["name"])) for t in entry["outputs"])


def test_repository_layout_and_configs(repos, bundles):
    index = json.load(open(os.path.join(repos["cvae"], "jetgen-triton.json")))
    assert index["graph_models"] == {"decoder": "cvae_decoder", "encoder": "cvae_encoder",
                                     "latent_grad": "cvae_latent_grad"}
    config = open(os.path.join(repos["cvae"], "cvae_decoder", "config.pbtxt")).read()
    assert 'platform: "onnxruntime_onnx"' in config and "max_batch_size: 64" in config
    assert "max_queue_delay_microseconds" in config and "count: 2" in config and "num_versions: 1" in config
    lg = open(os.path.join(repos["cvae"], "cvae_latent_grad", "config.pbtxt")).read()
    assert "reshape" in lg  # loss is (B,): dims [1] reshaped to []
    version = os.path.join(repos["cvae"], "cvae", "1")
    assert sorted(os.listdir(version)) == ["bundle", "jetgen", "model.py"]
    assert os.path.isdir(os.path.join(version, "bundle", "golden"))
    assert not os.path.exists(os.path.join(version, "jetgen", "cli"))  # only the torch-free runtime travels


@pytest.mark.parametrize("args, message", [
    (["--name", "no/slash"], "model name"),
    (["--instances", "0"], "--instances"),
    (["--max-batch", "0"], "--max-batch"),
    (["--backend", "tensorrt"], "jetgen build"),
])
def test_bad_options_are_sentences(bundles, tmp_path, args, message):
    result = cli("triton", bundles[0], "-o", tmp_path / "r", *args)
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r").exists()


def test_bad_bundle_and_existing_out_are_sentences(bundles, repos, tmp_path):
    result = cli("triton", tmp_path / "nothing.jetgen", "-o", tmp_path / "r")
    assert result.exit_code == 1 and "No bundle directory" in result.output
    result = cli("triton", bundles[0], "-o", repos["cvae"])
    assert result.exit_code == 1 and "--force" in result.output


def test_every_graph_matches_its_golden_vectors(client, repos, bundles):
    checked = 0
    for key, bundle, name in (("cvae", bundles[0], "cvae"), ("points", bundles[1], "shapes")):
        manifest = json.load(open(os.path.join(bundle, "manifest.json")))
        for graph, entry in manifest["graphs"].items():
            assert entry.get("golden"), graph
            for case in entry["golden"]:
                inputs, expected = load_case(bundle, graph, case)
                if len(next(iter(inputs.values()))) > 64:
                    continue
                got = run_graph(client, "{}_{}".format(name, graph), entry, inputs)
                for out, want in expected.items():
                    max_abs, max_rel = errors(got[out].reshape(want.shape), want)
                    assert passes(max_abs, max_rel, entry["precision"]), (key, graph, case["name"], out, max_abs)
                    assert max_abs < 1e-4, (key, graph, case["name"], out, max_abs)  # same graph, same runtime
                    checked += 1
    assert checked >= 10


@pytest.mark.parametrize("model", ["cvae", "cvae-bls"])
def test_sample_interpolate_and_complete_match_the_runtime(client, bundles, model):
    m = Model.open(bundles[0])
    x, z = ask(client, model, "sample", n=5, labels=[3], temperature=0.7, seed=11)
    t = float(np.float32(0.7))  # what the FP32 request tensor carries
    want_x, want_z = m.sample(5, labels=3, temperature=t, seed=11, return_latents=True)
    assert np.array_equal(z, want_z) and np.abs(x - want_x).max() < 1e-6
    xi, zi = ask(client, model, "interpolate", za=want_z[0], zb=want_z[1], steps=4, labels=[2])
    want_xi, want_zi = m.interpolate(want_z[0], want_z[1], steps=4, labels=2)
    assert np.allclose(zi, want_zi, atol=1e-6) and np.abs(xi - want_xi).max() < 1e-5
    mask = np.zeros_like(want_x[:2])
    mask[..., :14, :] = 1
    cx, cz, loss = ask(client, model, "complete", outputs=("x", "z", "loss"), x=want_x[:2], mask=mask,
                       labels=[3, 3], seed=1, steps=30)
    r = m.complete(want_x[:2], mask, labels=3, seed=1, steps=30)
    assert np.abs(cz - r.z).max() < 1e-4 and np.abs(cx - r.x).max() < 1e-4
    assert np.abs(loss - r.loss).max() < 1e-3 * max(1.0, float(np.abs(r.loss).max()))


def test_point_clouds_sample_and_complete_match_the_runtime(client, bundles):
    m = Model.open(bundles[1])
    x, z = ask(client, "shapes", "sample", n=3, seed=4)
    want_x, want_z = m.sample(3, seed=4, return_latents=True)
    assert x.shape == want_x.shape and np.array_equal(z, want_z) and np.abs(x - want_x).max() < 1e-5
    xi, zi = ask(client, "shapes", "interpolate", a=want_x[:1], b=want_x[1:2], steps=3)  # clouds as end points
    want_xi, want_zi = m.interpolate(want_x[0], want_x[1], steps=3)
    assert np.abs(zi - want_zi).max() < 1e-5 and np.abs(xi - want_xi).max() < 1e-5
    partial = want_x[:1, want_x[0, :, 0] > 0]  # half a decoded cloud: (1, P, 3)
    cx, cz = ask(client, "shapes", "complete", x=partial, seed=0, steps=20)
    r = m.complete(partial[0], seed=0, steps=20)
    assert cx.shape == r.x.shape and np.abs(cz - r.z).max() < 1e-4 and np.abs(cx - r.x).max() < 1e-4


def test_bad_requests_get_tritons_error_and_the_server_stays_up(client, server):
    with pytest.raises(InferenceServerException) as err:  # over max_batch_size 64
        run_graph(client, "cvae_decoder", {"outputs": [{"name": "x"}]},
                  {"z": np.zeros((65, 4)), "y": np.zeros((65, 10))})
    assert "64" in str(err.value)
    with pytest.raises(InferenceServerException) as err:  # the runtime's sentence comes back
        ask(client, "cvae", "sample", n=2, labels=[99])
    assert "out of range" in str(err.value)
    with pytest.raises(InferenceServerException) as err:
        ask(client, "cvae", "fly")
    assert "Unknown op" in str(err.value)
    assert server.alive() and client.is_server_ready()
    x, _ = ask(client, "cvae", "sample", n=1, labels=[0], seed=0)
    assert x.shape == (1, 1, 28, 28)


@pytest.mark.parametrize("change, reason", [
    (lambda mp: mp.setattr(local.platform, "machine", lambda: "aarch64"), "x86-64"),
    (lambda mp: mp.setattr(local.platform, "libc_ver", lambda: ("glibc", "2.31")), "glibc 2.35+"),
    (lambda mp: mp.setattr(local.sysconfig, "get_config_var", lambda name: 0), "shared libpython"),
    (lambda mp: mp.setattr(local, "wheel_dirs", lambda: None), "nvidia-pytriton wheel is not installed"),
])
def test_where_the_wheel_cannot_run_the_reason_is_a_sentence(monkeypatch, change, reason):
    monkeypatch.setattr(local.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(local.platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.setattr(local.sysconfig, "get_config_var", lambda name: 1)
    monkeypatch.setattr(local, "wheel_dirs", lambda: ("/nonexistent/tritonserver", "/nonexistent/libs"))
    change(monkeypatch)
    assert reason in local.problem()


def _engines(bundle, tensorrt="8.5.2", gpu="Orin", batch_max=256, graphs=None):
    from jetgen.runtime.backends.trt import engine_cache
    manifest = json.load(open(os.path.join(bundle, "manifest.json")))
    paths = {}
    for graph in graphs or manifest["graphs"]:
        fields = engine_cache.engine_fields(manifest["graphs"][graph]["sha256"], tensorrt, gpu, "8.7", "fp16",
                                            (1, 64, batch_max), 1024)
        paths[graph] = engine_cache.store(bundle, graph, fields, ("plan of " + graph).encode())
    return paths


def test_tensorrt_plans_from_the_engines_jetgen_build_made(tmp_path):
    from tests.runtime_fixtures import make_bundle
    bundle, _ = make_bundle(str(tmp_path / "b.jetgen"), kind="cvae", n_labels=3)
    _engines(bundle)
    out = tmp_path / "repo"
    result = cli("triton", bundle, "-o", out, "--backend", "tensorrt", "--tensorrt", "8.5.2", "--max-batch", "512")
    assert result.exit_code == 0, result.output
    config = (out / "fixture_decoder" / "config.pbtxt").read_text()
    assert 'platform: "tensorrt_plan"' in config and "max_batch_size: 256" in config  # the engine's profile max
    assert (out / "fixture_decoder" / "1" / "model.plan").read_bytes() == b"plan of decoder"
    index = json.loads((out / "jetgen-triton.json").read_text())
    assert index["tensorrt"]["version"] == "8.5.2" and index["tensorrt"]["gpu"] == "Orin"


def test_default_name_and_force_replace_the_repository_whole(tmp_path):
    from tests.runtime_fixtures import make_bundle
    bundle, _ = make_bundle(str(tmp_path / "b.jetgen"))
    out = tmp_path / "repo"
    assert cli("triton", bundle, "-o", out, "--instances", "3").exit_code == 0
    assert sorted(os.listdir(str(out))) == ["fixture", "fixture_decoder", "fixture_encoder", "fixture_latent_grad",
                                            "jetgen-triton.json"]
    result = cli("triton", bundle, "-o", out, "--name", "other", "--force")
    assert result.exit_code == 0, result.output
    assert "fixture" not in os.listdir(str(out))  # replaced whole, not merged
    assert "other" in os.listdir(str(out)) and "count: 1" in (out / "other" / "config.pbtxt").read_text()


def test_engines_for_another_gpu_or_tensorrt_are_refused(tmp_path):
    from tests.runtime_fixtures import make_bundle
    bundle, _ = make_bundle(str(tmp_path / "b.jetgen"))
    paths = _engines(bundle)
    result = cli("triton", bundle, "-o", tmp_path / "r", "--backend", "tensorrt", "--tensorrt", "10.3")
    assert result.exit_code == 1 and "TensorRT 8.5.2 on Orin" in result.output and "jetgen build" in result.output
    result = cli("triton", bundle, "-o", tmp_path / "r", "--backend", "tensorrt", "--gpu", "Xavier")
    assert result.exit_code == 1 and "not for TensorRT any version on Xavier" in result.output
    with open(paths["encoder"], "ab") as handle:  # damaged: its bytes no longer match the sidecar
        handle.write(b"x")
    result = cli("triton", bundle, "-o", tmp_path / "r", "--backend", "tensorrt")
    assert result.exit_code == 1 and "no TensorRT engine of its encoder graph" in result.output
    assert not (tmp_path / "r").exists()


def test_the_server_stops_on_sigterm(server, client):
    client.close()
    code = server.stop()
    assert code == 0 and server.stop_s < 15, (code, server.stop_s, server.log_tail())
