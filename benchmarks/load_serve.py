"""A bounded load test of ``jetgen serve`` on loopback: N clients for T seconds, then a markdown block.

    python benchmarks/load_serve.py out/demo/cvae.jetgen            # 8 clients, 30 s (make demo writes the bundle)
    python benchmarks/load_serve.py BUNDLE --clients 8 --seconds 30 --threads 1

The server runs in its own process (``jetgen.serve.serve`` on 127.0.0.1, an ephemeral port), so its
resident memory is its own: read from /proc at start (models open, no request yet), after a warm-up
(every endpoint once, then a few seconds of the same load, uncounted), and at the end. Each client loops over the page's mix of requests (sample 16 by
label, decode one latent as an Explore slider does, interpolate 8 steps, list models, and a 20-step
completion with the label inferred) on fresh connections until the time is up. Reported: requests
served (by the clients and by the server's log), p50/p99 latency overall and per endpoint, errors
(anything but 2xx, or no answer; must be 0) and the RSS figures. Exit status 1 when there were errors
or the RSS grew more than 10% after the warm-up. Only 127.0.0.1 is ever contacted.
"""
import argparse
import http.client
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time

from jetgen.bench.stats import percentile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_BUNDLE = os.path.join("out", "demo", "cvae.jetgen")
MAX_SECONDS, MAX_CLIENTS = 600, 64
SERVER = r"""
import sys
from jetgen.serve import serve
bundle, threads, log_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
log = open(log_path, "a", buffering=1)
serve([bundle], host="127.0.0.1", port=0, threads=threads or None, log=lambda line: log.write(line + "\n"))
"""
MIX = ("sample", "decode", "decode", "interpolate", "sample", "decode", "models", "complete")


def rss_mb(pid):
    with open("/proc/{}/status".format(pid)) as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


class Client(object):
    """Requests to the server on 127.0.0.1 with the model's card at hand to build bodies."""

    def __init__(self, port, card, seed):
        self.port, self.card, self.rng = port, card, random.Random(seed)
        self.name = card["name"]

    def call(self, method, path, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            data = None if body is None else json.dumps(body).encode("utf-8")
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
            return resp.status, payload
        finally:
            conn.close()

    def label(self):
        return self.rng.randrange(len(self.card["labels"])) if self.card["conditional"] else None

    def body(self, kind):
        d = self.card["latent_dim"]
        z = [self.rng.gauss(0, 1) for _ in range(d)]
        if kind == "sample":
            return "POST", "/api/models/{}/sample".format(self.name), {"n": 16, "labels": self.label()}
        if kind == "decode":
            return "POST", "/api/models/{}/decode".format(self.name), {"z": [z], "labels": self.label(), "project": True}
        if kind == "interpolate":
            b = [self.rng.gauss(0, 1) for _ in range(d)]
            return "POST", "/api/models/{}/interpolate".format(self.name), {"a": z, "b": b, "steps": 8,
                                                                            "mode": "slerp", "labels": self.label()}
        if kind == "models":
            return "GET", "/api/models", None
        c, h, w = self.card["output"]["shape"]
        image = [[[0.0] * w for _ in range(h)] for _ in range(c)]
        for row in range(h // 4, 3 * h // 4):  # a vertical bar, the simplest stroke
            image[0][row][w // 2] = image[0][row][w // 2 - 1] = 1.0
        return "POST", "/api/models/{}/complete".format(self.name), {"image": image, "region": "bottom-half",
                                                                     "steps": 20, "wait": True}


def body_without_none(body):
    return None if body is None else dict((k, v) for k, v in body.items() if v is not None)


def run_client(client, deadline, results, offset):
    i = offset
    while time.time() < deadline:
        kind = MIX[i % len(MIX)]
        i += 1
        method, path, body = client.body(kind)
        t0 = time.perf_counter()
        try:
            status, _ = client.call(method, path, body_without_none(body))
        except (OSError, http.client.HTTPException) as err:
            status = "no answer ({})".format(type(err).__name__)
        results.append((kind, status, (time.perf_counter() - t0) * 1000.0))


def load(port, card, clients, seconds, results):
    deadline = time.time() + seconds
    threads = [threading.Thread(target=run_client, args=(Client(port, card, i), deadline, results, i))
               for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 120)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle", nargs="?", default=DEFAULT_BUNDLE, help="a digits bundle (default: %(default)s)")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads in the server")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds of uncounted load before the clock")
    args = p.parse_args()
    if not os.path.isdir(args.bundle):
        sys.exit("No bundle at {}; give one (make demo writes {}).".format(args.bundle, DEFAULT_BUNDLE))
    if not (1 <= args.clients <= MAX_CLIENTS and 0 < args.seconds <= MAX_SECONDS and 0 <= args.warmup <= 60):
        sys.exit("Use 1 to {} clients and at most {} seconds.".format(MAX_CLIENTS, MAX_SECONDS))

    fd, log_path = tempfile.mkstemp(prefix="jetgen-serve-load-", suffix=".log")
    os.close(fd)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", SERVER, args.bundle, str(args.threads), log_path],
                            stdout=subprocess.PIPE, env=env, universal_newlines=True)
    try:
        first = proc.stdout.readline()
        if " at http://127.0.0.1:" not in first:
            sys.exit("The server did not start: {!r}".format(first))
        port = int(first.split(" at http://127.0.0.1:")[1].split("/")[0])
        rss_start = rss_mb(proc.pid)
        status, payload = Client(port, {"name": None}, 0).call("GET", "/api/models")
        card = json.loads(payload.decode("utf-8"))["models"][0]
        warm = Client(port, card, 0)
        for kind in MIX:  # every endpoint once, so lazily opened sessions and buffers exist before the clock
            method, path, body = warm.body(kind)
            warm.call(method, path, body_without_none(body))
        # then the full load briefly, uncounted: the allocator's per-thread arenas fill under concurrency,
        # which is growth once, not a leak
        load(port, card, args.clients, args.warmup, [])
        rss_warm = rss_mb(proc.pid)
        lines_before = sum(1 for _ in open(log_path))

        results = []
        t0 = time.time()
        load(port, card, args.clients, args.seconds, results)
        elapsed = time.time() - t0
        time.sleep(0.3)  # the server writes its log line after the answer
        rss_end = rss_mb(proc.pid)
        served_by_log = sum(1 for _ in open(log_path)) - lines_before
    finally:
        proc.terminate()  # SIGTERM: the server stops as on Ctrl-C
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if os.path.exists(log_path):
            os.remove(log_path)

    ok = [r for r in results if isinstance(r[1], int) and 200 <= r[1] < 300]
    errors = [r for r in results if r not in ok]
    growth = (rss_end / rss_warm - 1) * 100
    try:
        import onnxruntime
        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = "absent"
    out = ["## `jetgen serve` under load", "",
           "`python benchmarks/load_serve.py {} --clients {} --seconds {:g} --warmup {:g} --threads {}` on {}.".format(
               args.bundle, args.clients, args.seconds, args.warmup, args.threads, time.strftime("%Y-%m-%d %H:%M")), "",
           "Machine: {} ({} cores), Python {}, onnxruntime {}; server and clients on 127.0.0.1, one process each; "
           "bundle {} ({}, latent {}).".format(_cpu(), os.cpu_count(), platform.python_version(), ort_version,
                                              card["name"], card["kind"], card["latent_dim"]), "",
           "| endpoint | requests | p50 ms | p99 ms | errors |", "|---|---|---|---|---|"]
    for kind in sorted(set(MIX)):
        lat = [r[2] for r in ok if r[0] == kind]
        out.append("| {} | {} | {:.1f} | {:.1f} | {} |".format(kind, len(lat), percentile(lat, 50), percentile(lat, 99),
                                                            sum(1 for r in errors if r[0] == kind)))
    lat = [r[2] for r in ok]
    out.append("| **all** | **{}** | **{:.1f}** | **{:.1f}** | **{}** |".format(len(lat), percentile(lat, 50),
                                                                            percentile(lat, 99), len(errors)))
    out += ["", "Requests served: {} in {:.1f} s ({:.0f}/s); the server logged {}. Errors: {}.".format(
        len(ok), elapsed, len(ok) / elapsed, served_by_log, len(errors)),
        "Server RSS: {:.1f} MB at start (models open, no request yet), {:.1f} MB after the warm-up (every endpoint "
        "once, then {:g} s of the same load, uncounted), {:.1f} MB at the end: {:+.1f}% over the warm-up (limit +10%), "
        "{:+.1f}% over the start.".format(rss_start, rss_warm, args.warmup, rss_end, growth,
                                          (rss_end / rss_start - 1) * 100)]
    if errors:
        out.append("First errors: " + "; ".join("{} {}".format(k, s) for k, s, _ in errors[:5]))
    print("\n".join(out))
    return 1 if errors or growth > 10 else 0


def _cpu():
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    sys.exit(main())
