"""The Python-backend model of a jetgen Triton repository: ``REPO/NAME/1/model.py`` is this file.

It offers what ``jetgen.runtime.Model`` offers, one request at a time (``op`` names it):

    op "sample"       n, labels (n or 1), temperature, seed          -> x (n, ...), z (n, D)
    op "interpolate"  za, zb (latents) or a, b (one input each), steps, labels, seed -> x, z
    op "complete"     x (B, C, H, W) with mask, labels, seed, steps; or x (B, P, 3) clouds -> x, z, loss

by running the very runtime a board runs, ``jetgen.runtime`` (copied into ``1/jetgen``), on the bundle
copied into ``1/bundle``. The config's ``mode`` parameter says where the graphs run: ``local`` opens
them with ONNX Runtime inside this process; ``bls`` sends each graph call to the repository's graph
models through Triton's business-logic scripting (so TensorRT plans and dynamic batching serve it).
A JetgenError (a bad request) becomes the response's error; the server stays up.

Loaded only by Triton's Python backend stub (``triton_python_backend_utils`` exists there), never by
jetgen itself. numpy only; Python 3.6 compatible (Triton's Jetson releases use the system Python).
"""
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:  # the jetgen runtime copied beside this file
    sys.path.insert(0, HERE)

import triton_python_backend_utils as pb_utils  # noqa: E402  (the stub provides it)

from jetgen.errors import JetgenError  # noqa: E402
from jetgen.runtime.bundle import Bundle  # noqa: E402
from jetgen.runtime.feeds import run_in_chunks  # noqa: E402
from jetgen.runtime.model import Model  # noqa: E402
from jetgen.runtime.points import PointModel  # noqa: E402


class BlsSession(object):
    """A backend session (jetgen.runtime.backends) whose ``run`` is a BLS request to a graph model."""

    def __init__(self, model_name, entry, max_batch):
        self.model_name = model_name
        self.input_names = [t["name"] for t in entry["inputs"]]
        self.output_names = [t["name"] for t in entry["outputs"]]
        self.providers = ["triton:" + model_name]
        self.max_batch = max_batch

    def _one(self, feeds):
        request = pb_utils.InferenceRequest(
            model_name=self.model_name, requested_output_names=self.output_names,
            inputs=[pb_utils.Tensor(name, np.ascontiguousarray(feeds[name], dtype=np.float32))
                    for name in self.input_names])
        response = request.exec()
        if response.has_error():
            raise JetgenError("The graph model {} refused the call: {}".format(self.model_name,
                                                                              response.error().message()))
        out = {}
        for name in self.output_names:
            value = pb_utils.get_output_tensor_by_name(response, name).as_numpy()
            out[name] = value.reshape(len(feeds[self.input_names[0]]), *value.shape[1:])
        return out

    def run(self, feeds, validate=True):
        return run_in_chunks(self._one, feeds, 1, self.max_batch)

    def close(self):
        pass


class _Bls(object):
    """Mixin: the graphs of a Model run through ``BlsSession``s (``graph_models``: graph -> (name, max batch))."""

    graph_models = {}

    def session(self, graph):
        if graph not in self._sessions:
            name, max_batch = self.graph_models[graph]
            self._sessions[graph] = BlsSession(name, self.bundle.graph(graph), max_batch)
        return self._sessions[graph]


class BlsModel(_Bls, Model):
    pass


class BlsPointModel(_Bls, PointModel):
    pass


def _optional(request, name, kind=None):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return None
    value = tensor.as_numpy()
    if kind is None:
        return value
    if value.size != 1:
        raise JetgenError("The input {!r} must hold one value, not {}.".format(name, value.size))
    return kind(value.reshape(-1)[0])


def _op(request):
    value = _optional(request, "op")
    if value is None or value.size != 1:
        raise JetgenError("Give the input 'op' (one string: {}).".format(", ".join(("sample", "interpolate",
                                                                                     "complete"))))
    op = value.reshape(-1)[0]
    return op.decode("utf-8", "replace") if isinstance(op, bytes) else str(op)


def _labels(request):
    labels = _optional(request, "labels")
    if labels is None:
        return None
    labels = [int(v) for v in labels.reshape(-1)]
    return labels[0] if len(labels) == 1 else labels


class TritonPythonModel(object):
    """Triton's entry points: initialize (open the bundle), execute (one response per request)."""

    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = dict((k, v["string_value"]) for k, v in config.get("parameters", {}).items())
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        bundle = Bundle.open(os.path.join(version_dir, "bundle"), verify=True)
        self.mode = params.get("mode", "local")
        points = bundle.model["modality"] == "points"  # (Triton has its own BLS point model class)
        if self.mode == "bls":
            cls = BlsPointModel if points else BlsModel
            graphs = json.loads(params.get("graph_models", "{}"))
            self.model = cls(bundle, "ort", None, None, {})
            self.model.graph_models = dict((g, (v[0], int(v[1]))) for g, v in graphs.items())
        else:
            self.model = Model.open(bundle, backend="ort", intra_op_threads=int(params.get("threads", "1")))
        self.points = points

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                out = self._answer(request)
                tensors = [pb_utils.Tensor(k, np.ascontiguousarray(v, dtype=np.float32)) for k, v in out.items()]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            except JetgenError as err:
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(err))))
        return responses

    def _answer(self, request):
        m, op = self.model, _op(request)
        seed = _optional(request, "seed", int)
        labels = _labels(request)
        steps = _optional(request, "steps", int)
        if op == "sample":
            n = _optional(request, "n", int) or 1
            temperature = _optional(request, "temperature", float)
            x, z = m.sample(n, labels=labels, temperature=1.0 if temperature is None else temperature, seed=seed,
                            return_latents=True)
            return {"x": x, "z": z}
        if op == "interpolate":
            a = _optional(request, "za") if _optional(request, "a") is None else _optional(request, "a")[0]
            b = _optional(request, "zb") if _optional(request, "b") is None else _optional(request, "b")[0]
            if a is None or b is None:
                raise JetgenError("interpolate needs two end points: za and zb (latents) or a and b (inputs).")
            x, z = m.interpolate(a, b, steps=steps or 10, labels=labels, seed=0 if seed is None else seed)
            return {"x": x, "z": z}
        if op == "complete":
            x = _optional(request, "x")
            if x is None:
                raise JetgenError("complete needs the input x (and, for images, mask).")
            options = {"seed": seed}
            if steps is not None:
                options["steps"] = steps
            if self.points:
                r = m.complete(x, **options)
            else:
                mask = _optional(request, "mask")
                if mask is None:
                    raise JetgenError("complete needs a mask for images (1 = observed, 0 = to fill in).")
                r = m.complete(x, mask, labels=labels, **options)
            return {"x": r.x, "z": r.z, "loss": r.loss}
        raise JetgenError("Unknown op {!r}; give sample, interpolate or complete.".format(op))

    def finalize(self):
        self.model.close()
