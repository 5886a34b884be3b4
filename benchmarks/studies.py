"""Two measurements behind jetgen's defaults, run by benchmarks/run_benchmarks.py:

- ``tolerance_study``: how far fp16 and int8 exports (and fp32 with TensorRT's TF32, emulated by
  rounding every matrix-product input to 10 mantissa bits) land from the fp32 graphs' outputs, per
  graph and output, on prior samples and test digits: jetgen.spec.GOLDEN_TOLERANCES comes from it;
- ``completion_study``: complete() on the digits test split with the bottom half hidden, for each
  stopping rule (``tol``, ``window``) of a grid against the 300-step result, in the runtime and in
  torch (each run in its own process): jetgen.runtime.model.COMPLETE_TOL and COMPLETE_WINDOW come
  from it.

``python benchmarks/studies.py SPEC.json`` is the worker of the completion study.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

TOL_GRID = (1e-2, 5e-3, 2e-3, 1e-3, 5e-4, 2e-4, 1e-4)
WINDOW_GRID = (10, 20, 30, 50)
CONVERGED_STEPS = 300
QUALITY_SLACK = 0.01
TOLERANCE_MARGIN = 3
STUDY_BATCH = 64


# -- golden tolerances -------------------------------------------------------------------------------

def _test_split():
    from jetgen.train.data import load_digits
    data = load_digits()
    return data.test_x.numpy().astype(np.float32), data.test_y.numpy()


def _feeds(manifest, x, labels, seed=0):
    """Inputs per graph: prior samples (decoder, latent_grad's z) and test digits (encoder, targets)."""
    model = manifest["model"]
    rng = np.random.RandomState(seed)
    n = len(x)
    z = rng.standard_normal((n, model["latent_dim"])).astype(np.float32)
    mask = np.ones_like(x)
    mask[:, :, x.shape[2] // 2:, :] = 0
    feeds = {"decoder": {"z": z}, "encoder": {"x": x}, "latent_grad": {"z": z, "target": x, "mask": mask}}
    if model["conditional"]:
        y = np.eye(len(model["labels"]), dtype=np.float32)[labels]
        for f in feeds.values():
            f["y"] = y
    return dict((g, f) for g, f in feeds.items() if g in manifest["graphs"])


def tf32_rounded(path, out):
    """Write a copy of the ONNX graph at ``path`` whose MatMul, Gemm, Conv and ConvTranspose inputs are
    rounded to 10 mantissa bits (Cast to float16 and back): TF32's arithmetic, as TensorRT uses by
    default for fp32 layers on Ampere GPUs (Orin)."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(path)
    nodes, rounded = [], {}
    for node in model.graph.node:
        if node.op_type in ("MatMul", "Gemm", "Conv", "ConvTranspose"):
            for i in range(min(2, len(node.input))):
                name = node.input[i]
                if name not in rounded:  # a tensor feeding several products is rounded once
                    rounded[name] = name + "__tf32"
                    nodes += [helper.make_node("Cast", [name], [name + "__tf32h"], to=TensorProto.FLOAT16),
                              helper.make_node("Cast", [name + "__tf32h"], [rounded[name]], to=TensorProto.FLOAT)]
                node.input[i] = rounded[name]
        nodes.append(node)
    model.graph.ClearField("node")
    model.graph.node.extend(nodes)
    onnx.save(model, out)
    return out


def _session_outputs(path, feeds):
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))


def _compare(rows, model_name, precision, reference, outputs, graph):
    from jetgen.runtime.verify import errors
    for name, expected in reference.items():
        max_abs, max_rel = errors(outputs[name], expected)
        scale = float(np.max(np.abs(expected)))
        rows.append({"model": model_name, "precision": precision, "graph": graph, "output": name,
                     "max_abs": max_abs, "max_rel": max_rel, "scale": scale,
                     "unit_error": max_abs / max(scale, 1.0)})


def tolerance_study(models, export):
    """Errors of reduced-precision bundles against the fp32 bundle's outputs; rows and the tolerance
    each precision's worst error suggests (TOLERANCE_MARGIN times it, rounded up to 1, 2 or 5).
    ``export(name, precision)`` returns the path of that model's bundle at that precision."""
    from jetgen.runtime import Model

    x, y = _test_split()
    x, y = x[:STUDY_BATCH], y[:STUDY_BATCH]
    rows = []
    for name, (run, bundle) in models.items():
        ref_model = Model.open(bundle)
        feeds = _feeds(ref_model.manifest, x, y)
        reference = dict((g, ref_model.run(g, f)) for g, f in feeds.items())
        for precision in ("fp16", "int8"):
            with Model.open(export(name, precision)) as model:
                for graph, f in feeds.items():
                    _compare(rows, name, precision, reference[graph], model.run(graph, f), graph)
        with tempfile.TemporaryDirectory() as tmp:
            for graph, f in feeds.items():
                rounded = tf32_rounded(ref_model.bundle.graph_path(graph), os.path.join(tmp, graph + ".onnx"))
                _compare(rows, name, "fp32", reference[graph], _session_outputs(rounded, f), graph)
        ref_model.close()
    suggested = {}
    for precision in ("fp32", "fp16", "int8"):
        worst = max(r["unit_error"] for r in rows if r["precision"] == precision)
        suggested[precision] = {"worst": worst, "tolerance": _round_up(TOLERANCE_MARGIN * worst)}
    return {"rows": rows, "suggested": suggested, "batch": STUDY_BATCH, "margin": TOLERANCE_MARGIN}


def _round_up(value):
    """The smallest of 1, 2, 5 times a power of ten that is >= value."""
    if value <= 0:
        return 1e-6
    exponent = int(np.floor(np.log10(value)))
    for step in (1, 2, 5, 10):
        if step * 10.0 ** exponent >= value * (1 - 1e-12):
            return step * 10.0 ** exponent
    return 10.0 ** (exponent + 1)


# -- complete's stopping rule ------------------------------------------------------------------------

def _complete_worker(spec):
    """One timed complete() call on the test split: hidden-half error, steps, seconds."""
    x = np.load(spec["x"])
    labels = np.load(spec["labels"]) if spec.get("labels") else None
    mask = np.ones_like(x)
    mask[:, :, x.shape[2] // 2:, :] = 0
    hidden = mask == 0
    if spec["engine"] == "runtime":
        from jetgen.runtime import Model
        model = Model.open(spec["bundle"], intra_op_threads=spec["threads"])
        call = lambda: model.complete(x, mask, labels=labels, steps=spec["steps"], tol=spec["tol"],  # noqa: E731
                                      window=spec["window"])
        call_small = lambda: model.complete(x[:2], mask[:2], labels=None if labels is None else labels[:2], steps=2)  # noqa: E731,E501
    else:
        from jetgen.bench.torch_ref import TorchReference
        ref = TorchReference(spec["run"], spec["threads"])
        prior = json.load(open(os.path.join(spec["bundle"], "manifest.json")))["model"]["prior"]
        k = ref.run.model.num_classes if labels is not None else 0
        y = np.eye(k, dtype=np.float32)[labels] if labels is not None else None
        z0 = np.tile(np.asarray(prior["params"]["mean"], np.float32), (len(x), 1))
        call = lambda: ref.complete(x, mask, y, z0, prior, spec["steps"], 5e-2, tol=spec["tol"],  # noqa: E731
                                    window=spec["window"])
        call_small = lambda: ref.complete(x[:2], mask[:2], None if y is None else y[:2], z0[:2], prior, 2, 5e-2)  # noqa: E731,E501
    call_small()  # sessions open, caches warm: outside the timing
    start = time.perf_counter()
    result = call()
    seconds = time.perf_counter() - start
    if spec["engine"] == "runtime":
        decoded, steps = result.decoded, result.steps
        changed = np.diff(result.history, axis=0) != 0
        per_example = [int(np.max(np.nonzero(c)[0]) + 1) if c.any() else 0 for c in changed.T]
    else:
        z, steps = result
        decoded, per_example = ref.decode(z, y), [steps] * len(x)
    return {"hidden_mse": float(np.mean((decoded[hidden] - x[hidden]) ** 2)), "steps": int(steps),
            "mean_steps": float(np.mean(per_example)), "seconds": seconds}


def _run(spec, tmp, tag):
    from jetgen.bench.run import worker_env
    from jetgen.runtime.backends.ort import default_threads

    threads = default_threads()
    spec = dict(spec, threads=threads, out=os.path.join(tmp, tag + ".json"))
    path = os.path.join(tmp, tag + ".spec.json")
    json.dump(spec, open(path, "w"))
    print("complete study: {} {} tol={} window={}".format(spec["engine"], os.path.basename(spec["bundle"]),
                                                         spec["tol"], spec["window"]), flush=True)
    subprocess.run([sys.executable, os.path.abspath(__file__), path], check=True, env=worker_env(threads), cwd=ROOT)
    return json.load(open(spec["out"]))


def _grid_entry(model, rule):
    return next(g for g in model["grid"] if (g["tol"], g["window"]) == tuple(rule))


def completion_study(models):
    """Per model: the 300-step reference and each (tol, window) of the grid (runtime), torch at 300 steps
    and with the chosen rule; the chosen rule: within QUALITY_SLACK of the reference on every model,
    with the fewest mean steps per digit summed over the models."""
    x, y = _test_split()
    rules = [(t, w) for w in WINDOW_GRID for t in TOL_GRID]
    out = {"models": {}, "grid": rules, "steps": CONVERGED_STEPS, "slack": QUALITY_SLACK, "images": len(x)}
    with tempfile.TemporaryDirectory() as tmp:
        np.save(os.path.join(tmp, "x.npy"), x)
        np.save(os.path.join(tmp, "y.npy"), y)
        for name, (run, bundle) in models.items():
            conditional = json.load(open(os.path.join(bundle, "manifest.json")))["model"]["conditional"]
            base = {"x": os.path.join(tmp, "x.npy"), "labels": os.path.join(tmp, "y.npy") if conditional else None,
                    "bundle": bundle, "run": run, "steps": CONVERGED_STEPS, "window": 10}
            entry = {"base": base, "reference": _run(dict(base, engine="runtime", tol=None), tmp, name + "-ref"),
                     "grid": [dict(_run(dict(base, engine="runtime", tol=t, window=w), tmp,
                                        "{}-{}-{}".format(name, t, w)), tol=t, window=w) for t, w in rules],
                     "torch_reference": _run(dict(base, engine="torch", tol=None), tmp, name + "-torch-ref")}
            out["models"][name] = entry
        ok = [rule for rule in rules if all(
            _grid_entry(m, rule)["hidden_mse"] <= (1 + QUALITY_SLACK) * m["reference"]["hidden_mse"]
            for m in out["models"].values())]
        out["chosen"] = min(ok, key=lambda rule: sum(_grid_entry(m, rule)["mean_steps"]
                                                     for m in out["models"].values())) if ok else None
        for name, entry in out["models"].items():
            base = entry.pop("base")
            if out["chosen"] is not None:
                tol, window = out["chosen"]
                entry["torch_chosen"] = _run(dict(base, engine="torch", tol=tol, window=window), tmp,
                                             name + "-torch-chosen")
    return out


# -- the one-process swing ----------------------------------------------------------------------------

SWING_BATCH = 64


def _one_process_worker(spec):
    """The old protocol's order in one process: ONNX Runtime's decoder timed first, then torch's, both
    at SWING_BATCH with the same threads; the torch median is the figure that swung (ms)."""
    import onnxruntime as ort
    from jetgen.bench.stats import summarize, time_calls
    from jetgen.bench.torch_ref import TorchReference

    manifest = json.load(open(os.path.join(spec["bundle"], "manifest.json")))
    rng = np.random.RandomState(0)
    z = rng.standard_normal((SWING_BATCH, manifest["model"]["latent_dim"])).astype(np.float32)
    feeds = {"z": z}
    if manifest["model"]["conditional"]:
        k = len(manifest["model"]["labels"])
        feeds["y"] = np.eye(k, dtype=np.float32)[rng.randint(0, k, SWING_BATCH)]
    so = ort.SessionOptions()
    so.intra_op_num_threads = spec["threads"]
    session = ort.InferenceSession(os.path.join(spec["bundle"], "decoder.onnx"), so, providers=["CPUExecutionProvider"])
    ort_samples, _ = time_calls(lambda: session.run(None, feeds), warmup=5, min_time=spec["min_time"], max_iters=5000)
    ref = TorchReference(spec["run"], spec["threads"])
    torch_samples, _ = time_calls(lambda: ref.decode(z, feeds.get("y")), warmup=5, min_time=spec["min_time"],
                                  max_iters=5000)
    return {"onnxruntime": summarize(ort_samples, SWING_BATCH), "torch": summarize(torch_samples, SWING_BATCH)}


def one_process_study(run, bundle, repeats=3, min_time=1.0, threads=None):
    """``repeats`` fresh processes, each timing ONNX Runtime's decoder and then torch's in one process
    (the protocol before issue 13): the torch figure's range shows the swing the per-process protocol removes."""
    from jetgen.runtime.backends.ort import default_threads

    threads = int(threads or default_threads())
    out = {"batch": SWING_BATCH, "threads": threads, "repeats": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            spec = {"kind": "one_process", "bundle": bundle, "run": run, "threads": threads, "min_time": min_time,
                    "out": os.path.join(tmp, "swing-{}.json".format(i))}
            path = os.path.join(tmp, "swing-{}.spec.json".format(i))
            json.dump(spec, open(path, "w"))
            print("one-process study: repeat {}".format(i + 1), flush=True)
            subprocess.run([sys.executable, os.path.abspath(__file__), path], check=True, env=_env(threads), cwd=ROOT)
            out["repeats"].append(json.load(open(spec["out"])))
    return out


def _env(threads):
    from jetgen.bench.run import worker_env
    return worker_env(threads)


WORKERS = {"complete": _complete_worker, "one_process": _one_process_worker}

if __name__ == "__main__":
    with open(sys.argv[1]) as handle:
        worker_spec = json.load(handle)
    result = WORKERS[worker_spec.get("kind", "complete")](worker_spec)
    with open(worker_spec["out"], "w") as handle:
        json.dump(result, handle)
