"""A bounded load test of a bundle served by a real Triton server on loopback, then a markdown block.

    python benchmarks/triton_load.py BUNDLE                    # 8 clients, 10 s per scenario
    python benchmarks/triton_load.py BUNDLE --clients 8 --seconds 10 --batches 1,64

Exports BUNDLE with `jetgen triton` twice (the Python model in local mode and in BLS mode), starts the
registry wheel's tritonserver on 127.0.0.1 (jetgen.triton.local) with tests/triton_standin as its
onnxruntime backend (a STAND-IN: the wheel has none; on a Jetson or GPU server the real backend runs
the same repository), and for each batch size loads: the decoder graph model (random latents and
labels), and the Python model's sample in local and in BLS mode. Reports requests, errors, req/s,
examples/s, p50/p99 latency and how many requests Triton's dynamic batching grouped per execution,
with the load average before and after (the machine may be shared). Only 127.0.0.1 is contacted.
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from jetgen.runtime.bundle import Bundle  # noqa: E402
from jetgen.triton import local  # noqa: E402
from jetgen.triton.load import run_load, table  # noqa: E402
from jetgen.triton.repository import export_repository, options  # noqa: E402

STANDIN = os.path.join(ROOT, "tests", "triton_standin", "onnxruntime")
TYPES = {"O8": "BYTES", "i4": "INT32", "i8": "INT64", "f4": "FP32"}


def decoder_inputs(manifest, batch):
    d, k = manifest["model"]["latent_dim"], len(manifest["model"]["labels"])
    rng = np.random.RandomState(0)
    z = rng.standard_normal((batch, d)).astype(np.float32)
    y = np.eye(k, dtype=np.float32)[rng.randint(0, k, batch)] if k else None

    def make(http, i):
        inputs = [http.InferInput("z", [batch, d], "FP32")]
        inputs[0].set_data_from_numpy(z)
        if y is not None:
            inputs.append(http.InferInput("y", [batch, k], "FP32"))
            inputs[1].set_data_from_numpy(y)
        return inputs
    return make


def infer_inputs(http, values):
    """tritonclient InferInputs of the named numpy arrays ``values``."""
    inputs = []
    for name, value in values.items():
        t = http.InferInput(name, list(value.shape), TYPES[value.dtype.kind + str(value.dtype.itemsize)])
        t.set_data_from_numpy(value)
        inputs.append(t)
    return inputs


def sample_inputs(manifest, batch):
    k = len(manifest["model"]["labels"])

    def make(http, i):
        values = {"op": np.array([b"sample"], dtype=object), "n": np.array([batch], np.int32),
                  "seed": np.array([i], np.int64)}
        if k:
            values["labels"] = np.array([i % k], np.int32)
        return infer_inputs(http, values)
    return make


def complete_inputs(manifest, batch, steps):
    k = len(manifest["model"]["labels"])
    shape = [batch] + list(manifest["model"]["output"]["shape"])
    x = np.random.RandomState(1).rand(*shape).astype(np.float32)
    mask = np.zeros_like(x)
    mask[..., : shape[-2] // 2, :] = 1  # the top half observed

    def make(http, i):
        values = {"op": np.array([b"complete"], dtype=object), "x": x, "mask": mask, "seed": np.array([i], np.int64),
                  "steps": np.array([steps], np.int32)}
        if k:
            values["labels"] = np.full(batch, i % k, np.int32)
        return infer_inputs(http, values)
    return make


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--max-requests", type=int, default=200000)
    p.add_argument("--batches", default="1,64")
    p.add_argument("--instances", type=int, default=1)
    args = p.parse_args()
    why = local.problem()
    if why:
        sys.exit("tritonserver cannot run here: {}.".format(why))
    manifest = Bundle.open(args.bundle).manifest
    batches = [int(b) for b in args.batches.split(",")]
    work = tempfile.mkdtemp(prefix="jetgen-triton-load-")
    repos = {}
    for mode in ("local", "bls"):
        repos[mode] = os.path.join(work, mode)
        export_repository(args.bundle, repos[mode], options(name="m-" + mode, max_batch=max(batches + [64]),
                                                            instances=args.instances, mode=mode))
    load_before = os.getloadavg()
    server = local.LocalServer(list(repos.values()), backends={"onnxruntime": STANDIN}).start(timeout=120)
    rows = []
    try:
        for batch in batches:
            scenarios = [("m-local_decoder", "decoder graph", decoder_inputs(manifest, batch), ["x"]),
                         ("m-local", "sample (local)", sample_inputs(manifest, batch), ["x", "z"]),
                         ("m-bls", "sample (BLS)", sample_inputs(manifest, batch), ["x", "z"])]
            if batch == 1 and not manifest["model"].get("points"):
                scenarios += [("m-local", "complete <=50 steps (local)", complete_inputs(manifest, 1, 50), ["x", "z"]),
                              ("m-bls", "complete <=50 steps (BLS)", complete_inputs(manifest, 1, 50), ["x", "z"])]
            for model, request, make, outputs in scenarios:
                run_load(server.url, model, make, outputs, clients=args.clients, seconds=min(2.0, args.seconds),
                         max_requests=args.max_requests, examples=batch)  # warm-up, uncounted
                row = run_load(server.url, model, make, outputs, clients=args.clients, seconds=args.seconds,
                               max_requests=args.max_requests, examples=batch)
                row["request"] = request
                rows.append(row)
                print("{} batch {}: {:.0f} req/s, p50 {:.2f} ms, {} errors{}".format(
                    request, batch, row["req_s"], row["p50_ms"], row["errors"],
                    " (first: {})".format(row["first_error"]) if row["errors"] else ""), file=sys.stderr)
    finally:
        server.stop()
    load_after = os.getloadavg()
    import tritonclient
    print("## Triton Inference Server under load ({} clients)\n".format(args.clients))
    print("`python benchmarks/triton_load.py {} --clients {} --seconds {:g} --batches {} --instances {}` on {}; "
          "tritonserver 2.51 from nvidia-pytriton's wheel with the onnxruntime stand-in backend "
          "(tests/triton_standin, one intra-op thread per instance), tritonclient {} over HTTP, all on 127.0.0.1; "
          "{} cores; load average (1, 5, 15 min) before {}, after {}.\n".format(
              args.bundle, args.clients, args.seconds, args.batches, args.instances, time.strftime("%Y-%m-%d %H:%M"),
              tritonclient.__version__ if hasattr(tritonclient, "__version__") else "2.73.0", os.cpu_count(),
              [round(v, 2) for v in load_before], [round(v, 2) for v in load_after]))
    print(table(rows))
    return 0 if all(r["errors"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
