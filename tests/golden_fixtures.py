"""Golden vectors for the small bundles of tests/runtime_fixtures.py, written the way docs/bundle.md
describes (files under golden/, listed per graph with sha256 and shape), with numpy reference outputs
standing in for PyTorch's. The exporter writes real ones; these let the reader side be tested alone."""
import hashlib
import json
import os

import numpy as np

from tests.runtime_fixtures import reference_decode, reference_loss


def _reference(weights, graph, feeds, shape):
    y = feeds.get("y")
    if graph == "decoder":
        return {"x": reference_decode(weights, feeds["z"], y, shape)}
    if graph == "encoder":
        flat = feeds["x"].reshape(len(feeds["x"]), -1).astype(np.float64)
        return {"mu": flat.dot(weights["A"]) + weights["c"], "logvar": flat.dot(weights["A2"]) + weights["c2"]}
    z = feeds["z"].astype(np.float64)
    logits = z.dot(weights["W"]) + weights["b"]
    if y is not None:
        logits = logits + y.astype(np.float64).dot(weights["V"])
    t = feeds["target"].reshape(len(z), -1)
    m = feeds["mask"].reshape(len(z), -1)
    grad = ((1 / (1 + np.exp(-logits)) - t) * m).dot(weights["W"].T)
    return {"loss": reference_loss(weights, z, feeds["target"], feeds["mask"], y), "grad": grad}


def _feeds(manifest, graph, batch, rng):
    model = manifest["model"]
    d, k, shape = model["latent_dim"], len(model["labels"]), tuple(model["output"]["shape"])
    feeds = {}
    for t in manifest["graphs"][graph]["inputs"]:
        name = t["name"]
        if name == "z":
            feeds[name] = rng.standard_normal((batch, d))
        elif name == "y":
            feeds[name] = np.eye(k)[rng.randint(0, k, batch)]
        elif name == "mask":
            feeds[name] = (rng.uniform(size=(batch,) + shape) > 0.5).astype(np.float64)
        else:
            feeds[name] = rng.uniform(size=(batch,) + shape)
    return dict((n, v.astype(np.float32)) for n, v in feeds.items())


def _write(folder, name, array):
    path = os.path.join(folder, name)
    np.save(path, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
    with open(path, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    return {"file": name, "sha256": digest, "shape": list(array.shape)}


def add_golden(bundle, weights, batches=(1, 5), seed=0, graphs=None):
    """Write golden cases (batch 1 and a larger batch per graph) into ``bundle``; return the manifest."""
    mpath = os.path.join(bundle, "manifest.json")
    with open(mpath) as handle:
        manifest = json.load(handle)
    folder = os.path.join(bundle, "golden")
    if not os.path.isdir(folder):
        os.makedirs(folder)
    rng = np.random.RandomState(seed)
    shape = tuple(manifest["model"]["output"]["shape"])
    for graph, entry in manifest["graphs"].items():
        if graphs is not None and graph not in graphs:
            continue
        cases = []
        for batch in batches:
            name = "random-b{}".format(batch)
            feeds = _feeds(manifest, graph, batch, rng)
            outputs = _reference(weights, graph, feeds, shape)
            cases.append({"name": name,
                          "inputs": dict((n, _write(folder, "{}-{}-{}.npy".format(graph, name, n), v))
                                         for n, v in feeds.items()),
                          "outputs": dict((n, _write(folder, "{}-{}-{}.npy".format(graph, name, n), v))
                                          for n, v in outputs.items())})
        entry["golden"] = cases
    with open(mpath, "w") as handle:
        json.dump(manifest, handle, indent=1)
    return manifest
