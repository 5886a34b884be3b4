"""Which TensorRT Python calls to use, by TensorRT version: one table, small functions.

TensorRT's Python API changed twice in the versions JetPack ships (see docs/platform.md):
8.0/8.2 address inputs and outputs by *binding index* (``num_bindings``, ``binding_is_input``,
``set_binding_shape``, ``execute_async_v2``) and cap the workspace with ``config.max_workspace_size``;
8.5 added the *named tensor* API (``num_io_tensors``, ``get_tensor_mode``, ``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``) and ``set_memory_pool_limit``; 10.0 removed the binding
API and ``max_workspace_size``; from 10.14 jetgen builds strongly typed networks, where precision
comes from the ONNX graph instead of builder flags (weak typing is deprecated since 10.12 and gone in
11). The rest of the TensorRT code reads the dict returned by :func:`api_for` and never compares
versions itself. Python 3.6 compatible; tensorrt is imported only inside :func:`import_tensorrt`.
"""
import re

from jetgen.errors import JetgenError

# One row per API generation: the first version it applies to, then what to call.
#   io:              "bindings" (index-based, execute_async_v2) or "tensors" (name-based, execute_async_v3)
#   workspace:       "max_workspace_size" (attribute) or "memory_pool" (set_memory_pool_limit(WORKSPACE, n))
#   explicit_batch:  pass 1 << EXPLICIT_BATCH to create_network (needed on 8.x, deprecated and ignored on 10)
#   typing:          "flags" (BuilderFlag.FP16/INT8 pick precision) or "strong" (the ONNX's dtypes do)
#   calibrator:      an INT8 calibration cache can be used (IInt8EntropyCalibrator2; jetgen allows it < 10)
GENERATIONS = (
    ((8, 0), {"io": "bindings", "workspace": "max_workspace_size", "explicit_batch": True,
              "typing": "flags", "calibrator": True}),
    # 8.4 added set_memory_pool_limit and deprecated max_workspace_size; the tensor API came in 8.5.
    ((8, 4), {"io": "bindings", "workspace": "memory_pool", "explicit_batch": True,
              "typing": "flags", "calibrator": True}),
    ((8, 5), {"io": "tensors", "workspace": "memory_pool", "explicit_batch": True,
              "typing": "flags", "calibrator": True}),
    ((10, 0), {"io": "tensors", "workspace": "memory_pool", "explicit_batch": False,
               "typing": "flags", "calibrator": False}),
    ((10, 14), {"io": "tensors", "workspace": "memory_pool", "explicit_batch": False,
                "typing": "strong", "calibrator": False}),
)
OLDEST = (8, 0)

_VERSION = re.compile(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(text):
    """'8.2.1.8' -> (8, 2, 1); '10.3' -> (10, 3, 0); '10.3.0.26+cuda12' -> (10, 3, 0).

    Raises JetgenError when ``text`` does not start with MAJOR.MINOR.
    """
    match = _VERSION.match(str(text))
    if not match:
        raise JetgenError("Cannot read the TensorRT version {!r}; expected something like 8.2.1.".format(text))
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def format_version(version):
    """(8, 2, 1) -> '8.2.1'; a string is parsed first."""
    if not isinstance(version, tuple):
        version = parse_version(version)
    return ".".join(str(part) for part in version)


def api_for(version):
    """The API generation row for a TensorRT version (string or tuple), plus 'version' (a string).

    Raises JetgenError for versions older than 8.0, which jetgen does not support.
    """
    if not isinstance(version, tuple):
        version = parse_version(version)
    if tuple(version[:2]) < OLDEST:
        raise JetgenError("TensorRT {} is too old for jetgen; it needs 8.0 or newer (JetPack 4.6 or newer).".format(
            format_version(version)))
    row = None
    for first, facts in GENERATIONS:
        if tuple(version[:2]) >= first:
            row = facts
    api = dict(row)
    api["version"] = format_version(version)
    return api


def import_tensorrt():
    """Import and return the ``tensorrt`` module, or raise JetgenError saying how to get it.

    A stub-only install (the ``tensorrt-stubs`` package leaves a ``tensorrt`` directory holding only
    ``.pyi`` files, which imports as an empty namespace package) counts as not installed.
    """
    try:
        import tensorrt
    except ImportError:
        tensorrt = None
    if tensorrt is None or not hasattr(tensorrt, "Builder") or not hasattr(tensorrt, "__version__"):
        raise JetgenError(
            "TensorRT's Python module is not installed here. On a Jetson it comes with JetPack "
            "(sudo apt-get install python3-libnvinfer), never from pip; see jetson/README.md. "
            "Without it, use the ONNX Runtime backend (--backend ort).")
    return tensorrt
