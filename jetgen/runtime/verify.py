"""Golden-vector verification: run a bundle's graphs on the inputs stored at export and compare with
the outputs PyTorch gave (docs/bundle.md, "Golden vectors"). ``jetgen verify`` and ``jetgen build``
use it; it needs no torch, so a Jetson can check any engine it builds.

    report = verify_model(Model.open("digits.jetgen", backend="trt"))
    report["ok"], report["rows"]   # one row per graph, case and output: max_abs, max_rel, tolerance, ok

Golden files are read only after their size, sha256 and shape match the manifest, with
``allow_pickle=False``. numpy only, Python 3.6 compatible.
"""
import os

import numpy as np

from jetgen import spec
from jetgen.digest import sha256_file
from jetgen.errors import JetgenError

NPY_HEADER_MAX = 4096  # a float32 .npy header is 128 bytes; anything beyond this is not a plain array
_RANK = dict((p, i) for i, p in enumerate(spec.PRECISIONS))  # fp32 < fp16 < int8: coarser is later


def load_array(bundle_dir, tensor, what):
    """The float32 array a checked golden entry names (file, sha256, shape); JetgenError when the
    file is missing, of another size, hash or shape, or not a plain float32 .npy."""
    path = spec.golden_path(bundle_dir, tensor["file"])
    if not os.path.isfile(path):
        raise JetgenError("The bundle lacks golden/{} ({}); copy the whole bundle directory again.".format(
            tensor["file"], what))
    payload = 4 * int(np.prod(tensor["shape"]))
    size = os.path.getsize(path)
    if not payload < size <= payload + NPY_HEADER_MAX:
        raise JetgenError("golden/{} has {} bytes, which does not fit shape {} of float32; copy the bundle "
                          "again.".format(tensor["file"], size, tensor["shape"]))
    if sha256_file(path) != tensor["sha256"]:
        raise JetgenError("golden/{} does not match its sha256 in the manifest; copy the bundle again.".format(
            tensor["file"]))
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, IOError) as err:
        raise JetgenError("golden/{} is not a readable .npy array ({}); re-export the bundle.".format(
            tensor["file"], err))
    if array.dtype != np.float32 or list(array.shape) != list(tensor["shape"]):
        raise JetgenError("golden/{} holds {} {} but the manifest says float32 {}; re-export the bundle.".format(
            tensor["file"], array.dtype, list(array.shape), tensor["shape"]))
    return np.ascontiguousarray(array)


def load_case(bundle_dir, graph, case):
    """(inputs, outputs) of one golden case as dicts of float32 arrays."""
    where = "{} golden case {}".format(graph, case["name"])
    return tuple(dict((name, load_array(bundle_dir, t, where)) for name, t in case[side].items())
                 for side in ("inputs", "outputs"))


def errors(actual, expected):
    """(max absolute error, max error relative to the largest |expected|) of two arrays; NaN or a
    shape mismatch counts as infinitely wrong."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape or not np.all(np.isfinite(actual)):
        return float("inf"), float("inf")
    if actual.size == 0:
        return 0.0, 0.0
    diff = float(np.max(np.abs(actual - expected)))
    scale = float(np.max(np.abs(expected)))
    return diff, diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))


def passes(max_abs, max_rel, precision):
    """Within the tolerance of ``precision`` (jetgen.spec.GOLDEN_TOLERANCES): abs OR relative."""
    tol = spec.GOLDEN_TOLERANCES[precision]
    return max_abs <= tol["abs"] or max_rel <= tol["rel"]


def coarser(*precisions):
    """The coarsest of the given precisions (None ignored): what the tolerance must allow."""
    known = [p for p in precisions if p in _RANK]
    return max(known, key=lambda p: _RANK[p]) if known else "fp32"


def verify_graph(run, bundle, graph, precision):
    """Rows for every golden case of ``graph``: ``run(feeds) -> outputs`` is called on each case's
    inputs. Each row: graph, case, batch, output, max_abs, max_rel, precision, tol_abs, tol_rel, ok."""
    rows = []
    tol = spec.GOLDEN_TOLERANCES[precision]
    for case in bundle.graph(graph).get("golden") or []:
        inputs, expected = load_case(bundle.path, graph, case)
        got = run(inputs)
        batch = case["inputs"][sorted(case["inputs"])[0]]["shape"][0]
        for name in sorted(expected):
            max_abs, max_rel = errors(got.get(name), expected[name])
            rows.append({"graph": graph, "case": case["name"], "batch": batch, "output": name,
                         "max_abs": max_abs, "max_rel": max_rel, "precision": precision,
                         "tol_abs": tol["abs"], "tol_rel": tol["rel"], "ok": passes(max_abs, max_rel, precision)})
    return rows


def session_precision(session, entry, requested=None):
    """The precision a session really computes in: the graph file's own, or coarser where the
    backend reduces it (a TensorRT engine's chosen precision, ONNX Runtime's TensorRT EP in fp16)."""
    engine = getattr(session, "engine_info", None) or {}
    return coarser(entry.get("precision"), engine.get("precision"), getattr(session, "run_precision", None))


def verify_model(model, graphs=None):
    """Verify every graph of an open ``Model`` (or those named) on its golden vectors.

    Returns {"backend", "rows", "graphs": {graph: precision or None without golden}, "ok"}. Raises
    JetgenError when the bundle carries no golden vectors at all, or a golden file is damaged."""
    bundle = model.bundle
    names = graphs or bundle.graph_names()
    if not any(bundle.graph(g).get("golden") for g in names):
        raise JetgenError("{} carries no golden vectors, so there is nothing to verify against; re-export it with "
                          "a jetgen that writes them (golden/ in docs/bundle.md).".format(bundle.path))
    rows, used = [], {}
    for graph in names:
        if not bundle.graph(graph).get("golden"):
            used[graph] = None
            continue
        precision = session_precision(model.session(graph), bundle.graph(graph), model.precision)
        used[graph] = precision
        rows.extend(verify_graph(lambda feeds, g=graph: model.run(g, feeds), bundle, graph, precision))
    return {"backend": model.backend, "graphs": used, "rows": rows, "ok": all(r["ok"] for r in rows)}


def failure_sentence(rows):
    """One sentence naming the worst failing graph, case and output, or None when all passed."""
    bad = [r for r in rows if not r["ok"]]
    if not bad:
        return None
    worst = max(bad, key=lambda r: r["max_rel"])
    return ("the {graph} graph's output {output!r} on golden case {case} is off by {max_abs:.3g} (relative "
            "{max_rel:.3g}), beyond the {precision} tolerance {tol_abs:g} / {tol_rel:g}".format(**worst))
