"""``jetgen serve`` against hostile clients and signals (issue 22, items 1, 2, 6, 9, 10).

A bounded loopback slowloris (70 connections trickling a header line, the deadline scaled down to
seconds), a body sent a byte at a time, HTTP/0.9 and Unicode digits in Content-Length; and SIGTERM /
SIGINT sent to a real ``jetgen serve`` process under load, which must exit 0 with one line and
release its port. Only loopback traffic, bounded in count and time.

    python tests/test_serve_hostile.py --trials 20     # the signal trials as a stress run (benchmarks/)
"""
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from tests.runtime_fixtures import make_bundle  # noqa: E402
from tests.test_serve_api import Served as ServedBase  # noqa: E402

DEADLINE = 4.0      # seconds: the suite's whole-request deadline (the default is 20 s)
ATTACKERS = 70
TRICKLE_S = 0.5     # one header line this often from each slow client
ATTACK_S = 6.0      # how long the slow clients keep trickling: past the deadline


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("hostile-bundles"))
    return {"vae": make_bundle(os.path.join(root, "vae.jetgen"))[0],
            "cvae": make_bundle(os.path.join(root, "cvae.jetgen"), kind="cvae", n_labels=3)[0]}


class Served(ServedBase):
    """test_serve_api's threaded server, with requests from a chosen loopback source address."""

    def request(self, method, path, body=None, source="127.0.0.1", timeout=10):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout, source_address=(source, 0))
        try:
            data = None if body is None else json.dumps(body).encode()
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
            resp = conn.getresponse()
            payload = resp.read()
            return resp.status, json.loads(payload.decode()) if payload[:1] in (b"{", b"[") else payload
        finally:
            conn.close()


@pytest.fixture(scope="module")
def served(bundles):
    s = Served([bundles["vae"], bundles["cvae"]], request_deadline=DEADLINE)
    yield s
    s.stop()


def wait_until_free(server, limit):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if not server.active_connections():
            return True
        time.sleep(0.05)
    return False


def slow_clients(port, count, seconds, source="127.0.0.1"):
    """Open ``count`` connections that each send a request line, then one header line every TRICKLE_S for
    ``seconds``; returns (thread, sockets). Bounded: every socket is closed when the time is up."""
    socks = []
    for _ in range(count):
        sock = socket.socket()
        sock.settimeout(2)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        socks.append(sock)
    for sock in socks:
        sock.sendall(b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n")

    def trickle():
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(TRICKLE_S)
            for i, sock in enumerate(socks):
                try:
                    sock.sendall("X-Slow-{}: a\r\n".format(i).encode())
                except OSError:
                    pass  # dropped by the server: what it should do
        for sock in socks:
            sock.close()
    thread = threading.Thread(target=trickle)
    thread.daemon = True
    thread.start()
    return thread, socks


def test_slowloris_leaves_room_and_every_slot_comes_back(served):
    assert wait_until_free(served.server, 5)
    thread, _ = slow_clients(served.port, ATTACKERS, ATTACK_S)
    time.sleep(TRICKLE_S)  # the slow clients hold what they can: 16 slots of their address, the rest refused
    cap = served.server.max_per_client
    assert served.server.active_connections() == {"127.0.0.1": cap} and cap < served.server.max_connections
    started = time.monotonic()
    status, payload = served.request("GET", "/api/info", source="127.0.0.2")  # another address on the loopback
    assert status == 200 and time.monotonic() - started < 2.0, (status, payload)
    status, payload = served.request("POST", "/api/models/vae/sample", {"n": 2, "seed": 1}, source="127.0.0.3")
    assert status == 200 and len(payload["images"]) == 2
    assert served.server.active_connections().get("127.0.0.1") == cap  # answered while the trickle held its slots
    # the whole-request deadline drops them while they are still trickling
    assert wait_until_free(served.server, DEADLINE + 1.5), served.server.active_connections()
    thread.join(ATTACK_S + 5)
    assert wait_until_free(served.server, 2)
    status, _ = served.request("GET", "/api/info")  # and the slow clients' own address is served again
    assert status == 200


def test_a_body_sent_a_byte_at_a_time_is_dropped_at_the_deadline(served):
    sock = socket.create_connection(("127.0.0.1", served.port), timeout=DEADLINE + 5)
    started = time.monotonic()
    sock.sendall("POST /api/models/vae/sample HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n"
                 "Content-Length: 2000000\r\n\r\n".format(served.port).encode())
    answer = b""
    try:
        while time.monotonic() - started < DEADLINE + 3:
            sock.sendall(b" ")
            sock.settimeout(0.3)
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                continue
            answer += chunk
            if not chunk or b"\r\n\r\n" in answer:
                break
    except OSError:
        pass
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.0 408"), answer[:200]
    assert DEADLINE - 0.5 < time.monotonic() - started < DEADLINE + 2
    assert wait_until_free(served.server, 2)


def test_http_09_and_malformed_request_lines_get_400_at_once(served):
    for line in (b"GET /\r\n", b"GET\r\n", b"GET / HTTP/1.1 extra\r\n", b"\x00\x01\x02\r\n"):
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
            sock.sendall(line)  # and nothing more: the connection stays open on our side
            answer = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        assert answer.startswith(b"HTTP/1.0 400"), (line, answer[:100])
        assert time.monotonic() - started < 1.0
        assert b"could not be read" in answer
    assert wait_until_free(served.server, 2)


@pytest.mark.parametrize("length", [b"\xb2", b"\xb9\xb2", b"+5", b"-1", b"1_0", b" 1 2"])
def test_content_length_must_be_ascii_digits(served, length):
    answer = served.raw("POST /api/models/vae/sample HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json"
                        "\r\nContent-Length: ".format(served.port).encode() + length + b"\r\n\r\n{}")
    assert answer.startswith(b"HTTP/1.0 411"), answer[:300]
    assert not any("error in" in line for line in served.lines)  # no traceback in the log


# -- signals ------------------------------------------------------------------------------------------
def _port_free(port):
    """True when a new server can listen on ``port`` (with SO_REUSEADDR, as jetgen serve binds: the
    load's closed connections may linger in TIME_WAIT)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen(1)
        return True
    except OSError:
        return False
    finally:
        sock.close()


def _load(port, stop, errors, shape=(1, 8, 8)):
    """Requests in a loop until ``stop``: samples and waited completions (so that inference runs when the signal
    comes); connection errors once the server stops are expected."""
    bodies = [("/api/models/vae/sample", {"n": 256, "seed": 1}),
              ("/api/models/vae/complete", {"image": [[[0.5] * shape[2]] * shape[1]] * shape[0], "region": "bottom-half",
                                            "steps": 400,
                                            "wait": True})]
    k = 0
    while not stop.is_set():
        path, body = bodies[k % 2]
        k += 1
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
            conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
            status = conn.getresponse().status
            conn.close()
            if status >= 500 and status != 503:
                errors.append(status)
        except (OSError, http.client.HTTPException):
            time.sleep(0.01)


def signal_trial(bundle, signum, rng, env=None, threads=None, shape=(1, 8, 8)):
    """Start ``jetgen serve`` on a free port, load it, send ``signum``; return a dict of what happened.
    ``threads``: ONNX Runtime's intra-op threads (None: its default, one per core, as a board runs it)."""
    env = dict(env or os.environ)
    env.setdefault("PYTHONPATH", os.path.dirname(HERE))
    env.pop("OMP_NUM_THREADS", None)
    extra = ["--threads", str(threads)] if threads else []
    proc = subprocess.Popen([sys.executable, "-m", "jetgen.cli", "serve", bundle, "--port", "0"] + extra,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, universal_newlines=True)
    first = proc.stdout.readline()
    port = int(first.split("http://127.0.0.1:")[1].split("/")[0])
    stop, errors = threading.Event(), []
    loaders = [threading.Thread(target=_load, args=(port, stop, errors, shape)) for _ in range(4)]
    for t in loaders:
        t.daemon = True
        t.start()
    time.sleep(0.3 + rng.random() * 0.7)
    sent = time.monotonic()
    proc.send_signal(signum)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    took = time.monotonic() - sent
    stop.set()
    for t in loaders:
        t.join(20)
    return {"rc": proc.returncode, "stdout": first + out, "stderr": err, "seconds": took, "port_free": _port_free(port),
            "errors": errors}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGTERM])
def test_a_signal_under_load_stops_cleanly(bundles, signum):
    r = signal_trial(bundles["vae"], signum, random.Random(signum))
    assert r["rc"] == 0, r
    assert "terminate called" not in r["stderr"] and "Traceback" not in r["stderr"], r["stderr"][-2000:]
    stops = [line for line in r["stdout"].splitlines() if line.startswith("Stopped")]
    assert len(stops) == 1 and signal.Signals(signum).name in stops[0], r["stdout"]
    assert r["port_free"]
    assert not r["errors"], r["errors"]


def main(argv):
    """Stress: ``--trials N`` SIGTERM/SIGINT trials under load against a fixture bundle; prints a table row."""
    import argparse
    import tempfile
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args(argv)
    root = tempfile.mkdtemp(prefix="jetgen-signals-")
    bundle = make_bundle(os.path.join(root, "vae.jetgen"))[0]
    rng, rows = random.Random(22), []
    for i in range(args.trials):
        signum = (signal.SIGTERM, signal.SIGINT)[i % 2]
        r = signal_trial(bundle, signum, rng)
        ok = (r["rc"] == 0 and r["port_free"] and "terminate called" not in r["stderr"]
              and "Traceback" not in r["stderr"])
        rows.append(ok)
        print("trial {:2d} {:7s} exit {} port {} {:.2f} s {}".format(
            i + 1, signal.Signals(signum).name, r["rc"], "free" if r["port_free"] else "HELD", r["seconds"],
            "ok" if ok else "FAILED: " + r["stderr"][-300:]))
    print("{} of {} trials exited 0 with the port released".format(sum(rows), len(rows)))
    return 0 if all(rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


# -- small defects (issue 22, items 6, 7, 9) -----------------------------------------------------------
@pytest.mark.parametrize("model,body,words", [
    ("cvae", {"n": 2, "labels": True}, "not true or false"),
    ("cvae", {"n": 2, "labels": [True]}, "not true or false"),
    ("cvae", {"n": 2, "labels": [[True, False, False]]}, "not true or false"),
    ("vae", {"n": 2, "labels": [1]}, "not conditional"),
    ("vae", {"n": 2, "labels": "0"}, "not conditional"),
])
def test_labels_that_are_booleans_or_for_an_unconditional_model_are_400(served, model, body, words):
    status, payload = served.request("POST", "/api/models/{}/sample".format(model), body)
    assert status == 400 and words in payload["error"], payload
    assert not any("error in" in line for line in served.lines)


def test_a_latent_that_overflows_float32_blames_the_input(served):
    for z in ([[1e39] * 4], [[1e30, 0, 0, 0]], [[0, -2e6, 0, 0]]):
        status, payload = served.request("POST", "/api/models/vae/decode", {"z": z})
        assert status == 400, payload
        assert "broken" not in payload["error"] and ("latents must lie within" in payload["error"]
                                                     or "far outside the prior" in payload["error"]), payload


def test_cancel_on_a_finished_job_says_it_was_not_cancelled(served):
    body = {"image": [[[0.5] * 8] * 8], "region": "bottom-half", "steps": 2}
    status, job = served.request("POST", "/api/models/vae/complete", body)
    assert status == 202, job
    end = time.monotonic() + 10
    while served.request("GET", "/api/jobs/" + job["job"])[1]["state"] != "done":
        assert time.monotonic() < end
        time.sleep(0.05)
    status, payload = served.request("POST", "/api/jobs/{}/cancel".format(job["job"]), {})
    assert status == 200 and payload["cancelled"] is False and payload["state"] == "done", payload
