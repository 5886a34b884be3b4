"""The on-device runtime: numpy plus one backend (ONNX Runtime or TensorRT), Python 3.6+, no torch.

    from jetgen.runtime import Model
    m = Model.open("digits.jetgen")
    x = m.sample(16, labels=[3])
"""
from jetgen.errors import JetgenError  # noqa: F401  (the one documented error type)
