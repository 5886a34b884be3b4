"""A STAND-IN for Triton's ONNX Runtime backend, for tests only.

The registry's nvidia-pytriton wheel ships tritonserver with the Python backend alone, so a model with
``platform: "onnxruntime_onnx"`` is refused there ("unable to find backend library for backend
'onnxruntime'"). Triton loads a directory ``backends/onnxruntime/`` holding a ``model.py`` as a
Python-based backend of that name; this one runs the version directory's ``model.onnx`` with
onnxruntime, so the test serves the unchanged repository a Jetson or GPU server would serve with the
real backend. It is not the real backend (no CUDA/TensorRT execution providers, no Triton-side
optimisation): it only lets the suite check the configs, names, shapes, batching and numbers.

Requests that dynamic batching groups into one call are concatenated along the batch axis, run
once, and split again.
"""
import json
import os

import numpy as np
import onnxruntime
import triton_python_backend_utils as pb_utils


class TritonPythonModel(object):
    def initialize(self, args):
        config = json.loads(args["model_config"])
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.inputs = [t["name"] for t in config["input"]]
        self.outputs = [t["name"] for t in config["output"]]

    def execute(self, requests):
        arrays = [dict((n, pb_utils.get_input_tensor_by_name(r, n).as_numpy()) for n in self.inputs) for r in requests]
        sizes = [len(a[self.inputs[0]]) for a in arrays]
        feeds = dict((n, np.concatenate([a[n] for a in arrays])) for n in self.inputs)
        try:
            out = dict(zip(self.outputs, self.session.run(self.outputs, feeds)))
        except Exception as err:  # onnxruntime's own message, sent to the client as Triton's error
            return [pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(err)))
                    for _ in requests]
        responses, start = [], 0
        for size in sizes:
            responses.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor(n, np.ascontiguousarray(out[n][start:start + size])) for n in self.outputs]))
            start += size
        return responses
