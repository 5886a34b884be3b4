"""The on-device runtime: numpy plus one backend (ONNX Runtime or TensorRT), Python 3.6+, no torch.

    from jetgen.runtime import Model
    m = Model.open("digits.jetgen")
    x = m.sample(16, labels=[3])

Importing this package loads numpy and the runtime's own modules only; onnxruntime (or
tensorrt) is imported when the first graph session opens.
"""
from jetgen.errors import JetgenError  # noqa: F401  (the one documented error type)
from jetgen.runtime.model import Completion, Model  # noqa: F401

__all__ = ["Model", "Completion", "JetgenError"]
