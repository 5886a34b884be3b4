"""Bounded concurrent load on a Triton server through ``tritonclient.http``, and the table it gives.

    rows = run_load("127.0.0.1:8000", "cvae_decoder", make_inputs, clients=8, seconds=10)

Each of ``clients`` threads has its own connection and sends one request after another until
``seconds`` pass or ``max_requests`` were sent in all; latency is measured per request at the client.
Triton's own statistics for the model (inferences / executions: how many requests dynamic batching
grouped into one run) are read before and after. Desktop tool; needs the ``triton`` extra.
"""
import threading
import time

from jetgen.bench.stats import percentile
from jetgen.errors import JetgenError

MAX_CLIENTS = 64
MAX_SECONDS = 600.0
MAX_REQUESTS = 1000000
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


def _client_module():
    try:
        import tritonclient.http as http
    except ImportError:
        raise JetgenError("tritonclient is not installed; pip install 'jetgen[triton]' (tritonclient[http]).")
    return http


def check_loopback(url):
    """JetgenError unless ``url`` (host:port) is on this machine: the load test never leaves it."""
    host = url.rsplit(":", 1)[0]
    if host not in LOOPBACK:
        raise JetgenError("The load test talks only to a server on this machine (127.0.0.1), not {}.".format(url))
    return url


def _stats(client, model):
    """(inference_count, execution_count) Triton reports for ``model`` (all versions)."""
    stats = client.get_inference_statistics(model).get("model_stats", [])
    return (sum(int(s.get("inference_count", 0)) for s in stats),
            sum(int(s.get("execution_count", 0)) for s in stats))


def run_load(url, model, make_inputs, outputs, clients=8, seconds=10.0, max_requests=100000, examples=1):
    """Load ``model`` at ``url`` and return one result row (dict).

    ``make_inputs(http, i)`` gives request ``i``'s list of InferInput; ``outputs`` the output names to ask
    for; ``examples`` how many examples one request carries (samples/s = requests/s x examples).
    Row keys: model, clients, examples, requests, errors, seconds, req_s, examples_s, p50_ms, p99_ms,
    batching (examples per execution: Triton's inference_count / execution_count, so dynamic batching
    that groups requests shows as more than the examples of one request; None when it reports none)."""
    check_loopback(url)
    if not (1 <= clients <= MAX_CLIENTS and 0 < seconds <= MAX_SECONDS and 1 <= max_requests <= MAX_REQUESTS):
        raise JetgenError("Use 1 to {} clients, at most {:g} s and at most {} requests.".format(
            MAX_CLIENTS, MAX_SECONDS, MAX_REQUESTS))
    http = _client_module()
    admin = http.InferenceServerClient(url)
    try:
        before = _stats(admin, model)
        lock = threading.Lock()
        sent = [0]
        latencies, failures = [], []
        deadline = time.time() + seconds

        def worker():
            client = http.InferenceServerClient(url, network_timeout=120)
            wanted = [http.InferRequestedOutput(o) for o in outputs]
            try:
                while time.time() < deadline:
                    with lock:
                        if sent[0] >= max_requests:
                            return
                        i = sent[0]
                        sent[0] += 1
                    inputs = make_inputs(http, i)
                    t0 = time.perf_counter()
                    try:
                        client.infer(model, inputs, outputs=wanted)
                        ms = (time.perf_counter() - t0) * 1000.0
                        with lock:
                            latencies.append(ms)
                    except Exception as err:  # tritonclient raises its own and socket errors alike
                        with lock:
                            failures.append(str(err)[:200])
            finally:
                client.close()

        started = time.time()
        threads = [threading.Thread(target=worker) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(seconds + 180)
        elapsed = time.time() - started
        after = _stats(admin, model)
    finally:
        admin.close()
    inferences, executions = after[0] - before[0], after[1] - before[1]
    done = len(latencies)
    return {"model": model, "clients": clients, "examples": examples, "requests": done, "errors": len(failures),
            "first_error": failures[0] if failures else None, "seconds": elapsed,
            "req_s": done / elapsed, "examples_s": done * examples / elapsed,
            "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
            "batching": (inferences / float(executions)) if executions else None}


def table(rows):
    """The rows as a markdown table (the columns of ``jetgen bench``'s, plus Triton's batching)."""
    out = ["| model | request | examples / request | clients | requests | errors | req/s | examples/s | p50 ms | "
           "p99 ms | examples per execution |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append("| {} | {} | {} | {} | {} | {} | {:.0f} | {:.0f} | {:.2f} | {:.2f} | {} |".format(
            r["model"], r.get("request", ""), r["examples"], r["clients"], r["requests"], r["errors"], r["req_s"],
            r["examples_s"], r["p50_ms"], r["p99_ms"], "-" if r["batching"] is None else "{:.2f}".format(r["batching"])))
    return "\n".join(out)
