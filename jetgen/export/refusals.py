"""Why a model cannot be exported, as one sentence that names the op or module and the way around it.

Tracers and ONNX exporters fail with long messages from deep inside torch; these functions read
them (and the offline check's findings) and say what the user's code does that a graph cannot,
in the user's terms (``torch.fft`` rather than ``DFT``), and what to do instead.
"""
import re

from jetgen.errors import JetgenError

# what an ONNX op or aten op usually comes from in user code, and the way around it
TORCH_ORIGINS = (
    (r"fft|DFT|STFT|stft", "torch.fft (Fourier transforms)",
     "compute the transform as a matrix product with a fixed DFT matrix (torch.matmul), or move it out of the "
     "model into pre- or post-processing"),
    (r"NonZero|nonzero|masked_select|unique|Unique", "data-dependent indexing (boolean masks, nonzero, unique)",
     "use torch.where with a fixed-shape mask instead"),
    (r"Scatter|scatter|index_put", "scatter/index_put (often the backward of min, max or gather)",
     "write the loss's gradient by hand (a Likelihood with loss_and_output_grad) or use dense ops"),
    (r"\bLoop\b|\bIf\b", "control flow inside the graph", "make the computation the same for every input"),
)

DATA_DEPENDENT = ("data-dependent", "GuardOnDataDependentSymNode", "Could not extract specialized integer",
                  "Could not guard on data-dependent", "item() call", "data dependent")


def _clean(err):
    return re.sub(r"\x1b\[[0-9;]*m", "", str(err))


def origin(text):
    """(what in user code, what to do) for an op name or message, or None when nothing is known."""
    for pattern, what, fix in TORCH_ORIGINS:
        if re.search(pattern, text):
            return what, fix
    return None


def trace_failure(err, graph, where):
    """JetgenError for a failure tracing ``graph`` of ``where`` (a description of the module)."""
    from jetgen.export.onnx_tools import describe_export_error

    text = _clean(err)
    if any(marker in text for marker in DATA_DEPENDENT):
        return JetgenError("Cannot trace the {} of {}: it makes a Python-side decision on tensor values (an if, a "
                           "loop bound, .item(), int() or float() of a tensor), which a graph cannot follow; compute "
                           "with tensor operations instead (torch.where, masks, a fixed number of steps).".format(
                               graph, where))
    detail = describe_export_error(err)
    known = origin(detail)
    route = known[1] if known else "replace it with standard tensor operations, or export a decoder without it"
    return JetgenError("Cannot trace the {} of {} into plain operations: {} ({}); {}.".format(
        graph, where, detail, known[0] if known else "no graph translation", route))


def export_failure(errors, graph, opset, where):
    """JetgenError for ``graph`` that neither ONNX exporter could write at ``opset``."""
    from jetgen.export.onnx_tools import describe_export_error

    detail = describe_export_error(*errors)
    known = origin(" ".join(_clean(e) for e in errors) + " " + detail)
    if known:
        return JetgenError("Cannot export the {} graph of {}: it uses {}, which has no ONNX translation a "
                           "Jetson at opset {} runs ({}); {}.".format(graph, where, known[0], opset, detail, known[1]))
    return JetgenError("Cannot export the {} graph of {} to ONNX: {}, so neither torch.onnx exporter can write it; "
                       "change the model to avoid it or use a supported architecture.".format(graph, where, detail))


def unsupported_op_error(report, row, where):
    """JetgenError for the offline check's first unsupported-operator finding, or None when there is none."""
    for f in report.get("findings", ()):
        if f["severity"] != "error" or "not supported" not in f["what"] and "parser support" not in f["what"]:
            continue
        op = re.search(r"\(([^()]+)\)$", f["where"])
        op = op.group(1) if op else f["where"]
        known = origin(op)
        source = " (from {})".format(known[0]) if known else ""
        fix = known[1] if known else f["fix"]
        return JetgenError("The {} graph of {} needs the ONNX operator {}{}, which TensorRT {} on the {} cannot run; "
                           "{}.".format(f["graph"], where, op, source, row["tensorrt"], row["board"], fix))
    return None
