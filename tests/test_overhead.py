"""The batch-1 fast path of Model.decode and Model.sample (issue 13: within 1.15x of a bare ONNX Runtime
session, measured in benchmarks/results.md) keeps every check: bad shapes, NaN and infinity, bad labels,
outputs outside the declared range; and gives the same answers as the checked path and the bare session."""
import numpy as np
import onnxruntime as ort
import pytest

from jetgen.errors import JetgenError
from jetgen.runtime import Model
from jetgen.runtime.backends.ort import OrtSession
from jetgen.runtime.model import _in_range, _top_bits
from tests.runtime_fixtures import edit_manifest, make_bundle

D, K = 4, 3


@pytest.fixture(scope="module")
def cond_bundle(tmp_path_factory):
    return make_bundle(str(tmp_path_factory.mktemp("ov") / "cond.jetgen"), kind="cvae", latent_dim=D, n_labels=K)[0]


@pytest.fixture(scope="module")
def uncond_bundle(tmp_path_factory):
    return make_bundle(str(tmp_path_factory.mktemp("ov") / "vae.jetgen"), latent_dim=D)[0]


@pytest.fixture
def model(cond_bundle):
    with Model.open(cond_bundle, intra_op_threads=1) as m:
        yield m


def _bare(bundle, z, y=None):
    session = ort.InferenceSession(bundle + "/decoder.onnx", providers=["CPUExecutionProvider"])
    return session.run(None, {"z": z} if y is None else {"z": z, "y": y})[0]


def test_fast_path_gives_the_bare_sessions_answer_for_every_form_of_input(model, cond_bundle):
    z = np.random.RandomState(0).standard_normal((3, D)).astype(np.float32)
    onehot = np.eye(K, dtype=np.float32)[[2, 0, 1]]
    expected = _bare(cond_bundle, z, onehot)
    forms = [
        (z, onehot),                                   # the fast path: float32 (n, D), float32 one-hot rows
        (z.astype(np.float64), [2, 0, 1]),             # float64 latents, integer labels
        (z.tolist(), np.array([2, 0, 1])),             # nested lists, an integer array
        (np.asfortranarray(z), np.asfortranarray(onehot)),  # not C-contiguous
        (np.repeat(z, 2, axis=1)[:, ::2], ["2", "0", "1"]),  # a strided view, label names
    ]
    for zz, labels in forms:
        np.testing.assert_allclose(model.decode(zz, labels), expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(model.decode(z[1], 0), expected[1:2], rtol=1e-6, atol=1e-7)  # one (D,) latent
    assert model.decode(z[:1], 2).shape == (1, 1, 8, 8)


def test_the_checked_session_path_agrees_with_the_direct_one(cond_bundle, monkeypatch):
    z = np.random.RandomState(1).standard_normal((2, D)).astype(np.float32)
    with Model.open(cond_bundle, intra_op_threads=1) as m:
        direct = m.decode(z, 1)
    monkeypatch.setattr(OrtSession, "output_runner", lambda self, name: None)  # as a backend without one
    with Model.open(cond_bundle, intra_op_threads=1) as m:
        np.testing.assert_array_equal(m.decode(z, 1), direct)
        assert m.sample(4, labels=1, seed=3).shape == (4, 1, 8, 8)


@pytest.mark.parametrize("z, labels, message", [
    (np.zeros((1, D + 1), np.float32), 0, "Latents must have 4 values each"),
    (np.zeros((1, 1, D), np.float32), 0, "Latents must have 4 values each"),
    (np.zeros((0, D), np.float32), 0, "empty"),
    (np.array([[0, np.nan, 0, 0]], np.float32), 0, "NaN or infinite"),
    (np.array([[0, 0, np.inf, 0]], np.float32), 0, "NaN or infinite"),
    (np.full((300, D), -np.inf, np.float32), 0, "NaN or infinite"),   # a batch above the list-check size
    (np.array([[np.nan] * D]), 0, "NaN or infinite"),                  # float64
    ([["a"] * D], 0, "not an array of numbers"),
    (np.zeros((1, D), np.float32), None, "This model is conditional: give labels"),
    (np.zeros((1, D), np.float32), K, "Label 3 is out of range"),
    (np.zeros((1, D), np.float32), -1, "Label -1 is out of range"),
    (np.zeros((2, D), np.float32), [0, 1, 2], "Got 3 labels for 2 examples"),
    (np.zeros((1, D), np.float32), "seven", "Unknown label 'seven'"),
    (np.zeros((1, D), np.float32), 1.5, "whole numbers"),
    (np.zeros((1, D), np.float32), np.array([[0, 2, 0]], np.float32), "One-hot labels must lie in [0, 1]"),
    (np.zeros((1, D), np.float32), np.array([[0, -0.5, 1]], np.float32), "One-hot labels must lie in [0, 1]"),
    (np.zeros((1, D), np.float32), np.array([[0, np.nan, 1]], np.float32), "One-hot labels must lie in [0, 1]"),
    (np.zeros((1, D), np.float32), np.array([[0, 1]], np.float32), "One-hot labels need 3 columns"),
])
def test_every_decode_check_still_fires(model, z, labels, message):
    with pytest.raises(JetgenError) as err:
        model.decode(z, labels)
    assert message in str(err.value)


@pytest.mark.parametrize("kwargs, message", [
    ({"n": 0}, "n must be a positive integer"),
    ({"n": -2}, "n must be a positive integer"),
    ({"n": 1.0}, "n must be a positive integer"),
    ({"n": True}, "n must be a positive integer"),
    ({"n": 1, "labels": K}, "Label 3 is out of range"),
    ({"n": 2, "labels": np.array([[0, 3, 0], [1, 0, 0]], np.float32)}, "One-hot labels must lie in [0, 1]"),
    ({"n": 1, "labels": [0, 1]}, "Got 2 labels for 1 examples"),
    ({"n": 1, "labels": 0, "temperature": float("nan")}, "emperature"),
    ({"n": 1, "labels": 0, "temperature": 1e300}, "overflow"),
    ({"n": 1, "labels": 0, "seed": -1}, "seed must be an integer"),
])
@pytest.mark.filterwarnings("ignore:overflow encountered")  # numpy's own warning before the check's sentence
def test_every_sample_check_still_fires(model, kwargs, message):
    with pytest.raises(JetgenError) as err:
        model.sample(**kwargs)
    assert message in str(err.value)


def test_labels_on_an_unconditional_model_are_refused(uncond_bundle):
    with Model.open(uncond_bundle, intra_op_threads=1) as m:
        z = np.zeros((1, D), np.float32)
        assert m.decode(z).shape == (1, 1, 8, 8) and m.sample(1, seed=0).shape == (1, 1, 8, 8)
        for call in (lambda: m.decode(z, 0), lambda: m.sample(1, labels=np.eye(K, dtype=np.float32)[:1])):
            with pytest.raises(JetgenError, match="not conditional"):
                call()


def test_outputs_outside_the_declared_range_are_refused(tmp_path):
    path = make_bundle(str(tmp_path / "narrow.jetgen"), kind="cvae", latent_dim=D, n_labels=K, batch_max=2)[0]
    edit_manifest(path, lambda m: m["model"]["output"].update(range=[0.0, 0.5]))  # the sigmoid exceeds it
    z = np.full((1, D), 3.0, np.float32)
    with Model.open(path, intra_op_threads=1) as m:
        for call in (lambda: m.decode(z, 0), lambda: m.decode(np.repeat(z, 5, axis=0), 0),  # one run; chunks
                     lambda: m.sample(1, labels=0, temperature=50.0, seed=0)):
            # (a temperature-50 draw is blamed on latents far outside the prior, the others on the graph)
            with pytest.raises(JetgenError, match=r"declared range \[0, 0.5\]"):
                call()


@pytest.mark.parametrize("direct", [True, False])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -1.0, 1.5, -np.inf])
def test_a_decoder_that_returns_bad_values_is_refused(cond_bundle, monkeypatch, bad, direct):
    real_run, real_runner = OrtSession.run, OrtSession.output_runner

    def spoil(x):
        x = x.copy()
        x.reshape(-1)[7] = bad
        return x

    def run(self, feeds, validate=True):
        return dict((k, spoil(v)) for k, v in real_run(self, feeds, validate).items())

    def output_runner(self, name):
        inner = real_runner(self, name)
        return (lambda feeds: spoil(inner(feeds))) if direct else None

    monkeypatch.setattr(OrtSession, "run", run)
    monkeypatch.setattr(OrtSession, "output_runner", output_runner)
    with Model.open(cond_bundle, intra_op_threads=1) as m:
        for call in (lambda: m.decode(np.zeros((1, D), np.float32), 0), lambda: m.sample(1, labels=1, seed=0)):
            with pytest.raises(JetgenError, match="the graph or its engine is broken"):
                call()


def test_the_range_check_answers_as_min_and_max_do():
    rng = np.random.RandomState(0)
    edges = [0.0, -0.0, 1.0, 1e-4, -1e-4, -2e-4, 1.0001, 1.00011, np.nan, np.inf, -np.inf, 1e-45, -1e-45,
             np.finfo(np.float32).max, 0.5]
    for lo, hi in ((-1e-4, 1.0001), (0.0, 1.0), (-1.0, 1.0), (0.25, 0.75), (-2.0, -1.0)):
        bits = _top_bits(lo, hi)
        for value in edges:
            for size in (1, 5, 300):
                x = rng.uniform(max(lo, -1e3), min(hi, 1e3), size).astype(np.float32)
                x[rng.randint(size)] = value
                for arr in (x, x.astype(np.float64)):  # each compared as numpy compares its dtype
                    assert _in_range(arr, lo, hi, bits) == bool(arr.min() >= lo and arr.max() <= hi), \
                        (lo, hi, value, size, arr.dtype)
    assert _in_range(np.zeros((0, 3), np.float32), 0.0, 1.0, _top_bits(0.0, 1.0))
