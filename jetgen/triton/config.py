"""Triton model configurations (``config.pbtxt``) from a bundle's manifest.

Triton reads a model's configuration as protobuf text (``ModelConfig`` in Triton's model_config.proto).
:func:`pbtxt` renders a nested dict in that syntax; the builders below turn a manifest graph entry
into the config of one graph model, and the bundle's model section into the config of the Python
model that samples, interpolates and completes. Standard library only, Python 3.6 compatible.
"""
import json

from jetgen import spec
from jetgen.errors import JetgenError

# --backend -> how Triton names it and the file in the version directory
PLATFORMS = {
    "onnxruntime": {"platform": "onnxruntime_onnx", "file": "model.onnx"},
    "tensorrt": {"platform": "tensorrt_plan", "file": "model.plan"},
}
DTYPES = {"float32": "TYPE_FP32"}  # every interface tensor of a bundle is float32 (docs/bundle.md)
# Dynamic batching waits this long for more requests before running a batch: the graphs of a bundle
# run a batch of 64 in about the time of a few batch-1 calls, so a short wait groups concurrent
# clients without adding visible latency (Triton's own default is 0: no waiting).
QUEUE_DELAY_US = 100
MAX_INSTANCES = 64
VERSION = "1"  # the one version directory written; version_policy serves the latest
PYTHON_INPUTS = (  # the Python model's request tensors (all optional but op): name, Triton type, dims
    ("op", "TYPE_STRING", [1]),
    ("n", "TYPE_INT32", [1]),
    ("labels", "TYPE_INT32", [-1]),
    ("temperature", "TYPE_FP32", [1]),
    ("seed", "TYPE_INT64", [1]),
    ("steps", "TYPE_INT32", [1]),
    ("za", "TYPE_FP32", [-1]),    # interpolate: end points as latents (D,) ...
    ("zb", "TYPE_FP32", [-1]),
    ("a", "TYPE_FP32", None),     # ... or as one input each (1, C, H, W) / one cloud (1, P, 3)
    ("b", "TYPE_FP32", None),
    ("x", "TYPE_FP32", None),     # complete: inputs (B, C, H, W) or clouds (B, P, 3)
    ("mask", "TYPE_FP32", None),  # complete (images): 1 = observed
)
OPERATIONS = ("sample", "interpolate", "complete")
MODES = ("local", "bls")  # the Python model runs the graphs itself (onnxruntime) or asks the graph models


class Text(str):
    """A protobuf enum value or identifier, written without quotes (``kind: KIND_CPU``)."""


def _scalar(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Text):
        return str(value)
    if isinstance(value, (int, float)):
        return repr(value)
    return '"{}"'.format(str(value).replace("\\", "\\\\").replace('"', '\\"'))


def pbtxt(config, indent=0):
    """``config`` (dict of str -> scalar, list, dict or list of dicts) as protobuf text, keys in order."""
    pad = "  " * indent
    lines = []
    for key, value in config.items():
        if isinstance(value, dict):
            lines.append("{}{} {{".format(pad, key))
            lines.append(pbtxt(value, indent + 1))
            lines.append("{}}}".format(pad))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines.append("{}{} [".format(pad, key))
            blocks = ["{}  {{\n{}\n{}  }}".format(pad, pbtxt(v, indent + 2), pad) for v in value]
            lines.append(",\n".join(blocks))
            lines.append("{}]".format(pad))
        elif isinstance(value, list):
            lines.append("{}{}: [ {} ]".format(pad, key, ", ".join(_scalar(v) for v in value)))
        else:
            lines.append("{}{}: {}".format(pad, key, _scalar(value)))
    return "\n".join(line for line in lines if line)


def _tensor(entry):
    """One interface tensor of a batched model: dims after the batch axis; a per-example scalar
    (latent_grad's loss, shape (B,)) is dims [1] reshaped to [] as Triton asks."""
    dtype = DTYPES.get(entry["dtype"])
    if dtype is None:
        raise JetgenError("The manifest's tensor {!r} is {}, which jetgen triton does not map to a Triton type; "
                          "re-export the bundle (its interfaces are float32).".format(entry["name"], entry["dtype"]))
    dims = [d for d in entry["shape"][1:]]
    if not all(spec.is_int(d) and d > 0 for d in dims):
        raise JetgenError("The manifest's tensor {!r} has shape {}; Triton needs fixed sizes after the batch axis."
                          .format(entry["name"], entry["shape"]))
    out = {"name": entry["name"], "data_type": Text(dtype), "dims": dims or [1]}
    if not dims:
        out["reshape"] = {"shape": []}
    return out


def graph_batch(graph, entry, max_batch):
    """(max_batch_size, preferred batch) for a graph: the manifest's batch.max, capped by ``max_batch``
    when given. JetgenError when the graph cannot take a batch of 1 (Triton may send any size) or
    neither the bundle nor the option bounds it."""
    batch = entry["batch"]
    if batch["min"] > 1:
        raise JetgenError("The {} graph's batch range starts at {}, but Triton sends batches from 1; re-export the "
                          "bundle with a minimum batch of 1.".format(graph, batch["min"]))
    top = batch["max"]
    if top is None and max_batch is None:
        raise JetgenError("The {} graph declares no largest batch; give --max-batch.".format(graph))
    size = min(top, max_batch) if top is not None and max_batch is not None else (top or max_batch)
    return size, min(batch["opt"], size)


def graph_config(model_name, graph, entry, backend, max_batch=None, instances=1, kind="KIND_AUTO"):
    """The config dict of one graph model: platform, tensors, batching, instances, version policy."""
    size, preferred = graph_batch(graph, entry, max_batch)
    return {
        "name": model_name,
        "platform": PLATFORMS[backend]["platform"],
        "max_batch_size": size,
        "input": [_tensor(t) for t in entry["inputs"]],
        "output": [_tensor(t) for t in entry["outputs"]],
        "dynamic_batching": {"preferred_batch_size": [preferred], "max_queue_delay_microseconds": QUEUE_DELAY_US},
        "instance_group": [{"count": instances, "kind": Text(kind)}],
        "version_policy": {"latest": {"num_versions": 1}},
    }


def python_config(model_name, manifest, graph_models, mode, instances=1):
    """The config dict of the Python model: optional request tensors (``op`` required), outputs x, z and
    loss; ``graph_models`` maps graph -> (Triton model name, its max_batch_size), used in BLS mode;
    ``mode`` local or bls."""
    model = manifest["model"]
    out_shape = list(model["output"]["shape"])
    inputs = []
    for name, dtype, dims in PYTHON_INPUTS:
        entry = {"name": name, "data_type": Text(dtype), "dims": dims if dims is not None else [-1] * (len(out_shape) + 1)}
        if name != "op":
            entry["optional"] = True
        inputs.append(entry)
    params = {"mode": mode, "threads": "1",
              "graph_models": json.dumps(dict((g, list(v)) for g, v in graph_models.items()), sort_keys=True)}
    return {
        "name": model_name,
        "backend": "python",
        "max_batch_size": 0,
        "input": inputs,
        "output": [
            {"name": "x", "data_type": Text("TYPE_FP32"), "dims": [-1] + out_shape},
            {"name": "z", "data_type": Text("TYPE_FP32"), "dims": [-1, model["latent_dim"]]},
            {"name": "loss", "data_type": Text("TYPE_FP32"), "dims": [-1]},
        ],
        "instance_group": [{"count": instances, "kind": Text("KIND_CPU")}],
        "version_policy": {"latest": {"num_versions": 1}},
        "parameters": [{"key": k, "value": {"string_value": v}} for k, v in sorted(params.items())],
    }
