"""Small real bundles for the runtime tests, built with onnx.helper and numpy (no torch).

The model is a linear-sigmoid decoder x = sigmoid(z W + y V + b), reshaped to (C, H, W); the
encoder is linear (mu = x A + c, logvar = x A2 + c2); latent_grad computes the masked Bernoulli loss
from the logits, sum(mask * (softplus(l) - target * l)), and its analytic gradient
((sigmoid(l) - target) * mask) W^T. Opset 13, dynamic batch axis named "batch", float32 interfaces.
"""
import hashlib
import json
import os

import numpy as np

OPSET = 13


def _weights(latent_dim, n_labels, shape, seed):
    rng = np.random.RandomState(seed)
    p = int(np.prod(shape))
    w = {
        "W": (rng.standard_normal((latent_dim, p)) * 1.2).astype(np.float32),
        "b": (rng.standard_normal(p) * 0.3).astype(np.float32),
        "A": (rng.standard_normal((p, latent_dim)) * 0.05).astype(np.float32),
        "c": np.zeros(latent_dim, dtype=np.float32),
        "A2": (rng.standard_normal((p, latent_dim)) * 0.01).astype(np.float32),
        "c2": np.full(latent_dim, -1.0, dtype=np.float32),
    }
    if n_labels:
        w["V"] = (rng.standard_normal((n_labels, p)) * 1.5).astype(np.float32)
    return w


def reference_decode(weights, z, y=None, shape=(1, 8, 8)):
    """numpy forward of the fixture decoder (float64), for checking the runtime."""
    logits = np.asarray(z, np.float64).dot(weights["W"]) + weights["b"]
    if y is not None:
        logits = logits + np.asarray(y, np.float64).dot(weights["V"])
    return (1 / (1 + np.exp(-logits))).reshape((-1,) + tuple(shape))


def reference_loss(weights, z, target, mask, y=None):
    """numpy masked Bernoulli loss per example (float64)."""
    logits = np.asarray(z, np.float64).dot(weights["W"]) + weights["b"]
    if y is not None:
        logits = logits + np.asarray(y, np.float64).dot(weights["V"])
    t = np.asarray(target, np.float64).reshape(len(logits), -1)
    m = np.asarray(mask, np.float64).reshape(len(logits), -1)
    return np.sum(m * (np.logaddexp(0, logits) - t * logits), axis=1)


def _model(nodes, inputs, outputs, inits, name):
    from onnx import helper, numpy_helper
    graph = helper.make_graph(nodes, name, inputs, outputs,
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="jetgen-tests")
    model.ir_version = 7
    return model


def _vi(name, dims):
    from onnx import TensorProto, helper
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch"] + list(dims))


def _logits_nodes(conditional):
    from onnx import helper
    nodes = [helper.make_node("MatMul", ["z", "W"], ["zw"]), helper.make_node("Add", ["zw", "b"], ["l0"])]
    if conditional:
        nodes += [helper.make_node("MatMul", ["y", "V"], ["yv"]), helper.make_node("Add", ["l0", "yv"], ["logits"])]
    else:
        nodes += [helper.make_node("Identity", ["l0"], ["logits"])]
    return nodes


def build_graphs(latent_dim, n_labels, shape, weights):
    """The three ONNX models (decoder, encoder, latent_grad) for the fixture weights."""
    from onnx import helper
    d, k, p = latent_dim, n_labels, int(np.prod(shape))
    cond = bool(k)
    label_in = [_vi("y", [k])] if cond else []
    pick = dict((n, weights[n]) for n in (["W", "b", "V"] if cond else ["W", "b"]))

    flat = np.array([-1, p], dtype=np.int64)
    image = np.array([-1] + list(shape), dtype=np.int64)
    dec_nodes = _logits_nodes(cond) + [helper.make_node("Sigmoid", ["logits"], ["probs"]),
                                       helper.make_node("Reshape", ["probs", "image_shape"], ["x"])]
    decoder = _model(dec_nodes, [_vi("z", [d])] + label_in, [_vi("x", shape)],
                     dict(pick, image_shape=image), "decoder")

    enc_nodes = [helper.make_node("Reshape", ["x", "flat_shape"], ["xf"]),
                 helper.make_node("MatMul", ["xf", "A"], ["xa"]), helper.make_node("Add", ["xa", "c"], ["mu"]),
                 helper.make_node("MatMul", ["xf", "A2"], ["xa2"]), helper.make_node("Add", ["xa2", "c2"], ["logvar"])]
    encoder = _model(enc_nodes, [_vi("x", shape)] + label_in, [_vi("mu", [d]), _vi("logvar", [d])],
                     {"A": weights["A"], "c": weights["c"], "A2": weights["A2"], "c2": weights["c2"],
                      "flat_shape": flat}, "encoder")
    if cond:  # the label must be consumed for the input to stay in the graph; add 0 * sum(y)
        encoder.graph.node.extend([
            helper.make_node("ReduceSum", ["y", "one_axis"], ["ysum"], keepdims=1),
            helper.make_node("Mul", ["ysum", "zero"], ["y0"]),
        ])
        for node in encoder.graph.node:
            if node.output[0] == "mu":
                node.output[0] = "mu_raw"
        encoder.graph.node.extend([helper.make_node("Add", ["mu_raw", "y0"], ["mu"])])
        from onnx import numpy_helper
        encoder.graph.initializer.extend([numpy_helper.from_array(np.array([1], np.int64), "one_axis"),
                                          numpy_helper.from_array(np.zeros(1, np.float32), "zero")])

    grad_nodes = _logits_nodes(cond) + [
        helper.make_node("Reshape", ["target", "flat_shape"], ["tf"]),
        helper.make_node("Reshape", ["mask", "flat_shape"], ["mf"]),
        helper.make_node("Softplus", ["logits"], ["sp"]),
        helper.make_node("Mul", ["tf", "logits"], ["tl"]),
        helper.make_node("Sub", ["sp", "tl"], ["bce"]),
        helper.make_node("Mul", ["bce", "mf"], ["mbce"]),
        helper.make_node("ReduceSum", ["mbce", "one_axis"], ["loss"], keepdims=0),
        helper.make_node("Sigmoid", ["logits"], ["s"]),
        helper.make_node("Sub", ["s", "tf"], ["r"]),
        helper.make_node("Mul", ["r", "mf"], ["mr"]),
        helper.make_node("MatMul", ["mr", "Wt"], ["grad"]),
    ]
    latent_grad = _model(grad_nodes, [_vi("z", [d]), _vi("target", shape), _vi("mask", shape)] + label_in,
                         [_vi("loss", []), _vi("grad", [d])],
                         dict(pick, flat_shape=flat, one_axis=np.array([1], np.int64),
                              Wt=np.ascontiguousarray(weights["W"].T)), "latent_grad")
    return {"decoder": decoder, "encoder": encoder, "latent_grad": latent_grad}


def _tensor(name, dims):
    return {"name": name, "dtype": "float32", "shape": ["batch"] + list(dims)}


def prior_entry(family, latent_dim, seed=0):
    rng = np.random.RandomState(seed + 100)
    if family == "gaussian":
        return {"family": "gaussian", "params": {"mean": [0.0] * latent_dim, "std": [1.0] * latent_dim}}
    if family == "fitted":  # what export records for an auto-decoder: a fitted diagonal gaussian
        return {"family": "gaussian", "params": {"mean": (rng.standard_normal(latent_dim) * 0.3).tolist(),
                                                 "std": (0.5 + rng.random_sample(latent_dim)).tolist()}}
    if family == "exponential":
        return {"family": "exponential", "params": {"rate": (1.0 + rng.random_sample(latent_dim)).tolist()}}
    if family == "uniform":
        return {"family": "uniform", "params": {"low": [-1.0] * latent_dim, "high": [1.5] * latent_dim}}
    raise ValueError(family)


def make_bundle(path, kind="vae", family="gaussian", latent_dim=4, n_labels=0, shape=(1, 8, 8),
                encoder=True, batch_min=1, batch_max=1024, seed=0, name="fixture"):
    """Write a bundle directory at ``path``; return (path, weights)."""
    import onnx
    if family == "gaussian" and kind == "ad":
        family = "fitted"
    weights = _weights(latent_dim, n_labels, shape, seed)
    graphs = build_graphs(latent_dim, n_labels, shape, weights)
    if not encoder:
        del graphs["encoder"]
    os.makedirs(path)
    d, k = latent_dim, n_labels
    label = [_tensor("y", [k])] if k else []
    io = {
        "decoder": ([_tensor("z", [d])] + label, [_tensor("x", shape)]),
        "encoder": ([_tensor("x", shape)] + label, [_tensor("mu", [d]), _tensor("logvar", [d])]),
        "latent_grad": ([_tensor("z", [d]), _tensor("target", shape), _tensor("mask", shape)] + label,
                        [_tensor("loss", []), _tensor("grad", [d])]),
    }
    entries = {}
    for gname, model in graphs.items():
        data = model.SerializeToString()
        fname = gname + ".onnx"
        with open(os.path.join(path, fname), "wb") as handle:
            handle.write(data)
        entries[gname] = {
            "file": fname, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "opset": OPSET,
            "precision": "fp32", "inputs": io[gname][0], "outputs": io[gname][1],
            "batch": {"min": batch_min, "opt": min(64, batch_max), "max": batch_max},
            "parity": {"max_abs": 0.0, "max_rel": 0.0, "against": "numpy"},
        }
    manifest = {
        "format": "jetgen-bundle", "format_version": 1, "name": name, "created": "2026-01-01T00:00:00Z",
        "model": {
            "kind": kind, "arch": "mlp", "latent_dim": d, "conditional": bool(k),
            "labels": [str(i) for i in range(k)], "output": {"shape": list(shape), "range": [0.0, 1.0]},
            "likelihood": {"name": "bernoulli", "sigma": None}, "prior": prior_entry(family, d, seed),
        },
        "graphs": entries,
        "target": {"name": "desktop"}, "precision": "fp32",
        "provenance": {"run": "tests", "checkpoint_sha256": "0" * 64, "data": "synthetic", "epochs": 0,
                       "metrics": {}},
        "versions": {"jetgen": "0.1.0", "onnx": onnx.__version__},
    }
    with open(os.path.join(path, "manifest.json"), "w") as handle:
        json.dump(manifest, handle, indent=2)
    return path, weights


def edit_manifest(path, change):
    """Apply ``change(manifest)`` to a bundle's manifest.json in place."""
    mpath = os.path.join(path, "manifest.json")
    with open(mpath) as handle:
        manifest = json.load(handle)
    change(manifest)
    with open(mpath, "w") as handle:
        json.dump(manifest, handle)
