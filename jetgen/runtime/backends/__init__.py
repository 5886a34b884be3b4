"""Backends behind one small interface, chosen from one table.

A *session* runs one ONNX graph of a bundle:

    session = open_session(name, onnx_path, graph, bundle_dir, precision="fp32", device=None, **options)
    session.input_names   -> list of str (the manifest's order)
    session.output_names  -> list of str
    session.run(feeds, validate=True) -> dict name -> np.ndarray (float32), feeds: dict name -> np.ndarray
                          (float32, C-contiguous), batch within the graph's range (``Model.run`` chunks
                          larger ones); validate=False: the caller has checked names, shapes and batch
    session.providers     -> list of str, what actually runs it (e.g. ["CPUExecutionProvider"], ["tensorrt"])
    session.close()

``graph`` is the manifest entry of that graph (see docs/bundle.md): names, shapes, batch range.
Heavy modules (onnxruntime, tensorrt, pycuda) are imported only inside the backend that needs them.
Every failure a user can cause raises ``jetgen.errors.JetgenError``. Python 3.6 compatible.

Adding a backend is one row here plus its module.
"""
import importlib

from jetgen.errors import JetgenError

# name -> what it is, "module:session class", the precision a Model asks of it when none is given
# (None: the bundle's own), its per-session option for CPU threads (None: it has none), the devices it
# takes (for --device's help; None: it picks its own)
BACKENDS = {
    "ort": {"title": "ONNX Runtime", "session": "jetgen.runtime.backends.ort:OrtSession",
            "default_precision": None, "threads_option": "intra_op_threads",
            "probe": "jetgen.runtime.backends.ort:probe",
            "devices": "cpu, cuda, cuda:N or tensorrt (default: best of cuda, cpu)"},
    "trt": {"title": "TensorRT", "session": "jetgen.runtime.backends.trt.session:TrtSession",
            "default_precision": "auto", "threads_option": None, "probe": None,
            "devices": "cuda or cuda:N (default: the first GPU)"},
}
DEFAULT = "ort"


def names():
    """The backend names, default first."""
    return [DEFAULT] + sorted(n for n in BACKENDS if n != DEFAULT)


def get(name):
    """The table row of backend ``name``; JetgenError naming the known ones otherwise."""
    try:
        return BACKENDS[name]
    except (KeyError, TypeError):
        raise JetgenError("Unknown backend {!r}; choose one of: {}.".format(name, ", ".join(names())))


def _load(ref):
    module, attr = ref.split(":")
    return getattr(importlib.import_module(module), attr)


def session_options(name, threads=None):
    """Backend options for a CPU thread count (dropped for backends without one)."""
    option = get(name)["threads_option"]
    return {option: int(threads)} if threads and option else {}


def open_session(name, onnx_path, graph, bundle_dir, precision="fp32", device=None, **options):
    """Open a session of backend ``name`` for one graph; JetgenError for an unknown backend."""
    return _load(get(name)["session"])(onnx_path, graph, bundle_dir, precision=precision, device=device, **options)


def probe(onnx_path):
    """None when some installed backend can load ``onnx_path``'s graph, else the sentence why not;
    'not loaded: ...' when no backend with a cheap load check is installed here."""
    for name in names():
        ref = BACKENDS[name]["probe"]
        if ref:
            return _load(ref)(onnx_path)
    return None
