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


# torch functions whose Python-side checks fail under a tracer (the frame names them)
TORCH_DECISIONS = ("_check_input_dim", "_verify_batch_size", "_verify_spatial_size")


def trace_failure(err, graph, where):
    """JetgenError for a failure tracing ``graph`` of ``where`` (a description of the module): a
    Python-side decision (the user's own or one inside torch, like BatchNorm's input check) gets the
    sentence that says so; anything else is the tracer's first line, never a guessed cause. Both name
    the user's file and line where the traceback has one."""
    import os
    import traceback

    text = _clean(err)
    frame = user_frame(err)
    at = " (at {} line {}, in {})".format(os.path.basename(frame[0]), frame[1], frame[2]) if frame else ""
    tb = traceback.extract_tb(err.__traceback__) if getattr(err, "__traceback__", None) else []
    inside = next((f.name for f in tb if f.name in TORCH_DECISIONS), None)
    if any(marker in text for marker in DATA_DEPENDENT) or inside:
        detail = " (torch's {} decides in Python on the traced tensor)".format(inside) if inside else ""
        return JetgenError("Cannot trace the {} of {}{}: it makes a Python-side decision on tensor values (an if, a "
                           "loop bound, .item(), int() or float() of a tensor){}, which a graph cannot follow; compute "
                           "with tensor operations instead (torch.where, masks, a fixed number of steps).".format(
                               graph, where, at, detail))
    known = origin(text)
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(err).__name__)
    first = first if len(first) <= 300 else first[:300] + "..."
    if known:
        return JetgenError("Cannot trace the {} of {}{}: it uses {} ({}); {}.".format(graph, where, at, known[0], first,
                                                                                   known[1]))
    return JetgenError("Cannot trace the {} of {}{} into plain tensor operations: {}: {}; make the decoder the same "
                       "tensor operations for every input.".format(graph, where, at, type(err).__name__, first))


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


def user_lines(notes, limit=2):
    """"FILE line N: `code`" for the first ``limit`` distinct (file, line, message) tracer notes that
    point into the user's code (not torch's or jetgen's own files)."""
    import linecache
    import os

    out = []
    for filename, lineno, _ in notes or ():
        if not filename or _internal(filename):
            continue
        code = linecache.getline(filename, lineno).strip()
        text = "{} line {}{}".format(os.path.basename(filename), lineno, ": `{}`".format(code) if code else "")
        if text not in out:
            out.append(text)
        if len(out) >= limit:
            break
    return out


def _internal(filename):
    import os

    norm = filename.replace(os.sep, "/")
    return any(part in norm for part in ("/torch/", "/jetgen/export/", "/jetgen/models/", "site-packages/torch",
                                         "/onnxscript/", "<frozen", "/contextlib.py", "/functools.py"))


def user_frame(err):
    """The innermost traceback frame of ``err`` in the user's code, as (file, line, function), or None."""
    import traceback

    tb = getattr(err, "__traceback__", None)
    frames = [f for f in traceback.extract_tb(tb) if not _internal(f.filename)] if tb is not None else []
    if not frames:
        return None
    f = frames[-1]
    return f.filename, f.lineno, f.name
