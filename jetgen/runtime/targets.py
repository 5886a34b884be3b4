"""The deployment targets as data: one row per board, read by export, check, build and bench.

Facts come from docs/platform.md (Jetson software matrix). A wrong value is fixed here and nowhere
else. Python 3.6 compatible, no imports beyond the standard library.
"""
from jetgen.errors import JetgenError

# name: JetPack the row assumes, its Python, CUDA and TensorRT, the ONNX opset range the TensorRT
# ONNX parser of that version accepts, the GPU's compute capability, what precisions the hardware
# runs fast, and the memory the CPU and GPU share (GB, the smallest common module).
TARGETS = {
    "nano": {
        "board": "Jetson Nano", "jetpack": "4.6.1", "l4t": "32.7.1", "python": "3.6",
        "cuda": "10.2", "tensorrt": "8.2.1", "opset_min": 7, "opset_max": 13,
        "sm": "5.3", "fp16": True, "int8": False, "dla": False, "memory_gb": 4.0,
        "workspace_mb": 256,
    },
    "tx2": {
        "board": "Jetson TX2", "jetpack": "4.6.1", "l4t": "32.7.1", "python": "3.6",
        "cuda": "10.2", "tensorrt": "8.2.1", "opset_min": 7, "opset_max": 13,
        "sm": "6.2", "fp16": True, "int8": False, "dla": False, "memory_gb": 8.0,
        "workspace_mb": 512,
    },
    "xavier": {
        "board": "Jetson Xavier NX/AGX", "jetpack": "5.1.2", "l4t": "35.4.1", "python": "3.8",
        "cuda": "11.4", "tensorrt": "8.5.2", "opset_min": 7, "opset_max": 17,
        "sm": "7.2", "fp16": True, "int8": True, "dla": True, "memory_gb": 8.0,
        "workspace_mb": 1024,
    },
    "orin": {
        "board": "Jetson Orin", "jetpack": "6.1", "l4t": "36.4.0", "python": "3.10",
        "cuda": "12.6", "tensorrt": "10.3", "opset_min": 9, "opset_max": 20,
        "sm": "8.7", "fp16": True, "int8": True, "dla": True, "memory_gb": 8.0,
        "workspace_mb": 2048,
    },
    "desktop": {
        "board": "desktop GPU or CPU", "jetpack": None, "l4t": None, "python": "3.8",
        "cuda": "12.x", "tensorrt": "10.3", "opset_min": 9, "opset_max": 20,
        "sm": None, "fp16": True, "int8": True, "dla": False, "memory_gb": 16.0,
        "workspace_mb": 4096,
    },
}


def get_target(name):
    """Return the row for target ``name``; raise JetgenError naming the known targets otherwise."""
    try:
        row = dict(TARGETS[name])
    except (KeyError, TypeError):
        raise JetgenError("Unknown target {!r}; choose one of: {}.".format(
            name, ", ".join(sorted(TARGETS))))
    row["name"] = name
    return row


def trt_major_minor(version):
    """'8.2.1' -> (8, 2). Raises JetgenError on a malformed version string."""
    try:
        parts = str(version).split(".")
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        raise JetgenError("Cannot read TensorRT version {!r}.".format(version))
