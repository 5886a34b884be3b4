"""Choose the precision a TensorRT engine is built at, and say why.

    caps = capabilities("5.3")                      # {'fp16': True, 'int8': False, 'source': ...}
    precision, reason = choose_precision("auto", caps, graph_precision="fp32")

Requests: fp32, fp16, int8 or auto. An explicit request the hardware cannot honour is refused with a
JetgenError (never silently downgraded); ``auto`` takes the fastest precision that is safe:
int8 only for a graph the exporter quantized (QDQ), else fp16 where the GPU has fast FP16, else fp32.
INT8 needs an explicitly quantized (QDQ) ONNX from ``jetgen export --precision int8`` or, on
TensorRT < 10 only, a calibration cache. Under strong typing (TensorRT >= 10.14) precision is the
graph's own: the request must match what was exported. Python 3.6 compatible, no imports of
tensorrt here.
"""
from jetgen.errors import JetgenError
from jetgen.runtime.targets import TARGETS

PRECISIONS = ("fp32", "fp16", "int8")
REQUESTS = PRECISIONS + ("auto",)


def _sm_tuple(sm):
    try:
        major, minor = str(sm).split(".")
        return int(major), int(minor)
    except (ValueError, AttributeError):
        return None


def capabilities(sm, builder=None):
    """What the GPU of compute capability ``sm`` ('5.3') runs fast: {'fp16', 'int8', 'source'}.

    A Jetson SM is answered from jetgen.runtime.targets (the Nano and TX2 have no INT8). Otherwise
    the TensorRT builder's ``platform_has_fast_fp16/int8`` are asked (removed in TensorRT 11), and
    failing that a compute-capability rule: FP16 on sm 5.3, 6.0, 6.2 and 7.0+, INT8 on 6.1 and 7.0+.
    """
    for name in sorted(TARGETS):
        row = TARGETS[name]
        if row["sm"] is not None and sm is not None and str(row["sm"]) == str(sm):
            return {"fp16": bool(row["fp16"]), "int8": bool(row["int8"]),
                    "source": "the {} row of the target table (sm_{})".format(row["board"], str(sm).replace(".", ""))}
    if builder is not None and hasattr(builder, "platform_has_fast_fp16") and hasattr(builder, "platform_has_fast_int8"):
        return {"fp16": bool(builder.platform_has_fast_fp16), "int8": bool(builder.platform_has_fast_int8),
                "source": "the TensorRT builder"}
    cc = _sm_tuple(sm)
    if cc is None:
        return {"fp16": False, "int8": False, "source": "unknown GPU (no compute capability)"}
    fp16 = cc in ((5, 3), (6, 0), (6, 2)) or cc >= (7, 0)
    int8 = cc == (6, 1) or cc >= (7, 0)
    return {"fp16": fp16, "int8": int8, "source": "compute capability {}".format(sm)}


def graph_is_quantized(graph=None, onnx_bytes=None):
    """True when a graph holds explicit quantization (QuantizeLinear/DequantizeLinear nodes).

    Uses the manifest entry's ``precision`` ('int8' means the exporter wrote QDQ) and, when the ONNX
    bytes are given, looks for the operator name in them (op types are stored as plain strings, so
    this needs no onnx package on the device).
    """
    if graph is not None and graph.get("precision") == "int8":
        return True
    return onnx_bytes is not None and b"DequantizeLinear" in onnx_bytes


def choose_precision(requested, caps, graph_precision="fp32", quantized=False, calibration_cache=False,
                     typing="flags", board=None):
    """Return (precision, reason) for building an engine; JetgenError when the request cannot be met.

    ``caps`` comes from :func:`capabilities`; ``graph_precision`` is the manifest's precision of the
    graph (fp32, fp16 or int8); ``quantized`` says the ONNX holds QDQ nodes; ``calibration_cache``
    says a usable INT8 calibration cache exists (only on TensorRT < 10); ``typing`` is 'flags' or
    'strong' (from jetgen.runtime.backends.trt.api.api_for); ``board`` names the device in messages.
    """
    board = board or "this GPU"
    if requested not in REQUESTS:
        raise JetgenError("Unknown precision {!r}; choose one of: {}.".format(requested, ", ".join(REQUESTS)))
    if quantized and not caps["int8"]:
        raise JetgenError(
            "This graph is INT8-quantized (QDQ) but {} has no INT8 support ({}); export the bundle "
            "again with --precision fp16 or fp32 for this board.".format(board, caps["source"]))

    if typing == "strong":
        # Strongly typed networks take every dtype from the graph; builder flags do nothing.
        have = "int8" if quantized else graph_precision
        if requested not in ("auto", have):
            raise JetgenError(
                "This TensorRT builds strongly typed engines, whose precision is the graph's own ({}); "
                "export the bundle again with --precision {} to get a {} engine, or build with "
                "--precision auto.".format(have, requested, requested))
        if have == "fp16" and not caps["fp16"]:
            raise JetgenError("This graph was exported in FP16 but {} has no fast FP16 ({}); export it "
                              "again with --precision fp32.".format(board, caps["source"]))
        return have, "strongly typed: the graph was exported as {}".format(have)

    if requested == "fp32":
        if quantized:
            raise JetgenError("This graph is INT8-quantized (QDQ) and cannot be built as fp32; build it "
                              "with --precision int8 or auto, or export it again without int8.")
        return "fp32", "requested"
    if requested == "fp16":
        if not caps["fp16"]:
            raise JetgenError("{} has no fast FP16 ({}); build with --precision fp32 or auto.".format(
                board[0].upper() + board[1:], caps["source"]))
        if quantized:
            raise JetgenError("This graph is INT8-quantized (QDQ); build it with --precision int8 or auto.")
        return "fp16", "requested"
    if requested == "int8":
        if not caps["int8"]:
            raise JetgenError(
                "{} has no INT8 support ({}); build with --precision fp16 or auto instead.".format(
                    board[0].upper() + board[1:], caps["source"]))
        if quantized:
            return "int8", "requested; the graph holds explicit quantization (QDQ)"
        if calibration_cache:
            return "int8", "requested; scales from the INT8 calibration cache"
        raise JetgenError(
            "INT8 needs an explicitly quantized graph: export the bundle with --precision int8 "
            "(which writes QDQ nodes){}.".format(
                "" if typing == "strong" else ", or on TensorRT 8 pass an INT8 calibration cache"))
    # auto
    if quantized:
        return "int8", "auto: the graph holds explicit quantization (QDQ) and {} runs INT8".format(board)
    if caps["fp16"]:
        return "fp16", "auto: {} has fast FP16 ({})".format(board, caps["source"])
    return "fp32", "auto: {} has no fast FP16 ({})".format(board, caps["source"])
