"""What runtime a graph file needs, read from the file itself, so the runtime can refuse early.

ONNX Runtime and TensorRT refuse a graph whose opset or IR version is newer than they know, with
messages such as "Opset 20 is under development"; this module reads the two numbers from the ONNX
file's header (the protobuf's top-level ``ir_version`` and ``opset_import`` fields, skipping the
graph without parsing it) and compares them with jetgen.spec's tables before any session is made.
Standard library only (no onnx package on the device), Python 3.6 compatible.
"""
from jetgen import spec
from jetgen.errors import JetgenError

_DEFAULT_DOMAINS = ("", "ai.onnx")
_MAX_FIELD_BYTES = 1 << 16  # an opset_import entry is a few bytes; anything larger is not one


def _varint(handle):
    """Read one base-128 varint from ``handle``; None at the end of the file."""
    shift, value = 0, 0
    while True:
        byte = handle.read(1)
        if not byte:
            if shift:
                raise ValueError("truncated varint")
            return None
        value |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return value
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _varint_bytes(data, pos):
    shift, value = 0, 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        value |= (data[pos] & 0x7F) << shift
        pos += 1
        if not data[pos - 1] & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _opset_entry(data):
    """(domain, version) of one serialized OperatorSetIdProto (domain = field 1, version = field 2)."""
    pos, domain, version = 0, "", None
    while pos < len(data):
        key, pos = _varint_bytes(data, pos)
        field, kind = key >> 3, key & 7
        if kind == 0:
            value, pos = _varint_bytes(data, pos)
            if field == 2:
                version = value
        elif kind == 2:
            size, pos = _varint_bytes(data, pos)
            if field == 1:
                domain = data[pos:pos + size].decode("utf-8", "replace")
            pos += size
        elif kind in (1, 5):
            pos += 8 if kind == 1 else 4
        else:
            raise ValueError("unexpected wire type")
    return domain, version


def read_header(path):
    """{"ir_version": int or None, "opset": int or None (ai.onnx)} of the ONNX file at ``path``.

    Raises JetgenError when the file cannot be read or is not a protobuf ModelProto."""
    ir_version, opset = None, None
    try:
        with open(path, "rb") as handle:
            while True:
                key = _varint(handle)
                if key is None:
                    break
                field, kind = key >> 3, key & 7
                if kind == 0:
                    value = _varint(handle)
                    if field == 1:
                        ir_version = value
                elif kind == 2:
                    size = _varint(handle)
                    if size is None:
                        raise ValueError("truncated field")
                    if field == 8 and size <= _MAX_FIELD_BYTES:
                        domain, version = _opset_entry(handle.read(size))
                        if domain in _DEFAULT_DOMAINS:
                            opset = version
                    else:
                        handle.seek(size, 1)
                elif kind in (1, 5):
                    handle.seek(8 if kind == 1 else 4, 1)
                else:
                    raise ValueError("unexpected wire type {}".format(kind))
    except (OSError, IOError, ValueError) as err:
        raise JetgenError("Cannot read the ONNX header of {}: {}; copy the bundle again.".format(path, err))
    return {"ir_version": ir_version, "opset": opset}


def graph_requirements(path, entry=None):
    """What the graph file at ``path`` needs: its opset and IR version, and the oldest ONNX Runtime and
    TensorRT that load it (jetgen.spec.runtime_requirements). A manifest ``entry`` whose ``requires``
    asks for newer releases raises the floor (a writer may know more than the tables)."""
    header = read_header(path)
    opset = header["opset"] if header["opset"] is not None else (entry or {}).get("opset")
    needs = spec.runtime_requirements(opset or 1, header["ir_version"])
    declared = (entry or {}).get("requires") or {}
    for key in ("onnxruntime", "tensorrt"):
        mine, theirs = needs[key], declared.get(key)
        if theirs and (mine is None or spec.version_tuple(theirs) > spec.version_tuple(mine)):
            needs[key] = str(theirs)
    needs.update(opset=opset, ir_version=header["ir_version"])
    return needs


def why(needs):
    """'opset 20, IR version 9' for messages."""
    return "opset {}, IR version {}".format(needs.get("opset"), needs.get("ir_version"))


def check_onnxruntime(version, path, graph, entry=None):
    """JetgenError, naming the version found and the one needed, when ONNX Runtime ``version`` is too
    old for the graph at ``path``; raised before ONNX Runtime's own, less helpful, error."""
    needs = graph_requirements(path, entry)
    spec.check_runtime_version("ONNX Runtime", version, needs["onnxruntime"], graph, why(needs),
                               newest=spec.ONNXRUNTIME_SUPPORT[-1][0])
    return needs


def check_tensorrt(version, path, graph, entry=None):
    """The same for TensorRT ``version`` (its ONNX parser's opset range)."""
    needs = graph_requirements(path, entry)
    spec.check_runtime_version("TensorRT", version, needs["tensorrt"], graph, why(needs),
                               newest=spec.TENSORRT_SUPPORT[-1][0])
    opset = needs.get("opset")
    have = spec.version_tuple(version)
    if opset is not None and opset < spec.TENSORRT_MIN_OPSET_FROM_10 and have is not None and have >= (10,):
        raise JetgenError("The {} graph ({}) is older than TensorRT {} parses (opset {} and later); re-export it "
                          "(jetgen export RUN --target ...).".format(graph, why(needs), version,
                                                                     spec.TENSORRT_MIN_OPSET_FROM_10))
    return needs
