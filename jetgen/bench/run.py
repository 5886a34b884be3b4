"""Benchmark a bundle (``jetgen bench``): what a user of each backend would see, measured fairly.

Protocol (benchmarks/results.md states it with every table):
- each backend runs in its own process (jetgen.bench.worker), one after another, all with the same
  CPU thread count (``threads``, default: the CPUs this process may use, at most 8), warm-up first;
- backends: ``torch`` (PyTorch eager, from the run directory), ``onnxruntime`` (a bare
  InferenceSession: the floor for the runtime's own overhead), ``ort`` and ``trt`` (jetgen's Model);
- every timed call is kept: min, median, mean, p90, p99 (none from fewer than 30 calls), max, the
  call count and how many calls were outliers (counted, not dropped);
- the machine's matrix-multiply peak is measured in the same run (its own process); each decode row
  gets its GFLOP/s (FLOPs counted from the ONNX graph) and the share of that peak;
- quality per backend and precision: the largest error of the decoder against the bundle's fp32
  golden outputs, and for conditional models the share of label-k samples a classifier reads as k;
- on a Jetson, energy per item from jetson-stats' total-rail power integrated over each timed window.

Tasks: ``decode`` at each batch size, ``sample`` (prior draw + decode), ``complete`` (latent
optimisation steps on masked inputs). Python 3.6 compatible; torch only inside the torch worker.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from jetgen import modalities
from jetgen.bench.device_info import describe
from jetgen.bench.stats import ratio, summarize
from jetgen.errors import JetgenError
from jetgen.runtime import backends as runtime_backends  # not ``backends``: run_benchmark has a parameter of that name

TASKS = ("decode", "sample", "complete")
BACKENDS = ("torch", "onnxruntime") + tuple(runtime_backends.names())  # the references, then the runtime's backends
SINGLE_PRECISION = ("torch", "onnxruntime")  # they run the fp32 model / the graph file as it is
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
WORKER_TIMEOUT = 3600
ACCURACY_PER_CLASS = 50


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


def worker_env(threads):
    """This process's environment with every thread-pool size set to ``threads``."""
    env = dict(os.environ)
    for name in THREAD_VARIABLES:
        env[name] = str(threads)
    return env


def run_worker(spec, tmp, threads, name):
    """Run one worker process on ``spec``; (result dict, None) or (None, the reason it failed)."""
    spec = dict(spec, out=os.path.join(tmp, name + ".out.json"))
    path = os.path.join(tmp, name + ".spec.json")
    with open(path, "w") as handle:
        json.dump(spec, handle)
    try:
        proc = subprocess.run([sys.executable, "-m", "jetgen.bench.worker", path], env=worker_env(threads),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                              timeout=WORKER_TIMEOUT)
    except subprocess.TimeoutExpired:
        return None, "did not finish in {} s".format(WORKER_TIMEOUT)
    if proc.returncode != 0 or not os.path.isfile(spec["out"]):
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        last = lines[-1] if lines else "exit status {}".format(proc.returncode)
        return None, last[len("JetgenError: "):] if last.startswith("JetgenError: ") else last
    with open(spec["out"]) as handle:
        return json.load(handle), None


def _targets(bundle, z, y):
    """Decoded images to complete: with ONNX Runtime, else TensorRT; (images, None) or (None, why not)."""
    from jetgen.runtime.model import Model

    why = None
    for backend in runtime_backends.names():
        try:
            with Model.open(bundle, backend=backend) as model:
                return model.decode(z, y), None
        except JetgenError as err:
            why = str(err)
    return None, why


def _inputs(bundle, tasks, batch_sizes, sample_batch, complete_batch, path):
    """Write the inputs every backend gets (the same arrays) to ``path``; (Bundle's Model, notes)."""
    from jetgen.runtime.model import Model

    model = Model.open(bundle)
    notes = []
    max_b = max(list(batch_sizes) + [sample_batch, complete_batch])
    data = {"z": model.prior.sample(max_b, 1.0, np.random.RandomState(1))}
    k = len(model.labels)
    if model.conditional:
        data["y"] = np.eye(k, dtype=np.float32)[np.random.RandomState(0).randint(0, k, max_b)]
        data["y_acc"] = np.eye(k, dtype=np.float32)[np.repeat(np.arange(k), ACCURACY_PER_CLASS)]
        data["labels_acc"] = np.repeat(np.arange(k), ACCURACY_PER_CLASS)
        data["z_acc"] = model.prior.sample(len(data["y_acc"]), 1.0, np.random.RandomState(2))
    half = modalities.part(model.modality, "bench")
    if "complete" in tasks and model.bundle.has("latent_grad") and half is not None:
        data.update(half.complete_inputs(model, data["z"][:complete_batch]))
    elif "complete" in tasks and model.bundle.has("latent_grad"):
        targets, why = _targets(model.bundle, data["z"][:complete_batch],
                                None if "y" not in data else data["y"][:complete_batch])
        if targets is None:
            notes.append("complete skipped: no backend here to make its targets ({})".format(why))
        else:
            mask = np.ones_like(targets)
            mask[:, :, targets.shape[2] // 2:, :] = 0.0  # bottom half hidden
            data.update(targets=targets, mask=mask,
                        z0=np.tile(model.prior.mean(), (complete_batch, 1)).astype(np.float32))
    np.savez(path, **data)
    return model, notes


def _derive(rows, peak, flops_at):
    """Ratios against torch and the bare session, GFLOP/s and share of peak, per row."""
    def p50(backend, task, batch):
        return next((r.get("p50_ms") for r in rows if r["backend"] == backend and r["task"] == task
                     and r["batch"] == batch and r.get("p50_ms")), None)
    for row in rows:
        if not row.get("p50_ms"):
            continue
        if row["backend"] != "torch":
            row["vs_torch"] = ratio(p50("torch", row["task"], row["batch"]), row["p50_ms"])
        if row["backend"] in runtime_backends.BACKENDS:
            session = p50("onnxruntime", row["task"], row["batch"])
            row["vs_session"] = row["p50_ms"] / session if session else None
        if row["task"] == "decode":
            flops = flops_at(row["batch"])
            if flops:
                row["gflops"] = flops / (row["p50_ms"] / 1e3) / 1e9
                row["pct_peak"] = 100.0 * row["gflops"] / peak["gflops"] if peak else None
        if row["task"] == "complete" and row.get("steps"):
            row["steps_per_s"] = row["steps"] / (row["p50_ms"] / 1e3)


def _measure_backends(plan, base_spec, tmp, threads, say, conditional):
    """Run each (backend, precision) worker in turn: rows, quality, sample files for accuracy, notes."""
    rows, quality, samples, notes = [], [], {}, []
    for backend, precision in plan:
        tag = "{}-{}".format(backend, precision)
        say(tag)
        spec = dict(base_spec, kind="backend", backend=backend, precision=precision,
                    samples_out=os.path.join(tmp, tag + ".samples.npy") if conditional else None)
        result, why = run_worker(spec, tmp, threads, tag)
        if result is None:
            rows.append({"task": "-", "backend": backend, "precision": precision, "batch": None,
                         "status": "skipped: {}".format(why)})
            continue
        for raw in result["rows"]:
            row = {"task": raw["task"], "backend": backend, "precision": precision, "batch": raw["batch"],
                   "status": "ok", "providers": result["providers"]}
            row.update(summarize(raw["samples"], raw["batch"]))
            for key in ("steps", "mj_per_item", "power_rail"):
                if raw.get(key) is not None:
                    row[key] = raw[key]
            rows.append(row)
        quality.append(dict(result["quality"], backend=backend, precision=precision,
                            engine=result.get("engine")))
        if spec["samples_out"] and os.path.isfile(spec["samples_out"]):
            samples[tag] = spec["samples_out"]
    return rows, quality, samples, notes


def _plan(backends, precisions, order):
    plan = []
    for backend in backends:
        for precision in (["fp32"] if backend in SINGLE_PRECISION else precisions):
            plan.append((backend, precision))
    return list(reversed(plan)) if order == "reverse" else plan


class BenchOptions(object):
    """What ``run_benchmark`` measures and for how long: one attribute per field of FIELDS (name, default),
    given by keyword or, in FIELDS order, by position. TypeError for a field that does not exist."""

    FIELDS = (("backends", ("torch", "onnxruntime", runtime_backends.DEFAULT)), ("precisions", ("fp32",)),
              ("batch_sizes", (1, 8, 64, 256)), ("sample_batch", 1024), ("complete_batch", 64),
              ("complete_steps", 100), ("complete_lr", 5e-2), ("warmup", 5), ("min_time", 1.0), ("max_iters", 5000),
              ("run_dir", None), ("threads", None), ("memory", True), ("tasks", TASKS), ("progress", None),
              ("complete_min_time", None), ("peak", True), ("accuracy", True), ("order", "forward"))

    def __init__(self, *values, **settings):
        names = [name for name, _ in self.FIELDS]
        if len(values) > len(names):
            raise TypeError("BenchOptions takes at most {} values, not {}".format(len(names), len(values)))
        unknown = sorted(set(settings) - set(names))
        twice = sorted(set(settings) & set(names[:len(values)]))
        if unknown or twice:
            raise TypeError("BenchOptions: {} {}".format("unknown setting" if unknown else "given twice",
                                                         (unknown or twice)[0]))
        given = dict(zip(names, values), **settings)
        for name, default in self.FIELDS:
            setattr(self, name, given.get(name, default))


def run_benchmark(bundle, *values, **settings):
    """Measure every (task, backend, precision, batch) as the module docstring says; return a dict with
    machine, settings, peak, rows, quality, notes, memory and load.

    The settings are a BenchOptions (``options=``) or its fields, by keyword or in its order. A backend
    that cannot run here (no torch, no TensorRT) gives a row "skipped: <why>". Raises JetgenError for a
    bad bundle or arguments, and when nothing asked for could run.
    """
    options = settings.pop("options", None)
    if options is not None and (values or settings):
        raise TypeError("run_benchmark: give options= or its fields, not both")
    options = options or BenchOptions(*values, **settings)
    (backends, precisions, batch_sizes, sample_batch, complete_batch, complete_steps, complete_lr, warmup, min_time,
     max_iters, run_dir, threads, memory, tasks, progress, complete_min_time, peak, accuracy,
     order) = (getattr(options, name) for name, _ in BenchOptions.FIELDS)
    from jetgen.bench.flops import graph_flops
    from jetgen.runtime.backends.ort import default_threads

    say = progress or (lambda msg: None)
    for value, allowed, what in ((tasks, TASKS, "task"), (backends, BACKENDS, "backend")):
        unknown = [v for v in value if v not in allowed]
        if unknown:
            raise JetgenError("Unknown benchmark {} {}; choose from {}.".format(what, unknown[0], ", ".join(allowed)))
    threads = int(threads or default_threads())
    load_before = _load()
    with tempfile.TemporaryDirectory() as tmp:
        inputs = os.path.join(tmp, "inputs.npz")
        complete_batch = _complete_batch(bundle, complete_batch)
        base, notes = _inputs(bundle, tasks, batch_sizes, sample_batch, complete_batch, inputs)
        manifest = base.manifest
        run_dir = run_dir or (manifest.get("provenance") or {}).get("run")
        if "torch" in backends and not (run_dir and os.path.isfile(os.path.join(str(run_dir), "config.json"))):
            notes.append("torch reference skipped: no run directory at {!r} (pass --run)".format(run_dir))
            backends = [b for b in backends if b != "torch"]
        base_spec = {"bundle": base.bundle.path, "run_dir": run_dir, "threads": threads, "inputs": inputs,
                     "tasks": list(tasks), "batch_sizes": list(batch_sizes), "sample_batch": sample_batch,
                     "complete_batch": complete_batch, "complete_steps": complete_steps, "complete_lr": complete_lr,
                     "warmup": warmup, "min_time": min_time, "max_iters": max_iters,
                     "complete_min_time": min_time if complete_min_time is None else complete_min_time}
        peak_result = None
        if peak:
            say("matrix-multiply peak")
            peak_result, why = run_worker({"kind": "peak", "min_time": max(min_time, 0.5), "threads": threads}, tmp,
                                         threads, "peak")
            if peak_result is None:
                notes.append("matrix-multiply peak not measured: {}".format(why))
        rows, quality, samples, more = _measure_backends(_plan(backends, precisions, order), base_spec, tmp, threads,
                                                        say, base.conditional)
        notes += more
        if accuracy and samples and "torch" in backends:
            say("conditional accuracy")
            np.save(os.path.join(tmp, "labels.npy"), np.load(inputs)["labels_acc"], allow_pickle=False)
            acc, why = run_worker({"kind": "accuracy", "run_dir": run_dir, "samples": samples,
                                   "labels": os.path.join(tmp, "labels.npy")}, tmp, threads, "accuracy")
            _attach_accuracy(quality, acc, why, notes)
    measured = [r for r in rows if r["status"] == "ok"]
    if not measured:
        raise JetgenError("Nothing asked for could run here: {}.".format("; ".join(
            "{} {}: {}".format(r["backend"], r["precision"], r["status"][len("skipped: "):]) for r in rows)
            or "no backend was given"))
    decoder = base.bundle.graph_path("decoder")
    flops_cache = {}
    _derive(rows, peak_result, lambda b: flops_cache.setdefault(b, graph_flops(decoder, b)))
    if not any(r.get("gflops") for r in rows if r["task"] == "decode"):
        notes.append("GFLOP/s not computed: the onnx package is needed to count a graph's FLOPs")
    for r in measured:
        if r.get("unstable"):
            notes.append("unstable timing for {} {} {} batch {}: spread {:.0%} of the mean (this machine's load "
                         "was {} before the run)".format(r["task"], r["backend"], r["precision"], r["batch"], r["cv"],
                                                         load_before))
    result = {"machine": describe(), "bundle": base.bundle.path,
              "model": {"kind": base.kind, "arch": manifest["model"].get("arch"), "latent_dim": base.latent_dim},
              "settings": {"threads": threads, "warmup": warmup, "min_time_s": min_time, "max_iters": max_iters,
                           "complete_min_time_s": base_spec["complete_min_time"],
                           "complete_steps": complete_steps, "complete_lr": complete_lr, "order": order,
                           "process_per_backend": True},
              "peak": peak_result, "rows": rows, "quality": quality, "notes": notes, "memory": {},
              "load": {"before": load_before, "after": _load()}}
    if memory:
        say("peak memory")
        result["memory"] = _memory(base, "torch" in backends)
    return result


def _complete_batch(bundle, asked):
    """A point-cloud bundle's gradient graph holds a (B, M, N) distance matrix, so its exports cap the
    batch (16 by default); completions are timed at most at that batch, on every backend alike."""
    from jetgen.spec import read_manifest

    manifest = read_manifest(bundle)
    half = modalities.part(manifest["model"]["modality"], "bench")
    return asked if half is None else half.complete_batch(manifest, asked)


def _attach_accuracy(quality, acc, why, notes):
    if acc is None:
        notes.append("conditional accuracy not measured: {}".format(why))
        return
    for q in quality:
        q["accuracy"] = acc["accuracy"].get("{}-{}".format(q["backend"], q["precision"]))
    notes.append("conditional accuracy: {} samples per label classified by a logistic regression trained on the "
                 "run's training images ({:.1%} on real test images)".format(ACCURACY_PER_CLASS,
                                                                             acc["classifier_test_accuracy"]))


def _load():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _memory(base, with_torch):
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        out["jetgen_sample_mb"] = peak_memory_mb(
            [sys.executable, "-m", "jetgen.cli", "sample", base.bundle.path, "--n", "64", "--seed", "0",
             "--out", os.path.join(tmp, "x.npy")] + (["--labels", "all"] if base.conditional else []))
    if with_torch:
        out["import_torch_mb"] = peak_memory_mb([sys.executable, "-c", "import torch"])
    return out
