"""``jetgen serve``'s JSON API over real HTTP on 127.0.0.1: every endpoint against the runtime's own
answers, and every bad input (wrong types, huge bodies, NaN, labels out of range, unknown model,
missing token, wrong Host) answered with the right status and a sentence, never a traceback or a
hung connection. The bundles are the small real ones of tests/runtime_fixtures.py."""
import base64
import http.client
import io
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from jetgen.errors import JetgenError
from jetgen.runtime import Model
from jetgen.runtime.images import decode_png, encode_png, region_mask
from jetgen.serve import make_server
from tests.runtime_fixtures import make_bundle

TOKEN = "test-token-0123456789"
TIMEOUT = 20  # seconds: a hung connection fails the test instead of stalling the suite


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("serve-bundles"))
    specs = {
        "cvae": dict(kind="cvae", n_labels=3),
        "vae": dict(kind="vae"),
        "ad": dict(kind="ad", encoder=False),
        "exp": dict(kind="vad", family="exponential", encoder=False),
    }
    return dict((name, make_bundle(os.path.join(root, name + ".jetgen"), **spec)[0]) for name, spec in specs.items())


class Served(object):
    """A server running in a thread on an ephemeral loopback port, with its log lines kept."""

    def __init__(self, paths, **options):
        self.lines = []
        self.server = make_server(paths, host="127.0.0.1", port=0, threads=1, log=self.lines.append, **options)
        self.port = self.server.server_port
        self.base = "http://127.0.0.1:{}".format(self.port)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1})
        self.thread.daemon = True
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.close()
        self.thread.join(TIMEOUT)

    def call(self, method, path, body=None, headers=None, raw=None):
        """(status, headers, parsed JSON or text) of one request; HTTP errors are answers too."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode("utf-8"))
        hdrs = {"Content-Type": "application/json"} if data is not None else {}
        hdrs.update(headers or {})
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
                status, rh, payload = resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as err:
            status, rh, payload = err.code, err.headers, err.read()
        if rh.get("Content-Type", "").startswith("application/json"):
            payload = json.loads(payload.decode("utf-8"))
        return status, rh, payload

    def raw(self, data, half_close=False):
        """Send raw bytes on a fresh connection (then end the sending side when ``half_close``); return the
        whole answer (the server closes the connection)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT) as sock:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks)


@pytest.fixture(scope="module")
def served(bundles):
    s = Served([bundles["cvae"], bundles["vae"], bundles["ad"], bundles["exp"]])
    yield s
    s.stop()


@pytest.fixture(scope="module")
def guarded(bundles):
    s = Served([bundles["vae"]], token=TOKEN)
    yield s
    s.stop()


def pngs_to_array(images):
    """(n, 1, H, W) float in [0, 1] from the API's base64 PNGs."""
    return np.stack([decode_png(base64.b64decode(b))[None] for b in images]).astype(np.float64) / 255.0


def png_field(x):
    """An image field holding one (H, W) image in [0, 1] as PNG."""
    return {"png": base64.b64encode(encode_png(np.round(np.asarray(x) * 255).astype(np.uint8))).decode("ascii")}


def assert_sentence(status, payload, want_status, words):
    assert status == want_status, payload
    assert isinstance(payload, dict) and set(payload) == {"error"}, payload
    text = payload["error"]
    assert words.lower() in text.lower(), text
    assert "Traceback" not in text and text.endswith((".", ")")), text


# -- what the server holds -----------------------------------------------------------------------
def test_info_lists_the_models_and_the_device(served):
    status, headers, info = served.call("GET", "/api/info")
    assert status == 200
    assert info["models"] == ["cvae", "vae", "ad", "exp"] and info["backend"] == "ort" and info["auth"] is False
    assert info["device"]["machine"] and info["limits"]["samples"] >= 64
    assert "Access-Control-Allow-Origin" not in headers
    assert "default-src 'none'" in headers["Content-Security-Policy"] and "script-src 'self'" in headers[
        "Content-Security-Policy"]


def test_model_cards_describe_each_bundle(served):
    status, _, data = served.call("GET", "/api/models")
    assert status == 200
    cards = dict((c["name"], c) for c in data["models"])
    cvae, ad = cards["cvae"], cards["ad"]
    assert (cvae["kind"], cvae["latent_dim"], cvae["labels"], cvae["conditional"]) == ("cvae", 4, ["0", "1", "2"], True)
    assert cvae["output"] == {"type": "image", "shape": [1, 8, 8], "range": [0.0, 1.0]}
    assert (cvae["precision"], cvae["backend"], cvae["target"]) == ("fp32", "ort", "desktop")
    assert cvae["graphs"]["decoder"]["parity"]["max_abs"] == 0.0 and cvae["latency_ms"]["decode_batch1_median"] > 0
    assert cvae["can"] == {"encode": True, "complete": True} and ad["can"]["encode"] is False
    status, _, one = served.call("GET", "/api/models/ad")
    assert status == 200 and one == ad


def test_an_unknown_model_is_404_with_the_names(served):
    for method, path, body in (("GET", "/api/models/nope", None), ("POST", "/api/models/nope/sample", {"n": 1})):
        status, _, payload = served.call(method, path, body)
        assert_sentence(status, payload, 404, "no model named 'nope' here; the models are: cvae, vae, ad, exp")


# -- generation ----------------------------------------------------------------------------------
def test_sample_gives_what_the_runtime_gives(served, bundles):
    status, _, out = served.call("POST", "/api/models/cvae/sample",
                                 {"n": 4, "labels": [0, 1, 2, "1"], "temperature": 0.7, "seed": 5})
    assert status == 200 and out["seed"] == 5 and out["labels"] == [0, 1, 2, 1]
    with Model.open(bundles["cvae"], intra_op_threads=1) as m:
        x, z = m.sample(4, labels=[0, 1, 2, 1], temperature=0.7, seed=5, return_latents=True)
    np.testing.assert_allclose(np.array(out["latents"]), z, rtol=1e-6)
    np.testing.assert_allclose(pngs_to_array(out["images"]), np.round(x * 255) / 255, atol=1.01 / 255)


def test_sample_without_a_seed_returns_one_that_repeats_the_draw(served):
    _, _, first = served.call("POST", "/api/models/vae/sample", {"n": 3})
    _, _, again = served.call("POST", "/api/models/vae/sample", {"n": 3, "seed": first["seed"]})
    assert first["labels"] is None and first["images"] == again["images"]


def test_decode_and_project_onto_the_prior(served, bundles):
    z = [[0.5, -1.0, 2.0, 0.0], [1.0, 1.0, 1.0, 1.0]]
    status, _, out = served.call("POST", "/api/models/vae/decode", {"z": z})
    assert status == 200 and out["n"] == 2
    with Model.open(bundles["vae"], intra_op_threads=1) as m:
        np.testing.assert_allclose(pngs_to_array(out["images"]), np.round(m.decode(z) * 255) / 255, atol=1.01 / 255)
    status, _, out = served.call("POST", "/api/models/exp/decode", {"z": z[0], "project": True})
    assert status == 200 and out["latents"] == [[0.5, 0.0, 2.0, 0.0]]  # the exponential prior's support is z >= 0


def test_interpolate_between_latents_and_from_an_image(served, bundles):
    a, b = [1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]
    for mode in ("linear", "slerp"):
        status, _, out = served.call("POST", "/api/models/cvae/interpolate",
                                     {"a": a, "b": b, "steps": 5, "mode": mode, "labels": 2})
        assert status == 200 and len(out["images"]) == 5 and out["mode"] == mode
        np.testing.assert_allclose(out["latents"][0], a, atol=1e-6)
        np.testing.assert_allclose(out["latents"][-1], b, atol=1e-6)
    with Model.open(bundles["vae"], intra_op_threads=1) as m:
        image = m.decode([a])[0, 0]
        mu = m.encode(np.round(image * 255)[None, None] / 255)[0][0]
    status, _, out = served.call("POST", "/api/models/vae/interpolate", {"a": png_field(image), "b": b, "steps": 3})
    assert status == 200
    np.testing.assert_allclose(out["latents"][0], mu, atol=1e-5)  # an image end point goes through the encoder


def test_encode_a_png_and_a_raw_array(served, bundles):
    with Model.open(bundles["cvae"], intra_op_threads=1) as m:
        x = m.sample(1, labels=1, seed=3)
        q = np.round(x * 255) / 255
        mu, logvar = m.encode(q, 1)
    status, _, out = served.call("POST", "/api/models/cvae/encode", {"image": png_field(q[0, 0]), "labels": 1})
    assert status == 200 and len(out["images"]) == 1
    np.testing.assert_allclose(out["latents"], mu, atol=1e-5)
    np.testing.assert_allclose(out["logvar"], logvar, atol=1e-5)
    status, _, out2 = served.call("POST", "/api/models/cvae/encode", {"image": {"array": q[0].tolist()}, "labels": 1})
    assert status == 200 and np.allclose(out2["latents"], out["latents"], atol=1e-6)
    status, _, payload = served.call("POST", "/api/models/ad/encode", {"image": q[0, 0].tolist()})
    assert_sentence(status, payload, 400, "has no encoder")


# -- completion ----------------------------------------------------------------------------------
def target_digit(bundles, name="cvae", label=2):
    with Model.open(bundles[name], intra_op_threads=1) as m:
        return m.sample(1, labels=label if m.conditional else None, seed=11)[0, 0].astype(np.float64)


def test_complete_waits_and_matches_the_runtime(served, bundles):
    x = target_digit(bundles)
    body = {"image": x.tolist(), "region": "bottom-half", "labels": 2, "steps": 40, "lr": 0.05, "wait": True}
    status, _, out = served.call("POST", "/api/models/cvae/complete", body)
    assert status == 200 and out["state"] == "done" and out["step"] == 40
    with Model.open(bundles["cvae"], intra_op_threads=1) as m:
        r = m.complete(x[None, None], region_mask("bottom-half", (1, 8, 8)), labels=2, steps=40, lr=0.05)
    res = out["result"]
    np.testing.assert_allclose(res["loss"], r.loss, rtol=1e-5)
    np.testing.assert_allclose(res["latents"], r.z, atol=1e-5)
    assert len(out["losses"]) == 41 and res["labels"] == [2] and res["labels_inferred"] is False
    np.testing.assert_allclose(out["losses"][-1], r.history[-1][0], rtol=1e-5)


def test_complete_infers_the_label_of_a_conditional_model(served, bundles):
    x = target_digit(bundles, label=1)
    mask = region_mask("right-half", (1, 8, 8))[0]
    status, _, out = served.call("POST", "/api/models/cvae/complete",
                                 {"image": png_field(x), "mask": png_field(mask), "steps": 60, "wait": True})
    assert status == 200 and out["result"]["labels_inferred"] is True
    with Model.open(bundles["cvae"], intra_op_threads=1) as m:
        r = m.complete(np.round(x * 255)[None, None] / 255, mask[None], labels="infer", steps=60)
    assert out["result"]["labels"] == r.labels.tolist()


def test_a_completion_job_can_be_polled_and_streamed(served, bundles):
    x = target_digit(bundles, "vae")
    status, _, job = served.call("POST", "/api/models/vae/complete",
                                 {"image": [x.tolist()], "mask": region_mask("center", (1, 8, 8)).tolist(), "steps": 30})
    # a 30-step job on an 8x8 model may end before the 202 is written: the stream then replays it whole
    assert status == 202 and job["state"] in ("queued", "running", "done")
    events = []
    req = urllib.request.Request(served.base + job["events"])
    with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        name = None
        for line in resp:
            line = line.decode("utf-8").rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
    assert events[-1][0] == "done" and all(e[0] == "progress" for e in events[:-1])
    losses = [v for _, snap in events for v in snap["losses"]]
    assert len(losses) == 31 and losses[-1] <= losses[0]
    status, _, snap = served.call("GET", job["poll"])
    assert status == 200 and snap["state"] == "done" and len(snap["losses"]) == 31 and snap["result"]["steps"] == 30
    status, _, tail = served.call("GET", job["poll"] + "?since=29")
    assert tail["losses"] == snap["losses"][29:]
    assert_sentence(*served.call("GET", job["poll"] + "?since=-3")[::2], want_status=400, words="since")


def test_a_job_can_be_cancelled(served, bundles, monkeypatch):
    x = target_digit(bundles, "vae")
    model = served.server.api.slots["vae"].model
    running, cancelled = threading.Event(), threading.Event()
    real_complete = model.complete

    def held_complete(*args, **kwargs):  # the job's optimisation pauses at step 5 until the test has cancelled it
        callback = kwargs.pop("callback")

        def paused(step, z, objective):
            if step == 5:
                running.set()
                cancelled.wait(TIMEOUT)
            callback(step, z, objective)
        return real_complete(*args, callback=paused, **kwargs)
    monkeypatch.setattr(model, "complete", held_complete)
    status, _, job = served.call("POST", "/api/models/vae/complete",
                                 {"image": [x.tolist()], "region": "top-half", "steps": 2000})
    assert status == 202 and running.wait(TIMEOUT)
    status, _, out = served.call("POST", "/api/jobs/{}/cancel".format(job["job"]), {})
    assert status == 200 and out["cancelled"] is True
    cancelled.set()
    deadline = time.time() + TIMEOUT
    while time.time() < deadline:
        _, _, snap = served.call("GET", job["poll"])
        if snap["state"] != "running":
            break
        time.sleep(0.05)
    assert snap["state"] == "cancelled" and snap["error"] == "The completion was cancelled." and snap["step"] == 4
    assert_sentence(*served.call("GET", "/api/jobs/feedbeef")[::2], want_status=404, words="no job 'feedbeef'")


def test_directions_span_the_latent_space(served):
    status, _, out = served.call("GET", "/api/models/cvae/directions?k=3")
    assert status == 200 and out["k"] == 3 and np.array(out["directions"]).shape == (3, 4)
    assert all(0 < e <= 1 for e in out["explained"]) and out["explained"] == sorted(out["explained"], reverse=True)
    for k in ("0", "abc", "99"):
        assert_sentence(*served.call("GET", "/api/models/cvae/directions?k=" + k)[::2], want_status=400,
                        words="k must be a whole number")


# -- bad input gets a status and a sentence ------------------------------------------------------
IMG = np.full((8, 8), 0.5).tolist()
BAD = [
    # (endpoint, body, status, words in the sentence)
    ("cvae/sample", {"n": "3", "labels": 0}, 400, "n must be a positive integer, not '3'"),
    ("cvae/sample", {"n": True, "labels": 0}, 400, "n must be a positive integer"),
    ("cvae/sample", {"n": 0, "labels": 0}, 400, "n must be a positive integer"),
    ("cvae/sample", {"n": 100000, "labels": 0}, 400, "n must be at most 256"),
    ("cvae/sample", {"n": 2, "labels": 7}, 400, "Label 7 is out of range; this model has labels 0 to 2"),
    ("cvae/sample", {"n": 2, "labels": [-1]}, 400, "Label -1 is out of range"),
    ("cvae/sample", {"n": 2, "labels": "seven"}, 400, "Unknown label 'seven'"),
    ("cvae/sample", {"n": 2, "labels": [0, 1, 2]}, 400, "Got 3 labels for 2 examples"),
    ("cvae/sample", {"n": 2}, 400, "This model is conditional: give labels"),
    ("vae/sample", {"n": 2, "labels": 1}, 400, "This model is not conditional"),
    ("vae/sample", {"n": 2, "temperature": "hot"}, 400, "temperature must be a finite number"),
    ("vae/sample", {"n": 2, "temperature": -1}, 400, "temperature must be a finite number >= 0"),
    ("vae/sample", {"n": 2, "seed": -1}, 400, "A seed must be an integer from 0 to 2**32-1"),
    ("vae/sample", {"n": 2, "seed": 1.5}, 400, "A seed must be an integer"),
    ("vae/sample", {"count": 2}, 400, "Unknown field 'count'; this endpoint takes: n, labels, temperature, seed"),
    ("vae/decode", {}, 400, "Give z: a latent of 4 numbers"),
    ("vae/decode", {"z": [1, 2, 3]}, 400, "Latents must have 4 values each"),
    ("vae/decode", {"z": [[1, 2, 3, 4], [1, 2]]}, 400, "The latent is not an array of numbers"),
    ("vae/decode", {"z": "abcd"}, 400, "The latent is not an array of numbers"),
    ("vae/decode", {"z": [0, 0, 0, 0], "project": "yes"}, 400, "project must be true or false"),
    ("vae/decode", {"z": [[0, 0, 0, 0]] * 300}, 400, "At most 256 latents"),
    ("vae/interpolate", {"a": [0, 0, 0, 0], "b": [1, 1, 1, 1], "mode": "cubic"}, 400,
     "Interpolation mode must be linear or slerp, not 'cubic'"),
    ("vae/interpolate", {"a": [0, 0, 0, 0], "b": [1, 1, 1, 1], "steps": 1}, 400, "at least 2 steps"),
    ("vae/interpolate", {"a": [0, 0, 0, 0], "b": [1, 1, 1, 1], "steps": 500}, 400, "steps must be at most 64"),
    ("vae/interpolate", {"a": [0, 0, 0, 0]}, 400, "Give a and b"),
    ("vae/encode", {"image": np.full((8, 9), 0.5).tolist()}, 400, "The image has shape (8, 9), but this model takes (1, 8, 8)"),
    ("vae/encode", {"image": np.full((8, 8), 5.0).tolist()}, 400, "outside this model's range [0.0, 1.0]"),
    ("vae/encode", {"image": {"png": "not base64!"}}, 400, "png is not valid base64"),
    ("vae/encode", {"image": {"png": base64.b64encode(b"GIF89a....").decode()}}, 400, "The image is not a PNG file"),
    ("vae/encode", {"image": {"png": base64.b64encode(encode_png(np.zeros((9, 8), np.uint8))).decode()}}, 400,
     "The image is 8x9 pixels, but this model takes 8x8 images"),
    ("vae/encode", {"image": "picture"}, 400, 'The image must be {"png": BASE64}'),
    ("vae/encode", {}, 400, "Give image"),
    ("vae/complete", {"image": IMG, "region": "bottom-half", "mask": IMG}, 400, "Give exactly one of mask or region"),
    ("vae/complete", {"image": IMG}, 400, "Give exactly one of mask or region"),
    ("vae/complete", {"image": IMG, "region": "middle"}, 400, "Unknown mask region 'middle'"),
    ("vae/complete", {"image": IMG, "mask": IMG}, 400, "The mask must hold only 0 (hidden) and 1 (observed)"),
    ("vae/complete", {"image": IMG, "region": "center", "steps": 10 ** 6}, 400, "steps must be at most 2000"),
    ("vae/complete", {"image": IMG, "region": "center", "steps": -1}, 400, "steps must be a positive integer"),
    ("vae/complete", {"image": IMG, "region": "center", "lr": 0}, 400, "lr must be positive"),
    ("vae/complete", {"image": IMG, "region": "center", "lr": "fast"}, 400, "lr and prior_weight must be numbers"),
    ("vae/complete", {"image": IMG, "region": "center", "init": "zeros"}, 400, "init must be one of"),
    ("vae/complete", {"image": IMG, "region": "center", "wait": 1}, 400, "wait must be true or false"),
    ("cvae/complete", {"image": IMG, "region": "center", "labels": 5}, 400, "Label 5 is out of range"),
]


@pytest.mark.parametrize("endpoint, body, status, words", BAD, ids=[" ".join([b[0], str(b[3])[:40]]) for b in BAD])
def test_bad_input_gets_a_sentence(served, endpoint, body, status, words):
    got, headers, payload = served.call("POST", "/api/models/" + endpoint, body)
    assert_sentence(got, payload, status, words)
    assert headers["Content-Type"].startswith("application/json")


@pytest.mark.parametrize("raw, words", [
    (b'{"n": 2, "temperature": NaN}', "temperature must be a finite number"),
    (b'{"z": [0, NaN, 0, 0]}', "holds NaN or infinite values"),
    (b'{"z": [0, Infinity, 0, 0]}', "holds NaN or infinite values"),
    (b'{"n": 2, "seed": 123456789012345678901234567890}', "integer 12345678901234567890... is too large"),
    (b'{"n": 2,', "The body is not valid JSON"),
    (b'\xff\xfe', "The body is not valid JSON"),
    (b'[1, 2]', "The request body must be a JSON object"),
    (b"[" * 100000 + b"]" * 100000, "The body is not valid JSON"),
])
def test_non_finite_numbers_and_broken_json_get_a_sentence(served, raw, words):
    path = "/api/models/vae/decode" if b'"z"' in raw else "/api/models/vae/sample"
    assert_sentence(*served.call("POST", path, raw=raw)[::2], want_status=400, words=words)


def png_bomb(side, inflated):
    """A PNG that says side x side grey but whose pixel data inflates to ``inflated`` bytes."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * inflated, 9))
            + chunk(b"IEND", b""))


def test_pngs_without_pillow_use_the_runtime_reader_and_refuse_bombs(served, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "PIL", None)  # as on a board without pillow: the built-in reader decodes
    x = np.linspace(0, 1, 64).reshape(8, 8)
    status, _, out = served.call("POST", "/api/models/vae/encode", {"image": png_field(x)})
    status2, _, ref = served.call("POST", "/api/models/vae/encode", {"image": (np.round(x * 255) / 255).tolist()})
    assert status == status2 == 200 and np.allclose(out["latents"], ref["latents"], atol=1e-6)
    bomb = base64.b64encode(png_bomb(8, 50 * 1024 * 1024)).decode()
    assert len(bomb) < 200000
    assert_sentence(*served.call("POST", "/api/models/vae/encode", {"image": {"png": bomb}})[::2], want_status=400,
                    words="The image holds more pixel data than its size says")


def test_complete_with_nan_in_the_image(served):
    raw = json.dumps({"image": IMG, "region": "center"}).replace("0.5", "NaN", 1).encode()
    assert_sentence(*served.call("POST", "/api/models/vae/complete", raw=raw)[::2], want_status=400,
                    words="The input holds NaN or infinite values")


def test_huge_bodies_are_refused_with_413(served):
    big = b'{"z": [' + b"0," * (1536 * 1024) + b'0]}'  # 3 MiB, sent whole
    assert_sentence(*served.call("POST", "/api/models/vae/decode", raw=big)[::2], want_status=413,
                    words="this server takes at most 2097152")
    answer = served.raw(b"POST /api/models/vae/decode HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json"
                        b"\r\nContent-Length: 1000000000000\r\n\r\n" % served.port)  # announced, never sent
    assert answer.startswith(b"HTTP/1.0 413 ") and b'"error":"The body has 1000000000000 bytes' in answer


def test_bodies_must_be_json_with_a_length(served):
    assert_sentence(*served.call("POST", "/api/models/vae/sample", raw=b"n=2",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})[::2],
                    want_status=415, words="Content-Type: application/json")
    answer = served.raw(b"POST /api/models/vae/sample HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json"
                        b"\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n" % served.port)
    assert answer.startswith(b"HTTP/1.0 411 ") and b"not chunked" in answer
    answer = served.raw(b"POST /api/models/vae/sample HTTP/1.0\r\nHost: 127.0.0.1:%d\r\n"
                        b"Content-Type: application/json\r\nContent-Length: 50\r\n\r\n{\"n\": 1}" % served.port,
                        half_close=True)
    assert answer.startswith(b"HTTP/1.0 400 ") and b"The body ended after 8 of 50 bytes" in answer


def test_a_foreign_origin_is_refused(served):
    status, headers, payload = served.call("POST", "/api/models/vae/sample", {"n": 1},
                                           headers={"Origin": "http://evil.example"})
    assert_sentence(status, payload, 403, "Requests from other sites (http://evil.example) are refused")
    status, _, _ = served.call("POST", "/api/models/vae/sample", {"n": 1}, headers={"Origin": served.base})
    assert status == 200
    status, headers, payload = served.call("OPTIONS", "/api/models/vae/sample")
    assert status == 405 and "Access-Control-Allow-Origin" not in headers


def test_a_wrong_or_missing_host_header_is_refused(served):
    for host in ("evil.example", "evil.example:{}".format(served.port), "127.0.0.1:1", "localhost:{}x".format(served.port)):
        conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=TIMEOUT)
        conn.putrequest("GET", "/api/info", skip_host=True)
        conn.putheader("Host", host)
        conn.endheaders()
        resp = conn.getresponse()
        payload = json.loads(resp.read().decode())
        conn.close()
        assert_sentence(resp.status, payload, 400, "is not this server's address")
    for host in ("localhost:{}".format(served.port), "[::1]:{}".format(served.port)):
        status, _, _ = served.call("GET", "/api/info", headers={"Host": host})
        assert status == 200
    answer = served.raw(b"GET /api/info HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.0 400 ") and b"no Host header" in answer


def test_unknown_paths_methods_and_garbage(served):
    assert_sentence(*served.call("GET", "/api/nothing")[::2], want_status=404, words="No endpoint /api/nothing")
    status, headers, payload = served.call("GET", "/api/models/vae/sample")
    assert_sentence(status, payload, 405, "answers POST only")
    assert headers["Allow"] == "POST"
    assert_sentence(*served.call("PUT", "/api/models", {})[::2], want_status=405, words="answers GET only")
    assert_sentence(*served.call("DELETE", "/api/jobs/x")[::2], want_status=405, words="answers GET only")
    for data, code in ((b"BREW /api/info HTTP/1.0\r\nHost: x\r\n\r\n", b"501"), (b"GARBAGE\r\n\r\n", b"400"),
                       (b"GET /" + b"a" * 70000 + b" HTTP/1.0\r\n\r\n", b"414")):
        answer = served.raw(data)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 " + code), answer[:200]
        assert set(json.loads(body.decode())) == {"error"}


def test_the_page_is_served_with_a_strict_policy(served):
    for path, ctype in (("/", "text/html"), ("/app.js", "text/javascript"), ("/style.css", "text/css"),
                        ("/favicon.svg", "image/svg+xml")):
        status, headers, body = served.call("GET", path)
        assert status == 200 and headers["Content-Type"].startswith(ctype) and len(body) > 100
        assert "script-src 'self'" in headers["Content-Security-Policy"] and headers["X-Content-Type-Options"] == "nosniff"
    _, _, page = served.call("GET", "/")
    assert b"<script src=\"app.js\"" in page and b"http" not in page.split(b"<body>")[0].replace(b"http-equiv", b"")
    assert_sentence(*served.call("GET", "/../setup.cfg")[::2], want_status=404, words="No page file")
    assert_sentence(*served.call("POST", "/", {})[::2], want_status=405, words="GET only")


def logged(served, start, count):
    """The log lines from index ``start``, once there are ``count`` (a line is written after its answer)."""
    deadline = time.time() + TIMEOUT
    while len(served.lines) < start + count and time.time() < deadline:
        time.sleep(0.01)
    return served.lines[start:]


def test_one_log_line_per_request_without_the_query(served):
    time.sleep(0.2)  # the previous test's last line is written after its answer
    before = len(served.lines)
    served.call("POST", "/api/models/vae/sample", {"n": 1})
    served.call("GET", "/api/models/vae/directions?k=2&token=secret")
    lines = logged(served, before, 2)
    assert len(lines) == 2
    ip, method, path, status, ms, unit = lines[0].split()
    assert (ip, method, path, status, unit) == ("127.0.0.1", "POST", "/api/models/vae/sample", "200", "ms")
    assert float(ms) >= 0 and "secret" not in lines[1] and lines[1].split()[2] == "/api/models/vae/directions"


def test_a_bug_answers_500_with_a_sentence_and_logs_the_traceback(served, monkeypatch):
    def broken(name):
        raise RuntimeError("boom")
    monkeypatch.setattr(served.server.api, "model", broken)
    status, _, payload = served.call("GET", "/api/models/vae")
    assert_sentence(status, payload, 500, "The server failed to handle this request; see its log")
    trace = [line for line in served.lines if "RuntimeError: boom" in line]
    assert len(trace) == 1 and "Traceback" in trace[0] and trace[0].startswith("error in GET /api/models/vae")


def test_requests_at_once_are_all_served(served):
    results = []

    def client(i):
        results.append(served.call("POST", "/api/models/vae/sample", {"n": 4, "seed": i})[0])
    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert results == [200] * 8


# -- the queue and the clock ---------------------------------------------------------------------
def test_a_full_queue_answers_429_with_retry_after(bundles):
    s = Served([bundles["vae"]], max_queue=0)
    try:
        slot = s.server.api.slots["vae"]
        slot.lock.acquire()  # stands for a long inference in progress
        first = []
        waiting = threading.Thread(target=lambda: first.append(s.call("POST", "/api/models/vae/sample", {"n": 1})[0]))
        waiting.start()
        deadline = time.time() + TIMEOUT
        while slot.pending < 1 and time.time() < deadline:
            time.sleep(0.01)
        status, headers, payload = s.call("POST", "/api/models/vae/sample", {"n": 1})
        assert_sentence(status, payload, 429, "Model vae is busy")
        assert int(headers["Retry-After"]) >= 1
        slot.lock.release()
        waiting.join(TIMEOUT)
        assert first == [200]
    finally:
        s.stop()


def test_a_request_that_waits_too_long_answers_503(bundles):
    s = Served([bundles["vae"]], request_timeout=0.3)
    try:
        slot = s.server.api.slots["vae"]
        slot.lock.acquire()
        try:
            status, headers, payload = s.call("POST", "/api/models/vae/sample", {"n": 1})
        finally:
            slot.lock.release()
        assert_sentence(status, payload, 503, "Model vae stayed busy for 0 s")
        assert int(headers["Retry-After"]) >= 1
        assert s.call("POST", "/api/models/vae/sample", {"n": 1})[0] == 200
    finally:
        s.stop()


def test_connections_beyond_the_cap_get_503_at_once(bundles):
    s = Served([bundles["vae"]])
    try:
        s.server.max_connections = 1  # the cap (64 in use) lowered to one
        idle = socket.create_connection(("127.0.0.1", s.port), timeout=TIMEOUT)  # connected, sends nothing
        try:
            deadline = time.time() + TIMEOUT
            status = None
            while time.time() < deadline:  # until the server has taken the idle connection's place
                status, headers, payload = s.call("GET", "/api/info")
                if status == 503:
                    break
                time.sleep(0.02)
            assert_sentence(status, payload, 503, "too many connections")
            assert headers["Retry-After"] == "1"
        finally:
            idle.close()
        deadline = time.time() + TIMEOUT
        while s.call("GET", "/api/info")[0] != 200:  # the place comes back when the idle client leaves
            assert time.time() < deadline, "the idle connection's place never came back"
            time.sleep(0.02)
    finally:
        s.stop()


def test_a_completion_past_its_time_limit_ends_with_a_sentence(bundles):
    s = Served([bundles["vae"]], job_timeout=0.0)
    try:
        status, _, payload = s.call("POST", "/api/models/vae/complete",
                                    {"image": IMG, "region": "center", "steps": 50, "wait": True})
        assert_sentence(status, payload, 503, "ran past this server's 0 s limit")
    finally:
        s.stop()


# -- the token -----------------------------------------------------------------------------------
def test_a_token_guards_every_api_call(guarded):
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": "Basic " + TOKEN}):
        status, rh, payload = guarded.call("GET", "/api/models", headers=headers)
        assert_sentence(status, payload, 401, "This server needs its token")
        assert rh["WWW-Authenticate"].startswith("Bearer")
    assert_sentence(*guarded.call("POST", "/api/models/vae/sample", {"n": 1})[::2], want_status=401, words="token")
    assert guarded.call("GET", "/api/models", headers={"Authorization": "Bearer " + TOKEN})[0] == 200
    assert guarded.call("GET", "/api/info?token=" + TOKEN)[0] == 200  # for EventSource, which cannot send headers
    assert guarded.call("GET", "/")[0] == 200  # the page itself holds nothing secret
    assert guarded.server.url.endswith("/#token=" + TOKEN)
    assert all(TOKEN not in line for line in guarded.lines)


def test_binding_beyond_loopback_needs_a_token(bundles):
    with pytest.raises(JetgenError, match="lets other machines in: give --token SECRET or --token auto"):
        make_server([bundles["vae"]], host="0.0.0.0", port=0)
    with pytest.raises(JetgenError, match="at least 12 printable ASCII characters"):
        make_server([bundles["vae"]], port=0, token="short")
    with pytest.raises(JetgenError, match="port must be a whole number"):
        make_server([bundles["vae"]], port=70000)


def test_token_auto_and_a_wildcard_bind(bundles):
    s = make_server([bundles["vae"]], host="0.0.0.0", port=0, token="auto", log=lambda line: None)
    try:
        assert len(s.token) >= 32 and s.url.endswith("#token=" + s.token)
        thread = threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.1})
        thread.daemon = True
        thread.start()
        # the address the client connected to is a valid Host; a rebinding name is not
        auth = {"Authorization": "Bearer " + s.token}
        for host, want in (("127.0.0.1", 200), ("evil.example", 400)):
            req = urllib.request.Request("http://127.0.0.1:{}/api/info".format(s.server_port),
                                         headers=dict(auth, Host="{}:{}".format(host, s.server_port)))
            try:
                with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
                    status = resp.status
            except urllib.error.HTTPError as err:
                status = err.code
            assert status == want
        s.shutdown()
    finally:
        s.close()


def test_an_address_in_use_is_a_sentence(served, bundles):
    with pytest.raises(JetgenError, match="Cannot listen on 127.0.0.1:{}".format(served.port)):
        make_server([bundles["vae"]], port=served.port)


def test_serve_prints_the_url_and_stops_on_ctrl_c(bundles, monkeypatch):
    from jetgen.serve import server as server_module
    out = io.StringIO()

    def interrupted(self, poll_interval=0.5):
        raise KeyboardInterrupt()
    monkeypatch.setattr(server_module.JetgenServer, "serve_forever", interrupted)
    server_module.serve([bundles["vae"], bundles["vae"]], port=0, out=out, log=lambda line: None)
    text = out.getvalue()
    assert text.startswith("Serving vae, vae-2 (ort backend) at http://127.0.0.1:")
    assert text.endswith("Stopped (SIGINT): no longer listening, jobs cancelled, models closed.\n")
