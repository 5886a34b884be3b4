"""Benchmark a bundle (``jetgen bench``): latency and throughput of a bundle per backend and precision, against
PyTorch eager on the same machine in the same run.

Tasks: ``decode`` at each batch size, ``sample`` (prior draw + decode) at the sampling batch,
``complete`` (latent optimisation steps on masked inputs). The torch reference runs the run
directory the bundle came from (``--run``, default the manifest's provenance) and is skipped with a
note when torch or the run is missing (as on a Jetson without torch). Also measured: peak memory of
a ``jetgen sample`` process and of ``import torch``, and on a Jetson GPU load and board power through
jetson-stats when installed. Results: a table, ``--json``, ``--md FILE``, ``--chart FILE.png``.
Python 3.6 compatible; torch, matplotlib and jtop are imported only when used.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

from jetgen.bench.device_info import describe
from jetgen.bench.power import JetsonMonitor
from jetgen.bench.stats import ratio, summarize, time_calls
from jetgen.bench.torch_ref import TorchReference
from jetgen.errors import JetgenError

TASKS = ("decode", "sample", "complete")


def peak_memory_mb(argv):
    """Peak resident memory (MB) of a child process running ``argv``, measured by a tiny wrapper
    process so that nothing else this process ran counts. None where ``resource`` is missing."""
    code = ("import resource, subprocess, sys\n"
            "rc = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
            "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    try:
        out = subprocess.check_output([sys.executable, "-c", code] + list(argv), timeout=600)
        rc, kb = out.decode().split()
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    if int(rc) != 0:
        return None
    return int(kb) / 1024.0


def _labels_for(model, n, rng):
    if not model.conditional:
        return None
    return np.eye(len(model.labels), dtype=np.float32)[rng.randint(0, len(model.labels), n)]


def _row(task, backend, precision, batch, samples, status="ok", extra=None):
    row = {"task": task, "backend": backend, "precision": precision, "batch": batch, "status": status}
    if samples:
        row.update(summarize(samples, batch))
    if extra:
        row.update(extra)
    return row


def run_benchmark(bundle, backends=("torch", "ort"), precisions=("fp32",), batch_sizes=(1, 8, 64, 256),
                  sample_batch=1024, complete_batch=64, complete_steps=100, complete_lr=5e-2, warmup=5,
                  min_time=1.0, max_iters=1000, run_dir=None, threads=None, memory=True, tasks=TASKS,
                  progress=None):
    """Measure every (task, backend, precision, batch) and return {"machine", "bundle", "rows", "notes"}.

    Raises JetgenError for a bad bundle or arguments; a backend that cannot run here (no torch,
    no TensorRT) gives a row with status "skipped: <why>" instead of failing the benchmark.
    """
    from jetgen.runtime.model import Model

    say = progress or (lambda msg: None)
    base = Model.open(bundle)
    manifest = base.manifest
    rng = np.random.RandomState(0)
    notes, rows = [], []
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise JetgenError("Unknown benchmark task {}; choose from {}.".format(unknown[0], ", ".join(TASKS)))

    # inputs shared by every backend so they do the same work
    max_b = max(list(batch_sizes) + [sample_batch, complete_batch])
    z_all = base.prior.sample(max_b, 1.0, np.random.RandomState(1)).astype(np.float32)
    y_all = _labels_for(base, max_b, rng)
    targets = base.decode(z_all[:complete_batch], None if y_all is None else y_all[:complete_batch])
    mask = np.ones_like(targets)
    mask[:, :, targets.shape[2] // 2:, :] = 0.0  # bottom half hidden
    z0 = np.tile(base.prior.mean(), (complete_batch, 1)).astype(np.float32)

    torch_ref = None
    if "torch" in backends:
        run_dir = run_dir or manifest.get("provenance", {}).get("run")
        try:
            torch_ref = TorchReference(run_dir, threads) if run_dir and os.path.isdir(run_dir) else None
            if torch_ref is None:
                notes.append("torch reference skipped: run directory {!r} not found (pass --run)".format(run_dir))
        except ImportError:
            notes.append("torch reference skipped: torch is not installed here")
        except JetgenError as err:
            notes.append("torch reference skipped: {}".format(err))

    def ys(b):
        return None if y_all is None else y_all[:b]

    def measure(fn, b):
        return time_calls(fn, warmup=warmup, min_time=min_time, max_iters=max_iters)

    if torch_ref is not None:
        say("torch eager")
        gen = None
        for b in batch_sizes if "decode" in tasks else ():
            rows.append(_row("decode", "torch", "fp32", b, measure(lambda: torch_ref.decode(z_all[:b], ys(b)), b)))
        if "sample" in tasks:
            gen = torch_ref.torch.Generator().manual_seed(0)
            rows.append(_row("sample", "torch", "fp32", sample_batch,
                             measure(lambda: torch_ref.sample(sample_batch, ys(sample_batch), gen), sample_batch)))
        if "complete" in tasks:
            samples = time_calls(lambda: torch_ref.complete(targets, mask, ys(complete_batch), z0, manifest["model"]["prior"],
                                                            complete_steps, complete_lr),
                                 warmup=1, min_time=min_time, max_iters=max(3, max_iters // 100), min_iters=3)
            rows.append(_row("complete", "torch", "fp32", complete_batch, samples,
                             extra={"steps": complete_steps}))

    for backend in [b for b in backends if b != "torch"]:
        for precision in precisions:
            label = "{} {}".format(backend, precision)
            say(label)
            try:
                model = Model.open(base.bundle, backend=backend, precision=precision,
                                   **({"intra_op_threads": threads} if threads and backend == "ort" else {}))
                model.decode(z_all[:1], ys(1))  # opens (or builds) the engine outside the timing
            except JetgenError as err:
                rows.append(_row("decode", backend, precision, None, None, status="skipped: {}".format(err)))
                continue
            with JetsonMonitor() as monitor:
                for b in batch_sizes if "decode" in tasks else ():
                    rows.append(_row("decode", backend, precision, b,
                                     measure(lambda: model.decode(z_all[:b], ys(b)), b)))
                if "sample" in tasks:
                    rows.append(_row("sample", backend, precision, sample_batch,
                                     measure(lambda: model.sample(sample_batch, ys(sample_batch), seed=0), sample_batch)))
                if "complete" in tasks and model.bundle.has("latent_grad"):
                    samples = time_calls(lambda: model.complete(targets, mask, labels=ys(complete_batch), steps=complete_steps,
                                                                lr=complete_lr, init=z0),
                                         warmup=1, min_time=min_time, max_iters=max(3, max_iters // 100), min_iters=3)
                    rows.append(_row("complete", backend, precision, complete_batch, samples,
                                     extra={"steps": complete_steps}))
            jetson = monitor.result()
            if monitor.available:
                for row in rows:
                    if row["backend"] == backend and row["precision"] == precision:
                        row.update(jetson)

    # ratios against torch at the same task and batch
    reference = dict(((r["task"], r["batch"]), r.get("p50_ms")) for r in rows if r["backend"] == "torch")
    for row in rows:
        if row["backend"] != "torch" and row.get("p50_ms"):
            row["vs_torch"] = ratio(reference.get((row["task"], row["batch"])), row["p50_ms"])
        if "steps" in row and row.get("p50_ms"):
            row["steps_per_s"] = row["steps"] / (row["p50_ms"] / 1e3)
        if row.get("unstable"):
            notes.append("unstable timing for {} {} {} batch {}: spread {:.0%} of the mean; close other programs "
                         "and rerun".format(row["task"], row["backend"], row["precision"], row["batch"], row["cv"]))

    result = {"machine": describe(), "bundle": os.path.abspath(base.bundle.path),
              "model": {"kind": base.kind, "arch": manifest["model"].get("arch"), "latent_dim": base.latent_dim},
              "settings": {"warmup": warmup, "min_time_s": min_time, "max_iters": max_iters,
                           "complete_steps": complete_steps, "complete_lr": complete_lr, "threads": threads},
              "rows": rows, "notes": notes, "memory": {}}
    if memory:
        say("peak memory")
        with tempfile.TemporaryDirectory() as tmp:
            result["memory"]["jetgen_sample_mb"] = peak_memory_mb(
                [sys.executable, "-m", "jetgen.cli", "sample", base.bundle.path, "--n", "64", "--seed", "0",
                 "--out", os.path.join(tmp, "x.npy")] + (["--labels", "all"] if base.conditional else []))
        if torch_ref is not None:
            result["memory"]["import_torch_mb"] = peak_memory_mb([sys.executable, "-c", "import torch"])
    return result


