"""Backends behind one small interface.

A *session* runs one ONNX graph of a bundle:

    session = open_session(kind, onnx_path, graph, bundle_dir, precision="fp32", device=None, **options)
    session.input_names   -> list of str (the manifest's order)
    session.output_names  -> list of str
    session.run(feeds, validate=True) -> dict name -> np.ndarray (float32), feeds: dict name -> np.ndarray
                          (float32, C-contiguous); validate=False: the caller has checked names, shapes, batch
    session.providers     -> list of str, what actually runs it (e.g. ["CPUExecutionProvider"], ["tensorrt"])
    session.close()

``graph`` is the manifest entry of that graph (see docs/bundle.md): names, shapes, batch range.
``kind`` is "ort" or "trt". Heavy modules (onnxruntime, tensorrt, pycuda) are imported only inside
the backend that needs them. Every failure a user can cause raises ``jetgen.errors.JetgenError``.
Python 3.6 compatible.
"""
from jetgen.errors import JetgenError

BACKENDS = ("ort", "trt")


def open_session(kind, onnx_path, graph, bundle_dir, precision="fp32", device=None, **options):
    """Open a session of backend ``kind`` for one graph; JetgenError for an unknown backend."""
    if kind == "ort":
        from jetgen.runtime.backends.ort import OrtSession
        return OrtSession(onnx_path, graph, bundle_dir, precision=precision, device=device, **options)
    if kind == "trt":
        from jetgen.runtime.backends.trt import TrtSession
        return TrtSession(onnx_path, graph, bundle_dir, precision=precision, device=device, **options)
    raise JetgenError("Unknown backend {!r}; choose one of: {}.".format(kind, ", ".join(BACKENDS)))
